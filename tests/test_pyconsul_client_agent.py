"""The real py-consul client against a client agent of a three-server
cluster with two clients: everything it does goes through the client's
forwarding to the servers, and what one client writes the other sees."""

from __future__ import annotations

import threading

import consul
import pytest

from cluster_harness import client_agent, Cluster
from conftest import AgentFactory
from praetor_harness import wait_until

DEADLINE = 30.0




@pytest.fixture(scope="module")
def pool(praetor_bin, tmp_path_factory):
    """(cluster, [c1, c2]): three servers and two client agents, shared by
    this module's tests (each uses its own keys and names)."""
    base = tmp_path_factory.mktemp("pyconsul-clients")
    cluster = Cluster(praetor_bin, base / "servers")
    agents = AgentFactory(praetor_bin, base / "clients")
    try:
        cluster.start()
        cs = [client_agent(agents, cluster, f"c{i}") for i in (1, 2)]
        for c in cs:
            c.spawn()
        for c in cs:
            c.wait_ready(DEADLINE)
        for name in ("c1", "c2"):
            wait_until(lambda name=name: name in [
                n["Node"] for n in cluster.leader().get("/v1/catalog/nodes").json()],
                DEADLINE, what=f"{name} in the catalog")
        yield cluster, cs
    finally:
        try:
            agents.close_all()
        finally:
            cluster.close()


def _py(agent) -> consul.Consul:
    return consul.Consul(host="127.0.0.1", port=agent.port)


@pytest.fixture
def c1(pool):
    client = _py(pool[1][0])
    yield client
    client.http.close()


@pytest.fixture
def c2(pool):
    client = _py(pool[1][1])
    yield client
    client.http.close()


def test_status_names_the_servers(pool, c1):
    cluster, _ = pool
    servers = {s.rpc_addr for s in cluster.servers}
    assert c1.status.leader() == cluster.leader().rpc_addr
    assert set(c1.status.peers()) == servers


def test_kv_put_get_cas_delete(c1, c2, prefix):
    key = f"{prefix}/k"
    assert c1.kv.put(key, "one") is True
    index, entry = c2.kv.get(key)
    assert entry["Value"] == b"one" and int(index) >= entry["ModifyIndex"]
    # A stale index loses, the current one wins.
    assert c2.kv.put(key, "two", cas=entry["ModifyIndex"] - 1) is False
    assert c2.kv.put(key, "two", cas=entry["ModifyIndex"]) is True
    assert c1.kv.get(key)[1]["Value"] == b"two"
    assert c1.kv.put(f"{prefix}/other", "x", flags=7) is True
    _, entries = c2.kv.get(prefix, recurse=True)
    assert [(e["Key"], e["Value"]) for e in entries] == [
        (f"{prefix}/k", b"two"), (f"{prefix}/other", b"x")]
    assert c1.kv.get(prefix, keys=True)[1] == [f"{prefix}/k", f"{prefix}/other"]
    assert c2.kv.delete(key) is True
    assert c1.kv.get(key)[1] is None
    assert c1.kv.delete(prefix, recurse=True) is True
    assert c2.kv.get(prefix, recurse=True)[1] is None


def test_catalog_and_health_see_a_service_registered_on_the_other_client(pool, c1, c2):
    cluster, _ = pool
    assert c1.agent.service.register("pyweb", service_id="pyweb1", port=8080, tags=["v1"],
                                     check=consul.Check.ttl("30s")) is True
    assert c1.agent.check.ttl_pass("service:pyweb1") is True
    wait_until(lambda: "pyweb" in c2.catalog.services()[1], DEADLINE,
               what="pyweb in the catalog seen through c2")
    assert c2.catalog.services()[1]["pyweb"] == ["v1"]
    _, nodes = c2.catalog.service("pyweb")
    assert [(n["Node"], n["ServiceID"], n["ServicePort"]) for n in nodes] == [
        ("c1", "pyweb1", 8080)]
    _, nodes = c2.catalog.nodes()
    assert {"c1", "c2"} <= {n["Node"] for n in nodes}
    assert {s.name for s in cluster.servers} <= {n["Node"] for n in nodes}
    wait_until(lambda: [e["Node"]["Node"] for e in c2.health.service("pyweb", passing=True)[1]]
               == ["c1"], DEADLINE, what="pyweb passing through c2")

    assert c1.agent.service.deregister("pyweb1") is True
    wait_until(lambda: c2.catalog.service("pyweb")[1] == [], DEADLINE,
               what="pyweb gone through c2")
    assert c2.health.service("pyweb", passing=True)[1] == []


def test_session_lock(c1, c2, prefix):
    session = c1.session.create(name="pylock", ttl=30)
    info = c2.session.info(session)[1]
    assert info["Node"] == "c1" and info["Name"] == "pylock"
    key = f"{prefix}/lock"
    assert c1.kv.put(key, "held", acquire=session) is True
    entry = c2.kv.get(key)[1]
    assert entry["Session"] == session and entry["LockIndex"] == 1
    other = c2.session.create(name="other", ttl=30)
    assert c2.kv.put(key, "mine", acquire=other) is False
    assert c1.kv.put(key, "free", release=session) is True
    assert "Session" not in c2.kv.get(key)[1]
    assert c2.kv.put(key, "mine", acquire=other) is True
    assert c1.session.destroy(session) is True
    assert c2.session.destroy(other) is True
    wait_until(lambda: "Session" not in c1.kv.get(key)[1], DEADLINE,
               what="the lock released with its session")
    assert c1.session.info(session)[1] is None


def test_events_fire_on_one_client_and_list_on_the_other(c1, c2, prefix):
    fired = c1.event.fire(f"{prefix}-deploy", "v2")
    assert fired["Name"] == f"{prefix}-deploy"

    def seen():
        return [e for e in c2.event.list(name=f"{prefix}-deploy")[1] if e["ID"] == fired["ID"]]
    wait_until(seen, DEADLINE, what="the event listed on c2")
    assert seen()[0]["Payload"] == b"v2"


def test_blocking_get_woken_by_the_other_client(c1, c2, prefix):
    key = f"{prefix}/watched"
    assert c1.kv.put(key, "before") is True
    index, _ = c2.kv.get(key)
    woke = {}

    def watch():
        woke["result"] = c2.kv.get(key, index=index, wait="20s")

    t = threading.Thread(target=watch)
    t.start()
    # The watcher is parked until the write: no answer without one.
    t.join(timeout=1.0)
    assert t.is_alive()
    assert c1.kv.put(key, "after") is True
    t.join(timeout=DEADLINE)
    assert not t.is_alive()
    new_index, entry = woke["result"]
    assert entry["Value"] == b"after" and int(new_index) > int(index)


def test_nodes_members_and_consistency_modes(c1, c2, prefix):
    _, node = c2.catalog.node("c1")
    assert node["Node"]["Node"] == "c1"
    _, checks = c1.health.node("c2")
    assert [(c["CheckID"], c["Status"]) for c in checks] == [("serfHealth", "passing")]
    members = {m["Name"]: m for m in c1.agent.members()}
    assert {"c1", "c2"} <= set(members) and len(members) == 5
    assert members["c2"]["Tags"]["role"] == "node"
    key = f"{prefix}/modes"
    assert c1.kv.put(key, "v") is True
    for mode in ("consistent", "stale", "default"):
        assert c2.kv.get(key, consistency=mode)[1]["Value"] == b"v", mode
    session = c2.session.create(name="listed", ttl=30)
    assert session in [s["ID"] for s in c1.session.list()[1]]
    assert [s["ID"] for s in c1.session.node("c2")[1]] == [session]
    assert c2.session.renew(session)["ID"] == session
    assert c2.session.destroy(session) is True
