"""Sessions and KV locks over HTTP: Consul's rules for acquire, release,
invalidation and lock delay."""

from __future__ import annotations

import time

from praetor_harness import wait_until


def create(agent, body=None):
    r = agent.put("/v1/session/create", json=body) if body is not None else agent.put("/v1/session/create")
    assert r.status_code == 200, r.text
    return r.json()["ID"]


def acquire(agent, key, session, value=b"held"):
    return agent.put(f"/v1/kv/{key}", data=value, params={"acquire": session})


def test_session_defaults_and_reads(agent):
    sid = create(agent)
    info = agent.get(f"/v1/session/info/{sid}").json()
    assert len(info) == 1
    s = info[0]
    assert (s["Node"], s["Behavior"], s["LockDelay"], s["TTL"]) == ("test-node", "release", 15_000_000_000, "")
    assert s["NodeChecks"] == ["serfHealth"]
    assert [x["ID"] for x in agent.get("/v1/session/list").json()] == [sid]
    assert [x["ID"] for x in agent.get("/v1/session/node/test-node").json()] == [sid]
    assert agent.get("/v1/session/info/00000000-0000-0000-0000-000000000000").json() == []


def test_session_create_errors(agent):
    r = agent.put("/v1/session/create", json={"Behavior": "explode"})
    assert (r.status_code, r.text) == (500, "Invalid Behavior setting 'explode'")
    r = agent.put("/v1/session/create", json={"TTL": "5s"})
    assert (r.status_code, r.text) == (500, "Invalid Session TTL '5000000000', must be between [10s=24h0m0s]")
    r = agent.put("/v1/session/create", json={"Node": "ghost"})
    assert (r.status_code, r.text) == (500, "Missing node registration")
    r = agent.put("/v1/session/create", json={"NodeChecks": ["nope"]})
    assert (r.status_code, r.text) == (500, "Missing check 'nope' registration")
    assert agent.get("/v1/session/list").json() == []
    r = agent.put("/v1/session/renew/11111111-1111-1111-1111-111111111111")
    assert (r.status_code, r.text) == (404, "Session id '11111111-1111-1111-1111-111111111111' not found")


def test_acquire_release_and_lock_index(agent):
    a, b = create(agent), create(agent)
    assert acquire(agent, "lk", a).json() is True
    assert acquire(agent, "lk", b).json() is False
    entry = agent.kv_entry("lk")
    assert (entry["Session"], entry["LockIndex"]) == (a, 1)
    assert agent.put("/v1/kv/lk", params={"release": b}).json() is False
    assert agent.put("/v1/kv/lk", params={"release": a}).json() is True
    assert "Session" not in agent.kv_entry("lk")
    assert acquire(agent, "lk", b).json() is True
    assert agent.kv_entry("lk")["LockIndex"] == 2
    r = acquire(agent, "other", "no-such-session")
    assert (r.status_code, r.text) == (500, 'invalid session "no-such-session"')
    r = agent.put("/v1/kv/lk", params={"acquire": a, "cas": "1"})
    assert r.status_code == 400 and r.text.startswith("Conflicting flags: ")


def test_destroy_releases_and_lock_delay_holds_the_key(agent):
    a = create(agent, {"LockDelay": "1s"})
    b = create(agent)
    assert acquire(agent, "delayed", a).json() is True
    assert agent.put(f"/v1/session/destroy/{a}").json() is True
    entry = agent.kv_entry("delayed")
    assert "Session" not in entry and entry["Value"] is not None, "release keeps the value"
    assert acquire(agent, "delayed", b).json() is False, "lock delay still running"
    wait_until(lambda: acquire(agent, "delayed", b).json() is True, 5.0, interval=0.1,
               what="the lock delay to pass")


def test_delete_behavior_removes_held_keys(agent):
    a = create(agent, {"Behavior": "delete", "LockDelay": 0})
    assert acquire(agent, "doomed", a).json() is True
    agent.put(f"/v1/session/destroy/{a}")
    assert agent.kv_entry("doomed") is None


def test_a_failing_check_invalidates_its_sessions(agent):
    agent.put("/v1/agent/check/register", json={"Name": "guard", "TTL": "30s"})
    agent.put("/v1/agent/check/pass/guard")
    wait_until(lambda: any(c["CheckID"] == "guard" and c["Status"] == "passing"
                           for c in agent.get("/v1/health/node/test-node").json()),
               5.0, what="the check in the catalog")
    sid = create(agent, {"NodeChecks": ["serfHealth", "guard"], "LockDelay": 0})
    assert acquire(agent, "guarded", sid).json() is True
    agent.put("/v1/agent/check/fail/guard")
    wait_until(lambda: agent.get(f"/v1/session/info/{sid}").json() == [], 5.0,
               what="the session to be invalidated")
    assert "Session" not in agent.kv_entry("guarded")


def test_ttl_session_expires_without_renewal_and_renew_keeps_it(agent):
    # TTL 10s is the minimum; the session lives 2 x TTL without renewal.
    sid = create(agent, {"TTL": "10s"})
    renewed = agent.put(f"/v1/session/renew/{sid}").json()
    assert renewed[0]["ID"] == sid and renewed[0]["TTL"] == "10s"
    assert agent.get(f"/v1/session/info/{sid}").json() != []


def test_txn_lock_verbs(agent):
    sid = create(agent)
    ops = [{"KV": {"Verb": "lock", "Key": "tl", "Value": "", "Session": sid}},
           {"KV": {"Verb": "check-session", "Key": "tl", "Session": sid}}]
    r = agent.put("/v1/txn", json=ops)
    assert r.status_code == 200, r.text
    other = create(agent)
    r = agent.put("/v1/txn", json=[{"KV": {"Verb": "lock", "Key": "tl", "Session": other}}])
    assert r.status_code == 409
    assert r.json()["Errors"][0]["What"] == 'failed to lock key "tl", lock is already held'
    r = agent.put("/v1/txn", json=[{"KV": {"Verb": "unlock", "Key": "tl", "Session": sid}}])
    assert r.status_code == 200
    r = agent.put("/v1/txn", json=[{"KV": {"Verb": "check-session", "Key": "tl", "Session": sid}}])
    assert r.status_code == 409
    assert r.json()["Errors"][0]["What"] == f'failed session check for key "tl", current session "" != "{sid}"'


def test_blocking_session_list_wakes_on_create(agent):
    idx = agent.get("/v1/session/list").headers["X-Consul-Index"]
    start = time.monotonic()
    sid = create(agent)
    r = agent.get("/v1/session/list", params={"index": idx, "wait": "5s"})
    assert time.monotonic() - start < 4, "the create was already past the index"
    assert [s["ID"] for s in r.json()] == [sid]
