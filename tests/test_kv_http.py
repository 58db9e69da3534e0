"""/v1/kv over HTTP against a real praetor agent, checked against Consul's behaviour.

Reference: hashicorp/consul agent/kvs_endpoint.go, agent/http.go,
agent/consul/state/kvs.go (see /work/scratch/consul-facts.md §1).
"""

from __future__ import annotations

import base64

import pytest

from praetor_harness import json_false, json_true

DIRENTRY_KEYS = {"LockIndex", "Key", "Flags", "Value", "CreateIndex", "ModifyIndex"}
KV_MAX_VALUE_SIZE = 512 * 1024  # Consul's default kv_max_value_size
U64_MAX = 2**64 - 1


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def index_of(resp) -> int:
    raw = resp.headers.get("X-Consul-Index")
    assert raw is not None, f"no X-Consul-Index header on {resp.request.method} {resp.url}"
    assert raw.isdigit(), raw
    return int(raw)


# ---------------------------------------------------------------------------- GET


def test_get_single_key_shape(shared_agent, prefix):
    key = f"{prefix}/shape"
    r = shared_agent.kv_put(key, b"hello")
    assert r.status_code == 200, r.text
    assert json_true(r), r.text

    r = shared_agent.get("/v1/kv/" + key)
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].startswith("application/json")
    body = r.json()
    assert isinstance(body, list) and len(body) == 1, body
    entry = body[0]
    # Consul CE's DirEntry: Session is omitted when empty, no Namespace/Partition.
    assert set(entry) == DIRENTRY_KEYS, entry
    assert entry["Key"] == key
    assert entry["Flags"] == 0
    assert entry["LockIndex"] == 0
    assert entry["Value"] == b64(b"hello")
    assert isinstance(entry["CreateIndex"], int) and entry["CreateIndex"] > 0
    assert entry["ModifyIndex"] == entry["CreateIndex"]
    # KVS.Get reports the entry's ModifyIndex as the query index.
    assert index_of(r) == entry["ModifyIndex"]
    assert r.headers.get("X-Consul-KnownLeader") == "true"


def test_get_missing_key_is_404_with_index(shared_agent, prefix):
    shared_agent.kv_put(f"{prefix}/exists", b"x")
    r = shared_agent.get(f"/v1/kv/{prefix}/missing")
    assert r.status_code == 404
    assert r.content == b""
    # Meta headers are set before the 404 so clients can block on the index.
    assert index_of(r) >= 1
    assert r.headers.get("X-Consul-KnownLeader") == "true"
    assert r.headers.get("X-Consul-LastContact") == "0"


def test_raw_returns_exact_bytes(shared_agent, prefix):
    key = f"{prefix}/raw"
    payload = bytes(range(256)) + b"\x00tail"
    assert json_true(shared_agent.kv_put(key, payload))
    r = shared_agent.get("/v1/kv/" + key, params={"raw": ""},
                         headers={"Accept-Encoding": "identity"})
    assert r.status_code == 200
    assert r.content == payload
    assert r.headers["Content-Type"].startswith("text/plain")
    assert int(r.headers["Content-Length"]) == len(payload)


def test_raw_missing_key_is_404(shared_agent, prefix):
    r = shared_agent.get(f"/v1/kv/{prefix}/nothing", params={"raw": ""})
    assert r.status_code == 404
    assert r.content == b""


def test_binary_value_round_trip(shared_agent, prefix):
    key = f"{prefix}/bin"
    payload = bytes(range(255, -1, -1)) * 3
    assert json_true(shared_agent.kv_put(key, payload))
    entry = shared_agent.kv_entry(key)
    assert base64.b64decode(entry["Value"]) == payload


@pytest.mark.parametrize("body", [None, b""], ids=["no-body", "empty-body"])
def test_empty_value_is_null(shared_agent, prefix, body):
    key = f"{prefix}/empty"
    r = shared_agent.put("/v1/kv/" + key, data=body)
    assert r.status_code == 200 and json_true(r), r.text
    entry = shared_agent.kv_entry(key)
    assert entry is not None
    assert "Value" in entry and entry["Value"] is None, entry
    r = shared_agent.get("/v1/kv/" + key, params={"raw": ""})
    assert r.status_code == 200 and r.content == b""


def test_recurse_lists_prefix_sorted_with_values(shared_agent, prefix):
    keys = [f"{prefix}/r/b/c", f"{prefix}/r/a", f"{prefix}/r/d", f"{prefix}/r/b"]
    for i, k in enumerate(keys):
        assert json_true(shared_agent.kv_put(k, f"v{i}"))
    shared_agent.kv_put(f"{prefix}/rr-outside", "no")

    r = shared_agent.get(f"/v1/kv/{prefix}/r/", params={"recurse": ""})
    assert r.status_code == 200, r.text
    entries = r.json()
    assert [e["Key"] for e in entries] == sorted(keys)
    for e in entries:
        assert set(e) == DIRENTRY_KEYS
        i = keys.index(e["Key"])
        assert base64.b64decode(e["Value"]) == f"v{i}".encode()
    assert index_of(r) == max(e["ModifyIndex"] for e in entries)


def test_recurse_is_a_plain_prefix_match(shared_agent, prefix):
    shared_agent.kv_put(f"{prefix}/pm", "1")
    shared_agent.kv_put(f"{prefix}/pm/x", "2")
    shared_agent.kv_put(f"{prefix}/pmz", "3")
    shared_agent.kv_put(f"{prefix}/p", "4")
    r = shared_agent.get(f"/v1/kv/{prefix}/pm", params={"recurse": ""})
    assert r.status_code == 200
    assert [e["Key"] for e in r.json()] == [f"{prefix}/pm", f"{prefix}/pm/x", f"{prefix}/pmz"]


def test_recurse_on_missing_prefix_is_404(shared_agent, prefix):
    r = shared_agent.get(f"/v1/kv/{prefix}/none/", params={"recurse": ""})
    assert r.status_code == 404
    assert r.content == b""
    assert index_of(r) >= 1


def test_keys_without_separator(shared_agent, prefix):
    keys = [f"{prefix}/k/a", f"{prefix}/k/b/c", f"{prefix}/k/b/d", f"{prefix}/k/e/f/g"]
    for k in keys:
        shared_agent.kv_put(k, "x")
    r = shared_agent.get(f"/v1/kv/{prefix}/k/", params={"keys": ""})
    assert r.status_code == 200, r.text
    assert r.json() == sorted(keys)
    assert index_of(r) >= 1


def test_keys_with_separator(shared_agent, prefix):
    for k in ["k/a", "k/b/c", "k/b/d", "k/e/f/g", "k/z"]:
        shared_agent.kv_put(f"{prefix}/{k}", "x")
    r = shared_agent.get(f"/v1/kv/{prefix}/k/", params={"keys": "", "separator": "/"})
    assert r.status_code == 200, r.text
    assert r.json() == [f"{prefix}/k/a", f"{prefix}/k/b/", f"{prefix}/k/e/", f"{prefix}/k/z"]
    # Without the trailing slash, the prefix itself is cut at the first separator.
    r = shared_agent.get(f"/v1/kv/{prefix}/k", params={"keys": "", "separator": "/"})
    assert r.status_code == 200
    assert r.json() == [f"{prefix}/k/"]


def test_keys_legacy_seperator_spelling(shared_agent, prefix):
    for k in ["s/a/1", "s/b"]:
        shared_agent.kv_put(f"{prefix}/{k}", "x")
    r = shared_agent.get(f"/v1/kv/{prefix}/s/", params={"keys": "", "seperator": "/"})
    assert r.status_code == 200
    assert r.json() == [f"{prefix}/s/a/", f"{prefix}/s/b"]


def test_keys_on_missing_prefix_is_404(shared_agent, prefix):
    r = shared_agent.get(f"/v1/kv/{prefix}/nope/", params={"keys": ""})
    assert r.status_code == 404
    assert index_of(r) >= 1


def test_keys_at_root_of_empty_store_is_empty_list(agent):
    r = agent.get("/v1/kv/", params={"keys": ""})
    assert r.status_code == 200, r.text
    assert r.json() == []
    # ...while a recursive read of an empty store is a 404.
    r = agent.get("/v1/kv/", params={"recurse": ""})
    assert r.status_code == 404


# ---------------------------------------------------------------------------- PUT


def test_put_reply_is_bare_true(shared_agent, prefix):
    r = shared_agent.kv_put(f"{prefix}/t", "v")
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("application/json")
    assert json_true(r), repr(r.text)


def test_put_overwrite_keeps_create_index_and_bumps_modify_index(shared_agent, prefix):
    key = f"{prefix}/idx"
    shared_agent.kv_put(key, "one")
    first = shared_agent.kv_entry(key)
    shared_agent.kv_put(key, "two")
    second = shared_agent.kv_entry(key)
    assert second["CreateIndex"] == first["CreateIndex"]
    assert second["ModifyIndex"] > first["ModifyIndex"]
    assert base64.b64decode(second["Value"]) == b"two"

    shared_agent.kv_put(f"{prefix}/idx-other", "x")
    other = shared_agent.kv_entry(f"{prefix}/idx-other")
    assert other["CreateIndex"] > second["ModifyIndex"]


def test_put_identical_entry_does_not_bump_modify_index(shared_agent, prefix):
    # kvsSetTxn skips the write when the new entry Equal()s the old one.
    key = f"{prefix}/same"
    shared_agent.kv_put(key, "same", flags=3)
    before = shared_agent.kv_entry(key)
    assert json_true(shared_agent.kv_put(key, "same", flags=3))
    after = shared_agent.kv_entry(key)
    assert after["ModifyIndex"] == before["ModifyIndex"]
    # A change in flags alone is a change.
    shared_agent.kv_put(key, "same", flags=4)
    assert shared_agent.kv_entry(key)["ModifyIndex"] > before["ModifyIndex"]


@pytest.mark.parametrize("flags", [0, 1, 42, 2**32, 2**63, U64_MAX])
def test_flags_full_u64(shared_agent, prefix, flags):
    key = f"{prefix}/flags"
    r = shared_agent.kv_put(key, "f", flags=str(flags))
    assert r.status_code == 200 and json_true(r), r.text
    assert shared_agent.kv_entry(key)["Flags"] == flags


def test_flags_default_zero_on_overwrite(shared_agent, prefix):
    key = f"{prefix}/flags0"
    shared_agent.kv_put(key, "a", flags="7")
    shared_agent.kv_put(key, "b")
    assert shared_agent.kv_entry(key)["Flags"] == 0


def test_cas_zero_is_create_only(shared_agent, prefix):
    key = f"{prefix}/cas0"
    r = shared_agent.kv_put(key, "first", cas="0")
    assert r.status_code == 200 and json_true(r), r.text
    r = shared_agent.kv_put(key, "second", cas="0")
    assert r.status_code == 200 and json_false(r), r.text
    assert base64.b64decode(shared_agent.kv_entry(key)["Value"]) == b"first"


def test_cas_with_modify_index(shared_agent, prefix):
    key = f"{prefix}/cas"
    shared_agent.kv_put(key, "v1")
    e1 = shared_agent.kv_entry(key)
    r = shared_agent.kv_put(key, "v2", cas=str(e1["ModifyIndex"]))
    assert r.status_code == 200 and json_true(r), r.text
    e2 = shared_agent.kv_entry(key)
    assert base64.b64decode(e2["Value"]) == b"v2"
    assert e2["ModifyIndex"] > e1["ModifyIndex"]

    # The old index is stale now.
    r = shared_agent.kv_put(key, "v3", cas=str(e1["ModifyIndex"]))
    assert r.status_code == 200 and json_false(r), r.text
    assert shared_agent.kv_entry(key) == e2


def test_cas_nonzero_on_missing_key_fails(shared_agent, prefix):
    key = f"{prefix}/cas-missing"
    r = shared_agent.kv_put(key, "v", cas="12345")
    assert r.status_code == 200 and json_false(r), r.text
    assert shared_agent.kv_entry(key) is None


def test_value_over_max_size_is_413(shared_agent, prefix):
    key = f"{prefix}/big"
    r = shared_agent.kv_put(key, b"x" * (KV_MAX_VALUE_SIZE + 1))
    assert r.status_code == 413, r.text[:200]
    assert r.text.startswith(
        f"Request body({KV_MAX_VALUE_SIZE + 1} bytes) too large, max size: "
        f"{KV_MAX_VALUE_SIZE} bytes."), r.text
    assert "kv_max_value_size" in r.text
    assert shared_agent.kv_entry(key) is None


def test_value_at_max_size_is_accepted(shared_agent, prefix):
    key = f"{prefix}/max"
    payload = bytes(i % 251 for i in range(KV_MAX_VALUE_SIZE))
    r = shared_agent.kv_put(key, payload)
    assert r.status_code == 200 and json_true(r), r.text[:200]
    r = shared_agent.get("/v1/kv/" + key, params={"raw": ""})
    assert r.content == payload


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
def test_missing_key_name_is_400(shared_agent, method):
    r = shared_agent.http(method, "/v1/kv/")
    assert r.status_code == 400
    assert r.text == "Missing key name"


# --------------------------------------------------------------------------- DELETE


def test_delete_single_key(shared_agent, prefix):
    key = f"{prefix}/del"
    shared_agent.kv_put(key, "v")
    shared_agent.kv_put(key + "/child", "c")
    r = shared_agent.delete("/v1/kv/" + key)
    assert r.status_code == 200 and json_true(r), r.text
    assert shared_agent.kv_entry(key) is None
    # Not recursive: the child stays.
    assert shared_agent.kv_entry(key + "/child") is not None


def test_delete_missing_key_is_true(shared_agent, prefix):
    r = shared_agent.delete(f"/v1/kv/{prefix}/never")
    assert r.status_code == 200 and json_true(r), r.text


def test_delete_recurse(shared_agent, prefix):
    for k in ["tree/a", "tree/b/c", "tree/b/d"]:
        shared_agent.kv_put(f"{prefix}/{k}", "v")
    shared_agent.kv_put(f"{prefix}/treetop", "deleted-too-same-prefix")
    shared_agent.kv_put(f"{prefix}/other", "stays")
    r = shared_agent.delete(f"/v1/kv/{prefix}/tree", params={"recurse": ""})
    assert r.status_code == 200 and json_true(r), r.text
    r = shared_agent.get(f"/v1/kv/{prefix}/", params={"keys": ""})
    assert r.json() == [f"{prefix}/other"]


def test_delete_cas(shared_agent, prefix):
    key = f"{prefix}/dcas"
    shared_agent.kv_put(key, "v1")
    stale = shared_agent.kv_entry(key)["ModifyIndex"]
    shared_agent.kv_put(key, "v2")
    current = shared_agent.kv_entry(key)["ModifyIndex"]

    r = shared_agent.delete("/v1/kv/" + key, params={"cas": str(stale)})
    assert r.status_code == 200 and json_false(r), r.text
    assert shared_agent.kv_entry(key) is not None

    r = shared_agent.delete("/v1/kv/" + key, params={"cas": "0"})
    assert r.status_code == 200 and json_false(r), r.text
    assert shared_agent.kv_entry(key) is not None

    r = shared_agent.delete("/v1/kv/" + key, params={"cas": str(current)})
    assert r.status_code == 200 and json_true(r), r.text
    assert shared_agent.kv_entry(key) is None


def test_delete_cas_on_missing_key_is_true(shared_agent, prefix):
    # kvsDeleteCASTxn: `return entry == nil` -- nothing to delete counts as success.
    r = shared_agent.delete(f"/v1/kv/{prefix}/gone", params={"cas": "5"})
    assert r.status_code == 200 and json_true(r), r.text


def test_delete_recurse_with_cas_conflicts(shared_agent, prefix):
    key = f"{prefix}/conf"
    shared_agent.kv_put(key, "v")
    r = shared_agent.delete("/v1/kv/" + key, params={"recurse": "", "cas": "1"})
    assert r.status_code == 400
    assert r.text.startswith("Conflicting flags: "), r.text
    assert "cas=1" in r.text and "recurse" in r.text
    assert shared_agent.kv_entry(key) is not None


def test_put_cas_with_acquire_conflicts(shared_agent, prefix):
    key = f"{prefix}/conf2"
    r = shared_agent.kv_put(key, "v", cas="0", acquire="00000000-0000-0000-0000-000000000000")
    assert r.status_code == 400
    assert r.text.startswith("Conflicting flags: "), r.text
    assert shared_agent.kv_entry(key) is None


# ------------------------------------------------------------------------ indexes


def test_indexes_only_grow(shared_agent, prefix):
    seen = []
    for i in range(5):
        key = f"{prefix}/grow/{i % 2}"
        shared_agent.kv_put(key, f"value-{i}")
        entry = shared_agent.kv_entry(key)
        seen.append(entry["ModifyIndex"])
        r = shared_agent.get(f"/v1/kv/{prefix}/grow/", params={"recurse": ""})
        assert index_of(r) == entry["ModifyIndex"]
    assert seen == sorted(seen) and len(set(seen)) == len(seen), seen


def test_prefix_index_does_not_go_back_after_delete(shared_agent, prefix):
    """Tombstones: after deleting a prefix its index is the delete's, not older."""
    p = f"{prefix}/tomb/"
    shared_agent.kv_put(p + "a", "1")
    shared_agent.kv_put(p + "b", "2")
    r = shared_agent.get("/v1/kv/" + p, params={"recurse": ""})
    assert r.status_code == 200
    before = index_of(r)

    assert json_true(shared_agent.delete("/v1/kv/" + p, params={"recurse": ""}))

    r = shared_agent.get("/v1/kv/" + p, params={"recurse": ""})
    assert r.status_code == 404
    after_list = index_of(r)
    assert after_list > before, (before, after_list)

    r = shared_agent.get("/v1/kv/" + p, params={"keys": ""})
    assert r.status_code == 404
    assert index_of(r) == after_list

    # Single key reads of deleted keys report at least the delete's index.
    r = shared_agent.get("/v1/kv/" + p + "a")
    assert r.status_code == 404
    assert index_of(r) >= after_list


def test_single_key_delete_leaves_tombstone_index(shared_agent, prefix):
    p = f"{prefix}/tomb1/"
    shared_agent.kv_put(p + "only", "1")
    created = shared_agent.kv_entry(p + "only")["ModifyIndex"]
    shared_agent.delete("/v1/kv/" + p + "only")
    r = shared_agent.get("/v1/kv/" + p, params={"recurse": ""})
    assert r.status_code == 404
    assert index_of(r) > created


# ----------------------------------------------------------------- bad parameters


@pytest.mark.parametrize("param,value", [
    ("flags", "abc"), ("flags", "-1"), ("flags", str(2**64)), ("cas", "abc"), ("cas", "1.5"),
])
def test_put_unparsable_number_is_rejected_with_go_error_text(shared_agent, prefix, param, value):
    # Consul returns strconv's raw error through the generic handler: 500, body
    # `strconv.ParseUint: parsing "<v>": invalid syntax|value out of range`.
    key = f"{prefix}/badnum"
    r = shared_agent.kv_put(key, "v", **{param: value})
    assert r.status_code == 500, (r.status_code, r.text)
    assert r.text.startswith(f'strconv.ParseUint: parsing "{value}": '), r.text
    assert ("invalid syntax" in r.text) or ("value out of range" in r.text)
    assert shared_agent.kv_entry(key) is None


def test_delete_unparsable_cas_is_rejected(shared_agent, prefix):
    key = f"{prefix}/badcas"
    shared_agent.kv_put(key, "v")
    r = shared_agent.delete("/v1/kv/" + key, params={"cas": "abc"})
    assert r.status_code == 500, (r.status_code, r.text)
    assert r.text == 'strconv.ParseUint: parsing "abc": invalid syntax'
    assert shared_agent.kv_entry(key) is not None


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
def test_bad_index_is_400(shared_agent, prefix, method):
    key = f"{prefix}/badidx"
    shared_agent.kv_put(key, "v")
    r = shared_agent.http(method, "/v1/kv/" + key, params={"index": "abc"})
    assert r.status_code == 400
    assert r.text == "Invalid index"
    assert shared_agent.kv_entry(key) is not None  # the DELETE did not happen


def test_bad_wait_is_400(shared_agent, prefix):
    r = shared_agent.get(f"/v1/kv/{prefix}/w", params={"wait": "abc"})
    assert r.status_code == 400
    assert r.text == "Invalid wait time"


# --------------------------------------------------------------------- methods


@pytest.mark.parametrize("method", ["POST", "PATCH"])
def test_wrong_method_is_405(shared_agent, prefix, method):
    key = f"{prefix}/m"
    r = shared_agent.http(method, "/v1/kv/" + key, data=b"v")
    assert r.status_code == 405
    assert r.text == f"method {method} not allowed"
    allow = [m.strip() for m in r.headers.get("Allow", "").split(",")]
    assert {"GET", "PUT", "DELETE"} <= set(allow), r.headers
    assert shared_agent.kv_entry(key) is None
