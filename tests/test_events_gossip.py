"""User events over the LAN gossip pool: an event fired on one agent is
gossiped as a serf user event and kept by every agent its filters name;
each keeps it once, with serf's Lamport time; a blocking event list on
another agent wakes when it arrives; `praetor event` and `praetor watch
-type=event` see the same on every agent."""

from __future__ import annotations

import json
import re
import threading

import pytest

from praetor_harness import wait_until

DEADLINE = 30.0


def _lan_addr(agent) -> str:
    return f"127.0.0.1:{agent.isolation['ports']['serf_lan']}"


def _agent(agents, name: str, server: bool, join=None):
    conf = agents.base / f"{name}.json"
    conf.parent.mkdir(parents=True, exist_ok=True)
    conf.write_text(json.dumps({"retry_interval": "1s"}))
    args = [f"-data-dir={agents.base / name / 'data'}", "-bind=127.0.0.1"]
    if server:
        args += ["-server", "-bootstrap-expect=1"]
    if join:
        args.append(f"-retry-join={join}")
    return agents.new(name=name, node=name, dev=False, isolate_ports=True, start=False,
                      config_files=[conf], extra_args=args)


@pytest.fixture
def pool(agents):
    """One server and two clients, joined through the server's gossip port,
    each seeing all three alive."""
    s1 = _agent(agents, "s1", server=True)
    s1.spawn()
    c1 = _agent(agents, "c1", server=False, join=_lan_addr(s1))
    c2 = _agent(agents, "c2", server=False, join=_lan_addr(s1))
    for a in (c1, c2):
        a.spawn()
    everyone = [s1, c1, c2]
    for a in everyone:
        a.wait_ready(DEADLINE)

    def sees_all(a):
        members = a.get("/v1/agent/members", timeout=5).json()
        return {m["Name"] for m in members if m["Status"] == 1} == {"s1", "c1", "c2"}
    for a in everyone:
        wait_until(lambda a=a: sees_all(a), DEADLINE, what=f"{a.name} to see the whole pool")
    return everyone


def _fire(agent, name, payload=None, **params):
    r = agent.put(f"/v1/event/fire/{name}", data=payload, params=params or None)
    assert r.status_code == 200, r.text
    return r.json()


def _listed(agent, name=None):
    r = agent.get("/v1/event/list", params={"name": name} if name else None, timeout=5)
    assert r.status_code == 200, r.text
    return r.json()


def _ids(agent, name=None):
    return [e["ID"] for e in _listed(agent, name)]


def test_an_event_reaches_every_agent_once(pool):
    s1, c1, c2 = pool
    fired = _fire(c1, "deploy", b"v1.2")
    assert (fired["LTime"], fired["Version"]) == (0, 1)
    for a in pool:
        wait_until(lambda a=a: fired["ID"] in _ids(a), DEADLINE,
                   what=f"{a.name} to list the event fired on c1")
    second = _fire(s1, "deploy", b"v1.3")
    for a in pool:
        wait_until(lambda a=a: second["ID"] in _ids(a), DEADLINE,
                   what=f"{a.name} to list the event fired on s1")
    ltimes = set()
    for a in pool:
        events = _listed(a, "deploy")
        assert [e["ID"] for e in events] == [fired["ID"], second["ID"]], a.name
        first = events[0]
        assert (first["Name"], first["Payload"], first["Version"]) == ("deploy", "djEuMg==", 1)
        ltimes.add((events[0]["LTime"], events[1]["LTime"]))
    # Every agent saw each event with the Lamport time serf gave it.
    assert len(ltimes) == 1, ltimes
    (t1, t2), = ltimes
    assert t2 > t1
    assert _listed(c2, "other") == []


def test_a_node_filter_restricts_delivery_to_that_node(pool):
    s1, c1, c2 = pool
    only_c2 = _fire(s1, "restart", node="^c2$")
    wait_until(lambda: only_c2["ID"] in _ids(c2), DEADLINE, what="c2 to list its event")
    # An unfiltered event fired after c2 had the filtered one: once every
    # agent lists it, the filtered event has had its chance everywhere.
    marker = _fire(s1, "marker")
    for a in pool:
        wait_until(lambda a=a: marker["ID"] in _ids(a), DEADLINE,
                   what=f"{a.name} to list the unfiltered event")
    assert _ids(s1, "restart") == []
    assert _ids(c1, "restart") == []
    assert [e["NodeFilter"] for e in _listed(c2, "restart")] == ["^c2$"]


def test_a_blocking_list_on_another_agent_wakes_when_an_event_arrives(pool):
    s1, c1, c2 = pool
    first = _fire(c1, "first")
    wait_until(lambda: first["ID"] in _ids(c2), DEADLINE, what="c2 to list the first event")
    index = c2.get("/v1/event/list").headers["X-Consul-Index"]
    result = {}

    def block():
        result["r"] = c2.get("/v1/event/list", params={"index": index, "wait": "20s"},
                             timeout=40)
    t = threading.Thread(target=block, daemon=True)
    t.start()
    t.join(0.5)
    assert t.is_alive(), "returned before any new event"
    second = _fire(c1, "second")
    t.join(DEADLINE)
    assert not t.is_alive(), "the blocking list did not wake"
    r = result["r"]
    assert r.headers["X-Consul-Index"] != index
    assert [e["ID"] for e in r.json()][-1] == second["ID"]


def test_the_cli_fires_on_one_agent_and_watches_on_another(pool, cli):
    s1, c1, c2 = pool
    p = cli("event", f"-http-addr=127.0.0.1:{c1.port}", "-name=ship", "v9")
    assert p.returncode == 0, p.stderr
    m = re.fullmatch(r"Event ID: ([0-9a-f-]{36})\n", p.stdout.decode())
    assert m, p.stdout
    wait_until(lambda: m.group(1) in _ids(c2), DEADLINE, what="c2 to list the CLI's event")
    w = cli("watch", f"-http-addr=127.0.0.1:{c2.port}", "-type=event", "-name=ship")
    assert w.returncode == 0, w.stderr
    watched = json.loads(w.stdout)
    assert [(e["ID"], e["Payload"]) for e in watched] == [(m.group(1), "djk=")]
