"""Agent state that outlives a restart, and services/checks from config files.

Reference: hashicorp/consul agent/agent.go (persistService/persistCheck under
<data_dir>/services and <data_dir>/checks, loadServices/loadChecks at start;
nothing is persisted in -dev mode), agent/config (service/services blocks).
"""

from __future__ import annotations

import json
import re
import signal

from praetor_harness import free_port, wait_until

CHECK_DEADLINE = 15.0
EXIT_DEADLINE = 10.0
ANSI_RE = re.compile(r"\x1b\[[0-9;]*m")


def server_agent(agents, data_dir, name="persist"):
    """A real (non -dev) single server on its own data dir and free ports."""
    data_dir.mkdir(parents=True, exist_ok=True)
    return agents.new(name=name, dev=False,
                      extra_args=["-server", "-bootstrap", "-data-dir", str(data_dir)])


def restart(agent):
    code = agent.stop(signal.SIGTERM)
    assert code == 0, f"agent exited {code} on SIGTERM\n{agent.logs()}"
    agent.stopped_by_test = False
    agent.start()


def local(agent):
    svcs = agent.get("/v1/agent/services")
    chks = agent.get("/v1/agent/checks")
    assert svcs.status_code == 200 and chks.status_code == 200, (svcs.text, chks.text)
    return svcs.json(), chks.json()


def test_api_registrations_survive_restart_and_deregistrations_too(agents, tmp_path):
    a = server_agent(agents, tmp_path / "data")
    r = a.put("/v1/agent/service/register",
              json={"ID": "web1", "Name": "web", "Port": 8080, "Tags": ["v1"],
                    "Meta": {"team": "a"}, "Check": {"TTL": "60s"}})
    assert r.status_code == 200, r.text
    r = a.put("/v1/agent/check/register", json={"ID": "disk", "Name": "disk", "TTL": "60s",
                                                "Notes": "df"})
    assert r.status_code == 200, r.text

    restart(a)
    svcs, chks = local(a)
    assert "web1" in svcs, svcs
    web = svcs["web1"]
    assert (web["Service"], web["Port"], web["Tags"], web["Meta"]) == (
        "web", 8080, ["v1"], {"team": "a"})
    assert {"service:web1", "disk"} <= set(chks), chks
    assert chks["disk"]["Notes"] == "df"
    assert chks["service:web1"]["ServiceID"] == "web1"
    # ... and they are synced into the catalog again.
    wait_until(lambda: [s["ServiceID"] for s in a.get("/v1/catalog/service/web").json()]
               == ["web1"], 10.0, what="web1 in the catalog after restart")

    assert a.put("/v1/agent/service/deregister/web1").status_code == 200
    assert a.put("/v1/agent/check/deregister/disk").status_code == 200
    restart(a)
    svcs, chks = local(a)
    assert "web1" not in svcs, svcs
    assert "disk" not in chks and "service:web1" not in chks, chks


def test_ttl_status_survives_restart(agents, tmp_path):
    """Consul persists TTL check state (data_dir/checks/state) and restores
    it on start while the TTL has not expired."""
    a = server_agent(agents, tmp_path / "data")
    a.put("/v1/agent/check/register", json={"ID": "ttl", "Name": "ttl", "TTL": "5m"})
    assert a.put("/v1/agent/check/pass/ttl?note=fine").status_code == 200
    restart(a)
    _, chks = local(a)
    assert (chks["ttl"]["Status"], chks["ttl"]["Output"]) == ("passing", "fine"), chks["ttl"]


def test_dev_mode_persists_nothing(agents, tmp_path):
    a = agents.new(name="dev")
    a.put("/v1/agent/service/register", json={"Name": "ephemeral"})
    restart(a)
    svcs, _ = local(a)
    assert "ephemeral" not in svcs


def test_config_dir_services_and_their_checks(agents, tmp_path):
    closed = free_port()
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "redis.hcl").write_text(
        'service {\n'
        '  name = "redis"\n'
        '  port = 6379\n'
        '  tags = ["primary"]\n'
        '  check {\n'
        f'    tcp = "127.0.0.1:{closed}"\n'
        '    interval = "1s"\n'
        '  }\n'
        '}\n')
    (conf / "web.json").write_text(json.dumps({"services": [{"name": "web", "port": 80}]}))

    a = agents.new(name="confdir", extra_args=["-config-dir", str(conf)])
    svcs, chks = local(a)
    assert set(svcs) >= {"redis", "web"}, svcs
    assert (svcs["redis"]["Service"], svcs["redis"]["Port"], svcs["redis"]["Tags"]) == (
        "redis", 6379, ["primary"])
    assert (svcs["web"]["Service"], svcs["web"]["Port"]) == ("web", 80)

    assert "service:redis" in chks, chks
    assert chks["service:redis"]["Name"] == "Service 'redis' check"
    assert chks["service:redis"]["Type"] == "tcp"

    def redis_critical():
        c = a.get("/v1/agent/checks").json().get("service:redis")
        return c if c and c["Status"] == "critical" and c["Output"] else None

    c = wait_until(redis_critical, CHECK_DEADLINE, what="redis check critical with output")
    assert "connection refused" in c["Output"], c["Output"]

    wait_until(lambda: {s["ServiceID"] for s in a.get("/v1/catalog/service/redis").json()}
               == {"redis"} and a.get("/v1/catalog/service/web").json() != [],
               10.0, what="config services in the catalog")
    # The TCP check keeps redis out of ?passing.
    assert a.get("/v1/health/service/redis?passing").json() == []


def test_config_file_service_without_name_is_fatal(agents, tmp_path):
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "bad.json").write_text(json.dumps({"service": {"port": 80}}))
    a = agents.new(name="badsvc", start=False, extra_args=["-config-dir", str(conf)])
    a.spawn()
    a.stopped_by_test = True
    code = a.wait_exit(EXIT_DEADLINE)
    if code is None:
        a.kill()
        raise AssertionError(f"agent with a nameless service kept running\n{a.logs()}")
    assert code != 0, a.logs()
    err = ANSI_RE.sub("", a.stderr() + a.stdout()).lower()
    assert "service" in err and "name" in err, err[-2000:]


def test_config_file_service_with_invalid_check_is_fatal(agents, tmp_path):
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "bad.hcl").write_text(
        'service {\n  name = "x"\n  check {\n    http = "http://127.0.0.1:1/"\n  }\n}\n')
    a = agents.new(name="badchk", start=False, extra_args=["-config-dir", str(conf)])
    a.spawn()
    a.stopped_by_test = True
    code = a.wait_exit(EXIT_DEADLINE)
    if code is None:
        a.kill()
        raise AssertionError(f"agent with an invalid service check kept running\n{a.logs()}")
    assert code != 0, a.logs()
    err = ANSI_RE.sub("", a.stderr() + a.stdout())
    assert "Interval must be > 0" in err, err[-2000:]
