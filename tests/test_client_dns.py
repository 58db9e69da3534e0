"""A client agent's DNS interface follows the client's own settings, as a
Consul client's does: its `domain`, `dns_config` TTLs and `only_passing`,
and its own `recursors` (a tiny UDP DNS server run by the test), while the
servers it reads the catalog through keep answering with theirs."""

from __future__ import annotations

import socket
import struct
import threading

import pytest

from cluster_harness import Cluster, client_agent
from praetor_harness import free_ports, wait_until
from test_dns import dig

DEADLINE = 30.0
#: What the test's recursor answers for every A question (TEST-NET-1).
RECURSED_IP = "192.0.2.7"


class TinyRecursor:
    """A UDP DNS server on 127.0.0.1 that answers every A question with
    RECURSED_IP and remembers the names it was asked."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.asked: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self):
        while not self._stop.is_set():
            try:
                query, peer = self.sock.recvfrom(4096)
            except socket.timeout:
                continue
            reply = self._answer(query)
            if reply:
                self.sock.sendto(reply, peer)

    def _answer(self, query: bytes) -> bytes | None:
        if len(query) < 12:
            return None
        qid = query[:2]
        labels, at = [], 12
        while at < len(query) and query[at] != 0:
            n = query[at]
            labels.append(query[at + 1:at + 1 + n].decode("ascii", "replace"))
            at += 1 + n
        end = at + 5  # the root label, QTYPE, QCLASS
        if end > len(query):
            return None
        qtype = struct.unpack(">H", query[at + 1:at + 3])[0]
        self.asked.append(".".join(labels).lower() + ".")
        answers = 1 if qtype == 1 else 0
        header = qid + struct.pack(">HHHHH", 0x8180, 1, answers, 0, 0)
        body = query[12:end]
        if answers:
            ip = socket.inet_aton(RECURSED_IP)
            body += struct.pack(">HHHIH", 0xC00C, 1, 1, 30, 4) + ip
        return header + body

    def close(self):
        self._stop.set()
        self._thread.join(timeout=5)
        self.sock.close()


@pytest.fixture
def recursor():
    r = TinyRecursor()
    yield r
    r.close()


@pytest.fixture
def dns_cluster(praetor_bin, tmp_path):
    """Three servers with the DNS interface on, Consul's defaults."""
    (dns_port,) = free_ports(1)
    c = Cluster(praetor_bin, tmp_path, extra_config={"ports": {"dns": dns_port}})
    c.dns_port = dns_port
    try:
        c.start()
        yield c
    finally:
        c.close()


def test_a_client_answers_with_its_own_dns_settings(dns_cluster, agents, recursor):
    cluster = dns_cluster
    c1 = client_agent(agents, cluster, "c1", config={
        "domain": "example.",
        "recursors": [f"127.0.0.1:{recursor.port}"],
        "dns_config": {"node_ttl": "11s", "service_ttl": {"*": "7s", "db*": "13s"},
                       "only_passing": True},
    })
    # c2 keeps Consul's defaults but has a recursor nobody listens on.
    (dead,) = free_ports(1)
    c2 = client_agent(agents, cluster, "c2", config={"recursors": [f"127.0.0.1:{dead}"],
                                                     "dns_config": {"recursor_timeout": "1s"}})
    for c in (c1, c2):
        c.spawn()
    for c in (c1, c2):
        c.wait_ready(DEADLINE)
    p1, p2 = c1.isolation["ports"]["dns"], c2.isolation["ports"]["dns"]
    server = cluster.servers[0]

    def sdig(name, qtype="A"):
        return dig(cluster.dns_port, name, qtype, server=server.ip)

    for sid, address, status in (("web1", "10.0.0.1", "passing"),
                                 ("web2", "10.0.0.2", "warning")):
        r = c1.put("/v1/agent/service/register",
                   json={"Name": "web", "ID": sid, "Address": address, "Port": 80,
                         "Check": {"TTL": "60s", "Status": status}})
        assert r.status_code == 200, r.text
    r = c1.put("/v1/agent/service/register",
               json={"Name": "db", "ID": "db1", "Address": "10.0.1.1", "Port": 5432})
    assert r.status_code == 200, r.text
    wait_until(lambda: sdig("web.service.consul").rdata("A") == ["10.0.0.1", "10.0.0.2"],
               DEADLINE, what="both web instances in the catalog, seen by the server's DNS")

    # The server: its own domain, Consul's default TTLs of 0, every
    # instance that is not critical.
    on_server = sdig("web.service.consul")
    assert [r.ttl for r in on_server.answer] == [0, 0]
    assert sdig("web.service.example").status == "REFUSED"
    node = sdig("c1.node.consul")
    assert node.rdata("A") == ["127.0.0.1"] and node.answer[0].ttl == 0

    # The client c1: its domain, its TTLs, passing instances only.
    for transport in ("udp", "tcp"):
        web = dig(p1, "web.service.example", "A", transport)
        assert web.status == "NOERROR", web.raw
        assert web.rdata("A") == ["10.0.0.1"], web.raw
        assert {r.ttl for r in web.answer} == {7}
        assert "aa" in web.flags and "ra" in web.flags
    srv = dig(p1, "_web._tcp.service.example", "SRV")
    assert [r.data.split()[-1] for r in srv.answer] == ["0a000001.addr.dc1.example."]
    assert dig(p1, "db.service.example").answer[0].ttl == 13
    own = dig(p1, "c1.node.example")
    assert own.rdata("A") == ["127.0.0.1"] and own.answer[0].ttl == 11
    peer = dig(p1, "c2.node.example")
    assert peer.rdata("A") == ["127.0.0.1"]
    missing = dig(p1, "nosuch.service.example")
    assert missing.status == "NXDOMAIN"
    assert [r.name for r in missing.authority if r.rtype == "SOA"] == ["example."]

    # Names outside c1's domain, `.consul` included, go to c1's recursor.
    asked_before = len(recursor.asked)
    outside = dig(p1, "www.outside.test")
    assert outside.status == "NOERROR" and outside.rdata("A") == [RECURSED_IP], outside.raw
    consul_name = dig(p1, "web.service.consul")
    assert consul_name.rdata("A") == [RECURSED_IP]
    assert recursor.asked[asked_before:] == ["www.outside.test.", "web.service.consul."]
    # The server has no recursors: it refuses, and never asked the recursor.
    assert sdig("www.outside.test").status == "REFUSED"
    assert "www.outside.test." not in recursor.asked[asked_before + 2:]

    # c2: Consul's defaults read through the same servers, and a recursor
    # that does not answer is a SERVFAIL.
    both = dig(p2, "web.service.consul")
    assert both.rdata("A") == ["10.0.0.1", "10.0.0.2"]
    assert {r.ttl for r in both.answer} == {0}
    assert dig(p2, "c1.node.consul").rdata("A") == ["127.0.0.1"]
    assert dig(p2, "www.outside.test").status == "SERVFAIL"
