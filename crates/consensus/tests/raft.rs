//! A single Raft server in this process, through `RaftNode`'s public API:
//! writes come back with their log index and outcome, reads go to the
//! store, and a restart (from the log alone, or from a snapshot and the log
//! after it) rebuilds the same state.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use consensus::{
    NodeError, RaftNode, RaftOptions, Role, RpcClient, ServerNode, WriteError, Written,
};
use state::{Command, KvOp, KvVerb, Outcome, WatchSet};

const WAIT: Duration = Duration::from_secs(10);

fn options() -> RaftOptions {
    RaftOptions {
        heartbeat_interval: Duration::from_millis(20),
        election_timeout: Duration::from_millis(100),
        snapshot_threshold: 0,
        ..RaftOptions::default()
    }
}

fn node_addr() -> ServerNode {
    ServerNode {
        addr: "127.0.0.1:8300".to_string(),
        ..ServerNode::default()
    }
}

fn set(key: &str, value: &str) -> Command {
    let mut op = KvOp::new(KvVerb::Set, key);
    op.value = value.as_bytes().to_vec();
    Command::Kv(op)
}

fn cas(key: &str, value: &str, index: u64) -> Command {
    let mut op = KvOp::new(KvVerb::Cas, key);
    op.value = value.as_bytes().to_vec();
    op.index = index;
    Command::Kv(op)
}

/// The value and ModifyIndex of `key`, read from the store.
fn read(node: &RaftNode, key: &str) -> Option<(String, u64)> {
    let (_, entry) = node.store().snapshot().kv_get(key, &mut WatchSet::new());
    entry.map(|e| {
        (
            String::from_utf8_lossy(&e.value).into_owned(),
            e.modify_index,
        )
    })
}

/// Opens the server in `dir` and waits until it leads.
async fn start(dir: &Path, options: RaftOptions) -> RaftNode {
    let node = RaftNode::open(1, node_addr(), dir, options, RpcClient::default())
        .await
        .unwrap();
    node.bootstrap().await.unwrap();
    assert_eq!(node.wait_for_leader(WAIT).await.unwrap(), 1);
    node.wait_until(WAIT, "leadership", |s| s.role == Role::Leader)
        .await
        .unwrap();
    node
}

async fn write_ok(node: &RaftNode, command: Command) -> Written {
    let written = node.write(command).await.unwrap();
    assert_eq!(written.outcome, Outcome::Kv(true));
    written
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_apply_at_their_log_index_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path(), options()).await;

    let a = write_ok(&node, set("a", "1")).await;
    let b = write_ok(&node, set("b", "2")).await;
    assert!(b.index > a.index);
    assert_eq!(read(&node, "a"), Some(("1".to_string(), a.index)));
    assert_eq!(read(&node, "b"), Some(("2".to_string(), b.index)));

    // A CAS that loses comes back as `false` and changes nothing (but its
    // entry is in the log all the same).
    let lost = node.write(cas("a", "x", a.index + 100)).await.unwrap();
    assert_eq!(lost.outcome, Outcome::Kv(false));
    assert!(lost.index > b.index);
    assert_eq!(read(&node, "a"), Some(("1".to_string(), a.index)));
    let won = write_ok(&node, cas("a", "3", a.index)).await;
    assert_eq!(read(&node, "a"), Some(("3".to_string(), won.index)));
    // The store is current when a write returns; metrics catch up a moment
    // later.
    assert_eq!(node.store().index(), won.index);
    node.wait_until(WAIT, "metrics", |s| s.applied == Some(won.index))
        .await
        .unwrap();
    node.shutdown().await.unwrap();
    drop(node);

    let node = RaftNode::open(1, node_addr(), dir.path(), options(), RpcClient::default())
        .await
        .unwrap();
    // The committed log id was saved, so the log is re-applied up to it
    // while the server opens, before any election.
    assert_eq!(node.store().index(), won.index);
    assert!(
        !node.bootstrap().await.unwrap(),
        "a server with a log is not bootstrapped again"
    );
    node.wait_until(WAIT, "leadership again", |s| s.role == Role::Leader)
        .await
        .unwrap();
    node.wait_until(WAIT, "the old entries applied", |s| {
        s.applied >= Some(won.index)
    })
    .await
    .unwrap();
    assert_eq!(read(&node, "a"), Some(("3".to_string(), won.index)));
    assert_eq!(read(&node, "b"), Some(("2".to_string(), b.index)));
    let next = write_ok(&node, set("c", "4")).await;
    assert!(next.index > won.index);
    assert_eq!(node.store().index(), next.index);
    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_purges_the_log_and_a_restart_starts_from_it() {
    let dir = tempfile::tempdir().unwrap();
    let options = RaftOptions {
        trailing_logs: 0,
        ..options()
    };
    let node = start(dir.path(), options.clone()).await;
    let mut last = None;
    for i in 0..40 {
        last = Some(write_ok(&node, set(&format!("k/{i:02}"), &i.to_string())).await);
    }
    let before = last.unwrap().index;

    let covered = node.snapshot(WAIT).await.unwrap();
    assert!(covered >= Some(before), "{covered:?} < {before}");
    let status = node
        .wait_until(WAIT, "the purge", |s| s.purged >= covered)
        .await
        .unwrap();
    assert_eq!(status.snapshot, covered);
    assert!(dir.path().join("snapshots/snapshot").exists());

    // Entries after the snapshot live only in the log.
    let after = write_ok(&node, set("after", "yes")).await;
    let overwritten = write_ok(&node, set("k/00", "new")).await;
    node.shutdown().await.unwrap();
    drop(node);

    let node = RaftNode::open(1, node_addr(), dir.path(), options, RpcClient::default())
        .await
        .unwrap();
    node.wait_until(WAIT, "leadership again", |s| s.role == Role::Leader)
        .await
        .unwrap();
    let status = node
        .wait_until(WAIT, "everything applied", |s| {
            s.applied >= Some(overwritten.index)
        })
        .await
        .unwrap();
    assert_eq!(status.snapshot, covered);
    assert!(status.purged >= covered);
    for i in 1..40 {
        let (value, _) = read(&node, &format!("k/{i:02}")).unwrap();
        assert_eq!(value, i.to_string());
    }
    assert_eq!(
        read(&node, "k/00"),
        Some(("new".to_string(), overwritten.index))
    );
    assert_eq!(read(&node, "after"), Some(("yes".to_string(), after.index)));
    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_threshold_takes_snapshots_by_itself() {
    let dir = tempfile::tempdir().unwrap();
    let options = RaftOptions {
        snapshot_threshold: 10,
        trailing_logs: 5,
        ..options()
    };
    let node = start(dir.path(), options).await;
    for i in 0..25 {
        write_ok(&node, set(&format!("t/{i}"), "v")).await;
    }
    // 27 entries (membership, blank, 25 writes): a snapshot every 10, the
    // last one keeping 5 entries behind it.
    let kept_behind = |s: &consensus::RaftStatus| match (s.snapshot, s.purged) {
        (Some(snapshot), Some(purged)) => Some(snapshot - purged),
        _ => None,
    };
    let status = node
        .wait_until(WAIT, "an automatic snapshot and purge", |s| {
            s.snapshot >= Some(15) && kept_behind(s) == Some(5)
        })
        .await
        .unwrap_or_else(|e| panic!("{e}: {:?}", node.status()));
    assert!(status.applied >= status.snapshot);
    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_each_get_their_own_index() {
    let dir = tempfile::tempdir().unwrap();
    let node = Arc::new(start(dir.path(), options()).await);
    let mut tasks = Vec::new();
    for i in 0..64 {
        let node = Arc::clone(&node);
        tasks.push(tokio::spawn(async move {
            let key = format!("c/{i}");
            let written = node.write(set(&key, "v")).await.unwrap();
            (key, written.index)
        }));
    }
    let mut indexes = Vec::new();
    for task in tasks {
        let (key, index) = task.await.unwrap();
        assert_eq!(read(&node, &key), Some(("v".to_string(), index)));
        indexes.push(index);
    }
    indexes.sort_unstable();
    indexes.dedup();
    assert_eq!(indexes.len(), 64);
    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_was_never_bootstrapped_refuses_writes() {
    let dir = tempfile::tempdir().unwrap();
    let node = RaftNode::open(1, node_addr(), dir.path(), options(), RpcClient::default())
        .await
        .unwrap();
    match node.write(set("a", "1")).await {
        Err(WriteError::NotLeader { leader: None }) => {}
        other => panic!("expected NotLeader without a leader, got {other:?}"),
    }
    assert_eq!(read(&node, "a"), None);
    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_snapshot_stops_the_start_with_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path(), options()).await;
    write_ok(&node, set("a", "1")).await;
    node.snapshot(WAIT).await.unwrap();
    node.shutdown().await.unwrap();
    drop(node);

    let path = dir.path().join("snapshots/snapshot");
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 5;
    bytes[last] ^= 0x40;
    std::fs::write(&path, &bytes).unwrap();
    match RaftNode::open(1, node_addr(), dir.path(), options(), RpcClient::default()).await {
        Err(NodeError::Stopped(reason)) => {
            assert!(reason.contains("corrupt snapshot"), "{reason}")
        }
        Err(other) => panic!("unexpected error: {other}"),
        Ok(_) => panic!("started on a damaged snapshot"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_mode_writes_through_the_same_path_in_memory() {
    let node = RaftNode::in_memory(1, node_addr(), options())
        .await
        .unwrap();
    assert!(node.bootstrap().await.unwrap());
    node.wait_until(WAIT, "leadership", |s| s.role == Role::Leader)
        .await
        .unwrap();
    let a = write_ok(&node, set("a", "1")).await;
    assert_eq!(read(&node, "a"), Some(("1".to_string(), a.index)));
    let covered = node.snapshot(WAIT).await.unwrap();
    assert!(covered >= Some(a.index));
    let b = write_ok(&node, set("b", "2")).await;
    assert_eq!(read(&node, "b"), Some(("2".to_string(), b.index)));
    node.shutdown().await.unwrap();
}
