#!/usr/bin/env python3
"""Cluster benchmark: three praetor servers and CLIENTS client agents in one
LAN pool on this machine, and the same number of real `serf` agents as the
gossip peer. Measures, in one run:

1. server CPU with no clients, then with every client joined and idle
   (the hybrid's claim: servers stay nearly idle while clients gossip);
2. per-agent idle CPU and RSS: praetor client agents vs serf agents;
3. death to DNS: kill -9 of a client with a service, until a server's DNS
   stops answering with it (DEATHS times);
4. catalog propagation: a service registered on one client, until a
   blocking query on another client returns it (PROPAGATIONS times; p50,
   p99).

    bench/cluster/run.sh   (builds release binaries, then runs this)

Environment: PRAETOR (release binary), CLIENTS (200), IDLE_SECS (60),
DEATHS (5), PROPAGATIONS (200), SERF (serf binary; `serf` on PATH).
Everything it starts it stops.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))

import requests  # noqa: E402

from cluster_harness import Cluster  # noqa: E402
from praetor_harness import free_ports, wait_until  # noqa: E402

CLIENTS = int(os.environ.get("CLIENTS", "200"))
IDLE_SECS = float(os.environ.get("IDLE_SECS", "60"))
DEATHS = int(os.environ.get("DEATHS", "5"))
PROPAGATIONS = int(os.environ.get("PROPAGATIONS", "200"))
CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_percent(pids: list[int], secs: float) -> float:
    """Summed CPU of `pids` over `secs` of wall time, in % of one core."""
    before = sum(cpu_seconds(p) for p in pids)
    time.sleep(secs)
    after = sum(cpu_seconds(p) for p in pids)
    return 100.0 * (after - before) / secs


class Client:
    def __init__(self, binary: Path, base: Path, name: str, join: str, dns: bool):
        self.name = name
        http, lan, wan, server, dns_port = free_ports(5)
        self.http = f"http://127.0.0.1:{http}"
        self.dns_port = dns_port if dns else -1
        conf = base / f"{name}.json"
        conf.write_text(json.dumps({
            "ports": {"http": http, "serf_lan": lan, "serf_wan": wan, "server": server,
                      "dns": self.dns_port, "grpc": -1},
            "retry_interval": "1s",
        }))
        self.log = open(base / f"{name}.log", "wb")
        self.proc = subprocess.Popen(
            [str(binary), "agent", "-node", name, f"-data-dir={base / name}",
             "-bind=127.0.0.1", f"-retry-join={join}", "-config-file", str(conf),
             "-log-level=warn"],
            stdout=self.log, stderr=subprocess.STDOUT)

    def stop(self, sig=signal.SIGKILL):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.log.close()


def alive_members(url: str) -> int:
    r = requests.get(f"{url}/v1/agent/members", timeout=5)
    return sum(1 for m in r.json() if m["Status"] == 1)


def dig_a(port: int, name: str) -> list[str]:
    out = subprocess.run(["dig", "@127.0.0.1", "-p", str(port), "+short", "+time=1",
                          "+tries=1", name, "A"], capture_output=True, text=True, timeout=10)
    return [line for line in out.stdout.split() if line and not line.startswith(";")]


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def serf_pool(n: int, base: Path) -> tuple[list[subprocess.Popen], list]:
    serf = os.environ.get("SERF") or shutil.which("serf")
    procs, logs = [], []
    first = None
    for i in range(n):
        bind, rpc = free_ports(2)
        log = open(base / f"serf{i}.log", "wb")
        args = [serf, "agent", f"-node=serf{i}", f"-bind=127.0.0.1:{bind}", "-retry-interval=1s",
                f"-rpc-addr=127.0.0.1:{rpc}", "-log-level=warn"]
        if first:
            args.append(f"-retry-join={first}")
        else:
            first = f"127.0.0.1:{bind}"
        procs.append(subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT))
        logs.append((log, rpc))
    return procs, logs


def main() -> None:
    binary = Path(os.environ["PRAETOR"]).resolve()
    base = Path(tempfile.mkdtemp(prefix="praetor-cluster-bench-", dir="/var/tmp"))
    cluster = Cluster(binary, base, 3)
    clients: list[Client] = []
    serfs: list[subprocess.Popen] = []
    results = {"clients": CLIENTS}
    try:
        cluster.start()
        server_pids = [s.proc.pid for s in cluster.servers]
        results["server_cpu_no_clients_pct"] = cpu_percent(server_pids, IDLE_SECS) / 3
        join = f"{cluster.ips[0]}:{cluster.ports['serf_lan']}"
        for i in range(CLIENTS):
            clients.append(Client(binary, base, f"c{i}", join, dns=i < 2))
        # A port picked free can be taken by another agent before it binds:
        # start such a client again on fresh ports.
        time.sleep(5)
        for i, c in enumerate(clients):
            if c.proc.poll() is not None:
                c.stop()
                clients[i] = Client(binary, base, f"c{i}", join, dns=i < 2)
        s1 = cluster.servers[0].url
        t0 = time.monotonic()
        wait_until(lambda: alive_members(s1) >= CLIENTS + 3, 300, interval=1.0,
                   what=f"{CLIENTS} clients alive in the pool")
        results["pool_converged_s"] = time.monotonic() - t0
        wait_until(lambda: len(requests.get(f"{s1}/v1/catalog/nodes", timeout=10).json())
                   >= CLIENTS + 3, 300, interval=1.0, what="every client in the catalog")
        time.sleep(10)  # let joins, registrations and first coordinates settle
        results["server_cpu_idle_clients_pct"] = cpu_percent(server_pids, IDLE_SECS) / 3
        client_pids = [c.proc.pid for c in clients]
        results["client_cpu_idle_pct"] = cpu_percent(client_pids, IDLE_SECS) / CLIENTS
        results["client_rss_mb_median"] = statistics.median(rss_mb(p) for p in client_pids)
        results["server_rss_mb_median"] = statistics.median(rss_mb(p) for p in server_pids)

        # Catalog propagation: register on clients[0], watch on clients[1].
        writer, watcher = clients[0], clients[1]
        lat = []
        for i in range(PROPAGATIONS):
            name = f"prop{i}"
            idx = int(requests.get(f"{watcher.http}/v1/catalog/service/{name}",
                                   timeout=10).headers["X-Consul-Index"])
            seen = {}

            def watch():
                while True:
                    r = requests.get(f"{watcher.http}/v1/catalog/service/{name}",
                                     params={"index": idx, "wait": "10s"}, timeout=30)
                    if r.json():
                        seen["t"] = time.monotonic()
                        return

            t = threading.Thread(target=watch)
            t.start()
            time.sleep(0.05)  # the blocking query is parked on the server
            start = time.monotonic()
            r = requests.put(f"{writer.http}/v1/agent/service/register",
                             json={"Name": name, "Port": 1000 + i}, timeout=10)
            assert r.status_code == 200, r.text
            t.join(timeout=30)
            lat.append((seen["t"] - start) * 1000)
        results["propagation_ms_p50"] = pct(lat, 0.5)
        results["propagation_ms_p99"] = pct(lat, 0.99)

        # Death to DNS: a client with a service, kill -9, until DNS drops it.
        dns_port = cluster.ports["dns"] if cluster.ports.get("dns", -1) > 0 else None
        dns_port = dns_port or clients[1].dns_port
        deaths = []
        for k in range(DEATHS):
            victim = clients[10 + k]
            svc = f"victim{k}"
            r = requests.put(f"{victim.http}/v1/agent/service/register",
                             json={"Name": svc, "Port": 80}, timeout=10)
            assert r.status_code == 200, r.text
            wait_until(lambda: dig_a(dns_port, f"{svc}.service.consul"), 30, interval=0.2,
                       what=f"{svc} in DNS")
            start = time.monotonic()
            victim.stop(signal.SIGKILL)
            wait_until(lambda: not dig_a(dns_port, f"{svc}.service.consul"), 120,
                       interval=0.05, what=f"{svc} out of DNS")
            deaths.append(time.monotonic() - start)
        results["death_to_dns_s"] = deaths
        results["death_to_dns_s_median"] = statistics.median(deaths)
    finally:
        for c in clients:
            c.stop()
        cluster.close()

    # The peer: the same number of real serf agents, idle.
    try:
        serfs, logs = serf_pool(CLIENTS, base)
        time.sleep(30)
        pids = [p.pid for p in serfs if p.poll() is None]
        results["serf_agents_running"] = len(pids)
        results["serf_cpu_idle_pct"] = cpu_percent(pids, IDLE_SECS) / max(1, len(pids))
        results["serf_rss_mb_median"] = statistics.median(rss_mb(p) for p in pids)
    finally:
        for p in serfs:
            p.kill()
            p.wait()
    print(json.dumps(results, indent=2))
    if not os.environ.get("KEEP"):
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
