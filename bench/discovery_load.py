#!/usr/bin/env python3
"""Helpers for bench/discovery.sh: fill a catalog, register many checks,
sample a process's CPU and memory. Talks to praetor over plain HTTP."""

from __future__ import annotations

import http.client
import json
import random
import sys
import time


def put(conn, path, body):
    conn.request("PUT", path, body=json.dumps(body), headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    data = resp.read()
    if resp.status != 200:
        raise SystemExit(f"PUT {path}: {resp.status} {data!r}")


def fill(port: int, services: int, instances: int, nodes: int) -> None:
    """`services` x `instances` catalog entries spread over `nodes` nodes, each
    with a passing service check."""
    conn = http.client.HTTPConnection("127.0.0.1", port)
    for s in range(services):
        for k in range(instances):
            n = (s * instances + k) % nodes
            sid = f"svc-{s}-{k}"
            put(conn, "/v1/catalog/register", {
                "Node": f"node-{n}",
                "Address": f"10.{n // 65536 % 256}.{n // 256 % 256}.{n % 256}",
                "Service": {"ID": sid, "Service": f"svc-{s}", "Port": 8000 + k, "Tags": [f"v{k % 3}"]},
                "Check": {"CheckID": f"check-{sid}", "Name": "alive", "ServiceID": sid, "Status": "passing"},
            })


def checks(port: int, count: int, http_target: str, tcp_target: str, interval: str) -> None:
    """`count` checks on the agent: half HTTP, half TCP."""
    conn = http.client.HTTPConnection("127.0.0.1", port)
    for i in range(count):
        if i % 2 == 0:
            body = {"Name": f"http-{i}", "HTTP": f"http://{http_target}/v1/status/leader", "Interval": interval}
        else:
            body = {"Name": f"tcp-{i}", "TCP": tcp_target, "Interval": interval}
        put(conn, "/v1/agent/check/register", body)


def queries(path: str, services: int, count: int) -> None:
    """A dnsperf query file: random service lookups, A and SRV."""
    rng = random.Random(7)
    with open(path, "w") as f:
        for _ in range(count):
            s = rng.randrange(services)
            f.write(f"svc-{s}.service.consul {'SRV' if rng.random() < 0.3 else 'A'}\n")


def sample(pid: int, seconds: float) -> None:
    """CPU (percent of one core) over `seconds`, and RSS at the end."""
    hz = 100

    def cpu_ticks():
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])

    t0, c0 = time.monotonic(), cpu_ticks()
    time.sleep(seconds)
    t1, c1 = time.monotonic(), cpu_ticks()
    with open(f"/proc/{pid}/status") as f:
        rss = next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))
    cpu = (c1 - c0) / hz / (t1 - t0) * 100
    print(f"cpu_percent={cpu:.1f} rss_mb={rss / 1024:.1f} over={t1 - t0:.0f}s")


def main() -> None:
    cmd = sys.argv[1]
    if cmd == "fill":
        fill(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
    elif cmd == "checks":
        checks(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5], sys.argv[6])
    elif cmd == "queries":
        queries(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    elif cmd == "sample":
        sample(int(sys.argv[2]), float(sys.argv[3]))
    else:
        raise SystemExit(f"unknown command {cmd}")


if __name__ == "__main__":
    main()
