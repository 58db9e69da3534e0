"""`praetor catalog|services|maint|event|members|lock|watch`, checked against
the `consul` CLI's output formats and exit codes.

Reference: hashicorp/consul command/catalog/list/{dc,nodes,services},
command/catalog/helpers_ce.go, command/services/{register,deregister},
command/maint, command/event, command/members, command/lock (with api/lock.go),
command/watch (with api/watch/{funcs,plan}.go). Tables are ryanuber/columnize
(two spaces between columns, last column unpadded).
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time

import pytest

from praetor_harness import clean_env, wait_until


def out(p) -> str:
    return p.stdout.decode(errors="replace")


def err(p) -> str:
    return p.stderr.decode(errors="replace")


def show(p) -> str:
    return f"exit={p.returncode}\nstdout={p.stdout!r}\nstderr={p.stderr!r}"


def columnize(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows if i < len(r)) for i in range(max(map(len, rows)))]
    lines = []
    for row in rows:
        cells = [c.ljust(widths[i]) + "  " if i + 1 < len(row) else c for i, c in enumerate(row)]
        lines.append("".join(cells))
    return "\n".join(lines)


@pytest.fixture
def run(cli, agent):
    """run(*args) -> `praetor <args>` against the test's agent (via CONSUL_HTTP_ADDR)."""
    env = {"CONSUL_HTTP_ADDR": f"127.0.0.1:{agent.port}"}

    def go(*args, input=None, timeout=30.0, cwd=None):
        return cli(*args, env=env, input=input, timeout=timeout, cwd=cwd)
    return go


def spawn(praetor_bin, agent, args, tmp_path, name):
    """Starts `praetor <args>` in the background; stdout/stderr go to files."""
    o = open(tmp_path / f"{name}.out", "wb")
    e = open(tmp_path / f"{name}.err", "wb")
    env = clean_env({"CONSUL_HTTP_ADDR": f"127.0.0.1:{agent.port}"})
    proc = subprocess.Popen([str(praetor_bin), *args], stdin=subprocess.DEVNULL, stdout=o,
                            stderr=e, env=env, cwd=tmp_path)
    o.close()
    e.close()
    return proc


def register(agent, **body):
    r = agent.put("/v1/agent/service/register", json=body)
    assert r.status_code == 200, r.text


def wait_catalog_service(agent, name):
    wait_until(lambda: agent.get(f"/v1/catalog/service/{name}").json(), 10,
               what=f"{name} in the catalog")


# ------------------------------------------------------------------ catalog


def test_catalog_datacenters(run):
    p = run("catalog", "datacenters")
    assert p.returncode == 0, show(p)
    assert out(p) == "dc1\n"


def test_catalog_datacenters_takes_no_arguments(run):
    p = run("catalog", "datacenters", "extra")
    assert p.returncode == 1, show(p)
    assert err(p) == "Too many arguments (expected 0, got 1)\n"


def test_catalog_nodes_table(run, agent):
    node = agent.get("/v1/catalog/nodes").json()[0]
    p = run("catalog", "nodes")
    assert p.returncode == 0, show(p)
    short = node["ID"].split("-")[0]
    assert out(p) == columnize([["Node", "ID", "Address", "DC"],
                                ["test-node", short, node["Address"], "dc1"]]) + "\n"


def test_catalog_nodes_detailed(run, agent):
    node = agent.get("/v1/catalog/nodes").json()[0]
    p = run("catalog", "nodes", "-detailed")
    assert p.returncode == 0, show(p)
    tagged = ", ".join(f"{k}={v}" for k, v in sorted(node["TaggedAddresses"].items()))
    meta = ", ".join(f"{k}={v}" for k, v in sorted((node["Meta"] or {}).items()))
    assert out(p) == columnize([["Node", "ID", "Address", "DC", "TaggedAddresses", "Meta"],
                                ["test-node", node["ID"], node["Address"], "dc1", tagged,
                                 meta]]) + "\n"


def test_catalog_nodes_by_service(run, agent):
    register(agent, Name="web", Port=80)
    wait_catalog_service(agent, "web")
    p = run("catalog", "nodes", "-service=web")
    assert p.returncode == 0, show(p)
    assert out(p).splitlines()[1].startswith("test-node  ")
    p = run("catalog", "nodes", "-service", "nope")
    assert p.returncode == 0, show(p)
    assert out(p) == ""
    assert err(p) == "No nodes match the given query - try expanding your search.\n"


def test_catalog_nodes_node_meta(run):
    p = run("catalog", "nodes", "-node-meta", "no=such")
    assert p.returncode == 0, show(p)
    assert err(p) == "No nodes match the given query - try expanding your search.\n"
    p = run("catalog", "nodes", "-node-meta", "novalue")
    assert p.returncode == 1, show(p)
    assert "Missing \"=\" value in argument: novalue" in err(p)


def test_catalog_services(run, agent):
    register(agent, Name="web", Tags=["b", "a"])
    register(agent, Name="db", ID="db1")
    wait_catalog_service(agent, "db")
    wait_catalog_service(agent, "web")
    p = run("catalog", "services")
    assert p.returncode == 0, show(p)
    assert out(p) == "consul\ndb\nweb\n"

    p = run("catalog", "services", "-tags")
    assert p.returncode == 0, show(p)
    # Go's tabwriter (padding 6) and a trim of the whole text.
    assert out(p) == "consul      \ndb          \nweb         a,b\n"

    p = run("catalog", "services", "-node=test-node")
    assert p.returncode == 0, show(p)
    assert out(p) == "consul\ndb\nweb\n"

    p = run("catalog", "services", "-node=nobody")
    assert p.returncode == 0, show(p)
    assert err(p) == "No services match the given query - try expanding your search.\n"


def test_catalog_unknown_flag(run):
    p = run("catalog", "nodes", "-x")
    assert p.returncode == 1, show(p)
    assert err(p).startswith("flag provided but not defined: -x\n")


# ----------------------------------------------------------------- services


def test_services_register_from_flags(run, agent):
    p = run("services", "register", "-name=web", "-id=web1", "-port=8080",
            "-address=10.0.0.9", "-tag", "a", "-tag", "b", "-meta", "k=v")
    assert p.returncode == 0, show(p)
    assert out(p) == "Registered service: web\n"
    svc = agent.get("/v1/agent/service/web1").json()
    assert svc["Service"] == "web" and svc["Port"] == 8080
    assert svc["Address"] == "10.0.0.9"
    assert svc["Tags"] == ["a", "b"] and svc["Meta"] == {"k": "v"}

    p = run("services", "deregister", "-id=web1")
    assert p.returncode == 0, show(p)
    assert out(p) == "Deregistered service: web1\n"
    assert agent.get("/v1/agent/service/web1").status_code == 404


def test_services_register_from_files(run, agent, tmp_path):
    hcl = tmp_path / "db.hcl"
    hcl.write_text('service {\n  name = "db"\n  id = "db1"\n  port = 5432\n'
                   '  tags = ["primary"]\n}\n')
    js = tmp_path / "api.json"
    js.write_text(json.dumps({"services": [{"name": "api", "port": 81},
                                           {"Name": "api2", "ID": "api2-1"}]}))
    p = run("services", "register", "-tag=extra", str(hcl))
    assert p.returncode == 0, show(p)
    assert out(p) == "Registered service: db\n"
    db = agent.get("/v1/agent/service/db1").json()
    assert db["Port"] == 5432 and db["Tags"] == ["primary", "extra"]

    p = run("services", "register", str(js))
    assert p.returncode == 0, show(p)
    assert out(p) == "Registered service: api\nRegistered service: api2\n"
    assert set(agent.get("/v1/agent/services").json()) == {"db1", "api", "api2-1"}

    p = run("services", "deregister", str(hcl), str(js))
    assert p.returncode == 0, show(p)
    assert out(p) == ("Deregistered service: db1\nDeregistered service: api\n"
                      "Deregistered service: api2-1\n")
    assert agent.get("/v1/agent/services").json() == {}


def test_services_register_errors(run, tmp_path):
    p = run("services", "register")
    assert p.returncode == 1, show(p)
    assert err(p) == "Service registration requires at least one argument or flags.\n"

    f = tmp_path / "s.json"
    f.write_text('{"service": {"name": "x"}}')
    p = run("services", "register", "-name=web", str(f))
    assert p.returncode == 1, show(p)
    assert err(p) == "Service registration requires arguments or -id, not both.\n"

    bad = tmp_path / "bad.json"
    bad.write_text("{")
    p = run("services", "register", str(bad))
    assert p.returncode == 1, show(p)
    assert err(p).startswith("Error: ") and "bad.json" in err(p)

    p = run("services", "register", str(tmp_path / "missing.json"))
    assert p.returncode == 1, show(p)
    assert err(p).startswith("Error: ")

    p = run("services", "register", "-port=abc", "-name=x")
    assert p.returncode == 1, show(p)
    assert err(p) == 'invalid value "abc" for flag -port: parse error\n'

    p = run("services", "register", "-bogus")
    assert p.returncode == 1, show(p)
    assert err(p).startswith("flag provided but not defined: -bogus\n")


def test_services_deregister_errors(run, tmp_path):
    p = run("services", "deregister")
    assert p.returncode == 1, show(p)
    assert err(p) == "Service deregistration requires at least one argument or -id.\n"
    f = tmp_path / "s.json"
    f.write_text('{"service": {"name": "x"}}')
    p = run("services", "deregister", "-id=x", str(f))
    assert p.returncode == 1, show(p)
    assert err(p) == "Service deregistration requires arguments or -id, not both.\n"


# -------------------------------------------------------------------- maint


def test_maint_node_and_service(run, agent):
    register(agent, Name="web", ID="web1")
    p = run("maint")
    assert p.returncode == 0, show(p)
    assert out(p) == ""

    p = run("maint", "-enable", "-reason", "upgrading")
    assert p.returncode == 0, show(p)
    assert out(p) == "Node maintenance is now enabled\n"
    p = run("maint", "-enable", "-service=web1")
    assert p.returncode == 0, show(p)
    assert out(p) == 'Service maintenance is now enabled for "web1"\n'

    p = run("maint")
    assert p.returncode == 0, show(p)
    assert out(p) == (
        "Node:\n  Name:   test-node\n  Reason: upgrading\n\n"
        "Service:\n  ID:     web1\n  Reason: Maintenance mode is enabled for this service, "
        "but no reason was provided. This is a default message.\n\n")

    p = run("maint", "-disable")
    assert p.returncode == 0, show(p)
    assert out(p) == "Node maintenance is now disabled\n"
    p = run("maint", "-disable", "-service", "web1")
    assert p.returncode == 0, show(p)
    assert out(p) == 'Service maintenance is now disabled for "web1"\n'
    assert run("maint").stdout == b""


@pytest.mark.parametrize("args,message", [
    (["-enable", "-disable"], "Only one of -enable or -disable may be provided"),
    (["-reason", "x"], "Reason may only be provided with -enable"),
    (["-service", "web"], "Service requires either -enable or -disable"),
])
def test_maint_flag_errors(run, args, message):
    p = run("maint", *args)
    assert p.returncode == 1, show(p)
    assert err(p) == message + "\n"


def test_maint_unknown_service(run):
    p = run("maint", "-enable", "-service=nope")
    assert p.returncode == 1, show(p)
    assert err(p).startswith("Error enabling service maintenance: Unexpected response code: 404")


# -------------------------------------------------------------------- event


def test_event_fire(run, agent):
    p = run("event", "-name=deploy", "v1.2")
    assert p.returncode == 0, show(p)
    m = re.fullmatch(r"Event ID: ([0-9a-f-]{36})\n", out(p))
    assert m, show(p)
    events = agent.get("/v1/event/list", params={"name": "deploy"}).json()
    assert [e["ID"] for e in events] == [m.group(1)]
    assert events[0]["Payload"] == "djEuMg=="


@pytest.mark.parametrize("args,first_line", [
    ([], "Event name must be specified"),
    (["-name=x", "-tag=a"], "Cannot provide tag filter without service filter."),
    (["-name=x", "a", "b"], "Too many command line arguments."),
    (["-name=x", "-node=("], "Failed to compile node filter regexp: "),
])
def test_event_errors(run, args, first_line):
    p = run("event", *args)
    assert p.returncode == 1, show(p)
    assert err(p).startswith(first_line), show(p)


# ------------------------------------------------------------------ members


def test_members(run, agent):
    member = agent.get("/v1/agent/self").json()["Member"]
    p = run("members")
    assert p.returncode == 0, show(p)
    addr = f"{member['Addr']}:{member['Port']}"
    build = member["Tags"]["build"].split(":")[0]
    assert out(p) == columnize([
        ["Node", "Address", "Status", "Type", "Build", "Protocol", "DC", "Partition", "Segment"],
        ["test-node", addr, "alive", "server", build, member["Tags"]["vsn"], "dc1", "default",
         "<all>"]]) + "\n"

    p = run("members", "-detailed")
    assert p.returncode == 0, show(p)
    lines = out(p).splitlines()
    assert lines[0].split() == ["Node", "Address", "Status", "Tags"]
    tags = lines[1].split()[3].split(",")
    assert "ap=default" in tags and "role=consul" in tags and "segment=<all>" in tags
    assert tags == sorted(tags)

    p = run("members", "-status=failed")
    assert p.returncode == 2, show(p)
    assert out(p) == ""


# --------------------------------------------------------------------- lock


def test_lock_runs_child_and_cleans_up(run, agent):
    p = run("lock", "-verbose", "app/leader", "echo held=$CONSUL_LOCK_HELD")
    assert p.returncode == 0, show(p)
    assert out(p) == ("Setting up lock at path: app/leader/.lock\n"
                      "Attempting lock acquisition\nStarting handler\nheld=true\n"
                      "Child terminated, releasing lock\nCleanup succeeded\n")
    assert agent.kv_entry("app/leader/.lock") is None
    assert agent.get("/v1/session/list").json() == []


def test_lock_child_exit_code(run):
    p = run("lock", "app/l", "exit 3")
    assert p.returncode == 0, show(p)
    assert err(p) == "Error running handler: exit status 3\n"
    p = run("lock", "-child-exit-code", "app/l", "exit 3")
    assert p.returncode == 2, show(p)


@pytest.mark.parametrize("args,message", [
    ([], "Key prefix and child command must be specified"),
    (["prefix"], "Key prefix and child command must be specified"),
    (["-n=0", "p", "true"], "Lock holder limit must be positive"),
    (["-timeout=-1s", "p", "true"], "Timeout must be positive"),
    (["-monitor-retry=-1", "p", "true"], "Number for 'monitor-retry' must be >= 0"),
    (["-x", "p", "true"], "flag provided but not defined: -x"),
])
def test_lock_errors(run, args, message):
    p = run("lock", *args)
    assert p.returncode == 1, show(p)
    assert err(p).splitlines()[0] == message


def test_lock_conflicting_key(run, agent):
    agent.kv_put("app/c/.lock", "not a lock")
    p = run("lock", "app/c", "true")
    assert p.returncode == 1, show(p)
    assert err(p) == "Lock acquisition failed: Existing key does not match lock use\n"


def test_lock_timeout(run, agent, praetor_bin, tmp_path):
    first = spawn(praetor_bin, agent, ["lock", "app/t", f"touch {tmp_path}/held; sleep 30"],
                  tmp_path, "first")
    try:
        wait_until(lambda: (tmp_path / "held").exists(), 10, what="first lock's child")
        t0 = time.monotonic()
        p = run("lock", "-timeout=1s", "app/t", "echo never")
        assert p.returncode == 1, show(p)
        assert err(p) == "Shutdown triggered or timeout during lock acquisition\n"
        assert out(p) == ""
        assert 0.9 < time.monotonic() - t0 < 10
    finally:
        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=15) == 0


def test_lock_mutual_exclusion(agent, praetor_bin, tmp_path):
    script = tmp_path / "child.sh"
    script.write_text('echo start >> "$1"; touch "$2"; while [ ! -e "$3" ]; do sleep 0.05; done; '
                      'echo end >> "$1"\n')
    log = tmp_path / "log"
    a = spawn(praetor_bin, agent, ["lock", "app/mx", f"sh {script} {log} {tmp_path}/a-in "
                                   f"{tmp_path}/a-go"], tmp_path, "a")
    try:
        wait_until(lambda: (tmp_path / "a-in").exists(), 10, what="first child running")
        b = spawn(praetor_bin, agent, ["lock", "app/mx", f"sh {script} {log} {tmp_path}/b-in "
                                       f"{tmp_path}/b-go"], tmp_path, "b")
        # The second waits while the first holds the lock.
        with pytest.raises(AssertionError):
            wait_until(lambda: (tmp_path / "b-in").exists(), 1.0, what="second child (must not start)")
        (tmp_path / "a-go").touch()
        assert a.wait(timeout=15) == 0
        wait_until(lambda: (tmp_path / "b-in").exists(), 20, what="second child after release")
        (tmp_path / "b-go").touch()
        assert b.wait(timeout=15) == 0
        assert log.read_text() == "start\nend\nstart\nend\n"
        assert agent.kv_entry("app/mx/.lock") is None
    finally:
        for proc in (a, locals().get("b")):
            if proc is not None and proc.poll() is None:
                proc.kill()


def test_lock_lost_kills_child(agent, praetor_bin, tmp_path):
    proc = spawn(praetor_bin, agent, ["lock", "-verbose", "app/lost",
                                      f"echo $$ > {tmp_path}/pid; sleep 30; touch {tmp_path}/done"],
                 tmp_path, "lost")
    try:
        wait_until(lambda: (tmp_path / "pid").exists() and (tmp_path / "pid").read_text(), 10,
                   what="child running")
        entry = agent.kv_entry("app/lost/.lock")
        assert entry and entry["Session"]
        assert entry["Flags"] == 0x2ddccbc058a50c18
        r = agent.put(f"/v1/session/destroy/{entry['Session']}")
        assert r.status_code == 200
        assert proc.wait(timeout=15) == 0
        text = (tmp_path / "lost.out").read_text()
        assert "Lock lost, killing child\n" in text
        assert "Child terminated\n" in text
        assert not (tmp_path / "done").exists()
    finally:
        if proc.poll() is None:
            proc.kill()


# -------------------------------------------------------------------- watch


def test_watch_key_without_handler_prints_once(run, agent):
    agent.kv_put("app/w", "hello")
    p = run("watch", "-type=key", "-key=app/w")
    assert p.returncode == 0, show(p)
    e = agent.kv_entry("app/w")
    assert out(p) == (
        "{\n"
        '    "Key": "app/w",\n'
        f'    "CreateIndex": {e["CreateIndex"]},\n'
        f'    "ModifyIndex": {e["ModifyIndex"]},\n'
        '    "LockIndex": 0,\n'
        '    "Flags": 0,\n'
        '    "Value": "aGVsbG8=",\n'
        '    "Session": ""\n'
        "}\n")
    p = run("watch", "-type=key", "-key=app/missing")
    assert p.returncode == 0, show(p)
    assert out(p) == "null\n"


def test_watch_services_without_handler(run):
    p = run("watch", "-type=services")
    assert p.returncode == 0, show(p)
    assert json.loads(out(p)) == {"consul": []}


def test_watch_handler_runs_on_each_change(agent, praetor_bin, tmp_path):
    log = tmp_path / "seen"
    proc = spawn(praetor_bin, agent, ["watch", "-type=key", "-key=app/h",
                                      f'cat >> {log}; echo "idx=$CONSUL_INDEX" >> {log}'],
                 tmp_path, "watch")
    try:
        wait_until(lambda: log.exists() and "idx=" in log.read_text(), 10, what="first fire")
        agent.kv_put("app/h", "v1")
        wait_until(lambda: log.read_text().count("idx=") == 2, 10, what="second fire")
        agent.kv_put("app/h", "v1")  # same value, new index: no fire
        agent.kv_put("app/other", "x")
        agent.kv_put("app/h", "v2")
        wait_until(lambda: log.read_text().count("idx=") == 3, 10, what="third fire")
        time.sleep(0.3)
        lines = log.read_text().splitlines()
        assert lines[0] == "null"
        assert json.loads(lines[2])["Value"] == "djE="
        assert json.loads(lines[4])["Value"] == "djI="
        assert lines[5] == f"idx={agent.kv_entry('app/h')['ModifyIndex']}"
        assert len(lines) == 6
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0


def test_watch_failing_handler_exits_1(run, agent):
    p = run("watch", "-type=nodes", "exit 4")
    assert p.returncode == 1, show(p)
    assert err(p) == "Error executing handler: exit status 4\n"


@pytest.mark.parametrize("args,first_line", [
    ([], "Watch type must be specified"),
    (["-type=bogus"], "Unsupported watch type: bogus"),
    (["-type=key"], "Must specify a single key to watch"),
    (["-type=keyprefix"], "Must specify a single prefix to watch"),
    (["-type=service"], "Must specify a single service to watch"),
    (["-type=checks", "-service=a", "-state=any"], "Cannot specify service and state"),
    (["-type=nodes", "-key=x"], "Invalid parameters: [key]"),
    (["-type=service", "-service=a", "-passingonly=maybe"],
     'Failed to parse passingonly flag: strconv.ParseBool: parsing "maybe": invalid syntax'),
    (["-nope"], "flag provided but not defined: -nope"),
])
def test_watch_errors(run, args, first_line):
    p = run("watch", *args)
    assert p.returncode == 1, show(p)
    assert err(p).splitlines()[0] == first_line
