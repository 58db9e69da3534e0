"""Consul's DNS interface, queried with `dig` (Debian bind9-dnsutils) over
UDP and TCP on the agent's own DNS port.

Reference: hashicorp/consul agent/dns.go: node and service lookups, RFC 2782
names, tag filtering, critical instances dropped, SRV targets
`<node>.node.<dc>.consul.` with the A record in the additional section,
NXDOMAIN with the SOA in the authority section, AA set, case-insensitive names.
Catalog data is registered directly through /v1/catalog/register so the
addresses in the answers are predictable.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass, field

import pytest

DIG = shutil.which("dig")
pytestmark = pytest.mark.skipif(DIG is None, reason="dig (bind9-dnsutils) is not installed")

TRANSPORTS = ["udp", "tcp"]


@dataclass
class Record:
    name: str
    ttl: int
    rtype: str
    data: str


@dataclass
class Reply:
    status: str
    flags: set
    answer: list = field(default_factory=list)
    authority: list = field(default_factory=list)
    additional: list = field(default_factory=list)
    raw: str = ""

    def rdata(self, rtype, section="answer"):
        return sorted(r.data for r in getattr(self, section) if r.rtype == rtype)


HEADER_RE = re.compile(r"->>HEADER<<- opcode: \w+, status: (\w+), id:")
FLAGS_RE = re.compile(r";; flags: ([a-z ]*);")
SECTION_RE = re.compile(r";; (ANSWER|AUTHORITY|ADDITIONAL) SECTION:")


def dig(port: int, name: str, qtype: str = "A", transport: str = "udp",
        server: str = "127.0.0.1") -> Reply:
    args = [DIG, f"@{server}", "-p", str(port), "+time=3", "+tries=2", name, qtype]
    if transport == "tcp":
        args.append("+tcp")
    proc = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, timeout=30)
    out = proc.stdout
    assert proc.returncode == 0, f"dig failed ({proc.returncode}): {out}\n{proc.stderr}"
    header = HEADER_RE.search(out)
    assert header, f"no DNS reply header in dig output:\n{out}"
    flags = FLAGS_RE.search(out)
    reply = Reply(status=header.group(1), flags=set(flags.group(1).split()) if flags else set(),
                  raw=out)
    section = None
    for line in out.splitlines():
        m = SECTION_RE.match(line)
        if m:
            section = m.group(1).lower()
            continue
        if not line.strip() or line.startswith(";"):
            if not line.strip():
                section = None
            continue
        if section:
            parts = line.split(None, 4)
            assert len(parts) == 5 and parts[2] == "IN", f"odd record line {line!r}"
            getattr(reply, section).append(
                Record(parts[0], int(parts[1]), parts[3], parts[4].strip()))
    return reply


def catalog_register(agent, body):
    r = agent.put("/v1/catalog/register", json=body)
    assert r.status_code == 200 and r.json() is True, (r.status_code, r.text)


@pytest.fixture(scope="module")
def dns_agent(shared_agent):
    """The shared agent with a fixed catalog:

    db1 10.0.0.5: web (port 80), redis tag primary (6379)
    db2 10.0.0.6: web (port 80) with a critical service check, redis tag replica (6380)
    db3 10.0.0.7: web (port 8080) with a warning service check
    """
    a = shared_agent
    catalog_register(a, {"Node": "db1", "Address": "10.0.0.5",
                         "Service": {"ID": "web", "Service": "web", "Port": 80}})
    catalog_register(a, {"Node": "db1", "Address": "10.0.0.5",
                         "Service": {"ID": "redis", "Service": "redis", "Port": 6379,
                                     "Tags": ["primary"]}})
    catalog_register(a, {"Node": "db2", "Address": "10.0.0.6",
                         "Service": {"ID": "web", "Service": "web", "Port": 80},
                         "Check": {"CheckID": "web-down", "Name": "web down",
                                   "ServiceID": "web", "Status": "critical"}})
    catalog_register(a, {"Node": "db2", "Address": "10.0.0.6",
                         "Service": {"ID": "redis", "Service": "redis", "Port": 6380,
                                     "Tags": ["replica"]}})
    catalog_register(a, {"Node": "db3", "Address": "10.0.0.7",
                         "Service": {"ID": "web", "Service": "web", "Port": 8080},
                         "Check": {"CheckID": "web-slow", "Name": "web slow",
                                   "ServiceID": "web", "Status": "warning"}})
    assert a.isolation, "DNS tests need the harness's isolated ports (DNS port known)"
    a.dns_port = a.isolation["ports"]["dns"]
    return a


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_node_a_record(dns_agent, transport):
    r = dig(dns_agent.dns_port, "db1.node.consul", "A", transport)
    assert r.status == "NOERROR", r.raw
    assert "aa" in r.flags, r.raw
    assert [(x.name, x.rtype, x.data) for x in r.answer] == [("db1.node.consul.", "A", "10.0.0.5")]
    # with the datacenter
    r = dig(dns_agent.dns_port, "db2.node.dc1.consul", "A", transport)
    assert r.rdata("A") == ["10.0.0.6"], r.raw


def test_agents_own_node(dns_agent):
    r = dig(dns_agent.dns_port, "test-node.node.consul", "A")
    assert r.status == "NOERROR", r.raw
    assert r.rdata("A") == ["127.0.0.1"], r.raw


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_service_a_drops_critical_instances(dns_agent, transport):
    r = dig(dns_agent.dns_port, "web.service.consul", "A", transport)
    assert r.status == "NOERROR", r.raw
    assert "aa" in r.flags
    # db2's web is critical → excluded; db3's is only warning → included.
    assert r.rdata("A") == ["10.0.0.5", "10.0.0.7"], r.raw
    assert all(x.name == "web.service.consul." for x in r.answer), r.raw


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_service_srv_targets_and_additional(dns_agent, transport):
    r = dig(dns_agent.dns_port, "web.service.consul", "SRV", transport)
    assert r.status == "NOERROR", r.raw
    assert r.rdata("SRV") == ["1 1 80 db1.node.dc1.consul.", "1 1 8080 db3.node.dc1.consul."], r.raw
    extra = sorted((x.name, x.data) for x in r.additional if x.rtype == "A")
    assert extra == [("db1.node.dc1.consul.", "10.0.0.5"), ("db3.node.dc1.consul.", "10.0.0.7")], \
        r.raw


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_rfc2782_srv_name(dns_agent, transport):
    r = dig(dns_agent.dns_port, "_web._tcp.service.consul", "SRV", transport)
    assert r.status == "NOERROR", r.raw
    assert r.rdata("SRV") == ["1 1 80 db1.node.dc1.consul.", "1 1 8080 db3.node.dc1.consul."], r.raw
    assert all(x.name == "_web._tcp.service.consul." for x in r.answer), r.raw
    # RFC 2782 with a tag instead of the protocol
    r = dig(dns_agent.dns_port, "_redis._primary.service.consul", "SRV", transport)
    assert r.rdata("SRV") == ["1 1 6379 db1.node.dc1.consul."], r.raw


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_tag_filter(dns_agent, transport):
    r = dig(dns_agent.dns_port, "primary.redis.service.consul", "A", transport)
    assert r.rdata("A") == ["10.0.0.5"], r.raw
    r = dig(dns_agent.dns_port, "replica.redis.service.consul", "SRV", transport)
    assert r.rdata("SRV") == ["1 1 6380 db2.node.dc1.consul."], r.raw
    r = dig(dns_agent.dns_port, "redis.service.consul", "A", transport)
    assert r.rdata("A") == ["10.0.0.5", "10.0.0.6"], r.raw
    r = dig(dns_agent.dns_port, "nosuchtag.redis.service.consul", "A", transport)
    assert r.status == "NXDOMAIN", r.raw


def assert_soa_authority(r):
    soa = [x for x in r.authority if x.rtype == "SOA"]
    assert len(soa) == 1, r.raw
    assert soa[0].name == "consul.", r.raw
    fields = soa[0].data.split()
    assert fields[0:2] == ["ns.consul.", "hostmaster.consul."], r.raw
    assert fields[3:] == ["3600", "600", "86400", "0"], r.raw


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("name", ["nosuch.service.consul", "nosuch.node.consul",
                                  "_nosuch._tcp.service.consul"])
def test_unknown_names_are_nxdomain_with_soa(dns_agent, transport, name):
    r = dig(dns_agent.dns_port, name, "A", transport)
    assert r.status == "NXDOMAIN", r.raw
    assert r.answer == [], r.raw
    assert_soa_authority(r)


def test_all_instances_critical_is_nxdomain(dns_agent):
    catalog_register(dns_agent, {"Node": "db4", "Address": "10.0.0.8",
                                 "Service": {"ID": "sick", "Service": "sick", "Port": 1},
                                 "Check": {"CheckID": "sick-c", "Name": "sick",
                                           "ServiceID": "sick", "Status": "critical"}})
    r = dig(dns_agent.dns_port, "sick.service.consul", "A")
    assert r.status == "NXDOMAIN", r.raw
    assert_soa_authority(r)


def test_node_without_requested_type_is_nodata_with_soa(dns_agent):
    r = dig(dns_agent.dns_port, "db1.node.consul", "AAAA")
    assert r.status == "NOERROR", r.raw
    assert r.answer == [], r.raw
    assert_soa_authority(r)


@pytest.mark.parametrize("name", ["WEB.Service.CONSUL", "Db1.NODE.consul",
                                  "PRIMARY.Redis.service.Consul"])
def test_names_are_case_insensitive(dns_agent, name):
    r = dig(dns_agent.dns_port, name, "A")
    assert r.status == "NOERROR", r.raw
    assert r.answer, r.raw
    lower = name.lower()
    expected = {"web.service.consul": ["10.0.0.5", "10.0.0.7"],
                "db1.node.consul": ["10.0.0.5"],
                "primary.redis.service.consul": ["10.0.0.5"]}[lower]
    assert r.rdata("A") == expected, r.raw
