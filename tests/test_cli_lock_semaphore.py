"""`praetor lock -n N` (N > 1): Consul's semaphore, checked against
hashicorp/consul api/semaphore.go and command/lock/lock.go.

Each contender holds `<prefix>/<session>` (flags SEMAPHORE_FLAG) with a
session of the `delete` behaviour; `<prefix>/.lock` holds
`{"Limit": N, "Holders": {session: true}}`, changed by check-and-set.
"""

from __future__ import annotations

import base64
import json
import subprocess

import pytest

from praetor_harness import clean_env, wait_until

SEMAPHORE_FLAG = 0xE0F69A2BAA414DE0
LOCK_FLAG = 0x2DDCCBC058A50C18


def show(p) -> str:
    return f"exit={p.returncode}\nstdout={p.stdout!r}\nstderr={p.stderr!r}"


@pytest.fixture
def run(cli, agent):
    env = {"CONSUL_HTTP_ADDR": f"127.0.0.1:{agent.port}"}

    def go(*args, timeout=30.0):
        return cli(*args, env=env, timeout=timeout)
    return go


@pytest.fixture
def spawn(praetor_bin, agent, tmp_path):
    """spawn(name, *args): `praetor <args>` in the background, output to
    <name>.out/.err; every process still running at the end is killed."""
    procs = []

    def go(name, *args):
        with open(tmp_path / f"{name}.out", "wb") as o, open(tmp_path / f"{name}.err", "wb") as e:
            proc = subprocess.Popen(
                [str(praetor_bin), *args], stdin=subprocess.DEVNULL, stdout=o, stderr=e,
                env=clean_env({"CONSUL_HTTP_ADDR": f"127.0.0.1:{agent.port}"}), cwd=tmp_path)
        procs.append(proc)
        return proc
    yield go
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


def entries(agent, prefix):
    r = agent.get(f"/v1/kv/{prefix}", params={"recurse": ""})
    if r.status_code == 404:
        return []
    assert r.status_code == 200, r.text
    return r.json()


def coordination(agent, prefix):
    """The decoded `.lock` record and its entry, or (None, None)."""
    entry = agent.kv_entry(f"{prefix}/.lock")
    if entry is None:
        return None, None
    return json.loads(base64.b64decode(entry["Value"])), entry


def contenders(agent, prefix):
    return [e for e in entries(agent, prefix) if not e["Key"].endswith("/.lock")]


def child_script(tmp_path):
    """sh child.sh NAME: marks NAME-in, waits for NAME-go, logs both."""
    script = tmp_path / "child.sh"
    script.write_text(f'echo "start $1" >> {tmp_path}/log; touch {tmp_path}/"$1"-in; '
                      f'while [ ! -e {tmp_path}/"$1"-go ]; do sleep 0.05; done; '
                      f'echo "end $1" >> {tmp_path}/log\n')
    return script


def test_two_holders_run_and_third_waits(agent, run, spawn, tmp_path):
    prefix = "app/sem"
    script = child_script(tmp_path)
    a = spawn("a", "lock", "-verbose", "-n", "2", prefix, f"sh {script} a")
    b = spawn("b", "lock", "-verbose", "-n", "2", prefix, f"sh {script} b")
    # Both hold a slot at once.
    wait_until(lambda: (tmp_path / "a-in").exists() and (tmp_path / "b-in").exists(), 15,
               what="both holders' children running")
    record, entry = coordination(agent, prefix)
    assert entry["Flags"] == SEMAPHORE_FLAG
    assert record["Limit"] == 2 and len(record["Holders"]) == 2
    assert set(record["Holders"].values()) == {True}
    held = contenders(agent, prefix)
    assert sorted(e["Key"] for e in held) == sorted(f"{prefix}/{s}" for s in record["Holders"])
    for e in held:
        assert e["Session"] == e["Key"].rsplit("/", 1)[1]
        assert e["Flags"] == SEMAPHORE_FLAG
        assert e["Value"] is None
    for session in record["Holders"]:
        info = agent.get(f"/v1/session/info/{session}").json()
        assert info[0]["Behavior"] == "delete" and info[0]["TTL"] == "15s"

    # A full semaphore turns a contender with -timeout away.
    p = run("lock", "-n=2", "-timeout=500ms", prefix, "touch never")
    assert p.returncode == 1, show(p)
    assert p.stderr == b"Shutdown triggered or timeout during lock acquisition\n"
    assert not (tmp_path / "never").exists()

    # A third contender makes its contender entry, then waits.
    c = spawn("c", "lock", "-verbose", "-n", "2", prefix, f"sh {script} c")
    wait_until(lambda: len(contenders(agent, prefix)) == 3, 15, what="third contender entry")
    with pytest.raises(AssertionError):
        wait_until(lambda: (tmp_path / "c-in").exists(), 1.0, what="third child (must not start)")
    record, _ = coordination(agent, prefix)
    assert len(record["Holders"]) == 2

    # One holder finishing lets the third in, while the other still holds.
    (tmp_path / "a-go").touch()
    assert a.wait(timeout=15) == 0
    wait_until(lambda: (tmp_path / "c-in").exists(), 20, what="third child after a release")
    assert b.poll() is None
    record, _ = coordination(agent, prefix)
    assert len(record["Holders"]) == 2
    (tmp_path / "b-go").touch()
    assert b.wait(timeout=15) == 0
    (tmp_path / "c-go").touch()
    assert c.wait(timeout=15) == 0

    lines = (tmp_path / "log").read_text().splitlines()
    assert lines.index("end a") < lines.index("start c")
    assert (tmp_path / "a.out").read_text() == (
        f"Setting up semaphore (limit 2) at prefix: {prefix}\n"
        "Attempting lock acquisition\nStarting handler\n"
        "Child terminated, releasing lock\nCleanup aborted, lock in use\n")
    assert (tmp_path / "c.out").read_text().endswith("Cleanup succeeded\n")
    assert entries(agent, prefix) == []
    assert agent.get("/v1/session/list").json() == []


def test_limit_mismatch(agent, run):
    record = json.dumps({"Limit": 3, "Holders": {}})
    assert agent.kv_put("app/lm/.lock", record, flags=str(SEMAPHORE_FLAG)).status_code == 200
    p = run("lock", "-n=2", "app/lm", "touch never")
    assert p.returncode == 1, show(p)
    assert p.stderr == b"Lock acquisition failed: semaphore limit conflict (lock: 3, local: 2)\n"
    # The session is gone, and its contender entry with it.
    assert [e["Key"] for e in entries(agent, "app/lm")] == ["app/lm/.lock"]
    assert agent.get("/v1/session/list").json() == []


def test_limit_mismatch_with_live_holder(agent, run, spawn, tmp_path):
    script = child_script(tmp_path)
    holder = spawn("h", "lock", "-n", "2", "app/lh", f"sh {script} h")
    wait_until(lambda: (tmp_path / "h-in").exists(), 15, what="holder's child running")
    p = run("lock", "-n=3", "app/lh", "touch never")
    assert p.returncode == 1, show(p)
    assert p.stderr == b"Lock acquisition failed: semaphore limit conflict (lock: 2, local: 3)\n"
    (tmp_path / "h-go").touch()
    assert holder.wait(timeout=15) == 0
    assert entries(agent, "app/lh") == []


def test_lock_and_semaphore_conflict(agent, run):
    agent.kv_put("app/k1/.lock", "", flags=str(LOCK_FLAG))
    p = run("lock", "-n=2", "app/k1", "true")
    assert p.returncode == 1, show(p)
    assert p.stderr == b"Lock acquisition failed: Existing key does not match semaphore use\n"

    agent.kv_put("app/k2/.lock", json.dumps({"Limit": 2, "Holders": {}}),
                 flags=str(SEMAPHORE_FLAG))
    p = run("lock", "app/k2", "true")
    assert p.returncode == 1, show(p)
    assert p.stderr == b"Lock acquisition failed: Existing key does not match lock use\n"


def test_missing_prefix(run):
    p = run("lock", "-verbose", "-n=2", "/", "true")
    assert p.returncode == 1, show(p)
    assert p.stdout == b"Setting up semaphore (limit 2) at prefix: \n"
    assert p.stderr == b"Lock setup failed: missing prefix\n"


def test_destroyed_session_kills_child(agent, spawn, tmp_path):
    prefix = "app/semlost"
    proc = spawn("lost", "lock", "-verbose", "-n", "2", prefix,
                 f"echo $$ > {tmp_path}/pid; sleep 30; touch {tmp_path}/done")
    wait_until(lambda: (tmp_path / "pid").exists() and (tmp_path / "pid").read_text(), 15,
               what="child running")
    record, _ = coordination(agent, prefix)
    (session,) = record["Holders"]
    r = agent.put(f"/v1/session/destroy/{session}")
    assert r.status_code == 200
    assert proc.wait(timeout=15) == 0
    text = (tmp_path / "lost.out").read_text()
    assert "Lock lost, killing child\n" in text
    assert "Child terminated\n" in text
    assert text.endswith("Cleanup succeeded\n")
    assert not (tmp_path / "done").exists()
    assert entries(agent, prefix) == []


def test_holder_removed_from_record_kills_child(agent, spawn, tmp_path):
    """An operator rewriting the record without us also ends the slot."""
    prefix = "app/semgone"
    proc = spawn("gone", "lock", "-verbose", "-n", "2", prefix,
                 f"echo $$ > {tmp_path}/pid; sleep 30; touch {tmp_path}/done")
    wait_until(lambda: (tmp_path / "pid").exists() and (tmp_path / "pid").read_text(), 15,
               what="child running")
    record, entry = coordination(agent, prefix)
    r = agent.kv_put(f"{prefix}/.lock", json.dumps({"Limit": 2, "Holders": {}}),
                     flags=str(SEMAPHORE_FLAG), cas=str(entry["ModifyIndex"]))
    assert r.json() is True
    assert proc.wait(timeout=15) == 0
    text = (tmp_path / "gone.out").read_text()
    assert "Lock lost, killing child\n" in text
    assert not (tmp_path / "done").exists()
    assert entries(agent, prefix) == []
    assert agent.get("/v1/session/list").json() == []
