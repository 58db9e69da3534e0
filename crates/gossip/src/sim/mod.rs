//! Many [`Memberlist`] nodes in one process, on virtual time.
//!
//! A [`Sim`] owns N cores and a [`Network`] between them. Everything that
//! will happen (a packet arriving, a stream's request or reply, a node's
//! timer, a starved node resuming, a scheduled join) waits in one queue
//! ordered by (virtual time, sequence number), and [`Sim::step`] takes the
//! earliest. After each input the node's transmits are put on the network
//! and its next timer is queued. Every random choice, the cores' and the
//! network's, comes from generators seeded by the one seed given to
//! [`Sim::new`], so the same seed replays the same run, log for log.
//!
//! Faults: packet loss and latency per link ([`Network`]), partitions,
//! killed nodes (they stop; everything sent to them is dropped), graceful
//! leave, and starved nodes ([`Slowness`]) whose inputs queue up and whose
//! timers do not fire while they are paused.
//!
//! Clusters join through the protocol ([`Sim::join_staggered`]), or, when
//! the `16 n²` alive messages of a bootstrap are too many to simulate (a
//! few thousand nodes), start converged ([`Sim::assume_converged`]).
//!
//! Nodes are numbered from 0; node `i` is named `n{i}` and lives at
//! `10.x.y.z:7946` where `x.y.z` spells `i`, so any address maps back to
//! its node without a lookup ([`addr_of`], [`index_of`]).

mod network;
mod observe;
mod slowness;

pub use network::{LatencyFn, Link, Network};
pub use observe::{Kind, Record};
pub use slowness::Slowness;

use std::cmp::Ordering;
use std::collections::{BinaryHeap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::SeedableRng;

use crate::config::{Config, ConfigError};
use crate::message::Alive;
use crate::node::{ip_to_wire, State};
use crate::swim::{Event, Memberlist, StreamError, StreamId, Transmit};
use network::Fate;
use observe::{Observer, Tap};
use slowness::Starvation;

/// The port every simulated node listens on.
pub const PORT: u16 = 7946;
const BASE_IP: u32 = 0x0a00_0000;

/// The address of node `i`.
pub fn addr_of(i: usize) -> SocketAddr {
    let ip = Ipv4Addr::from(BASE_IP + i as u32);
    SocketAddr::new(IpAddr::V4(ip), PORT)
}

/// The node at `addr`, if it is a simulator address.
pub fn index_of(addr: SocketAddr) -> Option<usize> {
    let IpAddr::V4(ip) = addr.ip() else {
        return None;
    };
    let off = u32::from(ip).checked_sub(BASE_IP)?;
    (addr.port() == PORT && off < 1 << 24).then_some(off as usize)
}

/// The name of node `i`.
pub fn name_of(i: usize) -> String {
    format!("n{i}")
}

/// Where a node is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Running,
    /// Has announced its leave and keeps gossiping until it is done.
    Leaving,
    /// Left gracefully and stopped.
    Left,
    /// Crashed: stopped without a word.
    Killed,
}

impl Status {
    fn runs(self) -> bool {
        matches!(self, Status::Running | Status::Leaving)
    }
}

/// Traffic the network carried, and faults it applied.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetStats {
    pub packets_sent: u64,
    pub packet_bytes: u64,
    /// Packets lost to random loss.
    pub packets_lost: u64,
    /// Packets stopped by a partition.
    pub packets_blocked: u64,
    /// Packets that reached a stopped node, or an address of no node.
    pub packets_undelivered: u64,
    pub streams_opened: u64,
    /// Bytes of stream requests and replies.
    pub stream_bytes: u64,
    /// Streams that failed to connect (partition, stopped peer).
    pub streams_refused: u64,
    /// Inputs handed to nodes (packets, stream requests and replies).
    pub inputs: u64,
    /// Timer firings.
    pub timers: u64,
    /// Times a node's timer was still due right after it ran, more than
    /// [`STALL_LIMIT`] times in a row (a core that does not move its own
    /// deadlines forward); the simulator then waits 1 ms.
    pub timer_stalls: u64,
}

/// Consecutive firings at one instant after which a timer counts as stalled.
pub const STALL_LIMIT: u32 = 64;

/// Something a node processes.
#[derive(Debug)]
enum Input {
    Packet {
        from: usize,
        payload: Vec<u8>,
    },
    StreamRequest {
        from: usize,
        id: StreamId,
        payload: Vec<u8>,
        expect_reply: bool,
    },
    StreamReply {
        id: StreamId,
        reply: Result<Vec<u8>, StreamError>,
    },
}

#[derive(Debug)]
enum Action {
    Deliver {
        to: usize,
        input: Input,
    },
    /// Node's timer as queued at this entry's time; stale if the node has
    /// queued another since.
    Timer {
        node: usize,
    },
    /// A starved node is scheduled again.
    Resume {
        node: usize,
    },
    /// An input a lagging node reads now, having received it earlier.
    Late {
        to: usize,
        input: Input,
    },
    Join {
        node: usize,
        seeds: Vec<usize>,
    },
}

#[derive(Debug)]
struct Scheduled {
    at: Instant,
    seq: u64,
    action: Action,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}

impl Eq for Scheduled {}

impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Scheduled {
    /// Reversed, so the max-heap pops the earliest first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

struct SimNode {
    ml: Memberlist,
    status: Status,
    /// The timer entry currently queued for this node.
    timer: Option<Instant>,
    /// Firings in a row at the same instant.
    stalls: u32,
    starvation: Option<Starvation>,
    /// Inputs that arrived while starved.
    backlog: VecDeque<Input>,
    resume_queued: bool,
    /// A [`Slowness::Busy`] node handles its next input from this instant.
    busy_until: Instant,
}

/// How a node's config is made: `Config::lan(name, addr)` then this.
pub type Configure = Box<dyn Fn(usize, &mut Config)>;

/// N memberlist nodes on a simulated network and virtual time.
pub struct Sim {
    base: Instant,
    now: Instant,
    seed: u64,
    rng: SmallRng,
    nodes: Vec<SimNode>,
    queue: BinaryHeap<Scheduled>,
    seq: u64,
    net: Network,
    obs: Observer,
    stats: NetStats,
    configure: Configure,
}

impl std::fmt::Debug for Sim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sim")
            .field("now", &self.elapsed())
            .field("nodes", &self.nodes.len())
            .field("queued", &self.queue.len())
            .field("net", &self.net)
            .finish_non_exhaustive()
    }
}

/// splitmix64: spreads one seed into independent ones.
fn mix(seed: u64, salt: u64) -> u64 {
    let mut z = seed ^ salt.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Sim {
    /// An empty simulation whose every random choice follows from `seed`.
    /// Nodes get memberlist's LAN profile and the default [`Network`].
    pub fn new(seed: u64) -> Sim {
        let base = Instant::now();
        Sim {
            base,
            now: base,
            seed,
            rng: SmallRng::seed_from_u64(mix(seed, u64::MAX)),
            nodes: Vec::new(),
            queue: BinaryHeap::new(),
            seq: 0,
            net: Network::default(),
            obs: Observer::new(),
            stats: NetStats::default(),
            configure: Box::new(|_, _| {}),
        }
    }

    /// Adjusts the config of nodes added from now on (after
    /// `Config::lan(name_of(i), addr_of(i))`).
    pub fn configure(&mut self, f: impl Fn(usize, &mut Config) + 'static) {
        self.configure = Box::new(f);
    }

    /// Whether `Join` records go in the log (on by default). A 5,000-node
    /// bootstrap logs 25 million of them; the views are kept either way.
    pub fn log_joins(&mut self, on: bool) {
        self.obs.log_joins = on;
    }

    // ----- nodes -----

    /// Starts one node, alone in its cluster; returns its number.
    pub fn add_node(&mut self) -> Result<usize, ConfigError> {
        let i = self.nodes.len();
        let mut config = Config::lan(name_of(i), addr_of(i));
        (self.configure)(i, &mut config);
        self.obs.views.add_node();
        self.obs.views.set_live(i, true);
        let mut tap = Tap {
            at: self.elapsed(),
            node: i,
            obs: &mut self.obs,
        };
        let ml = match Memberlist::new(config, self.now, mix(self.seed, i as u64), &mut tap) {
            Ok(ml) => ml,
            Err(e) => {
                self.obs.views.set_live(i, false);
                return Err(e);
            }
        };
        self.nodes.push(SimNode {
            ml,
            status: Status::Running,
            timer: None,
            stalls: 0,
            starvation: None,
            backlog: VecDeque::new(),
            resume_queued: false,
            busy_until: self.now,
        });
        self.settle(i);
        Ok(i)
    }

    /// Starts `n` nodes; returns their numbers.
    pub fn add_nodes(&mut self, n: usize) -> Result<std::ops::Range<usize>, ConfigError> {
        let start = self.nodes.len();
        for _ in 0..n {
            self.add_node()?;
        }
        Ok(start..self.nodes.len())
    }

    /// Node `i` joins through `seeds` now.
    pub fn join(&mut self, i: usize, seeds: &[usize]) {
        self.join_at(self.elapsed(), i, seeds);
    }

    /// Node `i` joins through `seeds` at virtual time `at` (since start).
    pub fn join_at(&mut self, at: Duration, i: usize, seeds: &[usize]) {
        let at = self.base + at.max(self.elapsed());
        self.schedule(
            at,
            Action::Join {
                node: i,
                seeds: seeds.to_vec(),
            },
        );
    }

    /// Every node outside `seeds` joins through one of them (in turn), one
    /// node every `stagger` from now; the other seeds join the first seed
    /// at once.
    pub fn join_staggered(&mut self, seeds: &[usize], stagger: Duration) {
        let Some(&first) = seeds.first() else {
            return;
        };
        for &s in &seeds[1..] {
            self.join(s, &[first]);
        }
        let mut at = self.elapsed();
        let mut k = 0;
        for i in 0..self.nodes.len() {
            if seeds.contains(&i) {
                continue;
            }
            at += stagger;
            self.join_at(at, i, &[seeds[k % seeds.len()]]);
            k += 1;
        }
    }

    /// Every running node learns every other running node as alive, as if
    /// all had joined and the joins' gossip had run out: nothing is sent,
    /// every broadcast still queued is dropped, and the delegates hear of
    /// each join as they would have. Meant for a fresh simulation, before
    /// anything else happens; what follows is the protocol as usual.
    ///
    /// A bootstrap through the protocol costs about `16 n²` alive messages
    /// (each of `n` joins goes out `retransmit_mult * ceil(log10(n + 1))`
    /// times from each of `n` nodes): 400 million at 5,000 nodes, too many
    /// to simulate in minutes. This costs `n²` merges. The members it
    /// leaves are those of a drained bootstrap (all alive, each at the
    /// incarnation it announced, in a random probe order); only their
    /// state-change times and the probe orders' history differ.
    pub fn assume_converged(&mut self) {
        let running: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| self.nodes[i].status == Status::Running)
            .collect();
        let alive: Vec<(usize, Alive)> = running
            .iter()
            .filter_map(|&i| {
                let ml = &self.nodes[i].ml;
                let n = ml.member(ml.name())?;
                Some((
                    i,
                    Alive {
                        incarnation: n.incarnation,
                        node: n.name.clone(),
                        addr: ip_to_wire(n.addr.ip()),
                        port: n.addr.port(),
                        meta: n.meta.clone(),
                        vsn: n.vsn.to_vec(),
                    },
                ))
            })
            .collect();
        let at = self.elapsed();
        for &i in &running {
            let mut tap = Tap {
                at,
                node: i,
                obs: &mut self.obs,
            };
            let others = alive
                .iter()
                .filter(|(j, _)| *j != i)
                .map(|(_, a)| a.clone());
            self.nodes[i].ml.assume_members(self.now, others, &mut tap);
            self.settle(i);
        }
    }

    /// Crashes node `i`: it stops, and everything sent to it is lost.
    pub fn kill(&mut self, i: usize) {
        self.stop(i, Status::Killed);
    }

    /// Node `i` announces its leave; it stops once the leave is gossiped.
    pub fn leave(&mut self, i: usize) {
        if self.nodes[i].status != Status::Running {
            return;
        }
        self.nodes[i].status = Status::Leaving;
        self.obs.views.set_live(i, false);
        let mut tap = Tap {
            at: self.now.duration_since(self.base),
            node: i,
            obs: &mut self.obs,
        };
        self.nodes[i].ml.leave(self.now, &mut tap);
        self.settle(i);
    }

    /// Starves node `i` from now on (`None`: no more).
    pub fn set_slowness(&mut self, i: usize, model: Option<Slowness>) {
        let now = self.elapsed();
        let seed = mix(self.seed ^ 0x5107_5107, i as u64);
        self.nodes[i].starvation = model.map(|m| Starvation::new(m, now, seed));
    }

    fn stop(&mut self, i: usize, status: Status) {
        let n = &mut self.nodes[i];
        if !n.status.runs() {
            return;
        }
        n.status = status;
        n.timer = None;
        n.backlog.clear();
        self.obs.views.set_live(i, false);
    }

    // ----- the network -----

    pub fn net(&self) -> &Network {
        &self.net
    }

    pub fn net_mut(&mut self) -> &mut Network {
        &mut self.net
    }

    // ----- running -----

    /// Virtual time since the simulation began.
    pub fn elapsed(&self) -> Duration {
        self.now.duration_since(self.base)
    }

    /// The virtual clock as the cores see it.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Processes the earliest queued item; false if nothing is queued.
    pub fn step(&mut self) -> bool {
        let Some(item) = self.queue.pop() else {
            return false;
        };
        self.now = self.now.max(item.at);
        match item.action {
            Action::Deliver { to, input } => self.deliver(to, input),
            Action::Timer { node } => self.fire_timer(node, item.at),
            Action::Resume { node } => self.resume(node),
            Action::Late { to, input } => {
                if self.nodes[to].status.runs() {
                    self.apply(to, input);
                }
            }
            Action::Join { node, seeds } => {
                if self.nodes[node].status.runs() {
                    let addrs: Vec<_> = seeds.iter().map(|&s| addr_of(s)).collect();
                    let mut tap = Tap {
                        at: self.elapsed(),
                        node,
                        obs: &mut self.obs,
                    };
                    self.nodes[node].ml.join(self.now, &addrs, &mut tap);
                    self.settle(node);
                }
            }
        }
        true
    }

    /// Runs everything due in the next `d`; the clock ends at now + `d`.
    pub fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        while self.queue.peek().is_some_and(|s| s.at <= end) {
            self.step();
        }
        self.now = end;
    }

    /// Runs until `done` holds (checked before each step) or `max` has
    /// passed; returns how long it took, or `None` on time-out (the clock
    /// then stands at now + `max`).
    pub fn run_until(
        &mut self,
        mut done: impl FnMut(&Sim) -> bool,
        max: Duration,
    ) -> Option<Duration> {
        let start = self.now;
        let end = self.now + max;
        loop {
            if done(self) {
                return Some(self.now - start);
            }
            if self.queue.peek().is_none_or(|s| s.at > end) {
                self.now = end;
                return None;
            }
            self.step();
        }
    }

    fn schedule(&mut self, at: Instant, action: Action) {
        self.seq += 1;
        self.queue.push(Scheduled {
            at,
            seq: self.seq,
            action,
        });
    }

    /// If node `i` is starved now, when it resumes (queuing the resume).
    fn starved(&mut self, i: usize) -> bool {
        let now = self.elapsed();
        let n = &mut self.nodes[i];
        let Some(s) = n.starvation.as_mut() else {
            return false;
        };
        let Some(until) = s.paused_until(now) else {
            return false;
        };
        if !n.resume_queued {
            n.resume_queued = true;
            let at = self.base + until;
            self.schedule(at, Action::Resume { node: i });
        }
        true
    }

    fn deliver(&mut self, to: usize, input: Input) {
        if !self.nodes[to].status.runs() {
            match input {
                Input::StreamRequest {
                    from,
                    id,
                    expect_reply: true,
                    ..
                } => {
                    // Nobody listens any more: the connection is refused.
                    self.stats.streams_refused += 1;
                    let back = self.net.delay(to, from, &mut self.rng);
                    let input = Input::StreamReply {
                        id,
                        reply: Err(StreamError::Connect("connection refused".into())),
                    };
                    self.schedule(self.now + back, Action::Deliver { to: from, input });
                }
                Input::Packet { .. } => self.stats.packets_undelivered += 1,
                _ => {}
            }
            return;
        }
        if self.starved(to) {
            self.nodes[to].backlog.push_back(input);
            return;
        }
        if let Some(delay) = self.nodes[to]
            .starvation
            .as_ref()
            .and_then(|s| s.model().lag())
        {
            self.schedule(self.now + delay, Action::Late { to, input });
            return;
        }
        if let Some(per) = self.per_input(to) {
            let now = self.now;
            let n = &mut self.nodes[to];
            if now < n.busy_until || !n.backlog.is_empty() {
                n.backlog.push_back(input);
                if !n.resume_queued {
                    n.resume_queued = true;
                    let at = n.busy_until.max(now);
                    self.schedule(at, Action::Resume { node: to });
                }
                return;
            }
            n.busy_until = now + per;
        }
        self.apply(to, input);
    }

    fn per_input(&self, i: usize) -> Option<Duration> {
        self.nodes[i]
            .starvation
            .as_ref()
            .and_then(|s| s.model().per_input())
    }

    fn apply(&mut self, i: usize, input: Input) {
        self.stats.inputs += 1;
        let now = self.now;
        let mut tap = Tap {
            at: now.duration_since(self.base),
            node: i,
            obs: &mut self.obs,
        };
        let ml = &mut self.nodes[i].ml;
        match input {
            Input::Packet { from, payload } => {
                ml.handle_packet(now, addr_of(from), &payload, &mut tap);
            }
            Input::StreamRequest {
                from,
                id,
                payload,
                expect_reply,
            } => {
                let reply = ml.handle_stream(now, addr_of(from), &payload, &mut tap);
                if expect_reply {
                    let reply = reply.unwrap_or_default();
                    self.stats.stream_bytes += reply.len() as u64;
                    let reply = if self.net.reachable(i, from) {
                        Ok(reply)
                    } else {
                        Err(StreamError::Io("connection reset".into()))
                    };
                    let back = self.net.delay(i, from, &mut self.rng);
                    let input = Input::StreamReply { id, reply };
                    self.schedule(now + back, Action::Deliver { to: from, input });
                }
            }
            Input::StreamReply { id, reply } => {
                ml.handle_stream_reply(now, id, reply, &mut tap);
            }
        }
        self.settle(i);
    }

    fn fire_timer(&mut self, i: usize, at: Instant) {
        if self.nodes[i].timer != Some(at) {
            return;
        }
        self.nodes[i].timer = None;
        if !self.nodes[i].status.runs() {
            return;
        }
        if self.starved(i) {
            return;
        }
        self.run_timers(i);
        self.settle(i);
    }

    fn run_timers(&mut self, i: usize) {
        self.stats.timers += 1;
        let mut tap = Tap {
            at: self.now.duration_since(self.base),
            node: i,
            obs: &mut self.obs,
        };
        self.nodes[i].ml.handle_timeout(self.now, &mut tap);
    }

    /// A starved node runs again: first every timer that came due, then its
    /// backlog in arrival order. A busy node handles its next input.
    fn resume(&mut self, i: usize) {
        self.nodes[i].resume_queued = false;
        if !self.nodes[i].status.runs() || self.starved(i) {
            return;
        }
        if let Some(per) = self.per_input(i) {
            let now = self.now;
            let n = &mut self.nodes[i];
            if let Some(input) = n.backlog.pop_front() {
                n.busy_until = now + per;
                self.apply(i, input);
            }
            let n = &mut self.nodes[i];
            if !n.backlog.is_empty() && n.status.runs() && !n.resume_queued {
                n.resume_queued = true;
                let at = n.busy_until;
                self.schedule(at, Action::Resume { node: i });
            }
            return;
        }
        // Every overdue timer, to the end: a probe that timed out during the
        // pause goes indirect and then fails before the ack waiting in the
        // backlog is read, as it would in a starved Go process.
        let mut rounds = 0;
        while self.nodes[i].ml.poll_timeout() <= self.now && rounds < STALL_LIMIT {
            self.nodes[i].timer = None;
            self.run_timers(i);
            rounds += 1;
        }
        self.settle(i);
        while let Some(input) = self.nodes[i].backlog.pop_front() {
            if !self.nodes[i].status.runs() {
                break;
            }
            self.apply(i, input);
        }
    }

    /// Puts node `i`'s output on the network, logs its events, and queues
    /// its next timer.
    fn settle(&mut self, i: usize) {
        while let Some(t) = self.nodes[i].ml.poll_transmit() {
            self.route(i, t);
        }
        let at = self.elapsed();
        while let Some(e) = self.nodes[i].ml.poll_event() {
            let kind = match e {
                Event::Joined { .. } => Kind::Joined,
                Event::JoinFailed { .. } => Kind::JoinFailed,
                Event::LeaveDone => Kind::LeaveDone,
            };
            self.obs.note(at, i, i, kind);
            if kind == Kind::LeaveDone && self.nodes[i].status == Status::Leaving {
                self.stop(i, Status::Left);
            }
        }
        let n = &mut self.nodes[i];
        if !n.status.runs() {
            return;
        }
        let mut next = n.ml.poll_timeout();
        if next <= self.now {
            n.stalls += 1;
            next = self.now;
            if n.stalls > STALL_LIMIT {
                n.stalls = 0;
                self.stats.timer_stalls += 1;
                next = self.now + Duration::from_millis(1);
            }
        } else {
            n.stalls = 0;
        }
        if n.timer != Some(next) {
            n.timer = Some(next);
            self.schedule(next, Action::Timer { node: i });
        }
    }

    fn route(&mut self, from: usize, t: Transmit) {
        match t {
            Transmit::Packet { to, payload } => {
                self.stats.packets_sent += 1;
                self.stats.packet_bytes += payload.len() as u64;
                let Some(to) = index_of(to).filter(|&k| k < self.nodes.len()) else {
                    self.stats.packets_undelivered += 1;
                    return;
                };
                match self.net.packet(from, to, &mut self.rng) {
                    Fate::Arrives(d) => {
                        let input = Input::Packet { from, payload };
                        self.schedule(self.now + d, Action::Deliver { to, input });
                    }
                    Fate::Lost => self.stats.packets_lost += 1,
                    Fate::Blocked => self.stats.packets_blocked += 1,
                }
            }
            Transmit::Stream {
                id,
                to,
                payload,
                expect_reply,
                deadline,
            } => {
                self.stats.streams_opened += 1;
                let peer = index_of(to).filter(|&k| k < self.nodes.len());
                let reachable =
                    peer.filter(|&k| self.net.reachable(from, k) && self.nodes[k].status.runs());
                let Some(to) = reachable else {
                    self.stats.streams_refused += 1;
                    if expect_reply {
                        let at = (self.now + self.net.connect_fail_after).min(deadline);
                        let input = Input::StreamReply {
                            id,
                            reply: Err(StreamError::Connect("no route to host".into())),
                        };
                        self.schedule(at.max(self.now), Action::Deliver { to: from, input });
                    }
                    return;
                };
                self.stats.stream_bytes += payload.len() as u64;
                let trips = self.net.stream_request_trips.max(1);
                let mut d = Duration::ZERO;
                for _ in 0..trips {
                    d += self.net.delay(from, to, &mut self.rng);
                }
                let input = Input::StreamRequest {
                    from,
                    id,
                    payload,
                    expect_reply,
                };
                self.schedule(self.now + d, Action::Deliver { to, input });
                if expect_reply {
                    // Whichever comes first, reply or time-out, is the
                    // answer; the core ignores the other.
                    let input = Input::StreamReply {
                        id,
                        reply: Err(StreamError::Timeout),
                    };
                    self.schedule(deadline.max(self.now), Action::Deliver { to: from, input });
                }
            }
        }
    }

    // ----- observing -----

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Node `i`'s core, to read its state.
    pub fn node(&self, i: usize) -> &Memberlist {
        &self.nodes[i].ml
    }

    pub fn status(&self, i: usize) -> Status {
        self.nodes[i].status
    }

    /// Running nodes (not leaving, left or killed).
    pub fn live(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.nodes.len()).filter(|&i| self.obs.views.is_live(i))
    }

    pub fn live_count(&self) -> usize {
        self.obs.views.live_count()
    }

    /// Whether `observer` holds `subject` alive (or suspect), as its
    /// delegate was told.
    pub fn sees_alive(&self, observer: usize, subject: usize) -> bool {
        self.obs.views.sees(observer, subject)
    }

    /// Live nodes holding `subject` alive (or suspect).
    pub fn seen_alive_by(&self, subject: usize) -> usize {
        self.obs.views.seen_by(subject)
    }

    /// Every live node holds `subject` alive (or suspect).
    pub fn all_see_alive(&self, subject: usize) -> bool {
        self.obs.views.seen_by(subject) == self.obs.views.live_count()
    }

    /// No live node holds `subject` alive: all have it dead, left or
    /// forgotten.
    pub fn none_see_alive(&self, subject: usize) -> bool {
        self.obs.views.seen_by(subject) == 0
    }

    /// Runs until every live node holds `subject` alive (`alive`), or no
    /// live node does (`!alive`); returns how long that took, or `None`
    /// after `max`.
    pub fn time_all_see(&mut self, subject: usize, alive: bool, max: Duration) -> Option<Duration> {
        if alive {
            self.run_until(|s| s.all_see_alive(subject), max)
        } else {
            self.run_until(|s| s.none_see_alive(subject), max)
        }
    }

    /// Every live node holds exactly the live nodes alive (or suspect),
    /// per the delegate callbacks. Constant time.
    pub fn converged(&self) -> bool {
        self.obs.views.converged()
    }

    /// Nodes about which the live nodes do not agree yet.
    pub fn unsettled(&self) -> usize {
        self.obs.views.unsettled()
    }

    /// Like [`converged`](Self::converged) but read from the cores, and
    /// stricter: suspect does not count as alive. Costs N² lookups.
    pub fn converged_strict(&self) -> bool {
        let live: Vec<usize> = self.live().collect();
        let mut is_live = vec![false; self.nodes.len()];
        for &i in &live {
            is_live[i] = true;
        }
        live.iter().all(|&o| {
            let mut alive = 0;
            for m in self.nodes[o].ml.members() {
                let Some(s) = index_of(m.addr) else {
                    continue;
                };
                match m.state {
                    State::Alive if is_live[s] => alive += 1,
                    State::Alive | State::Suspect if !is_live[s] => return false,
                    _ => {}
                }
            }
            alive == live.len()
        })
    }

    /// Every membership change every node was told of, in order.
    pub fn log(&self) -> &[Record] {
        &self.obs.log
    }

    /// The first record about `subject` of `kind` at or after `since`.
    pub fn first(&self, subject: usize, kind: Kind, since: Duration) -> Option<&Record> {
        self.obs
            .log
            .iter()
            .find(|r| r.at >= since && r.subject == subject as u32 && r.kind == kind)
    }

    pub fn stats(&self) -> &NetStats {
        &self.stats
    }

    /// Items waiting in the queue.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    #[cfg(test)]
    fn views(&self) -> &observe::Views {
        &self.obs.views
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_map_back_to_nodes() {
        for i in [0, 1, 255, 256, 4999, 70_000] {
            assert_eq!(index_of(addr_of(i)), Some(i));
        }
        assert_eq!(index_of("127.0.0.1:7946".parse().unwrap()), None);
        assert_eq!(index_of("10.0.0.1:7000".parse().unwrap()), None);
    }

    #[test]
    fn three_nodes_converge_and_see_a_kill() {
        let mut sim = Sim::new(1);
        sim.add_nodes(3).unwrap();
        sim.join_staggered(&[0], Duration::from_millis(10));
        let t = sim.run_until(Sim::converged, Duration::from_secs(10));
        assert!(t.is_some(), "converged: {:?}", sim.views());
        assert!(sim.converged_strict());
        sim.kill(2);
        assert!(!sim.converged());
        let t = sim.run_until(|s| s.none_see_alive(2), Duration::from_secs(60));
        assert!(t.is_some());
        assert!(sim.converged());
        assert!(sim.first(2, Kind::Dead, Duration::ZERO).is_some());
    }

    fn three_converged(seed: u64) -> Sim {
        let mut sim = Sim::new(seed);
        sim.add_nodes(3).unwrap();
        sim.join_staggered(&[0], Duration::from_millis(10));
        assert!(sim
            .run_until(Sim::converged, Duration::from_secs(10))
            .is_some());
        sim
    }

    #[test]
    fn a_paused_node_reads_its_backlog_late() {
        let mut sim = three_converged(3);
        let second = Duration::from_secs(1);
        // Paused 9 s of every 10: the others' probes go unanswered for long
        // stretches, so node 2 is suspected (and refutes once it runs).
        sim.set_slowness(
            2,
            Some(Slowness::Periodic {
                period: 10 * second,
                pause: 9 * second,
            }),
        );
        sim.run_for(60 * second);
        let failed: u64 = (0..2).map(|i| sim.node(i).metrics().probe_failures).sum();
        assert!(failed > 0, "probes of the paused node failed");
        assert!(sim.node(2).metrics().refutations > 0, "and it refuted");
    }

    #[test]
    fn a_lagging_node_misses_its_acks_and_accuses_others() {
        let mut sim = three_converged(5);
        sim.set_slowness(
            2,
            Some(Slowness::Lag {
                delay: Duration::from_millis(1500),
            }),
        );
        sim.run_for(Duration::from_secs(20));
        assert!(
            sim.node(2).metrics().probe_failures > 0,
            "its acks came late"
        );
        let refuted: u64 = (0..2).map(|i| sim.node(i).metrics().refutations).sum();
        assert!(refuted > 0, "the healthy nodes refuted its accusations");
    }

    #[test]
    fn a_busy_node_falls_behind_and_is_declared_dead() {
        let mut sim = three_converged(4);
        // Three seconds per message: acks come back long after the probes
        // gave up, and refutations too late to save it.
        sim.set_slowness(
            2,
            Some(Slowness::Busy {
                per_input: Duration::from_secs(3),
            }),
        );
        let since = sim.elapsed();
        sim.run_for(Duration::from_secs(60));
        assert!(sim.first(2, Kind::Dead, since).is_some());
        sim.set_slowness(2, None);
        assert!(sim
            .run_until(Sim::converged, Duration::from_secs(60))
            .is_some());
    }
}
