"""The LAN gossip pool of real praetor agents: servers that share nothing
but a gossip address find each other's server ports from the gossip tags
and form a cluster; clients join the pool; `/v1/agent/members` shows every
member with Consul's tags and integer status through join, failure, forced
leave and graceful leave; `/v1/agent/join` and `praetor members`."""

from __future__ import annotations

import json
import signal

import pytest

from praetor_harness import wait_until

STATUS_ALIVE, STATUS_LEFT, STATUS_FAILED = 1, 3, 4
DEADLINE = 30.0


def _config(agents, name: str, body: dict):
    path = agents.base / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(body))
    return path


def _lan_addr(agent) -> str:
    return f"127.0.0.1:{agent.isolation['ports']['serf_lan']}"


def _members(agent) -> dict:
    r = agent.get("/v1/agent/members", timeout=5)
    assert r.status_code == 200, r.text
    return {m["Name"]: m for m in r.json()}


def _server(agents, name: str, join=None, expect: int = 3):
    conf = _config(agents, name, {"retry_interval": "1s"})
    args = ["-server", f"-bootstrap-expect={expect}", f"-data-dir={agents.base / name / 'data'}",
            "-bind=127.0.0.1"]
    if join:
        args.append(f"-retry-join={join}")
    return agents.new(name=name, node=name, dev=False, isolate_ports=True, start=False,
                      config_files=[conf], extra_args=args)


def _client(agents, name: str, join=None):
    conf = _config(agents, name, {"retry_interval": "1s"})
    args = [f"-data-dir={agents.base / name / 'data'}", "-bind=127.0.0.1"]
    if join:
        args.append(f"-retry-join={join}")
    return agents.new(name=name, node=name, dev=False, isolate_ports=True, start=False,
                      config_files=[conf], extra_args=args)


@pytest.fixture
def pool(agents):
    """Three servers on one address, every port their own, joined only
    through the first one's gossip port."""
    s1 = _server(agents, "s1")
    s1.spawn()
    s2 = _server(agents, "s2", join=_lan_addr(s1))
    s3 = _server(agents, "s3", join=_lan_addr(s1))
    for s in (s2, s3):
        s.spawn()
    for s in (s1, s2, s3):
        s.wait_ready(DEADLINE)
    return [s1, s2, s3]


def test_servers_find_each_others_server_port_through_gossip_tags(pool):
    server_addrs = {f"127.0.0.1:{s.isolation['ports']['server']}" for s in pool}
    for s in pool:
        wait_until(lambda s=s: set(s.get("/v1/status/peers").json()) == server_addrs,
                   DEADLINE, what=f"{s.name} to list all three servers as peers")
    leaders = {s.get("/v1/status/leader").json() for s in pool}
    assert len(leaders) == 1 and leaders.pop() in server_addrs
    members = _members(pool[1])
    assert set(members) == {"s1", "s2", "s3"}
    for s in pool:
        m = members[s.name]
        assert m["Status"] == STATUS_ALIVE
        assert m["Addr"] == "127.0.0.1"
        assert m["Port"] == s.isolation["ports"]["serf_lan"]
        assert m["Tags"]["role"] == "consul"
        assert m["Tags"]["dc"] == "dc1"
        assert m["Tags"]["port"] == str(s.isolation["ports"]["server"])
        assert m["Tags"]["expect"] == "3"
        assert len(m["Tags"]["id"]) == 36


def test_clients_join_fail_are_forced_out_and_leave(pool, agents, cli):
    join = _lan_addr(pool[0])
    c1, c2 = _client(agents, "c1", join), _client(agents, "c2", join)
    for c in (c1, c2):
        c.spawn()
    for c in (c1, c2):
        c.wait_ready(DEADLINE)
    everyone = {"s1", "s2", "s3", "c1", "c2"}

    def all_alive(agent):
        m = _members(agent)
        return set(m) == everyone and all(v["Status"] == STATUS_ALIVE for v in m.values())
    for a in (*pool, c1, c2):
        wait_until(lambda a=a: all_alive(a), DEADLINE, what=f"{a.name} to see all five alive")
    client = _members(pool[2])["c1"]
    assert client["Tags"]["role"] == "node"
    assert "port" not in client["Tags"] and "expect" not in client["Tags"]

    # `praetor members` reads the same list.
    out = cli("members", f"-http-addr=127.0.0.1:{c1.port}")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.decode().splitlines()
    assert len(lines) == 6
    assert any(line.split()[0] == "c2" and "alive" in line.split() for line in lines)

    # kill -9: the pool declares c2 failed; force-leave marks it left.
    c2.stop(signal.SIGKILL)
    wait_until(lambda: _members(pool[0])["c2"]["Status"] == STATUS_FAILED, DEADLINE,
               what="the servers to see c2 failed")
    r = pool[0].put("/v1/agent/force-leave/c2")
    assert r.status_code == 200, r.text
    wait_until(lambda: _members(pool[1])["c2"]["Status"] == STATUS_LEFT, DEADLINE,
               what="c2 to be left after force-leave")
    r = pool[0].put("/v1/agent/force-leave/nosuch")
    assert r.status_code == 500
    assert "No node found with name 'nosuch'" in r.text

    # A graceful leave is seen as left, not failed.
    c1.stopped_by_test = True
    assert c1.put("/v1/agent/leave").status_code == 200
    assert c1.wait_exit() == 0
    wait_until(lambda: _members(pool[0])["c1"]["Status"] == STATUS_LEFT, DEADLINE,
               what="the servers to see c1 left")


def test_join_endpoint_joins_and_reports_unreachable_agents(pool, agents):
    # Started without a join, it stays alone...
    loner = _client(agents, "loner")
    loner.spawn()
    # A client with no server cannot name a leader: wait for its own API.
    wait_until(lambda: loner.get("/v1/agent/self", timeout=2).status_code == 200, DEADLINE,
               what="the loner's API")
    assert set(_members(loner)) == {"loner"}
    r = loner.put("/v1/agent/join/127.0.0.1:1")
    assert r.status_code == 500
    assert "Failed to join 127.0.0.1:1" in r.text
    assert set(_members(loner)) == {"loner"}
    # ...until it joins through the API.
    r = loner.put(f"/v1/agent/join/{_lan_addr(pool[2])}")
    assert r.status_code == 200, r.text
    wait_until(lambda: set(_members(loner)) == {"s1", "s2", "s3", "loner"}, DEADLINE,
               what="the loner to see the servers")
    wait_until(lambda: "loner" in _members(pool[0]), DEADLINE, what="the servers to see the loner")
