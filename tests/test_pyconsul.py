"""The real py-consul client (PyPI `py-consul`, imported as `consul`) against praetor."""

from __future__ import annotations

import base64
import threading
import time

import consul
import pytest
from consul.exceptions import ClientError


@pytest.fixture
def c(shared_agent):
    client = consul.Consul(host="127.0.0.1", port=shared_agent.port)
    try:
        yield client
    finally:
        client.http.close()


def test_status(c):
    leader = c.status.leader()
    assert isinstance(leader, str) and leader.startswith("127.0.0.1:")
    assert leader in c.status.peers()


def test_agent_self(c):
    config = c.agent.self()["Config"]
    assert config["NodeName"] == "test-node"
    assert config["Datacenter"] == "dc1"


def test_put_get_delete(c, prefix):
    key = f"{prefix}/k"
    assert c.kv.put(key, "value") is True
    index, data = c.kv.get(key)
    assert int(index) >= 1
    assert data["Key"] == key
    assert data["Value"] == b"value"
    assert data["Flags"] == 0
    assert data["ModifyIndex"] >= data["CreateIndex"] > 0

    assert c.kv.delete(key) is True
    index2, data = c.kv.get(key)
    assert data is None
    assert int(index2) > int(index)


def test_binary_and_none_values(c, prefix):
    assert c.kv.put(f"{prefix}/bin", bytes(range(256))) is True
    assert c.kv.get(f"{prefix}/bin")[1]["Value"] == bytes(range(256))
    assert c.kv.put(f"{prefix}/none", None) is True
    assert c.kv.get(f"{prefix}/none")[1]["Value"] is None


def test_flags(c, prefix):
    key = f"{prefix}/flags"
    assert c.kv.put(key, "v", flags=2**64 - 1) is True
    assert c.kv.get(key)[1]["Flags"] == 2**64 - 1


def test_cas(c, prefix):
    key = f"{prefix}/cas"
    assert c.kv.put(key, "v1", cas=0) is True
    assert c.kv.put(key, "nope", cas=0) is False
    _, data = c.kv.get(key)
    modify = data["ModifyIndex"]
    assert c.kv.put(key, "v2", cas=modify) is True
    assert c.kv.put(key, "v3", cas=modify) is False
    assert c.kv.get(key)[1]["Value"] == b"v2"

    modify2 = c.kv.get(key)[1]["ModifyIndex"]
    assert c.kv.delete(key, cas=modify) is False
    assert c.kv.get(key)[1] is not None
    assert c.kv.delete(key, cas=modify2) is True
    assert c.kv.get(key)[1] is None


def test_recurse_and_keys(c, prefix):
    for k in ["r/a", "r/b/c", "r/b/d"]:
        c.kv.put(f"{prefix}/{k}", k)
    _, items = c.kv.get(f"{prefix}/r/", recurse=True)
    assert [i["Key"] for i in items] == [f"{prefix}/r/a", f"{prefix}/r/b/c", f"{prefix}/r/b/d"]
    assert [i["Value"] for i in items] == [b"r/a", b"r/b/c", b"r/b/d"]

    _, keys = c.kv.get(f"{prefix}/r/", keys=True)
    assert keys == [f"{prefix}/r/a", f"{prefix}/r/b/c", f"{prefix}/r/b/d"]
    _, keys = c.kv.get(f"{prefix}/r/", keys=True, separator="/")
    assert keys == [f"{prefix}/r/a", f"{prefix}/r/b/"]

    assert c.kv.delete(f"{prefix}/r/", recurse=True) is True
    _, items = c.kv.get(f"{prefix}/r/", recurse=True)
    assert items is None


@pytest.mark.parametrize("consistency", ["consistent", "stale"])
def test_consistency_modes(shared_agent, prefix, consistency):
    client = consul.Consul(host="127.0.0.1", port=shared_agent.port, consistency=consistency)
    key = f"{prefix}/cm"
    assert client.kv.put(key, "v") is True
    assert client.kv.get(key)[1]["Value"] == b"v"


def test_txn(c, prefix):
    key = f"{prefix}/txn"
    result = c.txn.put([
        {"KV": {"Verb": "set", "Key": key, "Value": base64.b64encode(b"t").decode()}},
        {"KV": {"Verb": "get", "Key": key}},
    ])
    assert len(result["Results"]) == 2
    assert base64.b64decode(result["Results"][1]["KV"]["Value"]) == b"t"

    with pytest.raises(ClientError, match="409"):
        c.txn.put([
            {"KV": {"Verb": "set", "Key": key, "Value": base64.b64encode(b"no").decode()}},
            {"KV": {"Verb": "check-not-exists", "Key": key}},
        ])
    assert c.kv.get(key)[1]["Value"] == b"t"


def test_blocking_get_returns_after_another_client_writes(shared_agent, c, prefix):
    key = f"{prefix}/watch"
    c.kv.put(key, "before")
    index, data = c.kv.get(key)
    assert data["Value"] == b"before"

    result = {}
    done = threading.Event()

    def watch():
        watcher = consul.Consul(host="127.0.0.1", port=shared_agent.port)
        try:
            t0 = time.monotonic()
            result["value"] = watcher.kv.get(key, index=index, wait="5s")
            result["elapsed"] = time.monotonic() - t0
        except BaseException as exc:  # noqa: BLE001 - reported below
            result["error"] = exc
        finally:
            done.set()

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    # Still blocked a moment later: nothing has changed yet.
    assert not done.wait(0.3), result

    writer = consul.Consul(host="127.0.0.1", port=shared_agent.port)
    assert writer.kv.put(key, "after") is True
    assert done.wait(3.0), "blocking kv.get did not return after the write"
    assert "error" not in result, result
    new_index, data = result["value"]
    assert int(new_index) > int(index)
    assert data["Value"] == b"after"
    # It returned because of the write, well before the 5 s wait ran out.
    assert result["elapsed"] < 4.5, result


def test_blocking_get_times_out_with_same_index(c, prefix):
    key = f"{prefix}/quiet"
    c.kv.put(key, "v")
    index, _ = c.kv.get(key)
    t0 = time.monotonic()
    new_index, data = c.kv.get(key, index=index, wait="1s")
    elapsed = time.monotonic() - t0
    assert 0.9 <= elapsed < 5.0, elapsed
    assert new_index == index
    assert data["Value"] == b"v"
