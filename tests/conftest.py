"""Fixtures for praetor's process tests (real binary, real HTTP, real CLI)."""

from __future__ import annotations

import os
import re
import uuid
from pathlib import Path

import pytest

from cluster_harness import Cluster
from netns_harness import Netns, netns_unavailable
from praetor_harness import Agent, close_agents, praetor_binary, run_cli


@pytest.fixture(scope="session")
def praetor_bin() -> Path:
    """Path to the praetor binary: $PRAETOR_BIN or <repo>/target/debug/praetor."""
    path = praetor_binary()
    if not path.exists():
        pytest.fail(f"praetor binary not found at {path}: run `cargo build -p praetor` "
                    "or set PRAETOR_BIN", pytrace=False)
    return path


class AgentFactory:
    """Creates agents for one test (or module); closes all of them at the end."""

    def __init__(self, binary: Path, base: Path):
        self.binary = binary
        self.base = base
        self.agents: list[Agent] = []

    def new(self, *, start: bool = True, name: str | None = None, **kw) -> Agent:
        name = name or f"agent{len(self.agents)}"
        agent = Agent(self.binary, self.base / name, name=name, **kw)
        self.agents.append(agent)
        if start:
            agent.start()
        return agent

    def close_all(self) -> None:
        close_agents(reversed(self.agents))


@pytest.fixture
def agents(praetor_bin, tmp_path):
    """Factory for extra agents in one test: agents.new(**Agent kwargs)."""
    factory = AgentFactory(praetor_bin, tmp_path)
    try:
        yield factory
    finally:
        factory.close_all()


@pytest.fixture
def agent(agents) -> Agent:
    """A fresh `praetor agent -dev -node test-node -http-port <free>` for one test."""
    return agents.new(name="agent")


@pytest.fixture(scope="module")
def shared_agent(praetor_bin, tmp_path_factory) -> Agent:
    """One agent per test module for read-mostly tests; use the `prefix` fixture."""
    factory = AgentFactory(praetor_bin, tmp_path_factory.mktemp("shared"))
    try:
        yield factory.new(name="shared")
    finally:
        factory.close_all()


@pytest.fixture
def prefix(request) -> str:
    """A key prefix unique to this test (Consul-safe characters only)."""
    name = re.sub(r"[^A-Za-z0-9_-]+", "-", request.node.name).strip("-")[:40]
    return f"{name}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def cli(praetor_bin):
    """cli(*args, env=None, input=None) -> CompletedProcess (bytes)."""
    def run(*args, env=None, input=None, timeout=30.0, cwd=None):
        return run_cli(praetor_bin, args, env=env, input=input, timeout=timeout, cwd=cwd)
    return run


IN_CI = os.environ.get("CI", "").lower() == "true"


def skip_unless_ci(why: str) -> None:
    """Skips a test whose means are missing here; under CI=true, where they
    must exist, fails it instead."""
    if IN_CI:
        pytest.fail(f"{why} (CI=true: this test must run)", pytrace=False)
    pytest.skip(why)


@pytest.fixture
def netns_factory():
    """make(n=3, clients=0, **Netns kwargs) -> Netns (tests/netns_harness.py).
    Skips without root or `ip netns` (fails under CI=true); every Netns made
    is closed at the end and must leave nothing behind."""
    why = netns_unavailable()
    if why:
        skip_unless_ci(why)
    made: list[Netns] = []

    def make(n: int = 3, clients: int = 0, **kw) -> Netns:
        net = Netns(n, clients, **kw)
        made.append(net)
        return net

    try:
        yield make
    finally:
        for net in made:
            net.close()
            left = net.leftovers()
            assert not left, f"netns teardown left {left}"


@pytest.fixture
def cluster(praetor_bin, tmp_path):
    """Three servers on 127.0.0.x that formed a cluster; stopped after."""
    c = Cluster(praetor_bin, tmp_path)
    try:
        yield c.start()
    finally:
        c.close()
