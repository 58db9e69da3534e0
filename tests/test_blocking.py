"""Blocking queries and consistency headers on /v1/kv (Consul semantics).

Reference: hashicorp/consul agent/http.go (parseWait, parseConsistency,
setMeta), agent/consul/kvs_endpoint.go, blocking query loop
(see /work/scratch/consul-facts.md §2).
"""

from __future__ import annotations

import base64
import threading
import time

import pytest
import requests

QUIET_PERIOD = 0.75  # how long a blocked query must stay blocked after an unrelated write
WAKE_DEADLINE = 5.0  # how long a woken query may take to answer


class Blocker:
    """A GET running in a background thread, to observe when it returns."""

    def __init__(self, agent, path: str, params: dict, timeout: float = 60.0):
        self.resp: requests.Response | None = None
        self.exc: BaseException | None = None
        self.elapsed: float | None = None
        self._done = threading.Event()
        self._t0 = time.monotonic()
        self._thread = threading.Thread(
            target=self._run, args=(agent, path, params, timeout), daemon=True)
        self._thread.start()

    def _run(self, agent, path, params, timeout):
        try:
            self.resp = agent.get(path, params=params, timeout=timeout)
        except BaseException as exc:  # noqa: BLE001 - re-raised in result()
            self.exc = exc
        finally:
            self.elapsed = time.monotonic() - self._t0
            self._done.set()

    def done(self) -> bool:
        return self._done.is_set()

    def assert_pending_for(self, period: float, why: str) -> None:
        end = time.monotonic() + period
        while time.monotonic() < end:
            if self._done.is_set():
                status = self.resp.status_code if self.resp is not None else self.exc
                raise AssertionError(
                    f"blocking query returned early ({why}): status={status} "
                    f"index={self.resp.headers.get('X-Consul-Index') if self.resp is not None else None} "
                    f"after {self.elapsed:.3f}s")
            time.sleep(0.01)

    def result(self, deadline: float = WAKE_DEADLINE) -> requests.Response:
        assert self._done.wait(deadline), f"blocking query still pending after {deadline}s"
        if self.exc is not None:
            raise self.exc
        return self.resp


def index_of(resp) -> int:
    return int(resp.headers["X-Consul-Index"])


def value_of(resp) -> bytes:
    body = resp.json()
    return base64.b64decode(body[0]["Value"] or "")


def wait_until_blocked(agent, blocker: Blocker) -> None:
    """Give the request a moment to reach the server (it must not answer meanwhile).

    A blocking GET says nothing until it returns, so there is no signal for
    "the server holds it now". Asserting it stays pending for a short while
    both checks blocking and makes the following write land after the read.
    """
    blocker.assert_pending_for(0.2, "nothing was written yet")


# ------------------------------------------------------------------- single key


def test_blocking_get_returns_after_write_to_that_key_only(shared_agent, prefix):
    key, other = f"{prefix}/watched", f"{prefix}/unrelated"
    shared_agent.kv_put(key, "v1")
    shared_agent.kv_put(other, "o1")
    r = shared_agent.get("/v1/kv/" + key)
    idx = index_of(r)

    blocker = Blocker(shared_agent, "/v1/kv/" + key, {"index": str(idx), "wait": "30s"})
    try:
        wait_until_blocked(shared_agent, blocker)
        # An acknowledged write to another key must not wake this query.
        w = shared_agent.kv_put(other, "o2")
        assert w.status_code == 200
        w = shared_agent.kv_put(f"{prefix}/watchedx", "sibling with common prefix")
        assert w.status_code == 200
        blocker.assert_pending_for(QUIET_PERIOD, "after writes to unrelated keys")

        w = shared_agent.kv_put(key, "v2")
        assert w.status_code == 200
        resp = blocker.result()
    finally:
        if not blocker.done():
            shared_agent.kv_put(key, "release")
    assert resp.status_code == 200, resp.text
    assert index_of(resp) > idx
    assert value_of(resp) == b"v2"
    assert index_of(resp) == resp.json()[0]["ModifyIndex"]


def test_blocking_get_wakes_on_delete_with_404(shared_agent, prefix):
    key = f"{prefix}/doomed"
    shared_agent.kv_put(key, "v")
    idx = index_of(shared_agent.get("/v1/kv/" + key))
    blocker = Blocker(shared_agent, "/v1/kv/" + key, {"index": str(idx), "wait": "30s"})
    wait_until_blocked(shared_agent, blocker)
    assert shared_agent.delete("/v1/kv/" + key).status_code == 200
    resp = blocker.result()
    assert resp.status_code == 404
    assert index_of(resp) > idx


def test_only_the_written_keys_watchers_wake(shared_agent, prefix):
    keys = [f"{prefix}/w{i}" for i in range(3)]
    blockers = {}
    for k in keys:
        shared_agent.kv_put(k, "start")
        idx = index_of(shared_agent.get("/v1/kv/" + k))
        blockers[k] = (idx, Blocker(shared_agent, "/v1/kv/" + k, {"index": str(idx), "wait": "30s"}))
    try:
        for _, b in blockers.values():
            b.assert_pending_for(0.1, "nothing written yet")
        shared_agent.kv_put(keys[1], "changed")
        resp = blockers[keys[1]][1].result()
        assert resp.status_code == 200 and value_of(resp) == b"changed"
        assert index_of(resp) > blockers[keys[1]][0]
        for k in (keys[0], keys[2]):
            blockers[k][1].assert_pending_for(QUIET_PERIOD / 2, f"{keys[1]} was written, not {k}")
    finally:
        for k in (keys[0], keys[2]):
            shared_agent.kv_put(k, "release")
    for k in (keys[0], keys[2]):
        resp = blockers[k][1].result()
        assert value_of(resp) == b"release"


def test_wait_times_out_with_same_index(shared_agent, prefix):
    key = f"{prefix}/idle"
    shared_agent.kv_put(key, "v")
    idx = index_of(shared_agent.get("/v1/kv/" + key))
    t0 = time.monotonic()
    r = shared_agent.get("/v1/kv/" + key, params={"index": str(idx), "wait": "1s"}, timeout=30)
    elapsed = time.monotonic() - t0
    assert r.status_code == 200
    # Consul waits `wait` plus up to wait/16 of jitter.
    assert 0.9 <= elapsed < 5.0, elapsed
    assert index_of(r) == idx
    assert value_of(r) == b"v"


def test_index_zero_does_not_block(shared_agent, prefix):
    key = f"{prefix}/zero"
    shared_agent.kv_put(key, "v")
    t0 = time.monotonic()
    r = shared_agent.get("/v1/kv/" + key, params={"index": "0", "wait": "5s"}, timeout=30)
    assert r.status_code == 200
    assert time.monotonic() - t0 < 2.0


def test_stale_index_returns_immediately(shared_agent, prefix):
    key = f"{prefix}/old"
    shared_agent.kv_put(key, "v1")
    old = index_of(shared_agent.get("/v1/kv/" + key))
    shared_agent.kv_put(key, "v2")
    t0 = time.monotonic()
    r = shared_agent.get("/v1/kv/" + key, params={"index": str(old), "wait": "10s"}, timeout=30)
    assert time.monotonic() - t0 < 2.0
    assert index_of(r) > old and value_of(r) == b"v2"


def test_index_from_the_future_waits_out_the_timeout(shared_agent, prefix):
    # Consul does not reset an index above the current one; it blocks until
    # the store passes it or the wait expires.
    key = f"{prefix}/future"
    shared_agent.kv_put(key, "v")
    idx = index_of(shared_agent.get("/v1/kv/" + key))
    t0 = time.monotonic()
    r = shared_agent.get("/v1/kv/" + key, params={"index": str(idx + 10**9), "wait": "1s"}, timeout=30)
    elapsed = time.monotonic() - t0
    assert r.status_code == 200
    assert 0.9 <= elapsed < 5.0, elapsed
    assert index_of(r) == idx


# ----------------------------------------------------------------------- prefix


def test_recurse_blocking_wakes_for_write_under_prefix(shared_agent, prefix):
    p = f"{prefix}/tree/"
    shared_agent.kv_put(p + "a", "1")
    r = shared_agent.get("/v1/kv/" + p, params={"recurse": ""})
    idx = index_of(r)

    blocker = Blocker(shared_agent, "/v1/kv/" + p, {"recurse": "", "index": str(idx), "wait": "30s"})
    try:
        wait_until_blocked(shared_agent, blocker)
        shared_agent.kv_put(f"{prefix}/elsewhere", "x")
        blocker.assert_pending_for(QUIET_PERIOD, "after a write outside the prefix")
        shared_agent.kv_put(p + "deep/b", "2")
        resp = blocker.result()
    finally:
        if not blocker.done():
            shared_agent.kv_put(p + "release", "r")
    assert resp.status_code == 200
    assert index_of(resp) > idx
    assert [e["Key"] for e in resp.json()] == [p + "a", p + "deep/b"]


def test_recurse_blocking_wakes_for_delete_under_prefix(shared_agent, prefix):
    p = f"{prefix}/dtree/"
    shared_agent.kv_put(p + "a", "1")
    shared_agent.kv_put(p + "b", "2")
    idx = index_of(shared_agent.get("/v1/kv/" + p, params={"recurse": ""}))
    blocker = Blocker(shared_agent, "/v1/kv/" + p, {"recurse": "", "index": str(idx), "wait": "30s"})
    wait_until_blocked(shared_agent, blocker)
    shared_agent.delete("/v1/kv/" + p + "a")
    resp = blocker.result()
    assert resp.status_code == 200
    assert index_of(resp) > idx
    assert [e["Key"] for e in resp.json()] == [p + "b"]


def test_keys_blocking_wakes_for_new_key(shared_agent, prefix):
    p = f"{prefix}/kt/"
    shared_agent.kv_put(p + "a", "1")
    idx = index_of(shared_agent.get("/v1/kv/" + p, params={"keys": ""}))
    blocker = Blocker(shared_agent, "/v1/kv/" + p, {"keys": "", "index": str(idx), "wait": "30s"})
    wait_until_blocked(shared_agent, blocker)
    shared_agent.kv_put(p + "b", "2")
    resp = blocker.result()
    assert resp.status_code == 200
    assert resp.json() == [p + "a", p + "b"]
    assert index_of(resp) > idx


# ---------------------------------------------------------------------- headers


@pytest.mark.parametrize("params,expected", [
    ({}, "leader"),
    ({"stale": ""}, "stale"),
    ({"consistent": ""}, "consistent"),
    ({"leader": ""}, "leader"),
])
def test_meta_headers(shared_agent, prefix, params, expected):
    key = f"{prefix}/h"
    shared_agent.kv_put(key, "v")
    for path, extra in [("/v1/kv/" + key, {}), ("/v1/kv/" + key + "-missing", {}),
                        (f"/v1/kv/{prefix}/", {"recurse": ""}), (f"/v1/kv/{prefix}/", {"keys": ""})]:
        r = shared_agent.get(path, params={**params, **extra})
        assert r.status_code in (200, 404), (path, r.status_code, r.text)
        assert r.headers.get("X-Consul-Index", "").isdigit(), (path, r.headers)
        assert int(r.headers["X-Consul-Index"]) >= 1
        assert r.headers.get("X-Consul-KnownLeader") == "true", (path, r.headers)
        assert r.headers.get("X-Consul-LastContact") == "0", (path, r.headers)
        assert r.headers.get("X-Consul-Effective-Consistency") == expected, (path, r.headers)


def test_stale_and_consistent_together_is_400(shared_agent, prefix):
    r = shared_agent.get(f"/v1/kv/{prefix}/x", params={"stale": "", "consistent": ""})
    assert r.status_code == 400
    assert r.text == "Cannot specify ?stale with ?consistent, conflicting semantics."


@pytest.mark.parametrize("wait", ["abc", "10", "1x", "-"])
def test_bad_wait_is_400(shared_agent, prefix, wait):
    r = shared_agent.get(f"/v1/kv/{prefix}/x", params={"wait": wait, "index": "1"})
    assert r.status_code == 400
    assert r.text == "Invalid wait time"


@pytest.mark.parametrize("index", ["abc", "-1", "1.5", str(2**64)])
def test_bad_index_is_400(shared_agent, prefix, index):
    r = shared_agent.get(f"/v1/kv/{prefix}/x", params={"index": index})
    assert r.status_code == 400
    assert r.text == "Invalid index"


def test_bad_max_stale_is_400(shared_agent, prefix):
    r = shared_agent.get(f"/v1/kv/{prefix}/x", params={"max_stale": "abc"})
    assert r.status_code == 400
    assert r.text == 'Invalid max_stale value "abc"'
