//! Small Serf clusters on virtual time, packets and streams delivered by
//! hand: membership, intents, user events, queries, tags, key rotation.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use gossip::swim::{frame_len, StreamError, Transmit};
use serf::{
    Config, Event, KeyOp, KeySummary, MemberEventKind, MemberStatus, QueryParams, QueryRecord,
    ReconnectTimeoutOverride, Serf,
};

struct Net {
    now: Instant,
    nodes: Vec<Serf>,
    events: Vec<Vec<Event>>,
    down: Vec<bool>,
    flight: BTreeMap<(Instant, u64), (SocketAddr, SocketAddr, Vec<u8>)>,
    seq: u64,
}

fn addr(i: usize) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8000 + i as u16))
}

impl Net {
    fn new(n: usize, tweak: impl Fn(usize, &mut Config)) -> Net {
        let now = Instant::now();
        let nodes = (0..n)
            .map(|i| {
                let mut c = Config::new(gossip::Config::lan(format!("n{i}"), addr(i)));
                c.tags.insert(
                    "role".into(),
                    if i.is_multiple_of(2) { "web" } else { "db" }.into(),
                );
                tweak(i, &mut c);
                Serf::new(c, now, i as u64 + 10).unwrap()
            })
            .collect();
        Net {
            now,
            nodes,
            events: vec![Vec::new(); n],
            down: vec![false; n],
            flight: BTreeMap::new(),
            seq: 0,
        }
    }

    fn index(&self, a: SocketAddr) -> Option<usize> {
        let i = (a.port() as usize).checked_sub(8000)?;
        (i < self.nodes.len()).then_some(i)
    }

    fn drain(&mut self, i: usize) {
        while let Some(e) = self.nodes[i].poll_event() {
            self.events[i].push(e);
        }
        while let Some(t) = self.nodes[i].poll_transmit() {
            match t {
                Transmit::Packet { to, payload } => {
                    self.seq += 1;
                    let at = self.now + Duration::from_millis(1);
                    self.flight.insert((at, self.seq), (to, addr(i), payload));
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
                            assert_eq!(frame_len(&payload).unwrap(), Some(payload.len()));
                            let rep = self.nodes[j].handle_stream(self.now, addr(i), &payload);
                            self.drain(j);
                            Ok(rep.unwrap_or_default())
                        }
                        _ => Err(StreamError::Connect("refused".into())),
                    };
                    if expect_reply {
                        self.nodes[i].handle_stream_reply(self.now, id, reply);
                    }
                }
            }
        }
        while let Some(e) = self.nodes[i].poll_event() {
            self.events[i].push(e);
        }
    }

    fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        let far = end + Duration::from_secs(1);
        loop {
            for i in 0..self.nodes.len() {
                if !self.down[i] {
                    self.drain(i);
                }
            }
            let timer = (0..self.nodes.len())
                .filter(|&i| !self.down[i])
                .map(|i| self.nodes[i].poll_timeout())
                .min()
                .unwrap_or(far);
            let packet = self.flight.keys().next().map(|k| k.0).unwrap_or(far);
            let t = timer.min(packet);
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
                            self.nodes[j].handle_packet(self.now, from, &bytes);
                        }
                    }
                    continue;
                }
            }
            for i in 0..self.nodes.len() {
                if !self.down[i] && self.nodes[i].poll_timeout() <= self.now {
                    self.nodes[i].handle_timeout(self.now);
                }
            }
        }
    }

    fn join_all(&mut self) {
        for i in 1..self.nodes.len() {
            let now = self.now;
            self.nodes[i].join(now, &[addr(0)], false).unwrap();
            self.drain(i);
        }
        self.run_for(Duration::from_secs(3));
    }

    fn status(&self, observer: usize, name: &str) -> Option<MemberStatus> {
        self.nodes[observer].member(name).map(|m| m.status)
    }

    fn count_user(&self, i: usize, name: &str) -> usize {
        self.events[i]
            .iter()
            .filter(|e| matches!(e, Event::User { name: n, .. } if n == name))
            .count()
    }
}

#[test]
fn members_and_tags_agree_everywhere() {
    let mut net = Net::new(5, |_, _| {});
    net.join_all();
    for i in 0..5 {
        let ms = net.nodes[i].members();
        assert_eq!(ms.len(), 5, "node {i}");
        for m in &ms {
            assert_eq!(m.status, MemberStatus::Alive);
            let idx: usize = m.name[1..].parse().unwrap();
            let want = if idx.is_multiple_of(2) { "web" } else { "db" };
            assert_eq!(m.tags.get("role").map(String::as_str), Some(want));
        }
        assert!(net.events[i]
            .iter()
            .any(|e| matches!(e, Event::JoinResult { joined: 1, .. }) || i == 0));
    }
}

#[test]
fn user_events_reach_everyone_exactly_once() {
    let mut net = Net::new(6, |_, _| {});
    net.join_all();
    let now = net.now;
    net.nodes[3]
        .user_event(now, "deploy", b"v1", false)
        .unwrap();
    net.nodes[5].user_event(now, "restart", b"", true).unwrap();
    net.run_for(Duration::from_secs(5));
    for i in 0..6 {
        assert_eq!(net.count_user(i, "deploy"), 1, "node {i}");
        assert_eq!(net.count_user(i, "restart"), 1, "node {i}");
    }
    // A late joiner learns recent events by push-pull, once.
    let too_big = vec![0u8; 600];
    assert!(net.nodes[0]
        .user_event(net.now, "x", &too_big, false)
        .is_err());
}

#[test]
fn queries_get_acks_and_responses_and_respect_filters() {
    let mut net = Net::new(5, |_, _| {});
    net.join_all();
    let now = net.now;
    let params = QueryParams {
        request_ack: true,
        ..Default::default()
    };
    let qt = net.nodes[1].query(now, "uptime", b"?", &params).unwrap();
    net.run_for(Duration::from_millis(300));
    // Every node (the asker too) sees the query; each answers.
    for i in 0..5 {
        let q = net.events[i]
            .iter()
            .find_map(|e| match e {
                Event::Query(q) if q.name == "uptime" => Some(q.clone()),
                _ => None,
            })
            .unwrap_or_else(|| panic!("node {i} got the query"));
        let now = net.now;
        net.nodes[i]
            .respond(now, &q, format!("up-{i}").as_bytes())
            .unwrap();
        net.drain(i);
    }
    net.run_for(Duration::from_secs(10));
    let records: Vec<&QueryRecord> = net.events[1]
        .iter()
        .filter_map(|e| match e {
            Event::QueryResult { ltime, record } if *ltime == qt => Some(record),
            _ => None,
        })
        .collect();
    let acks = records
        .iter()
        .filter(|r| matches!(r, QueryRecord::Ack { .. }))
        .count();
    let resps = records
        .iter()
        .filter(|r| matches!(r, QueryRecord::Response { .. }))
        .count();
    assert_eq!((acks, resps), (5, 5));
    assert_eq!(records.last(), Some(&&QueryRecord::Done));

    // Tag filter: only the "db" nodes (1, 3) take part.
    let params = QueryParams {
        request_ack: true,
        filter_tags: vec![("role".into(), "^db$".into())],
        ..Default::default()
    };
    let now = net.now;
    let qt = net.nodes[0].query(now, "who", b"", &params).unwrap();
    net.run_for(Duration::from_secs(10));
    let mut ackers: Vec<String> = net.events[0]
        .iter()
        .filter_map(|e| match e {
            Event::QueryResult {
                ltime,
                record: QueryRecord::Ack { from },
            } if *ltime == qt => Some(from.clone()),
            _ => None,
        })
        .collect();
    ackers.sort();
    assert_eq!(ackers, vec!["n1", "n3"]);
    let bad = QueryParams {
        filter_tags: vec![("role".into(), "(".into())],
        ..Default::default()
    };
    assert!(net.nodes[0].query(net.now, "x", b"", &bad).is_err());
}

#[test]
fn failure_and_graceful_leave_are_told_apart() {
    let mut net = Net::new(5, |_, _| {});
    net.join_all();
    net.down[4] = true;
    let now = net.now;
    net.nodes[3].leave(now).unwrap();
    net.drain(3);
    net.run_for(Duration::from_secs(30));
    assert!(net.events[3]
        .iter()
        .any(|e| matches!(e, Event::LeaveComplete { .. })));
    for i in 0..3 {
        assert_eq!(net.status(i, "n4"), Some(MemberStatus::Failed), "node {i}");
        assert_eq!(net.status(i, "n3"), Some(MemberStatus::Left), "node {i}");
        let kinds: Vec<MemberEventKind> = net.events[i]
            .iter()
            .filter_map(|e| match e {
                Event::Member { kind, members }
                    if members[0].name == "n3" || members[0].name == "n4" =>
                {
                    Some(*kind)
                }
                _ => None,
            })
            .collect();
        assert!(kinds.contains(&MemberEventKind::Failed));
        assert!(kinds.contains(&MemberEventKind::Leave));
    }
    // force-leave turns the failed node into left everywhere.
    let now = net.now;
    net.nodes[0].force_leave(now, "n4", false);
    net.run_for(Duration::from_secs(5));
    for i in 0..3 {
        assert_eq!(net.status(i, "n4"), Some(MemberStatus::Left), "node {i}");
    }
}

#[test]
fn a_member_reaped_after_the_timeout_its_tag_asks_for() {
    // Every node reads a member's own timeout from its `rc` tag; n3 asks
    // for 20 s, n4 for nothing, so the pool's hour applies to it.
    let mut net = Net::new(5, |i, c| {
        c.reconnect_timeout = Duration::from_secs(3600);
        c.reap_interval = Duration::from_secs(5);
        c.reconnect_timeout_override = Some(ReconnectTimeoutOverride::new(|m, timeout| {
            m.tags
                .get("rc")
                .and_then(|s| s.parse().ok())
                .map_or(timeout, Duration::from_secs)
        }));
        if i == 3 {
            c.tags.insert("rc".into(), "20".into());
        }
    });
    net.join_all();
    net.down[3] = true;
    net.down[4] = true;
    net.run_for(Duration::from_secs(15));
    for i in 0..3 {
        assert_eq!(net.status(i, "n3"), Some(MemberStatus::Failed), "node {i}");
    }
    net.run_for(Duration::from_secs(40));
    for i in 0..3 {
        assert_eq!(net.status(i, "n3"), None, "n3 reaped on node {i}");
        assert_eq!(net.status(i, "n4"), Some(MemberStatus::Failed), "node {i}");
        assert!(net.events[i].iter().any(|e| matches!(e,
            Event::Member { kind: MemberEventKind::Reap, members } if members[0].name == "n3")));
    }
}

#[test]
fn tag_changes_are_seen_as_updates() {
    let mut net = Net::new(3, |_, _| {});
    net.join_all();
    let mut tags = net.nodes[2].tags().clone();
    tags.insert("version".into(), "2".into());
    let now = net.now;
    net.nodes[2].set_tags(now, tags).unwrap();
    net.run_for(Duration::from_secs(3));
    for i in 0..3 {
        let m = net.nodes[i].member("n2").unwrap();
        assert_eq!(
            m.tags.get("version").map(String::as_str),
            Some("2"),
            "node {i}"
        );
    }
    assert!(net.events[0].iter().any(|e| matches!(
        e,
        Event::Member {
            kind: MemberEventKind::Update,
            ..
        }
    )));
    let mut huge = serf::Tags::new();
    huge.insert("k".into(), "v".repeat(600));
    assert!(net.nodes[0].set_tags(net.now, huge).is_err());
}

fn summarize(net: &mut Net, asker: usize, qt: u64) -> KeySummary {
    let mut s = KeySummary::new(net.nodes[asker].num_nodes());
    for e in &net.events[asker] {
        if let Event::QueryResult { ltime, record } = e {
            if *ltime == qt {
                s.add(record);
            }
        }
    }
    s
}

#[test]
fn key_rotation_reaches_every_node() {
    use base64::Engine as _;
    let k1 = [1u8; 32];
    let k2 = [2u8; 32];
    let b64 = |k: &[u8]| base64::engine::general_purpose::STANDARD.encode(k);
    let mut net = Net::new(4, |_, c| {
        let key = gossip::keyring::Key::new(&k1).unwrap();
        c.memberlist.keyring = Some(gossip::keyring::Keyring::new(key, vec![]));
    });
    net.join_all();
    assert_eq!(net.nodes[3].members().len(), 4);
    for (op, key) in [
        (KeyOp::Install, Some(b64(&k2))),
        (KeyOp::Use, Some(b64(&k2))),
        (KeyOp::Remove, Some(b64(&k1))),
    ] {
        let now = net.now;
        let qt = net.nodes[1].key_query(now, op, key.as_deref(), 0).unwrap();
        net.run_for(Duration::from_secs(10));
        let s = summarize(&mut net, 1, qt);
        assert_eq!(s.error(), None, "{op:?}: {s:?}");
    }
    let now = net.now;
    let qt = net.nodes[0].key_query(now, KeyOp::List, None, 0).unwrap();
    net.run_for(Duration::from_secs(10));
    let s = summarize(&mut net, 0, qt);
    assert_eq!(s.keys.get(&b64(&k2)), Some(&4));
    assert_eq!(s.keys.len(), 1);
    assert_eq!(s.primary_keys.get(&b64(&k2)), Some(&4));
    // Removing the primary key is refused, on every node.
    let now = net.now;
    let qt = net.nodes[0]
        .key_query(now, KeyOp::Remove, Some(&b64(&k2)), 0)
        .unwrap();
    net.run_for(Duration::from_secs(10));
    let s = summarize(&mut net, 0, qt);
    assert_eq!(s.num_err, 4);
    assert!(s
        .messages
        .values()
        .all(|m| m == "Removing the primary key is not allowed"));
    // The cluster still talks with the new key.
    let now = net.now;
    net.nodes[2]
        .user_event(now, "after-rotation", b"", false)
        .unwrap();
    net.run_for(Duration::from_secs(3));
    for i in 0..4 {
        assert_eq!(net.count_user(i, "after-rotation"), 1);
    }
}

#[test]
fn coordinates_are_learnt_from_acks() {
    let mut net = Net::new(3, |_, _| {});
    net.join_all();
    net.run_for(Duration::from_secs(10));
    for i in 0..3 {
        let me = net.nodes[i].coordinate().unwrap().clone();
        for j in 0..3 {
            let other = net.nodes[i].cached_coordinate(&format!("n{j}")).unwrap();
            assert!(other.is_valid());
            let _ = me.distance_to(other).unwrap();
        }
    }
}
