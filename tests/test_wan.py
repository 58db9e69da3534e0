"""Two datacenters federated over the WAN pool: s1 in dc1, s2 and s3 in
dc2 (each on its own loopback address), and a client agent in dc1. Only s2
is told to join s1 over the WAN (`retry_join_wan`); s3 is brought in by
dc2's flood join of its LAN servers. The servers then list each other as
WAN members `<node>.<dc>`, every agent lists both datacenters (its own
first), and a call naming `?dc=dc2` made on the dc1 client travels client ->
s1 -> a dc2 server and is answered by dc2's state. DNS names of dc2
(`.service.dc2.consul`, `.node.dc2.consul`, `.query.dc2.consul`) are
answered from dc2's catalog through s1 and through the client (which reads
them through its server); prepared queries with nothing healthy in dc1 fail over to
dc2 (`NearestN`, `Datacenters`, `Targets`), over HTTP and DNS; an event
fired with `?dc=dc2` is gossiped in dc2 only. A server that leaves shows as
left in the others' WAN pools, and dc2 stays reachable through the server
it has left. A server with `ports.serf_wan = -1` is in no WAN pool."""

from __future__ import annotations

import base64
import json
import os
import random
from pathlib import Path

import pytest

from cluster_harness import Cluster
from praetor_harness import Agent, free_port, wait_until
from test_dns import DIG, dig

DEADLINE = 30.0


@pytest.fixture(scope="module")
def federation(praetor_bin, tmp_path_factory):
    base = tmp_path_factory.mktemp("wan")
    first = random.randint(20, 190)
    s1_dns = free_port()
    dc1 = Cluster(praetor_bin, base / "dc1", 1, first_ip=first, names=["s1"],
                  extra_config={"datacenter": "dc1", "ports": {"dns": s1_dns}})
    s1 = dc1.servers[0]
    s1.dns = (s1.ip, s1_dns)
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
        client.dns = ("127.0.0.1", client.isolation["ports"]["dns"])
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

    # A client is in no WAN pool (Consul answers its nil list) and cannot
    # join one.
    r = c1.get("/v1/agent/members", params={"wan": "1"})
    assert (r.status_code, r.text) == (200, "null")
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


def register(agent, node, address, service, status, tags=(), port=5432):
    r = agent.put("/v1/catalog/register", json={
        "Node": node, "Address": address,
        "Service": {"ID": service, "Service": service, "Port": port, "Tags": list(tags)},
        "Check": {"CheckID": f"{service}-{node}", "Name": service, "Status": status,
                  "ServiceID": service}})
    assert r.status_code == 200, r.text


def create_query(agent, body) -> str:
    r = agent.http("POST", "/v1/query", json=body)
    assert r.status_code == 200, r.text
    return r.json()["ID"]


def ask(agent, name, qtype="A", transport="udp"):
    host, port = agent.dns
    return dig(port, name, qtype, transport, server=host)


@pytest.fixture(scope="module")
def dc2_pg(federation):
    """In dc2: `pg` on pg1 (10.2.0.11, passing, tag primary) and pg2
    (10.2.0.12, critical), and a query `pgq` for it; in dc1: `pg` on
    dc1-pg, critical. Seen by both dc2 servers before the tests go on."""
    s1, s2, s3 = federation["s1"], federation["s2"], federation["s3"]
    register(s2, "pg1", "10.2.0.11", "pg", "passing", tags=["primary"])
    register(s2, "pg2", "10.2.0.12", "pg", "critical", tags=["primary"])
    create_query(s2, {"Name": "pgq", "Service": {"Service": "pg"}})
    register(s1, "dc1-pg", "10.1.0.5", "pg", "critical")
    for server in (s2, s3):
        wait_until(lambda server=server: len(server.get(
            "/v1/health/service/pg", params={"stale": ""}).json()) == 2
            and server.get("/v1/query", params={"stale": ""}).json(),
            DEADLINE, what=f"dc2's pg and its query on {server.name}")
    return federation


@pytest.mark.skipif(DIG is None, reason="dig (bind9-dnsutils) is not installed")
def test_dns_names_of_another_datacenter(dc2_pg):
    s1, c1 = dc2_pg["s1"], dc2_pg["c1"]
    for agent in (s1, c1):
        # Only dc2's healthy instance, whichever form names it.
        for name in ("pg.service.dc2.consul", "primary.pg.service.dc2.consul",
                     "_pg._primary.service.dc2.consul", "_pg._tcp.service.dc2.consul"):
            r = ask(agent, name)
            assert r.status == "NOERROR", (agent.name, name, r.raw)
            assert "aa" in r.flags, r.raw
            assert r.rdata("A") == ["10.2.0.11"], (agent.name, name, r.raw)
        # SRV targets name the node in dc2, with its address alongside.
        r = ask(agent, "_pg._primary.service.dc2.consul", "SRV")
        assert r.rdata("SRV") == ["1 1 5432 pg1.node.dc2.consul."], r.raw
        assert ("pg1.node.dc2.consul.", "10.2.0.11") in [
            (x.name, x.data) for x in r.additional if x.rtype == "A"], r.raw
        r = ask(agent, "pg1.node.dc2.consul")
        assert r.rdata("A") == ["10.2.0.11"], r.raw
        # The prepared query of dc2, run there.
        r = ask(agent, "pgq.query.dc2.consul", "SRV")
        assert r.rdata("SRV") == ["1 1 5432 pg1.node.dc2.consul."], r.raw
        # dc1's own pg is all critical; dc1 knows no pg1.
        for name in ("pg.service.consul", "pg1.node.consul", "pg1.node.dc1.consul"):
            r = ask(agent, name)
            assert r.status == "NXDOMAIN", (agent.name, name, r.raw)
        # An unknown datacenter: NXDOMAIN with the SOA, as Consul answers
        # its "No path to datacenter".
        for name in ("pg.service.nowhere.consul", "pg1.node.nowhere.consul",
                     "pgq.query.nowhere.consul", "nopq.query.dc2.consul"):
            r = ask(agent, name)
            assert r.status == "NXDOMAIN", (agent.name, name, r.raw)
            assert [x.rtype for x in r.authority] == ["SOA"], r.raw
            assert r.authority[0].name == "consul.", r.raw
    r = ask(c1, "pg.service.dc2.consul", transport="tcp")
    assert r.rdata("A") == ["10.2.0.11"], r.raw


def node_names(run):
    return sorted(n["Node"]["Node"] for n in run["Nodes"])


def test_prepared_queries_fail_over_to_dc2(dc2_pg):
    s1, c1 = dc2_pg["s1"], dc2_pg["c1"]
    failovers = {
        "pg-near": {"NearestN": 1},
        "pg-list": {"Datacenters": ["nowhere", "dc1", "dc2"]},
        "pg-both": {"NearestN": 2, "Datacenters": ["dc2"]},
        "pg-targets": {"Targets": [{"Datacenter": "nowhere"}, {"Datacenter": "dc2"}]},
    }
    for name, failover in failovers.items():
        create_query(s1, {"Name": name, "Service": {"Service": "pg", "Failover": failover}})
    create_query(s1, {"Name": "pg-stay", "Service": {"Service": "pg"}})
    create_query(s1, {"Name": "ghost-q",
                      "Service": {"Service": "ghost", "Failover": {"NearestN": 1}}})
    for agent in (s1, c1):
        for name in failovers:
            r = agent.get(f"/v1/query/{name}/execute")
            assert r.status_code == 200, r.text
            run = r.json()
            # Unknown datacenters and dc1 itself are skipped; dc2, asked
            # once, answers with its healthy instance.
            assert (run["Datacenter"], run["Failovers"]) == ("dc2", 1), (name, run)
            assert node_names(run) == ["pg1"], (name, run)
            assert run["Nodes"][0]["Node"]["Datacenter"] == "dc2"
            assert run["Service"] == "pg"
        # Nothing to fail over to: dc1's empty answer.
        run = agent.get("/v1/query/pg-stay/execute").json()
        assert (run["Datacenter"], run["Failovers"], run["Nodes"]) == ("dc1", 0, [])
        # dc2 has nothing either: its empty answer, one failover.
        run = agent.get("/v1/query/ghost-q/execute").json()
        assert (run["Datacenter"], run["Failovers"], run["Nodes"]) == ("dc2", 1, [])
    # The limit travels with the query.
    run = c1.get("/v1/query/pg-near/execute", params={"limit": "1"}).json()
    assert len(run["Nodes"]) == 1
    # Explain shows the query as stored, failover and all.
    r = c1.get("/v1/query/pg-list/explain")
    assert r.status_code == 200, r.text
    assert r.json()["Query"]["Service"]["Failover"] == {
        "NearestN": 0, "Datacenters": ["nowhere", "dc1", "dc2"], "Targets": None}
    # DNS runs the same failover, through a server and through the client.
    if DIG is not None:
        for agent in (s1, c1):
            for name in ("pg-near.query.consul", "pg-list.query.consul"):
                r = ask(agent, name, "SRV")
                assert r.status == "NOERROR", (agent.name, name, r.raw)
                assert r.rdata("SRV") == ["1 1 5432 pg1.node.dc2.consul."], r.raw
                assert ask(agent, name).rdata("A") == ["10.2.0.11"]
            r = ask(agent, "pg-stay.query.consul")
            assert r.status == "NXDOMAIN", r.raw


def test_an_event_fired_for_dc2_is_gossiped_there(federation):
    s1, s2, s3, c1 = federation["s1"], federation["s2"], federation["s3"], federation["c1"]
    fired = {}
    for agent, name in ((c1, "wan-deploy"), (s1, "wan-restart")):
        r = agent.put(f"/v1/event/fire/{name}", params={"dc": "dc2"}, data=b"v2")
        assert r.status_code == 200, r.text
        event = r.json()
        assert event["Name"] == name
        fired[name] = event["ID"]
    for server in (s2, s3):
        for name, event_id in fired.items():
            listed = wait_until(
                lambda server=server, name=name: server.get(
                    "/v1/event/list", params={"name": name}).json(),
                DEADLINE, what=f"{name} in {server.name}'s event list")
            assert [e["ID"] for e in listed] == [event_id]
            assert base64.b64decode(listed[0]["Payload"]) == b"v2"
    # Not fired in dc1. A list names no datacenter: `?dc` is ignored, as
    # Consul does, and the agent asked lists its own.
    for agent in (s1, c1):
        for params in ({}, {"dc": "dc2"}):
            names = {e["Name"] for e in agent.get("/v1/event/list", params=params).json()}
            assert not names & set(fired), (agent.name, params, names)
    r = c1.put("/v1/event/fire/wan-x", params={"dc": "nowhere"})
    assert (r.status_code, r.text) == (500, "No path to datacenter")


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


def test_a_server_with_the_wan_port_off_is_in_no_wan_pool(praetor_bin, tmp_path, cli):
    dc3 = Cluster(praetor_bin, tmp_path / "dc3", 1, names=["solo"],
                  extra_config={"datacenter": "dc3", "ports": {"serf_wan": -1}})
    try:
        dc3.start()
        solo = dc3.servers[0]
        r = solo.get("/v1/agent/members", params={"wan": "1"})
        assert (r.status_code, r.text) == (200, "null")
        [me] = solo.get("/v1/agent/members").json()
        assert me["Tags"]["role"] == "consul" and "wan_join_port" not in me["Tags"]
        assert solo.get("/v1/catalog/datacenters").json() == ["dc3"]
        out = cli("members", "-wan", f"-http-addr={solo.ip}:{dc3.ports['http']}")
        assert (out.returncode, out.stdout) == (2, b""), out.stderr
        r = solo.put(f"/v1/agent/join/{solo.ip}:8302", params={"wan": "1"})
        assert (r.status_code, r.text) == (500, "WAN Federation is disabled")
        r = solo.get("/v1/kv/x", params={"dc": "dc1"})
        assert (r.status_code, r.text) == (500, "No path to datacenter")
        # No WAN listener: the server listens on its HTTP, server and LAN
        # ports only (DNS and gRPC are off in the harness).
        ports = dc3.ports
        assert listening_ports(solo.proc.pid) == {
            ("tcp", ports["http"]), ("tcp", ports["server"]),
            ("tcp", ports["serf_lan"]), ("udp", ports["serf_lan"])}
    finally:
        dc3.close()


def listening_ports(pid: int) -> set:
    """(protocol, port) of every TCP socket listening and UDP socket bound
    that process `pid` holds, read from /proc."""
    inodes = set()
    fd_dir = Path(f"/proc/{pid}/fd")
    for fd in fd_dir.iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:["):-1])
    found = set()
    for proto, table in (("tcp", "tcp"), ("tcp", "tcp6"), ("udp", "udp"), ("udp", "udp6")):
        path = Path(f"/proc/net/{table}")
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            # 0A is LISTEN; a bound UDP socket has no such state.
            if inode in inodes and (proto == "udp" or state == "0A"):
                found.add((proto, int(local.rsplit(":", 1)[1], 16)))
    return found
