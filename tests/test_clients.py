"""Client agents in front of three real servers: a client joins the LAN
pool, finds the servers from their gossip tags and forwards every API call
and write to one of them. A service registered on one client is seen through
every agent, KV written on one client is read (and wakes a blocking query)
on another, a deregistration is synced away, and a client whose server is
killed moves to another and keeps serving; in network namespaces, a client
cut off from servers fails over to the one it still reaches, and stays
alive in gossip while it reaches another member."""

from __future__ import annotations

import signal
import threading
import time

import pytest

from cluster_harness import client_agent, kv_value, put_ok
from netns_harness import NetnsCluster
from praetor_harness import wait_until
from test_dns import DIG, dig

DEADLINE = 30.0


@pytest.fixture
def clients(cluster, agents):
    cs = [client_agent(agents, cluster, f"c{i}") for i in (1, 2)]
    for c in cs:
        c.spawn()
    for c in cs:
        # Ready once it answers the leader through a server.
        c.wait_ready(DEADLINE)
    return cs


def _service_nodes(agent, name: str, **params):
    r = agent.get(f"/v1/catalog/service/{name}", params=params, timeout=10)
    assert r.status_code == 200, r.text
    return [e["Node"] for e in r.json()]


def test_a_client_answers_through_the_servers(cluster, clients):
    c1, c2 = clients
    leader = cluster.leader()
    assert c1.get("/v1/status/leader").json() == leader.rpc_addr
    assert set(c2.get("/v1/status/peers").json()) == {s.rpc_addr for s in cluster.servers}
    # The client's own node is in the catalog, registered through a server.
    wait_until(lambda: "c1" in [n["Node"] for n in leader.get("/v1/catalog/nodes").json()],
               DEADLINE, what="c1 in the catalog")

    r = c1.put("/v1/agent/service/register",
               json={"Name": "web", "ID": "web1", "Port": 80,
                     "Check": {"TTL": "30s", "Status": "passing"}})
    assert r.status_code == 200, r.text
    for a in (c1, c2, *cluster.servers):
        wait_until(lambda a=a: _service_nodes(a, "web") == ["c1"], DEADLINE,
                   what=f"web on c1 seen through {a.name}")
    health = c2.get("/v1/health/service/web", params={"passing": ""}).json()
    assert [e["Node"]["Node"] for e in health] == ["c1"]
    assert "X-Consul-Index" in c2.get("/v1/catalog/service/web").headers

    # KV through one client, read and watched through the other.
    assert put_ok(c1, "app/x", "1")
    assert kv_value(c2, "app/x") == b"1"
    index = int(c2.get("/v1/kv/app/x").headers["X-Consul-Index"])
    woke = {}

    def watch():
        r = c2.get("/v1/kv/app/x", params={"index": index, "wait": "20s", "raw": ""},
                   timeout=30)
        woke["value"] = r.content

    t = threading.Thread(target=watch)
    t.start()
    assert put_ok(c1, "app/x", "2")
    t.join(timeout=30)
    assert woke.get("value") == b"2"

    # A client's DNS is answered by a server, over UDP and TCP.
    if DIG is not None:
        port = c2.isolation["ports"]["dns"]
        for transport in ("udp", "tcp"):
            reply = dig(port, "web.service.consul", "A", transport)
            assert reply.status == "NOERROR" and reply.rdata("A") == ["127.0.0.1"], reply.raw
            srv = dig(port, "web.service.consul", "SRV", transport)
            assert [r.data.split()[2] for r in srv.answer] == ["80"], srv.raw
        missing = dig(port, "nosuch.service.consul")
        assert missing.status == "NXDOMAIN", missing.raw
        node = dig(port, "c1.node.consul")
        assert node.rdata("A") == ["127.0.0.1"], node.raw

    # The client reports its network coordinate through a server.
    wait_until(lambda: "c1" in [c["Node"] for c in leader.get("/v1/coordinate/nodes").json()],
               DEADLINE, what="c1's coordinate in the catalog")
    nearest = c1.get("/v1/catalog/nodes", params={"near": "_agent"}).json()
    assert nearest[0]["Node"] == "c1"

    # Anti-entropy removes what the client no longer has.
    assert c1.put("/v1/agent/service/deregister/web1").status_code == 200
    wait_until(lambda: _service_nodes(c2, "web") == [], DEADLINE, what="web to be deregistered")


def test_a_client_fails_over_when_its_server_dies(cluster, clients):
    c1, _ = clients
    for i, victim in enumerate(cluster.servers):
        victim.stop(signal.SIGKILL)
        # Whichever server the client used, its writes and reads go on.
        wait_until(lambda i=i: put_ok(c1, f"fo/{i}", "v", timeout=10), DEADLINE,
                   what=f"a write through c1 with {victim.name} dead")
        assert kv_value(c1, f"fo/{i}") == b"v"
        victim.restart()
        victim.wait_ready(DEADLINE)
        cluster.wait_converged()


def _serf_health(agent, node: str):
    checks = agent.get(f"/v1/health/node/{node}", timeout=10).json()
    return next((c["Status"] for c in checks if c["CheckID"] == "serfHealth"), None)


def test_a_dead_client_turns_critical_and_loses_its_locks(cluster, clients):
    c1, c2 = clients
    leader = cluster.leader()
    r = c2.put("/v1/agent/service/register", json={"Name": "db", "ID": "db1", "Port": 5432})
    assert r.status_code == 200, r.text
    wait_until(lambda: _service_nodes(c1, "db") == ["c2"], DEADLINE, what="db on c2 registered")
    wait_until(lambda: _serf_health(leader, "c2") == "passing", DEADLINE,
               what="c2's serfHealth passing")
    # c2 holds a lock through a session bound to its serfHealth.
    sid = c2.put("/v1/session/create", json={"Name": "holder", "LockDelay": "0s"}).json()["ID"]
    assert c2.put("/v1/kv/locks/db", params={"acquire": sid}, data=b"c2").json() is True
    other = c1.put("/v1/session/create", json={"Name": "waiter", "LockDelay": "0s"}).json()["ID"]
    assert c1.put("/v1/kv/locks/db", params={"acquire": other}, data=b"c1").json() is False

    c2.stop(signal.SIGKILL)
    wait_until(lambda: _serf_health(leader, "c2") == "critical", DEADLINE,
               what="c2's serfHealth critical after kill -9")
    passing = c1.get("/v1/health/service/db", params={"passing": ""}).json()
    assert passing == []
    # The session died with the node's health: the lock is free again.
    wait_until(lambda: c1.get(f"/v1/session/info/{sid}").json() in (None, []), DEADLINE,
               what="c2's session invalidated")
    assert c1.put("/v1/kv/locks/db", params={"acquire": other}, data=b"c1").json() is True


def test_a_client_that_leaves_is_removed_from_the_catalog(cluster, clients):
    c1, _ = clients
    leader = cluster.leader()
    wait_until(lambda: _serf_health(leader, "c1") == "passing", DEADLINE,
               what="c1's serfHealth passing")
    c1.stopped_by_test = True
    assert c1.put("/v1/agent/leave").status_code == 200
    assert c1.wait_exit() == 0
    wait_until(lambda: "c1" not in [n["Node"] for n in leader.get("/v1/catalog/nodes").json()],
               DEADLINE, what="c1 gone from the catalog after its leave")


def _catalog_nodes(agent):
    return [n["Node"] for n in agent.get("/v1/catalog/nodes", timeout=10).json()]


def test_a_dead_client_is_reaped_after_the_reconnect_timeout_it_advertises(
        cluster, clients, agents):
    _, c2 = clients
    c3 = client_agent(agents, cluster, "c3", config={"advertise_reconnect_timeout": "3s"})
    c3.spawn()
    c3.wait_ready(DEADLINE)
    leader = cluster.leader()
    for node in ("c2", "c3"):
        wait_until(lambda node=node: _serf_health(leader, node) == "passing", DEADLINE,
                   what=f"{node}'s serfHealth passing")

    def member_tags():
        return {m["Name"]: m["Tags"] for m in leader.get("/v1/agent/members").json()}

    # The servers learn c3's tags from gossip, which may trail its own
    # registration of its node.
    wait_until(lambda: "c3" in member_tags(), DEADLINE, what="c3 a member on the leader")
    tags = member_tags()
    assert tags["c3"]["rc_tm"] == "3s"
    assert "rc_tm" not in tags["c2"]

    c2.stop(signal.SIGKILL)
    c3.stop(signal.SIGKILL)
    for node in ("c2", "c3"):
        wait_until(lambda node=node: _serf_health(leader, node) == "critical", DEADLINE,
                   what=f"{node}'s serfHealth critical after kill -9")
    # Reaped once its 3 s have passed, at the next reap (every 15 s), then
    # deregistered by the leader; c2 keeps the pool's 72 hours.
    wait_until(lambda: "c3" not in _catalog_nodes(leader), 3 + 15 + DEADLINE,
               what="c3 reaped from the catalog")
    members = {m["Name"] for m in leader.get("/v1/agent/members").json()}
    assert "c3" not in members and "c2" in members
    assert "c2" in _catalog_nodes(leader)
    assert _serf_health(leader, "c2") == "critical"


def _cut(net, client: str, servers: list[int]) -> None:
    """Nothing passes between `client` and these servers, either way."""
    for s in servers:
        net.block(client, s)
        net.block(s, client)


def _serf_health(agent, node: str) -> str:
    r = agent.get(f"/v1/health/node/{node}")
    assert r.status_code == 200, r.text
    return next((c["Status"] for c in r.json() if c["CheckID"] == "serfHealth"), "")


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_a_client_cut_off_from_servers_fails_over_and_stays_alive(praetor_bin, tmp_path,
                                                                   netns_factory):
    """Three servers and two clients in network namespaces. c0 is cut off
    from all servers but one, each in turn: it keeps writing and reading
    through the one it still reaches. Then it is cut off from every
    server: gossip still reaches it through c1 (indirect probes), so the
    servers do not declare it dead, and it serves again once healed."""
    net = netns_factory(3, clients=2)
    cluster = NetnsCluster(praetor_bin, tmp_path, net)
    try:
        cluster.start()
        c0, c1 = cluster.start_clients()
        wait_until(lambda: _serf_health(c1, "c0") == "passing", 30, interval=0.2,
                   what="c0's serfHealth to be passing")
        for keep in range(3):
            _cut(net, "c0", [s for s in range(3) if s != keep])
            key = f"cut/through-s{keep + 1}"
            wait_until(lambda: put_ok(c0, key, "v", timeout=5), 60, interval=0.2,
                       what=f"c0 to write through s{keep + 1}, the only server it reaches")
            assert kv_value(c0, key) == b"v"
            assert kv_value(c1, key) == b"v"
            net.heal()

        _cut(net, "c0", [0, 1, 2])
        # Longer than memberlist's suspicion timeout for five members, so
        # a death declared from failed direct probes would show by then.
        held_until = time.monotonic() + 15
        while time.monotonic() < held_until:
            assert _serf_health(c1, "c0") == "passing"
            assert any(m["Name"] == "c0" and m["Status"] == 1
                       for m in c1.get("/v1/agent/members").json())
            time.sleep(0.5)
        r = c0.get("/v1/kv/cut/through-s1", timeout=15)
        assert r.status_code == 500, (r.status_code, r.text)
        net.heal()
        wait_until(lambda: put_ok(c0, "cut/healed", "v", timeout=5), 60, interval=0.2,
                   what="c0 to write again once healed")
    finally:
        cluster.close()
