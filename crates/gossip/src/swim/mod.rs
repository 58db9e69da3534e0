//! The SWIM + Lifeguard core, sans-IO.
//!
//! [`Memberlist`] never reads a clock, opens a socket or draws entropy from
//! the system: time is an argument, randomness comes from a seeded generator,
//! and everything to send is queued for the caller. Its methods come in four
//! kinds:
//!
//! - inputs `handle_packet`, `handle_stream`, `handle_stream_reply`,
//!   `handle_timeout`: something happened;
//! - commands `join`, `leave`, `update_meta`, `send_user_packet`,
//!   `send_user_stream`: the layer above wants something;
//! - outputs `poll_transmit`, `poll_event`, `poll_timeout`: drain these after
//!   every input or command, in any order;
//! - getters `members`, `health_score`, `metrics`, ...
//!
//! Every input and command takes the [`Delegate`] to call back into; the core
//! does not own it. Handlers live in submodules: [`probe`] (failure
//! detection), [`membership`] (alive/suspect/dead rules), [`packet`] (packet
//! framing in and out), [`stream`] (push-pull, TCP ping, stream user
//! messages).

mod members;
mod membership;
mod packet;
mod probe;
pub mod stream;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::awareness::Awareness;
use crate::broadcast::BroadcastQueue;
use crate::config::{Config, ConfigError, META_MAX_SIZE};
use crate::delegate::Delegate;
use crate::message::Alive;
use crate::node::{ip_to_wire, Member, Node, State};
use crate::suspicion::Suspicion;
use members::{Members, Slot};

pub use probe::ProbeStats;
pub use stream::{frame_len, StreamError};

/// Identifies one outgoing stream exchange, so its reply finds its way back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamId(pub u64);

/// Something to put on the network.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub enum Transmit {
    /// One UDP datagram.
    Packet { to: SocketAddr, payload: Vec<u8> },
    /// Open a TCP connection to `to`, write `payload`; if `expect_reply`,
    /// read one frame back (see [`frame_len`]) and hand it to
    /// [`Memberlist::handle_stream_reply`]; give up at `deadline`.
    Stream {
        id: StreamId,
        to: SocketAddr,
        payload: Vec<u8>,
        expect_reply: bool,
        deadline: Instant,
    },
}

/// What the layer above may want to know beyond the delegate's callbacks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A join push-pull with `addr` completed and was merged.
    Joined { addr: SocketAddr },
    /// A join push-pull with `addr` failed.
    JoinFailed { addr: SocketAddr, reason: String },
    /// Our leave message has been gossiped enough (or nobody is left to tell).
    LeaveDone,
}

/// Counters for metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Metrics {
    pub packets_in: u64,
    pub packets_out: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Packets and streams dropped because they could not be read.
    pub malformed: u64,
    pub streams_out: u64,
    pub streams_in: u64,
    pub probes: u64,
    pub probe_failures: u64,
    /// Suspicions we raised or learnt of and that ended in a dead node.
    pub suspicions_confirmed: u64,
    pub refutations: u64,
}

/// One node's SWIM state machine.
pub struct Memberlist {
    config: Config,
    rng: SmallRng,
    /// All known members by name (self included).
    members: Members,
    /// Probe order: the members' slots, shuffled when a round wraps.
    order: Vec<Slot>,
    probe_index: usize,
    incarnation: u32,
    seq_no: u32,
    awareness: Awareness,
    broadcasts: BroadcastQueue,
    suspicions: HashMap<String, Suspicion>,
    probe: probe::Prober,
    streams: HashMap<StreamId, stream::Pending>,
    next_stream: u64,
    next_probe: Instant,
    next_gossip: Instant,
    next_push_pull: Option<Instant>,
    left: bool,
    leave_reported: bool,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    metrics: Metrics,
}

impl std::fmt::Debug for Memberlist {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Memberlist")
            .field("name", &self.config.name)
            .field("members", &self.members.len())
            .field("incarnation", &self.incarnation)
            .finish_non_exhaustive()
    }
}

/// Topic of broadcasts about a node.
fn topic(name: &str) -> Option<String> {
    Some(name.to_string())
}

impl Memberlist {
    /// Starts a node alone in its cluster: it knows only itself and queues
    /// its own alive message. `seed` drives every random choice.
    pub fn new(
        config: Config,
        now: Instant,
        seed: u64,
        delegate: &mut impl Delegate,
    ) -> Result<Memberlist, ConfigError> {
        config.validate()?;
        let mut rng = SmallRng::seed_from_u64(seed);
        let stagger = |rng: &mut SmallRng, d: Duration| {
            let ns = d.as_nanos().max(1) as u64;
            now + Duration::from_nanos(rng.random_range(0..ns))
        };
        let next_probe = stagger(&mut rng, config.probe_interval);
        let next_gossip = stagger(&mut rng, config.gossip_interval);
        let next_push_pull = (!config.push_pull_interval.is_zero())
            .then(|| stagger(&mut rng, config.push_pull_interval));
        let awareness = Awareness::new(if config.lifeguard.awareness {
            config.awareness_max_multiplier
        } else {
            1
        });
        let mut m = Memberlist {
            rng,
            members: Members::default(),
            order: Vec::new(),
            probe_index: 0,
            incarnation: 0,
            seq_no: 0,
            awareness,
            broadcasts: BroadcastQueue::new(),
            suspicions: HashMap::new(),
            probe: probe::Prober::default(),
            streams: HashMap::new(),
            next_stream: 0,
            next_probe,
            next_gossip,
            next_push_pull,
            left: false,
            leave_reported: false,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            metrics: Metrics::default(),
            config,
        };
        let meta = m.own_meta(delegate);
        let alive = Alive {
            incarnation: m.next_incarnation(),
            node: m.config.name.clone(),
            addr: ip_to_wire(m.config.advertise.ip()),
            port: m.config.advertise.port(),
            meta,
            vsn: m.config.vsn().to_vec(),
        };
        m.alive_node(now, alive, true, delegate);
        Ok(m)
    }

    // ----- getters -----

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// Every known member, self included, dead and left ones until reaped.
    pub fn members(&self) -> impl Iterator<Item = &Node> {
        self.members.values().map(|m| &m.node)
    }

    pub fn member(&self, name: &str) -> Option<&Node> {
        self.members.get(name).map(|m| &m.node)
    }

    /// Members that are alive or suspect (memberlist's `NumMembers`).
    pub fn num_alive(&self) -> usize {
        self.members
            .values()
            .filter(|m| !m.node.state.is_dead_or_left())
            .count()
    }

    /// Lifeguard's local health score; 0 is healthy.
    pub fn health_score(&self) -> usize {
        self.awareness.health_score()
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    pub fn probe_stats(&self) -> &ProbeStats {
        self.probe.stats()
    }

    pub fn incarnation(&self) -> u32 {
        self.incarnation
    }

    /// The gossip keyring, if encryption is on.
    pub fn keyring(&self) -> Option<&crate::keyring::Keyring> {
        self.config.keyring.as_ref()
    }

    /// The keyring, to install, use or remove keys at run time.
    pub fn keyring_mut(&mut self) -> Option<&mut crate::keyring::Keyring> {
        self.config.keyring.as_mut()
    }

    pub fn has_left(&self) -> bool {
        self.left
    }

    /// Broadcasts waiting to be gossiped.
    pub fn queued_broadcasts(&self) -> usize {
        self.broadcasts.len()
    }

    /// The estimate of cluster size used to scale timeouts and retransmits.
    pub fn estimated_nodes(&self) -> usize {
        self.order.len()
    }

    // ----- outputs -----

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// The next instant [`handle_timeout`](Self::handle_timeout) has work.
    pub fn poll_timeout(&self) -> Instant {
        let mut t = self.next_probe.min(self.next_gossip);
        if let Some(p) = self.next_push_pull {
            t = t.min(p);
        }
        if let Some(p) = self.probe.next_deadline() {
            t = t.min(p);
        }
        for s in self.suspicions.values() {
            t = t.min(s.deadline());
        }
        for p in self.streams.values() {
            t = t.min(p.deadline + stream::GRACE);
        }
        t
    }

    // ----- inputs -----

    /// Runs every timer that is due at `now`.
    pub fn handle_timeout(&mut self, now: Instant, d: &mut impl Delegate) {
        self.expire_suspicions(now, d);
        self.probe_timers(now, d);
        self.expire_streams(now, d);
        if now >= self.next_probe {
            self.next_probe = now + self.config.probe_interval;
            self.start_probe(now, d);
        }
        if now >= self.next_gossip {
            self.next_gossip = now + self.config.gossip_interval;
            self.gossip(now, d);
        }
        if let Some(at) = self.next_push_pull {
            if now >= at {
                let n = self.order.len();
                self.next_push_pull =
                    Some(now + push_pull_scale(self.config.push_pull_interval, n));
                self.periodic_push_pull(now, d);
            }
        }
        self.report_finished_broadcasts();
    }

    // ----- commands -----

    /// Joins through `addrs`: a push-pull with each. Results arrive as
    /// [`Event::Joined`] / [`Event::JoinFailed`].
    pub fn join(&mut self, now: Instant, addrs: &[SocketAddr], d: &mut impl Delegate) {
        for &addr in addrs {
            self.start_push_pull(now, addr, true, d);
        }
    }

    /// Announces a graceful leave; [`Event::LeaveDone`] follows once it
    /// has been gossiped (or at once if nobody else is alive).
    pub fn leave(&mut self, now: Instant, d: &mut impl Delegate) {
        if self.left {
            return;
        }
        self.left = true;
        let inc = self
            .members
            .get(&self.config.name)
            .map(|m| m.node.incarnation)
            .unwrap_or(self.incarnation);
        let dead = crate::message::Dead {
            incarnation: inc,
            node: self.config.name.clone(),
            from: self.config.name.clone(),
        };
        self.dead_node(now, dead, d);
        if !self.any_other_alive() {
            self.report_leave_done();
        }
    }

    /// Re-reads our meta from the delegate and announces it with a new
    /// incarnation.
    pub fn update_meta(&mut self, now: Instant, d: &mut impl Delegate) {
        let meta = self.own_meta(d);
        let alive = Alive {
            incarnation: self.next_incarnation(),
            node: self.config.name.clone(),
            addr: ip_to_wire(self.config.advertise.ip()),
            port: self.config.advertise.port(),
            meta,
            vsn: self.config.vsn().to_vec(),
        };
        self.alive_node(now, alive, true, d);
    }

    /// Sends a user message in one packet (memberlist's `SendBestEffort`).
    pub fn send_user_packet(&mut self, to: SocketAddr, msg: &[u8]) {
        let mut buf = Vec::with_capacity(msg.len() + 1);
        buf.push(crate::MessageType::User as u8);
        buf.extend_from_slice(msg);
        self.raw_send_packet(to, None, buf);
    }

    /// Sends a user message over a stream (memberlist's `SendReliable`).
    pub fn send_user_stream(&mut self, now: Instant, to: SocketAddr, msg: &[u8]) {
        let payload = stream::user_frame(msg);
        self.open_stream(
            now,
            to,
            payload,
            false,
            stream::Pending::user(now, &self.config),
        );
    }

    // ----- shared helpers -----

    fn own_meta(&self, d: &mut impl Delegate) -> Vec<u8> {
        let mut meta = d.node_meta(META_MAX_SIZE);
        meta.truncate(META_MAX_SIZE);
        meta
    }

    fn next_incarnation(&mut self) -> u32 {
        self.incarnation = self.incarnation.wrapping_add(1);
        self.incarnation
    }

    fn next_seq(&mut self) -> u32 {
        self.seq_no = self.seq_no.wrapping_add(1);
        self.seq_no
    }

    fn any_other_alive(&self) -> bool {
        self.members
            .values()
            .any(|m| m.node.name != self.config.name && !m.node.state.is_dead_or_left())
    }

    fn report_leave_done(&mut self) {
        if !self.leave_reported {
            self.leave_reported = true;
            self.events.push_back(Event::LeaveDone);
        }
    }

    fn report_finished_broadcasts(&mut self) {
        for t in self.broadcasts.take_finished() {
            if self.left && t.as_deref() == Some(self.config.name.as_str()) {
                self.report_leave_done();
            }
        }
    }

    /// Up to `k` distinct random members for which `keep` holds (memberlist
    /// tries 3n random picks, exhaustive for small n, cheap for large).
    fn random_members(&mut self, k: usize, keep: impl Fn(&Member) -> bool) -> Vec<Slot> {
        let n = self.order.len();
        let mut out: Vec<Slot> = Vec::with_capacity(k);
        if n == 0 {
            return out;
        }
        for _ in 0..3 * n {
            if out.len() >= k {
                break;
            }
            let slot = self.order[self.rng.random_range(0..n)];
            let Some(m) = self.members.at(slot) else {
                continue;
            };
            if m.node.name == self.config.name || !keep(m) || out.contains(&slot) {
                continue;
            }
            out.push(slot);
        }
        out
    }

    fn retransmit_limit(&self) -> usize {
        crate::broadcast::retransmit_limit(self.config.retransmit_mult, self.order.len())
    }

    /// Gossips queued broadcasts to a few random live (or recently dead)
    /// members.
    fn gossip(&mut self, now: Instant, d: &mut impl Delegate) {
        let dead_time = self.config.gossip_to_the_dead_time;
        let targets = self.random_members(self.config.gossip_nodes, |m| match m.node.state {
            State::Alive | State::Suspect => true,
            State::Dead => now.saturating_duration_since(m.state_change) <= dead_time,
            State::Left => false,
        });
        let avail = self.packet_budget(packet::COMPOUND_HEADER_OVERHEAD);
        for slot in targets {
            let msgs = self.take_broadcasts(packet::COMPOUND_OVERHEAD, avail, d);
            if msgs.is_empty() {
                return;
            }
            let Some((addr, pmax)) = self.members.at(slot).map(|m| (m.node.addr, m.node.pmax()))
            else {
                continue;
            };
            let payload = if msgs.len() == 1 {
                msgs.into_iter().next().unwrap_or_default()
            } else {
                match crate::compound::make_many(&msgs) {
                    Ok(mut v) if v.len() == 1 => v.remove(0),
                    _ => continue,
                }
            };
            self.raw_send_packet(addr, Some(pmax), payload);
        }
        let _ = now;
    }

    fn periodic_push_pull(&mut self, now: Instant, d: &mut impl Delegate) {
        let peers = self.random_members(1, |m| m.node.state == State::Alive);
        if let Some(&slot) = peers.first() {
            if let Some(addr) = self.members.at(slot).map(|m| m.node.addr) {
                self.start_push_pull(now, addr, false, d);
            }
        }
    }

    /// Removes dead (and left) members past the gossip-to-the-dead time and
    /// reshuffles the probe order; run when a probe round wraps.
    fn reset_nodes(&mut self, now: Instant) {
        let dead_time = self.config.gossip_to_the_dead_time;
        let me = self.config.name.as_str();
        let members = &mut self.members;
        self.order.retain(|&slot| {
            let Some(m) = members.at(slot) else {
                return false;
            };
            let reap = m.node.name != me
                && m.node.state.is_dead_or_left()
                && now.saturating_duration_since(m.state_change) > dead_time;
            if reap {
                members.remove(slot);
            }
            !reap
        });
        // Fisher-Yates with our own generator.
        for i in (1..self.order.len()).rev() {
            let j = self.rng.random_range(0..=i);
            self.order.swap(i, j);
        }
    }
}

/// The push-pull interval grows with `ceil(log2(n) - log2(32)) + 1` above 32
/// nodes, so total push-pull traffic stays flat as the cluster grows.
pub fn push_pull_scale(interval: Duration, n: usize) -> Duration {
    const THRESHOLD: usize = 32;
    if n <= THRESHOLD {
        return interval;
    }
    let mult = ((n as f64).log2() - (THRESHOLD as f64).log2()).ceil() + 1.0;
    interval * (mult as u32)
}

#[cfg(test)]
mod tests;
