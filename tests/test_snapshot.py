"""`/v1/snapshot` and `praetor snapshot save|restore|inspect`: Consul's
archive (gzip'd tar of meta.json, state.bin, SHA256SUMS), restore on a dev
agent and into another three-server cluster through a follower, and bad
archives refused with nothing changed."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile

from cluster_harness import Cluster, kv_value, put_ok
from praetor_harness import wait_until


def _files(archive: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers()}


def _pack(files: dict[str, bytes]) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return gzip.compress(raw.getvalue())


def _value(agent, key):
    r = agent.get("/v1/kv/" + key, params={"raw": ""})
    return None if r.status_code == 404 else r.content


def test_save_is_consuls_archive(agent):
    assert agent.kv_put("snap/a", "1").status_code == 200
    r = agent.get("/v1/snapshot")
    assert r.status_code == 200, r.text
    index = int(r.headers["X-Consul-Index"])
    assert index >= 1
    assert r.content[:2] == b"\x1f\x8b"
    files = _files(r.content)
    assert set(files) == {"meta.json", "state.bin", "SHA256SUMS"}
    meta = json.loads(files["meta.json"])
    assert meta["Version"] == 1
    assert meta["Index"] == index
    assert meta["Size"] == len(files["state.bin"])
    term, idx, ms = meta["ID"].split("-")
    assert int(term) == meta["Term"] and int(idx) == index and int(ms) > 0
    sums = dict(reversed(line.split("  ")) for line in files["SHA256SUMS"].decode().splitlines())
    assert sums["state.bin"] == hashlib.sha256(files["state.bin"]).hexdigest()
    assert sums["meta.json"] == hashlib.sha256(files["meta.json"]).hexdigest()
    # ?stale works too; other methods are refused.
    assert agent.get("/v1/snapshot", params={"stale": ""}).status_code == 200
    assert agent.http("POST", "/v1/snapshot").status_code == 405


def test_restore_brings_back_the_saved_state(agent):
    assert agent.kv_put("r/keep", "old").status_code == 200
    assert agent.kv_put("r/changed", "before").status_code == 200
    saved = agent.get("/v1/snapshot")
    assert saved.status_code == 200
    assert agent.kv_put("r/changed", "after").status_code == 200
    assert agent.kv_put("r/new", "x").status_code == 200
    assert agent.delete("/v1/kv/r/keep").status_code == 200
    before = int(agent.get("/v1/kv/r/new").headers["X-Consul-Index"])

    r = agent.put("/v1/snapshot", data=saved.content)
    assert r.status_code == 200, r.text
    assert _value(agent, "r/keep") == b"old"
    assert _value(agent, "r/changed") == b"before"
    assert _value(agent, "r/new") is None
    # Indexes never go back, and the agent keeps taking writes.
    r = agent.get("/v1/kv/r/", params={"recurse": ""})
    assert int(r.headers["X-Consul-Index"]) > before
    assert agent.kv_put("r/later", "y").status_code == 200
    assert _value(agent, "r/later") == b"y"


def test_bad_archives_are_refused_and_change_nothing(agent):
    assert agent.kv_put("bad/k", "v1").status_code == 200
    saved = agent.get("/v1/snapshot").content
    assert agent.kv_put("bad/k", "v2").status_code == 200
    files = _files(saved)

    not_gzip = agent.put("/v1/snapshot", data=b"hello, not an archive")
    assert not_gzip.status_code == 500
    assert not_gzip.text.startswith("failed to decompress snapshot"), not_gzip.text

    corrupt = bytearray(saved)
    corrupt[len(corrupt) // 2] ^= 0xFF
    assert agent.put("/v1/snapshot", data=bytes(corrupt)).status_code in (400, 500)

    forged = _pack({**files, "state.bin": files["state.bin"] + b"x"})
    r = agent.put("/v1/snapshot", data=forged)
    assert r.status_code == 500
    assert 'hash check failed for "state.bin"' in r.text, r.text

    missing = _pack({"meta.json": files["meta.json"], "state.bin": files["state.bin"]})
    r = agent.put("/v1/snapshot", data=missing)
    assert r.status_code == 500 and "failed to read snapshot file" in r.text, r.text

    assert _value(agent, "bad/k") == b"v2"


def test_cli_save_inspect_restore(agent, cli, tmp_path):
    env = {"CONSUL_HTTP_ADDR": f"127.0.0.1:{agent.port}"}
    assert agent.kv_put("cli/a", "one").status_code == 200
    file = tmp_path / "backup.snap"

    saved = cli("snapshot", "save", str(file), env=env)
    assert saved.returncode == 0, saved.stderr
    index = int(agent.get("/v1/kv/cli/a").headers["X-Consul-Index"])
    assert saved.stdout.decode() == f"Saved and verified snapshot to index {index}\n"
    assert file.exists() and not (tmp_path / "backup.snap.unverified").exists()

    stale = cli("snapshot", "save", "-stale", "-http-addr", f"127.0.0.1:{agent.port}",
                str(tmp_path / "stale.snap"))
    assert stale.returncode == 0, stale.stderr

    shown = cli("snapshot", "inspect", str(file))
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.decode().splitlines()
    fields = dict(line.split(None, 1) for line in lines[:5])
    assert list(fields) == ["ID", "Size", "Index", "Term", "Version"]
    assert fields["Index"] == str(index) and fields["Version"] == "1"
    assert any(line.split()[:1] == ["KVS"] for line in lines), shown.stdout
    assert any(line.split()[:1] == ["Total"] for line in lines), shown.stdout

    assert agent.kv_put("cli/a", "two").status_code == 200
    restored = cli("snapshot", "restore", str(file), env=env)
    assert restored.returncode == 0, restored.stderr
    assert restored.stdout.decode() == "Restored snapshot\n"
    assert _value(agent, "cli/a") == b"one"


def test_cli_errors(agent, cli, tmp_path):
    env = {"CONSUL_HTTP_ADDR": f"127.0.0.1:{agent.port}"}
    missing = str(tmp_path / "nope.snap")
    for verb in ("save", "restore", "inspect"):
        r = cli("snapshot", verb, env=env)
        assert r.returncode == 1 and r.stderr.decode() == "Missing FILE argument\n"
        r = cli("snapshot", verb, "a", "b", env=env)
        assert r.returncode == 1
        assert r.stderr.decode() == "Too many arguments (expected 1, got 2)\n"
    r = cli("snapshot", "restore", missing, env=env)
    assert r.returncode == 1 and r.stderr.decode().startswith("Error opening snapshot file: ")
    r = cli("snapshot", "inspect", missing)
    assert r.returncode == 1 and r.stderr.decode().startswith("Error opening snapshot file: ")

    junk = tmp_path / "junk.snap"
    junk.write_bytes(b"not a snapshot at all")
    r = cli("snapshot", "inspect", str(junk))
    assert r.returncode == 1
    assert r.stderr.decode().startswith("Error reading snapshot: failed to decompress snapshot")
    assert agent.kv_put("cli/err", "kept").status_code == 200
    r = cli("snapshot", "restore", str(junk), env=env)
    assert r.returncode == 1
    assert r.stderr.decode().startswith("Error restoring snapshot: Unexpected response code: 500")
    assert _value(agent, "cli/err") == b"kept"

    # No agent to talk to: save fails and leaves no file behind.
    target = tmp_path / "never.snap"
    r = cli("snapshot", "save", "-http-addr", "127.0.0.1:1", str(target))
    assert r.returncode == 1 and r.stderr.decode().startswith("Error saving snapshot: ")
    assert not target.exists()


def test_save_on_one_cluster_and_restore_on_another(praetor_bin, tmp_path, cli):
    a = Cluster(praetor_bin, tmp_path / "a")
    b = None
    a_open = True
    try:
        a.start()
        for i in range(20):
            assert put_ok(a.servers[i % 3], f"moved/{i}", f"value-{i}")
        file = tmp_path / "a.snap"
        r = cli("snapshot", "save", "-http-addr", f"{a.leader().ip}:{a.ports['http']}",
                str(file))
        assert r.returncode == 0, r.stderr
        a_open = False
        a.close()

        first = int(a.ips[-1].rsplit(".", 1)[1]) + 1
        b = Cluster(praetor_bin, tmp_path / "b", first_ip=first if first < 250 else 20)
        b.start()
        assert put_ok(b.servers[0], "only-in-b", "gone after the restore")
        follower = b.followers()[0]
        before = int(follower.get("/v1/kv/only-in-b").headers["X-Consul-Index"])
        r = cli("snapshot", "restore", "-http-addr", f"{follower.ip}:{b.ports['http']}",
                str(file))
        assert r.returncode == 0, r.stderr

        def served_everywhere():
            for s in b.servers:
                if kv_value(s, "moved/19", stale="") != b"value-19":
                    return False
                if kv_value(s, "only-in-b", stale="") is not None:
                    return False
            return True

        wait_until(served_everywhere, 15, interval=0.1, what="every server of B restored")
        for s in b.servers:
            for i in range(20):
                assert kv_value(s, f"moved/{i}", stale="") == f"value-{i}".encode()
            r = s.get("/v1/kv/moved/", params={"stale": "", "recurse": ""})
            assert int(r.headers["X-Consul-Index"]) > before

        # A restarted server replays the restore from its own log.
        restarted = b.followers()[-1]
        restarted.stop()
        restarted.restart().wait_ready()
        wait_until(lambda: kv_value(restarted, "moved/7", stale="") == b"value-7", 20,
                   interval=0.1, what="the restarted server serving the restored keys")
        assert kv_value(restarted, "only-in-b", stale="") is None
        # The cluster keeps taking writes after the restore.
        assert put_ok(b.servers[0], "after-restore", "ok")
        wait_until(lambda: all(kv_value(s, "after-restore", stale="") == b"ok"
                               for s in b.servers), 15, interval=0.1,
                   what="a write after the restore on every server")
    finally:
        if a_open:
            a.close()
        if b is not None:
            b.close()
