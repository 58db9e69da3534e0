"""Gossip encryption keys, as Consul manages them: `praetor keygen` makes
a key; `/v1/operator/keyring` and `praetor keyring` list, install, use and
remove keys across a real LAN pool (one server, two clients) with Consul's
JSON, text and errors; agents with the new key join and agents with a
wrong one stay apart; the keyring file carries the keys across a restart."""

from __future__ import annotations

import base64
import json
import signal

import pytest

from praetor_harness import wait_until

STATUS_ALIVE = 1
DEADLINE = 30.0


def _keygen(cli) -> str:
    out = cli("keygen")
    assert out.returncode == 0, out.stderr
    return out.stdout.decode().strip()


def _lan_addr(agent) -> str:
    return f"127.0.0.1:{agent.isolation['ports']['serf_lan']}"


def _data_dir(agents, name: str):
    return agents.base / name / "data"


def _agent(agents, name: str, *, server=False, key=None, join=None):
    conf = agents.base / f"{name}.json"
    conf.parent.mkdir(parents=True, exist_ok=True)
    conf.write_text(json.dumps({"retry_interval": "1s"}))
    args = [f"-data-dir={_data_dir(agents, name)}", "-bind=127.0.0.1"]
    if server:
        args += ["-server", "-bootstrap-expect=1"]
    if key:
        args += ["-encrypt", key]
    if join:
        args.append(f"-retry-join={join}")
    return agents.new(name=name, node=name, dev=False, isolate_ports=True, start=False,
                      config_files=[conf], extra_args=args)


def _alive(agent) -> set:
    r = agent.get("/v1/agent/members", timeout=5)
    assert r.status_code == 200, r.text
    return {m["Name"] for m in r.json() if m["Status"] == STATUS_ALIVE}


def _names(agent) -> set:
    return {m["Name"] for m in agent.get("/v1/agent/members", timeout=5).json()}


def _listing(agent) -> dict:
    r = agent.get("/v1/operator/keyring", timeout=15)
    assert r.status_code == 200, r.text
    pools = r.json()
    assert len(pools) == 1, pools
    return pools[0]


def _keyring_file(agents, name: str) -> list:
    return json.loads((_data_dir(agents, name) / "serf" / "local.keyring").read_text())


@pytest.fixture
def pool(agents, cli):
    """One server and two clients, all started with `-encrypt K1`."""
    k1 = _keygen(cli)
    s1 = _agent(agents, "s1", server=True, key=k1)
    s1.spawn()
    s1.wait_ready(DEADLINE)
    clients = [_agent(agents, n, key=k1, join=_lan_addr(s1)) for n in ("c1", "c2")]
    for c in clients:
        c.spawn()
    nodes = [s1, *clients]
    for a in nodes:
        wait_until(lambda a=a: _alive(a) == {"s1", "c1", "c2"}, DEADLINE,
                   what=f"{a.name} to see all three alive")
    return k1, nodes


def test_keygen_prints_a_fresh_32_byte_key(cli):
    a, b = _keygen(cli), _keygen(cli)
    assert len(base64.b64decode(a, validate=True)) == 32
    assert len(a) == 44 and a != b


def test_keys_rotate_across_the_pool(pool, agents, cli):
    k1, nodes = pool
    s1, c1, c2 = nodes
    k2 = _keygen(cli)

    # Every member holds K1 and uses it.
    assert _listing(c1) == {"WAN": False, "Datacenter": "dc1", "Segment": "",
                            "Keys": {k1: 3}, "PrimaryKeys": {k1: 3}, "NumNodes": 3}

    # Install K2 through the CLI of a client: every member now holds both.
    out = cli("keyring", f"-http-addr=127.0.0.1:{c1.port}", "-install", k2)
    assert out.returncode == 0, out.stderr
    assert out.stdout.decode() == "==> Installing new gossip encryption key...\n"
    for a in nodes:
        listing = _listing(a)
        assert listing["Keys"] == {k1: 3, k2: 3}, (a.name, listing)
        assert listing["PrimaryKeys"] == {k1: 3}
    out = cli("keyring", f"-http-addr=127.0.0.1:{s1.port}", "-list")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.decode().splitlines()
    assert lines[:3] == ["==> Gathering installed encryption keys...", "", "dc1 (LAN):"]
    assert sorted(lines[3:]) == sorted([f"  {k1} [3/3]", f"  {k2} [3/3]"])

    # Use K2 (over HTTP, on the other client): it is every member's primary.
    r = c2.put("/v1/operator/keyring", json={"Key": k2}, timeout=15)
    assert r.status_code == 200 and r.text == "", r.text
    for a in nodes:
        assert _listing(a)["PrimaryKeys"] == {k2: 3}
    out = cli("keyring", f"-http-addr=127.0.0.1:{c2.port}", "-list-primary")
    assert out.returncode == 0, out.stderr
    assert out.stdout.decode().splitlines() == [
        "==> Gathering installed primary encryption keys...", "", "dc1 (LAN):",
        f"  {k2} [3/3]"]

    # Remove K1 (on the server): gone everywhere, and from the keyring files.
    r = s1.delete("/v1/operator/keyring", json={"Key": k1}, timeout=15)
    assert r.status_code == 200, r.text
    for a in nodes:
        assert _listing(a)["Keys"] == {k2: 3}
    for a in nodes:
        wait_until(lambda a=a: _keyring_file(agents, a.name) == [k2], DEADLINE,
                   what=f"{a.name}'s keyring file to hold K2 alone")

    # A wrong key keeps an agent out; K2 alone lets one in.
    k3 = _keygen(cli)
    stranger = _agent(agents, "stranger", key=k3, join=_lan_addr(s1))
    stranger.spawn()
    c3 = _agent(agents, "c3", key=k2, join=_lan_addr(s1))
    c3.spawn()
    everyone = {"s1", "c1", "c2", "c3"}
    for a in (*nodes, c3):
        wait_until(lambda a=a: _alive(a) == everyone, DEADLINE,
                   what=f"{a.name} to see c3 joined with K2")
    wait_until(lambda: stranger.logs().count("join failed") >= 2, DEADLINE,
               what="the stranger to fail joining twice")
    assert _names(stranger) == {"stranger"}
    for a in (*nodes, c3):
        assert "stranger" not in _names(a)
    assert _listing(c3)["Keys"] == {k2: 4}

    # c1 restarts without -encrypt: its keyring file holds K2, and it
    # rejoins the pool with it.
    assert c1.stop(signal.SIGTERM) == 0, c1.logs()
    i = c1.args.index("-encrypt")
    del c1.args[i:i + 2]
    c1.stopped_by_test = False
    c1.spawn()
    for a in (s1, c1, c2):
        wait_until(lambda a=a: _alive(a) == everyone, DEADLINE,
                   what=f"{a.name} to see c1 back in the pool")
    assert _keyring_file(agents, "c1") == [k2]
    assert _listing(c1) == {"WAN": False, "Datacenter": "dc1", "Segment": "",
                            "Keys": {k2: 4}, "PrimaryKeys": {k2: 4}, "NumNodes": 4}


def test_keyring_errors_over_http_and_cli(pool, cli):
    k1, nodes = pool
    s1, c1, _ = nodes
    addr = f"-http-addr=127.0.0.1:{c1.port}"

    # The primary key cannot be removed: every member says so.
    r = c1.delete("/v1/operator/keyring", json={"Key": k1}, timeout=15)
    assert r.status_code == 500
    assert r.text == ("4 errors occurred:\n\t* dc1 (LAN) error: 3/3 nodes reported failure\n"
                      "\t* c1: Removing the primary key is not allowed\n"
                      "\t* c2: Removing the primary key is not allowed\n"
                      "\t* s1: Removing the primary key is not allowed\n\n")
    out = cli("keyring", addr, "-remove", k1)
    assert out.returncode == 1
    assert out.stdout.decode() == "==> Removing gossip encryption key...\n"
    assert out.stderr.decode() == f"error: Unexpected response code: 500 ({r.text})\n"

    # A key that was never installed cannot be used.
    out = cli("keyring", addr, "-use", _keygen(cli))
    assert out.returncode == 1
    assert "3/3 nodes reported failure" in out.stderr.decode()
    assert out.stderr.decode().count("Requested key is not in the keyring") == 3

    # Not base64 at all: refused before any member is asked.
    r = s1.http("POST", "/v1/operator/keyring", json={"Key": "not!base64"})
    assert (r.status_code, r.text) == (
        500, "1 error occurred:\n\t* dc1 (LAN) error: illegal base64 data at input byte 3\n\n")
    # Base64, but no AES key length: every member refuses it.
    short = base64.b64encode(b"0123456789").decode()
    r = s1.http("POST", "/v1/operator/keyring", json={"Key": short}, timeout=15)
    assert r.status_code == 500
    assert r.text.count("key size must be 16, 24 or 32 bytes") == 3
    assert _listing(s1)["Keys"] == {k1: 3}

    # Request errors.
    r = s1.http("POST", "/v1/operator/keyring")
    assert (r.status_code, r.text) == (400, "Request decode failed: EOF")
    r = s1.http("PATCH", "/v1/operator/keyring")
    assert r.status_code == 405
    r = s1.get("/v1/operator/keyring?relay-factor=9")
    assert (r.status_code, r.text) == (
        400, "Invalid relay-factor: Relay factor must be in range: [0, 5]")
    r = s1.put("/v1/operator/keyring?local-only=true", json={"Key": k1})
    assert (r.status_code, r.text) == (
        400, "Invalid use of local-only: local-only can only be set for list requests")
    assert s1.get("/v1/operator/keyring?local-only=true&relay-factor=1").status_code == 200

    # CLI usage errors.
    out = cli("keyring", addr)
    assert out.returncode == 1 and "Usage: praetor keyring" in out.stderr.decode()
    out = cli("keyring", addr, "-list", "-install", k1)
    assert (out.returncode, out.stderr.decode()) == (1, "Only a single action is allowed\n")
    out = cli("keyring", addr, "-list", "-relay-factor", "6")
    assert (out.returncode, out.stderr.decode()) == (
        1, "Error parsing relay factor: Relay factor must be in range: [0, 5]\n")
    out = cli("keyring", addr, "-install", k1, "-local-only")
    assert out.returncode == 1
    assert out.stderr.decode() == ("Error validating local-only: local-only can only be set "
                                   "for list requests\n")


def test_keyring_without_encryption(agent, cli):
    """A pool without gossip encryption has no keyring: each member says so."""
    name = "test-node"
    r = agent.get("/v1/operator/keyring", timeout=15)
    assert (r.status_code, r.text) == (
        500, "2 errors occurred:\n\t* dc1 (LAN) error: 1/1 nodes reported failure\n"
             f"\t* {name}: Keyring is empty (encryption not enabled)\n\n")
    r = agent.http("POST", "/v1/operator/keyring", json={"Key": _keygen(cli)}, timeout=15)
    assert r.status_code == 500
    assert f"{name}: No keyring to modify (encryption not enabled)" in r.text
    out = cli("keyring", f"-http-addr=127.0.0.1:{agent.port}", "-list")
    assert out.returncode == 1
    assert out.stdout.decode() == "==> Gathering installed encryption keys...\n"
    assert out.stderr.decode().startswith("error: Unexpected response code: 500 (2 errors")
