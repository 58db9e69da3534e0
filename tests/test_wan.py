"""Two datacenters federated over the WAN pool: s1 in dc1, s2 and s3 in
dc2 (each on its own loopback address), and a client agent in dc1. Only s2
is told to join s1 over the WAN (`retry_join_wan`); s3 is brought in by
dc2's flood join of its LAN servers. The servers then list each other as
WAN members `<node>.<dc>`, every agent lists both datacenters (its own
first), and a call naming `?dc=dc2` made on the dc1 client travels client ->
s1 -> a dc2 server and is answered by dc2's state. A server that leaves
shows as left in the others' WAN pools, and dc2 stays reachable through
the server it has left."""

from __future__ import annotations

import json
import random

import pytest

from cluster_harness import Cluster
from praetor_harness import Agent, wait_until

DEADLINE = 30.0


@pytest.fixture(scope="module")
def federation(praetor_bin, tmp_path_factory):
    base = tmp_path_factory.mktemp("wan")
    first = random.randint(20, 190)
    dc1 = Cluster(praetor_bin, base / "dc1", 1, first_ip=first, names=["s1"],
                  extra_config={"datacenter": "dc1"})
    s1 = dc1.servers[0]
    wan_addr = f"{s1.ip}:{dc1.ports['serf_wan']}"
    dc2 = Cluster(praetor_bin, base / "dc2", 2, first_ip=first + 5, names=["s2", "s3"],
                  extra_config={"datacenter": "dc2", "retry_interval_wan": "1s"})
    # Only s2 is told where dc1 is.
    s2_conf = dc2.servers[0].workdir / "wan.json"
    s2_conf.write_text(json.dumps({"retry_join_wan": [wan_addr]}))
    dc2.servers[0].args += ["-config-file", str(s2_conf)]
    conf = base / "c1.json"
    conf.write_text(json.dumps({"retry_interval": "1s"}))
    client = Agent(praetor_bin, base / "c1", node="c1", name="c1", dev=False,
                   isolate_ports=True, config_files=[conf],
                   extra_args=[f"-data-dir={base / 'c1' / 'data'}", "-bind=127.0.0.1",
                               f"-retry-join={s1.ip}:{dc1.ports['serf_lan']}"])
    try:
        dc1.start()
        dc2.start()
        client.start(DEADLINE)
        yield {"s1": s1, "s2": dc2.servers[0], "s3": dc2.servers[1], "c1": client,
               "dc1": dc1, "dc2": dc2}
    finally:
        try:
            client.close()
        finally:
            client.kill()
            try:
                dc2.close()
            finally:
                dc1.close()


def wan_members(agent) -> dict:
    r = agent.get("/v1/agent/members", params={"wan": "1"})
    assert r.status_code == 200, r.text
    return {m["Name"]: m for m in r.json()}


def test_servers_share_the_wan_pool(federation):
    s1, s2, s3, c1 = federation["s1"], federation["s2"], federation["s3"], federation["c1"]
    dc1, dc2 = federation["dc1"], federation["dc2"]
    everyone = {"s1.dc1", "s2.dc2", "s3.dc2"}
    for server in (s1, s2, s3):
        members = wait_until(
            lambda server=server: (lambda m: m if m.keys() == everyone
                                   and all(x["Status"] == 1 for x in m.values()) else None)(
                wan_members(server)),
            DEADLINE, what=f"every server alive in {server.name}'s WAN pool")
        one, two = members["s1.dc1"], members["s2.dc2"]
        assert (one["Tags"]["dc"], two["Tags"]["dc"]) == ("dc1", "dc2")
        assert one["Tags"]["role"] == two["Tags"]["role"] == "consul"
        assert one["Tags"]["port"] == str(dc1.ports["server"])
        assert two["Tags"]["port"] == str(dc2.ports["server"])
        assert "wan_join_port" not in one["Tags"]
        assert (one["Addr"], one["Port"]) == (s1.ip, dc1.ports["serf_wan"])
        assert (two["Addr"], two["Port"]) == (s2.ip, dc2.ports["serf_wan"])
    # The LAN pools stay apart.
    lan = {m["Name"] for m in s1.get("/v1/agent/members").json()}
    assert lan == {"s1", "c1"}

    # A client is in no WAN pool and cannot join one.
    assert c1.get("/v1/agent/members", params={"wan": "1"}).json() == []
    r = c1.put(f"/v1/agent/join/{s1.ip}:{dc1.ports['serf_wan']}", params={"wan": "1"})
    assert r.status_code == 500
    assert "Must be a server to join WAN cluster" in r.text
    # Joining a server already in the pool through the API succeeds.
    r = s1.put(f"/v1/agent/join/{s2.ip}:{dc2.ports['serf_wan']}", params={"wan": "1"})
    assert r.status_code == 200, r.text


def test_datacenters_are_listed_nearest_first(federation):
    s1, s2, c1 = federation["s1"], federation["s2"], federation["c1"]
    wait_until(lambda: c1.get("/v1/catalog/datacenters").json() == ["dc1", "dc2"],
               DEADLINE, what="the client lists dc1 then dc2")
    assert s1.get("/v1/catalog/datacenters").json() == ["dc1", "dc2"]
    assert s2.get("/v1/catalog/datacenters").json() == ["dc2", "dc1"]

    # WAN coordinates, by datacenter, under plain node names.
    def both_measured():
        maps = {m["Datacenter"]: m for m in s1.get("/v1/coordinate/datacenters").json()}
        nodes = {dc: [c["Node"] for c in m["Coordinates"]] for dc, m in maps.items()}
        return maps if nodes == {"dc1": ["s1"], "dc2": ["s2", "s3"]} else None

    maps = wait_until(both_measured, DEADLINE, what="WAN coordinates of both servers")
    assert maps["dc2"]["AreaID"] == "wan"
    assert len(maps["dc2"]["Coordinates"][0]["Coord"]["Vec"]) == 8


def test_kv_goes_to_the_named_datacenter(federation):
    s1, s2, c1 = federation["s1"], federation["s2"], federation["c1"]
    r = c1.put("/v1/kv/wan/greeting", data=b"hello dc2", params={"dc": "dc2"})
    assert r.status_code == 200, r.text
    assert r.json() is True
    assert s2.get("/v1/kv/wan/greeting", params={"raw": ""}).content == b"hello dc2"
    assert s1.get("/v1/kv/wan/greeting").status_code == 404
    assert c1.get("/v1/kv/wan/greeting").status_code == 404
    r = c1.get("/v1/kv/wan/greeting", params={"dc": "dc2", "raw": ""})
    assert r.status_code == 200 and r.content == b"hello dc2"
    assert "X-Consul-Index" in r.headers
    # A transaction in dc2 through the dc1 client.
    r = c1.put("/v1/txn", params={"dc": "dc2"},
               json=[{"KV": {"Verb": "get", "Key": "wan/greeting"}}])
    assert r.status_code == 200, r.text
    assert r.json()["Results"][0]["KV"]["Key"] == "wan/greeting"


def test_catalog_and_health_of_another_datacenter(federation):
    s2, c1 = federation["s2"], federation["c1"]
    r = s2.put("/v1/catalog/register", json={
        "Node": "db-host", "Address": "10.2.0.1",
        "Service": {"Service": "db", "Port": 5432},
        "Check": {"CheckID": "db-ok", "Name": "db", "Status": "passing",
                  "ServiceID": "db"}})
    assert r.status_code == 200, r.text
    nodes = [e["Node"] for e in c1.get("/v1/catalog/service/db", params={"dc": "dc2"}).json()]
    assert nodes == ["db-host"]
    assert all(e["Datacenter"] == "dc2" for e in
               c1.get("/v1/catalog/service/db", params={"dc": "dc2"}).json())
    assert c1.get("/v1/catalog/service/db").json() == []
    health = c1.get("/v1/health/service/db", params={"dc": "dc2", "passing": ""}).json()
    assert [e["Node"]["Node"] for e in health] == ["db-host"]
    dc2_nodes = {n["Node"] for n in c1.get("/v1/catalog/nodes", params={"dc": "dc2"}).json()}
    assert "db-host" in dc2_nodes and "c1" not in dc2_nodes and "s1" not in dc2_nodes
    assert "db" in c1.get("/v1/catalog/services", params={"dc": "dc2"}).json()


def test_an_unknown_datacenter_has_no_path(federation):
    s1, c1 = federation["s1"], federation["c1"]
    for agent in (c1, s1):
        for path in ("/v1/kv/x", "/v1/catalog/nodes", "/v1/health/service/db"):
            r = agent.get(path, params={"dc": "nowhere"})
            assert (r.status_code, r.text) == (500, "No path to datacenter"), path


def test_a_server_that_leaves_shows_as_left(federation):
    s1, s2, s3, c1 = federation["s1"], federation["s2"], federation["s3"], federation["c1"]
    r = s2.put("/v1/agent/leave")
    assert r.status_code == 200, r.text
    s2.stopped_by_test = True
    for server in (s1, s3):
        wait_until(lambda server=server: wan_members(server).get("s2.dc2", {}).get("Status") == 3,
                   DEADLINE, what=f"s2.dc2 left in {server.name}'s WAN pool")
    assert s2.wait_exit(DEADLINE) == 0
    # dc2 is still there, through s3 alone (a stale read: whether s3 leads
    # alone at once after its peer left is Raft's business, not the WAN's).
    assert s1.get("/v1/catalog/datacenters").json() == ["dc1", "dc2"]
    wait_until(lambda: c1.get("/v1/kv/wan/greeting",
                              params={"dc": "dc2", "raw": "", "stale": ""}).content
               == b"hello dc2", DEADLINE, what="dc2's KV read through s3")
    # When the last server of dc2 leaves, there is no path there.
    assert s3.put("/v1/agent/leave").status_code == 200
    s3.stopped_by_test = True
    wait_until(lambda: s1.get("/v1/catalog/datacenters").json() == ["dc1"],
               DEADLINE, what="dc2 gone once its servers left")
    assert s3.wait_exit(DEADLINE) == 0
    r = s1.get("/v1/kv/wan/greeting", params={"dc": "dc2"})
    assert (r.status_code, r.text) == (500, "No path to datacenter")
