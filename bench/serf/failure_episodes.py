#!/usr/bin/env python3
"""What the torture figures of serf_bench.py are made of: how long it takes
to declare a stopped agent failed, and how long "failed" lasts, read from
the agents' member lists (RPC `members`, polled every 0.2 s), not from the
handlers, which see member events only after the agent's coalescing (3 s,
or 1 s without news) has dropped any failed-then-alive flip shorter than
that.

    bench/serf/failure_episodes.py detect  --praetor PATH [--pause 12 --reps 6]
    bench/serf/failure_episodes.py episodes --praetor PATH [--seconds 90 --pause 4-8]

`detect`: one agent at a time is stopped (SIGSTOP) for --pause seconds; the
time until one of three observers shows it failed. `episodes`: a quarter of
the agents stopped for a random --pause seconds, running 1-3 s in between
(serf_bench's torture schedule); every stretch in which one of three
never-stopped observers shows an agent failed, with its length. Each
system's cluster runs on its own, praetor first; every process is stopped
at the end.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import serf_bench as sb  # noqa: E402


def statuses(observers, names) -> list[dict]:
    out = []
    for a in observers:
        c = a.rpc_client()
        try:
            out.append({m["Name"]: m["Status"] for m in c.members() if m["Name"] in names})
        finally:
            c.close()
    return out


def detect(cluster: sb.Cluster, pause: float, reps: int) -> list:
    observers = [cluster.agents[i] for i in (0, 5, 10)]
    results = []
    for k in range(reps):
        victim = cluster.agents[20 + k % 8]
        os.kill(victim.pid, signal.SIGSTOP)
        t0 = time.monotonic()
        failed_at = None
        try:
            while time.monotonic() - t0 < pause:
                if any(s.get(victim.name) == "failed"
                       for s in statuses(observers, {victim.name})):
                    failed_at = round(time.monotonic() - t0, 2)
                    break
                time.sleep(0.2)
        finally:
            os.kill(victim.pid, signal.SIGCONT)
        results.append(failed_at)
        sb.log(f"{cluster.system}: {victim.name} stopped {pause} s: failed after {failed_at} s")
        cluster.wait_converged(60)
        time.sleep(4)
    return results


def episodes(cluster: sb.Cluster, seconds: float, pause: tuple[float, float],
             seed: int) -> dict:
    n = len(cluster.agents)
    rng = random.Random(seed)
    paused = sorted(rng.sample(range(1, n), n // 4))
    paused_names = {cluster.agents[i].name for i in paused}
    observers = [a for a in cluster.agents if a.name not in paused_names][:3]
    everyone = {a.name for a in cluster.agents}
    stop_at = time.monotonic() + seconds
    t0 = time.monotonic()
    pauses: list[float] = []
    halt = threading.Event()

    def pauser(i: int) -> None:
        r = random.Random(seed * 1000 + i)
        a = cluster.agents[i]
        while time.monotonic() < stop_at and not halt.is_set():
            halt.wait(r.uniform(1, 3))
            if halt.is_set():
                break
            os.kill(a.pid, signal.SIGSTOP)
            d = r.uniform(*pause)
            halt.wait(d)
            os.kill(a.pid, signal.SIGCONT)
            pauses.append(d)

    threads = [threading.Thread(target=pauser, args=(i,), daemon=True) for i in paused]
    for t in threads:
        t.start()
    since: dict[str, float] = {}
    found = []
    try:
        while time.monotonic() < stop_at + 5:
            now = time.monotonic() - t0
            failed = {m for s in statuses(observers, everyone) for m, st in s.items()
                      if st == "failed"}
            for m in failed - set(since):
                since[m] = now
            for m in set(since) - failed:
                found.append((m, round(since[m], 1), round(now - since.pop(m), 1)))
            time.sleep(0.2)
    finally:
        halt.set()
        for t in threads:
            t.join(timeout=10)
        for i in paused:
            os.kill(cluster.agents[i].pid, signal.SIGCONT)
    lengths = [d for _, _, d in found]
    return {
        "pauses": len(pauses), "pauses_over_7s": sum(1 for d in pauses if d > 7),
        "episodes": len(found),
        "about_never_paused": sum(1 for m, _, _ in found if m not in paused_names),
        "episode_s_min": min(lengths, default=None), "episode_s_max": max(lengths, default=None),
        "list": found,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("mode", choices=["detect", "episodes"])
    p.add_argument("--praetor", default=os.environ.get("PRAETOR_BIN", "target/release/praetor"))
    p.add_argument("--serf", default=shutil.which("serf") or "/usr/bin/serf")
    p.add_argument("--systems", default="praetor,serf")
    p.add_argument("--agents", type=int, default=32)
    p.add_argument("--pause", default=None,
                   help="detect: seconds (default 12); episodes: MIN-MAX (default 4-8)")
    p.add_argument("--reps", type=int, default=6)
    p.add_argument("--seconds", type=float, default=90.0)
    p.add_argument("--seed", type=int, default=5)
    args = p.parse_args()
    commands = {"praetor": [str(Path(args.praetor).resolve()), "serf"], "serf": [args.serf]}
    base = Path(tempfile.mkdtemp(prefix="serf-episodes."))
    clusters = []
    try:
        stamp = sb.build_stamp(base)
        for name in args.systems.split(","):
            work = base / name
            work.mkdir()
            cluster = sb.Cluster(name, commands[name], args.agents, work, stamp)
            clusters.append(cluster)
            cluster.start()
            time.sleep(10)
            if args.mode == "detect":
                res = detect(cluster, float(args.pause or 12), args.reps)
                print(f"{name}: stopped {args.pause or 12} s, failed after {res} s")
            else:
                lo, hi = (float(x) for x in (args.pause or "4-8").split("-"))
                res = episodes(cluster, args.seconds, (lo, hi), args.seed)
                print(f"{name}: " + ", ".join(f"{k}={v}" for k, v in res.items()))
            cluster.stop()
    finally:
        for c in clusters:
            c.stop()
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
