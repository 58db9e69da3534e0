//! Shells on real sockets (127.0.0.1, ephemeral ports). Every wait polls
//! with a deadline.

use std::future::Future;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::time::Instant;

use super::*;
use crate::delegate::{MemberEvent, Recorder};
use crate::keyring::{Key, Keyring};
use crate::node::State;

fn any_port() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// A local-profile config with short timers, so failures show in seconds.
fn fast(name: &str) -> Config {
    let mut c = Config::local(name, any_port());
    c.probe_interval = Duration::from_millis(100);
    c.probe_timeout = Duration::from_millis(50);
    c.gossip_interval = Duration::from_millis(20);
    c
}

async fn start(config: Config) -> GossipHandle<Recorder> {
    spawn(config, any_port(), Recorder::default())
        .await
        .expect("shell starts")
}

/// Polls `check` until it yields a value; fails the test after `limit`.
async fn eventually<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let end = Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            Instant::now() < end,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn state_of(h: &GossipHandle<Recorder>, name: &str) -> Option<State> {
    let members = h.members().await.ok()?;
    members
        .into_iter()
        .find(|n| n.name == name)
        .map(|n| n.state)
}

async fn joined_pair(a: Config, b: Config) -> (GossipHandle<Recorder>, GossipHandle<Recorder>) {
    let a = start(a).await;
    let b = start(b).await;
    let outcome = b.join(&[a.advertise_addr()]).await.expect("join runs");
    assert_eq!(outcome.joined, 1, "join failed: {:?}", outcome.failed);
    (a, b)
}

#[tokio::test]
async fn two_shells_join_and_see_each_other_alive() {
    let (a, b) = joined_pair(fast("a"), fast("b")).await;
    eventually(Duration::from_secs(5), "a sees b alive", || async {
        (state_of(&a, "b").await == Some(State::Alive)).then_some(())
    })
    .await;
    eventually(Duration::from_secs(5), "b sees a alive", || async {
        (state_of(&b, "a").await == Some(State::Alive)).then_some(())
    })
    .await;
    let joins = a
        .with_delegate(|r| {
            r.events
                .iter()
                .filter(|e| matches!(e, MemberEvent::Join(n) if n.name == "b"))
                .count()
        })
        .await
        .expect("delegate");
    assert_eq!(joins, 1);
    // Probes go back and forth: packets are counted and round trips measured.
    let stats = eventually(Duration::from_secs(5), "a direct probe ack", || async {
        let s = a.stats().await.ok()?;
        s.probe_rtt_mean().is_some().then_some(s)
    })
    .await;
    assert!(stats.core.packets_in > 0 && stats.core.packets_out > 0);
    assert!(stats.core.bytes_in > 0 && stats.core.bytes_out > 0);
    assert_eq!(stats.num_alive, 2);
    a.shutdown().await.expect("a stops");
    b.shutdown().await.expect("b stops");
}

#[tokio::test]
async fn a_graceful_leave_is_seen_as_left() {
    let (a, b) = joined_pair(fast("a"), fast("b")).await;
    eventually(Duration::from_secs(5), "a sees b alive", || async {
        (state_of(&a, "b").await == Some(State::Alive)).then_some(())
    })
    .await;
    b.leave(Duration::from_secs(5))
        .await
        .expect("leave gossiped");
    eventually(Duration::from_secs(5), "a sees b left", || async {
        (state_of(&a, "b").await == Some(State::Left)).then_some(())
    })
    .await;
    let recorded = a
        .with_delegate(|r| {
            r.events.iter().any(
                |e| matches!(e, MemberEvent::Leave(n) if n.name == "b" && n.state == State::Left),
            )
        })
        .await
        .expect("delegate");
    assert!(recorded, "the delegate heard of the leave");
    // A second leave returns at once.
    b.leave(Duration::from_millis(100))
        .await
        .expect("idempotent");
    b.shutdown().await.expect("b stops");
    a.shutdown().await.expect("a stops");
}

#[tokio::test]
async fn a_stopped_shell_is_declared_dead() {
    let (a, b) = joined_pair(fast("a"), fast("b")).await;
    eventually(Duration::from_secs(5), "a sees b alive", || async {
        (state_of(&a, "b").await == Some(State::Alive)).then_some(())
    })
    .await;
    b.shutdown().await.expect("b stops");
    eventually(Duration::from_secs(20), "a declares b dead", || async {
        (state_of(&a, "b").await == Some(State::Dead)).then_some(())
    })
    .await;
    a.shutdown().await.expect("a stops");
}

#[tokio::test]
async fn joining_nobody_reports_the_failure() {
    let a = start(fast("a")).await;
    // A port that was just free: nothing listens there.
    let closed = {
        let l = std::net::TcpListener::bind(any_port()).expect("bind");
        l.local_addr().expect("addr")
    };
    let outcome = a.join(&[closed]).await.expect("join runs");
    assert_eq!(outcome.joined, 0);
    assert_eq!(outcome.failed.len(), 1);
    assert_eq!(outcome.failed[0].0, closed);
    let none = a.join(&[]).await.expect("empty join");
    assert_eq!(none, JoinOutcome::default());
    a.shutdown().await.expect("a stops");
}

#[tokio::test]
async fn user_messages_arrive_by_packet_and_by_stream() {
    let (a, b) = joined_pair(fast("a"), fast("b")).await;
    b.send_user_packet(a.advertise_addr(), b"by packet".to_vec())
        .await
        .expect("queued");
    b.send_user_stream(a.advertise_addr(), b"by stream".to_vec())
        .await
        .expect("queued");
    eventually(Duration::from_secs(5), "both messages", || async {
        let msgs = a.with_delegate(|r| r.messages.clone()).await.ok()?;
        let has = |m: &[u8]| msgs.iter().any(|x| x == m);
        (has(b"by packet") && has(b"by stream")).then_some(())
    })
    .await;
    a.shutdown().await.expect("a stops");
    b.shutdown().await.expect("b stops");
}

#[tokio::test]
async fn encrypted_shells_join_and_a_wrong_key_is_refused() {
    let ring = |byte: u8| {
        let key = Key::new(&[byte; 32]).expect("32-byte key");
        Some(Keyring::new(key, Vec::new()))
    };
    let mut ca = fast("a");
    ca.keyring = ring(1);
    let mut cb = fast("b");
    cb.keyring = ring(1);
    let (a, b) = joined_pair(ca, cb).await;
    eventually(Duration::from_secs(5), "a sees b alive", || async {
        (state_of(&a, "b").await == Some(State::Alive)).then_some(())
    })
    .await;

    let mut cc = fast("c");
    cc.keyring = ring(2);
    let c = start(cc).await;
    let outcome = c.join(&[a.advertise_addr()]).await.expect("join runs");
    assert_eq!(outcome.joined, 0, "a wrong key must not join");
    assert_eq!(state_of(&a, "c").await, None);
    for h in [a, b, c] {
        h.shutdown().await.expect("stops");
    }
}

#[tokio::test]
async fn advertise_takes_the_bound_port_and_ip() {
    let mut c = fast("a");
    c.advertise = SocketAddr::from(([0, 0, 0, 0], 0));
    let a = start(c).await;
    assert_eq!(a.advertise_addr(), a.local_addr());
    let me = a.members().await.expect("members");
    assert_eq!(me.len(), 1);
    assert_eq!(me[0].addr, a.local_addr());
    a.shutdown().await.expect("stops");

    let mut c = fast("b");
    c.advertise = SocketAddr::from(([0, 0, 0, 0], 0));
    let err = spawn(c, SocketAddr::from(([0, 0, 0, 0], 0)), Recorder::default()).await;
    assert!(matches!(err, Err(ShellError::NoAdvertiseAddr(_))));
}

#[tokio::test]
async fn read_frame_waits_for_a_whole_frame_and_rejects_garbage() {
    let frame = crate::swim::stream::user_frame(b"hello, world");
    let (mut w, mut r) = tokio::io::duplex(64);
    let (head, tail) = frame.split_at(3);
    let (head, tail) = (head.to_vec(), tail.to_vec());
    let writer = tokio::spawn(async move {
        w.write_all(&head).await.expect("write");
        w.flush().await.expect("flush");
        tokio::time::sleep(Duration::from_millis(20)).await;
        w.write_all(&tail).await.expect("write");
        // Bytes after the frame are not part of it.
        w.write_all(b"trailing").await.expect("write");
    });
    let got = read_frame(&mut r).await.expect("a frame");
    assert_eq!(got, frame);
    writer.await.expect("writer");

    let (mut w, mut r) = tokio::io::duplex(64);
    w.write_all(&[0xEE, 1, 2, 3]).await.expect("write");
    assert!(matches!(
        read_frame(&mut r).await,
        Err(StreamError::Malformed(_))
    ));

    let (mut w, mut r) = tokio::io::duplex(64);
    w.write_all(&frame[..4]).await.expect("write");
    drop(w);
    assert!(matches!(read_frame(&mut r).await, Err(StreamError::Io(_))));
}

#[tokio::test]
async fn new_meta_reaches_the_other_node_as_an_update() {
    let (a, b) = joined_pair(fast("a"), fast("b")).await;
    eventually(Duration::from_secs(5), "a sees b alive", || async {
        (state_of(&a, "b").await == Some(State::Alive)).then_some(())
    })
    .await;
    b.with_delegate(|r| r.meta = b"role=new".to_vec())
        .await
        .expect("delegate");
    b.update_meta().await.expect("update");
    eventually(
        Duration::from_secs(5),
        "a hears of b's new meta",
        || async {
            let events = a.with_delegate(|r| r.events.clone()).await.ok()?;
            events
            .iter()
            .any(|e| matches!(e, MemberEvent::Update(n) if n.name == "b" && n.meta == b"role=new"))
            .then_some(())
        },
    )
    .await;
    a.shutdown().await.expect("a stops");
    b.shutdown().await.expect("b stops");
}
