"""`?filter=` (go-bexpr expressions) on the list endpoints.

Reference: hashicorp/go-bexpr v0.1.2 (grammar.peg, evaluate.go, validate.go,
field_config.go, filter.go), as Consul vendors it; Consul's
api-docs/features/filtering. A bad expression answers 400 with
"Failed to create boolean expression evaluator: <bexpr error>".
"""

from __future__ import annotations

import pytest

WRAP = "Failed to create boolean expression evaluator: "


def register(agent, body):
    r = agent.put("/v1/catalog/register", json=body)
    assert r.status_code == 200, r.text


def web(node, sid, *, status="passing", tags=("v1",), port=8080, meta=None, node_meta=None):
    return {
        "Node": node, "Address": "10.0.0.1", "NodeMeta": node_meta or {},
        "Service": {"ID": sid, "Service": "web", "Port": port, "Tags": list(tags),
                    "Meta": meta or {}},
        "Check": {"CheckID": f"{sid}-check", "Name": "web check", "ServiceID": sid,
                  "Status": status},
    }


@pytest.fixture
def fleet(agent):
    register(agent, web("a", "w1", tags=("blue", "v1"), node_meta={"rack": "r1"},
                        meta={"version": "1.2"}))
    register(agent, web("b", "w2", status="critical", tags=("green",), port=9090,
                        node_meta={"rack": "r2"}))
    register(agent, {"Node": "a", "Address": "10.0.0.1", "NodeMeta": {"rack": "r1"},
                     "Service": {"ID": "db1", "Service": "db", "Tags": ["primary"]}})
    return agent


def get(agent, path, expr):
    return agent.get(path, params={"filter": expr})


def ok(agent, path, expr):
    r = get(agent, path, expr)
    assert r.status_code == 200, r.text
    return r.json()


def test_catalog_nodes(fleet):
    got = ok(fleet, "/v1/catalog/nodes", "Meta.rack == r1")
    assert [n["Node"] for n in got] == ["a"]
    got = ok(fleet, "/v1/catalog/nodes", 'rack in Meta and Node != "a"')
    assert [n["Node"] for n in got] == ["b"]
    got = ok(fleet, "/v1/catalog/nodes", "Meta is not empty and rack not in Meta")
    assert [n["Node"] for n in got] == ["test-node"]
    got = ok(fleet, "/v1/catalog/nodes", 'Node matches "^[ab]$"')
    assert [n["Node"] for n in got] == ["a", "b"]


def test_catalog_service_and_services(fleet):
    got = ok(fleet, "/v1/catalog/service/web", "blue in ServiceTags")
    assert [s["ServiceID"] for s in got] == ["w1"]
    got = ok(fleet, "/v1/catalog/service/web", "ServicePort == 9090 or NodeMeta.rack == r1")
    assert sorted(s["ServiceID"] for s in got) == ["w1", "w2"]
    got = ok(fleet, "/v1/catalog/service/web", 'ServiceMeta["version"] == "1.2"')
    assert [s["ServiceID"] for s in got] == ["w1"]
    # /v1/catalog/services filters the instances, then groups them.
    got = ok(fleet, "/v1/catalog/services", "Node == b")
    assert got == {"web": ["green"]}
    got = ok(fleet, "/v1/catalog/services", "ServiceName != web")
    assert set(got) == {"consul", "db"}


def test_node_services(fleet):
    got = ok(fleet, "/v1/catalog/node-services/a", "Service == db")
    assert [s["ID"] for s in got["Services"]] == ["db1"]
    got = ok(fleet, "/v1/catalog/node-services/a", "Port == 0")
    assert [s["ID"] for s in got["Services"]] == ["db1"]


def test_health_endpoints(fleet):
    got = ok(fleet, "/v1/health/service/web", "Checks.Status == critical")
    assert [i["Service"]["ID"] for i in got] == ["w2"]
    # A selector through the checks matches when any check does.
    got = ok(fleet, "/v1/health/service/web", "Checks.Status == passing")
    assert [i["Service"]["ID"] for i in got] == ["w1"]
    got = ok(fleet, "/v1/health/service/web", "not Checks.Status != passing")
    assert [i["Service"]["ID"] for i in got] == ["w1"]
    got = ok(fleet, "/v1/health/service/web", "Node.Meta.rack == r2 and Service.Port == 9090")
    assert [i["Service"]["ID"] for i in got] == ["w2"]
    got = ok(fleet, "/v1/health/state/any", "ServiceName == web")
    assert sorted(c["CheckID"] for c in got) == ["w1-check", "w2-check"]
    got = ok(fleet, "/v1/health/checks/web", "Status == critical")
    assert [c["CheckID"] for c in got] == ["w2-check"]
    got = ok(fleet, "/v1/health/node/a", 'ServiceID == ""')
    assert got == []
    # Strings take no emptiness checks in the bexpr Consul vendors.
    r = get(fleet, "/v1/health/node/a", "ServiceID is empty")
    assert r.status_code == 400
    assert r.text == WRAP + 'Invalid match operator "Is Empty" for selector "ServiceID"'
    got = ok(fleet, "/v1/health/node/test-node", "CheckID == serfHealth")
    assert [c["CheckID"] for c in got] == ["serfHealth"]


def test_agent_endpoints(agent):
    for sid, tags, port in (("f1", ["blue"], 1), ("f2", ["green"], 2)):
        r = agent.put("/v1/agent/service/register",
                      json={"ID": sid, "Name": "front", "Tags": tags, "Port": port,
                            "Check": {"TTL": "30s"}})
        assert r.status_code == 200, r.text
    assert list(ok(agent, "/v1/agent/services", "Port == 2")) == ["f2"]
    assert list(ok(agent, "/v1/agent/services", "Tags not contains blue")) == ["f2"]
    assert ok(agent, "/v1/agent/services", "Service == nope") == {}
    got = ok(agent, "/v1/agent/checks", "ServiceID == f1")
    assert list(got) == ["service:f1"]


def test_empty_filter_is_no_filter(fleet):
    assert len(ok(fleet, "/v1/catalog/service/web", "")) == 2


@pytest.mark.parametrize("path, expr, inner", [
    ("/v1/catalog/nodes", "Node ==",
     '1:8 (7): no match found, expected: "-", "0", "\\"", "`", [ \\t\\r\\n], [1-9] or [a-zA-Z]'),
    ("/v1/catalog/nodes", "(Node == a", "1:11 (10): rule grouping: Unmatched parentheses"),
    ("/v1/catalog/nodes", "node == a", 'Selector "node" is not valid'),
    ("/v1/catalog/nodes", "CreateIndex == 1", 'Selector "CreateIndex" is not valid'),
    ("/v1/catalog/service/web", "ServiceTags == a",
     'Invalid match operator "Equal" for selector "ServiceTags"'),
    ("/v1/health/service/web", "Service.Port == abc",
     'Failed to coerce value "abc" for selector "Service.Port": '
     'strconv.ParseInt: parsing "abc": invalid syntax'),
    ("/v1/agent/services", "Bogus == 1", 'Selector "Bogus" is not valid'),
    ("/v1/agent/checks", 'Name == "x', "1:11 (10): rule string: Unterminated string literal"),
])
def test_bad_expressions_are_400(fleet, path, expr, inner):
    r = get(fleet, path, expr)
    assert r.status_code == 400
    assert r.text == WRAP + inner


def test_bad_regex_is_400(fleet):
    r = get(fleet, "/v1/health/state/any", 'Name matches "("')
    assert r.status_code == 400
    assert r.text.startswith(WRAP + 'Failed to compile regular expression "(": ')
