"""The LAN pool verbs against real agents, worded as `consul` words them:
`praetor join [-wan] ADDR...`, `praetor leave`, `praetor force-leave
[-prune] NODE`, and `praetor members [-detailed] [-status RE]` over a pool
of one server and two clients."""

from __future__ import annotations

import re
import signal

import pytest

from praetor_harness import wait_until
from test_lan_pool import _client, _lan_addr, _members, _server

STATUS_ALIVE, STATUS_LEFT, STATUS_FAILED = 1, 3, 4
DEADLINE = 30.0


def _http(agent) -> str:
    return f"-http-addr=127.0.0.1:{agent.port}"


def _text(out) -> tuple[str, str]:
    return out.stdout.decode(), out.stderr.decode()


@pytest.fixture
def small_pool(agents):
    """One server and two clients that joined it."""
    s1 = _server(agents, "s1", expect=1)
    s1.spawn()
    s1.wait_ready(DEADLINE)
    join = _lan_addr(s1)
    c1, c2 = _client(agents, "c1", join), _client(agents, "c2", join)
    for c in (c1, c2):
        c.spawn()
    for c in (c1, c2):
        c.wait_ready(DEADLINE)
    names = {"s1", "c1", "c2"}
    for a in (s1, c1, c2):
        wait_until(lambda a=a: set(_members(a)) == names
                   and all(m["Status"] == STATUS_ALIVE for m in _members(a).values()),
                   DEADLINE, what=f"{a.name} to see the three members alive")
    return s1, c1, c2


def _loner(agents, name="loner"):
    loner = _client(agents, name)
    loner.spawn()
    wait_until(lambda: loner.get("/v1/agent/self", timeout=2).status_code == 200, DEADLINE,
               what=f"{name}'s API")
    return loner


def test_members_table_matches_consul(small_pool, cli):
    s1, c1, _ = small_pool
    out = cli("members", _http(c1))
    stdout, stderr = _text(out)
    assert out.returncode == 0, stderr
    lines = stdout.splitlines()
    assert re.split(r"\s+", lines[0].strip()) == [
        "Node", "Address", "Status", "Type", "Build", "Protocol", "DC", "Partition", "Segment"]
    rows = [re.split(r"\s+", line.strip()) for line in lines[1:]]
    # Servers first, then by name; a server's segment is <all>, a client's <default>.
    assert [r[0] for r in rows] == ["s1", "c1", "c2"]
    by_name = {r[0]: r for r in rows}
    assert by_name["s1"][1] == _lan_addr(s1)
    assert by_name["s1"][2:4] == ["alive", "server"]
    assert by_name["s1"][5:] == ["2", "dc1", "default", "<all>"]
    assert by_name["c1"][2:4] == ["alive", "client"]
    assert by_name["c1"][5:] == ["2", "dc1", "default", "<default>"]
    # Build is the build tag up to its first ':'.
    build = _members(s1)["s1"]["Tags"]["build"]
    assert by_name["s1"][4] == build.split(":")[0]
    # Columns line up: every field of a row starts where its header does.
    starts = [m.start() for m in re.finditer(r"\S+", lines[0])]
    for line in lines[1:]:
        assert [m.start() for m in re.finditer(r"\S+", line)] == starts, lines


def test_members_detailed_and_status_filter(small_pool, cli):
    s1, c1, c2 = small_pool
    out = cli("members", "-detailed", _http(s1))
    stdout, stderr = _text(out)
    assert out.returncode == 0, stderr
    lines = stdout.splitlines()
    assert re.split(r"\s+", lines[0].strip()) == ["Node", "Address", "Status", "Tags"]
    tags = {line.split()[0]: line.split()[3] for line in lines[1:]}
    assert set(tags) == {"s1", "c1", "c2"}
    pairs = tags["s1"].split(",")
    assert pairs == sorted(pairs, key=lambda p: p.split("=", 1)[0])
    server_tags = dict(p.split("=", 1) for p in pairs)
    assert server_tags["role"] == "consul" and server_tags["dc"] == "dc1"
    assert server_tags["port"] == str(s1.isolation["ports"]["server"])
    assert server_tags["segment"] == "<all>" and server_tags["ap"] == "default"
    assert dict(p.split("=", 1) for p in tags["c1"].split(","))["role"] == "node"

    out = cli("members", "-status=alive", _http(s1))
    assert out.returncode == 0 and len(out.stdout.decode().splitlines()) == 4
    # No member matches: nothing printed, exit 2.
    out = cli("members", "-status=left", _http(s1))
    assert (out.returncode, out.stdout) == (2, b"")
    out = cli("members", "-status=(", _http(s1))
    assert out.returncode == 1
    assert out.stderr.decode().startswith("Failed to compile status regexp: ")
    # A client has no WAN pool.
    out = cli("members", "-wan", _http(c1))
    assert (out.returncode, out.stdout) == (2, b"")

    # A killed member shows as failed, and -status picks it out.
    c2.stop(signal.SIGKILL)
    wait_until(lambda: _members(s1)["c2"]["Status"] == STATUS_FAILED, DEADLINE,
               what="s1 to see c2 failed")
    out = cli("members", "-status=failed", _http(s1))
    lines = out.stdout.decode().splitlines()
    assert out.returncode == 0 and [line.split()[0] for line in lines[1:]] == ["c2"]
    assert lines[1].split()[2] == "failed"


def test_join(small_pool, agents, cli):
    s1, _, _ = small_pool
    out = cli("join", _http(s1))
    assert out.returncode == 1
    assert out.stderr.decode().startswith("At least one address to join must be specified.\n")

    loner = _loner(agents)
    out = cli("join", _http(loner), "127.0.0.1:1")
    stdout, stderr = _text(out)
    assert out.returncode == 1 and stdout == ""
    lines = stderr.splitlines()
    assert lines[0].startswith(
        "Error joining address '127.0.0.1:1': Unexpected response code: 500 (")
    assert "Failed to join 127.0.0.1:1" in stderr
    assert lines[-1] == "Failed to join any nodes."
    assert set(_members(loner)) == {"loner"}

    # One good address is enough; the bad one is still reported.
    out = cli("join", _http(loner), "127.0.0.1:1", _lan_addr(s1))
    stdout, stderr = _text(out)
    assert out.returncode == 0, stderr
    assert stdout == "Successfully joined cluster by contacting 1 nodes.\n"
    assert stderr.startswith("Error joining address '127.0.0.1:1': ")
    wait_until(lambda: set(_members(loner)) == {"s1", "c1", "c2", "loner"}, DEADLINE,
               what="the loner to see the pool")
    wait_until(lambda: "loner" in _members(s1), DEADLINE, what="s1 to see the loner")

    # Every address counts.
    other = _loner(agents, "other")
    out = cli("join", _http(other), _lan_addr(s1), _lan_addr(loner))
    assert out.returncode == 0, out.stderr
    assert out.stdout == b"Successfully joined cluster by contacting 2 nodes.\n"


def test_leave(small_pool, cli):
    s1, c1, _ = small_pool
    out = cli("leave", _http(c1), "extra")
    stdout, stderr = _text(out)
    assert out.returncode == 1
    assert stderr == "Error found unexpected args: [extra]\n"
    assert stdout.startswith("Usage: praetor leave")
    assert c1.proc.poll() is None

    c1.stopped_by_test = True
    out = cli("leave", _http(c1))
    assert out.returncode == 0, out.stderr
    assert out.stdout == b"Graceful leave complete\n"
    assert c1.wait_exit() == 0
    wait_until(lambda: _members(s1)["c1"]["Status"] == STATUS_LEFT, DEADLINE,
               what="s1 to see c1 left")

    out = cli("leave", _http(c1))
    assert out.returncode == 1
    assert out.stderr.decode().startswith("Error leaving: ")


def test_force_leave(small_pool, cli):
    s1, c1, c2 = small_pool
    out = cli("force-leave", _http(s1))
    assert out.returncode == 1
    assert out.stderr.decode().startswith(
        "A single node name must be specified to force leave.\n")
    out = cli("force-leave", _http(s1), "a", "b")
    assert out.returncode == 1

    out = cli("force-leave", _http(s1), "nosuch")
    assert out.returncode == 1 and out.stdout == b""
    assert out.stderr.decode() == ("Error force leaving: Unexpected response code: 500 "
                                   "(agent: No node found with name 'nosuch')\n")

    c2.stop(signal.SIGKILL)
    wait_until(lambda: _members(s1)["c2"]["Status"] == STATUS_FAILED, DEADLINE,
               what="s1 to see c2 failed")
    out = cli("force-leave", _http(s1), "c2")
    assert (out.returncode, out.stdout, out.stderr) == (0, b"", b"")
    for a in (s1, c1):
        wait_until(lambda a=a: _members(a)["c2"]["Status"] == STATUS_LEFT, DEADLINE,
                   what=f"{a.name} to see c2 left")

    # -prune forgets the member at once.
    out = cli("force-leave", "-prune", _http(s1), "c2")
    assert (out.returncode, out.stderr) == (0, b""), out.stderr
    wait_until(lambda: "c2" not in _members(s1), DEADLINE, what="s1 to forget c2")
    out = cli("members", _http(s1))
    assert [line.split()[0] for line in out.stdout.decode().splitlines()[1:]] == ["s1", "c1"]
