"""Three praetor servers in their own network namespaces, for partition tests.

Topology (everything named after this process's pid, so concurrent runs do
not collide, and removed again by `Netns.close()`):

    root ns:  bridge pf<pid>n<k>br  10.A.B.254/24   (the tests and lincheck)
                 |-- veth --> ns prf-<pid>-<k>-s1   eth0 10.A.B.1   (server s1)
                 |-- veth --> ns prf-<pid>-<k>-s2   eth0 10.A.B.2   (server s2)
                 |-- veth --> ns prf-<pid>-<k>-s3   eth0 10.A.B.3   (server s3)
                 `-- veth --> ns prf-<pid>-<k>-sink eth0 10.A.B.253 (drops)

A partition is made with routes only (iproute2, no firewall, no netem): in
each server's namespace the addresses of the servers on the other side are
routed through the sink namespace, which forwards nothing (a blackhole route
per server address, forwarding on, so the drop is silent: no ICMP, no RST).
Packets between the two sides vanish, exactly as on a cut network, while
the root namespace (the test, the lincheck clients) still reaches every
server. A client can therefore keep talking to an isolated old leader,
which is the case a linearizability test needs.

`ip link set <veth> down` (`Netns.isolate_fully`) cuts a server off from
everything, clients included.
"""

from __future__ import annotations

import ipaddress
import itertools
import os
import re
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Iterable, Optional

from cluster_harness import Cluster, Server

IP = shutil.which("ip") or "/usr/sbin/ip"
TC = shutil.which("tc") or "/usr/sbin/tc"

NAME_PREFIX = "prf"
_counter = itertools.count(1)

# Fixed ports: every server has a network stack of its own.
PORTS = {"http": 8500, "server": 8300, "serf_lan": 8301, "serf_wan": 8302,
         "dns": -1, "grpc": -1}


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
        m = re.match(r"^\d+:\s+(pf(\d+)n\d+(?:br|v\d+))[@:]", line)
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


class Netns:
    """n server namespaces and a sink namespace on one bridge in the root ns."""

    def __init__(self, n: int = 3):
        remove_stale()
        pid = os.getpid()
        k = next(_counter)
        self.n = n
        self.subnet = _pick_subnet(k)
        hosts = list(self.subnet.hosts())
        self.server_ips = [str(hosts[i]) for i in range(n)]  # .1 .. .n
        self.sink_ip = str(hosts[252])  # .253
        self.root_ip = str(hosts[253])  # .254
        self.bridge = f"pf{pid}n{k}br"
        self.namespaces = [f"{NAME_PREFIX}-{pid}-{k}-s{i + 1}" for i in range(n)]
        self.sink = f"{NAME_PREFIX}-{pid}-{k}-sink"
        self.veths = [f"pf{pid}n{k}v{i + 1}" for i in range(n)]
        self.sink_veth = f"pf{pid}n{k}v0"
        self.cut: set[tuple[int, int]] = set()  # (from, to) server indexes
        self.netem_on: list[int] = []
        self._made_links: list[str] = []
        self._made_ns: list[str] = []
        try:
            self._build()
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------ building
    def _build(self) -> None:
        prefix = self.subnet.prefixlen
        run(IP, "link", "add", self.bridge, "type", "bridge")
        self._made_links.append(self.bridge)
        run(IP, "addr", "add", f"{self.root_ip}/{prefix}", "dev", self.bridge)
        run(IP, "link", "set", self.bridge, "up")
        members = list(zip(self.namespaces, self.veths, self.server_ips))
        members.append((self.sink, self.sink_veth, self.sink_ip))
        for ns, veth, ip in members:
            run(IP, "netns", "add", ns)
            self._made_ns.append(ns)
            run(IP, "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
            self._made_links.append(veth)
            run(IP, "link", "set", veth, "master", self.bridge)
            run(IP, "link", "set", veth, "up")
            run(IP, "-n", ns, "link", "set", "lo", "up")
            run(IP, "-n", ns, "addr", "add", f"{ip}/{prefix}", "dev", "eth0")
            run(IP, "-n", ns, "link", "set", "eth0", "up")
        # The sink forwards (so a packet for another address is routed, not
        # answered with ICMP host-unreachable) into a blackhole (dropped
        # without a word), and accepts any source (no reverse-path filter,
        # so it still answers ARP for itself).
        run(IP, "netns", "exec", self.sink, "sh", "-c",
            "echo 1 > /proc/sys/net/ipv4/ip_forward; "
            "echo 0 > /proc/sys/net/ipv4/conf/all/rp_filter; "
            "echo 0 > /proc/sys/net/ipv4/conf/eth0/rp_filter; "
            "echo 0 > /proc/sys/net/ipv4/conf/all/send_redirects; "
            "echo 0 > /proc/sys/net/ipv4/conf/eth0/send_redirects")
        for ip in self.server_ips:
            run(IP, "-n", self.sink, "route", "add", "blackhole", f"{ip}/32")

    # ---------------------------------------------------------- partitions
    def _cut_route(self, a: int, b: int, add: bool) -> None:
        """Route server b's address from server a's namespace via the sink."""
        verb = "replace" if add else "del"
        args = [IP, "-n", self.namespaces[a], "route", verb, f"{self.server_ips[b]}/32"]
        if add:
            args += ["via", self.sink_ip, "dev", "eth0"]
        run(*args, check=add)
        if add:
            self.cut.add((a, b))
        else:
            self.cut.discard((a, b))

    def block(self, a: int, b: int) -> None:
        """Drops what server a sends to server b (one direction)."""
        self._cut_route(a, b, True)

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
        for a, b in sorted(self.cut):
            self._cut_route(a, b, False)
        for i in list(self.netem_on):
            self.clear_netem(i)

    def isolate_fully(self, i: int, up: bool = False) -> None:
        """Takes server i's link down (no one reaches it, clients included)."""
        run(IP, "link", "set", self.veths[i], "up" if up else "down")

    # ---------------------------------------------------------------- netem
    def netem_unavailable(self) -> Optional[str]:
        probe = run(IP, "netns", "exec", self.sink, TC, "qdisc", "add", "dev", "eth0",
                    "root", "netem", "delay", "1ms", check=False)
        if probe.returncode != 0:
            return f"tc netem does not work here: {probe.stderr.strip()}"
        run(IP, "netns", "exec", self.sink, TC, "qdisc", "del", "dev", "eth0", "root",
            check=False)
        return None

    def netem(self, i: int, spec: str) -> None:
        """`tc qdisc replace dev eth0 root netem <spec>` in server i's ns."""
        run(IP, "netns", "exec", self.namespaces[i], TC, "qdisc", "replace", "dev", "eth0",
            "root", "netem", *spec.split())
        if i not in self.netem_on:
            self.netem_on.append(i)

    def clear_netem(self, i: int) -> None:
        run(IP, "netns", "exec", self.namespaces[i], TC, "qdisc", "del", "dev", "eth0",
            "root", check=False)
        if i in self.netem_on:
            self.netem_on.remove(i)

    # ------------------------------------------------------------- teardown
    def close(self) -> None:
        """Kills whatever still runs in the namespaces and removes them, the
        veths and the bridge; errors are collected, every step is tried."""
        errors = []
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
        for ns in self.namespaces + [self.sink]:
            if re.search(rf"^{re.escape(ns)}\b", listed, re.M):
                left.append(ns)
        for link in self.veths + [self.sink_veth, self.bridge]:
            if run(IP, "link", "show", link, check=False).returncode == 0:
                left.append(link)
        return left


class NetnsServer(Server):
    """A Server whose process runs under `ip netns exec <ns>` (same pid:
    `ip` execs praetor after entering the namespace, so signals reach it)."""

    def __init__(self, *args, netns: str, **kw):
        super().__init__(*args, **kw)
        self.netns = netns
        self.args = [IP, "netns", "exec", netns] + self.args


class NetnsCluster(Cluster):
    """A Cluster of NetnsServers on `net`'s addresses (all on the same ports)."""

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

    def index(self, server: Server) -> int:
        return self.servers.index(server)
