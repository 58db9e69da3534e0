"""`praetor serf <command>` against real `serf agent`s, next to the real
`serf` CLI, and the real `serf` CLI against praetor's RPC server.

Two directions:

* praetor's client: every command is run twice against the same real agent,
  once with `serf` and once with `praetor serf`, and the outputs and exit
  codes must agree (where Go prints a map in random order, lines are
  compared as sets).
* praetor's server: `fake_agent` (crates/serf-rpc/examples, built next to
  $PRAETOR_BIN by `cargo build --workspace --all-targets`) serves a fixed
  two-node cluster; the real `serf` CLI must work against it, and print
  exactly what `praetor serf` prints.

Serf is the reference peer (DESIGN.md, "Real peers"): without it the tests
skip on a developer's machine and fail in CI.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Optional

import pytest

from praetor_harness import clean_env, free_port, free_ports, praetor_binary, wait_until

SERF = shutil.which("serf")
START_DEADLINE = 10.0  # an agent answers RPC within this
CONVERGE_DEADLINE = 15.0  # two agents see each other
CLI_TIMEOUT = 20.0

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


def _need_serf() -> str:
    if SERF is None:
        if os.environ.get("CI"):
            pytest.fail("`serf` is not installed, and CI must run the interop tests "
                        "(scripts/test installs it)", pytrace=False)
        pytest.skip("`serf` is not installed")
    return SERF


@pytest.fixture(scope="module")
def serf_bin() -> str:
    return _need_serf()


@pytest.fixture(scope="module")
def praetor_cmd(serf_bin) -> Path:
    path = praetor_binary()
    if not path.exists():
        pytest.fail(f"praetor binary not found at {path}: run `cargo build -p praetor` "
                    "or set PRAETOR_BIN", pytrace=False)
    return path


def run(argv: list, env: Optional[dict] = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True,
                          timeout=CLI_TIMEOUT, env=clean_env(env), stdin=subprocess.DEVNULL)


def both(praetor: Path, rpc: str, command: str, *args: str, env: Optional[dict] = None):
    """(serf's result, praetor's result) of one command against one agent.

    The flags come first: Go's flag package stops at the first argument.
    """
    go = run([SERF, command, "-rpc-addr", rpc, *args], env)
    ours = run([praetor, "serf", command, "-rpc-addr", rpc, *args], env)
    return go, ours


def without_phantoms(text: str) -> str:
    """`serf query` output without the records from no node that serf's
    agent pushes by a race (its stream loop reads the query's channels
    after they close at the deadline, before its own deadline timer fires:
    `Ack from ''`, `Response from '': `), with the totals corrected.
    praetor's client drops such records; Go's prints them."""
    lines = text.splitlines(keepends=True)
    acks = sum(1 for line in lines if line.rstrip("\n") == "Ack from ''")
    responses = sum(1 for line in lines if line.startswith("Response from '': "))
    if not acks and not responses:
        return text
    out = []
    for line in lines:
        bare = line.rstrip("\n")
        if bare == "Ack from ''" or line.startswith("Response from '': "):
            continue
        for label, phantoms in (("Total Acks: ", acks), ("Total Responses: ", responses)):
            if bare.startswith(label) and bare[len(label):].isdigit():
                line = f"{label}{int(bare[len(label):]) - phantoms}\n"
        out.append(line)
    return "".join(out)


def assert_same(go, ours, *, unordered: bool = False) -> None:
    """Same exit code and standard output (as sets of lines if unordered)."""
    detail = (f"\n--- serf (exit {go.returncode}) ---\n{go.stdout}{go.stderr}"
              f"\n--- praetor (exit {ours.returncode}) ---\n{ours.stdout}{ours.stderr}")
    assert go.returncode == ours.returncode, detail
    if unordered:
        assert sorted(go.stdout.splitlines()) == sorted(ours.stdout.splitlines()), detail
    else:
        assert go.stdout == ours.stdout, detail


class SerfAgent:
    """One real `serf agent` on 127.0.0.1 with its own bind and RPC ports."""

    def __init__(self, name: str, workdir: Path, *extra: str, auth: Optional[str] = None):
        self.name = name
        self.auth = auth
        if auth:
            # The agent takes its RPC token from a config file only.
            config = workdir / f"serf-{name}.json"
            config.write_text(json.dumps({"rpc_auth": auth}))
            extra = (*extra, "-config-file", str(config))
        self.port, self.rpc_port = free_ports(2)
        self.addr = f"127.0.0.1:{self.port}"
        self.rpc = f"127.0.0.1:{self.rpc_port}"
        self.log_path = workdir / f"serf-{name}.log"
        self.args = [SERF, "agent", "-node", name, "-bind", self.addr, "-rpc-addr", self.rpc,
                     "-profile", "local", "-log-level", "debug", *extra]
        self.proc: Optional[subprocess.Popen] = None

    def start(self) -> "SerfAgent":
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(self.args, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, env=clean_env(),
                                         start_new_session=True)
        wait_until(self.answers, START_DEADLINE, what=f"serf agent {self.name} answering RPC")
        return self

    def answers(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"serf agent {self.name} exited ({self.proc.returncode})\n"
                                 f"{self.log()}")
        auth = ["-rpc-auth", self.auth] if self.auth else []
        return run([SERF, "info", "-rpc-addr", self.rpc, *auth]).returncode == 0

    def members(self) -> dict:
        r = run([SERF, "members", "-rpc-addr", self.rpc, "-format", "json"])
        # A failed call is an error, not an empty list: "x not in members"
        # must not pass because the agent did not answer.
        assert r.returncode == 0, f"serf members -rpc-addr {self.rpc}: {r.stdout} {r.stderr}"
        return {m["name"]: m for m in json.loads(r.stdout)["members"]}

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=START_DEADLINE)

    def log(self) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return f"--- serf {self.name} ---\n{text[-4000:]}"


class Agents:
    """Starts agents for one test or module; kills all of them at the end."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.started: list = []

    def new(self, name: str, *extra: str, auth: Optional[str] = None) -> SerfAgent:
        agent = SerfAgent(name, self.workdir, *extra, auth=auth)
        self.started.append(agent)
        return agent.start()

    def close(self) -> None:
        for a in reversed(self.started):
            a.close()


@pytest.fixture
def agents(serf_bin, tmp_path):
    group = Agents(tmp_path)
    try:
        yield group
    finally:
        group.close()


# Both agents answer the query "ping" with "pong <node>".
PING_HANDLER = "query:ping=echo pong $SERF_SELF_NAME"


@pytest.fixture(scope="module")
def cluster(serf_bin, praetor_cmd, tmp_path_factory):
    """Agents a (role=web) and b (role=db), joined by `praetor serf join`."""
    group = Agents(tmp_path_factory.mktemp("serf-cluster"))
    try:
        a = group.new("a", "-tag", "role=web", "-event-handler", PING_HANDLER)
        b = group.new("b", "-tag", "role=db", "-event-handler", PING_HANDLER)
        r = run([praetor_cmd, "serf", "join", "-rpc-addr", b.rpc, a.addr])
        assert r.returncode == 0, r.stdout + r.stderr
        assert r.stdout == "Successfully joined cluster by contacting 1 nodes.\n"
        for agent in (a, b):
            wait_until(lambda agent=agent: sorted(
                n for n, m in agent.members().items() if m["status"] == "alive") == ["a", "b"],
                CONVERGE_DEADLINE, what=f"{agent.name} to see both members alive")
        yield a, b
    finally:
        group.close()


# ---------------------------------------------------------------- members

@pytest.mark.parametrize("args", [
    [],
    ["-detailed"],
    ["-status", "alive"],
    ["-status", "failed"],
    ["-name", "a"],
    ["-name", "[ab]"],
    ["-tag", "role=web"],
    ["-tag", "role=d.*"],
    ["-tag", "role=nope"],
    ["-role", "web"],
    ["-tag", "broken"],
    ["-format", "xml"],
    ["-status", "("],
])
def test_members_text(cluster, praetor_cmd, args):
    a, _ = cluster
    go, ours = both(praetor_cmd, a.rpc, "members", *args)
    assert_same(go, ours, unordered=True)


def test_members_json(cluster, praetor_cmd):
    a, _ = cluster
    go, ours = both(praetor_cmd, a.rpc, "members", "-format", "json")
    assert go.returncode == ours.returncode == 0
    key = lambda m: m["name"]  # noqa: E731 - the agent's order is Go map order
    theirs = sorted(json.loads(go.stdout)["members"], key=key)
    mine = sorted(json.loads(ours.stdout)["members"], key=key)
    assert mine == theirs
    # Go's MarshalIndent layout: two-space indents, "key": value.
    assert ours.stdout.startswith('{\n  "members": [\n    {\n      "name": ')


def test_env_address_and_refused_connection(cluster, praetor_cmd):
    a, _ = cluster
    env = {"SERF_RPC_ADDR": a.rpc}
    go = run([SERF, "members"], env)
    ours = run([praetor_cmd, "serf", "members"], env)
    assert_same(go, ours, unordered=True)
    assert ours.returncode == 0

    closed = f"127.0.0.1:{free_port()}"
    go, ours = both(praetor_cmd, closed, "members")
    assert_same(go, ours)
    assert ours.stdout == (f"Error connecting to Serf agent: dial tcp {closed}: "
                           "connect: connection refused\n")


# ------------------------------------------------------- events, queries

@pytest.mark.parametrize("args,usage", [
    (["deploy"], False),
    (["deploy", "v1"], False),
    (["-coalesce=false", "deploy", "v2"], False),
    (["big", "x" * 600], False),
    ([], True),
    (["a", "b", "c"], True),
])
def test_event(cluster, praetor_cmd, args, usage):
    a, _ = cluster
    go, ours = both(praetor_cmd, a.rpc, "event", *args)
    if usage:
        # The same complaint and exit code; the help text is praetor's own.
        assert go.returncode == ours.returncode == 1
        assert go.stdout.splitlines()[0] == ours.stdout.splitlines()[0]
    else:
        assert_same(go, ours)


def test_query_text_and_json(cluster, praetor_cmd):
    a, _ = cluster
    go, ours = both(praetor_cmd, a.rpc, "query", "-timeout", "2s", "ping", "hi")
    go.stdout = without_phantoms(go.stdout)
    assert_same(go, ours, unordered=True)
    assert sorted(ours.stdout.splitlines()) == sorted([
        "Query 'ping' dispatched", "Ack from 'a'", "Ack from 'b'",
        "Response from 'a': pong a", "Response from 'b': pong b",
        "Total Acks: 2", "Total Responses: 2"])
    assert ours.stdout.splitlines()[0] == "Query 'ping' dispatched"
    assert ours.stdout.splitlines()[-2:] == ["Total Acks: 2", "Total Responses: 2"]

    go, ours = both(praetor_cmd, a.rpc, "query", "-format", "json", "-timeout", "2s", "ping")
    assert go.returncode == ours.returncode == 0
    theirs, mine = json.loads(go.stdout), json.loads(ours.stdout)
    theirs["Acks"] = [n for n in theirs["Acks"] if n]  # serf's phantom records
    theirs["Responses"].pop("", None)
    assert sorted(mine["Acks"]) == sorted(theirs["Acks"]) == ["a", "b"]
    assert mine["Responses"] == theirs["Responses"] == {"a": "pong a\n", "b": "pong b\n"}


@pytest.mark.parametrize("args", [
    ["-node", "b", "-timeout", "1s", "ping"],
    ["-tag", "role=web", "-timeout", "1s", "ping"],
    ["-no-ack", "-timeout", "1s", "ping"],
    ["-relay-factor", "2", "-timeout", "1s", "ping"],
    ["-relay-factor", "300", "ping"],
    ["-tag", "oops", "ping"],
    ["-format", "yaml", "ping"],
])
def test_query_filters_and_errors(cluster, praetor_cmd, args):
    a, _ = cluster
    go, ours = both(praetor_cmd, a.rpc, "query", *args)
    go.stdout = without_phantoms(go.stdout)
    assert_same(go, ours, unordered=True)


def test_reachability(cluster, praetor_cmd):
    a, _ = cluster
    go, ours = both(praetor_cmd, a.rpc, "reachability")
    assert_same(go, ours)
    assert ours.stdout.splitlines() == [
        "Total members: 2, live members: 2", "Starting reachability test...",
        "Successfully contacted all live nodes"]


# ------------------------------------------------------------ info, rtt

def test_info(cluster, praetor_cmd):
    a, _ = cluster
    go, ours = both(praetor_cmd, a.rpc, "info", "-format", "json")
    assert go.returncode == ours.returncode == 0
    theirs, mine = json.loads(go.stdout), json.loads(ours.stdout)
    assert mine.keys() == theirs.keys()
    for section in mine:
        assert mine[section].keys() == theirs[section].keys(), section
    assert mine["agent"] == theirs["agent"] == {"name": "a"}
    assert mine["tags"] == theirs["tags"] == {"role": "web"}

    go, ours = both(praetor_cmd, a.rpc, "info")
    assert go.returncode == ours.returncode == 0
    # Same lines apart from counters that move between the two calls.
    moving = re.compile(r"^\t(goroutines|event_time|query_time|member_time|health_score) = ")
    strip = lambda text: [l for l in text.splitlines() if not moving.match(l)]  # noqa: E731
    assert strip(ours.stdout) == strip(go.stdout)
    assert ours.stdout.startswith("agent:\n\tname = a\n")


def test_rtt(cluster, praetor_cmd):
    a, _ = cluster
    # Coordinates exist once the agents have probed each other.
    wait_until(lambda: run([SERF, "rtt", "-rpc-addr", a.rpc, "a", "b"]).returncode == 0,
               CONVERGE_DEADLINE, what="coordinates for a and b")
    # The estimate moves between calls: compare the shape.
    for args, pair in ((["a", "b"], "a <-> b"), (["b"], "b <-> a")):
        go, ours = both(praetor_cmd, a.rpc, "rtt", *args)
        assert go.returncode == ours.returncode == 0, go.stdout + ours.stdout
        shape = re.compile(rf"^Estimated {pair} rtt: \d+\.\d{{3}} ms\n$")
        assert shape.match(go.stdout), go.stdout
        assert shape.match(ours.stdout), ours.stdout
    go, ours = both(praetor_cmd, a.rpc, "rtt", "a", "ghost")
    assert_same(go, ours)
    assert ours.stdout == 'Could not find a coordinate for node "ghost"\n'
    go, ours = both(praetor_cmd, a.rpc, "rtt")
    assert go.returncode == ours.returncode == 1
    assert go.stdout.splitlines()[0] == ours.stdout.splitlines()[0]


# ------------------------------------------------- changes to the cluster

def test_tags(agents, praetor_cmd):
    a = agents.new("t", "-tag", "role=web", "-tag", "dc=east")
    go = run([SERF, "tags", "-rpc-addr", a.rpc, "-set", "one=1"])
    ours = run([praetor_cmd, "serf", "tags", "-rpc-addr", a.rpc, "-set", "two=2",
                "-delete", "dc"])
    assert_same(go, ours)
    assert ours.stdout == "Successfully updated agent tags\n"
    assert a.members()["t"]["tags"] == {"role": "web", "one": "1", "two": "2"}
    go, ours = both(praetor_cmd, a.rpc, "tags", "-set", "=bad")
    assert_same(go, ours)
    go, ours = both(praetor_cmd, a.rpc, "tags")
    assert go.returncode == ours.returncode == 1


def test_keys(agents, praetor_cmd, tmp_path):
    k1 = base64.b64encode(os.urandom(32)).decode()
    k2 = base64.b64encode(os.urandom(32)).decode()
    a = agents.new("ka", "-encrypt", k1)
    b = agents.new("kb", "-encrypt", k1)
    r = run([praetor_cmd, "serf", "join", "-rpc-addr", b.rpc, a.addr])
    assert r.returncode == 0, r.stdout
    wait_until(lambda: len(a.members()) == 2, CONVERGE_DEADLINE, what="encrypted join")

    go, ours = both(praetor_cmd, a.rpc, "keys", "-list")
    assert_same(go, ours)
    assert f"{k1}  [2/2]" in ours.stdout

    # Each change through praetor, then the same (idempotent) through serf.
    for flag, key, done in (("-install", k2, "Successfully installed key!"),
                            ("-use", k2, "Successfully changed primary key!"),
                            ("-remove", k1, "Successfully removed key!")):
        ours = run([praetor_cmd, "serf", "keys", "-rpc-addr", a.rpc, flag, key])
        go = run([SERF, "keys", "-rpc-addr", a.rpc, flag, key])
        assert_same(go, ours)
        assert ours.stdout.splitlines()[-1] == f"==> {done}"
        go, ours = both(praetor_cmd, a.rpc, "keys", "-list")
        assert_same(go, ours, unordered=True)

    # The primary key cannot be removed: both members refuse.
    go, ours = both(praetor_cmd, a.rpc, "keys", "-remove", k2)
    assert_same(go, ours, unordered=True)
    assert ours.returncode == 1
    assert "Error removing key: 2/2 nodes reported failure" in ours.stdout

    go, ours = both(praetor_cmd, a.rpc, "keys", "-install", k1, "-list")
    assert_same(go, ours)
    go, ours = both(praetor_cmd, a.rpc, "keys")
    assert go.returncode == ours.returncode == 1


def test_keys_without_encryption(agents, praetor_cmd):
    a = agents.new("plain")
    go, ours = both(praetor_cmd, a.rpc, "keys", "-list")
    assert_same(go, ours)
    assert ours.stdout.endswith("Failed to gather member keys: 1/1 nodes reported failure\n")


def test_force_leave_and_leave(agents, praetor_cmd):
    a = agents.new("fa")
    b = agents.new("fb")
    c = agents.new("fc")
    for other in (b, c):
        r = run([praetor_cmd, "serf", "join", "-replay", "-rpc-addr", other.rpc, a.addr])
        assert r.returncode == 0, r.stdout
    wait_until(lambda: len(a.members()) == 3, CONVERGE_DEADLINE, what="three members")

    go, ours = both(praetor_cmd, a.rpc, "force-leave", "ghost")
    assert_same(go, ours)
    go, ours = both(praetor_cmd, a.rpc, "force-leave")
    assert go.returncode == ours.returncode == 1
    assert go.stdout.splitlines()[0] == ours.stdout.splitlines()[0]

    # A killed member is failed; force-leave makes it left.
    c.proc.send_signal(signal.SIGKILL)
    c.proc.wait(timeout=START_DEADLINE)
    wait_until(lambda: a.members().get("fc", {}).get("status") == "failed", 30.0,
               what="fc to be failed")
    r = run([praetor_cmd, "serf", "force-leave", "-rpc-addr", a.rpc, "fc"])
    assert (r.returncode, r.stdout) == (0, "")
    wait_until(lambda: a.members().get("fc", {}).get("status") == "left", CONVERGE_DEADLINE,
               what="fc to be left")
    r = run([praetor_cmd, "serf", "force-leave", "-prune", "-rpc-addr", a.rpc, "fc"])
    assert r.returncode == 0, r.stdout
    wait_until(lambda: "fc" not in a.members(), CONVERGE_DEADLINE, what="fc pruned")

    # A graceful leave: the agent says so and exits.
    r = run([praetor_cmd, "serf", "leave", "-rpc-addr", b.rpc])
    assert (r.returncode, r.stdout) == (0, "Graceful leave complete\n")
    assert b.proc.wait(timeout=START_DEADLINE) == 0
    # The rest is serf to serf: normally "left"; on a loaded machine the
    # leave broadcast can lose to the failure detector ("failed").
    # Failure detection with no other member to confirm the suspicion
    # takes longer than a join: the same 30 s as for fc above.
    wait_until(lambda: a.members().get("fb", {}).get("status") in ("left", "failed"),
               30.0, what="fb to be gone")


def test_rpc_auth(agents, praetor_cmd):
    a = agents.new("auth", auth="s3cret")
    go, ours = both(praetor_cmd, a.rpc, "members")
    assert_same(go, ours)
    assert ours.stdout == "Error retrieving members: Authentication required\n"
    go, ours = both(praetor_cmd, a.rpc, "members", "-rpc-auth", "wrong")
    assert_same(go, ours)
    assert ours.stdout == "Error connecting to Serf agent: Invalid authentication token\n"
    go, ours = both(praetor_cmd, a.rpc, "members", env={"SERF_RPC_AUTH": "s3cret"})
    assert_same(go, ours)
    assert ours.stdout.startswith("auth  127.0.0.1:")


def test_monitor(agents, praetor_cmd, tmp_path):
    a = agents.new("mon")
    out_path = tmp_path / "monitor.out"
    with open(out_path, "wb") as out:
        proc = subprocess.Popen([str(praetor_cmd), "serf", "monitor", "-rpc-addr", a.rpc,
                                 "-log-level", "debug"], stdout=out, stderr=subprocess.STDOUT,
                                env=clean_env(), stdin=subprocess.DEVNULL)
    try:
        def saw(text):
            return lambda: text in out_path.read_text(errors="replace")
        # The monitor is attached once log lines arrive (the agent logs
        # accepting the monitor's own connection).
        wait_until(saw("agent.ipc: Accepted client"), CONVERGE_DEADLINE,
                   what="log lines in the monitor")
        r = run([SERF, "event", "-rpc-addr", a.rpc, "-coalesce=false", "hello", "p"])
        assert r.returncode == 0, r.stdout
        wait_until(saw('\tName: "hello"'), CONVERGE_DEADLINE, what="the event in the monitor")
        wait_until(saw("[DEBUG]"), CONVERGE_DEADLINE, what="a debug log line")
        text = out_path.read_text(errors="replace")
        assert '\tName: "hello"' in text, text
        assert '\tEvent: "user"' in text, text
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=START_DEADLINE) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# ------------------------------------------ the serf CLI against praetor

class FakeAgent:
    """crates/serf-rpc's fake_agent example: praetor's RPC server."""

    def __init__(self, binary: Path, workdir: Path, *extra: str):
        self.rpc = f"127.0.0.1:{free_port()}"
        self.out_path = workdir / "fake_agent.out"
        with open(self.out_path, "wb") as out:
            self.proc = subprocess.Popen([str(binary), "-rpc-addr", self.rpc, *extra],
                                         stdout=out, stderr=subprocess.STDOUT, env=clean_env(),
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        wait_until(lambda: self.proc.poll() is None and "listening on" in
                   self.out_path.read_text(errors="replace"),
                   START_DEADLINE, what="fake_agent listening")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=START_DEADLINE)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def fake_agent(serf_bin, praetor_cmd, tmp_path):
    binary = praetor_cmd.parent / "examples" / "fake_agent"
    if not binary.exists():
        pytest.fail(f"fake_agent not found at {binary}: run "
                    "`cargo build --workspace --all-targets`", pytrace=False)
    agents = []

    def start(*extra):
        agent = FakeAgent(binary, tmp_path, *extra)
        agents.append(agent)
        return agent
    try:
        yield start
    finally:
        for agent in agents:
            agent.close()


FAKE_COMMANDS = [
    (["members"], False),
    (["members", "-detailed"], False),
    (["members", "-format", "json"], False),
    (["members", "-name", "pe.*"], False),
    (["members", "-status", "failed"], False),
    (["members", "-tag", "role=db"], False),
    (["info"], False),
    (["info", "-format", "json"], False),
    (["event", "deploy", "v1"], False),
    (["event", "-coalesce=false", "deploy"], False),
    (["query", "-timeout", "300ms", "ping"], True),
    (["query", "-format", "json", "-timeout", "300ms", "ping", "x"], False),
    (["query", "-node", "peer", "-no-ack", "-timeout", "200ms", "ping"], False),
    (["rtt", "fake", "peer"], False),
    (["rtt", "peer"], False),
    (["rtt", "fake", "ghost"], False),
    (["join", "10.0.0.1", "10.0.0.2"], False),
    (["join", "unreachable:1"], False),
    (["force-leave", "ghost"], False),
    (["tags", "-set", "a=b", "-delete", "role"], False),
    (["keys", "-install", "aGVsbG8="], False),
    (["keys", "-use", "aGVsbG8="], False),
    (["keys", "-list"], False),
    (["keys", "-remove", "aGVsbG8="], False),
    (["reachability"], False),
]


def test_serf_cli_against_praetor_server(fake_agent, praetor_cmd):
    agent = fake_agent()
    for args, unordered in FAKE_COMMANDS:
        go, ours = both(praetor_cmd, agent.rpc, *args)
        assert_same(go, ours, unordered=unordered)
    # A few outputs spelled out, so that both agreeing on nonsense fails.
    go = run([SERF, "members", "-rpc-addr", agent.rpc])
    assert go.stdout == ("fake  127.0.0.1:7946  alive  a=b\n"
                         "peer  127.0.0.2:7947  alive  role=db\n")
    go = run([SERF, "rtt", "-rpc-addr", agent.rpc, "fake", "peer"])
    assert go.stdout == "Estimated fake <-> peer rtt: 0.520 ms\n"
    go = run([SERF, "keys", "-rpc-addr", agent.rpc, "-remove", "aGVsbG8="])
    assert go.returncode == 1
    assert go.stdout == ("==> Removing key on all members...\n"
                         "failed:  fake  Removing the primary key is not allowed\n\n"
                         "Error removing key: 1/1 nodes reported failure\n")
    go = run([SERF, "query", "-rpc-addr", agent.rpc, "-timeout", "300ms", "ping"])
    assert sorted(go.stdout.splitlines()) == sorted([
        "Query 'ping' dispatched", "Ack from 'fake'", "Ack from 'peer'",
        "Response from 'peer': ping from peer", "Total Acks: 2", "Total Responses: 1"])

    # force-leave changes the member list the serf CLI sees.
    go = run([SERF, "force-leave", "-rpc-addr", agent.rpc, "peer"])
    assert (go.returncode, go.stdout) == (0, "")
    go = run([SERF, "members", "-rpc-addr", agent.rpc, "-status", "left"])
    assert go.stdout == "peer  127.0.0.2:7947  left  role=db\n"


def test_serf_monitor_and_leave_against_praetor_server(fake_agent, tmp_path):
    agent = fake_agent()
    out_path = tmp_path / "serf-monitor.out"
    with open(out_path, "wb") as out:
        proc = subprocess.Popen([SERF, "monitor", "-rpc-addr", agent.rpc], stdout=out,
                                stderr=subprocess.STDOUT, env=clean_env(),
                                stdin=subprocess.DEVNULL)
    try:
        wait_until(lambda: out_path.read_text(errors="replace").count("[INFO] fake: tick") >= 2,
                   START_DEADLINE, what="log lines in serf monitor")
        # The default level is INFO: no debug lines.
        assert "[DEBUG]" not in out_path.read_text(errors="replace")
        r = run([SERF, "event", "-rpc-addr", agent.rpc, "deploy", "v9"])
        assert r.returncode == 0
        wait_until(lambda: 'Name: "deploy"' in out_path.read_text(errors="replace"),
                   START_DEADLINE, what="the event in serf monitor")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=START_DEADLINE) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    r = run([SERF, "leave", "-rpc-addr", agent.rpc])
    assert (r.returncode, r.stdout) == (0, "Graceful leave complete\n")
    assert agent.proc.wait(timeout=START_DEADLINE) == 0


def test_serf_cli_auth_against_praetor_server(fake_agent, praetor_cmd):
    agent = fake_agent("-rpc-auth", "tok")
    go, ours = both(praetor_cmd, agent.rpc, "members")
    assert_same(go, ours)
    assert ours.stdout == "Error retrieving members: Authentication required\n"
    go, ours = both(praetor_cmd, agent.rpc, "members", "-rpc-auth", "nope")
    assert_same(go, ours)
    assert ours.stdout == "Error connecting to Serf agent: Invalid authentication token\n"
    go, ours = both(praetor_cmd, agent.rpc, "info", "-rpc-auth", "tok")
    assert_same(go, ours)
    assert go.returncode == 0
