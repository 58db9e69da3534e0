"""Catalog and health endpoints over HTTP, against the real binary."""

from __future__ import annotations

import threading

import requests


def register(agent, body):
    return agent.put("/v1/catalog/register", json=body)


def web(node="n1", sid="web1", status="passing", tags=("v1",), address="10.0.0.1"):
    return {
        "Node": node, "Address": address,
        "Service": {"ID": sid, "Service": "web", "Port": 8080, "Tags": list(tags)},
        "Check": {"CheckID": f"{sid}-check", "Name": "web check", "ServiceID": sid,
                  "Status": status},
    }


def test_own_node_carries_serf_health_and_consul_service(agent):
    checks = agent.get("/v1/health/node/test-node").json()
    serf = [c for c in checks if c["CheckID"] == "serfHealth"]
    assert len(serf) == 1
    assert serf[0]["Name"] == "Serf Health Status"
    assert serf[0]["Status"] == "passing"
    consul = agent.get("/v1/catalog/service/consul").json()
    assert [s["Node"] for s in consul] == ["test-node"]


def test_register_then_read_everywhere(agent):
    r = register(agent, web())
    assert r.status_code == 200 and r.json() is True
    nodes = agent.get("/v1/catalog/nodes").json()
    assert {"n1", "test-node"} <= {n["Node"] for n in nodes}
    services = agent.get("/v1/catalog/services").json()
    assert services["web"] == ["v1"]
    inst = agent.get("/v1/catalog/service/web").json()
    assert len(inst) == 1
    s = inst[0]
    assert (s["Node"], s["Address"], s["ServiceID"], s["ServicePort"]) == ("n1", "10.0.0.1", "web1", 8080)
    assert s["ServiceWeights"] == {"Passing": 1, "Warning": 1}
    node = agent.get("/v1/catalog/node/n1").json()
    assert node["Node"]["Node"] == "n1" and "web1" in node["Services"]
    ns = agent.get("/v1/catalog/node-services/n1").json()
    assert [x["ID"] for x in ns["Services"]] == ["web1"]
    health = agent.get("/v1/health/service/web").json()
    assert health[0]["Checks"][0]["ServiceName"] == "web"
    assert agent.get("/v1/health/checks/web").json()[0]["CheckID"] == "web1-check"
    assert agent.get("/v1/catalog/datacenters").json() == ["dc1"]


def test_snake_case_and_lowercase_bodies_decode(agent):
    body = {"node": "n2", "address": "10.0.0.2",
            "service": {"id": "api1", "service": "api", "port": 9, "tagged_addresses": {
                "lan": {"address": "10.0.0.2", "port": 9}}}}
    assert register(agent, body).json() is True
    inst = agent.get("/v1/catalog/service/api").json()
    assert inst[0]["ServiceTaggedAddresses"]["lan"] == {"Address": "10.0.0.2", "Port": 9}


def test_tag_filter_requires_every_tag(agent):
    register(agent, web(node="a", sid="w1", tags=("blue", "v1")))
    register(agent, web(node="b", sid="w2", tags=("green", "v1")))
    got = agent.get("/v1/catalog/service/web", params=[("tag", "V1"), ("tag", "blue")]).json()
    assert [s["ServiceID"] for s in got] == ["w1"]
    got = agent.get("/v1/health/service/web", params={"tag": "green"}).json()
    assert [s["Service"]["ID"] for s in got] == ["w2"]


def test_passing_filter_drops_instances_with_any_failing_check(agent):
    register(agent, web(node="a", sid="w1", status="passing"))
    register(agent, web(node="b", sid="w2", status="critical"))
    all_ = agent.get("/v1/health/service/web").json()
    assert len(all_) == 2
    ok = agent.get("/v1/health/service/web?passing").json()
    assert [i["Service"]["ID"] for i in ok] == ["w1"]
    assert agent.get("/v1/health/service/web?passing=maybe").status_code == 400
    critical = agent.get("/v1/health/state/critical").json()
    assert [c["CheckID"] for c in critical] == ["w2-check"]


def test_node_meta_filter(agent):
    body = web(node="m1", sid="w1")
    body["NodeMeta"] = {"rack": "r1"}
    register(agent, body)
    register(agent, web(node="m2", sid="w2"))
    got = agent.get("/v1/catalog/nodes", params={"node-meta": "rack:r1"}).json()
    assert [n["Node"] for n in got] == ["m1"]


def test_register_errors_use_consuls_words(agent):
    r = register(agent, {"Address": "10.0.0.1"})
    assert (r.status_code, r.text) == (500, "Must provide node")
    r = register(agent, {"Node": "x"})
    assert (r.status_code, r.text) == (500, "Must provide address if SkipNodeUpdate is not set")
    r = register(agent, {"Node": "x", "Address": "1.2.3.4", "Service": {"ID": "s"}})
    assert r.status_code == 500
    assert r.text == "Must provide service name (Service.Service) when service ID is provided"
    r = register(agent, {"Node": "x", "Address": "1.2.3.4",
                         "Check": {"Name": "c", "ServiceID": "ghost"}})
    assert (r.status_code, r.text) == (500, "Unknown service ID 'ghost' for check ID 'c'")
    r = agent.put("/v1/catalog/register", data=b"{not json")
    assert r.status_code == 400 and r.text.startswith("Request decode failed: ")
    assert agent.get("/v1/catalog/node/x").json() is None, "nothing was registered"
    assert agent.get("/v1/catalog/service/").status_code == 400
    assert agent.get("/v1/catalog/service/").text == "Missing service name"
    assert agent.get("/v1/health/state/").text == "Missing check state"
    assert agent.get("/v1/catalog/nodes?dc=elsewhere").status_code == 500


def test_deregister_service_then_node(agent):
    register(agent, web(node="d1", sid="w1"))
    idx = int(agent.get("/v1/catalog/service/web").headers["X-Consul-Index"])
    r = agent.put("/v1/catalog/deregister", json={"Node": "d1", "ServiceID": "w1"})
    assert r.json() is True
    resp = agent.get("/v1/catalog/service/web")
    assert resp.json() == []
    assert int(resp.headers["X-Consul-Index"]) > idx, "extinction keeps the index moving"
    assert agent.get("/v1/health/node/d1").json() == []
    assert agent.put("/v1/catalog/deregister", json={"Node": "d1"}).json() is True
    assert agent.get("/v1/catalog/node/d1").json() is None


def test_blocking_service_query_wakes_on_health_change_not_on_other_services(agent):
    register(agent, web(node="h1", sid="w1", status="passing"))
    register(agent, {"Node": "h1", "Address": "10.0.0.1",
                     "Service": {"ID": "db1", "Service": "db", "Port": 5432}})
    idx = agent.get("/v1/health/service/web").headers["X-Consul-Index"]
    result = {}

    def block():
        result["resp"] = requests.get(f"{agent.url}/v1/health/service/web",
                                      params={"index": idx, "wait": "20s"}, timeout=30)

    t = threading.Thread(target=block, daemon=True)
    t.start()
    # An unrelated service's change must not end the wait.
    register(agent, {"Node": "h1", "Address": "10.0.0.1", "SkipNodeUpdate": True,
                     "Service": {"ID": "db1", "Service": "db", "Port": 5433}})
    t.join(0.5)
    assert t.is_alive(), "woke for another service's change"
    register(agent, web(node="h1", sid="w1", status="critical"))
    t.join(5)
    assert not t.is_alive(), "did not wake for the health change"
    resp = result["resp"]
    assert int(resp.headers["X-Consul-Index"]) > int(idx)
    assert resp.json()[0]["Checks"][0]["Status"] == "critical"
