"""Three (or more) real praetor servers on 127.0.0.x, for the consensus tests.

Each server binds its own loopback address (127.0.0.<base+i>) and shares the
ports with the others, as servers on separate hosts would: `-retry-join`
names the first server's address (its LAN gossip port is implied), and the
servers find each other's server port from the gossip tags.
Ports are chosen free on 127.0.0.1 and then checked on every address used.
"""

from __future__ import annotations

import json
import random
import signal
import socket
import time
from pathlib import Path
from typing import Optional

import requests

from praetor_harness import Agent, close_agents, free_ports, wait_until

FORM_DEADLINE = 30.0


def _port_free(ip: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((ip, port))
            return True
        except OSError:
            return False


class AddressedAgent(Agent):
    """A (non-dev) agent bound to one address of its own with the given
    ports, read from a config file with `config`, and a data dir of its
    own: how a server, or a client on a host of its own, runs."""

    def __init__(self, binary: Path, workdir: Path, *, ip: str, node: str, ports: dict,
                 config: dict, config_name: str, extra_args: list[str]):
        workdir.mkdir(parents=True, exist_ok=True)
        conf = workdir / config_name
        conf.write_text(json.dumps({"ports": ports, **config}))
        data = workdir / "data"
        data.mkdir(exist_ok=True)
        super().__init__(
            binary, workdir, node=node, http_port=ports["http"], http_flag=False,
            isolate_ports=False, dev=False, name=node, config_files=[conf],
            extra_args=[*extra_args, f"-data-dir={data}", f"-bind={ip}", f"-client={ip}"])
        self.ip = ip
        self.url = f"http://{ip}:{ports['http']}"
        self.data_dir = data


class Server(AddressedAgent):
    """One `praetor agent -server` on its own loopback address."""

    def __init__(self, binary: Path, workdir: Path, *, ip: str, node: str, ports: dict,
                 expect: int, join: str, extra_config: Optional[dict] = None):
        config = {
            "performance": {"raft_multiplier": 1},
            # Servers start together: one that tries to join before the
            # first has bound its gossip port retries within a second, not
            # after Consul's 30 s.
            "retry_interval": "1s",
        }
        if extra_config:
            for key, value in extra_config.items():
                if key == "ports":
                    # Changes to the cluster's ports, not a replacement.
                    ports = {**ports, **value}
                elif isinstance(value, dict) and isinstance(config.get(key), dict):
                    config[key].update(value)
                else:
                    config[key] = value
        super().__init__(
            binary, workdir, ip=ip, node=node, ports=ports, config=config,
            config_name="server.json",
            extra_args=["-server", f"-bootstrap-expect={expect}", f"-retry-join={join}"])
        self.rpc_addr = f"{ip}:{ports['server']}"

    def restart(self) -> "Server":
        """Starts the process again on the same data (after a stop or kill)."""
        if self.proc is not None and self.proc.poll() is None:
            raise AssertionError(f"{self.name} is still running")
        self.stopped_by_test = False
        self.spawn()
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class Cluster:
    """n servers expecting each other; closes them all at the end."""

    def __init__(self, binary: Path, base: Path, n: int = 3, *, first_ip: int = 0,
                 extra_config: Optional[dict] = None, names: Optional[list[str]] = None):
        first = first_ip or random.randint(20, 200)
        self.ips = [f"127.0.0.{first + i}" for i in range(n)]
        for _ in range(20):
            http, server, lan, wan = free_ports(4)
            ports = {"http": http, "server": server, "serf_lan": lan, "serf_wan": wan,
                     "dns": -1, "grpc": -1}
            if all(_port_free(ip, p) for ip in self.ips for p in (http, server, lan, wan)):
                break
        else:
            raise AssertionError("no common free ports on the loopback addresses")
        self.ports = ports
        names = names or [f"s{i + 1}" for i in range(n)]
        self.servers = [
            Server(binary, base / name, ip=ip, node=name, ports=ports,
                   expect=n, join=self.ips[0], extra_config=extra_config)
            for name, ip in zip(names, self.ips)
        ]

    def start(self) -> "Cluster":
        for s in self.servers:
            s.spawn()
        for s in self.servers:
            s.wait_ready(FORM_DEADLINE)
        self.wait_converged()
        return self

    def running(self) -> list[Server]:
        return [s for s in self.servers if s.alive()]

    def leader(self, among: Optional[list[Server]] = None, deadline: float = 15.0) -> Server:
        """The server every running one (or `among`) names as leader."""
        among = among if among is not None else self.running()

        def agreed():
            seen = set()
            for s in among:
                r = s.get("/v1/status/leader", timeout=2)
                seen.add(r.json() if r.status_code == 200 else "")
            if len(seen) == 1:
                addr = seen.pop()
                for s in self.servers:
                    if s.rpc_addr == addr and s.alive():
                        return s
            return None

        return wait_until(agreed, deadline, interval=0.05, what="an agreed leader")

    def wait_converged(self, voters: int = 0, deadline: float = FORM_DEADLINE) -> None:
        voters = voters or len(self.servers)

        def done():
            for s in self.running():
                peers = s.get("/v1/status/peers", timeout=2).json()
                if len(peers) != voters:
                    return False
            return self.leader(deadline=2.0)

        wait_until(done, deadline, interval=0.1, what=f"{voters} voters and a leader")

    def followers(self) -> list[Server]:
        leader = self.leader()
        return [s for s in self.running() if s is not leader]

    def close(self) -> None:
        for s in self.running():
            s.send_signal(signal.SIGCONT)  # a paused server could not stop
        close_agents(self.servers)


def kv_value(server: Server, key: str, **params) -> Optional[bytes]:
    """The value of `key` as `server` answers it (None on 404)."""
    r = server.get("/v1/kv/" + key, params={**params, "raw": ""}, timeout=10)
    if r.status_code == 404:
        return None
    assert r.status_code == 200, (r.status_code, r.text)
    return r.content


def put_ok(server: Server, key: str, value: str, timeout: float = 10) -> bool:
    """PUT, True only on an acknowledged `true`."""
    try:
        r = server.put("/v1/kv/" + key, data=value.encode(), timeout=timeout)
    except requests.RequestException:
        return False
    return r.status_code == 200 and r.text.strip() == "true"


def monotonic_ms() -> float:
    return time.monotonic() * 1000.0


def client_agent(agents, cluster: Cluster, name: str, config: Optional[dict] = None):
    """A client agent (not started) on 127.0.0.1 with ports of its own,
    retry-joining the first server's gossip port every second; `config`
    adds settings to its configuration file."""
    conf = agents.base / f"{name}.json"
    conf.parent.mkdir(parents=True, exist_ok=True)
    conf.write_text(json.dumps({"retry_interval": "1s", **(config or {})}))
    join = f"{cluster.ips[0]}:{cluster.ports['serf_lan']}"
    args = [f"-data-dir={agents.base / name / 'data'}", "-bind=127.0.0.1",
            f"-retry-join={join}"]
    return agents.new(name=name, node=name, dev=False, isolate_ports=True, start=False,
                      config_files=[conf], extra_args=args)
