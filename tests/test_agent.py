"""Agent process lifecycle and the status/agent endpoints.

Reference: hashicorp/consul agent/status_endpoint.go, agent/agent_endpoint.go,
command/agent/agent.go (see /work/scratch/consul-facts.md §4).
"""

from __future__ import annotations

import re
import signal
import socket

import pytest

from praetor_harness import STOP_DEADLINE, wait_until

ADDR_RE = re.compile(r"^\d{1,3}(\.\d{1,3}){3}:\d{1,5}$")
CONSUL_VERSION_RE = re.compile(r"^\d+\.\d+\.\d+")
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
STARTUP_LIMIT = 2.0  # seconds, spawn -> first leader answer (the target is < 1 s; bench/ measures it)


def port_is_closed(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) != 0


# ------------------------------------------------------------------- status


def test_status_leader_is_json_address(shared_agent):
    r = shared_agent.get("/v1/status/leader")
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("application/json")
    leader = r.json()
    assert isinstance(leader, str) and ADDR_RE.match(leader), leader
    assert leader.startswith("127.0.0.1:")


def test_status_leader_uses_server_port(shared_agent):
    if not shared_agent.isolation:
        pytest.skip("server port not configured (PRAETOR_TEST_ISOLATE_PORTS=0)")
    server_port = shared_agent.isolation["ports"]["server"]
    assert shared_agent.get("/v1/status/leader").json() == f"127.0.0.1:{server_port}"


def test_status_peers_lists_the_leader(shared_agent):
    r = shared_agent.get("/v1/status/peers")
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("application/json")
    peers = r.json()
    assert isinstance(peers, list) and len(peers) == 1, peers
    assert all(isinstance(p, str) and ADDR_RE.match(p) for p in peers), peers
    assert shared_agent.get("/v1/status/leader").json() in peers


@pytest.mark.parametrize("path", ["/v1/status/leader", "/v1/status/peers"])
def test_status_wrong_method_is_405(shared_agent, path):
    r = shared_agent.put(path)
    assert r.status_code == 405
    assert r.text == "method PUT not allowed"


def test_unknown_api_path_is_404(shared_agent):
    r = shared_agent.get("/v1/no-such-endpoint")
    assert r.status_code == 404


# --------------------------------------------------------------------- self


def test_agent_self_config(shared_agent):
    r = shared_agent.get("/v1/agent/self")
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].startswith("application/json")
    body = r.json()
    config = body["Config"]
    assert config["Datacenter"] == "dc1"
    assert config["NodeName"] == "test-node"
    assert config["Server"] is True
    assert isinstance(config["Version"], str) and CONSUL_VERSION_RE.match(config["Version"]), config
    assert isinstance(config.get("Revision", ""), str)


def test_agent_self_node_id_is_uuid(shared_agent):
    config = shared_agent.get("/v1/agent/self").json()["Config"]
    assert UUID_RE.match(config.get("NodeID", "")), config


def test_agent_self_mentions_praetor_version(shared_agent):
    """Praetor reports its own version next to the Consul version it speaks."""
    body = shared_agent.get("/v1/agent/self").json()

    def leaves(obj, path=""):
        if isinstance(obj, dict):
            for k, v in obj.items():
                yield from leaves(v, f"{path}.{k}")
        elif isinstance(obj, list):
            for i, v in enumerate(obj):
                yield from leaves(v, f"{path}[{i}]")
        elif isinstance(obj, str):
            yield path, obj

    hits = [(p, v) for p, v in leaves(body) if "praetor" in p.lower() or "praetor" in v.lower()]
    assert hits, "no key or value in /v1/agent/self mentions praetor"
    assert any(re.search(r"\d+\.\d+\.\d+", v) for _, v in hits), hits


# --------------------------------------------------------------- lifecycle


def test_startup_is_fast(agents):
    a = agents.new(name="fast")
    assert a.ready_after is not None
    assert a.ready_after < STARTUP_LIMIT, f"ready after {a.ready_after:.3f}s"


def test_leave_endpoint_stops_the_agent(agents):
    a = agents.new(name="leaver")
    port = a.port
    r = a.put("/v1/agent/leave")
    assert r.status_code == 200, r.text
    assert r.content == b""
    a.stopped_by_test = True
    code = a.wait_exit(STOP_DEADLINE)
    assert code == 0, f"exit code {code}\n{a.logs()}"
    assert port_is_closed(port)


def test_leave_requires_put(agents):
    a = agents.new(name="stayer")
    r = a.get("/v1/agent/leave")
    assert r.status_code == 405
    assert r.text == "method GET not allowed"
    # Still serving.
    assert a.proc.poll() is None
    assert a.get("/v1/status/leader").status_code == 200


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_gives_clean_exit(agents, sig):
    a = agents.new(name=f"sig{int(sig)}")
    port = a.port
    assert a.kv_put("before-signal", "v").status_code == 200
    code = a.stop(sig)
    assert code == 0, f"exit code {code} after {sig!r}\n{a.logs()}"
    assert port_is_closed(port)


def test_pid_file(agents, tmp_path):
    pid_path = tmp_path / "run" / "praetor.pid"
    pid_path.parent.mkdir()
    a = agents.new(name="pid", extra_args=["-pid-file", str(pid_path)])
    content = wait_until(lambda: pid_path.exists() and pid_path.read_text().strip(),
                         deadline=5.0, what="pid file to be written")
    assert content == str(a.proc.pid)
    assert a.stop(signal.SIGTERM) == 0, a.logs()
    # Consul removes its pid file on shutdown.
    assert not pid_path.exists()


def test_two_agents_side_by_side(agents):
    """Each agent owns its ports: two -dev agents on one host do not collide."""
    a = agents.new(name="one")
    b = agents.new(name="two")
    assert a.kv_put("side", "a").status_code == 200
    assert b.kv_entry("side") is None
    assert a.kv_entry("side") is not None


def test_agent_refuses_unknown_flag(cli):
    p = cli("agent", "-dev", "-no-such-flag", timeout=10)
    assert p.returncode == 1, (p.returncode, p.stdout, p.stderr)
    assert b"-no-such-flag" in p.stderr
