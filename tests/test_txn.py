"""/v1/txn against a real praetor agent, checked against Consul's behaviour.

Reference: hashicorp/consul agent/txn_endpoint.go, agent/consul/state/txn.go,
agent/consul/state/kvs.go (see /work/scratch/consul-facts.md §3).
"""

from __future__ import annotations

import base64
import json

import pytest

DIRENTRY_KEYS = {"LockIndex", "Key", "Flags", "Value", "CreateIndex", "ModifyIndex"}
MAX_TXN_OPS = 128  # agent/txn_endpoint.go maxTxnOps (Consul >= 1.x BUSL; was 64 long ago)
KV_MAX_VALUE_SIZE = 512 * 1024


def b64(data: bytes | str) -> str:
    if isinstance(data, str):
        data = data.encode()
    return base64.b64encode(data).decode()


def kv(verb: str, key: str, value: bytes | str | None = None, **extra) -> dict:
    op = {"Verb": verb, "Key": key}
    if value is not None:
        op["Value"] = b64(value)
    op.update(extra)
    return {"KV": op}


def txn(agent, ops, **kw):
    return agent.put("/v1/txn", data=json.dumps(ops), **kw)


def ok(resp) -> dict:
    assert resp.status_code == 200, (resp.status_code, resp.text)
    assert resp.headers["Content-Type"].startswith("application/json")
    body = resp.json()
    assert body.get("Errors") is None, body
    return body


def conflict(resp) -> list[dict]:
    assert resp.status_code == 409, (resp.status_code, resp.text)
    assert resp.headers["Content-Type"].startswith("application/json")
    body = resp.json()
    assert body.get("Results") is None, body
    errors = body["Errors"]
    assert isinstance(errors, list) and errors, body
    for e in errors:
        assert set(e) == {"OpIndex", "What"}, e
    return errors


def results_kv(body: dict) -> list[dict]:
    results = body.get("Results") or []
    out = []
    for r in results:
        assert set(r) == {"KV"}, r
        assert set(r["KV"]) == DIRENTRY_KEYS, r["KV"]
        out.append(r["KV"])
    return out


# ------------------------------------------------------------------- verbs


def test_set_then_get_in_one_txn(shared_agent, prefix):
    key = f"{prefix}/a"
    body = ok(txn(shared_agent, [kv("set", key, "hello", Flags=9), kv("get", key)]))
    set_res, get_res = results_kv(body)
    assert set_res["Key"] == key and set_res["Flags"] == 9
    # Writes return the entry with its value blanked out.
    assert set_res["Value"] is None
    assert set_res["CreateIndex"] == set_res["ModifyIndex"] > 0
    assert get_res["Value"] == b64("hello")
    assert get_res["ModifyIndex"] == set_res["ModifyIndex"]

    entry = shared_agent.kv_entry(key)
    assert entry["Value"] == b64("hello") and entry["Flags"] == 9
    assert entry["ModifyIndex"] == set_res["ModifyIndex"]


def test_read_only_get(shared_agent, prefix):
    key = f"{prefix}/ro"
    shared_agent.kv_put(key, "v")
    r = txn(shared_agent, [kv("get", key)])
    body = ok(r)
    (res,) = results_kv(body)
    assert res["Value"] == b64("v")
    assert r.headers.get("X-Consul-KnownLeader") == "true"


def test_get_missing_key_conflicts(shared_agent, prefix):
    key = f"{prefix}/nokey"
    errors = conflict(txn(shared_agent, [kv("get", key)]))
    assert errors == [{"OpIndex": 0, "What": f'key "{key}" doesn\'t exist'}]


def test_cas_verb(shared_agent, prefix):
    key = f"{prefix}/cas"
    shared_agent.kv_put(key, "v1")
    idx = shared_agent.kv_entry(key)["ModifyIndex"]

    body = ok(txn(shared_agent, [kv("cas", key, "v2", Index=idx)]))
    (res,) = results_kv(body)
    assert res["ModifyIndex"] > idx and res["Value"] is None
    assert shared_agent.kv_entry(key)["Value"] == b64("v2")

    errors = conflict(txn(shared_agent, [kv("cas", key, "v3", Index=idx)]))
    assert errors == [{"OpIndex": 0, "What": f'failed to set key "{key}", index is stale'}]
    assert shared_agent.kv_entry(key)["Value"] == b64("v2")


def test_cas_index_zero_is_create_only(shared_agent, prefix):
    key = f"{prefix}/cas0"
    ok(txn(shared_agent, [kv("cas", key, "first", Index=0)]))
    errors = conflict(txn(shared_agent, [kv("cas", key, "second", Index=0)]))
    assert errors == [{"OpIndex": 0, "What": f'failed to set key "{key}", index is stale'}]
    assert shared_agent.kv_entry(key)["Value"] == b64("first")


def test_get_tree(shared_agent, prefix):
    keys = [f"{prefix}/t/b", f"{prefix}/t/a", f"{prefix}/t/c/d"]
    for i, k in enumerate(keys):
        shared_agent.kv_put(k, f"v{i}")
    shared_agent.kv_put(f"{prefix}/u", "outside")
    body = ok(txn(shared_agent, [kv("get-tree", f"{prefix}/t/")]))
    res = results_kv(body)
    assert [e["Key"] for e in res] == sorted(keys)
    for e in res:
        assert e["Value"] == b64(f"v{keys.index(e['Key'])}")


def test_get_tree_of_nothing_is_ok_and_empty(shared_agent, prefix):
    body = ok(txn(shared_agent, [kv("get-tree", f"{prefix}/empty/")]))
    assert not body.get("Results"), body


def test_check_index(shared_agent, prefix):
    key = f"{prefix}/ci"
    shared_agent.kv_put(key, "v")
    idx = shared_agent.kv_entry(key)["ModifyIndex"]

    body = ok(txn(shared_agent, [kv("check-index", key, Index=idx)]))
    (res,) = results_kv(body)
    assert res["Key"] == key and res["ModifyIndex"] == idx and res["Value"] is None

    errors = conflict(txn(shared_agent, [kv("check-index", key, Index=idx + 1000)]))
    assert errors == [{"OpIndex": 0, "What":
                       f'failed index check for key "{key}", current modify index {idx} != {idx + 1000}'}]

    missing = f"{prefix}/ci-missing"
    errors = conflict(txn(shared_agent, [kv("check-index", missing, Index=1)]))
    assert errors == [{"OpIndex": 0, "What": f'failed to check index, key "{missing}" doesn\'t exist'}]


def test_check_not_exists(shared_agent, prefix):
    key = f"{prefix}/cne"
    body = ok(txn(shared_agent, [kv("check-not-exists", key)]))
    assert not body.get("Results"), body  # no result entry for this verb
    shared_agent.kv_put(key, "v")
    errors = conflict(txn(shared_agent, [kv("check-not-exists", key)]))
    assert errors == [{"OpIndex": 0, "What": f'key "{key}" exists'}]


def test_delete(shared_agent, prefix):
    key = f"{prefix}/d"
    shared_agent.kv_put(key, "v")
    shared_agent.kv_put(key + "/child", "v")
    body = ok(txn(shared_agent, [kv("delete", key)]))
    assert not body.get("Results"), body
    assert shared_agent.kv_entry(key) is None
    assert shared_agent.kv_entry(key + "/child") is not None
    # Deleting what is not there is not an error.
    ok(txn(shared_agent, [kv("delete", key)]))


def test_delete_tree(shared_agent, prefix):
    for k in ["dt/a", "dt/b/c", "dtx"]:
        shared_agent.kv_put(f"{prefix}/{k}", "v")
    shared_agent.kv_put(f"{prefix}/keep", "v")
    ok(txn(shared_agent, [kv("delete-tree", f"{prefix}/dt")]))
    r = shared_agent.get(f"/v1/kv/{prefix}/", params={"keys": ""})
    assert r.json() == [f"{prefix}/keep"]


def test_delete_cas(shared_agent, prefix):
    key = f"{prefix}/dc"
    shared_agent.kv_put(key, "v1")
    stale = shared_agent.kv_entry(key)["ModifyIndex"]
    shared_agent.kv_put(key, "v2")
    current = shared_agent.kv_entry(key)["ModifyIndex"]

    errors = conflict(txn(shared_agent, [kv("delete-cas", key, Index=stale)]))
    assert errors == [{"OpIndex": 0, "What": f'failed to delete key "{key}", index is stale'}]
    assert shared_agent.kv_entry(key) is not None

    ok(txn(shared_agent, [kv("delete-cas", key, Index=current)]))
    assert shared_agent.kv_entry(key) is None


# -------------------------------------------------------------- atomicity


def test_failed_check_rolls_back_earlier_set(shared_agent, prefix):
    key, guard = f"{prefix}/atomic", f"{prefix}/guard"
    shared_agent.kv_put(guard, "present")
    before = shared_agent.get(f"/v1/kv/{prefix}/", params={"recurse": ""}).json()

    errors = conflict(txn(shared_agent, [
        kv("set", key, "must-not-appear"),
        kv("check-not-exists", guard),
    ]))
    assert errors == [{"OpIndex": 1, "What": f'key "{guard}" exists'}]
    assert shared_agent.kv_entry(key) is None
    after = shared_agent.get(f"/v1/kv/{prefix}/", params={"recurse": ""}).json()
    assert after == before


def test_failed_txn_leaves_existing_values_and_indexes(shared_agent, prefix):
    a, b = f"{prefix}/x", f"{prefix}/y"
    shared_agent.kv_put(a, "a0")
    shared_agent.kv_put(b, "b0")
    ea, eb = shared_agent.kv_entry(a), shared_agent.kv_entry(b)
    conflict(txn(shared_agent, [
        kv("set", a, "a1"),
        kv("delete", b),
        kv("cas", a, "a2", Index=ea["ModifyIndex"]),  # stale after op 0 inside the txn
    ]))
    assert shared_agent.kv_entry(a) == ea
    assert shared_agent.kv_entry(b) == eb


def test_all_errors_reported_with_their_op_index(shared_agent, prefix):
    exists, missing = f"{prefix}/e", f"{prefix}/m"
    shared_agent.kv_put(exists, "v")
    errors = conflict(txn(shared_agent, [
        kv("check-not-exists", exists),
        kv("set", f"{prefix}/fine", "v"),
        kv("get", missing),
    ]))
    assert [e["OpIndex"] for e in errors] == [0, 2]
    assert errors[0]["What"] == f'key "{exists}" exists'
    assert errors[1]["What"] == f'key "{missing}" doesn\'t exist'
    assert shared_agent.kv_entry(f"{prefix}/fine") is None


def test_txn_is_one_index_step(shared_agent, prefix):
    body = ok(txn(shared_agent, [kv("set", f"{prefix}/s{i}", f"v{i}") for i in range(5)]))
    indexes = {e["ModifyIndex"] for e in results_kv(body)}
    assert len(indexes) == 1, indexes


# ------------------------------------------------------------------ limits


def test_max_ops_accepted(shared_agent, prefix):
    ops = [kv("set", f"{prefix}/many/{i:03d}", "v") for i in range(MAX_TXN_OPS)]
    body = ok(txn(shared_agent, ops))
    assert len(results_kv(body)) == MAX_TXN_OPS
    r = shared_agent.get(f"/v1/kv/{prefix}/many/", params={"keys": ""})
    assert len(r.json()) == MAX_TXN_OPS


def test_too_many_ops_rejected(shared_agent, prefix):
    n = MAX_TXN_OPS + 1
    ops = [kv("set", f"{prefix}/toomany/{i:03d}", "v") for i in range(n)]
    r = txn(shared_agent, ops)
    assert r.status_code == 413, (r.status_code, r.text)
    assert r.text == f"Transaction contains too many operations ({n} > {MAX_TXN_OPS})"
    r = shared_agent.get(f"/v1/kv/{prefix}/toomany/", params={"keys": ""})
    assert r.status_code == 404


def test_request_body_too_large(shared_agent, prefix):
    key = f"{prefix}/huge"
    data = json.dumps([kv("set", key, b"x" * KV_MAX_VALUE_SIZE)])
    r = shared_agent.put("/v1/txn", data=data)
    assert r.status_code == 413, (r.status_code, r.text[:200])
    assert r.text.startswith(
        f"Request body({len(data)} bytes) too large, max size: {KV_MAX_VALUE_SIZE} bytes"), r.text
    assert shared_agent.kv_entry(key) is None


# --------------------------------------------------------------- bad input


@pytest.mark.parametrize("data", [
    "", "{", "not json", '[{"KV": {"Verb": "set", "Key": "k", "Value": "!!notbase64!!"}}]',
], ids=["empty", "truncated", "garbage", "bad-base64"])
def test_malformed_body_is_400(shared_agent, data):
    r = shared_agent.put("/v1/txn", data=data)
    assert r.status_code == 400, (r.status_code, r.text)
    assert r.text.startswith("Failed to parse body: "), r.text


def test_unknown_verb_conflicts(shared_agent, prefix):
    key = f"{prefix}/uv"
    errors = conflict(txn(shared_agent, [kv("frobnicate", key, "v")]))
    assert errors == [{"OpIndex": 0, "What": 'unknown KV verb "frobnicate"'}]
    assert shared_agent.kv_entry(key) is None


def test_empty_key_is_rejected(shared_agent):
    errors = conflict(txn(shared_agent, [kv("set", "", "v")]))
    assert errors == [{"OpIndex": 0, "What": "Must provide key"}]


def test_wrong_method_is_405(shared_agent):
    r = shared_agent.get("/v1/txn")
    assert r.status_code == 405
    assert r.text == "method GET not allowed"
    assert "PUT" in r.headers.get("Allow", "")
