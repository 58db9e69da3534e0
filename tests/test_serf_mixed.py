"""A mixed Serf cluster: three `praetor serf agent`s and three real
`serf agent`s on 127.0.0.1, encrypted with one random key, driven by both
CLIs (`serf` and `praetor serf`) against both kinds of agent.

One cluster serves the whole module. The tests run in file order: the ones
that only look come first, then the ones that add members and rotate keys,
then failures and leaves, which take agents away.

Every agent runs the same handlers: user events append `NAME PAYLOAD` to
`<node>.events`, member events append `EVENT<TAB>stdin line` to
`<node>.members`, and the query `whoami` answers with the node's name.

Serf's gossip is best effort. Each node sends a broadcast to at most
RetransmitMult * ceil(log10(n + 1)) peers (4 here, lan profile), so now and
then a node misses a user event on the first pass (measured with serf agents
alone as with praetor ones) and gets it only from the next push-pull
exchange, which Serf runs every 30 s (lan). Queries have no second pass. So
event deadlines cover push-pull's timing, and the query and key commands
are retried a few times before the test gives up (`_until_complete`).

Serf is the reference peer (DESIGN.md, "Real peers"): without it the tests
skip on a developer's machine and fail in CI.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Callable, Optional

import pytest

from praetor_harness import clean_env, free_ports, praetor_binary, wait_until

SERF = shutil.which("serf")
PROFILE = "lan"  # local would detect failures sooner, but sends each broadcast to 2 peers, not 4
START_DEADLINE = 10.0  # an agent answers RPC within this
CONVERGE_DEADLINE = 20.0  # everyone sees a join, a tag change, a graceful leave
# A node that missed an event's gossip gets it from the next push-pull it
# takes part in. Its own come every 30 s (lan), but the first one after an
# agent starts waits a random stagger of up to 30 s more: 60 s for the
# agents started during the module (s4, p4), plus slack.
EVENT_DEADLINE = 65.0
FAIL_DEADLINE = 45.0  # lan: suspicion lasts 4-24 s after the first failed probe
RTT_DEADLINE = 40.0  # coordinates need a few probe rounds to settle
# A graceful leave is normally seen as left within a few gossip rounds. If a
# loaded machine drops the leave intent, the leaver is first marked failed
# and turns left at the next push-pull (the left-members list of Serf's
# push-pull state), as real serf does: allow one push-pull period.
LEAVE_DEADLINE = 40.0
CLI_TIMEOUT = 20.0
# After every handler has an event once, how long to keep watching for a
# duplicate. A node retransmits a broadcast at most 4 times (see the module
# doc), on gossip rounds 200 ms apart (lan), picking 3 peers per round: all
# its retransmissions are out within 2 rounds of receiving it, and the last
# receiver's within about 1 s of the event's arrival there. 2 s is twice
# that. Push-pull can deliver an old event again much later: the last test
# rereads the files after the cluster has run for a while, and
# `test_keys_rotate` after two fresh agents have joined by push-pull.
DUPLICATE_WATCH = 2.0

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def _need_serf() -> str:
    if SERF is None:
        if os.environ.get("CI"):
            pytest.fail("`serf` is not installed, and CI must run the interop tests "
                        "(scripts/test installs it)", pytrace=False)
        pytest.skip("`serf` is not installed")
    return SERF


def new_key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


class Node:
    """One agent: `serf agent` (kind "serf") or `praetor serf agent` (kind
    "praetor"), same flags, own bind and RPC ports, the module's handlers."""

    def __init__(self, kind: str, name: str, workdir: Path, key: str, praetor: Path):
        self.kind = kind
        self.name = name
        self.praetor = praetor
        self.port, self.rpc_port = free_ports(2)
        self.addr = f"127.0.0.1:{self.port}"
        self.rpc = f"127.0.0.1:{self.rpc_port}"
        self.log_path = workdir / f"{name}.log"
        self.events_path = workdir / f"{name}.events"
        self.members_path = workdir / f"{name}.members"
        ev = shlex.quote(str(self.events_path))
        mem = shlex.quote(str(self.members_path))
        binary = [SERF] if kind == "serf" else [str(praetor), "serf"]
        self.args = binary + [
            "agent", "-node", name, "-bind", self.addr, "-rpc-addr", self.rpc,
            "-encrypt", key, "-profile", PROFILE, "-log-level", "debug",
            "-tag", f"kind={kind}",
            "-event-handler", f'user=echo "$SERF_USER_EVENT $(cat)" >> {ev}',
            "-event-handler",
            f'member-join,member-leave,member-failed,member-update='
            f'sed "s/^/$SERF_EVENT\t/" >> {mem}',
            "-event-handler", "query:whoami=echo $SERF_SELF_NAME",
        ]
        self.proc: Optional[subprocess.Popen] = None

    def __repr__(self) -> str:
        return f"{self.kind}:{self.name}"

    # ------------------------------------------------------------ life
    def start(self, join: Optional["Node"] = None) -> "Node":
        args = list(self.args)
        if join is not None:
            args += ["-join", join.addr]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, env=clean_env(),
                                         start_new_session=True)
        wait_until(self.answers, START_DEADLINE, interval=0.05,
                   what=f"{self} answering RPC")
        return self

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def answers(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"{self} exited ({self.proc.returncode})\n{self.log()}")
        return self.cli("serf", "members").returncode == 0

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=START_DEADLINE)

    def interrupt(self) -> int:
        """SIGINT: Serf's agent leaves gracefully, then exits."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGINT)
        return self.proc.wait(timeout=START_DEADLINE + 5)

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=START_DEADLINE)

    # ------------------------------------------------------------- CLI
    def cli(self, tool: str, command: str, *args: str) -> subprocess.CompletedProcess:
        """`serf COMMAND` or `praetor serf COMMAND` against this agent's RPC.

        The flags come first: Go's flag package stops at the first argument.
        """
        base = [SERF] if tool == "serf" else [str(self.praetor), "serf"]
        return subprocess.run(base + [command, "-rpc-addr", self.rpc, *args],
                              capture_output=True, text=True, timeout=CLI_TIMEOUT,
                              env=clean_env(), stdin=subprocess.DEVNULL)

    def ok(self, tool: str, command: str, *args: str) -> str:
        r = self.cli(tool, command, *args)
        assert r.returncode == 0, (f"`{tool} {command} {' '.join(args)}` against {self} "
                                   f"exited {r.returncode}:\n{r.stdout}{r.stderr}")
        return r.stdout

    def members(self, tool: str = "serf") -> dict[str, dict]:
        """name -> the member record of `members -format json`."""
        out = self.ok(tool, "members", "-format", "json")
        return {m["name"]: m for m in json.loads(out)["members"]}

    # --------------------------------------------------------- handlers
    def user_events(self) -> list[str]:
        if not self.events_path.exists():
            return []
        return self.events_path.read_text().splitlines()

    def member_events(self) -> list[tuple[str, str]]:
        """(event, node name) per line of the member handler's file."""
        if not self.members_path.exists():
            return []
        out = []
        for line in self.members_path.read_text().splitlines():
            event, _, rest = line.partition("\t")
            out.append((event, rest.split("\t")[0]))
        return out

    def member_lines(self) -> list[str]:
        return self.members_path.read_text().splitlines() if self.members_path.exists() else []

    def log(self) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return f"--- {self} log ---\n{text[-5000:]}"


class Cluster:
    def __init__(self, workdir: Path, praetor: Path):
        self.workdir = workdir
        self.praetor = praetor
        self.key = new_key()
        self.nodes: list[Node] = []

    def new(self, kind: str, name: str, join: Optional[Node] = None) -> Node:
        node = Node(kind, name, self.workdir, self.key, self.praetor)
        self.nodes.append(node)
        return node.start(join)

    def get(self, name: str) -> Node:
        return next(n for n in self.nodes if n.name == name)

    def live(self) -> list[Node]:
        return [n for n in self.nodes if n.running()]

    def close(self) -> None:
        for n in reversed(self.nodes):
            n.close()

    def logs(self) -> str:
        return "\n".join(n.log() for n in self.nodes)

    def wait(self, pred: Callable[[], object], deadline: float, what: str):
        try:
            return wait_until(pred, deadline, interval=0.2, what=what)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.logs()}") from None

    def wait_status(self, name: str, status: str, deadline: float,
                    observers: Optional[list[Node]] = None) -> None:
        """Every running node (or each observer) shows `name` in `status`."""
        for obs in observers or self.live():
            self.wait(lambda obs=obs: obs.members().get(name, {}).get("status") == status,
                      deadline, f"{obs} to show {name} {status}")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Cluster:
    """p1 s1 p2 s2 p3 s3, each joining the one started before it."""
    _need_serf()
    praetor = praetor_binary()
    if not praetor.exists():
        pytest.fail(f"praetor binary not found at {praetor}: run `cargo build -p praetor` "
                    "or set PRAETOR_BIN", pytrace=False)
    c = Cluster(tmp_path_factory.mktemp("serf-mixed"), praetor)
    try:
        prev = None
        for i in (1, 2, 3):
            for kind in ("praetor", "serf"):
                prev = c.new(kind, f"{kind[0]}{i}", join=prev)
        names = {n.name for n in c.nodes}
        for n in c.nodes:
            c.wait(lambda n=n: {m for m, r in n.members().items()
                                if r["status"] == "alive"} == names,
                   CONVERGE_DEADLINE, f"{n} to see all six alive")
        yield c
    finally:
        c.close()


def _record_key(m: dict) -> tuple:
    return (m["name"], m["addr"], m["status"], tuple(sorted(m["tags"].items())))


def _until_complete(attempt: Callable[[], tuple[bool, object]], tries: int = 3):
    """Runs attempt() until it reports success, at most `tries` times.

    For queries (and the key commands, which are queries): a query reaches
    every node only if the gossip does, and gossip is best effort (module
    doc). Returns the successful result; fails with every attempt's result.
    """
    seen = []
    for _ in range(tries):
        done, result = attempt()
        if done:
            return result
        seen.append(result)
    raise AssertionError(f"no complete answer in {tries} tries:\n" +
                         "\n".join(map(str, seen)))


# ------------------------------------------------------------ membership

def test_members_and_tags_agree_on_every_node(cluster):
    want = sorted((n.name, n.addr, "alive", (("kind", n.kind),)) for n in cluster.nodes)
    first = None
    for node in cluster.nodes:
        for tool in ("serf", "praetor"):
            members = node.members(tool)
            assert sorted(map(_record_key, members.values())) == want, (node, tool)
            records = sorted(members.values(), key=lambda m: m["name"])
            # Whole records (port, protocol versions too) are the same everywhere.
            first = first or records
            assert records == first, (node, tool)
    for m in first:
        assert m["protocol"] == {"min": 2, "max": 5, "version": 5}, m
        assert m["port"] == int(m["addr"].rsplit(":", 1)[1]), m


# ----------------------------------------------------------- user events

def test_user_events_reach_every_handler_exactly_once(cluster):
    p1, s1, p2, s2 = (cluster.get(n) for n in ("p1", "s1", "p2", "s2"))
    fired = [
        # (tool, agent, event, payload, coalesce)
        ("serf", s1, "serf-to-serf", "a", True),
        ("praetor", p1, "praetor-to-praetor", "b", True),
        ("serf", p2, "serf-to-praetor", "c", False),
        ("praetor", s2, "praetor-to-serf", "d", False),
    ]
    want = sorted(f"{name} {payload}" for _, _, name, payload, _ in fired)
    for tool, agent, name, payload, coalesce in fired:
        flags = [] if coalesce else ["-coalesce=false"]
        out = agent.ok(tool, "event", *flags, name, payload)
        assert out == (f"Event '{name}' dispatched! Coalescing enabled: "
                       f"{'true' if coalesce else 'false'}\n"), out

    twice: dict[str, list[str]] = {}

    def everyone_has_each_once():
        for n in cluster.nodes:
            got = n.user_events()
            if len(got) != len(set(got)):
                twice[n.name] = got
        return twice or all(sorted(n.user_events()) == want for n in cluster.nodes)
    cluster.wait(everyone_has_each_once, EVENT_DEADLINE, "every handler to run once per event")
    assert not twice, f"handlers ran twice: {twice}"
    end = time.monotonic() + DUPLICATE_WATCH
    while time.monotonic() < end:
        assert everyone_has_each_once() and not twice, (
            twice, {n.name: n.user_events() for n in cluster.nodes})
        time.sleep(0.1)


# --------------------------------------------------------------- queries

@pytest.mark.parametrize("tool,via", [("serf", "s1"), ("praetor", "p1"),
                                      ("serf", "p2"), ("praetor", "s2")])
def test_queries_get_acks_and_responses_from_all(cluster, tool, via):
    agent = cluster.get(via)
    names = sorted(n.name for n in cluster.nodes)

    def attempt():
        out = json.loads(agent.ok(tool, "query", "-format", "json", "whoami"))
        assert set(out) == {"Acks", "Responses"}, out
        # Whoever answers, answers right; only completeness may need a retry.
        assert set(out["Acks"]) <= set(names) and len(out["Acks"]) == len(set(out["Acks"]))
        assert all(out["Responses"][n] == f"{n}\n" for n in out["Responses"]), out
        return sorted(out["Acks"]) == names and sorted(out["Responses"]) == names, out
    _until_complete(attempt)


# ------------------------------------------------------------------- rtt

def test_rtt_agrees_between_serf_and_praetor(cluster):
    p1, s1, p2, s3 = (cluster.get(n) for n in ("p1", "s1", "p2", "s3"))

    def rtt(node: Node, tool: str) -> Optional[float]:
        r = node.cli(tool, "rtt", "p1", "s1")
        if r.returncode != 0:
            # No coordinate for one of them yet (none until it has been probed).
            assert "Could not find a coordinate for node" in r.stdout + r.stderr, r
            return None
        m = re.fullmatch(r"Estimated p1 <-> s1 rtt: ([0-9.]+) ms\n", r.stdout)
        assert m, r.stdout
        return float(m.group(1))

    readings = []

    def agree():
        # serf asks a serf agent; praetor asks a praetor agent: the two
        # agents hold their own (independently learnt) coordinates.
        go, ours = rtt(s3, "serf"), rtt(p2, "praetor")
        readings.append((go, ours))
        return go and ours and abs(go - ours) <= 0.2 * max(go, ours)
    try:
        wait_until(agree, RTT_DEADLINE, interval=0.5, what="serf and praetor rtt to agree")
    except AssertionError as exc:
        raise AssertionError(f"{exc}: (serf, praetor) readings {readings[-10:]}") from None
    # Both CLIs against one agent compute from the same coordinates.
    for node in (p1, s1):
        go, ours = rtt(node, "serf"), rtt(node, "praetor")
        assert go and ours and abs(go - ours) <= 0.2 * max(go, ours), (node, go, ours)


# ------------------------------------------ the serf CLI on praetor's RPC

def test_serf_cli_sets_and_deletes_tags_on_a_praetor_agent(cluster):
    p1 = cluster.get("p1")
    out = p1.ok("serf", "tags", "-set", "color=blue", "-set", "rack=r1")
    assert out == "Successfully updated agent tags\n", out
    want = {"kind": "praetor", "color": "blue", "rack": "r1"}
    cluster.wait(lambda: all(n.members()["p1"]["tags"] == want for n in cluster.nodes),
                 CONVERGE_DEADLINE, "every node to see p1's new tags")
    p1.ok("serf", "tags", "-delete", "color")
    want = {"kind": "praetor", "rack": "r1"}
    cluster.wait(lambda: all(n.members()["p1"]["tags"] == want for n in cluster.nodes),
                 CONVERGE_DEADLINE, "every node to see p1's tag deleted")
    # And back, so the other tests see the tags they started with.
    p1.ok("serf", "tags", "-delete", "rack")
    cluster.wait(lambda: all(n.members()["p1"]["tags"] == {"kind": "praetor"}
                             for n in cluster.nodes),
                 CONVERGE_DEADLINE, "every node to see p1's original tags")
    # Every node's handler saw p1's updates as member-update events.
    for n in cluster.nodes:
        cluster.wait(lambda n=n: n.member_events().count(("member-update", "p1")) >= 1,
                     CONVERGE_DEADLINE, f"{n} to run a member-update handler for p1")


def test_fresh_agents_join_through_rpc(cluster):
    """`serf join` against a praetor agent brings in a fresh serf agent (the
    praetor agent contacts it), and a fresh praetor agent joins through its
    own RPC with `praetor serf join`."""
    s4 = cluster.new("serf", "s4")
    out = cluster.get("p1").ok("serf", "join", s4.addr)
    assert out == "Successfully joined cluster by contacting 1 nodes.\n", out
    p4 = cluster.new("praetor", "p4")
    out = p4.ok("praetor", "join", cluster.get("s1").addr)
    assert out == "Successfully joined cluster by contacting 1 nodes.\n", out
    names = {n.name for n in cluster.nodes}
    for n in cluster.nodes:
        cluster.wait(lambda n=n: {m for m, r in n.members().items()
                                  if r["status"] == "alive"} == names,
                     CONVERGE_DEADLINE, f"{n} to see all eight alive")
    for n in cluster.nodes:
        if n not in (s4, p4):
            cluster.wait(lambda n=n: {"s4", "p4"} <= {m for e, m in n.member_events()
                                                     if e == "member-join"},
                         CONVERGE_DEADLINE, f"{n} to run member-join handlers for s4, p4")
    # Serf's join ignores old user events on the side that asks to join
    # (no -replay): p4 runs none. s4 was contacted, not joining: it takes the
    # events in the push-pull as new, as a real serf agent does, once each.
    old = sorted(cluster.get("p1").user_events())
    assert len(old) == 4, old
    cluster.wait(lambda: sorted(s4.user_events()) == old, EVENT_DEADLINE,
                 "s4 to run the events it got in the join's push-pull")
    assert p4.user_events() == []


# ---------------------------------------------------------- key rotation

def _keys(node: Node, tool: str, *args: str) -> str:
    """A key command, retried while some node did not answer (module doc)."""
    def attempt():
        r = node.cli(tool, "keys", *args)
        return r.returncode == 0, r.stdout + r.stderr
    return _until_complete(attempt)


def _key_list(node: Node, tool: str) -> dict[str, str]:
    """key -> "[have/total]" from `keys -list`."""
    out = _keys(node, tool, "-list")
    return dict(re.findall(r"^(\S+=)\s+(\[\d+/\d+\])$", out, re.MULTILINE))


def _rotate(node: Node, tool: str, old: str, new: str) -> None:
    assert "Successfully installed key" in _keys(node, tool, "-install", new)
    assert "Successfully changed primary key" in _keys(node, tool, "-use", new)
    assert "Successfully removed key" in _keys(node, tool, "-remove", old)


def _event_reaches_all(cluster: Cluster, via: Node, tool: str, name: str) -> None:
    via.ok(tool, "event", "-coalesce=false", name, "x")
    cluster.wait(lambda: all(n.user_events().count(f"{name} x") == 1 for n in cluster.nodes),
                 EVENT_DEADLINE, f"every handler to see {name}")


def test_keys_rotate_from_either_side(cluster):
    total = len(cluster.nodes)
    everywhere = f"[{total}/{total}]"
    p1, s1 = cluster.get("p1"), cluster.get("s1")
    assert _key_list(s1, "serf") == {cluster.key: everywhere}

    # praetor drives, the serf agents follow.
    k2 = new_key()
    _rotate(p1, "praetor", cluster.key, k2)
    assert _key_list(s1, "serf") == {k2: everywhere}
    assert _key_list(cluster.get("s4"), "serf") == {k2: everywhere}
    _event_reaches_all(cluster, cluster.get("s3"), "serf", "after-praetor-rotation")

    # serf drives, the praetor agents follow.
    k3 = new_key()
    _rotate(s1, "serf", k2, k3)
    assert _key_list(p1, "praetor") == {k3: everywhere}
    assert _key_list(cluster.get("p3"), "serf") == {k3: everywhere}
    _event_reaches_all(cluster, cluster.get("p3"), "praetor", "after-serf-rotation")

    names = {n.name for n in cluster.nodes}
    for n in cluster.nodes:
        assert {m for m, r in n.members().items() if r["status"] == "alive"} == names, n

    # Nobody ran an event twice; p4 (joined without -replay) ran only the
    # events fired after it joined.
    late = ["after-praetor-rotation x", "after-serf-rotation x"]
    for n in cluster.nodes:
        got = n.user_events()
        assert len(got) == len(set(got)), (n, got)
        assert got[-2:] == late and len(got) == (2 if n.name == "p4" else 6), (n, got)


# ---------------------------------------------------- failures and leaves

def test_leave_is_left_and_kill_is_failed_everywhere(cluster):
    # The leaves come first, while most of the cluster is up. Serf gossips
    # to members that died or left in the last 30 s too (memberlist's
    # GossipToTheDeadTime), so a leaver whose peers are mostly gone sends
    # most of its few copies of the leave intent to nobody. If none reaches
    # a live member, the leaver ends as failed for good, in praetor as in
    # serf (seen in this test when the kills came first).
    gone: dict[str, str] = {}
    # A graceful leave asked over RPC, by the other kind's CLI.
    for name, tool in (("p2", "serf"), ("s4", "praetor")):
        node = cluster.get(name)
        assert node.ok(tool, "leave") == "Graceful leave complete\n"
        assert node.proc is not None and node.proc.wait(timeout=START_DEADLINE) == 0, node
        gone[name] = "left"
    for name in ("p2", "s4"):
        cluster.wait_status(name, "left", LEAVE_DEADLINE)  # on the six still running
    # SIGINT: the agent leaves, then exits 0.
    for name in ("s2", "p4"):
        assert cluster.get(name).interrupt() == 0, cluster.get(name).log()
        gone[name] = "left"
    for name in ("s2", "p4"):
        cluster.wait_status(name, "left", LEAVE_DEADLINE)  # on the four still running
    for name in ("p3", "s3"):
        cluster.get(name).kill9()
        gone[name] = "failed"
    for name in ("p3", "s3"):
        cluster.wait_status(name, "failed", FAIL_DEADLINE)  # on p1 and s1

    remaining = cluster.live()
    assert sorted(n.name for n in remaining) == ["p1", "s1"]
    for n in remaining:
        members = n.members()
        assert {m: r["status"] for m, r in members.items() if m in gone} == gone, n
        assert members["p1"]["status"] == members["s1"]["status"] == "alive", n

    # Each remaining handler ran member-failed once per killed agent and
    # member-leave once per agent that left. A leaver may be failed first:
    # its leave intent and its memberlist "dead" notice travel separately,
    # and when the notice arrives first Serf marks the member failed, then
    # left when the intent comes (serf's "EventMemberLeave (forced)"), in
    # praetor as in serf (seen on both).
    history: dict[str, dict[str, list[str]]] = {}

    def handled():
        for n in remaining:
            history[n.name] = {m: [e for e, who in n.member_events() if who == m
                                   and e in ("member-failed", "member-leave")] for m in gone}
        return all(h[m] == (["member-failed"] if s == "failed" else ["member-leave"])
                   or (s == "left" and h[m] == ["member-failed", "member-leave"])
                   for h in history.values() for m, s in gone.items())
    # Member events are coalesced for up to 3 s after the last change.
    try:
        wait_until(handled, CONVERGE_DEADLINE, interval=0.2,
                   what="member-failed/member-leave handlers")
    except AssertionError as exc:
        raise AssertionError(f"{exc}: want {gone}, got {history}\n"
                             + "\n".join(f"{n.name}: {n.member_lines()}" for n in remaining)
                             + f"\n{cluster.logs()}") from None
    # The handler's stdin (name, address, role, tags) is the same on both kinds.
    final = {n.name: sorted(line for line in n.member_lines()
                            if (line.split("\t")[0], line.split("\t")[1]) in
                            {("member-failed" if s == "failed" else "member-leave", m)
                             for m, s in gone.items()})
             for n in remaining}
    assert final["p1"] == final["s1"] and len(final["p1"]) == len(gone), final

    # Nothing ran twice over the module's life: push-pull exchanges carry
    # recent user events again, and must not rerun their handlers.
    for n in cluster.nodes:
        got = n.user_events()
        assert len(got) == len(set(got)), (n, got)
