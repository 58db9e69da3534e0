"""`praetor kv ...` and `praetor version`, checked against the `consul` CLI.

Reference: hashicorp/consul command/kv/{get,put,del,exp,imp}, command/flags/http.go,
command/version (see /work/scratch/consul-facts.md §5). Go's flag package:
flags go before positional arguments; everything after the first positional
is positional (so `kv put k -1` stores "-1").
"""

from __future__ import annotations

import base64
import json
import re

import pytest

from praetor_harness import free_port


def out(p) -> str:
    return p.stdout.decode(errors="replace")


def err(p) -> str:
    return p.stderr.decode(errors="replace")


def show(p) -> str:
    return f"exit={p.returncode}\nstdout={p.stdout!r}\nstderr={p.stderr!r}"


@pytest.fixture
def kv(cli, shared_agent):
    """kv("put", *args) -> `praetor kv put -http-addr=127.0.0.1:<port> *args`."""
    addr = f"127.0.0.1:{shared_agent.port}"

    def run(sub, *args, input=None, env=None):
        return cli("kv", sub, f"-http-addr={addr}", *args, input=input, env=env)
    return run


def raw(agent, key) -> bytes | None:
    r = agent.get("/v1/kv/" + key, params={"raw": ""})
    if r.status_code == 404:
        return None
    assert r.status_code == 200, r.text
    return r.content


# ---------------------------------------------------------------- put / get


def test_put_then_get(kv, shared_agent, prefix):
    key = f"{prefix}/k"
    p = kv("put", key, "hello world")
    assert p.returncode == 0, show(p)
    assert out(p) == f"Success! Data written to: {key}\n"
    assert raw(shared_agent, key) == b"hello world"

    p = kv("get", key)
    assert p.returncode == 0, show(p)
    assert out(p) == "hello world\n"


def test_get_missing_key(kv, prefix):
    key = f"{prefix}/missing"
    p = kv("get", key)
    assert p.returncode == 1, show(p)
    assert err(p) == f"Error! No key exists at: {key}\n"
    assert out(p) == ""


def test_get_strips_leading_slash(kv, shared_agent, prefix):
    key = f"{prefix}/slash"
    shared_agent.kv_put(key, "s")
    p = kv("get", "/" + key)
    assert p.returncode == 0, show(p)
    assert out(p) == "s\n"


def test_put_without_data_is_empty_value(kv, shared_agent, prefix):
    key = f"{prefix}/empty"
    p = kv("put", key)
    assert p.returncode == 0, show(p)
    assert raw(shared_agent, key) == b""
    p = kv("get", key)
    assert p.returncode == 0 and out(p) == "\n", show(p)


def test_put_data_starting_with_dash_is_literal(kv, shared_agent, prefix):
    key = f"{prefix}/neg"
    p = kv("put", key, "-1")
    assert p.returncode == 0, show(p)
    assert raw(shared_agent, key) == b"-1"


def test_put_from_file(kv, shared_agent, prefix, tmp_path):
    key = f"{prefix}/file"
    payload = bytes(range(256)) + b"\n\x00end"
    f = tmp_path / "payload.bin"
    f.write_bytes(payload)
    p = kv("put", key, f"@{f}")
    assert p.returncode == 0, show(p)
    assert out(p) == f"Success! Data written to: {key}\n"
    assert raw(shared_agent, key) == payload


def test_put_from_missing_file_fails(kv, shared_agent, prefix, tmp_path):
    key = f"{prefix}/nofile"
    p = kv("put", key, f"@{tmp_path / 'nope.txt'}")
    assert p.returncode == 1, show(p)
    assert err(p).startswith("Error! Failed to read file: "), show(p)
    assert raw(shared_agent, key) is None


def test_put_from_stdin(kv, shared_agent, prefix):
    key = f"{prefix}/stdin"
    p = kv("put", key, "-", input=b"line one\nline two\n")
    assert p.returncode == 0, show(p)
    assert out(p) == f"Success! Data written to: {key}\n"
    assert raw(shared_agent, key) == b"line one\nline two\n"


def test_put_base64(kv, shared_agent, prefix):
    key = f"{prefix}/b64"
    p = kv("put", "-base64", key, base64.b64encode(b"\x00\x01binary").decode())
    assert p.returncode == 0, show(p)
    assert raw(shared_agent, key) == b"\x00\x01binary"


@pytest.mark.parametrize("flags", ["42", "18446744073709551615"])
def test_put_flags(kv, shared_agent, prefix, flags):
    key = f"{prefix}/flags"
    p = kv("put", f"-flags={flags}", key, "v")
    assert p.returncode == 0, show(p)
    assert shared_agent.kv_entry(key)["Flags"] == int(flags)


def test_get_detailed(kv, shared_agent, prefix):
    key = f"{prefix}/det"
    assert kv("put", "-flags=42", key, "detail").returncode == 0
    e = shared_agent.kv_entry(key)
    p = kv("get", "-detailed", key)
    assert p.returncode == 0, show(p)
    # Go tabwriter(minwidth 0, tabwidth 2, padding 6): labels padded to 11 + 6.
    expected = "".join(f"{label:<17}{value}\n" for label, value in [
        ("CreateIndex", e["CreateIndex"]), ("Flags", 42), ("Key", key), ("LockIndex", 0),
        ("ModifyIndex", e["ModifyIndex"]), ("Session", "-"), ("Value", "detail")])
    assert out(p) == expected


def test_get_detailed_base64(kv, shared_agent, prefix):
    key = f"{prefix}/detb64"
    shared_agent.kv_put(key, b"\xffbin")
    p = kv("get", "-detailed", "-base64", key)
    assert p.returncode == 0, show(p)
    encoded = base64.b64encode(b"\xffbin").decode()
    lines = out(p).splitlines()
    assert lines[-1] == f"{'Value':<17}{encoded}"


def test_get_recurse(kv, shared_agent, prefix):
    for k, v in [("r/b", "2"), ("r/a", "1"), ("r/c/d", "3")]:
        shared_agent.kv_put(f"{prefix}/{k}", v)
    p = kv("get", "-recurse", f"{prefix}/r/")
    assert p.returncode == 0, show(p)
    assert out(p) == f"{prefix}/r/a:1\n{prefix}/r/b:2\n{prefix}/r/c/d:3\n"

    p = kv("get", "-recurse", "-base64", f"{prefix}/r/")
    assert p.returncode == 0, show(p)
    assert out(p).splitlines()[0] == f"{prefix}/r/a:{base64.b64encode(b'1').decode()}"


def test_get_recurse_detailed_blocks(kv, shared_agent, prefix):
    for k in ["rd/a", "rd/b"]:
        shared_agent.kv_put(f"{prefix}/{k}", "v")
    p = kv("get", "-recurse", "-detailed", f"{prefix}/rd/")
    assert p.returncode == 0, show(p)
    blocks = out(p).split("\n\n")
    assert len(blocks) == 2, out(p)
    assert f"{'Key':<17}{prefix}/rd/a" in blocks[0]
    assert f"{'Key':<17}{prefix}/rd/b" in blocks[1]


def test_get_recurse_on_missing_prefix_prints_nothing(kv, prefix):
    p = kv("get", "-recurse", f"{prefix}/none/")
    assert p.returncode == 0, show(p)
    assert out(p) == ""


def test_get_keys(kv, shared_agent, prefix):
    for k in ["kk/a", "kk/b/c", "kk/b/d", "kk/e"]:
        shared_agent.kv_put(f"{prefix}/{k}", "v")
    p = kv("get", "-keys", f"{prefix}/kk/")
    assert p.returncode == 0, show(p)
    # The default separator is "/".
    assert out(p) == f"{prefix}/kk/a\n{prefix}/kk/b/\n{prefix}/kk/e\n"

    p = kv("get", "-keys", "-separator=", f"{prefix}/kk/")
    assert p.returncode == 0, show(p)
    assert out(p).splitlines() == [f"{prefix}/kk/{k}" for k in ["a", "b/c", "b/d", "e"]]


def test_get_keys_on_missing_prefix_prints_nothing(kv, prefix):
    p = kv("get", "-keys", f"{prefix}/none/")
    assert p.returncode == 0, show(p)
    assert out(p) == ""


def test_put_cas(kv, shared_agent, prefix):
    key = f"{prefix}/cas"
    shared_agent.kv_put(key, "v1")
    stale = shared_agent.kv_entry(key)["ModifyIndex"]
    shared_agent.kv_put(key, "v2")
    current = shared_agent.kv_entry(key)["ModifyIndex"]

    p = kv("put", "-cas", f"-modify-index={stale}", key, "v3")
    assert p.returncode == 1, show(p)
    assert err(p) == f"Error! Did not write to {key}: CAS failed\n"
    assert raw(shared_agent, key) == b"v2"

    p = kv("put", "-cas", f"-modify-index={current}", key, "v3")
    assert p.returncode == 0, show(p)
    assert out(p) == f"Success! Data written to: {key}\n"
    assert raw(shared_agent, key) == b"v3"


# ------------------------------------------------------------------- delete


def test_delete(kv, shared_agent, prefix):
    key = f"{prefix}/del"
    shared_agent.kv_put(key, "v")
    p = kv("delete", key)
    assert p.returncode == 0, show(p)
    assert out(p) == f"Success! Deleted key: {key}\n"
    assert raw(shared_agent, key) is None
    # Deleting a key that is not there still succeeds.
    p = kv("delete", key)
    assert p.returncode == 0 and out(p) == f"Success! Deleted key: {key}\n", show(p)


def test_delete_recurse(kv, shared_agent, prefix):
    for k in ["tree/a", "tree/b/c"]:
        shared_agent.kv_put(f"{prefix}/{k}", "v")
    shared_agent.kv_put(f"{prefix}/keep", "v")
    p = kv("delete", "-recurse", f"{prefix}/tree")
    assert p.returncode == 0, show(p)
    assert out(p) == f"Success! Deleted keys with prefix: {prefix}/tree\n"
    r = shared_agent.get(f"/v1/kv/{prefix}/", params={"keys": ""})
    assert r.json() == [f"{prefix}/keep"]


def test_delete_cas(kv, shared_agent, prefix):
    key = f"{prefix}/dcas"
    shared_agent.kv_put(key, "v1")
    stale = shared_agent.kv_entry(key)["ModifyIndex"]
    shared_agent.kv_put(key, "v2")
    current = shared_agent.kv_entry(key)["ModifyIndex"]

    p = kv("delete", "-cas", f"-modify-index={stale}", key)
    assert p.returncode == 1, show(p)
    assert err(p) == f"Error! Did not delete key {key}: CAS failed\n"
    assert raw(shared_agent, key) == b"v2"

    p = kv("delete", "-cas", f"-modify-index={current}", key)
    assert p.returncode == 0, show(p)
    assert out(p) == f"Success! Deleted key: {key}\n"
    assert raw(shared_agent, key) is None


@pytest.mark.parametrize("args,message", [
    (["-cas"], "Cannot delete a key that does not exist. Provide a -modify-index greater than than 0."),
    (["-modify-index=5"], "Cannot specify -modify-index without -cas!"),
    (["-recurse", "-cas", "-modify-index=5"], "Cannot specify both -cas and -recurse!"),
])
def test_delete_flag_conflicts(kv, shared_agent, prefix, args, message):
    key = f"{prefix}/conflict"
    shared_agent.kv_put(key, "v")
    p = kv("delete", *args, key)
    assert p.returncode == 1, show(p)
    assert err(p) == message + "\n"
    assert raw(shared_agent, key) == b"v"


# ------------------------------------------------------------ usage errors


@pytest.mark.parametrize("args,message", [
    (["get"], "Error! Missing KEY argument"),
    (["get", "a", "b"], "Too many arguments (expected 1, got 2)"),
    (["put"], "Error! Missing KEY argument"),
    (["put", "a", "b", "c"], "Error! Too many arguments (expected 1 or 2, got 3)"),
    (["delete"], "Error! Missing KEY argument"),
    (["delete", "a", "b"], "Too many arguments (expected 1, got 2)"),
    (["import"], "Error! Missing DATA argument"),
    (["import", ""], "Error! Empty DATA argument"),
    (["export", "a", "b"], "Too many arguments (expected 1, got 2)"),
])
def test_usage_errors(kv, args, message):
    p = kv(*args)
    assert p.returncode == 1, show(p)
    assert err(p) == message + "\n", show(p)


@pytest.mark.parametrize("sub", ["get", "put", "delete", "export", "import"])
def test_unknown_flag_is_exit_1(cli, sub):
    p = cli("kv", sub, "-no-such-flag", "k")
    assert p.returncode == 1, show(p)
    assert "flag provided but not defined: -no-such-flag" in err(p), show(p)


def test_put_with_leading_slash_is_rejected(kv, shared_agent, prefix):
    p = kv("put", f"/{prefix}/lead", "v")
    assert p.returncode == 1, show(p)
    assert "must not begin with a '/'" in err(p), show(p)
    assert raw(shared_agent, f"{prefix}/lead") is None


def test_unreachable_agent_is_exit_1(cli):
    p = cli("kv", "get", f"-http-addr=127.0.0.1:{free_port()}", "k")
    assert p.returncode == 1, show(p)
    assert err(p).startswith("Error querying Consul agent: "), show(p)


# ----------------------------------------------------------------- address


@pytest.mark.parametrize("form", ["{host}:{port}", "http://{host}:{port}"])
def test_consul_http_addr_env(cli, shared_agent, prefix, form):
    key = f"{prefix}/env"
    env = {"CONSUL_HTTP_ADDR": form.format(host="127.0.0.1", port=shared_agent.port)}
    p = cli("kv", "put", key, "via-env", env=env)
    assert p.returncode == 0, show(p)
    assert raw(shared_agent, key) == b"via-env"
    p = cli("kv", "get", key, env=env)
    assert p.returncode == 0 and out(p) == "via-env\n", show(p)


def test_http_addr_flag_beats_env(cli, shared_agent, prefix):
    key = f"{prefix}/flagwins"
    shared_agent.kv_put(key, "flag")
    env = {"CONSUL_HTTP_ADDR": f"127.0.0.1:{free_port()}"}  # nothing listens there
    p = cli("kv", "get", f"-http-addr=http://127.0.0.1:{shared_agent.port}", key, env=env)
    assert p.returncode == 0 and out(p) == "flag\n", show(p)


# ---------------------------------------------------------- export / import


def test_export_format(kv, shared_agent, prefix):
    entries = [(f"{prefix}/ex/a", b"alpha", 0), (f"{prefix}/ex/b", b"", 7),
               (f"{prefix}/ex/c/d", b"\x00\xff", 2**64 - 1)]
    for k, v, f in entries:
        shared_agent.kv_put(k, v, flags=str(f))
    p = kv("export", f"{prefix}/ex/")
    assert p.returncode == 0, show(p)
    expected = [{"key": k, "flags": f, "value": base64.b64encode(v).decode()} for k, v, f in entries]
    assert json.loads(out(p)) == expected
    # Go's json.MarshalIndent(entries, "", "\t") plus the UI's newline.
    assert out(p) == json.dumps(expected, indent="\t") + "\n"


def test_export_of_nothing_is_empty_list(kv, prefix):
    p = kv("export", f"{prefix}/nothing/")
    assert p.returncode == 0, show(p)
    assert json.loads(out(p)) == []


def test_export_import_round_trip_into_second_agent(kv, cli, shared_agent, agents, prefix, tmp_path):
    source = {f"{prefix}/rt/a": (b"one", 0), f"{prefix}/rt/b/c": (b"\x00two\n", 9),
              f"{prefix}/rt/empty": (b"", 0)}
    for k, (v, f) in source.items():
        shared_agent.kv_put(k, v, flags=str(f))
    p = kv("export", f"{prefix}/rt/")
    assert p.returncode == 0, show(p)
    dump = tmp_path / "export.json"
    dump.write_bytes(p.stdout)

    target = agents.new(name="target")
    p = cli("kv", "import", f"-http-addr=127.0.0.1:{target.port}", f"@{dump}")
    assert p.returncode == 0, show(p)
    assert out(p) == "".join(f"Imported: {k}\n" for k in sorted(source))
    for k, (v, f) in source.items():
        e = target.kv_entry(k)
        assert e is not None, k
        assert base64.b64decode(e["Value"] or "") == v
        assert e["Flags"] == f
    # The target holds exactly what was exported.
    r = target.get("/v1/kv/", params={"keys": ""})
    assert r.json() == sorted(source)


def test_import_from_stdin(kv, shared_agent, prefix):
    data = json.dumps([{"key": f"{prefix}/in/x", "flags": 3, "value": base64.b64encode(b"X").decode()}])
    p = kv("import", "-", input=data)
    assert p.returncode == 0, show(p)
    assert out(p) == f"Imported: {prefix}/in/x\n"
    e = shared_agent.kv_entry(f"{prefix}/in/x")
    assert e["Flags"] == 3 and base64.b64decode(e["Value"]) == b"X"


def test_import_inline_argument(kv, shared_agent, prefix):
    data = json.dumps([{"key": f"{prefix}/inl", "flags": 0, "value": base64.b64encode(b"I").decode()}])
    p = kv("import", data)
    assert p.returncode == 0, show(p)
    assert raw(shared_agent, f"{prefix}/inl") == b"I"


def test_import_bad_json(kv):
    p = kv("import", "-", input=b"{not json")
    assert p.returncode == 1, show(p)
    assert err(p).startswith("Cannot unmarshal data: "), show(p)


def test_import_bad_base64_stops_at_that_entry(kv, shared_agent, prefix):
    data = json.dumps([
        {"key": f"{prefix}/bb/first", "flags": 0, "value": base64.b64encode(b"ok").decode()},
        {"key": f"{prefix}/bb/second", "flags": 0, "value": "!!!"},
        {"key": f"{prefix}/bb/third", "flags": 0, "value": base64.b64encode(b"never").decode()},
    ])
    p = kv("import", "-", input=data)
    assert p.returncode == 1, show(p)
    assert out(p) == f"Imported: {prefix}/bb/first\n"
    assert err(p).startswith(f"Error base 64 decoding value for key {prefix}/bb/second: "), show(p)
    assert raw(shared_agent, f"{prefix}/bb/first") == b"ok"
    assert raw(shared_agent, f"{prefix}/bb/third") is None


# ------------------------------------------------------------------ version


def test_version(cli):
    p = cli("version")
    assert p.returncode == 0, show(p)
    text = out(p)
    assert text.strip(), show(p)
    first = text.splitlines()[0]
    # Consul prints `Consul v1.15.2`; praetor prints its own name the same way.
    assert re.match(r"^(Praetor|Consul) v\d+\.\d+\.\d+", first), first
    assert "praetor" in text.lower(), text


def test_version_json(cli):
    p = cli("version", "-format=json")
    assert p.returncode == 0, show(p)
    body = json.loads(out(p))
    assert re.match(r"^\d+\.\d+\.\d+", body["Version"]), body
