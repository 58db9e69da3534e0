//! Three servers in one process, talking over real server ports on
//! 127.0.0.1: forming, forwarding, failover, catch-up from the log and
//! from a snapshot.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use consensus::{
    serve, Cluster, ClusterOptions, RaftNode, RaftOptions, ReadMode, RpcClient, ServerNode,
};
use state::{Command, KvOp, KvVerb, Outcome};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

fn set(key: &str, value: &str) -> Command {
    let mut op = KvOp::new(KvVerb::Set, key);
    op.value = value.as_bytes().to_vec();
    Command::Kv(op)
}

fn options() -> RaftOptions {
    RaftOptions {
        heartbeat_interval: Duration::from_millis(50),
        election_timeout: Duration::from_millis(500),
        snapshot_threshold: 0,
        trailing_logs: 10,
        ..RaftOptions::default()
    }
}

struct Server {
    cluster: Arc<Cluster>,
    stop: Option<oneshot::Sender<()>>,
    server: tokio::task::JoinHandle<()>,
}

impl Server {
    async fn shutdown(mut self) {
        let _ = self.stop.take().map(|s| s.send(()));
        let _ = self.server.await;
        self.cluster.shutdown().await.expect("shutdown");
    }
}

async fn start(n: u8, listener: TcpListener, dir: &Path, join: Vec<String>, expect: u32) -> Server {
    let addr = listener.local_addr().unwrap().to_string();
    let uuid = format!("{n:02x}000000-0000-4000-8000-000000000000");
    let node = ServerNode {
        addr,
        name: format!("s{n}"),
        uuid: uuid.clone(),
    };
    let client = RpcClient::default();
    let raft = RaftNode::open(
        consensus::server_id(&uuid),
        node,
        &dir.join(format!("s{n}")),
        options(),
        client.clone(),
    )
    .await
    .expect("open");
    let cluster = Cluster::start(
        raft,
        client,
        ClusterOptions {
            expect,
            join,
            reconcile_interval: Duration::from_millis(200),
            ..ClusterOptions::default()
        },
    );
    let (stop, stopped) = oneshot::channel();
    let server = tokio::spawn(serve(listener, Arc::clone(&cluster), async {
        let _ = stopped.await;
    }));
    Server {
        cluster,
        stop: Some(stop),
        server,
    }
}

async fn poll<T>(what: &str, deadline: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + deadline;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < end, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn value_of(cluster: &Cluster, key: &str) -> Option<Vec<u8>> {
    cluster
        .node()
        .store()
        .snapshot()
        .kv_get(key, &mut state::WatchSet::new())
        .1
        .map(|e| e.value.clone())
}

async fn form(dir: &Path) -> (Vec<Server>, Vec<String>) {
    let mut listeners = Vec::new();
    for _ in 0..3 {
        listeners.push(TcpListener::bind("127.0.0.1:0").await.unwrap());
    }
    let addrs: Vec<String> = listeners
        .iter()
        .map(|l| l.local_addr().unwrap().to_string())
        .collect();
    let mut servers = Vec::new();
    for (i, listener) in listeners.into_iter().enumerate() {
        // Each knows only the first: the rest is learned from hellos.
        let join = vec![addrs[0].clone()];
        servers.push(start(i as u8 + 1, listener, dir, join, 3).await);
    }
    for s in &servers {
        let cluster = Arc::clone(&s.cluster);
        poll("three voters and a leader", Duration::from_secs(10), || {
            (cluster.peers().len() == 3 && cluster.leader_addr().is_some()).then_some(())
        })
        .await;
    }
    (servers, addrs)
}

fn leader_index(servers: &[Server]) -> usize {
    servers
        .iter()
        .position(|s| s.cluster.is_leader())
        .expect("a leader")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_servers_form_forward_and_fail_over() {
    let dir = tempfile::tempdir().unwrap();
    let (mut servers, addrs) = form(dir.path()).await;
    let leader = leader_index(&servers);
    let follower = (leader + 1) % 3;

    // A write on a follower is forwarded, and every server applies it.
    let written = servers[follower]
        .cluster
        .write(set("k", "v1"))
        .await
        .expect("forwarded write");
    assert_eq!(written.outcome, Outcome::Kv(true));
    for s in &servers {
        let c = Arc::clone(&s.cluster);
        poll("k everywhere", Duration::from_secs(5), || {
            (value_of(&c, "k").as_deref() == Some(b"v1".as_slice())).then_some(())
        })
        .await;
    }

    // A consistent read on a follower sees a write made just before on
    // another server.
    let other = (leader + 2) % 3;
    servers[leader].cluster.write(set("k", "v2")).await.unwrap();
    servers[other]
        .cluster
        .read_barrier(ReadMode::Quorum)
        .await
        .expect("read index");
    assert_eq!(value_of(&servers[other].cluster, "k").unwrap(), b"v2");

    // The leader stops: the others elect a new one and keep writing.
    let old = servers.remove(leader);
    let old_name = old.cluster.me().name.clone();
    old.shutdown().await;
    let start = Instant::now();
    let survivor = Arc::clone(&servers[0].cluster);
    let written = survivor
        .write(set("after", "failover"))
        .await
        .expect("write after failover");
    assert_eq!(written.outcome, Outcome::Kv(true));
    assert!(start.elapsed() < Duration::from_secs(7));
    let new_leader = leader_index(&servers);
    assert_ne!(servers[new_leader].cluster.me().name, old_name);

    // The old leader comes back on the same data and port and catches up.
    let listener = TcpListener::bind(&addrs[leader]).await.unwrap();
    let back = start_again(leader, listener, dir.path(), &addrs).await;
    let c = Arc::clone(&back.cluster);
    poll(
        "the restarted server catches up",
        Duration::from_secs(10),
        || (value_of(&c, "after").as_deref() == Some(b"failover".as_slice())).then_some(()),
    )
    .await;
    servers.push(back);
    for s in servers {
        s.shutdown().await;
    }
}

async fn start_again(i: usize, listener: TcpListener, dir: &Path, addrs: &[String]) -> Server {
    start(
        i as u8 + 1,
        listener,
        dir,
        vec![addrs[(i + 1) % 3].clone()],
        3,
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_server_far_behind_catches_up_from_a_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let (mut servers, addrs) = form(dir.path()).await;
    let leader = leader_index(&servers);
    let behind = (leader + 1) % 3;
    let gone = servers.remove(behind);
    gone.shutdown().await;

    let leader_cluster = Arc::clone(
        &servers
            .iter()
            .find(|s| s.cluster.is_leader())
            .unwrap()
            .cluster,
    );
    for i in 0..600 {
        leader_cluster
            .write(set(&format!("key/{i}"), &format!("value {i}")))
            .await
            .unwrap();
    }
    // Snapshot and purge the log past what the stopped server has.
    let covered = leader_cluster
        .node()
        .snapshot(Duration::from_secs(10))
        .await
        .unwrap()
        .unwrap();
    // openraft purges in batches once the snapshot is on disk.
    let node = leader_cluster.node();
    poll("the log purged", Duration::from_secs(10), || {
        node.status().purged.filter(|p| p + 300 >= covered)
    })
    .await;

    let listener = TcpListener::bind(&addrs[behind]).await.unwrap();
    let back = start_again(behind, listener, dir.path(), &addrs).await;
    let c = Arc::clone(&back.cluster);
    poll("the snapshot installed", Duration::from_secs(15), || {
        (value_of(&c, "key/599").as_deref() == Some(b"value 599".as_slice())).then_some(())
    })
    .await;
    assert_eq!(value_of(&c, "key/0").unwrap(), b"value 0");
    // It could not have come from the log: the leader purged it.
    poll(
        "the snapshot in the metrics",
        Duration::from_secs(5),
        || c.node().status().snapshot,
    )
    .await;
    servers.push(back);
    for s in servers {
        s.shutdown().await;
    }
}
