"""Prepared queries (/v1/query) against a dev agent: CRUD and Consul's
errors, execution filters (health, tags), templates, ?near ordering from
hand-made coordinates, ?limit, explain, and <name>.query.consul over DNS."""

from __future__ import annotations

import shutil

import pytest

from praetor_harness import wait_until
from test_dns import dig

DEADLINE = 30.0
DIMENSIONS = 8


def register(agent, node, address, service="web", tags=(), status=None, port=80):
    body = {"Node": node, "Address": address,
            "Service": {"ID": f"{service}-{node}", "Service": service, "Port": port,
                        "Tags": list(tags)}}
    if status:
        body["Check"] = {"CheckID": f"{service}-{node}-check", "Name": "alive",
                         "ServiceID": f"{service}-{node}", "Status": status}
    r = agent.put("/v1/catalog/register", json=body)
    assert r.status_code == 200 and r.json() is True, r.text


def create(agent, body):
    r = agent.http("POST", "/v1/query", json=body)
    assert r.status_code == 200, r.text
    return r.json()["ID"]


def execute(agent, name, **params):
    r = agent.get(f"/v1/query/{name}/execute", params=params)
    assert r.status_code == 200, r.text
    return r.json()


def node_names(result):
    return sorted(n["Node"]["Node"] for n in result["Nodes"])


def test_crud_and_errors(agent):
    qid = create(agent, {"Name": "web-q", "Service": {"Service": "web"},
                         "DNS": {"TTL": "10s"}})
    r = agent.get(f"/v1/query/{qid}")
    assert r.status_code == 200, r.text
    [q] = r.json()
    assert q["ID"] == qid and q["Name"] == "web-q"
    assert q["Service"]["Service"] == "web" and q["DNS"] == {"TTL": "10s"}
    assert q["Template"] == {"Type": "", "Regexp": "", "RemoveEmptyTags": False}
    assert q["CreateIndex"] == q["ModifyIndex"] > 0
    assert int(r.headers["X-Consul-Index"]) >= q["ModifyIndex"]

    listed = agent.get("/v1/query").json()
    assert [x["ID"] for x in listed] == [qid]

    r = agent.put(f"/v1/query/{qid}", json={"Name": "web-q2", "Service": {"Service": "api"}})
    assert r.status_code == 200 and r.text == "", r.text
    [q2] = agent.get(f"/v1/query/{qid}").json()
    assert q2["Name"] == "web-q2" and q2["Service"]["Service"] == "api"
    assert q2["CreateIndex"] == q["CreateIndex"] < q2["ModifyIndex"]

    # Consul's refusals and their texts.
    r = agent.http("POST", "/v1/query", json={"Service": {"Service": "web"}})
    assert (r.status_code, r.text) == (500, "Invalid prepared query: Must be bound to a session")
    r = agent.http("POST", "/v1/query", json={"Name": "x"})
    assert (r.status_code, r.text) == (500, "Invalid prepared query: Must provide a Service name to query")
    r = agent.http("POST", "/v1/query", json={"Name": "WEB-Q2", "Service": {"Service": "web"}})
    assert (r.status_code, r.text) == (500, "raft apply failed: name 'WEB-Q2' aliases an existing query name")
    r = agent.http("POST", "/v1/query", json={"Name": "s", "Session": "nope",
                                              "Service": {"Service": "web"}})
    assert (r.status_code, r.text) == (500, 'raft apply failed: invalid session "nope"')
    r = agent.http("POST", "/v1/query", json={"Name": "t", "Service": {"Service": "web"},
                                              "Template": {"Type": "glob"}})
    assert (r.status_code, r.text) == (500, "raft apply failed: failed compiling template: Bad Template.Type 'glob'")
    r = agent.http("POST", "/v1/query", json={"Name": "t", "Service": {"Service": "web"},
                                              "Template": {"Type": "name_prefix_match",
                                                           "Regexp": "([a-z"}})
    assert r.status_code == 500 and r.text.startswith(
        "raft apply failed: failed compiling template: Bad Regexp: "), r.text
    r = agent.http("POST", "/v1/query", data="{not json")
    assert r.status_code == 400 and r.text.startswith("Request decode failed: "), r.text
    missing = "00000000-0000-4000-8000-000000000000"
    r = agent.get(f"/v1/query/{missing}")
    assert (r.status_code, r.text) == (404, "Query not found")
    r = agent.get("/v1/query/nothing-here/execute")
    assert (r.status_code, r.text) == (404, "Query not found")
    r = agent.put(f"/v1/query/{missing}", json={"Name": "z", "Service": {"Service": "web"}})
    assert (r.status_code, r.text) == (500, f"Cannot modify non-existent prepared query: '{missing}'")
    r = agent.http("PATCH", "/v1/query")
    assert r.status_code == 405

    r = agent.delete(f"/v1/query/{qid}")
    assert r.status_code == 200, r.text
    assert agent.get("/v1/query").json() == []


def test_list_blocks_until_a_query_changes(agent):
    r = agent.get("/v1/query")
    index = int(r.headers["X-Consul-Index"])
    import threading
    created = []
    t = threading.Timer(0.3, lambda: created.append(
        create(agent, {"Name": "later", "Service": {"Service": "web"}})))
    t.start()
    r = agent.get("/v1/query", params={"index": index, "wait": "10s"})
    t.join()
    assert r.status_code == 200
    assert [q["Name"] for q in r.json()] == ["later"]
    assert int(r.headers["X-Consul-Index"]) > index


def test_execute_filters_health_and_tags(agent):
    register(agent, "n1", "10.0.0.1", tags=["primary"], status="passing")
    register(agent, "n2", "10.0.0.2", tags=["primary", "canary"], status="passing")
    register(agent, "n3", "10.0.0.3", tags=["primary"], status="warning")
    register(agent, "n4", "10.0.0.4", tags=["primary"], status="critical")
    create(agent, {"Name": "all", "Service": {"Service": "web"}})
    create(agent, {"Name": "passing", "Service": {"Service": "web", "OnlyPassing": True}})
    create(agent, {"Name": "stable", "Service": {"Service": "web",
                                                 "Tags": ["primary", "!canary"]}})
    create(agent, {"Name": "ignoring", "Service": {"Service": "web",
                                                   "IgnoreCheckIDs": ["web-n4-check"]}})
    result = execute(agent, "all")
    assert set(result) == {"Service", "Nodes", "DNS", "Datacenter", "Failovers"}
    assert (result["Service"], result["Datacenter"], result["Failovers"]) == ("web", "dc1", 0)
    assert result["DNS"] == {"TTL": ""}
    assert node_names(result) == ["n1", "n2", "n3"]
    assert set(result["Nodes"][0]) == {"Node", "Service", "Checks"}
    assert node_names(execute(agent, "passing")) == ["n1", "n2"]
    assert node_names(execute(agent, "stable")) == ["n1", "n3"]
    assert node_names(execute(agent, "ignoring")) == ["n1", "n2", "n3", "n4"]
    assert len(execute(agent, "all", limit=2)["Nodes"]) == 2
    r = agent.get("/v1/query/all/execute", params={"limit": "x"})
    assert r.status_code == 500 and r.text.startswith("Bad limit: "), r.text


def test_templates_render_and_explain(agent):
    register(agent, "n1", "10.0.0.1", service="db-customer", tags=["primary"])
    register(agent, "n2", "10.0.0.2", service="db-customer", tags=["replica"])
    tid = create(agent, {"Name": "geo-db-", "Template": {"Type": "name_prefix_match",
                                                          "Regexp": "^geo-db-(.*?)-([^-]+)$"},
                         "Service": {"Service": "db-${match(1)}", "Tags": ["${match(2)}"]}})
    result = execute(agent, "geo-db-customer-primary")
    assert result["Service"] == "db-customer"
    assert node_names(result) == ["n1"]
    r = agent.get("/v1/query/geo-db-customer-replica/explain")
    assert r.status_code == 200, r.text
    q = r.json()["Query"]
    assert q["ID"] == tid and q["Service"]["Service"] == "db-customer"
    assert q["Service"]["Tags"] == ["replica"]
    r = agent.get(f"/v1/query/{tid}/execute")
    assert (r.status_code, r.text) == (
        500, "prepared query templates can only be resolved up by name, not by ID")


def coord(x):
    return {"Vec": [x] + [0.0] * (DIMENSIONS - 1), "Error": 1.5, "Adjustment": 0.0,
            "Height": 1.0e-5}


def test_near_orders_by_coordinates(agent):
    for node, address in (("src", "10.0.1.1"), ("far", "10.0.1.2"), ("mid", "10.0.1.3"),
                          ("near", "10.0.1.4"), ("nocoord", "10.0.1.5")):
        register(agent, node, address)
    for node, x in (("src", 0.0), ("near", 0.001), ("mid", 0.005), ("far", 0.01)):
        r = agent.put("/v1/coordinate/update", json={"Node": node, "Segment": "",
                                                     "Coord": coord(x)})
        assert r.status_code == 200, r.text
    wait_until(lambda: len(agent.get("/v1/coordinate/nodes").json() or []) >= 4, DEADLINE,
               what="the coordinates to be stored")
    create(agent, {"Name": "web", "Service": {"Service": "web"}})
    create(agent, {"Name": "web-near-mid", "Service": {"Service": "web", "Near": "mid"}})
    for _ in range(5):
        order = [n["Node"]["Node"] for n in execute(agent, "web", near="src")["Nodes"]]
        assert order == ["src", "near", "mid", "far", "nocoord"]
    order = [n["Node"]["Node"] for n in execute(agent, "web-near-mid")["Nodes"]]
    assert order[:2] == ["mid", "near"] and order[-1] == "nocoord"
    order = [n["Node"]["Node"] for n in execute(agent, "web", near="src", limit=2)["Nodes"]]
    assert order == ["src", "near"]


@pytest.mark.skipif(shutil.which("dig") is None, reason="dig is not installed")
def test_dns_answers_from_the_query(agent):
    assert agent.isolation, "DNS tests need the harness's isolated ports"
    port = agent.isolation["ports"]["dns"]
    register(agent, "n1", "10.0.2.1", tags=["primary"], port=8001)
    register(agent, "n2", "10.0.2.2", tags=["replica"], port=8002)
    register(agent, "n3", "10.0.2.3", tags=["primary"], status="critical", port=8003)
    create(agent, {"Name": "prim", "Service": {"Service": "web", "Tags": ["primary"]},
                   "DNS": {"TTL": "7s"}})
    create(agent, {"Name": "any-", "Template": {"Type": "name_prefix_match"},
                   "Service": {"Service": "${name.suffix}"}})
    r = dig(port, "prim.query.consul", "A")
    assert r.status == "NOERROR"
    assert r.rdata("A") == ["10.0.2.1"]
    assert {rec.ttl for rec in r.answer} == {7}
    r = dig(port, "prim.query.dc1.consul", "SRV")
    assert r.rdata("SRV") == ["1 1 8001 n1.node.dc1.consul."]
    r = dig(port, "any-web.query.consul", "A", "tcp")
    assert r.rdata("A") == ["10.0.2.1", "10.0.2.2"]
    r = dig(port, "nothing.query.consul", "A")
    assert r.status == "NXDOMAIN"
