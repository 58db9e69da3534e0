"""Praetor servers (and client agents) in their own network namespaces, for
partition, latency and loss tests.

Topology (everything named after this process's pid, so concurrent runs do
not collide, and removed again by `Netns.close()`):

    root ns:  bridge pf<pid>n<k>br  10.A.B.254/24   (the tests and lincheck)
                 |-- veth --> ns prf-<pid>-<k>-s1    eth0 10.A.B.1   (server s1)
                 |-- ...      ns prf-<pid>-<k>-s<n>  eth0 10.A.B.n
                 |-- veth --> ns prf-<pid>-<k>-c0    eth0 10.A.B.101 (client c0, if any)
                 |-- ...
                 |-- veth --> ns prf-<pid>-<k>-delay eth0 10.A.B.252 (made on first use)
                 `-- veth --> ns prf-<pid>-<k>-sink  eth0 10.A.B.253 (drops)

A partition is made with routes only (iproute2, no firewall, no netem): in
each member's namespace the addresses of the servers on the other side are
routed (table CUT_TABLE, consulted first) through the sink namespace, which
forwards nothing (a blackhole route per member address, forwarding on, so
the drop is silent: no ICMP, no RST). Packets between the two sides vanish,
exactly as on a cut network, while the root namespace (the test, the
lincheck clients) still reaches every server. A client can therefore keep
talking to an isolated old leader, which is the case a linearizability test
needs.

Latency and loss use the kernel's `tc netem` where it exists. Kernels
without sch_netem get the same from the delay namespace: its eth0 feeds a
TUN device read by tests/delay_link.py, which holds or drops each packet by
its (source, destination) pair and writes it back for the kernel to forward.
A member whose egress is shaped routes the affected addresses (table
DELAY_TABLE, after the cuts, so a partition still wins) via the delay
namespace. `Netns.delay(a, b, ms)` shapes one pair of members, both ways.

`ip link set <veth> down` (`Netns.isolate_fully`) cuts a server off from
everything, clients included.
"""

from __future__ import annotations

import ipaddress
import itertools
import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional, Union

from cluster_harness import AddressedAgent, Cluster, Server
from praetor_harness import close_agents

IP = shutil.which("ip") or "/usr/sbin/ip"
TC = shutil.which("tc") or "/usr/sbin/tc"
HERE = Path(__file__).resolve().parent

NAME_PREFIX = "prf"
_counter = itertools.count(1)

# Fixed ports: every agent has a network stack of its own.
PORTS = {"http": 8500, "server": 8300, "serf_lan": 8301, "serf_wan": 8302,
         "dns": -1, "grpc": -1}

# Routing tables in each member's namespace, looked up in this order
# before `main`: routes into the sink (partitions), then routes via the
# delay namespace (userspace latency and loss).
CUT_TABLE = 100
DELAY_TABLE = 200
# In the delay namespace: what arrives on eth0 goes into the TUN device.
TUN_TABLE = 100
TUN_NAME = "dl0"
FORWARDER_DEADLINE = 10.0  # seconds for the forwarder to start or answer


class NetnsError(AssertionError):
    pass


def run(*args: str, check: bool = True, timeout: float = 15.0) -> subprocess.CompletedProcess:
    proc = subprocess.run(list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise NetnsError(f"{' '.join(args)} failed ({proc.returncode}): "
                         f"{proc.stderr.strip() or proc.stdout.strip()}")
    return proc


def netns_unavailable() -> Optional[str]:
    """Why namespaces cannot be made here, or None if they can."""
    if os.geteuid() != 0:
        return "network namespace tests need root (ip netns add)"
    if not Path(IP).exists():
        return "`ip` (iproute2) is not installed"
    probe = f"{NAME_PREFIX}-{os.getpid()}-probe"
    made = run(IP, "netns", "add", probe, check=False)
    if made.returncode != 0:
        return f"`ip netns add` does not work here: {made.stderr.strip()}"
    run(IP, "netns", "del", probe, check=False)
    return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def _kill_netns_pids(ns: str) -> None:
    out = run(IP, "netns", "pids", ns, check=False).stdout
    for pid in out.split():
        try:
            os.kill(int(pid), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            pass


def remove_stale() -> None:
    """Removes namespaces and links left by an earlier run of these tests
    whose process is gone (one killed before its teardown could run)."""
    names = run(IP, "netns", "list", check=False).stdout.split("\n")
    for line in names:
        m = re.match(rf"^({NAME_PREFIX}-(\d+)-\S+)", line.strip())
        if m and not _pid_alive(int(m.group(2))):
            _kill_netns_pids(m.group(1))
            run(IP, "netns", "del", m.group(1), check=False)
    links = run(IP, "-o", "link", "show", check=False).stdout.split("\n")
    for line in links:
        m = re.match(r"^\d+:\s+(pf(\d+)n\d+(?:br|vd|v\d+))[@:]", line)
        if m and not _pid_alive(int(m.group(2))):
            run(IP, "link", "del", m.group(1), check=False)


def _pick_subnet(k: int) -> ipaddress.IPv4Network:
    """A /24 in 10.0.0.0/8 that no route or address of the root namespace
    overlaps, derived from the pid so concurrent runs differ."""
    used = []
    for line in run(IP, "-4", "route", "show", "table", "all", check=False).stdout.split("\n"):
        words = line.split()
        if not words:
            continue
        dest = words[1] if words[0] in ("local", "broadcast", "unicast", "blackhole",
                                        "unreachable", "prohibit", "throw") else words[0]
        if dest == "default":
            continue
        try:
            used.append(ipaddress.ip_network(dest, strict=False))
        except ValueError:
            continue
    pid = os.getpid()
    for attempt in range(200):
        a = 100 + (pid + 7 * attempt + 31 * k) % 150
        b = (pid // 150 + 13 * attempt + k) % 256
        net = ipaddress.ip_network(f"10.{a}.{b}.0/24")
        if not any(net.overlaps(u) for u in used):
            return net
    raise NetnsError("no free 10.x.y.0/24 subnet for the test bridge")


# ------------------------------------------------------------ link shapes
@dataclass(frozen=True)
class LinkShape:
    """Latency and loss of one direction of a link, as netem states them:
    each packet is held delay_ms +/- up to jitter_ms (uniform), or dropped
    with probability `loss`."""

    delay_ms: float = 0.0
    jitter_ms: float = 0.0
    loss: float = 0.0


_TIME = re.compile(r"^(\d+(?:\.\d+)?)(us|usec|ms|msec|s|sec|secs)$")
_PERCENT = re.compile(r"^(\d+(?:\.\d+)?)%$")
_TIME_UNIT_MS = {"us": 0.001, "usec": 0.001, "ms": 1.0, "msec": 1.0, "s": 1000.0,
                 "sec": 1000.0, "secs": 1000.0}


def _time_ms(word: str, spec: str) -> float:
    m = _TIME.match(word)
    if not m:
        raise NetnsError(f"netem spec {spec!r}: {word!r} is not a time (like 50ms)")
    return float(m.group(1)) * _TIME_UNIT_MS[m.group(2)]


def _percent(word: str, spec: str) -> float:
    m = _PERCENT.match(word)
    if not m or float(m.group(1)) > 100:
        raise NetnsError(f"netem spec {spec!r}: {word!r} is not a percentage (like 10%)")
    return float(m.group(1)) / 100.0


def parse_netem(spec: str) -> LinkShape:
    """The part of tc-netem's syntax the delay link carries out:
    `delay TIME [JITTER]` and `loss [random] PERCENT`. Anything else
    (correlation, distributions, duplicate, corrupt, reorder, rate) is
    refused rather than silently left out."""
    words = spec.split()
    delay = jitter = loss = 0.0
    i = 0
    while i < len(words):
        word = words[i]
        if word == "delay" and i + 1 < len(words):
            delay = _time_ms(words[i + 1], spec)
            i += 2
            if i < len(words) and _TIME.match(words[i]):
                jitter = _time_ms(words[i], spec)
                i += 1
        elif word == "loss" and i + 1 < len(words):
            i += 1
            if words[i] == "random" and i + 1 < len(words):
                i += 1
            loss = _percent(words[i], spec)
            i += 1
        else:
            raise NetnsError(f"netem spec {spec!r}: {word!r} is not supported by the "
                             "userspace delay link (only `delay TIME [JITTER]` and "
                             "`loss [random] PERCENT`)")
        if i < len(words) and _PERCENT.match(words[i]):
            raise NetnsError(f"netem spec {spec!r}: correlations are not supported by the "
                             "userspace delay link")
    return LinkShape(delay, jitter, loss)


class DelayForwarder:
    """tests/delay_link.py running in the delay namespace, driven over its
    stdin/stdout (one JSON command, one JSON reply)."""

    def __init__(self, ns: str, tun: str, seed: Optional[int]):
        self.stderr = tempfile.TemporaryFile()
        args = [IP, "netns", "exec", ns, sys.executable, str(HERE / "delay_link.py"),
                "--tun", tun]
        if seed is not None:
            args += ["--seed", str(seed)]
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.stderr)
        self._buffer = b""
        line = self._line(FORWARDER_DEADLINE)
        if line != "ready":
            self.proc.kill()
            said = self.errors()
            self.stop()
            raise NetnsError(f"the delay link did not start (said {line!r}): {said}")

    def errors(self) -> str:
        self.stderr.seek(0)
        return self.stderr.read().decode(errors="replace")[-2000:]

    def _line(self, deadline: float) -> str:
        """The next line the forwarder prints; '' when it exits or is silent."""
        end = time.monotonic() + deadline
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._buffer:
            left = end - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                return ""
            chunk = os.read(fd, 65536)
            if not chunk:
                return ""
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line.decode().strip()

    def call(self, **command) -> dict:
        try:
            self.proc.stdin.write((json.dumps(command) + "\n").encode())
            self.proc.stdin.flush()
        except (BrokenPipeError, ValueError) as exc:
            raise NetnsError(f"the delay link is gone ({exc}): {self.errors()}") from None
        line = self._line(FORWARDER_DEADLINE)
        if not line:
            raise NetnsError(f"the delay link did not answer {command}: {self.errors()}")
        reply = json.loads(line)
        if "error" in reply:
            raise NetnsError(f"the delay link refused {command}: {reply['error']}")
        return reply

    def stop(self) -> None:
        """Ends the forwarder (stdin closed, then killed if it lingers) and
        reaps it."""
        try:
            self.proc.stdin.close()
        except (BrokenPipeError, OSError):
            pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc.stdout.close()
        self.stderr.close()


Member = Union[int, str]


class Netns:
    """n server namespaces, `clients` client namespaces and a sink namespace
    on one bridge in the root namespace (plus a delay namespace once
    latency or loss needs it). Members are indexed servers first (0..n-1),
    then clients (n..n+clients-1), or named ("s1", "c0")."""

    def __init__(self, n: int = 3, clients: int = 0, *, kernel_netem: bool = True,
                 delay_seed: Optional[int] = None):
        remove_stale()
        pid = os.getpid()
        k = next(_counter)
        self.n = n
        self.subnet = _pick_subnet(k)
        hosts = list(self.subnet.hosts())
        self.server_ips = [str(hosts[i]) for i in range(n)]  # .1 .. .n
        self.client_ips = [str(hosts[100 + j]) for j in range(clients)]  # .101 ..
        self.ips = self.server_ips + self.client_ips
        self.names = [f"s{i + 1}" for i in range(n)] + [f"c{j}" for j in range(clients)]
        self.delay_ip = str(hosts[251])  # .252
        self.sink_ip = str(hosts[252])  # .253
        self.root_ip = str(hosts[253])  # .254
        self.bridge = f"pf{pid}n{k}br"
        self.namespaces = [f"{NAME_PREFIX}-{pid}-{k}-{name}" for name in self.names]
        self.sink = f"{NAME_PREFIX}-{pid}-{k}-sink"
        self.delay_ns = f"{NAME_PREFIX}-{pid}-{k}-delay"
        self.veths = [f"pf{pid}n{k}v{i + 1}" for i in range(len(self.names))]
        self.sink_veth = f"pf{pid}n{k}v0"
        self.delay_veth = f"pf{pid}n{k}vd"
        self.cut: set[tuple[int, int]] = set()  # (from, to) member indexes
        self.netem_on: list[int] = []
        # Userspace shaping: a member's whole egress, and single directed pairs.
        self.kernel_netem_wanted = kernel_netem
        self.delay_seed = delay_seed
        self._kernel_netem: Optional[str] = None  # probe result: None works, else why not
        self._kernel_netem_probed = False
        self._forwarder: Optional[DelayForwarder] = None
        self._forwarder_error: Optional[str] = None
        self._egress: dict[int, LinkShape] = {}
        self._pairs: dict[tuple[int, int], LinkShape] = {}
        self._delay_routes: dict[int, set[str]] = {}
        self._made_links: list[str] = []
        self._made_ns: list[str] = []
        try:
            self._build()
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------ building
    def _attach(self, ns: str, veth: str, ip: str) -> None:
        """A namespace with eth0 on the bridge at `ip`."""
        prefix = self.subnet.prefixlen
        run(IP, "netns", "add", ns)
        self._made_ns.append(ns)
        run(IP, "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
        self._made_links.append(veth)
        run(IP, "link", "set", veth, "master", self.bridge)
        run(IP, "link", "set", veth, "up")
        run(IP, "-n", ns, "link", "set", "lo", "up")
        run(IP, "-n", ns, "addr", "add", f"{ip}/{prefix}", "dev", "eth0")
        run(IP, "-n", ns, "link", "set", "eth0", "up")

    @staticmethod
    def _router_sysctls(ns: str, devices: Iterable[str]) -> None:
        """Forwarding on; no reverse-path filter (it would drop packets
        whose source is not behind the interface they came in on) and no
        redirects (which would teach the sender to bypass us)."""
        lines = ["echo 1 > /proc/sys/net/ipv4/ip_forward"]
        for dev in ("all", "default", *devices):
            lines.append(f"echo 0 > /proc/sys/net/ipv4/conf/{dev}/rp_filter")
            lines.append(f"echo 0 > /proc/sys/net/ipv4/conf/{dev}/send_redirects")
        run(IP, "netns", "exec", ns, "sh", "-c", "; ".join(lines))

    def _build(self) -> None:
        prefix = self.subnet.prefixlen
        run(IP, "link", "add", self.bridge, "type", "bridge")
        self._made_links.append(self.bridge)
        run(IP, "addr", "add", f"{self.root_ip}/{prefix}", "dev", self.bridge)
        run(IP, "link", "set", self.bridge, "up")
        for ns, veth, ip in zip(self.namespaces, self.veths, self.ips):
            self._attach(ns, veth, ip)
            run(IP, "-n", ns, "rule", "add", "pref", str(CUT_TABLE), "lookup", str(CUT_TABLE))
            run(IP, "-n", ns, "rule", "add", "pref", str(DELAY_TABLE), "lookup",
                str(DELAY_TABLE))
        self._attach(self.sink, self.sink_veth, self.sink_ip)
        # The sink forwards (so a packet for another address is routed, not
        # answered with ICMP host-unreachable) into a blackhole (dropped
        # without a word), and accepts any source (so it still answers ARP
        # for itself).
        self._router_sysctls(self.sink, ["eth0"])
        for ip in self.ips:
            run(IP, "-n", self.sink, "route", "add", "blackhole", f"{ip}/32")

    def index(self, member: Member) -> int:
        """A member's index from its index or name ("s1", "c0")."""
        if isinstance(member, int):
            if not 0 <= member < len(self.names):
                raise NetnsError(f"no member {member}")
            return member
        try:
            return self.names.index(member)
        except ValueError:
            raise NetnsError(f"no member named {member!r}") from None

    # ---------------------------------------------------------- partitions
    def _cut_route(self, a: int, b: int, add: bool) -> None:
        """Route member b's address from member a's namespace via the sink."""
        verb = "replace" if add else "del"
        args = [IP, "-n", self.namespaces[a], "route", verb, f"{self.ips[b]}/32"]
        if add:
            args += ["via", self.sink_ip, "dev", "eth0"]
        run(*args, "table", str(CUT_TABLE), check=add)
        if add:
            self.cut.add((a, b))
        else:
            self.cut.discard((a, b))

    def block(self, a: Member, b: Member) -> None:
        """Drops what member a sends to member b (one direction)."""
        self._cut_route(self.index(a), self.index(b), True)

    def partition(self, *groups: Iterable[int]) -> None:
        """Servers in different groups no longer reach each other (both
        directions); servers not named form one more group."""
        groups = [set(g) for g in groups]
        named = set().union(*groups) if groups else set()
        rest = set(range(self.n)) - named
        if rest:
            groups.append(rest)
        for g1, g2 in itertools.permutations(groups, 2):
            for a in g1:
                for b in g2:
                    self.block(a, b)

    def isolate(self, i: int) -> None:
        """Server i and the others no longer reach each other; clients in
        the root namespace still reach everyone."""
        self.partition([i])

    def heal(self) -> None:
        """Undoes every partition, latency and loss."""
        for a, b in sorted(self.cut):
            self._cut_route(a, b, False)
        for i in list(self.netem_on):
            self.clear_netem(i)
        for a, b in sorted(self._pairs):
            if a < b:
                self.clear_delay(a, b)

    def isolate_fully(self, i: int, up: bool = False) -> None:
        """Takes server i's link down (no one reaches it, clients included)."""
        run(IP, "link", "set", self.veths[i], "up" if up else "down")

    # ---------------------------------------------------------------- netem
    def kernel_netem_unavailable(self) -> Optional[str]:
        """Why `tc netem` cannot be used here (None if it can): no
        sch_netem in the kernel, or the harness was asked not to."""
        if not self.kernel_netem_wanted:
            return "kernel netem not wanted (Netns(kernel_netem=False))"
        if not self._kernel_netem_probed:
            probe = run(IP, "netns", "exec", self.sink, TC, "qdisc", "add", "dev", "eth0",
                        "root", "netem", "delay", "1ms", check=False)
            if probe.returncode != 0:
                self._kernel_netem = f"tc netem does not work here: {probe.stderr.strip()}"
            else:
                run(IP, "netns", "exec", self.sink, TC, "qdisc", "del", "dev", "eth0", "root",
                    check=False)
            self._kernel_netem_probed = True
        return self._kernel_netem

    def delay_link_unavailable(self) -> Optional[str]:
        """Why the userspace delay link cannot run here (None if it runs;
        starts it on first use)."""
        try:
            self._delay_link()
        except NetnsError as exc:
            return str(exc)
        return None

    def netem_unavailable(self) -> Optional[str]:
        """Why `netem` cannot shape links here: only when neither the
        kernel's netem nor the userspace delay link works."""
        kernel = self.kernel_netem_unavailable()
        if kernel is None:
            return None
        user = self.delay_link_unavailable()
        if user is None:
            return None
        return f"{kernel}; and the userspace delay link does not work either: {user}"

    def netem(self, i: Member, spec: str) -> None:
        """Shapes everything member i sends, as
        `tc qdisc replace dev eth0 root netem <spec>` in its namespace
        would (with the delay link when the kernel has no netem)."""
        i = self.index(i)
        if self.kernel_netem_unavailable() is None:
            run(IP, "netns", "exec", self.namespaces[i], TC, "qdisc", "replace", "dev",
                "eth0", "root", "netem", *spec.split())
        else:
            shape = parse_netem(spec)
            self._delay_link().call(op="set", src=self.ips[i], dst=None,
                                    **self._shape_fields(shape))
            self._egress[i] = shape
            self._sync_delay_routes(i)
        if i not in self.netem_on:
            self.netem_on.append(i)

    def clear_netem(self, i: Member) -> None:
        i = self.index(i)
        if i in self._egress:
            del self._egress[i]
            self._sync_delay_routes(i)
            self._delay_link().call(op="clear", src=self.ips[i], dst=None)
        else:
            run(IP, "netns", "exec", self.namespaces[i], TC, "qdisc", "del", "dev", "eth0",
                "root", check=False)
        if i in self.netem_on:
            self.netem_on.remove(i)

    def delay(self, a: Member, b: Member, ms: float, *, jitter_ms: float = 0.0,
              loss: float = 0.0) -> None:
        """Holds every packet between members a and b for `ms` (each way,
        so their round trip grows by 2*ms), through the delay link. A pair
        delay replaces a member's netem for that peer."""
        a, b = self.index(a), self.index(b)
        if a == b:
            raise NetnsError("a member is not delayed to itself")
        shape = LinkShape(ms, jitter_ms, loss)
        link = self._delay_link()
        for src, dst in ((a, b), (b, a)):
            link.call(op="set", src=self.ips[src], dst=self.ips[dst],
                      **self._shape_fields(shape))
            self._pairs[(src, dst)] = shape
        self._sync_delay_routes(a)
        self._sync_delay_routes(b)

    def clear_delay(self, a: Member, b: Member) -> None:
        a, b = self.index(a), self.index(b)
        for src, dst in ((a, b), (b, a)):
            self._pairs.pop((src, dst), None)
        self._sync_delay_routes(a)
        self._sync_delay_routes(b)
        if self._forwarder is not None:
            for src, dst in ((a, b), (b, a)):
                self._forwarder.call(op="clear", src=self.ips[src], dst=self.ips[dst])

    def delay_stats(self) -> dict:
        """The delay link's counts of passed and dropped packets per
        "src>dst" pair."""
        return self._delay_link().call(op="stats")

    @staticmethod
    def _shape_fields(shape: LinkShape) -> dict:
        return {"delay_ms": shape.delay_ms, "jitter_ms": shape.jitter_ms, "loss": shape.loss}

    def _sync_delay_routes(self, i: int) -> None:
        """Routes member i's shaped destinations via the delay namespace
        and no others: everyone (the root namespace included) while its
        egress is shaped, else its delayed peers."""
        want = {self.ips[b] for (a, b) in self._pairs if a == i}
        if i in self._egress:
            want |= {ip for j, ip in enumerate(self.ips) if j != i} | {self.root_ip}
        have = self._delay_routes.setdefault(i, set())
        ns = self.namespaces[i]
        for ip in sorted(want - have):
            run(IP, "-n", ns, "route", "replace", f"{ip}/32", "via", self.delay_ip, "dev",
                "eth0", "table", str(DELAY_TABLE))
            have.add(ip)
        for ip in sorted(have - want):
            run(IP, "-n", ns, "route", "del", f"{ip}/32", "table", str(DELAY_TABLE),
                check=False)
            have.discard(ip)

    def _delay_link(self) -> DelayForwarder:
        """The delay namespace and its forwarder, made on first use."""
        if self._forwarder is not None:
            return self._forwarder
        if self._forwarder_error is not None:
            raise NetnsError(self._forwarder_error)
        try:
            if not os.path.exists("/dev/net/tun"):
                raise NetnsError("/dev/net/tun does not exist")
            ns = self.delay_ns
            self._attach(ns, self.delay_veth, self.delay_ip)
            run(IP, "-n", ns, "tuntap", "add", "dev", TUN_NAME, "mode", "tun")
            run(IP, "-n", ns, "link", "set", TUN_NAME, "txqueuelen", "10000")
            self._router_sysctls(ns, ["eth0", TUN_NAME])
            # Packets for the delay namespace itself stay local (the local
            # table comes first); all others from eth0 go to the forwarder,
            # and back from it through `main` to their destination.
            run(IP, "-n", ns, "link", "set", TUN_NAME, "up")
            run(IP, "-n", ns, "route", "add", "default", "dev", TUN_NAME, "table",
                str(TUN_TABLE))
            run(IP, "-n", ns, "rule", "add", "pref", str(TUN_TABLE), "iif", "eth0", "lookup",
                str(TUN_TABLE))
            self._forwarder = DelayForwarder(ns, TUN_NAME, self.delay_seed)
        except NetnsError as exc:
            self._forwarder_error = f"delay link: {exc}"
            raise NetnsError(self._forwarder_error) from None
        return self._forwarder

    # ------------------------------------------------------------- teardown
    def close(self) -> None:
        """Stops the delay forwarder, kills whatever still runs in the
        namespaces and removes them, the veths and the bridge; errors are
        collected, every step is tried."""
        errors = []
        if self._forwarder is not None:
            try:
                self._forwarder.stop()
            except OSError as exc:
                errors.append(f"stopping the delay link: {exc}")
            self._forwarder = None
        for ns in self._made_ns:
            _kill_netns_pids(ns)
        for link in reversed(self._made_links):
            r = run(IP, "link", "del", link, check=False)
            if r.returncode != 0 and "Cannot find device" not in r.stderr:
                errors.append(f"ip link del {link}: {r.stderr.strip()}")
        for ns in self._made_ns:
            r = run(IP, "netns", "del", ns, check=False)
            if r.returncode != 0:
                errors.append(f"ip netns del {ns}: {r.stderr.strip()}")
        self._made_links.clear()
        self._made_ns.clear()
        if errors:
            raise NetnsError("netns teardown: " + "; ".join(errors))

    def leftovers(self) -> list[str]:
        """Names of this object's namespaces and links that still exist."""
        left = []
        listed = run(IP, "netns", "list", check=False).stdout
        for ns in self.namespaces + [self.sink, self.delay_ns]:
            if re.search(rf"^{re.escape(ns)}\b", listed, re.M):
                left.append(ns)
        for link in self.veths + [self.sink_veth, self.delay_veth, self.bridge]:
            if run(IP, "link", "show", link, check=False).returncode == 0:
                left.append(link)
        return left

    # --------------------------------------------------------------- probes
    def ping(self, frm: Member, address: str, count: int = 20, interval: float = 0.02,
             timeout: float = 2.0) -> list[Optional[float]]:
        """ICMP echo round trips in ms (None: lost) from member `frm`'s
        namespace to `address` (tests/icmp_ping.py; no ping binary needed)."""
        ns = self.namespaces[self.index(frm)]
        proc = run(IP, "netns", "exec", ns, sys.executable, str(HERE / "icmp_ping.py"),
                   address, "--count", str(count), "--interval", str(interval),
                   "--timeout", str(timeout), timeout=count * interval + timeout + 30)
        return json.loads(proc.stdout)["rtt_ms"]

    def ping_from_root(self, address: str, count: int = 20, interval: float = 0.02,
                       timeout: float = 2.0) -> list[Optional[float]]:
        """As `ping`, from the root namespace (where the tests run)."""
        proc = run(sys.executable, str(HERE / "icmp_ping.py"), address, "--count", str(count),
                   "--interval", str(interval), "--timeout", str(timeout),
                   timeout=count * interval + timeout + 30)
        return json.loads(proc.stdout)["rtt_ms"]


class NetnsServer(Server):
    """A Server whose process runs under `ip netns exec <ns>` (same pid:
    `ip` execs praetor after entering the namespace, so signals reach it)."""

    def __init__(self, *args, netns: str, **kw):
        super().__init__(*args, **kw)
        self.netns = netns
        self.args = [IP, "netns", "exec", netns] + self.args


class NetnsClient(AddressedAgent):
    """A client agent (`praetor agent` without -server) in its own
    namespace, retry-joining the servers' gossip port every second."""

    def __init__(self, binary: Path, workdir: Path, *, ip: str, node: str, netns: str,
                 join: str):
        super().__init__(binary, workdir, ip=ip, node=node, ports=PORTS,
                         config={"retry_interval": "1s"}, config_name="client.json",
                         extra_args=[f"-retry-join={join}"])
        self.netns = netns
        self.args = [IP, "netns", "exec", netns] + self.args


class NetnsCluster(Cluster):
    """A Cluster of NetnsServers on `net`'s server addresses (all on the
    same ports), and a NetnsClient (not started) in each client namespace."""

    def __init__(self, binary: Path, base: Path, net: Netns, *,
                 extra_config: Optional[dict] = None):
        self.net = net
        self.ips = list(net.server_ips)
        self.ports = dict(PORTS)
        self.servers = [
            NetnsServer(binary, base / f"s{i + 1}", ip=ip, node=f"s{i + 1}", ports=self.ports,
                        expect=len(self.ips), join=self.ips[0], extra_config=extra_config,
                        netns=net.namespaces[i])
            for i, ip in enumerate(self.ips)
        ]
        self.clients = [
            NetnsClient(binary, base / net.names[i], ip=net.ips[i], node=net.names[i],
                        netns=net.namespaces[i], join=self.ips[0])
            for i in range(net.n, len(net.names))
        ]

    def index(self, server: Server) -> int:
        return self.servers.index(server)

    def start_clients(self, deadline: float = 30.0) -> list[NetnsClient]:
        """Starts every client; ready once each answers the leader."""
        for c in self.clients:
            c.spawn()
        for c in self.clients:
            c.wait_ready(deadline)
        return self.clients

    def close(self) -> None:
        try:
            close_agents(self.clients)
        finally:
            super().close()
