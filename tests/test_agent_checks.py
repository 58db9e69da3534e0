"""Agent-local checks: /v1/agent/check/register (TTL, HTTP, TCP, script),
TTL updates (pass/warn/fail/update), TTL expiry, /v1/agent/checks, check
deregister, node and service maintenance.

Reference: hashicorp/consul agent/agent_endpoint.go (AgentRegisterCheck,
AgentCheckPass/Warn/Fail/Update, AgentNodeMaintenance, AgentServiceMaintenance),
agent/agent.go (addCheck: script checks gated by enable_script_checks;
updateTTLCheck), agent/checks/check.go (HTTP/TCP/script/TTL outputs).
"""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from praetor_harness import free_port, wait_until

CHECK_DEADLINE = 15.0  # an interval check (1s) must have run within this
SYNC_DEADLINE = 10.0

UNKNOWN_CHECK = 'Unknown check ID "{}". Ensure that the check ID is passed, not the check name.'
UNKNOWN_SERVICE = ('Unknown service ID "{}". Ensure that the service ID is passed, '
                   'not the service name.')


def assert_ok_empty(r):
    assert r.status_code == 200, (r.status_code, r.text)
    assert r.text == "", f"Consul answers agent writes with an empty body, got {r.text!r}"


def register_check(agent, body):
    return agent.put("/v1/agent/check/register", json=body)


def checks(agent) -> dict:
    r = agent.get("/v1/agent/checks")
    assert r.status_code == 200, r.text
    return r.json()


def check(agent, cid) -> dict | None:
    return checks(agent).get(cid)


def wait_status(agent, cid, status, output=None, deadline=CHECK_DEADLINE):
    """Poll /v1/agent/checks until check `cid` has `status` (and `output`)."""
    def ok():
        c = check(agent, cid)
        if c and c["Status"] == status and (output is None or c["Output"] == output):
            return c
        return None
    return wait_until(ok, deadline, what=f"check {cid} {status} {output!r} "
                                          f"(now {check(agent, cid)})")


# ------------------------------------------------------------ a tiny server


class FlippableServer:
    """http.server in a thread answering GET /health with a settable code."""

    def __init__(self):
        self.code = 200
        self.body = b"ok"
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server API
                self.send_response(outer.code)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(outer.body)))
                self.end_headers()
                self.wfile.write(outer.body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/health"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def set(self, code, body):
        self.code, self.body = code, body

    def close(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def http_target():
    srv = FlippableServer()
    try:
        yield srv
    finally:
        srv.close()


@pytest.fixture
def tcp_listener():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", 0))
    s.listen(64)
    stop = threading.Event()

    def accept_loop():
        s.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = s.accept()
                conn.close()
            except OSError:
                pass

    t = threading.Thread(target=accept_loop, daemon=True)
    t.start()
    try:
        yield s.getsockname()[1]
    finally:
        stop.set()
        t.join(5)
        s.close()


# ------------------------------------------------------------------ TTL


def test_register_ttl_check_defaults(agent):
    assert_ok_empty(register_check(agent, {"Name": "mem", "TTL": "30s", "Notes": "n"}))
    c = check(agent, "mem")  # CheckID defaults to Name
    assert c is not None, checks(agent)
    assert c["CheckID"] == "mem" and c["Name"] == "mem"
    assert c["Status"] == "critical", "checks start critical"
    assert c["Notes"] == "n"
    assert c["Output"] == ""
    assert c["ServiceID"] == "" and c["ServiceName"] == ""
    assert c["ServiceTags"] == []
    assert c["Type"] == "ttl"
    assert c["Node"] == "test-node"


def test_ttl_pass_warn_fail_note_becomes_output(agent):
    assert_ok_empty(register_check(agent, {"ID": "t1", "Name": "ttl one", "TTL": "60s"}))
    assert_ok_empty(agent.put("/v1/agent/check/pass/t1", params={"note": "all good"}))
    c = check(agent, "t1")
    assert (c["Status"], c["Output"], c["Notes"]) == ("passing", "all good", "")
    assert_ok_empty(agent.put("/v1/agent/check/warn/t1", params={"note": "meh"}))
    c = check(agent, "t1")
    assert (c["Status"], c["Output"]) == ("warning", "meh")
    assert_ok_empty(agent.put("/v1/agent/check/fail/t1"))
    c = check(agent, "t1")
    assert (c["Status"], c["Output"]) == ("critical", "")


def test_ttl_updates_are_visible_when_the_request_returns(agent):
    """Consul applies pass/warn/fail to the local state before answering
    (updateTTLCheck → CheckTTL.SetStatus → State.UpdateCheck, synchronous),
    so the very next /v1/agent/checks read shows it."""
    register_check(agent, {"ID": "ryw", "Name": "ryw", "TTL": "60s"})
    verbs = (("pass", "passing"), ("warn", "warning"), ("fail", "critical"))
    stale = []
    for i in range(300):
        verb, status = verbs[i % 3]
        assert_ok_empty(agent.put(f"/v1/agent/check/{verb}/ryw", params={"note": f"n{i}"}))
        c = check(agent, "ryw")
        if (c["Status"], c["Output"]) != (status, f"n{i}"):
            stale.append((i, verb, c["Status"], c["Output"]))
    assert not stale, f"{len(stale)} reads right after a 200 were stale (of 300), e.g. {stale[:3]}"


def test_ttl_update_with_body(agent):
    register_check(agent, {"ID": "u1", "Name": "u", "TTL": "60s"})
    r = agent.put("/v1/agent/check/update/u1", json={"Status": "warning", "Output": "disk 91%"})
    assert_ok_empty(r)
    c = check(agent, "u1")
    assert (c["Status"], c["Output"]) == ("warning", "disk 91%")
    r = agent.put("/v1/agent/check/update/u1", json={"Status": "bogus"})
    assert (r.status_code, r.text) == (400, "Invalid check status: 'bogus'")
    assert check(agent, "u1")["Status"] == "warning", "a rejected update changes nothing"


def test_ttl_expires_to_critical(agent):
    register_check(agent, {"ID": "short", "Name": "short", "TTL": "1s", "Status": "passing"})
    assert check(agent, "short")["Status"] == "passing"
    wait_status(agent, "short", "critical", "TTL expired", deadline=10)

    # After an update with output, the expiry message quotes it.
    agent.put("/v1/agent/check/pass/short", params={"note": "last words"})
    assert check(agent, "short")["Status"] == "passing"
    wait_status(agent, "short", "critical",
                "TTL expired (last output before timeout follows): last words", deadline=10)


def test_unknown_check_ids_are_404(agent):
    for path in ("pass", "warn", "fail"):
        r = agent.put(f"/v1/agent/check/{path}/nope")
        assert (r.status_code, r.text) == (404, UNKNOWN_CHECK.format("nope")), path
    r = agent.put("/v1/agent/check/update/nope", json={"Status": "passing"})
    assert (r.status_code, r.text) == (404, UNKNOWN_CHECK.format("nope"))
    r = agent.put("/v1/agent/check/deregister/nope")
    assert (r.status_code, r.text) == (404, UNKNOWN_CHECK.format("nope"))


def test_ttl_update_of_non_ttl_check_is_500(agent):
    port = free_port()
    register_check(agent, {"ID": "tcpc", "Name": "tcpc", "TCP": f"127.0.0.1:{port}",
                           "Interval": "10s"})
    for path in ("pass", "warn", "fail"):
        r = agent.put(f"/v1/agent/check/{path}/tcpc")
        assert (r.status_code, r.text) == (500, 'CheckID "tcpc" does not have associated TTL')
    r = agent.put("/v1/agent/check/update/tcpc", json={"Status": "passing"})
    assert (r.status_code, r.text) == (500, 'CheckID "tcpc" does not have associated TTL')


@pytest.mark.parametrize("body, status, message", [
    ({"TTL": "10s"}, 400, "Missing check name"),
    ({"Name": "c", "TTL": "10s", "Status": "bogus"}, 400, "Bad check status"),
    ({"Name": "c"}, 400, "Invalid check: TTL must be > 0 for TTL checks"),
    ({"Name": "c", "HTTP": "http://127.0.0.1:1/"}, 400,
     "Invalid check: Interval must be > 0 for Script, HTTP, H2PING, TCP, UDP or OSService checks"),
    ({"Name": "c", "TTL": "10s", "Interval": "10s", "TCP": "127.0.0.1:1"}, 400,
     "Invalid check: Interval and TTL cannot both be specified"),
    ({"Name": "c", "TTL": "10s", "ServiceID": "ghost"}, 404, 'ServiceID "ghost" does not exist'),
], ids=["no-name", "bad-status", "no-type", "http-no-interval", "ttl-and-interval",
        "unknown-service"])
def test_register_check_errors(shared_agent, body, status, message):
    r = register_check(shared_agent, body)
    assert (r.status_code, r.text) == (status, message)
    assert "c" not in checks(shared_agent)


def test_undecodable_check_body_is_400(shared_agent):
    r = shared_agent.put("/v1/agent/check/register", data=b"[1,")
    assert r.status_code == 400 and r.text.startswith("Request decode failed: "), r.text


@pytest.mark.parametrize("method, path", [
    ("GET", "/v1/agent/check/register"),
    ("GET", "/v1/agent/check/pass/x"),
    ("GET", "/v1/agent/check/warn/x"),
    ("GET", "/v1/agent/check/fail/x"),
    ("GET", "/v1/agent/check/update/x"),
    ("GET", "/v1/agent/check/deregister/x"),
    ("GET", "/v1/agent/maintenance"),
    ("GET", "/v1/agent/service/maintenance/x"),
    ("PUT", "/v1/agent/checks"),
])
def test_wrong_method_is_405(shared_agent, method, path):
    r = shared_agent.http(method, path)
    assert r.status_code == 405, (r.status_code, r.text)
    assert r.text == f"method {method} not allowed"


def test_check_for_a_service_and_deregister(agent):
    agent.put("/v1/agent/service/register", json={"ID": "web1", "Name": "web", "Tags": ["a"]})
    assert_ok_empty(register_check(agent, {"ID": "wc", "Name": "web check", "TTL": "30s",
                                           "ServiceID": "web1", "Status": "warning"}))
    c = check(agent, "wc")
    assert (c["ServiceID"], c["ServiceName"], c["ServiceTags"]) == ("web1", "web", ["a"])
    assert c["Status"] == "warning"
    assert_ok_empty(agent.put("/v1/agent/check/deregister/wc"))
    assert check(agent, "wc") is None
    assert "web1" in agent.get("/v1/agent/services").json(), "the service stays"


# ----------------------------------------------------------------- HTTP


def test_http_check_follows_status_codes(agent, http_target):
    url = http_target.url
    assert_ok_empty(register_check(agent, {"ID": "h", "Name": "h", "HTTP": url,
                                           "Interval": "1s"}))
    c = wait_status(agent, "h", "passing", f"HTTP GET {url}: 200 OK Output: ok")
    assert c["Type"] == "http"

    http_target.set(429, b"slow down")
    wait_status(agent, "h", "warning", f"HTTP GET {url}: 429 Too Many Requests Output: slow down")

    http_target.set(503, b"down")
    wait_status(agent, "h", "critical", f"HTTP GET {url}: 503 Service Unavailable Output: down")

    http_target.set(200, b"back")
    wait_status(agent, "h", "passing", f"HTTP GET {url}: 200 OK Output: back")


def test_http_check_connection_refused_is_critical(agent):
    port = free_port()
    register_check(agent, {"ID": "hr", "Name": "hr", "HTTP": f"http://127.0.0.1:{port}/",
                           "Interval": "1s", "Status": "passing"})
    c = wait_status(agent, "hr", "critical")
    assert "connection refused" in c["Output"], c["Output"]


# ------------------------------------------------------------------ TCP


def test_tcp_check_open_and_closed_port(agent, tcp_listener):
    closed = free_port()
    register_check(agent, {"ID": "open", "Name": "open", "TCP": f"127.0.0.1:{tcp_listener}",
                           "Interval": "1s"})
    register_check(agent, {"ID": "closed", "Name": "closed", "TCP": f"127.0.0.1:{closed}",
                           "Interval": "1s", "Status": "passing"})
    c = wait_status(agent, "open", "passing", f"TCP connect 127.0.0.1:{tcp_listener}: Success")
    assert c["Type"] == "tcp"
    c = wait_status(agent, "closed", "critical")
    assert c["Output"] == f"dial tcp 127.0.0.1:{closed}: connect: connection refused", c["Output"]


# --------------------------------------------------------------- script


def test_script_checks_refused_by_default(agent):
    r = register_check(agent, {"ID": "s", "Name": "s", "Args": ["sh", "-c", "exit 0"],
                               "Interval": "1s"})
    assert r.status_code == 500, (r.status_code, r.text)
    assert r.text == ("Scripts are disabled on this agent from remote calls; to enable, "
                      "configure 'enable_script_checks' to true")
    assert check(agent, "s") is None


def test_script_checks_with_enable_script_checks(agents, tmp_path):
    cfg = tmp_path / "scripts.json"
    cfg.write_text(json.dumps({"enable_script_checks": True}))
    a = agents.new(name="scripts", config_files=[cfg])
    for cid, script in (("s0", "echo fine; exit 0"), ("s1", "echo hmm; exit 1"),
                        ("s2", "echo bad >&2; exit 2")):
        assert_ok_empty(register_check(a, {"ID": cid, "Name": cid, "Interval": "1s",
                                           "args": ["sh", "-c", script]}))
    c = wait_status(a, "s0", "passing", "fine\n")
    assert c["Type"] == "script"
    wait_status(a, "s1", "warning", "hmm\n")
    wait_status(a, "s2", "critical", "bad\n")


# ---------------------------------------------------------- maintenance


def test_node_maintenance(agent):
    r = agent.put("/v1/agent/maintenance")
    assert (r.status_code, r.text) == (400, "Missing value for enable")
    r = agent.put("/v1/agent/maintenance?enable=maybe")
    assert (r.status_code, r.text) == (400, 'Invalid value for enable: "maybe"')

    assert_ok_empty(agent.put("/v1/agent/maintenance?enable=true&reason=r"))
    c = check(agent, "_node_maintenance")
    assert c is not None, checks(agent)
    assert (c["Name"], c["Status"], c["Notes"], c["ServiceID"]) == (
        "Node Maintenance Mode", "critical", "r", "")

    wait_until(lambda: any(x["CheckID"] == "_node_maintenance" and x["Status"] == "critical"
                           for x in agent.get("/v1/health/node/test-node").json()),
               SYNC_DEADLINE, what="_node_maintenance in the catalog")

    assert_ok_empty(agent.put("/v1/agent/maintenance?enable=false"))
    assert check(agent, "_node_maintenance") is None
    wait_until(lambda: not any(x["CheckID"] == "_node_maintenance"
                               for x in agent.get("/v1/health/node/test-node").json()),
               SYNC_DEADLINE, what="_node_maintenance gone from the catalog")

    assert_ok_empty(agent.put("/v1/agent/maintenance?enable=true"))
    assert check(agent, "_node_maintenance")["Notes"] == (
        "Maintenance mode is enabled for this node, but no reason was provided. "
        "This is a default message.")


def test_service_maintenance_and_passing_filter(agent):
    agent.put("/v1/agent/service/register",
              json={"ID": "m1", "Name": "maint", "Check": {"TTL": "60s", "Status": "passing"}})

    def passing_ids():
        return [i["Service"]["ID"] for i in
                agent.get("/v1/health/service/maint?passing").json()]

    wait_until(lambda: passing_ids() == ["m1"], SYNC_DEADLINE, what="m1 passing in health")

    r = agent.put("/v1/agent/service/maintenance/ghost?enable=true")
    assert (r.status_code, r.text) == (404, UNKNOWN_SERVICE.format("ghost"))
    r = agent.put("/v1/agent/service/maintenance/m1")
    assert (r.status_code, r.text) == (400, "Missing value for enable")

    assert_ok_empty(agent.put("/v1/agent/service/maintenance/m1?enable=true&reason=deploy"))
    c = check(agent, "_service_maintenance:m1")
    assert c is not None, checks(agent)
    assert (c["Name"], c["Status"], c["Notes"], c["ServiceID"], c["ServiceName"]) == (
        "Service Maintenance Mode", "critical", "deploy", "m1", "maint")

    wait_until(lambda: passing_ids() == [], SYNC_DEADLINE,
               what="m1 dropped from ?passing while in maintenance")
    all_ = agent.get("/v1/health/service/maint").json()
    assert [i["Service"]["ID"] for i in all_] == ["m1"], "without ?passing it is still listed"
    assert any(x["CheckID"] == "_service_maintenance:m1" and x["Status"] == "critical"
               for x in all_[0]["Checks"])

    assert_ok_empty(agent.put("/v1/agent/service/maintenance/m1?enable=false"))
    assert check(agent, "_service_maintenance:m1") is None
    wait_until(lambda: passing_ids() == ["m1"], SYNC_DEADLINE, what="m1 passing again")

    # Node maintenance takes every instance on the node out of ?passing.
    agent.put("/v1/agent/maintenance?enable=true&reason=node")
    wait_until(lambda: passing_ids() == [], SYNC_DEADLINE,
               what="m1 dropped from ?passing during node maintenance")
    agent.put("/v1/agent/maintenance?enable=false")
    wait_until(lambda: passing_ids() == ["m1"], SYNC_DEADLINE, what="m1 passing after node maint")


def test_service_maintenance_default_reason(agent):
    agent.put("/v1/agent/service/register", json={"ID": "d1", "Name": "d"})
    assert_ok_empty(agent.put("/v1/agent/service/maintenance/d1?enable=true"))
    assert check(agent, "_service_maintenance:d1")["Notes"] == (
        "Maintenance mode is enabled for this service, but no reason was provided. "
        "This is a default message.")
    # Deregistering the service removes its maintenance check too.
    agent.put("/v1/agent/service/deregister/d1")
    assert check(agent, "_service_maintenance:d1") is None
