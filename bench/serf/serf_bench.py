#!/usr/bin/env python3
"""Serf benchmarks (issue 5): `praetor serf agent` against the real `serf
agent`, same machine, same run, one cluster after the other.

For each system, a cluster of N agents (default 32) on 127.0.0.1, lan
profile, no encryption, each agent joining the first:

1. idle: once every agent sees N alive and the cluster has settled, each
   agent's RSS (VmRSS in /proc/PID/status) and CPU over a window
   (utime+stime from /proc/PID/stat), mean and median per agent;
2. events: user events fired over RPC (`Coalesce: false`) at a rotating
   agent; the time until the last agent has it, measured twice: by RPC
   `stream` subscriptions on every agent (the agent's delivery, read by this
   process on its monotonic clock) and by every agent's event handler (the
   `stamp` program below, started by the agent through /bin/sh, real time);
3. torture (Lifeguard): a quarter of the agents are stopped (SIGSTOP) for
   1-3 s and resumed (SIGCONT) for 1-3 s, over and over, for several
   minutes; every agent stays healthy, so each member-failed event the
   never-paused agents' handlers see is a false failure. The schedule comes
   from a seeded RNG, the same for both systems.

    bench/serf/serf_bench.py --praetor /work/target-mixed/release/praetor

Every process the script starts is stopped at the end, also on an error or
Ctrl-C (paused agents are resumed first). See bench/serf/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import selectors
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Optional

HERE = Path(__file__).resolve().parent
CLK_TCK = os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------- msgpack
# The few msgpack shapes Serf's RPC uses, so the script needs no packages.

def pack(o) -> bytes:
    if o is None:
        return b"\xc0"
    if o is True:
        return b"\xc3"
    if o is False:
        return b"\xc2"
    if isinstance(o, int):
        if 0 <= o < 128:
            return bytes([o])
        if 0 <= o < 2 ** 64:
            return b"\xcf" + struct.pack(">Q", o)
        if -32 <= o < 0:
            return struct.pack(">b", o)
        return b"\xd3" + struct.pack(">q", o)
    if isinstance(o, str):
        b = o.encode()
        if len(b) < 32:
            return bytes([0xA0 | len(b)]) + b
        return b"\xdb" + struct.pack(">I", len(b)) + b
    if isinstance(o, (bytes, bytearray)):
        return b"\xc6" + struct.pack(">I", len(o)) + bytes(o)
    if isinstance(o, (list, tuple)):
        return b"\xdd" + struct.pack(">I", len(o)) + b"".join(pack(x) for x in o)
    if isinstance(o, dict):
        return (b"\xdf" + struct.pack(">I", len(o)) +
                b"".join(pack(k) + pack(v) for k, v in o.items()))
    raise TypeError(type(o))


class NeedMore(Exception):
    pass


def unpack(buf: bytes, i: int = 0):
    """(object, next offset); raises NeedMore on a short buffer."""
    def take(n):
        nonlocal i
        if i + n > len(buf):
            raise NeedMore
        s = buf[i:i + n]
        i += n
        return s

    def raw(n):
        b = take(n)
        try:
            return b.decode()
        except UnicodeDecodeError:
            return b

    t = take(1)[0]
    if t <= 0x7F:
        return t, i
    if t >= 0xE0:
        return t - 256, i
    if 0xA0 <= t <= 0xBF:
        return raw(t & 0x1F), i
    if 0x90 <= t <= 0x9F or t in (0xDC, 0xDD):
        n = t & 0x0F if t <= 0x9F else struct.unpack(">H" if t == 0xDC else ">I",
                                                       take(2 if t == 0xDC else 4))[0]
        out = []
        for _ in range(n):
            v, i = unpack(buf, i)
            out.append(v)
        return out, i
    if 0x80 <= t <= 0x8F or t in (0xDE, 0xDF):
        n = t & 0x0F if t <= 0x8F else struct.unpack(">H" if t == 0xDE else ">I",
                                                       take(2 if t == 0xDE else 4))[0]
        out = {}
        for _ in range(n):
            k, i = unpack(buf, i)
            v, i = unpack(buf, i)
            out[k if not isinstance(k, bytes) else k.decode(errors="replace")] = v
        return out, i
    fixed = {0xC0: None, 0xC2: False, 0xC3: True}
    if t in fixed:
        return fixed[t], i
    ints = {0xCC: ">B", 0xCD: ">H", 0xCE: ">I", 0xCF: ">Q",
            0xD0: ">b", 0xD1: ">h", 0xD2: ">i", 0xD3: ">q", 0xCA: ">f", 0xCB: ">d"}
    if t in ints:
        fmt = ints[t]
        return struct.unpack(fmt, take(struct.calcsize(fmt)))[0], i
    lens = {0xD9: ">B", 0xDA: ">H", 0xDB: ">I", 0xC4: ">B", 0xC5: ">H", 0xC6: ">I"}
    if t in lens:
        fmt = lens[t]
        n = struct.unpack(fmt, take(struct.calcsize(fmt)))[0]
        return (raw(n) if t in (0xD9, 0xDA, 0xDB) else take(n)), i
    if t in (0xD4, 0xD5, 0xD6, 0xD7, 0xD8):  # fixext: skip
        take(1 + {0xD4: 1, 0xD5: 2, 0xD6: 4, 0xD7: 8, 0xD8: 16}[t])
        return None, i
    raise ValueError(f"msgpack type {t:#x}")


class Rpc:
    """One connection to an agent's RPC port (Serf's agent RPC protocol)."""

    def __init__(self, addr: str, timeout: float = 10.0):
        host, port = addr.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=timeout)
        self.buf = b""
        self.seq = 0
        self.call("handshake", {"Version": 1})

    def send(self, command: str, body=None) -> int:
        self.seq += 1
        data = pack({"Command": command, "Seq": self.seq})
        if body is not None:
            data += pack(body)
        self.sock.sendall(data)
        return self.seq

    def feed(self, data: bytes) -> None:
        self.buf += data

    def next_obj(self):
        """One decoded object from the buffer, or NeedMore."""
        obj, i = unpack(self.buf)
        self.buf = self.buf[i:]
        return obj

    def recv(self):
        while True:
            try:
                return self.next_obj()
            except NeedMore:
                data = self.sock.recv(65536)
                if not data:
                    raise EOFError("agent closed the RPC connection")
                self.feed(data)

    def call(self, command: str, body=None, has_body: bool = False):
        seq = self.send(command, body)
        header = self.recv()
        if header.get("Seq") != seq or header.get("Error"):
            raise RuntimeError(f"{command}: {header}")
        return self.recv() if has_body else None

    def members(self) -> list[dict]:
        return self.call("members", has_body=True)["Members"]

    def close(self) -> None:
        self.sock.close()


# ----------------------------------------------------------------- agents

def free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class Agent:
    def __init__(self, system: str, cmd: list[str], index: int, workdir: Path, stamp: str):
        self.system = system
        self.index = index
        self.name = f"a{index:02d}"
        self.port, self.rpc_port = free_ports(2)
        self.addr = f"127.0.0.1:{self.port}"
        self.rpc = f"127.0.0.1:{self.rpc_port}"
        self.user_path = workdir / f"{self.name}.user"
        self.failed_path = workdir / f"{self.name}.failed"
        self.joined_path = workdir / f"{self.name}.joined"
        self.log_path = workdir / f"{self.name}.log"
        self.args = cmd + [
            "agent", "-node", self.name, "-bind", self.addr, "-rpc-addr", self.rpc,
            "-profile", "lan", "-log-level", "info",
            "-event-handler", f"user={stamp} {self.user_path}",
            "-event-handler", f"member-failed={stamp} {self.failed_path}",
            "-event-handler", f"member-join={stamp} {self.joined_path}",
        ]
        self.proc: Optional[subprocess.Popen] = None

    def start(self, join: Optional[str]) -> None:
        args = self.args + (["-join", join] if join else [])
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def rpc_client(self) -> Rpc:
        return Rpc(self.rpc)

    def memory_kb(self) -> dict[str, int]:
        """VmRSS and its anonymous and file-backed parts (/proc/PID/status),
        and Pss (/proc/PID/smaps_rollup): the file pages (mostly the binary's
        code) are shared by every agent of one system but count in full in
        each agent's RSS; Pss divides them among the processes mapping them."""
        out = {}
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            key = line.split(":")[0]
            if key in ("VmRSS", "RssAnon", "RssFile"):
                out[key] = int(line.split()[1])
        for line in Path(f"/proc/{self.pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                out["Pss"] = int(line.split()[1])
        return out

    def cpu_ticks(self) -> int:
        stat = Path(f"/proc/{self.pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2:].split()
        return int(fields[11]) + int(fields[12])  # utime, stime

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.kill(self.pid, signal.SIGCONT)
            self.proc.kill()
            self.proc.wait(timeout=10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass


def read_stamps(path: Path) -> list[tuple[float, str]]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text(errors="replace").splitlines():
        stamp, _, rest = line.partition(" ")
        try:
            out.append((float(stamp), rest))
        except ValueError:
            pass
    return out


class Cluster:
    def __init__(self, system: str, cmd: list[str], n: int, workdir: Path, stamp: str):
        self.system = system
        self.workdir = workdir
        self.agents = [Agent(system, cmd, i, workdir, stamp) for i in range(n)]

    def start(self, deadline: float = 120.0) -> float:
        """Starts every agent (each joining the first); seconds to convergence."""
        t0 = time.monotonic()
        first = self.agents[0]
        first.start(None)
        wait(lambda: self._answers(first), 15, f"{first.name} RPC")
        for a in self.agents[1:]:
            a.start(first.addr)
        for a in self.agents[1:]:
            wait(lambda a=a: self._answers(a), 30, f"{a.name} RPC")
        self.wait_converged(deadline)
        return time.monotonic() - t0

    def _answers(self, a: Agent) -> bool:
        if not a.alive():
            raise RuntimeError(f"{a.system} {a.name} exited: {a.log_path.read_text()[-2000:]}")
        try:
            a.rpc_client().close()
            return True
        except OSError:
            return False

    def alive_counts(self) -> list[int]:
        out = []
        for a in self.agents:
            c = a.rpc_client()
            try:
                out.append(sum(1 for m in c.members() if m["Status"] == "alive"))
            finally:
                c.close()
        return out

    def wait_converged(self, deadline: float) -> None:
        n = len(self.agents)
        wait(lambda: all(c == n for c in self.alive_counts()), deadline,
             f"every {self.system} agent to see {n} alive", interval=1.0)

    def stop(self) -> None:
        for a in self.agents:
            a.stop()


def wait(pred, deadline: float, what: str, interval: float = 0.1):
    end = time.monotonic() + deadline
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > end:
            raise TimeoutError(f"timed out after {deadline}s waiting for {what}")
        time.sleep(interval)


# ----------------------------------------------------------------- phases

def measure_idle(cluster: Cluster, window: float) -> dict:
    before = {a.name: a.cpu_ticks() for a in cluster.agents}
    t0 = time.monotonic()
    time.sleep(window)
    elapsed = time.monotonic() - t0
    after = {a.name: a.cpu_ticks() for a in cluster.agents}
    cpu = [100.0 * (after[n] - before[n]) / CLK_TCK / elapsed for n in before]
    mem = [a.memory_kb() for a in cluster.agents]
    rss = [m["VmRSS"] / 1024.0 for m in mem]
    anon = [m["RssAnon"] / 1024.0 for m in mem]
    file_ = [m["RssFile"] / 1024.0 for m in mem]
    pss = [m["Pss"] / 1024.0 for m in mem]
    return {
        "window_s": round(elapsed, 1),
        "rss_mb_mean": statistics.mean(rss), "rss_mb_median": statistics.median(rss),
        "rss_mb_min": min(rss), "rss_mb_max": max(rss),
        "rss_anon_mb_median": statistics.median(anon),
        "rss_file_mb_median": statistics.median(file_),
        "pss_mb_median": statistics.median(pss),
        "cpu_pct_mean": statistics.mean(cpu), "cpu_pct_median": statistics.median(cpu),
        "cpu_pct_max": max(cpu),
        "cpu_pct_total": sum(cpu),
    }


class Streams:
    """A `stream` subscription for user events on every agent, read by one
    thread; records (agent index, payload, monotonic time of arrival)."""

    def __init__(self, cluster: Cluster):
        self.sel = selectors.DefaultSelector()
        self.clients = []
        self.arrivals: list[tuple[int, str, float]] = []
        self.lock = threading.Lock()
        self.stop_flag = False
        for a in cluster.agents:
            c = a.rpc_client()
            c.call("stream", {"Type": "user"})
            c.sock.setblocking(False)
            self.sel.register(c.sock, selectors.EVENT_READ, (a.index, c))
            self.clients.append(c)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop_flag:
            for key, _ in self.sel.select(timeout=0.2):
                now = time.monotonic()
                index, c = key.data
                try:
                    data = c.sock.recv(65536)
                except BlockingIOError:
                    continue
                if not data:
                    self.sel.unregister(c.sock)
                    continue
                c.feed(data)
                while True:
                    try:
                        obj = c.next_obj()
                    except NeedMore:
                        break
                    if isinstance(obj, dict) and obj.get("Event") == "user":
                        payload = obj.get("Payload")
                        if isinstance(payload, bytes):
                            payload = payload.decode(errors="replace")
                        with self.lock:
                            self.arrivals.append((index, payload, now))

    def seen(self, payload: str) -> dict[int, float]:
        with self.lock:
            out: dict[int, float] = {}
            for index, p, t in self.arrivals:
                if p == payload and index not in out:
                    out[index] = t
            return out

    def close(self) -> None:
        self.stop_flag = True
        self.thread.join(timeout=2)
        for c in self.clients:
            c.close()


def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile."""
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(round(q / 100.0 * len(s) + 0.5)) - 1))
    return s[k]


def measure_events(cluster: Cluster, count: int, per_event_deadline: float,
                   rng: random.Random) -> dict:
    n = len(cluster.agents)
    streams = Streams(cluster)
    senders = [a.rpc_client() for a in cluster.agents]
    stream_last, handler_last, missed, slow = [], [], 0, 0
    rows = []
    try:
        for i in range(count):
            payload = f"ev{i:04d}-{rng.randrange(1 << 30)}"
            via = i % n
            t0_wall = time.time()
            t0 = time.monotonic()
            senders[via].call("event", {"Name": "bench", "Payload": payload.encode(),
                                        "Coalesce": False})
            try:
                wait(lambda: len(streams.seen(payload)) == n, per_event_deadline,
                     "stream deliveries", interval=0.005)
            except TimeoutError:
                missed += 1
            got = streams.seen(payload)
            last = max(got.values()) - t0 if got else float("nan")

            def handler_times():
                out = {}
                for a in cluster.agents:
                    hits = [t for t, p in read_stamps(a.user_path) if p == payload]
                    if hits:
                        out[a.index] = hits[0]
                return out
            try:
                # Handlers run after delivery; give them a moment past it.
                hs = wait(lambda: (lambda h: h if len(h) == n else None)(handler_times()),
                          5.0, "handler stamps", interval=0.02)
            except TimeoutError:
                hs = handler_times()
            hlast = (max(hs.values()) - t0_wall) if len(hs) == n else float("nan")
            if len(got) == n:
                stream_last.append(last)
                if last > 2.0:
                    slow += 1
            if len(hs) == n:
                handler_last.append(hlast)
            rows.append({"event": i, "via": cluster.agents[via].name,
                         "stream_last_s": last, "handler_last_s": hlast,
                         "stream_got": len(got), "handler_got": len(hs)})
            time.sleep(0.3 + rng.random() * 0.4)
    finally:
        streams.close()
        for c in senders:
            c.close()
    out = {"events": count, "missed_within_deadline": missed,
           "slower_than_2s": slow, "rows": rows}
    for label, xs in (("stream", stream_last), ("handler", handler_last)):
        if xs:
            out[f"{label}_p50_ms"] = 1000 * pct(xs, 50)
            out[f"{label}_p99_ms"] = 1000 * pct(xs, 99)
            out[f"{label}_max_ms"] = 1000 * max(xs)
            out[f"{label}_mean_ms"] = 1000 * statistics.mean(xs)
    return out


def torture(cluster: Cluster, seconds: float, fraction: float, seed: int,
            pause: tuple[float, float], run: tuple[float, float]) -> dict:
    n = len(cluster.agents)
    rng = random.Random(seed)
    k = max(1, int(round(n * fraction)))
    # Never the first agent: it is where everyone joined.
    paused = sorted(rng.sample(range(1, n), k))
    paused_names = {cluster.agents[i].name for i in paused}
    stop_at = time.monotonic() + seconds
    t_start = time.time()
    stops = [0]
    lock = threading.Lock()
    halt = threading.Event()

    def pauser(index: int) -> None:
        r = random.Random(seed * 1000 + index)
        a = cluster.agents[index]
        while time.monotonic() < stop_at and not halt.is_set():
            halt.wait(r.uniform(*run))
            if halt.is_set() or time.monotonic() >= stop_at:
                break
            os.kill(a.pid, signal.SIGSTOP)
            with lock:
                stops[0] += 1
            halt.wait(r.uniform(*pause))
            os.kill(a.pid, signal.SIGCONT)
        os.kill(a.pid, signal.SIGCONT)

    threads = [threading.Thread(target=pauser, args=(i,), daemon=True) for i in paused]
    for t in threads:
        t.start()
    try:
        for t in threads:
            t.join()
    finally:
        halt.set()
        for t in threads:
            t.join(timeout=10)
        for i in paused:
            try:
                os.kill(cluster.agents[i].pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
    t_end = time.time()
    # Let the cluster heal, then read the handlers' logs.
    t_heal = time.monotonic()
    healed = True
    try:
        cluster.wait_converged(120)
    except TimeoutError:
        healed = False
    heal_s = time.monotonic() - t_heal
    time.sleep(5)  # coalescing windows (3 s) flush
    observers = [a for a in cluster.agents if a.name not in paused_names]
    failed_events = []  # (observer, subject, time)
    for a in observers:
        for t, line in read_stamps(a.failed_path):
            if t >= t_start:
                failed_events.append((a.name, line.split("\t")[0], t))
    subjects = [s for _, s, _ in failed_events]
    joins = sum(1 for a in observers for t, _ in read_stamps(a.joined_path) if t >= t_start)
    return {
        "seconds": round(t_end - t_start, 1), "paused_agents": sorted(paused_names),
        "pauses": stops[0], "observers": len(observers),
        "false_failed_events": len(failed_events),
        "about_paused": sum(1 for s in subjects if s in paused_names),
        "about_never_paused": sum(1 for s in subjects if s not in paused_names),
        "distinct_subjects": len(set(subjects)),
        "observers_with_any": len({o for o, _, _ in failed_events}),
        "member_join_events_after_start": joins,
        "healed": healed, "heal_s": round(heal_s, 1),
    }


# ------------------------------------------------------------------ main

def build_stamp(workdir: Path) -> str:
    out = workdir / "stamp"
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise SystemExit("a C compiler (cc) is needed to build bench/serf/stamp.c")
    subprocess.run([cc, "-O2", "-o", str(out), str(HERE / "stamp.c")], check=True)
    return str(out)


def run_system(system: str, cmd: list[str], args, base: Path, stamp: str,
               registry: list) -> dict:
    workdir = base / system
    workdir.mkdir()
    cluster = Cluster(system, cmd, args.agents, workdir, stamp)
    registry.append(cluster)
    result: dict = {"system": system}
    try:
        log(f"{system}: starting {args.agents} agents")
        result["converge_s"] = round(cluster.start(), 1)
        log(f"{system}: converged in {result['converge_s']} s; settling {args.settle} s")
        time.sleep(args.settle)
        if "idle" in args.phases:
            log(f"{system}: idle window {args.idle_seconds} s")
            result["idle"] = measure_idle(cluster, args.idle_seconds)
            log(f"{system}: idle {fmt(result['idle'])}")
        if "events" in args.phases:
            log(f"{system}: {args.events} user events")
            result["events"] = measure_events(cluster, args.events, args.event_deadline,
                                              random.Random(args.seed))
            log(f"{system}: events {fmt({k: v for k, v in result['events'].items() if k != 'rows'})}")
        if "torture" in args.phases:
            result["torture"] = {}
            for spec in args.torture.split(","):
                pause, run = parse_torture(spec)
                log(f"{system}: torture {spec} for {args.torture_seconds} s")
                t = torture(cluster, args.torture_seconds, args.paused_fraction, args.seed,
                            pause, run)
                result["torture"][spec] = t
                log(f"{system}: torture {spec}: {fmt(t)}")
    finally:
        cluster.stop()
    return result


def parse_torture(spec: str) -> tuple[tuple[float, float], tuple[float, float]]:
    """"PMIN-PMAX/RMIN-RMAX" (seconds stopped / seconds running)."""
    pause, run = spec.split("/")
    lo, hi = pause.split("-")
    rlo, rhi = run.split("-")
    return (float(lo), float(hi)), (float(rlo), float(rhi))


def fmt(d: dict) -> str:
    return ", ".join(f"{k}={round(v, 2) if isinstance(v, float) else v}" for k, v in d.items())


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--praetor", default=os.environ.get("PRAETOR_BIN", "target/release/praetor"))
    p.add_argument("--serf", default=shutil.which("serf") or "/usr/bin/serf")
    p.add_argument("--systems", default="praetor,serf")
    p.add_argument("--phases", default="idle,events,torture")
    p.add_argument("--agents", type=int, default=32)
    p.add_argument("--settle", type=float, default=15.0,
                   help="seconds between convergence and the idle window")
    p.add_argument("--idle-seconds", type=float, default=60.0)
    p.add_argument("--events", type=int, default=30)
    p.add_argument("--event-deadline", type=float, default=40.0,
                   help="per event; more than a lan push-pull period (30 s)")
    p.add_argument("--torture-seconds", type=float, default=240.0)
    p.add_argument("--paused-fraction", type=float, default=0.25)
    p.add_argument("--torture", default="1-3/1-3",
                   help="comma-separated schedules, each PMIN-PMAX/RMIN-RMAX: stopped for "
                        "a random PMIN..PMAX s, then running for RMIN..RMAX s; each schedule "
                        "runs --torture-seconds on the same cluster, one after the other")
    p.add_argument("--seed", type=int, default=5)
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    p.add_argument("--json", help="write the results here as JSON")
    args = p.parse_args()
    args.phases = set(args.phases.split(","))

    commands = {"praetor": [str(Path(args.praetor).resolve()), "serf"], "serf": [args.serf]}
    for name in args.systems.split(","):
        if not Path(commands[name][0]).exists():
            raise SystemExit(f"{name} binary not found: {commands[name][0]}")

    base = Path(tempfile.mkdtemp(prefix="serf-bench."))
    registry: list[Cluster] = []

    def on_signal(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGTERM, on_signal)
    results = []
    try:
        stamp = build_stamp(base)
        for name in args.systems.split(","):
            results.append(run_system(name, commands[name], args, base, stamp, registry))
    finally:
        for c in registry:
            c.stop()
        if args.keep:
            log(f"work directory kept: {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)
    meta = {"agents": args.agents, "idle_seconds": args.idle_seconds, "events": args.events,
            "torture_seconds": args.torture_seconds, "seed": args.seed,
            "praetor": args.praetor, "serf": args.serf, "nproc": os.cpu_count(),
            "loadavg_end": os.getloadavg(), "date": time.strftime("%Y-%m-%d %H:%M:%S")}
    doc = {"meta": meta, "results": results}
    if args.json:
        Path(args.json).write_text(json.dumps(doc, indent=2))
    print(json.dumps({"meta": meta, "results": [
        {k: ({kk: vv for kk, vv in v.items() if kk != "rows"} if isinstance(v, dict) else v)
         for k, v in r.items()} for r in results]}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
