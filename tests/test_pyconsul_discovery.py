"""Service discovery through the real py-consul client (PyPI `py-consul`):
register a service with a TTL check on the agent, pass the check, and find the
service healthy through the health and catalog endpoints."""

from __future__ import annotations

import consul
import pytest

from praetor_harness import wait_until

SYNC_DEADLINE = 10.0


@pytest.fixture
def c(agent):
    client = consul.Consul(host="127.0.0.1", port=agent.port)
    try:
        yield client
    finally:
        client.http.close()


def test_register_pass_and_discover(c):
    assert c.agent.service.register("billing", service_id="billing-1", port=9100,
                                    tags=["v2"], meta={"team": "pay"},
                                    check=consul.Check.ttl("30s")) is True
    local = c.agent.services()
    assert local["billing-1"]["Service"] == "billing"
    assert local["billing-1"]["Port"] == 9100
    assert local["billing-1"]["Tags"] == ["v2"]
    assert local["billing-1"]["Meta"] == {"team": "pay"}

    checks = c.agent.checks()
    assert checks["service:billing-1"]["Status"] == "critical", "TTL checks start critical"

    # Not passing yet → absent from passing=True.
    _, nodes = c.health.service("billing", passing=True)
    assert nodes == []

    assert c.agent.check.ttl_pass("service:billing-1", "warmed up") is True
    assert c.agent.checks()["service:billing-1"]["Output"] == "warmed up"

    def healthy():
        _, found = c.health.service("billing", passing=True)
        return found

    nodes = wait_until(healthy, SYNC_DEADLINE, what="billing-1 passing in health.service")
    assert len(nodes) == 1
    entry = nodes[0]
    assert entry["Node"]["Node"] == "test-node"
    assert entry["Service"]["ID"] == "billing-1"
    assert entry["Service"]["Port"] == 9100
    assert {ch["CheckID"]: ch["Status"] for ch in entry["Checks"]} == {
        "serfHealth": "passing", "service:billing-1": "passing"}

    index, services = c.catalog.services()
    assert int(index) >= 1
    assert services["billing"] == ["v2"]
    assert "consul" in services

    _, instances = c.catalog.service("billing")
    assert [(i["ServiceID"], i["ServicePort"]) for i in instances] == [("billing-1", 9100)]

    # Failing the TTL takes it out of the passing view again.
    assert c.agent.check.ttl_fail("service:billing-1", "broken") is True
    wait_until(lambda: c.health.service("billing", passing=True)[1] == [], SYNC_DEADLINE,
               what="billing-1 gone from passing after ttl_fail")

    assert c.agent.service.deregister("billing-1") is True
    wait_until(lambda: "billing" not in c.catalog.services()[1], SYNC_DEADLINE,
               what="billing gone from catalog.services")
    assert "billing-1" not in c.agent.services()


def test_health_service_blocking_wakes_on_ttl_pass(c):
    c.agent.service.register("queue", service_id="queue-1", check=consul.Check.ttl("30s"))
    wait_until(lambda: c.health.service("queue")[1], SYNC_DEADLINE, what="queue-1 synced")
    index, nodes = c.health.service("queue", passing=True)
    assert nodes == []
    c.agent.check.ttl_pass("service:queue-1")
    index2, nodes = c.health.service("queue", passing=True, index=index, wait="10s")
    if not nodes:  # a wake-up for an intermediate change; block once more
        index2, nodes = c.health.service("queue", passing=True, index=index2, wait="10s")
    assert int(index2) > int(index)
    assert [n["Service"]["ID"] for n in nodes] == ["queue-1"]
