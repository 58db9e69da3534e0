//! Lamport ordering and de-duplication, driven with hand-made messages
//! delivered as memberlist user packets to one Serf node.

use std::net::SocketAddr;
use std::time::Instant;

use serf::messages::{self, Join, Leave, Message, UserEvent};
use serf::{Config, Event, MemberStatus, Serf};

fn node() -> (Serf, Instant) {
    let now = Instant::now();
    let addr: SocketAddr = "127.0.0.1:9100".parse().unwrap();
    let s = Serf::new(Config::new(gossip::Config::lan("me", addr)), now, 7).unwrap();
    (s, now)
}

/// Wraps a Serf message as a memberlist user packet.
fn packet(m: &Message) -> Vec<u8> {
    let mut p = vec![gossip::MessageType::User as u8];
    p.extend(messages::encode(m));
    p
}

fn deliver(s: &mut Serf, now: Instant, m: &Message) {
    let from: SocketAddr = "127.0.0.1:9101".parse().unwrap();
    s.handle_packet(now, from, &packet(m));
}

fn user_events(s: &mut Serf) -> Vec<(u64, String)> {
    let mut out = Vec::new();
    while let Some(e) = s.poll_event() {
        if let Event::User { ltime, name, .. } = e {
            out.push((ltime, name));
        }
    }
    out
}

fn ev(ltime: u64, name: &str) -> Message {
    Message::UserEvent(UserEvent {
        ltime,
        name: name.into(),
        payload: b"p".to_vec(),
        cc: false,
    })
}

#[test]
fn duplicate_events_are_delivered_once_and_distinct_ones_all() {
    let (mut s, now) = node();
    deliver(&mut s, now, &ev(5, "a"));
    deliver(&mut s, now, &ev(5, "a"));
    deliver(&mut s, now, &ev(5, "b"));
    deliver(&mut s, now, &ev(6, "a"));
    assert_eq!(
        user_events(&mut s),
        vec![(5, "a".into()), (5, "b".into()), (6, "a".into())]
    );
    // The event clock moved past everything witnessed.
    assert_eq!(s.clocks().1, 7);
}

#[test]
fn events_older_than_the_buffer_window_are_dropped() {
    let (mut s, now) = node();
    deliver(&mut s, now, &ev(2000, "new"));
    deliver(&mut s, now, &ev(2000 - 600, "ancient"));
    deliver(&mut s, now, &ev(2000 - 100, "recent"));
    let got = user_events(&mut s);
    assert_eq!(got, vec![(2000, "new".into()), (1900, "recent".into())]);
}

#[test]
fn a_restored_snapshot_suppresses_replayed_events() {
    let (mut s, now) = node();
    let prev = serf::snapshot::Previous {
        event_clock: 40,
        ..Default::default()
    };
    s.restore(&prev);
    deliver(&mut s, now, &ev(40, "seen-before-restart"));
    deliver(&mut s, now, &ev(41, "fresh"));
    assert_eq!(user_events(&mut s), vec![(41, "fresh".into())]);
}

#[test]
fn intents_about_unknown_nodes_wait_and_old_intents_lose() {
    let (mut s, now) = node();
    // A leave intent for a node we have not met yet is remembered...
    deliver(
        &mut s,
        now,
        &Message::Leave(Leave {
            ltime: 10,
            node: "ghost".into(),
            prune: false,
        }),
    );
    assert!(s.member("ghost").is_none());
    // ...and an older join intent does not override it.
    deliver(
        &mut s,
        now,
        &Message::Join(Join {
            ltime: 9,
            node: "ghost".into(),
        }),
    );
    assert!(s.clocks().0 >= 11, "the member clock witnessed the intents");
    // Our own leave intent while we are alive is refuted, not applied.
    deliver(
        &mut s,
        now,
        &Message::Leave(Leave {
            ltime: 50,
            node: "me".into(),
            prune: false,
        }),
    );
    assert_eq!(
        s.local_member().map(|m| m.status),
        Some(MemberStatus::Alive)
    );
}

#[test]
fn garbage_user_messages_change_nothing() {
    let (mut s, now) = node();
    let before = s.members();
    let from: SocketAddr = "127.0.0.1:9101".parse().unwrap();
    for junk in [
        &[8u8][..],
        &[8, 3],
        &[8, 3, 0x81, 0xa1],
        &[8, 200, 1, 2],
        &[8, 9, 0x82],
    ] {
        s.handle_packet(now, from, junk);
    }
    assert_eq!(s.members(), before);
    assert!(user_events(&mut s).is_empty());
}

proptest::proptest! {
    #[test]
    fn the_decoder_never_panics(b in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
        let _ = messages::decode(&b);
        let _ = messages::decode_filter(&b);
        let _ = serf::tags::decode(&b);
    }

    #[test]
    fn random_user_packets_never_panic(b in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
        let (mut s, now) = node();
        let mut p = vec![8u8];
        p.extend(b);
        s.handle_packet(now, "127.0.0.1:1".parse().unwrap(), &p);
        proptest::prop_assert_eq!(s.local_member().map(|m| m.status), Some(MemberStatus::Alive));
    }
}
