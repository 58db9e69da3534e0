//! [`Serf`]: the gossip core plus Serf's state, driven the same sans-IO way
//! (inputs, commands, `poll_*` outputs). After every call into the gossip
//! core, Serf sends what its state queued (query responses, relays),
//! answers internal queries and moves its own timers.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use gossip::swim::{Event as GossipEvent, StreamError, StreamId, Transmit};
use gossip::Memberlist;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::clock::LamportTime;
use crate::config::{Config, PROTOCOL_MAX, PROTOCOL_MIN, USER_EVENT_SANE_LIMIT};
use crate::event::{Event, IncomingQuery, QueryRecord};
use crate::member::{Member, MemberStatus};
use crate::messages::{self, Filter, Message, QueryResponse, QUERY_FLAG_ACK};
use crate::state::{Lifecycle, PendingQuery, SerfState, INTERNAL_QUERY_PREFIX};
use crate::tags::{self, Tags};

/// Why a command was refused; nothing changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SerfError {
    #[error("{0}")]
    Config(#[from] gossip::ConfigError),
    #[error("user event exceeds configured limit of {0} bytes before encoding")]
    UserEventTooLarge(usize),
    #[error("user event exceeds sane limit of {0} bytes before encoding")]
    UserEventInsane(usize),
    #[error("encoded user event exceeds configured limit of {0} bytes after encoding")]
    EncodedUserEventTooLarge(usize),
    #[error("query exceeds limit of {0} bytes")]
    QueryTooLarge(usize),
    #[error("response exceeds limit of {0} bytes")]
    ResponseTooLarge(usize),
    #[error("response is past the deadline")]
    PastDeadline,
    #[error("Encoded length of tags exceeds limit of 512 bytes")]
    TagsTooLarge,
    #[error("Serf can't Join after Leave or Shutdown")]
    NotAlive,
    #[error("Leave already in progress")]
    LeaveInProgress,
    #[error("invalid filter regular expression: {0}")]
    BadFilter(String),
    #[error("protocol version must be in [{PROTOCOL_MIN}, {PROTOCOL_MAX}]")]
    ProtocolVersion,
}

/// How to ask a query.
#[derive(Debug, Clone, Default)]
pub struct QueryParams {
    /// Only these nodes answer (empty: any).
    pub filter_nodes: Vec<String>,
    /// Only nodes whose tag matches the regular expression answer.
    pub filter_tags: Vec<(String, String)>,
    pub request_ack: bool,
    pub relay_factor: u8,
    /// Zero: the default (gossip interval × mult × ceil(log10(n+1))).
    pub timeout: Duration,
}

/// Phases of a graceful leave.
#[derive(Debug, Clone, Copy)]
enum LeavePhase {
    /// Gossiping our leave intent, until it is sent or `until`.
    Intent { until: Instant },
    /// The gossip layer is announcing our departure.
    Gossip { until: Instant },
    /// Giving the news time to spread.
    Propagate { until: Instant },
}

/// A join in flight: counts the push-pulls that come back.
#[derive(Debug, Clone)]
struct JoinOp {
    id: u64,
    waiting: Vec<SocketAddr>,
    joined: usize,
    errors: Vec<String>,
    ignore_old: bool,
}

/// Topic under which our own leave intent is queued (never a node name).
const LEAVE_TOPIC: &str = "\u{0}serf-leave";

/// A whole Serf node, sans-IO.
pub struct Serf {
    ml: Memberlist,
    st: SerfState,
    rng: SmallRng,
    started: Instant,
    next_reap: Instant,
    next_reconnect: Instant,
    next_queue_check: Instant,
    leave: Option<(LeavePhase, Instant)>,
    joins: Vec<JoinOp>,
    next_join: u64,
    /// The conflict-resolution query we asked, if any.
    conflict_query: Option<(LamportTime, usize, usize)>,
}

impl std::fmt::Debug for Serf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Serf")
            .field("name", &self.st.name())
            .field("members", &self.st.members.len())
            .finish_non_exhaustive()
    }
}

impl Serf {
    /// Starts a node alone; join others with [`join`](Self::join).
    pub fn new(mut config: Config, now: Instant, seed: u64) -> Result<Serf, SerfError> {
        if !(PROTOCOL_MIN..=PROTOCOL_MAX).contains(&config.protocol_version) {
            return Err(SerfError::ProtocolVersion);
        }
        if tags::encode(&config.tags).len() > gossip::config::META_MAX_SIZE {
            return Err(SerfError::TagsTooLarge);
        }
        config.memberlist.delegate_versions = [PROTOCOL_MIN, PROTOCOL_MAX, config.protocol_version];
        let mut st = SerfState::new(config.clone(), now, seed ^ 0x5e2f);
        let ml = Memberlist::new(config.memberlist.clone(), now, seed, &mut st)?;
        let c = &config;
        let mut s = Serf {
            ml,
            st,
            rng: SmallRng::seed_from_u64(seed.rotate_left(17)),
            started: now,
            next_reap: now + c.reap_interval,
            next_reconnect: now + c.reconnect_interval,
            next_queue_check: now + c.queue_check_interval,
            leave: None,
            joins: Vec::new(),
            next_join: 0,
            conflict_query: None,
        };
        s.after_gossip(now);
        Ok(s)
    }

    // ----- getters -----

    pub fn name(&self) -> &str {
        self.st.name()
    }

    pub fn memberlist(&self) -> &Memberlist {
        &self.ml
    }

    pub fn lifecycle(&self) -> Lifecycle {
        self.st.lifecycle
    }

    /// Every member Serf knows, failed and left ones until reaped.
    pub fn members(&self) -> Vec<Member> {
        let mut v: Vec<Member> = self.st.members.values().map(|m| m.member.clone()).collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    pub fn member(&self, name: &str) -> Option<&Member> {
        self.st.members.get(name).map(|m| &m.member)
    }

    pub fn local_member(&self) -> Option<&Member> {
        self.member(self.st.name())
    }

    pub fn tags(&self) -> &Tags {
        &self.st.config.tags
    }

    /// Alive gossip members (memberlist's `NumMembers`).
    pub fn num_nodes(&self) -> usize {
        self.ml.num_alive()
    }

    /// Our own network coordinate.
    pub fn coordinate(&self) -> Option<&coordinate::Coordinate> {
        self.st.coord_client.as_ref().map(|c| c.coordinate())
    }

    /// The last coordinate heard from `node` (ours for our own name).
    pub fn cached_coordinate(&self, node: &str) -> Option<&coordinate::Coordinate> {
        if node == self.name() {
            return self.coordinate();
        }
        self.st.coord_cache.get(node)
    }

    pub fn clocks(&self) -> (LamportTime, LamportTime, LamportTime) {
        (
            self.st.clock.time(),
            self.st.event_clock.time(),
            self.st.query_clock.time(),
        )
    }

    /// Serf's `Stats()` keys and values.
    pub fn stats(&self) -> BTreeMap<String, String> {
        let count = |s: MemberStatus| {
            self.st
                .members
                .values()
                .filter(|m| m.member.status == s)
                .count()
                .to_string()
        };
        let mut m = BTreeMap::new();
        m.insert("members".into(), self.st.members.len().to_string());
        m.insert("failed".into(), count(MemberStatus::Failed));
        m.insert("left".into(), count(MemberStatus::Left));
        m.insert("health_score".into(), self.ml.health_score().to_string());
        m.insert("member_time".into(), self.st.clock.time().to_string());
        m.insert("event_time".into(), self.st.event_clock.time().to_string());
        m.insert("query_time".into(), self.st.query_clock.time().to_string());
        m.insert("intent_queue".into(), self.st.broadcasts.len().to_string());
        m.insert(
            "event_queue".into(),
            self.st.event_broadcasts.len().to_string(),
        );
        m.insert(
            "query_queue".into(),
            self.st.query_broadcasts.len().to_string(),
        );
        m.insert("encrypted".into(), self.ml.keyring().is_some().to_string());
        m.insert(
            "coordinate_resets".into(),
            self.st
                .coord_client
                .as_ref()
                .map(|c| c.stats().resets)
                .unwrap_or(0)
                .to_string(),
        );
        m
    }

    pub fn default_query_timeout(&self) -> Duration {
        let n = self.ml.num_alive();
        let scale = ((n + 1) as f64).log10().ceil() as u32;
        self.st.config.memberlist.gossip_interval * self.st.config.query_timeout_mult * scale.max(1)
    }

    // ----- outputs -----

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.ml.poll_transmit()
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        while let Some(e) = self.st.events.pop_front() {
            if let Event::QueryResult { ltime, record } = &e {
                if self.take_conflict_record(*ltime, record) {
                    continue;
                }
            }
            return Some(e);
        }
        None
    }

    pub fn poll_timeout(&self) -> Instant {
        let mut t = self
            .ml
            .poll_timeout()
            .min(self.next_reap)
            .min(self.next_reconnect)
            .min(self.next_queue_check);
        if let Some((phase, _)) = self.leave {
            t = t.min(match phase {
                LeavePhase::Intent { until }
                | LeavePhase::Gossip { until }
                | LeavePhase::Propagate { until } => until,
            });
        }
        for q in self.st.pending_queries.values() {
            t = t.min(q.deadline);
        }
        t
    }

    // ----- inputs -----

    pub fn handle_packet(&mut self, now: Instant, from: SocketAddr, buf: &[u8]) {
        self.st.now = now;
        self.ml.handle_packet(now, from, buf, &mut self.st);
        self.after_gossip(now);
    }

    pub fn handle_stream(
        &mut self,
        now: Instant,
        from: SocketAddr,
        request: &[u8],
    ) -> Option<Vec<u8>> {
        self.st.now = now;
        let reply = self.ml.handle_stream(now, from, request, &mut self.st);
        self.after_gossip(now);
        reply
    }

    pub fn handle_stream_reply(
        &mut self,
        now: Instant,
        id: StreamId,
        reply: Result<Vec<u8>, StreamError>,
    ) {
        self.st.now = now;
        self.ml.handle_stream_reply(now, id, reply, &mut self.st);
        self.after_gossip(now);
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        self.st.now = now;
        self.ml.handle_timeout(now, &mut self.st);
        if now >= self.next_reap {
            self.next_reap = now + self.st.config.reap_interval;
            self.reap(now);
        }
        if now >= self.next_reconnect {
            self.next_reconnect = now + self.st.config.reconnect_interval;
            self.reconnect(now);
        }
        if now >= self.next_queue_check {
            self.next_queue_check = now + self.st.config.queue_check_interval;
            self.check_queues();
        }
        self.expire_queries(now);
        self.after_gossip(now);
        self.advance_leave(now);
    }

    // ----- commands -----

    /// Joins through `addrs`; the result arrives as [`Event::JoinResult`]
    /// with the returned id. `ignore_old` skips user events older than
    /// the cluster's event clock.
    pub fn join(
        &mut self,
        now: Instant,
        addrs: &[SocketAddr],
        ignore_old: bool,
    ) -> Result<u64, SerfError> {
        if self.st.lifecycle != Lifecycle::Alive {
            return Err(SerfError::NotAlive);
        }
        self.next_join += 1;
        let id = self.next_join;
        self.joins.push(JoinOp {
            id,
            waiting: addrs.to_vec(),
            joined: 0,
            errors: Vec::new(),
            ignore_old,
        });
        if ignore_old {
            self.st.event_join_ignore = true;
        }
        self.st.now = now;
        self.ml.join(now, addrs, &mut self.st);
        self.after_gossip(now);
        Ok(id)
    }

    /// Starts a graceful leave; [`Event::LeaveComplete`] follows.
    pub fn leave(&mut self, now: Instant) -> Result<(), SerfError> {
        match self.st.lifecycle {
            Lifecycle::Left => return Ok(()),
            Lifecycle::Leaving => return Err(SerfError::LeaveInProgress),
            Lifecycle::Shutdown => return Err(SerfError::NotAlive),
            Lifecycle::Alive => {}
        }
        self.st.now = now;
        self.st.lifecycle = Lifecycle::Leaving;
        let msg = messages::Leave {
            ltime: self.st.clock.time(),
            node: self.name().to_string(),
            prune: false,
        };
        self.st.clock.increment();
        self.st.leave_intent(&msg);
        let until = now + self.st.config.broadcast_timeout;
        if self.has_alive_members() {
            let raw = messages::encode(&Message::Leave(msg));
            self.st
                .broadcasts
                .push_notify(Some(LEAVE_TOPIC.into()), raw);
            self.leave = Some((LeavePhase::Intent { until }, now));
        } else {
            self.leave = Some((LeavePhase::Intent { until: now }, now));
        }
        self.advance_leave(now);
        Ok(())
    }

    /// Marks a failed node as left (or erases it with `prune`), and tells
    /// the cluster.
    pub fn force_leave(&mut self, now: Instant, node: &str, prune: bool) {
        self.st.now = now;
        let msg = messages::Leave {
            ltime: self.st.clock.time(),
            node: node.to_string(),
            prune,
        };
        self.st.clock.increment();
        self.st.leave_intent(&msg);
        if self.has_alive_members() {
            self.st.broadcast(&Message::Leave(msg));
        }
    }

    /// Fires a user event to the whole cluster.
    pub fn user_event(
        &mut self,
        now: Instant,
        name: &str,
        payload: &[u8],
        coalesce: bool,
    ) -> Result<(), SerfError> {
        let limit = self.st.config.user_event_size_limit;
        let size = name.len() + payload.len();
        if size > limit {
            return Err(SerfError::UserEventTooLarge(limit));
        }
        if size > USER_EVENT_SANE_LIMIT {
            return Err(SerfError::UserEventInsane(USER_EVENT_SANE_LIMIT));
        }
        let msg = messages::UserEvent {
            ltime: self.st.event_clock.time(),
            name: name.to_string(),
            payload: payload.to_vec(),
            cc: coalesce,
        };
        let raw = messages::encode(&Message::UserEvent(msg.clone()));
        if raw.len() > limit {
            return Err(SerfError::EncodedUserEventTooLarge(limit));
        }
        if raw.len() > USER_EVENT_SANE_LIMIT {
            return Err(SerfError::UserEventInsane(USER_EVENT_SANE_LIMIT));
        }
        self.st.now = now;
        self.st.event_clock.increment();
        self.st.user_event(&msg);
        self.st.event_broadcasts.push(None, raw);
        Ok(())
    }

    /// Asks the cluster; records arrive as [`Event::QueryResult`] with the
    /// returned Lamport time, ending with [`QueryRecord::Done`].
    pub fn query(
        &mut self,
        now: Instant,
        name: &str,
        payload: &[u8],
        params: &QueryParams,
    ) -> Result<LamportTime, SerfError> {
        let mut filters = Vec::new();
        if !params.filter_nodes.is_empty() {
            filters.push(messages::encode_filter(&Filter::Nodes(
                params.filter_nodes.clone(),
            )));
        }
        for (tag, expr) in &params.filter_tags {
            regex::Regex::new(expr).map_err(|e| SerfError::BadFilter(e.to_string()))?;
            filters.push(messages::encode_filter(&Filter::Tag {
                tag: tag.clone(),
                expr: expr.clone(),
            }));
        }
        let timeout = if params.timeout.is_zero() {
            self.default_query_timeout()
        } else {
            params.timeout
        };
        let adv = self.st.config.memberlist.advertise;
        let q = messages::Query {
            ltime: self.st.query_clock.time(),
            id: self.rng.random::<u32>() >> 1,
            addr: gossip::node::ip_to_wire(adv.ip()),
            port: adv.port(),
            source_node: self.name().to_string(),
            filters,
            flags: if params.request_ack {
                QUERY_FLAG_ACK
            } else {
                0
            },
            relay_factor: params.relay_factor,
            timeout: timeout.as_nanos().min(i64::MAX as u128) as i64,
            name: name.to_string(),
            payload: payload.to_vec(),
        };
        let raw = messages::encode(&Message::Query(q.clone()));
        if raw.len() > self.st.config.query_size_limit {
            return Err(SerfError::QueryTooLarge(self.st.config.query_size_limit));
        }
        self.st.now = now;
        self.st
            .pending_queries
            .insert(q.ltime, PendingQuery::new(q.id, now + timeout));
        self.st.query(&q);
        self.st.query_broadcasts.push(None, raw);
        self.after_gossip(now);
        Ok(q.ltime)
    }

    /// Answers a query delivered to us.
    pub fn respond(
        &mut self,
        now: Instant,
        q: &IncomingQuery,
        payload: &[u8],
    ) -> Result<(), SerfError> {
        let resp = QueryResponse {
            ltime: q.ltime,
            id: q.id,
            from: self.name().to_string(),
            flags: 0,
            payload: payload.to_vec(),
        };
        let raw = messages::encode(&Message::QueryResponse(resp.clone()));
        let limit = self.st.config.query_response_size_limit;
        if raw.len() > limit {
            return Err(SerfError::ResponseTooLarge(limit));
        }
        if now > q.deadline {
            return Err(SerfError::PastDeadline);
        }
        self.st.now = now;
        self.st
            .send_response(q.reply_to, &q.source_node, q.relay_factor, &resp);
        self.after_gossip(now);
        Ok(())
    }

    /// Replaces our tags and announces them.
    pub fn set_tags(&mut self, now: Instant, tags: Tags) -> Result<(), SerfError> {
        if tags::encode(&tags).len() > gossip::config::META_MAX_SIZE {
            return Err(SerfError::TagsTooLarge);
        }
        self.st.config.tags = tags;
        self.st.now = now;
        self.ml.update_meta(now, &mut self.st);
        self.after_gossip(now);
        Ok(())
    }

    /// Restores the clocks a snapshot recorded, so events and queries
    /// already handled before a restart are not handled again.
    pub fn restore(&mut self, prev: &crate::snapshot::Previous) {
        self.st.clock.witness(prev.clock);
        self.st.event_clock.witness(prev.event_clock);
        self.st.query_clock.witness(prev.query_clock);
        self.st.event_min_time = prev.event_clock + 1;
        self.st.query_min_time = prev.query_clock + 1;
    }

    /// Stops participating at once (no leave message).
    pub fn shutdown(&mut self) {
        self.st.lifecycle = Lifecycle::Shutdown;
    }

    /// Lifts the ban on old events after a join with `ignore_old`.
    fn finish_join(&mut self, i: usize) {
        let op = self.joins.remove(i);
        if op.ignore_old && !self.joins.iter().any(|j| j.ignore_old) {
            self.st.event_join_ignore = false;
        }
        if op.joined > 0 {
            self.broadcast_join();
        }
        self.st.events.push_back(Event::JoinResult {
            id: op.id,
            joined: op.joined,
            errors: op.errors,
        });
    }

    fn broadcast_join(&mut self) {
        let msg = messages::Join {
            ltime: self.st.clock.time(),
            node: self.name().to_string(),
        };
        self.st.clock.witness(msg.ltime);
        self.st.join_intent(&msg);
        self.st.broadcast(&Message::Join(msg));
    }

    fn has_alive_members(&self) -> bool {
        let me = self.name();
        self.st
            .members
            .values()
            .any(|m| m.member.name != me && m.member.status == MemberStatus::Alive)
    }

    /// Work to do after every call into the gossip core.
    fn after_gossip(&mut self, now: Instant) {
        self.st.num_nodes = self.ml.num_alive();
        for (to, msg) in std::mem::take(&mut self.st.outbox) {
            self.ml.send_user_packet(to, &msg);
        }
        while let Some(e) = self.ml.poll_event() {
            self.gossip_event(e);
        }
        if std::mem::take(&mut self.st.rejoin_needed) {
            self.broadcast_join();
        }
        for q in std::mem::take(&mut self.st.internal) {
            crate::internal::answer(self, now, &q);
        }
        if std::mem::take(&mut self.st.conflict_seen) && self.conflict_query.is_none() {
            self.start_conflict_resolution(now);
        }
        for t in self.st.broadcasts.take_finished() {
            if t.as_deref() == Some(LEAVE_TOPIC) {
                if let Some((LeavePhase::Intent { .. }, start)) = self.leave {
                    self.leave = Some((LeavePhase::Intent { until: now }, start));
                }
            }
        }
        for (to, msg) in std::mem::take(&mut self.st.outbox) {
            self.ml.send_user_packet(to, &msg);
        }
    }

    fn gossip_event(&mut self, e: GossipEvent) {
        match e {
            GossipEvent::Joined { addr } | GossipEvent::JoinFailed { addr, .. } => {
                let ok = matches!(e, GossipEvent::Joined { .. });
                let Some(i) = self.joins.iter().position(|j| j.waiting.contains(&addr)) else {
                    return;
                };
                let op = &mut self.joins[i];
                if let Some(p) = op.waiting.iter().position(|a| *a == addr) {
                    op.waiting.remove(p);
                }
                if ok {
                    op.joined += 1;
                } else if let GossipEvent::JoinFailed { reason, .. } = e {
                    op.errors
                        .push(format!("Failed to join {}: {reason}", addr.ip()));
                }
                if op.waiting.is_empty() {
                    self.finish_join(i);
                }
            }
            GossipEvent::LeaveDone => {
                if let Some((LeavePhase::Gossip { .. }, start)) = self.leave {
                    self.leave = Some((LeavePhase::Gossip { until: self.st.now }, start));
                }
            }
        }
    }

    fn advance_leave(&mut self, now: Instant) {
        loop {
            let Some((phase, start)) = self.leave else {
                return;
            };
            match phase {
                LeavePhase::Intent { until } if now >= until => {
                    self.st.now = now;
                    self.ml.leave(now, &mut self.st);
                    let until = now + self.st.config.broadcast_timeout;
                    self.leave = Some((LeavePhase::Gossip { until }, start));
                    self.after_gossip(now);
                }
                LeavePhase::Gossip { until } if now >= until => {
                    let until = now + self.st.config.leave_propagate_delay;
                    self.leave = Some((LeavePhase::Propagate { until }, start));
                }
                LeavePhase::Propagate { until } if now >= until => {
                    self.leave = None;
                    if self.st.lifecycle != Lifecycle::Shutdown {
                        self.st.lifecycle = Lifecycle::Left;
                    }
                    self.st.events.push_back(Event::LeaveComplete {
                        waited: now.saturating_duration_since(start),
                    });
                    return;
                }
                _ => return,
            }
        }
    }

    fn reap(&mut self, now: Instant) {
        let reconnect = self.st.config.reconnect_timeout;
        let tombstone = self.st.config.tombstone_timeout;
        let overrider = self.st.config.reconnect_timeout_override.clone();
        let expired = |st: &SerfState, names: &[String], timeout: Duration| -> Vec<String> {
            names
                .iter()
                .filter(|n| {
                    st.members.get(*n).is_some_and(|m| {
                        let timeout = overrider
                            .as_ref()
                            .map_or(timeout, |o| o.timeout(&m.member, timeout));
                        m.leave_time
                            .is_some_and(|t| now.saturating_duration_since(t) > timeout)
                    })
                })
                .cloned()
                .collect()
        };
        let failed = expired(&self.st, &self.st.failed, reconnect);
        let left = expired(&self.st, &self.st.left, tombstone);
        for n in failed {
            self.st.failed.retain(|x| x != &n);
            self.st.erase(&n);
        }
        for n in left {
            self.st.left.retain(|x| x != &n);
            self.st.erase(&n);
        }
        self.st.reap_intents(now);
    }

    /// Tries to rejoin one failed member, with a probability that grows
    /// with the share of failed members.
    fn reconnect(&mut self, now: Instant) {
        let n_failed = self.st.failed.len();
        if n_failed == 0 {
            return;
        }
        let alive = (self.st.members.len() - n_failed - self.st.left.len()).max(1);
        let prob = n_failed as f32 / alive as f32;
        if self.rng.random::<f32>() > prob {
            return;
        }
        let name = self.st.failed[self.rng.random_range(0..n_failed)].clone();
        let Some(m) = self.st.members.get(&name) else {
            return;
        };
        let addr = SocketAddr::new(m.member.addr, m.member.port);
        self.st.now = now;
        self.ml.join(now, &[addr], &mut self.st);
    }

    fn check_queues(&mut self) {
        let max = if self.st.config.min_queue_depth > 0 {
            (2 * self.st.members.len()).max(self.st.config.min_queue_depth)
        } else {
            self.st.config.max_queue_depth
        };
        for q in [
            &mut self.st.broadcasts,
            &mut self.st.event_broadcasts,
            &mut self.st.query_broadcasts,
        ] {
            if q.len() > max {
                q.prune(max);
            }
        }
    }

    fn expire_queries(&mut self, now: Instant) {
        let done: Vec<LamportTime> = self
            .st
            .pending_queries
            .iter()
            .filter(|(_, q)| q.deadline <= now)
            .map(|(t, _)| *t)
            .collect();
        for t in done {
            self.st.pending_queries.remove(&t);
            if self.conflict_query.is_some_and(|(ct, _, _)| ct == t) {
                self.finish_conflict_resolution();
                continue;
            }
            self.st.events.push_back(Event::QueryResult {
                ltime: t,
                record: QueryRecord::Done,
            });
        }
    }

    fn start_conflict_resolution(&mut self, now: Instant) {
        let name = self.name().to_string();
        let qname = format!("{INTERNAL_QUERY_PREFIX}conflict");
        if let Ok(t) = self.query(now, &qname, name.as_bytes(), &QueryParams::default()) {
            self.conflict_query = Some((t, 0, 0));
        }
    }

    /// Counts a conflict response; called from the event stream.
    pub(crate) fn take_conflict_record(
        &mut self,
        ltime: LamportTime,
        record: &QueryRecord,
    ) -> bool {
        let Some((t, responses, matching)) = self.conflict_query.as_mut() else {
            return false;
        };
        if *t != ltime {
            return false;
        }
        if let QueryRecord::Response { payload, .. } = record {
            if let Ok(Message::ConflictResponse(m)) = messages::decode(payload) {
                *responses += 1;
                let adv = self.st.config.memberlist.advertise;
                if m.addr == gossip::node::ip_to_wire(adv.ip()) && m.port == adv.port() {
                    *matching += 1;
                }
            }
        }
        true
    }

    fn finish_conflict_resolution(&mut self) {
        let Some((_, responses, matching)) = self.conflict_query.take() else {
            return;
        };
        let majority = responses / 2 + 1;
        if matching < majority {
            self.st.lifecycle = Lifecycle::Shutdown;
            self.st.events.push_back(Event::ConflictLost);
        }
    }

    pub(crate) fn state_mut(&mut self) -> &mut SerfState {
        &mut self.st
    }

    pub(crate) fn memberlist_mut(&mut self) -> &mut Memberlist {
        &mut self.ml
    }

    /// Elapsed since start (for stats and snapshots).
    pub fn uptime(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.started)
    }
}
