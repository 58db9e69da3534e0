"""Three real praetor servers: election, forwarding, failover after kill -9,
an isolated minority that cannot commit, catch-up from the log and from a
snapshot, graceful leave, and the status/operator endpoints."""

from __future__ import annotations

import signal
import time


from cluster_harness import Cluster, kv_value, put_ok
from praetor_harness import run_cli, wait_until




def test_three_servers_elect_one_leader_and_agree_on_peers(cluster):
    leader = cluster.leader()
    peers = {s.rpc_addr for s in cluster.servers}
    for s in cluster.servers:
        assert s.get("/v1/status/leader").json() == leader.rpc_addr
        assert set(s.get("/v1/status/peers").json()) == peers
    # Reads carry real leadership headers.
    follower = cluster.followers()[0]
    r = follower.get("/v1/kv/missing", params={"stale": ""})
    assert r.headers["X-Consul-Knownleader"] == "true"
    assert int(r.headers["X-Consul-Lastcontact"]) < 5000
    r = leader.get("/v1/kv/missing")
    assert r.headers["X-Consul-Lastcontact"] == "0"


def test_writes_on_any_server_reach_every_server(cluster):
    for i, s in enumerate(cluster.servers):
        assert put_ok(s, f"fw/{i}", f"from-{s.name}")
    for s in cluster.servers:
        for i, origin in enumerate(cluster.servers):
            # A default read is confirmed by the leader: it sees every
            # acknowledged write at once, wherever it was made.
            assert kv_value(s, f"fw/{i}") == f"from-{origin.name}".encode()
            assert kv_value(s, f"fw/{i}", consistent="") == f"from-{origin.name}".encode()
    # The index is the Raft index, the same everywhere.
    indexes = {s.get("/v1/kv/fw/0").headers["X-Consul-Index"] for s in cluster.servers}
    assert len(indexes) == 1


def test_failover_after_kill_9_of_the_leader(cluster):
    assert put_ok(cluster.servers[0], "before", "1")
    old = cluster.leader()
    old.kill()
    survivors = [s for s in cluster.servers if s is not old]
    # A write through a survivor succeeds once a new leader is elected.
    wait_until(lambda: put_ok(survivors[0], "after", "2", timeout=3), 15,
               what="a write acknowledged after the leader died")
    new = cluster.leader(among=survivors)
    assert new is not old
    assert kv_value(survivors[1], "before") == b"1"
    assert kv_value(survivors[1], "after") == b"2"
    # The old leader comes back as a follower and catches up from the log.
    old.restart()
    wait_until(lambda: kv_value(old, "after", stale="") == b"2", 20,
               what="the restarted server to catch up")
    cluster.wait_converged()


def test_an_isolated_minority_cannot_commit(cluster):
    leader = cluster.leader()
    followers = cluster.followers()
    for f in followers:
        f.send_signal(signal.SIGSTOP)
    try:
        # The leader alone cannot reach a quorum: the write is not
        # acknowledged (Consul answers 500 after its hold timeout).
        started = time.monotonic()
        r = leader.put("/v1/kv/minority", data=b"x", timeout=30)
        assert r.status_code == 500, r.text
        assert time.monotonic() - started < 20
        # Nor can it confirm a consistent read.
        r = leader.get("/v1/kv/minority", params={"consistent": ""}, timeout=30)
        assert r.status_code == 500, r.text
    finally:
        for f in followers:
            f.send_signal(signal.SIGCONT)
    # Once the majority is back the cluster serves again.
    wait_until(lambda: put_ok(followers[0], "majority", "y", timeout=3), 20,
               what="writes once the majority is back")


def test_a_server_far_behind_catches_up_from_a_snapshot(praetor_bin, tmp_path):
    c = Cluster(praetor_bin, tmp_path,
                extra_config={"raft_snapshot_threshold": 64, "raft_trailing_logs": 8})
    try:
        c.start()
        lagging = c.followers()[0]
        lagging.kill()
        leader = c.leader(among=c.running())
        for i in range(400):
            assert put_ok(leader, f"snap/{i:03}", f"v{i}")
        # The leader has a snapshot on disk and has purged its log past
        # where the stopped server is.
        snapshot = leader.data_dir / "raft" / "snapshots" / "snapshot"
        wait_until(snapshot.exists, 10, what="a snapshot file on the leader")
        lagging.restart()
        wait_until(lambda: kv_value(lagging, "snap/399", stale="") == b"v399", 30,
                   what="the lagging server to install the snapshot")
        assert kv_value(lagging, "snap/000", stale="") == b"v0"
        assert (lagging.data_dir / "raft" / "snapshots" / "snapshot").exists()
    finally:
        c.close()


def test_graceful_leave_removes_the_server_from_the_configuration(cluster, praetor_bin):
    leaving = cluster.followers()[0]
    r = leaving.put("/v1/agent/leave")
    assert r.status_code == 200
    assert leaving.wait_exit(20) == 0
    leaving.stopped_by_test = True
    rest = [s for s in cluster.servers if s is not leaving]
    wait_until(lambda: len(rest[0].get("/v1/status/peers").json()) == 2, 15,
               what="two voters after the leave")
    assert leaving.rpc_addr not in rest[0].get("/v1/status/peers").json()
    # Two voters still commit.
    assert put_ok(rest[1], "after-leave", "ok")


def test_the_leader_of_two_servers_leaves_and_the_other_leads_alone(praetor_bin, tmp_path):
    # Handing leadership over needs the leaving server's vote: its server
    # port must outlive its HTTP API until the leave is done.
    c = Cluster(praetor_bin, tmp_path, 2)
    try:
        c.start()
        leaving = c.leader()
        rest = next(s for s in c.servers if s is not leaving)
        leaving.stopped_by_test = True
        assert leaving.put("/v1/agent/leave").status_code == 200
        assert leaving.wait_exit(20) == 0
        wait_until(lambda: rest.get("/v1/status/peers").json() == [rest.rpc_addr], 15,
                   what="the remaining server as the only voter")
        assert rest.get("/v1/status/leader").json() == rest.rpc_addr
        assert put_ok(rest, "alone", "ok")
    finally:
        c.close()


def test_operator_raft_configuration_and_list_peers(cluster, praetor_bin):
    leader = cluster.leader()
    follower = cluster.followers()[0]
    for params in ({}, {"stale": ""}):
        r = follower.get("/v1/operator/raft/configuration", params=params)
        assert r.status_code == 200, r.text
        servers = r.json()["Servers"]
        assert {s["Address"] for s in servers} == {s.rpc_addr for s in cluster.servers}
        assert {s["Node"] for s in servers} == {"s1", "s2", "s3"}
        assert all(s["Voter"] for s in servers)
        assert [s["Address"] for s in servers if s["Leader"]] == [leader.rpc_addr]
    out = run_cli(praetor_bin, ["operator", "raft", "list-peers",
                                f"-http-addr={follower.ip}:{cluster.ports['http']}"])
    assert out.returncode == 0, out.stderr
    lines = out.stdout.decode().splitlines()
    assert lines[0].split()[:6] == ["Node", "ID", "Address", "State", "Voter", "RaftProtocol"]
    states = {line.split()[0]: line.split()[3] for line in lines[1:]}
    assert states[leader.name] == "leader"
    assert sorted(states.values()) == ["follower", "follower", "leader"]


def test_remove_peer_errors_are_consuls(cluster, praetor_bin):
    s = cluster.servers[0]
    r = s.delete("/v1/operator/raft/peer")
    assert r.status_code == 400
    assert r.text == ("Must specify either ?id with the server's ID or ?address with "
                      "IP:port of peer to remove")
    r = s.delete("/v1/operator/raft/peer", params={"id": "a", "address": "b"})
    assert r.status_code == 400
    assert r.text == "Must specify only one of ?id or ?address"
    r = s.delete("/v1/operator/raft/peer", params={"address": "nope"})
    assert r.status_code == 500
    assert r.text == 'address "nope" was not found in the Raft configuration'
    out = run_cli(praetor_bin, ["operator", "raft", "remove-peer", "-id=nope",
                                f"-http-addr={s.ip}:{cluster.ports['http']}"])
    assert out.returncode == 1
    assert b'id "nope" was not found in the Raft configuration' in out.stderr
    # Nothing changed.
    assert len(s.get("/v1/status/peers").json()) == 3


def test_remove_peer_and_transfer_leader(cluster, praetor_bin):
    leader = cluster.leader()
    target, victim = cluster.followers()
    config = leader.get("/v1/operator/raft/configuration").json()["Servers"]
    target_id = next(s["ID"] for s in config if s["Address"] == target.rpc_addr)
    out = run_cli(praetor_bin, ["operator", "raft", "transfer-leader", f"-id={target_id}",
                                f"-http-addr={victim.ip}:{cluster.ports['http']}"])
    assert out.returncode == 0, out.stderr
    assert out.stdout.decode().strip() == "Success"
    assert cluster.leader() is target
    # Stop a server for good and remove it by address, as an operator
    # would after losing its host.
    victim.kill()
    victim.stopped_by_test = True
    out = run_cli(praetor_bin, ["operator", "raft", "remove-peer", f"-address={victim.rpc_addr}",
                                f"-http-addr={leader.ip}:{cluster.ports['http']}"])
    assert out.returncode == 0, out.stderr
    assert out.stdout.decode().strip() == f'Removed peer with address "{victim.rpc_addr}"'
    peers = target.get("/v1/status/peers").json()
    assert victim.rpc_addr not in peers and len(peers) == 2
    assert put_ok(leader, "after-remove", "ok")
