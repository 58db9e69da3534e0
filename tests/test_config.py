"""Agent configuration: Consul JSON/HCL files, -config-dir, errors, flag precedence.

Reference: hashicorp/consul agent/config (builder, source, default.go).
Consul's kv_max_value_size lives under `limits` (limits.kv_max_value_size).
"""

from __future__ import annotations

import base64
import json
import re

import pytest

from praetor_harness import free_port, free_ports, wait_until

ANSI_RE = re.compile(r"\x1b\[[0-9;]*m")
EXIT_DEADLINE = 5.0  # a bad config must stop the agent this fast


def ports_block(http: int) -> dict:
    """`ports` with the given HTTP port, DNS off, and free ports for the rest."""
    serf_lan, serf_wan, server, grpc = free_ports(4)
    return {"http": http, "dns": -1, "serf_lan": serf_lan, "serf_wan": serf_wan,
            "server": server, "grpc": grpc}


def ports_hcl(ports: dict) -> str:
    return "ports {\n" + "".join(f"  {k} = {v}\n" for k, v in ports.items()) + "}\n"


def self_config(agent) -> dict:
    r = agent.get("/v1/agent/self")
    assert r.status_code == 200, r.text
    return r.json()["Config"]


def start_with_files(agents, files, *, http_port, node=None, extra_args=(), name="cfg"):
    return agents.new(name=name, node=node, http_port=http_port, http_flag=False,
                      isolate_ports=False, config_files=files, extra_args=extra_args)


def expect_startup_failure(agents, files=(), *, extra_args=(), name="bad"):
    """Spawn an agent that must exit non-zero by itself; returns (code, stderr)."""
    port = free_port()
    a = agents.new(name=name, start=False, node=None, http_port=port, http_flag=False,
                   isolate_ports=False, config_files=files, extra_args=extra_args)
    a.spawn()
    a.stopped_by_test = True
    code = a.wait_exit(EXIT_DEADLINE)
    if code is None:
        a.kill()
        raise AssertionError(f"agent with a bad config was still running after "
                             f"{EXIT_DEADLINE}s\n{a.logs()}")
    assert code != 0, f"agent with a bad config exited 0\n{a.logs()}"
    return code, ANSI_RE.sub("", a.stderr())


def assert_config_takes_effect(agent, *, node, dc, max_value):
    config = self_config(agent)
    assert config["NodeName"] == node
    assert config["Datacenter"] == dc

    r = agent.kv_put("small", b"s" * max_value)
    assert r.status_code == 200, r.text
    r = agent.kv_put("big", b"b" * 2000)
    assert r.status_code == 413, (r.status_code, r.text)
    assert r.text.startswith(f"Request body(2000 bytes) too large, max size: {max_value} bytes."), r.text
    assert agent.kv_entry("big") is None

    # The same limit applies per value inside a transaction.
    ops = [{"KV": {"Verb": "set", "Key": "txnbig", "Value": base64.b64encode(b"t" * 2000).decode()}}]
    r = agent.put("/v1/txn", data=json.dumps(ops))
    assert r.status_code == 413, (r.status_code, r.text)
    assert r.text == f'Value for key "txnbig" is too large (2000 > {max_value} bytes)'


# --------------------------------------------------------------- good files


def test_json_config_file_takes_effect(agents, tmp_path):
    port = free_port()
    cfg = tmp_path / "agent.json"
    cfg.write_text(json.dumps({
        "ports": ports_block(port),
        "node_name": "cfg-node",
        "datacenter": "dc7",
        "limits": {"kv_max_value_size": 1024},
    }))
    a = start_with_files(agents, [cfg], http_port=port)
    assert a.port == port
    assert_config_takes_effect(a, node="cfg-node", dc="dc7", max_value=1024)


def test_hcl_config_file_takes_effect(agents, tmp_path):
    port = free_port()
    cfg = tmp_path / "agent.hcl"
    cfg.write_text(
        '# praetor reads Consul HCL unchanged\n'
        'node_name  = "cfg-node"\n'
        'datacenter = "dc7"\n'
        + ports_hcl(ports_block(port)) +
        'limits {\n  kv_max_value_size = 1024\n}\n')
    a = start_with_files(agents, [cfg], http_port=port)
    assert_config_takes_effect(a, node="cfg-node", dc="dc7", max_value=1024)


def test_config_dir_later_file_wins(agents, tmp_path):
    port = free_port()
    d = tmp_path / "conf.d"
    d.mkdir()
    (d / "10-base.json").write_text(json.dumps({
        "ports": ports_block(port), "node_name": "first-node", "datacenter": "dc7"}))
    (d / "20-override.hcl").write_text('node_name = "second-node"\n')
    # Files without a .json/.hcl extension are not config files.
    (d / "README.txt").write_text("this is not { valid config\n")
    a = agents.new(name="cfgdir", node=None, http_port=port, http_flag=False,
                   isolate_ports=False, extra_args=["-config-dir", str(d)])
    config = self_config(a)
    assert config["NodeName"] == "second-node"
    assert config["Datacenter"] == "dc7"  # merged from the earlier file


def test_config_dir_order_is_lexical_not_creation(agents, tmp_path):
    port = free_port()
    d = tmp_path / "conf.d"
    d.mkdir()
    # Created in reverse order: the lexically later name must still win.
    (d / "b.json").write_text(json.dumps({"node_name": "from-b"}))
    (d / "a.json").write_text(json.dumps({"ports": ports_block(port), "node_name": "from-a"}))
    a = agents.new(name="cfglex", node=None, http_port=port, http_flag=False,
                   isolate_ports=False, extra_args=["-config-dir", str(d)])
    assert self_config(a)["NodeName"] == "from-b"


def test_flags_override_files(agents, tmp_path):
    file_port, flag_port = free_ports(2)
    cfg = tmp_path / "agent.json"
    cfg.write_text(json.dumps({"ports": ports_block(file_port), "node_name": "cfg-node"}))
    a = agents.new(name="flags", node="flag-node", http_port=flag_port, http_flag=True,
                   isolate_ports=False, config_files=[cfg])
    assert self_config(a)["NodeName"] == "flag-node"
    assert a.port == flag_port  # it answered on the flag's port (wait_ready polled it)


# ---------------------------------------------------------------- bad files


def test_unknown_key_is_fatal_and_named(agents, tmp_path):
    cfg = tmp_path / "typo.json"
    cfg.write_text(json.dumps({"prots": {}}))
    code, err = expect_startup_failure(agents, [cfg])
    assert str(cfg) in err, err
    assert "prots" in err, err


def test_bad_value_is_fatal_and_names_the_key(agents, tmp_path):
    cfg = tmp_path / "badvalue.json"
    cfg.write_text(json.dumps({"ports": {"http": "abc"}}))
    code, err = expect_startup_failure(agents, [cfg])
    assert str(cfg) in err, err
    assert "ports.http" in err, err


def test_bad_value_in_hcl_is_fatal(agents, tmp_path):
    cfg = tmp_path / "badvalue.hcl"
    cfg.write_text('ports {\n  http = "abc"\n}\n')
    code, err = expect_startup_failure(agents, [cfg])
    assert str(cfg) in err, err
    assert "ports.http" in err, err


def test_syntax_error_is_fatal_and_names_the_file(agents, tmp_path):
    cfg = tmp_path / "broken.json"
    cfg.write_text('{"node_name": "x",')
    code, err = expect_startup_failure(agents, [cfg])
    assert str(cfg) in err, err


def test_missing_config_file_is_fatal(agents, tmp_path):
    missing = tmp_path / "does-not-exist.json"
    code, err = expect_startup_failure(agents, [missing])
    assert str(missing) in err, err


def test_known_but_unimplemented_key_warns_once(agents, tmp_path):
    port = free_port()
    cfg = tmp_path / "acl.json"
    cfg.write_text(json.dumps({"ports": ports_block(port), "acl": {"enabled": False}}))
    a = start_with_files(agents, [cfg], http_port=port, node="test-node", name="acl")
    assert self_config(a)["NodeName"] == "test-node"

    def acl_warnings():
        text = ANSI_RE.sub("", a.stdout() + "\n" + a.stderr())
        return [line for line in text.splitlines()
                if re.search(r"\bacl\b", line, re.I) and re.search(r"warn", line, re.I)]

    wait_until(acl_warnings, deadline=5.0, what="a warning naming the `acl` key")
    # Still exactly one after the agent has settled and served a request.
    a.kv_put("poke", "v")
    lines = acl_warnings()
    assert len(lines) == 1, lines


@pytest.mark.parametrize("fmt", ["json", "hcl"])
def test_datacenter_and_node_from_file_visible_in_self(agents, tmp_path, fmt):
    port = free_port()
    if fmt == "json":
        cfg = tmp_path / "n.json"
        cfg.write_text(json.dumps({"ports": ports_block(port), "node_name": "n-json",
                                   "datacenter": "east-1"}))
        node = "n-json"
    else:
        cfg = tmp_path / "n.hcl"
        cfg.write_text(ports_hcl(ports_block(port)) + 'node_name = "n-hcl"\ndatacenter = "east-1"\n')
        node = "n-hcl"
    a = start_with_files(agents, [cfg], http_port=port, name=f"n{fmt}")
    config = self_config(a)
    assert config["NodeName"] == node and config["Datacenter"] == "east-1"
