//! Write throughput of a single Raft server (openraft over our log and the
//! state store), from `RaftNode::write` to the applied outcome.
//!
//! ```text
//! cargo run --release -p consensus --example raft_bench -- [DIR] [SECONDS] [KEYS]
//! ```
//!
//! DIR (default: the system temp dir) must be on the disk to measure. Each
//! case writes 256-byte KV sets for SECONDS (default 3) with 1, 16 and 256
//! writers in flight, on disk and then with the dev agent's in-memory log.
//! Each writer cycles through KEYS keys of its own (default 1000), so the
//! store grows to KEYS times the writers.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use consensus::{RaftNode, RaftOptions, Role, RpcClient, ServerNode};
use state::{Command, KvOp, KvVerb};

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let mut args = std::env::args().skip(1);
    let dir = args
        .next()
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let seconds: f64 = args
        .next()
        .map(|s| s.parse().expect("SECONDS must be a number"))
        .unwrap_or(3.0);
    let budget = Duration::from_secs_f64(seconds);
    let keys: u64 = args
        .next()
        .map(|s| s.parse().expect("KEYS must be a number"))
        .unwrap_or(1000);
    let options = RaftOptions {
        heartbeat_interval: Duration::from_millis(50),
        election_timeout: Duration::from_millis(300),
        ..RaftOptions::default()
    };
    for on_disk in [true, false] {
        for writers in [1, 16, 256] {
            let data = tempfile::tempdir_in(&dir).expect("a temp dir in DIR");
            let node = if on_disk {
                let addr = ServerNode {
                    addr: "127.0.0.1:8300".to_string(),
                    ..ServerNode::default()
                };
                RaftNode::open(1, addr, data.path(), options.clone(), RpcClient::default()).await
            } else {
                RaftNode::in_memory(1, ServerNode::default(), options.clone()).await
            }
            .expect("start");
            node.bootstrap().await.expect("bootstrap");
            node.wait_until(Duration::from_secs(10), "leadership", |s| {
                s.role == Role::Leader
            })
            .await
            .expect("leader");
            let node = Arc::new(node);
            let done = Arc::new(AtomicU64::new(0));
            let start = Instant::now();
            let mut tasks = Vec::new();
            for w in 0..writers {
                let (node, done) = (Arc::clone(&node), Arc::clone(&done));
                tasks.push(tokio::spawn(async move {
                    let mut i = 0u64;
                    while start.elapsed() < budget {
                        let mut op = KvOp::new(KvVerb::Set, format!("bench/{w}/{}", i % keys));
                        op.value = vec![b'x'; 256];
                        node.write(Command::Kv(op)).await.expect("write");
                        done.fetch_add(1, Ordering::Relaxed);
                        i += 1;
                    }
                }));
            }
            for task in tasks {
                task.await.expect("writer");
            }
            let elapsed = start.elapsed().as_secs_f64();
            let writes = done.load(Ordering::Relaxed);
            println!(
                "{:7} writers {writers:3}: {writes:7} writes, {:9.0} writes/s",
                if on_disk { "disk" } else { "memory" },
                writes as f64 / elapsed
            );
            node.shutdown().await.expect("shutdown");
        }
    }
}
