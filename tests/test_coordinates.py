"""Network coordinates: agents report theirs into the catalog, the
/v1/coordinate endpoints read and update them in Consul's shapes, `?near`
sorts catalog and health answers by estimated round trip, and `praetor rtt`
prints Consul's estimate. Hand-made coordinates on catalog-registered nodes
make the orderings deterministic; at the end, servers and client agents in
network namespaces with injected latencies (tests/netns_harness.py) show
that the coordinates they compute from their own probes order `?near`
answers by those latencies."""

from __future__ import annotations

import itertools
import json
import re
import threading
import time

import pytest

from conftest import skip_unless_ci
from netns_harness import NetnsCluster
from praetor_harness import wait_until

DEADLINE = 30.0
DIMENSIONS = 8
HEIGHT = 1.0e-5


def coord(x: float) -> dict:
    return {"Vec": [x] + [0.0] * (DIMENSIONS - 1), "Error": 1.5, "Adjustment": 0.0,
            "Height": HEIGHT}


def register(agent, node: str, service: str | None = "web") -> None:
    body = {"Node": node, "Address": "10.1.0.1"}
    if service:
        body["Service"] = {"Service": service, "ID": f"{service}-{node}", "Port": 80}
    r = agent.put("/v1/catalog/register", json=body)
    assert r.status_code == 200, r.text


def update(agent, node: str, c: dict, **extra):
    return agent.put("/v1/coordinate/update", json={"Node": node, "Segment": "", "Coord": c,
                                                      **extra})


def coordinate_nodes(agent) -> dict:
    r = agent.get("/v1/coordinate/nodes")
    assert r.status_code == 200, r.text
    return {e["Node"]: e for e in r.json()}


@pytest.fixture
def placed(agent):
    """src at the origin; near, mid and far along one axis; nocoord without
    a coordinate. All run `web`."""
    for node in ("src", "far", "nocoord", "mid", "near"):
        register(agent, node)
    for node, x in (("src", 0.0), ("near", 0.001), ("mid", 0.005), ("far", 0.01)):
        r = update(agent, node, coord(x))
        assert r.status_code == 200, r.text
        assert r.text == ""
    wait_until(lambda: {"src", "near", "mid", "far"} <= set(coordinate_nodes(agent)),
               DEADLINE, what="the hand-made coordinates to be stored")
    return agent


def test_the_agent_reports_its_own_coordinate(agent):
    wait_until(lambda: "test-node" in coordinate_nodes(agent), DEADLINE,
               what="the dev agent's own coordinate in the catalog")
    r = agent.get("/v1/coordinate/node/test-node")
    assert r.status_code == 200, r.text
    assert int(r.headers["X-Consul-Index"]) > 0
    [entry] = r.json()
    assert set(entry) == {"Node", "Segment", "Coord"}
    assert entry["Node"] == "test-node" and entry["Segment"] == ""
    assert set(entry["Coord"]) == {"Vec", "Error", "Adjustment", "Height"}
    assert len(entry["Coord"]["Vec"]) == DIMENSIONS


def test_nodes_lists_coordinates_in_consuls_shape(placed):
    entries = placed.get("/v1/coordinate/nodes").json()
    by_node = {e["Node"]: e for e in entries}
    assert by_node["mid"] == {"Node": "mid", "Segment": "", "Coord": coord(0.005)}
    assert "nocoord" not in by_node
    names = [e["Node"] for e in entries]
    assert names == sorted(names)
    assert placed.get("/v1/coordinate/nodes?segment=other").json() == []


def test_updates_for_unknown_nodes_are_accepted_and_dropped(placed):
    r = update(placed, "stranger", coord(0.1))
    assert r.status_code == 200, r.text
    # A later update to a known node has landed, so the stranger's would have.
    assert update(placed, "near", coord(0.002)).status_code == 200
    wait_until(lambda: coordinate_nodes(placed)["near"]["Coord"]["Vec"][0] == 0.002, DEADLINE,
               what="the later update to land")
    assert "stranger" not in coordinate_nodes(placed)
    assert placed.get("/v1/coordinate/node/stranger").status_code == 404


def test_bad_updates_get_consuls_errors(agent):
    register(agent, "n1", service=None)
    r = update(agent, "n1", {"Vec": [0.0, 0.0, 0.0], "Error": 1.5, "Adjustment": 0.0,
                             "Height": HEIGHT})
    assert (r.status_code, r.text) == (500, "incompatible coordinate")
    r = update(agent, "n1", None)
    assert (r.status_code, r.text) == (500, "invalid coordinate")
    r = agent.put("/v1/coordinate/update", data=b'{"Node": "n1", "Coord": {"Vec": [NaN]}}')
    assert r.status_code == 400 and r.text.startswith("Request decode failed:"), r.text
    r = update(agent, "n1", coord(0.0), Datacenter="elsewhere")
    assert (r.status_code, r.text) == (500, "No path to datacenter")
    assert agent.get("/v1/coordinate/update").status_code == 405
    assert agent.put("/v1/coordinate/nodes").status_code == 405
    assert agent.get("/v1/coordinate/node/n1").status_code == 404


def test_a_deregistered_node_loses_its_coordinate(placed):
    r = placed.put("/v1/catalog/deregister", json={"Node": "mid"})
    assert r.status_code == 200, r.text
    assert "mid" not in coordinate_nodes(placed)
    r = placed.get("/v1/coordinate/node/mid")
    assert r.status_code == 404 and r.text == ""
    assert "X-Consul-Index" in r.headers


def test_a_blocking_read_wakes_on_an_update(placed):
    index = int(placed.get("/v1/coordinate/nodes").headers["X-Consul-Index"])
    result = {}

    def block():
        result["r"] = placed.get(f"/v1/coordinate/nodes?index={index}&wait=20s", timeout=30)

    reader = threading.Thread(target=block)
    reader.start()
    try:
        assert update(placed, "far", coord(0.02)).status_code == 200
    finally:
        reader.join(timeout=30)
    r = result["r"]
    assert int(r.headers["X-Consul-Index"]) > index
    assert {e["Node"]: e for e in r.json()}["far"]["Coord"] == coord(0.02)


def test_near_sorts_by_estimated_round_trip(placed):
    want = ["near", "mid", "far", "nocoord"]
    nodes = [n["Node"] for n in placed.get("/v1/catalog/nodes?near=src").json()]
    assert [n for n in nodes if n in want] == want
    assert nodes[0] == "src", "the source itself is nearest"
    from_far = [n["Node"] for n in placed.get("/v1/catalog/nodes?near=far").json()]
    assert from_far[:4] == ["far", "mid", "near", "src"]
    service = [s["Node"] for s in placed.get("/v1/catalog/service/web?near=src").json()]
    assert service == ["src"] + want
    health = [e["Node"]["Node"] for e in placed.get("/v1/health/service/web?near=mid").json()]
    assert health[:2] == ["mid", "near"] and health[-1] == "nocoord"


def test_near_an_unknown_node_leaves_the_order_alone(placed):
    plain = [n["Node"] for n in placed.get("/v1/catalog/nodes").json()]
    assert plain == sorted(plain)
    ghost = [n["Node"] for n in placed.get("/v1/catalog/nodes?near=ghost").json()]
    assert ghost == plain


def test_near_agent_means_this_agents_node(placed):
    wait_until(lambda: "test-node" in coordinate_nodes(placed), DEADLINE,
               what="the dev agent's own coordinate")
    own = coordinate_nodes(placed)["test-node"]["Coord"]["Vec"]
    assert own == [0.0] * DIMENSIONS, "a lone agent stays at the origin"
    nodes = [s["Node"] for s in placed.get("/v1/catalog/service/web?near=_agent").json()]
    assert nodes == ["src", "near", "mid", "far", "nocoord"]


def run_rtt(cli, agent, *args):
    return cli("rtt", f"-http-addr=127.0.0.1:{agent.port}", *args)


def test_rtt_prints_consuls_estimate(placed, cli):
    p = run_rtt(cli, placed, "near", "far")
    assert p.returncode == 0, p.stderr
    # |0.010 - 0.001| s apart plus both heights.
    assert p.stdout.decode() == "Estimated near <-> far rtt: 9.020 ms (using LAN coordinates)\n"
    wait_until(lambda: "test-node" in coordinate_nodes(placed), DEADLINE,
               what="the dev agent's own coordinate")
    p = run_rtt(cli, placed, "mid")
    assert p.returncode == 0, p.stderr
    assert p.stdout.decode() == (
        "Estimated mid <-> test-node rtt: 5.020 ms (using LAN coordinates)\n")


def test_rtt_errors(placed, cli):
    p = run_rtt(cli, placed)
    assert p.returncode == 1
    assert p.stderr.decode().startswith("One or two node names must be specified\n\n")
    p = run_rtt(cli, placed, "a", "b", "c")
    assert p.returncode == 1
    p = run_rtt(cli, placed, "near", "ghost")
    assert (p.returncode, p.stderr.decode()) == (
        1, 'Could not find a coordinate for node "ghost"\n')
    p = run_rtt(cli, placed, "nocoord", "near")
    assert p.stderr.decode() == 'Could not find a coordinate for node "nocoord"\n'
    p = run_rtt(cli, placed, "-wan", "near", "far")
    assert (p.returncode, p.stderr.decode()) == (
        1, "Node names must be specified as <node name>.<datacenter> with -wan\n")
    p = cli("rtt", "-http-addr=127.0.0.1:1", "a", "b")
    assert p.returncode == 1 and p.stderr.decode().startswith("Error getting coordinates: ")


def test_datacenters_lists_the_servers_and_rtt_wan_uses_them(agent, cli):
    def servers():
        r = agent.get("/v1/coordinate/datacenters")
        assert r.status_code == 200, r.text
        return r.json()
    wait_until(lambda: servers()[0]["Coordinates"], DEADLINE,
               what="the dev server's coordinate in the datacenter map")
    [dc] = servers()
    assert dc["Datacenter"] == "dc1" and dc["AreaID"] == "wan"
    [entry] = dc["Coordinates"]
    assert entry["Node"] == "test-node" and entry["Segment"] == ""
    p = run_rtt(cli, agent, "-wan", "test-node.dc1")
    assert p.returncode == 0, p.stderr
    assert re.fullmatch(
        r"Estimated test-node\.dc1 <-> test-node\.dc1 rtt: \d+\.\d{3} ms \(using WAN coordinates\)\n",
        p.stdout.decode())
    p = run_rtt(cli, agent, "-wan", "ghost.dc1")
    assert p.stderr.decode() == 'Could not find a coordinate for node "ghost.dc1"\n'


# ---------------------------------------------------------- a real LAN pool

def _server(agents, name: str, join=None):
    conf = agents.base / f"{name}.json"
    conf.parent.mkdir(parents=True, exist_ok=True)
    conf.write_text(json.dumps({"retry_interval": "1s"}))
    args = ["-server", "-bootstrap-expect=3", f"-data-dir={agents.base / name / 'data'}",
            "-bind=127.0.0.1"]
    if join:
        args.append(f"-retry-join={join}")
    return agents.new(name=name, node=name, dev=False, isolate_ports=True, start=False,
                      config_files=[conf], extra_args=args)


def test_every_server_of_a_pool_reports_its_coordinate(agents):
    s1 = _server(agents, "s1")
    s1.spawn()
    join = f"127.0.0.1:{s1.isolation['ports']['serf_lan']}"
    others = [_server(agents, n, join=join) for n in ("s2", "s3")]
    for s in others:
        s.spawn()
    pool = [s1, *others]
    for s in pool:
        s.wait_ready(DEADLINE)

    def reported(s):
        r = s.get("/v1/coordinate/nodes?stale", timeout=5)
        return r.status_code == 200 and {"s1", "s2", "s3"} <= {e["Node"] for e in r.json()}
    for s in pool:
        wait_until(lambda s=s: reported(s), 60.0,
                   what=f"{s.name} to list a coordinate for every server")
    entries = pool[0].get("/v1/coordinate/nodes").json()
    assert all(len(e["Coord"]["Vec"]) == DIMENSIONS for e in entries)


# ------------------------------------------- injected latency in namespaces

# Where each node sits along one line, as its round trip (ms) to c0; the
# servers share c0's spot. Every pair of nodes is delayed by half their
# distance each way, so the latencies are those of points on a line, which
# Vivaldi can embed (a delay between c0 and the others alone would break
# the triangle inequality: c0 near s1, s1 near c3, c0 far from c3). The
# gaps are tens of ms: a node's estimate to itself is twice its height plus
# adjustment, which is not 0 (Consul does not put the source first either:
# for c3, at the end of the line, it is often farther than c2).
LINE_MS = {"s1": 0, "s2": 0, "s3": 0, "c0": 0, "c1": 20, "c2": 50, "c3": 80}
CLIENTS = ["c0", "c1", "c2", "c3"]
# Probes settle the coordinates in tens of seconds (now and then Vivaldi
# folds a node to the wrong side first, and takes a minute more); each agent
# then reports its own every 15 to 30 s (Consul's
# sync_coordinate_interval_min plus a random stagger).
SETTLE_DEADLINE = 120.0
RTT_TOLERANCE = 0.35  # relative error of `praetor rtt` against the injected round trip


def clients_in(order: list[str], but: str = "") -> list[str]:
    return [n for n in order if n in CLIENTS and n != but]


def coordinates_by_node(agent) -> dict:
    r = agent.get("/v1/coordinate/nodes", timeout=10)
    assert r.status_code == 200, r.text
    return {e["Node"]: e["Coord"] for e in r.json()}


def estimated_rtts_ms(coords: dict, source: str) -> dict:
    """Consul's estimate (vector distance plus heights, plus adjustments
    when that stays positive) from `source` to every node, in ms."""
    a = coords[source]
    out = {}
    for node, b in coords.items():
        dist = sum((x - y) ** 2 for x, y in zip(a["Vec"], b["Vec"])) ** 0.5
        dist += a["Height"] + b["Height"]
        adjusted = dist + a["Adjustment"] + b["Adjustment"]
        out[node] = round(1000 * (adjusted if adjusted > 0 else dist), 1)
    return out


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_near_orders_nodes_by_injected_latency(praetor_bin, tmp_path, netns_factory, cli):
    net = netns_factory(3, clients=len(CLIENTS))
    why = net.delay_link_unavailable()
    if why:
        skip_unless_ci(why)
    for a, b in itertools.combinations(net.names, 2):
        gap = abs(LINE_MS[a] - LINE_MS[b])
        if gap:
            net.delay(a, b, gap / 2)
    cluster = NetnsCluster(praetor_bin, tmp_path, net)
    try:
        cluster.start()
        clients = {c.name: c for c in cluster.start_clients()}
        started = time.monotonic()
        for name, c in clients.items():
            r = c.put("/v1/agent/service/register",
                      json={"Name": "web", "ID": f"web-{name}", "Port": 80})
            assert r.status_code == 200, r.text
        server, c0 = cluster.servers[0], clients["c0"]
        seen = {}

        def near(agent, path: str, source: str, node_of, but: str = "") -> list[str]:
            r = agent.get(path, params={"near": source}, timeout=10)
            assert r.status_code == 200, r.text
            return clients_in([node_of(e) for e in r.json()], but)

        def rtt_ms(a: str, b: str) -> float:
            p = cli("rtt", f"-http-addr={server.ip}:8500", a, b)
            assert p.returncode == 0, p.stderr
            m = re.fullmatch(rf"Estimated {a} <-> {b} rtt: (\d+\.\d{{3}}) ms "
                             r"\(using LAN coordinates\)\n", p.stdout.decode())
            assert m, p.stdout
            return float(m.group(1))

        def settled() -> bool:
            seen["nodes near c0"] = near(server, "/v1/catalog/nodes", "c0",
                                         lambda e: e["Node"])
            seen["others near c3"] = near(server, "/v1/catalog/nodes", "c3",
                                          lambda e: e["Node"], but="c3")
            seen["health near c0"] = near(c0, "/v1/health/service/web", "c0",
                                          lambda e: e["Node"]["Node"])
            seen["service near _agent on c0"] = near(c0, "/v1/catalog/service/web", "_agent",
                                                     lambda e: e["Node"])
            seen["rtt c0 c3"] = rtt_ms("c0", "c3") if "c3" in seen["nodes near c0"] else None
            return (seen["nodes near c0"] == seen["health near c0"]
                    == seen["service near _agent on c0"] == CLIENTS
                    and seen["others near c3"] == ["c2", "c1", "c0"]
                    and seen["rtt c0 c3"] is not None
                    and abs(seen["rtt c0 c3"] - LINE_MS["c3"])
                    <= RTT_TOLERANCE * LINE_MS["c3"])

        try:
            wait_until(settled, SETTLE_DEADLINE, interval=1.0,
                       what="?near orders and `rtt` to follow the injected latencies")
        except AssertionError as exc:
            coords = coordinates_by_node(server)
            estimates = {n: estimated_rtts_ms(coords, n) for n in CLIENTS if n in coords}
            raise AssertionError(f"{exc}\nlast seen: {seen}\nestimated round trips (ms): "
                                 f"{estimates}\ndelay link: {net.delay_stats()}") from None
        print(f"settled {time.monotonic() - started:.1f} s after the clients started: {seen}; "
              f"estimates from c0 (ms): {estimated_rtts_ms(coordinates_by_node(server), 'c0')}")
    finally:
        cluster.close()
