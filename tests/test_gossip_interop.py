"""Interop: our memberlist node (crates/gossip, example `gossip_node`) in one
cluster with three real `serf agent` processes, plaintext and encrypted.

The node is `target/debug/examples/gossip_node` next to $PRAETOR_BIN, built
by `cargo build --workspace --all-targets`. It prints one JSON line per
membership event and takes `members` and `leave` on stdin.

Serf is the reference peer (DESIGN.md, "Real peers"): without it the tests
skip on a developer's machine and fail in CI.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Callable, Optional

import pytest

from praetor_harness import clean_env, free_ports, praetor_binary, wait_until

SERF = shutil.which("serf")
START_DEADLINE = 10.0  # a process answers within this
CONVERGE_DEADLINE = 15.0  # everyone sees a join (or a graceful leave)
FAIL_DEADLINE = 30.0  # a killed node is declared failed/dead
CLI_TIMEOUT = 10.0

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


@pytest.fixture(scope="module")
def gossip_node_bin() -> Path:
    if SERF is None:
        if os.environ.get("CI"):
            pytest.fail("`serf` is not installed, and CI must run the interop tests "
                        "(scripts/test installs it)", pytrace=False)
        pytest.skip("`serf` is not installed")
    path = praetor_binary().parent / "examples" / "gossip_node"
    if not path.exists():
        pytest.fail(f"gossip_node not found at {path}: run "
                    "`cargo build --workspace --all-targets`", pytrace=False)
    return path


class SerfAgent:
    """One `serf agent` on 127.0.0.1 with its own bind and RPC ports."""

    def __init__(self, name: str, workdir: Path, key: Optional[str]):
        self.name = name
        self.port, self.rpc_port = free_ports(2)
        self.addr = f"127.0.0.1:{self.port}"
        self.rpc = f"127.0.0.1:{self.rpc_port}"
        self.log_path = workdir / f"{name}.log"
        self.args = [SERF, "agent", "-node", name, "-bind", self.addr,
                     "-rpc-addr", self.rpc, "-profile", "lan", "-log-level", "debug"]
        if key:
            self.args += ["-encrypt", key]
        self.proc: Optional[subprocess.Popen] = None

    def start(self) -> "SerfAgent":
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(self.args, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, env=clean_env(),
                                         start_new_session=True)
        wait_until(lambda: self._alive() and self.members(), START_DEADLINE,
                   what=f"serf agent {self.name} answering RPC")
        return self

    def _alive(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"serf agent {self.name} exited ({self.proc.returncode})\n"
                                 f"{self.log()}")
        return True

    def cli(self, command: str, *args: str) -> subprocess.CompletedProcess:
        # Go's flag package stops at the first positional argument.
        return subprocess.run([SERF, command, "-rpc-addr", self.rpc, *args], capture_output=True,
                              text=True, timeout=CLI_TIMEOUT, env=clean_env())

    def members(self) -> dict[str, dict]:
        """name -> serf's member record (status, tags, addr, ...)."""
        r = self.cli("members", "-format", "json")
        if r.returncode != 0:
            return {}
        return {m["name"]: m for m in json.loads(r.stdout)["members"]}

    def status_of(self, node: str) -> Optional[str]:
        m = self.members().get(node)
        return m["status"] if m else None

    def join(self, addr: str) -> None:
        r = self.cli("join", addr)
        assert r.returncode == 0, f"serf join {addr} from {self.name}: {r.stdout}{r.stderr}"

    def leave(self) -> None:
        """A graceful `serf leave`; the agent exits afterwards."""
        r = self.cli("leave")
        assert r.returncode == 0, f"serf leave {self.name}: {r.stdout}{r.stderr}"
        assert self.proc is not None
        self.proc.wait(timeout=START_DEADLINE)

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=START_DEADLINE)

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=START_DEADLINE)

    def log(self) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return f"--- serf {self.name} ---\n{text[-4000:]}"


class GossipNode:
    """The gossip_node example: JSON lines out, commands in."""

    def __init__(self, binary: Path, name: str, workdir: Path, key: Optional[str]):
        self.name = name
        self.port = free_ports(1)[0]
        self.addr = f"127.0.0.1:{self.port}"
        self.args = [str(binary), "-node", name, "-bind", self.addr, "-profile", "lan"]
        if key:
            self.args += ["-encrypt", key]
        self.stderr_path = workdir / f"{name}.stderr.log"
        self.proc: Optional[subprocess.Popen] = None
        self.lines: list[dict] = []
        self.raw: list[str] = []
        self.lock = threading.Lock()

    def start(self, join: list[str]) -> "GossipNode":
        args = list(self.args)
        for a in join:
            args += ["-join", a]
        with open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=err, text=True, bufsize=1, env=clean_env(),
                                         start_new_session=True)
        threading.Thread(target=self._read, daemon=True).start()
        self.wait_for(lambda e: e.get("event") == "ready", START_DEADLINE, "the node to start")
        if join:
            joined = self.wait_for(lambda e: e.get("event") == "joined", START_DEADLINE + 10,
                                   "the join to finish")
            assert joined["count"] >= 1, f"join failed: {joined}\n{self.log()}"
        return self

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            with self.lock:
                self.raw.append(line)
                try:
                    self.lines.append(json.loads(line))
                except ValueError:
                    pass

    def events(self) -> list[dict]:
        with self.lock:
            return list(self.lines)

    def wait_for(self, pred: Callable[[dict], bool], deadline: float, what: str,
                 after: int = 0) -> dict:
        def find():
            if self.proc is not None and self.proc.poll() is not None and not any(
                    pred(e) for e in self.events()[after:]):
                raise AssertionError(f"gossip_node exited ({self.proc.returncode})\n{self.log()}")
            return next((e for e in self.events()[after:] if pred(e)), None)
        try:
            return wait_until(find, deadline, what=what)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.log()}") from None

    def send(self, command: str) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()

    def members(self) -> dict[str, dict]:
        """name -> {"state", "tags", "addr"}, asked over stdin."""
        mark = len(self.events())
        self.send("members")
        e = self.wait_for(lambda e: e.get("event") == "members", START_DEADLINE,
                          "a members listing", after=mark)
        return {m["node"]: m for m in e["members"]}

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=START_DEADLINE)

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=START_DEADLINE)

    def log(self) -> str:
        err = self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""
        with self.lock:
            out = "".join(self.raw)
        return f"--- gossip_node stdout ---\n{out[-4000:]}\n--- stderr ---\n{err[-4000:]}"


class Cluster:
    """Three joined serf agents, and our node once `add_node` is called."""

    def __init__(self, binary: Path, workdir: Path, key: Optional[str]):
        self.binary = binary
        self.workdir = workdir
        self.key = key
        self.serfs: list[SerfAgent] = []
        self.node: Optional[GossipNode] = None

    def start_serfs(self) -> None:
        for i in range(3):
            agent = SerfAgent(f"s{i + 1}", self.workdir, self.key)
            self.serfs.append(agent)
            agent.start()
            if i > 0:
                agent.join(self.serfs[0].addr)
        names = {a.name for a in self.serfs}
        for a in self.serfs:
            wait_until(lambda: all(a.status_of(n) == "alive" for n in names), CONVERGE_DEADLINE,
                       what=f"{a.name} to see the three serf agents alive")

    def add_node(self) -> GossipNode:
        self.node = GossipNode(self.binary, "praetor1", self.workdir, self.key)
        self.node.start([self.serfs[0].addr])
        return self.node

    def wait_serfs_see(self, status: str, deadline: float,
                       agents: Optional[list[SerfAgent]] = None) -> None:
        assert self.node is not None
        for a in agents or self.serfs:
            try:
                wait_until(lambda: a.status_of(self.node.name) == status, deadline,
                           interval=0.2, what=f"{a.name} to show {self.node.name} {status}")
            except AssertionError as exc:
                raise AssertionError(f"{exc}\n{a.log()}\n{self.node.log()}") from None

    def close(self) -> None:
        if self.node is not None:
            self.node.close()
        for a in self.serfs:
            a.close()

    def logs(self) -> str:
        parts = [a.log() for a in self.serfs]
        if self.node is not None:
            parts.append(self.node.log())
        return "\n".join(parts)


@pytest.fixture(params=["plain", "encrypted"])
def cluster(request, gossip_node_bin, tmp_path):
    key = base64.b64encode(os.urandom(32)).decode() if request.param == "encrypted" else None
    c = Cluster(gossip_node_bin, tmp_path, key)
    try:
        c.start_serfs()
        yield c
    finally:
        c.close()


def test_serf_and_our_node_see_each_other_alive(cluster):
    node = cluster.add_node()
    cluster.wait_serfs_see("alive", CONVERGE_DEADLINE)
    for a in cluster.serfs:
        assert a.members()[node.name]["tags"] == {"role": "praetor"}, a.name
    want = {a.name for a in cluster.serfs}

    def all_alive():
        ours = node.members()
        return all(ours.get(n, {}).get("state") == "alive" for n in want) and ours
    ours = wait_until(all_alive, CONVERGE_DEADLINE, interval=0.2,
                      what="our node to see the three serf agents alive")
    assert ours[node.name]["tags"] == {"role": "praetor"}
    # Serf's members come with the tags Serf put in their meta.
    assert all("role" not in ours[n]["tags"] for n in want)

    # A fourth serf agent joins through our node: Serf's push-pull is
    # answered by us, and everyone learns of the newcomer.
    s4 = SerfAgent("s4", cluster.workdir, cluster.key)
    cluster.serfs.append(s4)
    s4.start()
    s4.join(node.addr)
    names = want | {"s4", node.name}
    for a in cluster.serfs:
        wait_until(lambda: all(a.status_of(n) == "alive" for n in names), CONVERGE_DEADLINE,
                   interval=0.2, what=f"{a.name} to see everyone alive")
    node.wait_for(lambda e: e.get("event") == "join" and e.get("node") == "s4",
                  CONVERGE_DEADLINE, "a join event for s4")
    stats = _stats(node)
    assert stats["streams_in"] >= 1 and stats["malformed"] == 0, stats
    assert stats["packets_in"] > 0 and stats["packets_out"] > 0, stats


def _stats(node: GossipNode) -> dict:
    mark = len(node.events())
    node.send("stats")
    return node.wait_for(lambda e: e.get("event") == "stats", START_DEADLINE, "stats",
                         after=mark)


def test_a_killed_node_is_failed_in_serf(cluster):
    node = cluster.add_node()
    cluster.wait_serfs_see("alive", CONVERGE_DEADLINE)
    node.kill9()
    cluster.wait_serfs_see("failed", FAIL_DEADLINE)


def test_a_killed_serf_agent_is_dead_to_us(cluster):
    node = cluster.add_node()
    cluster.wait_serfs_see("alive", CONVERGE_DEADLINE)
    victim = cluster.serfs[2]
    node.wait_for(lambda e: e.get("event") == "join" and e.get("node") == victim.name,
                  CONVERGE_DEADLINE, f"a join event for {victim.name}")
    mark = len(node.events())
    victim.kill9()
    node.wait_for(lambda e: e.get("event") == "leave" and e.get("node") == victim.name,
                  FAIL_DEADLINE, f"a leave event for {victim.name}", after=mark)
    leave = next(e for e in node.events()[mark:]
                 if e.get("event") == "leave" and e.get("node") == victim.name)
    assert leave["state"] == "dead", leave
    assert node.members()[victim.name]["state"] == "dead"


def test_our_graceful_leave_is_left_in_serf(cluster):
    node = cluster.add_node()
    cluster.wait_serfs_see("alive", CONVERGE_DEADLINE)
    node.send("leave")
    done = node.wait_for(lambda e: e.get("event") == "left", 10.0, "our leave to finish")
    assert done["gossiped"], done
    assert node.proc is not None and node.proc.wait(timeout=START_DEADLINE) == 0
    cluster.wait_serfs_see("left", CONVERGE_DEADLINE)


def test_a_serf_leave_is_left_to_us(cluster):
    node = cluster.add_node()
    cluster.wait_serfs_see("alive", CONVERGE_DEADLINE)
    leaver = cluster.serfs[1]
    node.wait_for(lambda e: e.get("event") == "join" and e.get("node") == leaver.name,
                  CONVERGE_DEADLINE, f"a join event for {leaver.name}")
    mark = len(node.events())
    leaver.leave()
    leave = node.wait_for(lambda e: e.get("event") == "leave" and e.get("node") == leaver.name,
                          CONVERGE_DEADLINE, f"a leave event for {leaver.name}", after=mark)
    assert leave["state"] == "left", leave
    assert node.members()[leaver.name]["state"] == "left"
    # The other serf agents agree.
    for a in (cluster.serfs[0], cluster.serfs[2]):
        wait_until(lambda: a.status_of(leaver.name) == "left", CONVERGE_DEADLINE,
                   interval=0.2, what=f"{a.name} to show {leaver.name} left")


def test_a_node_with_the_wrong_key_cannot_join(cluster, gossip_node_bin, tmp_path):
    # Plaintext serf gets an encrypted node; encrypted serf a different key.
    other_key = base64.b64encode(os.urandom(16)).decode()
    port = free_ports(1)[0]
    args = [str(gossip_node_bin), "-node", "intruder", "-bind", f"127.0.0.1:{port}",
            "-encrypt", other_key, "-join", cluster.serfs[0].addr]
    r = subprocess.run(args, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                       timeout=30, env=clean_env())
    assert r.returncode == 1, r.stdout + r.stderr
    assert "could not join" in r.stderr, r.stderr
    joined = [json.loads(line) for line in r.stdout.splitlines() if '"joined"' in line]
    assert joined and joined[0]["count"] == 0, r.stdout
    for a in cluster.serfs:
        assert "intruder" not in a.members(), a.name
