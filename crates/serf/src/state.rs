//! Serf's state beside the gossip core, and the gossip [`Delegate`] that
//! feeds it: member status driven by gossip plus join/leave intents ordered
//! by a Lamport clock, user events and queries de-duplicated in Lamport
//! windows, and three broadcast queues piggy-backed on gossip.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use gossip::broadcast::{retransmit_limit, BroadcastQueue};
use gossip::node::ip_from_wire;
use gossip::{Delegate, Node};

use crate::clock::{LamportClock, LamportTime};
use crate::config::Config;
use crate::event::{Event, IncomingQuery, MemberEventKind, QueryRecord};
use crate::member::{Member, MemberState, MemberStatus};
use crate::messages::{
    self, Filter, Message, Query, QueryResponse, UserEvents, QUERY_FLAG_ACK,
    QUERY_FLAG_NO_BROADCAST,
};
use crate::tags;

/// Version byte of the coordinate carried in ack payloads.
const PING_VERSION: u8 = 1;
/// Prefix of queries Serf answers itself.
pub const INTERNAL_QUERY_PREFIX: &str = "_serf_";

/// Where Serf is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifecycle {
    Alive,
    Leaving,
    Left,
    Shutdown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IntentKind {
    Join,
    Leave,
}

/// A join or leave heard before the node itself.
#[derive(Debug, Clone, Copy)]
struct Intent {
    kind: IntentKind,
    ltime: LamportTime,
    wall: Instant,
}

/// A query we sent, collecting answers until its deadline.
#[derive(Debug, Clone)]
pub(crate) struct PendingQuery {
    pub id: u32,
    pub deadline: Instant,
    acks: HashSet<String>,
    responses: HashSet<String>,
}

impl PendingQuery {
    pub(crate) fn new(id: u32, deadline: Instant) -> Self {
        PendingQuery {
            id,
            deadline,
            acks: HashSet::new(),
            responses: HashSet::new(),
        }
    }
}

/// The Serf state the gossip core calls back into.
pub(crate) struct SerfState {
    pub config: Config,
    pub lifecycle: Lifecycle,
    /// The time of the input being processed (callbacks carry no time).
    pub now: Instant,
    pub clock: LamportClock,
    pub event_clock: LamportClock,
    pub query_clock: LamportClock,
    pub members: HashMap<String, MemberState>,
    pub failed: Vec<String>,
    pub left: Vec<String>,
    intents: HashMap<String, Intent>,
    event_buffer: Vec<Option<UserEvents>>,
    pub event_min_time: LamportTime,
    pub event_join_ignore: bool,
    query_buffer: Vec<Option<(LamportTime, Vec<u32>)>>,
    pub query_min_time: LamportTime,
    pub broadcasts: BroadcastQueue,
    pub event_broadcasts: BroadcastQueue,
    pub query_broadcasts: BroadcastQueue,
    /// Alive gossip members, refreshed after every input.
    pub num_nodes: usize,
    pub coord_client: Option<coordinate::Client>,
    pub coord_cache: HashMap<String, coordinate::Coordinate>,
    pub events: VecDeque<Event>,
    /// User messages to send directly (responses, relays, acks).
    pub outbox: Vec<(SocketAddr, Vec<u8>)>,
    pub pending_queries: HashMap<LamportTime, PendingQuery>,
    /// Internal queries to answer once the gossip core is free.
    pub internal: Vec<IncomingQuery>,
    /// Someone else claimed our name.
    pub conflict_seen: bool,
    /// We heard our own leave while alive: refute with a join.
    pub rejoin_needed: bool,
}

impl SerfState {
    pub fn new(config: Config, now: Instant, seed: u64) -> SerfState {
        let coord_client = (!config.disable_coordinates)
            .then(|| coordinate::Client::new(coordinate::Config::default(), seed));
        SerfState {
            event_buffer: vec![None; config.event_buffer.max(1)],
            query_buffer: vec![None; config.query_buffer.max(1)],
            config,
            lifecycle: Lifecycle::Alive,
            now,
            clock: LamportClock::new(),
            event_clock: LamportClock::new(),
            query_clock: LamportClock::new(),
            members: HashMap::new(),
            failed: Vec::new(),
            left: Vec::new(),
            intents: HashMap::new(),
            event_min_time: 0,
            event_join_ignore: false,
            query_min_time: 0,
            broadcasts: BroadcastQueue::new(),
            event_broadcasts: BroadcastQueue::new(),
            query_broadcasts: BroadcastQueue::new(),
            num_nodes: 1,
            coord_client,
            coord_cache: HashMap::new(),
            events: VecDeque::new(),
            outbox: Vec::new(),
            pending_queries: HashMap::new(),
            internal: Vec::new(),
            conflict_seen: false,
            rejoin_needed: false,
        }
    }

    pub fn name(&self) -> &str {
        self.config.name()
    }

    fn emit_member(&mut self, kind: MemberEventKind, m: Member) {
        self.events.push_back(Event::Member {
            kind,
            members: vec![m],
        });
    }

    /// Queues a Serf message for gossip.
    pub fn broadcast(&mut self, msg: &Message) {
        self.broadcasts.push(None, messages::encode(msg));
    }

    // ----- membership from gossip -----

    fn node_join(&mut self, n: &Node) {
        let (old, member) = match self.members.get_mut(&n.name) {
            None => {
                let mut ms = MemberState {
                    member: Member {
                        name: n.name.clone(),
                        addr: n.addr.ip(),
                        port: n.addr.port(),
                        tags: tags::decode(&n.meta),
                        status: MemberStatus::Alive,
                        vsn: n.vsn,
                    },
                    status_ltime: 0,
                    leave_time: None,
                };
                if let Some(i) = self.intents.get(&n.name) {
                    ms.status_ltime = i.ltime;
                    if i.kind == IntentKind::Leave {
                        ms.member.status = MemberStatus::Leaving;
                    }
                }
                self.members.insert(n.name.clone(), ms);
                (MemberStatus::None, self.members.get_mut(&n.name))
            }
            Some(ms) => {
                let old = ms.member.status;
                ms.member.status = MemberStatus::Alive;
                ms.leave_time = None;
                ms.member.addr = n.addr.ip();
                ms.member.port = n.addr.port();
                ms.member.tags = tags::decode(&n.meta);
                (old, Some(ms))
            }
        };
        let Some(ms) = member else {
            return;
        };
        ms.member.vsn = n.vsn;
        let m = ms.member.clone();
        if matches!(old, MemberStatus::Failed | MemberStatus::Left) {
            self.failed.retain(|x| x != &n.name);
            self.left.retain(|x| x != &n.name);
        }
        self.emit_member(MemberEventKind::Join, m);
    }

    fn node_leave(&mut self, n: &Node) {
        let now = self.now;
        let Some(ms) = self.members.get_mut(&n.name) else {
            return;
        };
        let kind = match ms.member.status {
            MemberStatus::Leaving => {
                ms.member.status = MemberStatus::Left;
                ms.leave_time = Some(now);
                self.left.push(n.name.clone());
                MemberEventKind::Leave
            }
            MemberStatus::Alive => {
                ms.member.status = MemberStatus::Failed;
                ms.leave_time = Some(now);
                self.failed.push(n.name.clone());
                MemberEventKind::Failed
            }
            _ => return,
        };
        let m = ms.member.clone();
        self.emit_member(kind, m);
    }

    fn node_update(&mut self, n: &Node) {
        let Some(ms) = self.members.get_mut(&n.name) else {
            return;
        };
        ms.member.addr = n.addr.ip();
        ms.member.port = n.addr.port();
        ms.member.tags = tags::decode(&n.meta);
        ms.member.vsn = n.vsn;
        let m = ms.member.clone();
        self.emit_member(MemberEventKind::Update, m);
    }

    // ----- intents -----

    fn upsert_intent(&mut self, node: &str, kind: IntentKind, ltime: LamportTime) -> bool {
        match self.intents.get(node) {
            Some(i) if ltime <= i.ltime => false,
            _ => {
                self.intents.insert(
                    node.to_string(),
                    Intent {
                        kind,
                        ltime,
                        wall: self.now,
                    },
                );
                true
            }
        }
    }

    pub fn reap_intents(&mut self, now: Instant) {
        let timeout = self.config.recent_intent_timeout;
        self.intents
            .retain(|_, i| now.saturating_duration_since(i.wall) <= timeout);
    }

    /// Applies a leave intent; true if it is news worth re-gossiping.
    pub fn leave_intent(&mut self, msg: &messages::Leave) -> bool {
        self.clock.witness(msg.ltime);
        let Some(ms) = self.members.get(&msg.node) else {
            return self.upsert_intent(&msg.node, IntentKind::Leave, msg.ltime);
        };
        if msg.ltime <= ms.status_ltime {
            return false;
        }
        if msg.node == self.name() && self.lifecycle == Lifecycle::Alive {
            // Someone says we left; we did not. Answer with a newer join.
            self.rejoin_needed = true;
            return false;
        }
        let name = msg.node.clone();
        let Some(ms) = self.members.get_mut(&name) else {
            return false;
        };
        ms.status_ltime = msg.ltime;
        match ms.member.status {
            MemberStatus::Alive => {
                ms.member.status = MemberStatus::Leaving;
                if msg.prune {
                    self.prune(&name);
                }
                true
            }
            MemberStatus::Failed => {
                ms.member.status = MemberStatus::Left;
                let m = ms.member.clone();
                self.failed.retain(|x| x != &name);
                self.left.push(name.clone());
                self.emit_member(MemberEventKind::Leave, m);
                if msg.prune {
                    self.prune(&name);
                }
                true
            }
            MemberStatus::Leaving | MemberStatus::Left => {
                if msg.prune {
                    self.prune(&name);
                }
                true
            }
            MemberStatus::None => false,
        }
    }

    fn prune(&mut self, name: &str) {
        self.left.retain(|x| x != name);
        self.erase(name);
    }

    /// Forgets a member and reports it reaped.
    pub fn erase(&mut self, name: &str) {
        if let Some(ms) = self.members.remove(name) {
            if let Some(c) = self.coord_client.as_mut() {
                c.forget(name);
            }
            self.coord_cache.remove(name);
            self.emit_member(MemberEventKind::Reap, ms.member);
        }
    }

    /// Applies a join intent; true if it is news.
    pub fn join_intent(&mut self, msg: &messages::Join) -> bool {
        self.clock.witness(msg.ltime);
        let Some(ms) = self.members.get_mut(&msg.node) else {
            return self.upsert_intent(&msg.node, IntentKind::Join, msg.ltime);
        };
        if msg.ltime <= ms.status_ltime {
            return false;
        }
        ms.status_ltime = msg.ltime;
        if ms.member.status == MemberStatus::Leaving {
            ms.member.status = MemberStatus::Alive;
        }
        true
    }

    // ----- user events -----

    /// Applies a user event; true if it is new.
    pub fn user_event(&mut self, e: &messages::UserEvent) -> bool {
        self.event_clock.witness(e.ltime);
        if e.ltime < self.event_min_time {
            return false;
        }
        let len = self.event_buffer.len() as u64;
        let cur = self.event_clock.time();
        if cur > len && e.ltime < cur - len {
            return false;
        }
        let idx = (e.ltime % len) as usize;
        let slot = &mut self.event_buffer[idx];
        match slot {
            Some(seen) if seen.ltime == e.ltime => {
                if seen
                    .events
                    .iter()
                    .any(|(n, p)| n == &e.name && p == &e.payload)
                {
                    return false;
                }
                seen.events.push((e.name.clone(), e.payload.clone()));
            }
            _ => {
                *slot = Some(UserEvents {
                    ltime: e.ltime,
                    events: vec![(e.name.clone(), e.payload.clone())],
                });
            }
        }
        self.events.push_back(Event::User {
            ltime: e.ltime,
            name: e.name.clone(),
            payload: e.payload.clone(),
            coalesce: e.cc,
        });
        true
    }

    // ----- queries -----

    /// Applies a query; true if it should be re-gossiped.
    pub fn query(&mut self, q: &Query) -> bool {
        self.query_clock.witness(q.ltime);
        if q.ltime < self.query_min_time {
            return false;
        }
        let len = self.query_buffer.len() as u64;
        let cur = self.query_clock.time();
        if cur > len && q.ltime < cur - len {
            return false;
        }
        let idx = (q.ltime % len) as usize;
        match &mut self.query_buffer[idx] {
            Some((t, ids)) if *t == q.ltime => {
                if ids.contains(&q.id) {
                    return false;
                }
                ids.push(q.id);
            }
            slot => *slot = Some((q.ltime, vec![q.id])),
        }
        let rebroadcast = q.flags & QUERY_FLAG_NO_BROADCAST == 0;
        if !self.should_process(&q.filters) {
            return rebroadcast;
        }
        let reply_to = ip_from_wire(&q.addr).map(|ip| SocketAddr::new(ip, q.port));
        let Some(reply_to) = reply_to else {
            return rebroadcast;
        };
        if q.flags & QUERY_FLAG_ACK != 0 {
            let ack = QueryResponse {
                ltime: q.ltime,
                id: q.id,
                from: self.name().to_string(),
                flags: QUERY_FLAG_ACK,
                payload: Vec::new(),
            };
            self.send_response(reply_to, &q.source_node, q.relay_factor, &ack);
        }
        let incoming = IncomingQuery {
            ltime: q.ltime,
            id: q.id,
            name: q.name.clone(),
            payload: q.payload.clone(),
            source_node: q.source_node.clone(),
            reply_to,
            relay_factor: q.relay_factor,
            deadline: self.now + Duration::from_nanos(q.timeout.max(0) as u64),
        };
        if q.name.starts_with(INTERNAL_QUERY_PREFIX) {
            self.internal.push(incoming);
        } else {
            self.events.push_back(Event::Query(incoming));
        }
        rebroadcast
    }

    /// Whether our node passes every filter of a query.
    fn should_process(&self, filters: &[Vec<u8>]) -> bool {
        for f in filters {
            match messages::decode_filter(f) {
                Ok(Filter::Nodes(nodes)) => {
                    if !nodes.iter().any(|n| n == self.name()) {
                        return false;
                    }
                }
                Ok(Filter::Tag { tag, expr }) => {
                    let value = self.config.tags.get(&tag).map(String::as_str).unwrap_or("");
                    match regex::Regex::new(&expr) {
                        Ok(re) if re.is_match(value) => {}
                        _ => return false,
                    }
                }
                Err(_) => return false,
            }
        }
        true
    }

    /// Sends a query response (or ack) to the asker, and through
    /// `relay_factor` random peers as well.
    pub fn send_response(
        &mut self,
        to: SocketAddr,
        dest_name: &str,
        relay_factor: u8,
        resp: &QueryResponse,
    ) {
        let raw = messages::encode(&Message::QueryResponse(resp.clone()));
        self.outbox.push((to, raw.clone()));
        if relay_factor == 0 || self.members.len() < relay_factor as usize + 1 {
            return;
        }
        let relay = messages::encode(&Message::Relay(messages::Relay {
            dest_ip: gossip::node::ip_to_wire(to.ip()),
            dest_port: to.port(),
            dest_name: dest_name.to_string(),
            message: raw,
        }));
        if relay.len() > self.config.query_response_size_limit {
            return;
        }
        let me = self.name().to_string();
        let mut candidates: Vec<SocketAddr> = self
            .members
            .values()
            .filter(|m| {
                m.member.status == MemberStatus::Alive
                    && m.member.vsn[1] >= 5
                    && m.member.name != me
            })
            .map(|m| SocketAddr::new(m.member.addr, m.member.port))
            .collect();
        candidates.sort();
        // Deterministic choice spread by query id keeps the core seedable.
        let k = (relay_factor as usize).min(candidates.len());
        let start = (resp.id as usize) % candidates.len().max(1);
        for i in 0..k {
            let to = candidates[(start + i) % candidates.len()];
            self.outbox.push((to, relay.clone()));
        }
    }

    fn query_response(&mut self, r: &QueryResponse) {
        let Some(p) = self.pending_queries.get_mut(&r.ltime) else {
            return;
        };
        if p.id != r.id || self.now > p.deadline {
            return;
        }
        let record = if r.flags & QUERY_FLAG_ACK != 0 {
            if !p.acks.insert(r.from.clone()) {
                return;
            }
            QueryRecord::Ack {
                from: r.from.clone(),
            }
        } else {
            if !p.responses.insert(r.from.clone()) {
                return;
            }
            QueryRecord::Response {
                from: r.from.clone(),
                payload: r.payload.clone(),
            }
        };
        self.events.push_back(Event::QueryResult {
            ltime: r.ltime,
            record,
        });
    }

    // ----- push-pull -----

    fn push_pull_state(&self) -> messages::PushPull {
        let mut status: Vec<(String, LamportTime)> = self
            .members
            .iter()
            .map(|(n, m)| (n.clone(), m.status_ltime))
            .collect();
        status.sort();
        messages::PushPull {
            ltime: self.clock.time(),
            status_ltimes: status,
            left_members: self.left.clone(),
            event_ltime: self.event_clock.time(),
            events: self.event_buffer.clone(),
            query_ltime: self.query_clock.time(),
        }
    }

    fn merge_push_pull(&mut self, pp: messages::PushPull, join: bool) {
        if pp.ltime > 0 {
            self.clock.witness(pp.ltime - 1);
        }
        if pp.event_ltime > 0 {
            self.event_clock.witness(pp.event_ltime - 1);
        }
        if pp.query_ltime > 0 {
            self.query_clock.witness(pp.query_ltime - 1);
        }
        let status: HashMap<&str, LamportTime> = pp
            .status_ltimes
            .iter()
            .map(|(n, t)| (n.as_str(), *t))
            .collect();
        let left: HashSet<&str> = pp.left_members.iter().map(String::as_str).collect();
        for name in &pp.left_members {
            let msg = messages::Leave {
                ltime: status.get(name.as_str()).copied().unwrap_or(0) + 1,
                node: name.clone(),
                prune: false,
            };
            self.leave_intent(&msg);
        }
        for (name, t) in &pp.status_ltimes {
            if left.contains(name.as_str()) {
                continue;
            }
            let msg = messages::Join {
                ltime: *t,
                node: name.clone(),
            };
            self.join_intent(&msg);
        }
        if join && self.event_join_ignore && pp.event_ltime > self.event_min_time {
            self.event_min_time = pp.event_ltime;
        }
        for ue in pp.events.into_iter().flatten() {
            for (name, payload) in ue.events {
                let e = messages::UserEvent {
                    ltime: ue.ltime,
                    name,
                    payload,
                    cc: false,
                };
                self.user_event(&e);
            }
        }
    }

    fn retransmit_limit(&self) -> usize {
        retransmit_limit(self.config.memberlist.retransmit_mult, self.num_nodes)
    }
}

impl Delegate for SerfState {
    fn node_meta(&mut self, limit: usize) -> Vec<u8> {
        let mut meta = tags::encode(&self.config.tags);
        meta.truncate(limit);
        meta
    }

    fn notify_msg(&mut self, buf: &[u8]) {
        let Ok(msg) = messages::decode(buf) else {
            return;
        };
        let (rebroadcast, queue) = match &msg {
            Message::Leave(l) => (self.leave_intent(l), 0),
            Message::Join(j) => (self.join_intent(j), 0),
            Message::UserEvent(e) => (self.user_event(e), 1),
            Message::Query(q) => (self.query(q), 2),
            Message::QueryResponse(r) => {
                self.query_response(r);
                (false, 0)
            }
            Message::Relay(r) => {
                if let Some(ip) = ip_from_wire(&r.dest_ip) {
                    self.outbox
                        .push((SocketAddr::new(ip, r.dest_port), r.message.clone()));
                }
                (false, 0)
            }
            _ => (false, 0),
        };
        if rebroadcast {
            let q = match queue {
                1 => &mut self.event_broadcasts,
                2 => &mut self.query_broadcasts,
                _ => &mut self.broadcasts,
            };
            q.push(None, buf.to_vec());
        }
    }

    fn broadcasts(&mut self, overhead: usize, limit: usize) -> Vec<Vec<u8>> {
        let tl = self.retransmit_limit();
        let mut out = self.broadcasts.take(overhead, limit, tl);
        let used = |v: &Vec<Vec<u8>>| v.iter().map(|m| m.len() + overhead).sum::<usize>();
        let q = self
            .query_broadcasts
            .take(overhead, limit.saturating_sub(used(&out)), tl);
        out.extend(q);
        let e = self
            .event_broadcasts
            .take(overhead, limit.saturating_sub(used(&out)), tl);
        out.extend(e);
        out
    }

    fn local_state(&mut self, _join: bool) -> Vec<u8> {
        messages::encode(&Message::PushPull(self.push_pull_state()))
    }

    fn merge_remote_state(&mut self, buf: &[u8], join: bool) {
        if let Ok(Message::PushPull(pp)) = messages::decode(buf) {
            self.merge_push_pull(pp, join);
        }
    }

    fn ack_payload(&mut self) -> Vec<u8> {
        let Some(c) = &self.coord_client else {
            return Vec::new();
        };
        let mut out = vec![PING_VERSION];
        coordinate::wire::encode(c.coordinate(), &mut out);
        out
    }

    fn notify_ping_complete(&mut self, node: &Node, rtt: Duration, payload: &[u8]) {
        let Some(client) = self.coord_client.as_mut() else {
            return;
        };
        let Some((&PING_VERSION, body)) = payload.split_first() else {
            return;
        };
        let Ok((other, _)) = coordinate::wire::decode(body) else {
            return;
        };
        if client.update(&node.name, &other, rtt).is_ok() {
            let mine = client.coordinate().clone();
            let me = self.config.name().to_string();
            self.coord_cache.insert(me, mine);
        }
        self.coord_cache.insert(node.name.clone(), other);
    }

    fn notify_join(&mut self, node: &Node) {
        self.node_join(node);
    }

    fn notify_leave(&mut self, node: &Node) {
        self.node_leave(node);
    }

    fn notify_update(&mut self, node: &Node) {
        self.node_update(node);
    }

    fn notify_conflict(&mut self, existing: &Node, _other: &Node) {
        if existing.name == self.name() && self.config.enable_name_conflict_resolution {
            self.conflict_seen = true;
        }
    }
}
