"""User events over HTTP: fire, filters, list and its blocking index."""

from __future__ import annotations

import base64
import threading


def fire(agent, name, payload=None, **params):
    return agent.put(f"/v1/event/fire/{name}", data=payload, params=params or None)


def test_fire_returns_consuls_shape_and_list_shows_it(agent):
    r = fire(agent, "deploy", b"v1.2")
    assert r.status_code == 200
    e = r.json()
    assert (e["Name"], e["Version"], e["LTime"]) == ("deploy", 1, 0)
    assert base64.b64decode(e["Payload"]) == b"v1.2"
    listed = agent.get("/v1/event/list").json()
    assert [x["ID"] for x in listed] == [e["ID"]]
    assert agent.get("/v1/event/list", params={"name": "other"}).json() == []


def test_fire_errors(agent):
    r = agent.put("/v1/event/fire/")
    assert (r.status_code, r.text) == (400, "Missing name")
    r = fire(agent, "x", tag="a")
    assert (r.status_code, r.text) == (500, "Cannot provide tag filter without service filter")
    r = fire(agent, "x", node="(")
    assert r.status_code == 500 and r.text.startswith("Invalid node filter: ")
    r = fire(agent, "x", b"p" * 600)
    assert r.status_code == 500 and "exceeds configured limit of 512 bytes" in r.text
    assert agent.get("/v1/event/list").json() == []


def test_filters_decide_local_delivery(agent):
    fire(agent, "elsewhere", node="^other-node$")
    fire(agent, "here", node="^test-node$")
    fire(agent, "no-such-service", service="db")
    agent.put("/v1/agent/service/register", json={"Name": "db", "Tags": ["primary"]})
    fire(agent, "db-primary", service="db", tag="prim")
    names = [e["Name"] for e in agent.get("/v1/event/list").json()]
    assert names == ["here", "db-primary"]


def test_blocking_list_wakes_on_a_new_event(agent):
    fire(agent, "first")
    idx = agent.get("/v1/event/list").headers["X-Consul-Index"]
    result = {}

    def block():
        result["r"] = agent.get("/v1/event/list", params={"index": idx, "wait": "10s"}, timeout=20)

    t = threading.Thread(target=block, daemon=True)
    t.start()
    t.join(0.3)
    assert t.is_alive(), "returned before any new event"
    fire(agent, "second")
    t.join(5)
    assert not t.is_alive()
    r = result["r"]
    assert r.headers["X-Consul-Index"] != idx
    assert [e["Name"] for e in r.json()] == ["first", "second"]
