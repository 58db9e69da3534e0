"""Agent-local services: /v1/agent/service/register, /v1/agent/services,
/v1/agent/service/:id, deregister, validation, and anti-entropy into the catalog.

Reference: hashicorp/consul agent/agent_endpoint.go (AgentRegisterService,
AgentDeregisterService, AgentService), agent/agent.go (addServiceInternal:
default tagged addresses, service check IDs and names), agent/structs
(ServiceDefinition, CheckType.Validate, validateMetaPair).
Successful agent writes answer 200 with an EMPTY body (handler returns nil).
"""

from __future__ import annotations

import pytest

from praetor_harness import wait_until

SYNC_DEADLINE = 10.0  # anti-entropy runs right after a local change


def reg(agent, body, **params):
    return agent.put("/v1/agent/service/register", json=body, params=params or None)


def services(agent) -> dict:
    r = agent.get("/v1/agent/services")
    assert r.status_code == 200, r.text
    return r.json()


def checks(agent) -> dict:
    r = agent.get("/v1/agent/checks")
    assert r.status_code == 200, r.text
    return r.json()


def catalog_ids(agent, name) -> list:
    r = agent.get(f"/v1/catalog/service/{name}")
    assert r.status_code == 200, r.text
    return sorted(s["ServiceID"] for s in r.json())


def assert_ok_empty(r):
    assert r.status_code == 200, (r.status_code, r.text)
    assert r.text == "", f"Consul answers agent writes with an empty body, got {r.text!r}"


# ------------------------------------------------------------- register/read


def test_register_pascal_case_and_read_back(agent):
    body = {"ID": "web1", "Name": "web", "Tags": ["v1", "primary"], "Port": 8080,
            "Address": "10.1.2.3", "Meta": {"version": "1.0"},
            "Weights": {"Passing": 10, "Warning": 2}}
    assert_ok_empty(reg(agent, body))

    svc = services(agent)["web1"]
    assert svc["ID"] == "web1"
    assert svc["Service"] == "web"
    assert svc["Tags"] == ["v1", "primary"]
    assert svc["Port"] == 8080
    assert svc["Address"] == "10.1.2.3"
    assert svc["Meta"] == {"version": "1.0"}
    assert svc["Weights"] == {"Passing": 10, "Warning": 2}
    assert svc["EnableTagOverride"] is False
    assert svc["Datacenter"] == "dc1"
    # addServiceInternal fills lan_ipv4/wan_ipv4 from an IPv4 service address.
    tagged = svc.get("TaggedAddresses") or {}
    assert tagged.get("lan_ipv4") == {"Address": "10.1.2.3", "Port": 8080}
    assert tagged.get("wan_ipv4") == {"Address": "10.1.2.3", "Port": 8080}

    r = agent.get("/v1/agent/service/web1")
    assert r.status_code == 200, r.text
    one = r.json()
    assert (one["ID"], one["Service"], one["Port"]) == ("web1", "web", 8080)
    assert one["ContentHash"], "the single-service read carries a ContentHash"
    assert r.headers.get("X-Consul-ContentHash") == one["ContentHash"]


def test_defaults_for_a_minimal_service(agent):
    assert_ok_empty(reg(agent, {"Name": "mini"}))
    svc = services(agent)["mini"]  # ID defaults to Name
    assert svc["ID"] == "mini" and svc["Service"] == "mini"
    assert svc["Tags"] == []
    assert svc["Meta"] == {}
    assert svc["Port"] == 0  # not omitempty in AgentService
    assert svc["Address"] == ""
    assert svc["Weights"] == {"Passing": 1, "Warning": 1}
    assert "TaggedAddresses" not in svc or not svc["TaggedAddresses"]


def test_lowercase_and_snake_case_keys(agent):
    body = {"id": "api1", "name": "api", "port": 9090, "tags": ["x"],
            "enable_tag_override": True,
            "tagged_addresses": {"lan": {"address": "10.0.0.9", "port": 9091},
                                 "wan": {"address": "198.51.100.9", "port": 443}}}
    assert_ok_empty(reg(agent, body))
    svc = services(agent)["api1"]
    assert svc["Service"] == "api"
    assert svc["Port"] == 9090
    assert svc["Tags"] == ["x"]
    assert svc["EnableTagOverride"] is True
    assert svc["TaggedAddresses"]["lan"] == {"Address": "10.0.0.9", "Port": 9091}
    assert svc["TaggedAddresses"]["wan"] == {"Address": "198.51.100.9", "Port": 443}


def test_reregister_replaces_service_definition(agent):
    assert_ok_empty(reg(agent, {"ID": "r1", "Name": "r", "Port": 1, "Tags": ["a"]}))
    assert_ok_empty(reg(agent, {"ID": "r1", "Name": "r", "Port": 2}))
    svc = services(agent)["r1"]
    assert svc["Port"] == 2 and svc["Tags"] == []


def test_services_empty_is_object(agent):
    # A -dev agent registers no local services of its own (the `consul`
    # service lives in the catalog only).
    assert services(agent) == {}


def test_unknown_service_is_404_text(agent):
    r = agent.get("/v1/agent/service/nope")
    assert r.status_code == 404
    assert r.text == "unknown service ID: nope"


def test_filter_on_agent_services(agent):
    reg(agent, {"ID": "f1", "Name": "front", "Tags": ["blue"]})
    reg(agent, {"ID": "f2", "Name": "front", "Tags": ["green"]})
    r = agent.get("/v1/agent/services", params={"filter": "blue in Tags"})
    assert r.status_code == 200, r.text
    assert list(r.json()) == ["f1"]


# ------------------------------------------------------------------ deregister


def test_deregister_and_unknown_deregister(agent):
    reg(agent, {"ID": "gone1", "Name": "gone", "Check": {"TTL": "30s"}})
    assert "service:gone1" in checks(agent)
    assert_ok_empty(agent.put("/v1/agent/service/deregister/gone1"))
    assert "gone1" not in services(agent)
    assert "service:gone1" not in checks(agent), "a service's checks go with it"
    assert agent.get("/v1/agent/service/gone1").status_code == 404

    r = agent.put("/v1/agent/service/deregister/gone1")
    assert r.status_code == 404
    assert r.text == ('Unknown service ID "gone1". Ensure that the service ID is passed, '
                      'not the service name.')


# ------------------------------------------------------------------ validation


@pytest.mark.parametrize("body, message", [
    ({"Port": 80}, "Missing service name"),
    ({"ID": "x", "Port": 80}, "Missing service name"),
    ({"Name": "s", "Address": "0.0.0.0"}, "Invalid service address"),
    ({"Name": "s", "Address": "::"}, "Invalid service address"),
    ({"Name": "s", "Weights": {"Passing": 0, "Warning": 1}},
     "Invalid Weights: Passing must be greater than 0"),
    ({"Name": "s", "Weights": {"Passing": 1, "Warning": -1}},
     "Invalid Weights: Warning must be greater or equal than 0"),
    ({"Name": "s", "Meta": {"bad key": "v"}},
     "Invalid Service Meta: Couldn't load metadata pair ('bad key', 'v'): "
     "Key contains invalid characters"),
    ({"Name": "s", "Meta": {"consul-thing": "v"}},
     "Invalid Service Meta: Couldn't load metadata pair ('consul-thing', 'v'): "
     "Key prefix 'consul-' is reserved for internal use"),
    ({"Name": "s", "Meta": {"k" * 129: "v"}},
     f"Invalid Service Meta: Couldn't load metadata pair ('{'k' * 129}', 'v'): "
     "Key is too long (limit: 128 characters)"),
    ({"Name": "s", "Meta": {"k": "v" * 513}},
     f"Invalid Service Meta: Couldn't load metadata pair ('k', '{'v' * 513}'): "
     "Value is too long (limit: 512 characters)"),
    ({"Name": "s", "Meta": {f"k{i}": "v" for i in range(65)}},
     "Invalid Service Meta: Node metadata cannot contain more than 64 key/value pairs"),
    ({"Name": "s", "Check": {"Notes": "neither ttl nor interval"}},
     "Invalid check: TTL must be > 0 for TTL checks"),
    ({"Name": "s", "Check": {"HTTP": "http://127.0.0.1:1/"}},
     "Invalid check: Interval must be > 0 for Script, HTTP, H2PING, TCP, UDP or OSService checks"),
    ({"Name": "s", "Check": {"TTL": "10s", "Interval": "10s", "HTTP": "http://127.0.0.1:1/"}},
     "Invalid check: Interval and TTL cannot both be specified"),
    ({"Name": "s", "Checks": [{"TTL": "10s"}, {"TCP": "127.0.0.1:1"}]},
     "Invalid check: Interval must be > 0 for Script, HTTP, H2PING, TCP, UDP or OSService checks"),
    ({"Name": "s", "Check": {"TTL": "10s", "Status": "bogus"}},
     "Status for checks must 'passing', 'warning', 'critical'"),
], ids=["no-name", "id-no-name", "any-v4", "any-v6", "weight-passing", "weight-warning",
        "meta-chars", "meta-consul-prefix", "meta-key-long", "meta-value-long", "meta-65",
        "check-empty-type", "http-no-interval", "ttl-and-interval", "checks-second-bad",
        "check-bad-status"])
def test_validation_errors_are_400_with_consuls_words(shared_agent, body, message):
    r = reg(shared_agent, body)
    assert (r.status_code, r.text) == (400, message)
    # nothing was registered
    assert "s" not in services(shared_agent)


def test_undecodable_body_is_400(shared_agent):
    r = shared_agent.put("/v1/agent/service/register", data=b"{nope")
    assert r.status_code == 400
    assert r.text.startswith("Request decode failed: "), r.text


@pytest.mark.parametrize("method, path", [
    ("GET", "/v1/agent/service/register"),
    ("POST", "/v1/agent/service/register"),
    ("GET", "/v1/agent/service/deregister/x"),
    ("DELETE", "/v1/agent/service/deregister/x"),
    ("PUT", "/v1/agent/services"),
    ("PUT", "/v1/agent/service/x"),
])
def test_wrong_method_is_405(shared_agent, method, path):
    r = shared_agent.http(method, path)
    assert r.status_code == 405, (r.status_code, r.text)
    assert r.text == f"method {method} not allowed"


# ----------------------------------------------------------------- its checks


def test_single_service_check_id_and_default_name(agent):
    reg(agent, {"ID": "one1", "Name": "one", "Tags": ["t"], "Check": {"TTL": "30s"}})
    chk = checks(agent)["service:one1"]
    assert chk["Name"] == "Service 'one' check"
    assert chk["ServiceID"] == "one1"
    assert chk["ServiceName"] == "one"
    assert chk["ServiceTags"] == ["t"]
    assert chk["Status"] == "critical", "checks start critical unless Status is given"
    assert chk["Type"] == "ttl"
    assert chk["Node"] == "test-node"


def test_several_service_checks_are_numbered(agent):
    reg(agent, {"ID": "many1", "Name": "many",
                "Checks": [{"TTL": "30s"}, {"TTL": "30s", "Name": "custom", "Status": "passing"},
                           {"TTL": "30s", "CheckID": "mine"}]})
    got = {cid: c for cid, c in checks(agent).items() if c["ServiceID"] == "many1"}
    assert set(got) == {"service:many1:1", "service:many1:2", "mine"}
    assert got["service:many1:1"]["Name"] == "Service 'many' check"
    assert got["service:many1:2"]["Name"] == "custom"
    assert got["service:many1:2"]["Status"] == "passing"
    assert got["mine"]["Name"] == "Service 'many' check"


def test_replace_existing_checks(agent):
    two = {"ID": "rc1", "Name": "rc",
           "Checks": [{"CheckID": "a", "TTL": "30s"}, {"CheckID": "b", "TTL": "30s"}]}
    one = {"ID": "rc1", "Name": "rc", "Checks": [{"CheckID": "a", "TTL": "30s"}]}
    reg(agent, two)
    assert {"a", "b"} <= set(checks(agent))

    # Without the flag, checks missing from the new definition are kept.
    assert_ok_empty(reg(agent, one))
    assert {"a", "b"} <= set(checks(agent))

    # With it, they are removed.
    r = agent.put("/v1/agent/service/register?replace-existing-checks", json=one)
    assert_ok_empty(r)
    current = checks(agent)
    assert "a" in current and "b" not in current


# ------------------------------------------------- anti-entropy into catalog


def test_service_syncs_to_catalog_and_health_then_goes_away(agent):
    reg(agent, {"ID": "sync1", "Name": "syncsvc", "Port": 7000, "Tags": ["x"],
                "Check": {"TTL": "30s", "Status": "passing"}})

    wait_until(lambda: catalog_ids(agent, "syncsvc") == ["sync1"], SYNC_DEADLINE,
               what="sync1 in /v1/catalog/service/syncsvc")
    inst = agent.get("/v1/catalog/service/syncsvc").json()[0]
    assert inst["Node"] == "test-node"
    assert inst["ServicePort"] == 7000
    assert inst["ServiceTags"] == ["x"]

    def health():
        body = agent.get("/v1/health/service/syncsvc").json()
        return body if body and any(c["CheckID"] == "service:sync1"
                                    for c in body[0]["Checks"]) else None

    body = wait_until(health, SYNC_DEADLINE, what="service check in /v1/health/service")
    assert body[0]["Service"]["ID"] == "sync1"
    by_id = {c["CheckID"]: c for c in body[0]["Checks"]}
    assert by_id["service:sync1"]["Status"] == "passing"
    assert by_id["serfHealth"]["Status"] == "passing"
    assert agent.get("/v1/health/service/syncsvc?passing").json()[0]["Service"]["ID"] == "sync1"

    assert_ok_empty(agent.put("/v1/agent/service/deregister/sync1"))
    wait_until(lambda: catalog_ids(agent, "syncsvc") == [], SYNC_DEADLINE,
               what="sync1 gone from the catalog")
    wait_until(lambda: agent.get("/v1/health/service/syncsvc").json() == [], SYNC_DEADLINE,
               what="sync1 gone from health")
    wait_until(lambda: not [c for c in agent.get("/v1/health/node/test-node").json()
                            if c["CheckID"] == "service:sync1"],
               SYNC_DEADLINE, what="service:sync1 gone from the catalog's checks")

