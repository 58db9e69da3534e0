//! Small scripted clusters on virtual time: the core's behaviour end to end,
//! with packets and streams delivered by hand.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::*;
use crate::delegate::{MemberEvent, Recorder};
use crate::message::Message;

struct Net {
    now: Instant,
    nodes: Vec<(Memberlist, Recorder)>,
    down: Vec<bool>,
    /// Packets in flight: (arrival, seq) -> (to, from, bytes).
    flight: BTreeMap<(Instant, u64), (SocketAddr, SocketAddr, Vec<u8>)>,
    seq: u64,
    latency: Duration,
}

fn addr(i: usize) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 7000 + i as u16))
}

impl Net {
    fn new(n: usize, tweak: impl Fn(&mut Config)) -> Net {
        let now = Instant::now();
        let nodes = (0..n)
            .map(|i| {
                let mut c = Config::lan(format!("n{i}"), addr(i));
                tweak(&mut c);
                let mut r = Recorder::default();
                let m = Memberlist::new(c, now, i as u64 + 1, &mut r).unwrap();
                (m, r)
            })
            .collect();
        Net {
            now,
            nodes,
            down: vec![false; n],
            flight: BTreeMap::new(),
            seq: 0,
            latency: Duration::from_millis(1),
        }
    }

    fn index(&self, a: SocketAddr) -> Option<usize> {
        let i = (a.port() as usize).checked_sub(7000)?;
        (i < self.nodes.len()).then_some(i)
    }

    /// Moves every queued transmit of node `i` onto the network.
    fn drain(&mut self, i: usize) {
        while let Some(t) = self.nodes[i].0.poll_transmit() {
            match t {
                Transmit::Packet { to, payload } => {
                    self.seq += 1;
                    self.flight
                        .insert((self.now + self.latency, self.seq), (to, addr(i), payload));
                }
                Transmit::Stream {
                    id,
                    to,
                    payload,
                    expect_reply,
                    ..
                } => {
                    let reply = match self.index(to) {
                        Some(j) if !self.down[j] => {
                            let (m, r) = &mut self.nodes[j];
                            let len = frame_len(&payload).unwrap().unwrap();
                            assert_eq!(len, payload.len(), "a whole frame");
                            let rep = m.handle_stream(self.now, addr(i), &payload, r);
                            self.drain(j);
                            Ok(rep.unwrap_or_default())
                        }
                        _ => Err(StreamError::Connect("refused".into())),
                    };
                    if expect_reply {
                        let (m, r) = &mut self.nodes[i];
                        m.handle_stream_reply(self.now, id, reply, r);
                    }
                }
            }
        }
    }

    fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        let mut spins = 0u64;
        loop {
            spins += 1;
            assert!(
                spins < 1_000_000,
                "livelock at {:?} flight {} first {:?}: {:?}",
                self.now,
                self.flight.len(),
                self.flight.keys().next(),
                self.nodes
                    .iter()
                    .map(|n| (
                        n.0.poll_timeout(),
                        n.0.next_probe,
                        n.0.next_gossip,
                        n.0.probe.next_deadline(),
                        n.0.suspicions.len(),
                        n.0.streams.len()
                    ))
                    .collect::<Vec<_>>()
            );
            for i in 0..self.nodes.len() {
                if !self.down[i] {
                    self.drain(i);
                }
            }
            let next_timer = (0..self.nodes.len())
                .filter(|&i| !self.down[i])
                .map(|i| self.nodes[i].0.poll_timeout())
                .min()
                .unwrap_or(end + Duration::from_secs(1));
            let next_packet = self
                .flight
                .keys()
                .next()
                .map(|k| k.0)
                .unwrap_or(end + Duration::from_secs(1));
            let t = next_timer.min(next_packet);
            if t > end {
                self.now = end;
                return;
            }
            self.now = self.now.max(t);
            if let Some((&key, _)) = self.flight.iter().next() {
                if key.0 <= self.now {
                    let (to, from, bytes) = self.flight.remove(&key).unwrap();
                    if let Some(j) = self.index(to) {
                        if !self.down[j] {
                            let (m, r) = &mut self.nodes[j];
                            m.handle_packet(self.now, from, &bytes, r);
                        }
                    }
                    continue;
                }
            }
            for i in 0..self.nodes.len() {
                if !self.down[i] && self.nodes[i].0.poll_timeout() <= self.now {
                    let (m, r) = &mut self.nodes[i];
                    m.handle_timeout(self.now, r);
                }
            }
        }
    }

    fn join_all(&mut self) {
        for i in 1..self.nodes.len() {
            let (m, r) = &mut self.nodes[i];
            m.join(self.now, &[addr(0)], r);
            self.drain(i);
        }
    }

    fn state_of(&self, observer: usize, name: &str) -> Option<State> {
        self.nodes[observer].0.member(name).map(|n| n.state)
    }
}

#[test]
fn nodes_join_through_one_seed_and_converge() {
    let mut net = Net::new(5, |_| {});
    net.join_all();
    for i in 1..5 {
        assert!(matches!(
            net.nodes[i].0.poll_event(),
            Some(Event::Joined { .. })
        ));
    }
    net.run_for(Duration::from_secs(5));
    for i in 0..5 {
        assert_eq!(net.nodes[i].0.num_alive(), 5, "node {i} sees everyone");
    }
}

#[test]
fn a_killed_node_is_suspected_then_declared_dead_by_all() {
    let mut net = Net::new(5, |_| {});
    net.join_all();
    net.run_for(Duration::from_secs(3));
    net.down[4] = true;
    net.run_for(Duration::from_secs(25));
    for i in 0..4 {
        assert_eq!(net.state_of(i, "n4"), Some(State::Dead), "node {i}");
        assert!(net.nodes[i]
            .1
            .events
            .iter()
            .any(|e| matches!(e, MemberEvent::Leave(n) if n.name == "n4")));
    }
    // No healthy node was ever declared dead.
    for i in 0..4 {
        for e in &net.nodes[i].1.events {
            if let MemberEvent::Leave(n) = e {
                assert_eq!(n.name, "n4");
            }
        }
    }
}

#[test]
fn graceful_leave_is_seen_as_left() {
    let mut net = Net::new(4, |_| {});
    net.join_all();
    net.run_for(Duration::from_secs(3));
    {
        let (m, r) = &mut net.nodes[3];
        m.leave(net.now, r);
    }
    net.run_for(Duration::from_secs(3));
    let mut done = false;
    while let Some(e) = net.nodes[3].0.poll_event() {
        done |= e == Event::LeaveDone;
    }
    assert!(done, "the leave broadcast finished");
    for i in 0..3 {
        assert_eq!(net.state_of(i, "n3"), Some(State::Left), "node {i}");
    }
}

#[test]
fn a_suspected_node_refutes_with_a_higher_incarnation() {
    let mut net = Net::new(3, |_| {});
    net.join_all();
    net.run_for(Duration::from_secs(3));
    let inc = net.nodes[2].0.incarnation();
    let s = crate::message::Suspect {
        incarnation: inc,
        node: "n2".into(),
        from: "n0".into(),
    };
    let buf = crate::message::encode(&Message::Suspect(s)).unwrap();
    let (m, r) = &mut net.nodes[2];
    m.handle_packet(net.now, addr(0), &buf, r);
    assert!(m.incarnation() > inc);
    assert_eq!(m.health_score(), 1, "refuting costs health");
    net.run_for(Duration::from_secs(10));
    for i in 0..3 {
        assert_eq!(net.state_of(i, "n2"), Some(State::Alive));
    }
}

#[test]
fn encrypted_cluster_converges_and_plain_node_cannot_join() {
    let key = crate::keyring::Key::new(&[7u8; 32]).unwrap();
    let ring = crate::keyring::Keyring::new(key, vec![]);
    let mut net = Net::new(4, |c| {
        if c.name != "n3" {
            c.keyring = Some(ring.clone());
        }
    });
    net.join_all();
    let mut failed = false;
    while let Some(e) = net.nodes[3].0.poll_event() {
        failed |= matches!(e, Event::JoinFailed { .. });
    }
    assert!(failed, "an unencrypted node is refused");
    net.run_for(Duration::from_secs(5));
    for i in 0..3 {
        assert_eq!(net.state_of(i, "n3"), None);
        assert_eq!(net.nodes[i].0.num_alive(), 3);
    }
}

#[test]
fn garbage_packets_change_nothing() {
    let mut net = Net::new(2, |_| {});
    net.join_all();
    net.run_for(Duration::from_secs(2));
    let before: Vec<_> = net.nodes[0].0.members().cloned().collect();
    let (m, r) = &mut net.nodes[0];
    for b in [
        &[][..],
        &[255],
        &[7, 5, 0],
        &[12, 0, 0, 0, 0, 4],
        &[244, 3, b'a'],
    ] {
        m.handle_packet(net.now, addr(1), b, r);
    }
    assert_eq!(m.metrics().malformed, 5);
    let mut after: Vec<_> = m.members().cloned().collect();
    let mut before = before;
    before.sort_by(|a, b| a.name.cmp(&b.name));
    after.sort_by(|a, b| a.name.cmp(&b.name));
    assert_eq!(before, after);
}
