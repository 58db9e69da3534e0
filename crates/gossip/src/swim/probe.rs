//! Failure detection: one probe per interval, round-robin over the shuffled
//! member list. A probe that gets no ack within the probe timeout asks
//! `indirect_checks` peers to try (they nack if they cannot reach the node
//! either) and tries a TCP ping; if the round ends without an ack the node
//! becomes suspect. Missing nacks count against our own health (Lifeguard).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::{stream, Memberlist};
use crate::delegate::Delegate;
use crate::message::{Ack, IndirectPing, Message, Nack, Ping, Suspect};
use crate::node::{ip_from_wire, ip_to_wire, Node, State};

/// Figures about our probes, for metrics and the simulator.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProbeStats {
    pub acked: u64,
    pub failed: u64,
    /// Round trip of the last direct ack.
    pub last_rtt: Option<Duration>,
    /// Sum of direct-ack round trips, with `acked_direct` for a mean.
    pub rtt_total: Duration,
    pub acked_direct: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for the direct ack until `direct_deadline`.
    Direct,
    /// Indirect pings and the TCP ping are out; waiting until `round_deadline`.
    Indirect,
}

#[derive(Debug, Clone)]
struct Probe {
    seq: u32,
    target: Node,
    sent: Instant,
    direct_deadline: Instant,
    round_deadline: Instant,
    phase: Phase,
    expected_nacks: usize,
    nacks: usize,
    fallback_ok: bool,
}

/// An indirect ping we run on someone else's behalf.
#[derive(Debug, Clone)]
struct Relay {
    origin: SocketAddr,
    origin_node: String,
    origin_seq: u32,
    want_nack: bool,
    expires: Instant,
}

#[derive(Debug, Default, Clone)]
pub(super) struct Prober {
    current: Option<Probe>,
    relays: HashMap<u32, Relay>,
    stats: ProbeStats,
}

impl Prober {
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        let probe = self.current.as_ref().map(|p| match p.phase {
            Phase::Direct => p.direct_deadline,
            Phase::Indirect => p.round_deadline,
        });
        let relay = self.relays.values().map(|r| r.expires).min();
        match (probe, relay) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    pub(super) fn stats(&self) -> &ProbeStats {
        &self.stats
    }

    fn busy_until(&self) -> Option<Instant> {
        self.current.as_ref().map(|p| p.round_deadline)
    }
}

impl Memberlist {
    fn own_source(&self) -> (Vec<u8>, u16, String) {
        (
            ip_to_wire(self.config.advertise.ip()),
            self.config.advertise.port(),
            self.config.name.clone(),
        )
    }

    /// Picks the next member in probe order and pings it.
    pub(super) fn start_probe(&mut self, now: Instant, d: &mut impl Delegate) {
        if let Some(until) = self.probe.busy_until() {
            // The previous round is still open (its interval was scaled up
            // by poor health): probe again as soon as it closes.
            self.next_probe = until;
            return;
        }
        let mut checked = 0;
        let target = loop {
            if checked >= self.order.len() {
                return;
            }
            if self.probe_index >= self.order.len() {
                self.reset_nodes(now);
                self.probe_index = 0;
                checked += 1;
                continue;
            }
            let slot = self.order[self.probe_index];
            self.probe_index += 1;
            match self.members.at(slot) {
                Some(m) if m.node.name != self.config.name && !m.node.state.is_dead_or_left() => {
                    break m.node.clone();
                }
                _ => checked += 1,
            }
        };
        self.probe_node(now, target, d);
    }

    fn probe_node(&mut self, now: Instant, target: Node, d: &mut impl Delegate) {
        self.metrics.probes += 1;
        let interval = self.awareness.scale(self.config.probe_interval);
        let (source_addr, source_port, source_node) = self.own_source();
        let ping = Ping {
            seq_no: self.next_seq(),
            node: target.name.clone(),
            source_addr,
            source_port,
            source_node,
        };
        self.probe.current = Some(Probe {
            seq: ping.seq_no,
            target: target.clone(),
            sent: now,
            direct_deadline: now + self.config.probe_timeout,
            round_deadline: now + interval,
            phase: Phase::Direct,
            expected_nacks: 0,
            nacks: 0,
            fallback_ok: false,
        });
        if target.state == State::Alive || !self.config.lifeguard.buddy_system {
            self.send_msg(target.addr, Some(target.pmax()), &Message::Ping(ping), d);
            return;
        }
        // Buddy system: tell a suspect about the suspicion so it can refute.
        let sus = Suspect {
            incarnation: target.incarnation,
            node: target.name.clone(),
            from: self.config.name.clone(),
        };
        let parts = [Message::Ping(ping), Message::Suspect(sus)]
            .iter()
            .filter_map(|m| crate::message::encode(m).ok())
            .collect::<Vec<_>>();
        if let Ok(c) = crate::compound::make(&parts) {
            self.raw_send_packet(target.addr, Some(target.pmax()), c);
        }
    }

    /// Moves the open probe and relays along at `now`.
    pub(super) fn probe_timers(&mut self, now: Instant, d: &mut impl Delegate) {
        self.relay_timers(now, d);
        let Some(p) = self.probe.current.as_ref() else {
            return;
        };
        match p.phase {
            Phase::Direct if now >= p.direct_deadline => self.go_indirect(now, d),
            Phase::Indirect if now >= p.round_deadline => self.close_failed_probe(now, d),
            _ => {}
        }
    }

    fn go_indirect(&mut self, now: Instant, d: &mut impl Delegate) {
        let Some(p) = self.probe.current.as_mut() else {
            return;
        };
        p.phase = Phase::Indirect;
        let target = p.target.clone();
        let seq = p.seq;
        let deadline = p.round_deadline;
        let peers = self.random_members(self.config.indirect_checks, |m| {
            m.node.state == State::Alive && m.node.name != target.name
        });
        let (source_addr, source_port, source_node) = self.own_source();
        let mut expected = 0;
        for slot in peers {
            let Some((peer_addr, peer_pmax)) =
                self.members.at(slot).map(|m| (m.node.addr, m.node.pmax()))
            else {
                continue;
            };
            let nack = peer_pmax >= 4;
            if nack {
                expected += 1;
            }
            let ind = IndirectPing {
                seq_no: seq,
                target: ip_to_wire(target.addr.ip()),
                port: target.addr.port(),
                node: target.name.clone(),
                nack,
                source_addr: source_addr.clone(),
                source_port,
                source_node: source_node.clone(),
            };
            self.send_msg(peer_addr, Some(peer_pmax), &Message::IndirectPing(ind), d);
        }
        if let Some(p) = self.probe.current.as_mut() {
            p.expected_nacks = expected;
        }
        if !self.config.disable_tcp_pings && target.pmax() >= 3 {
            let ping = Ping {
                seq_no: seq,
                node: target.name.clone(),
                source_addr,
                source_port,
                source_node,
            };
            if let Ok(frame) = crate::message::encode(&Message::Ping(ping)) {
                let pending = stream::Pending::fallback(seq, deadline);
                self.open_stream(now, target.addr, frame, true, pending);
            }
        }
    }

    fn close_failed_probe(&mut self, now: Instant, d: &mut impl Delegate) {
        let Some(p) = self.probe.current.take() else {
            return;
        };
        if p.fallback_ok {
            // Reachable over TCP only: the network is odd, the node is not dead.
            self.awareness.apply_delta(-1);
            self.probe.stats.acked += 1;
            return;
        }
        let delta = if p.expected_nacks > 0 {
            p.expected_nacks.saturating_sub(p.nacks) as isize
        } else {
            1
        };
        self.awareness.apply_delta(delta);
        self.probe.stats.failed += 1;
        self.metrics.probe_failures += 1;
        let s = Suspect {
            incarnation: p.target.incarnation,
            node: p.target.name.clone(),
            from: self.config.name.clone(),
        };
        self.suspect_node(now, s, d);
    }

    /// The TCP fallback ping of probe `seq` finished.
    pub(super) fn fallback_result(&mut self, seq: u32, ok: bool) {
        if let Some(p) = self.probe.current.as_mut() {
            if p.seq == seq && ok {
                p.fallback_ok = true;
            }
        }
    }

    fn relay_timers(&mut self, now: Instant, d: &mut impl Delegate) {
        let mut due: Vec<u32> = self
            .probe
            .relays
            .iter()
            .filter(|(_, r)| r.expires <= now)
            .map(|(s, _)| *s)
            .collect();
        due.sort_unstable();
        for seq in due {
            let Some(r) = self.probe.relays.remove(&seq) else {
                continue;
            };
            if r.want_nack {
                let pmax = self.members.get(&r.origin_node).map(|m| m.node.pmax());
                let nack = Message::Nack(Nack {
                    seq_no: r.origin_seq,
                });
                self.send_msg(r.origin, pmax, &nack, d);
            }
        }
    }

    pub(super) fn handle_ping(
        &mut self,
        _now: Instant,
        from: SocketAddr,
        p: Ping,
        d: &mut impl Delegate,
    ) {
        if !p.node.is_empty() && p.node != self.config.name {
            return;
        }
        let ack = Ack {
            seq_no: p.seq_no,
            payload: d.ack_payload(),
        };
        let to = reply_addr(&p.source_addr, p.source_port).unwrap_or(from);
        let pmax = self.members.get(&p.source_node).map(|m| m.node.pmax());
        self.send_msg(to, pmax, &Message::Ack(ack), d);
    }

    pub(super) fn handle_indirect_ping(
        &mut self,
        now: Instant,
        from: SocketAddr,
        ind: IndirectPing,
        d: &mut impl Delegate,
    ) {
        let Some(ip) = ip_from_wire(&ind.target) else {
            return;
        };
        let port = if ind.port == 0 {
            self.config.advertise.port()
        } else {
            ind.port
        };
        let target = SocketAddr::new(ip, port);
        let origin = reply_addr(&ind.source_addr, ind.source_port).unwrap_or(from);
        let seq = self.next_seq();
        self.probe.relays.insert(
            seq,
            Relay {
                origin,
                origin_node: ind.source_node.clone(),
                origin_seq: ind.seq_no,
                want_nack: ind.nack,
                expires: now + self.config.probe_timeout,
            },
        );
        let (source_addr, source_port, source_node) = self.own_source();
        let ping = Ping {
            seq_no: seq,
            node: ind.node.clone(),
            source_addr,
            source_port,
            source_node,
        };
        let pmax = self.members.get(&ind.node).map(|m| m.node.pmax());
        self.send_msg(target, pmax, &Message::Ping(ping), d);
    }

    pub(super) fn handle_ack(&mut self, now: Instant, ack: Ack, d: &mut impl Delegate) {
        if let Some(p) = self.probe.current.as_ref() {
            if p.seq == ack.seq_no {
                let Some(p) = self.probe.current.take() else {
                    return;
                };
                self.awareness.apply_delta(-1);
                self.probe.stats.acked += 1;
                if p.phase == Phase::Direct {
                    let rtt = now.saturating_duration_since(p.sent);
                    self.probe.stats.last_rtt = Some(rtt);
                    self.probe.stats.rtt_total += rtt;
                    self.probe.stats.acked_direct += 1;
                    d.notify_ping_complete(&p.target, rtt, &ack.payload);
                }
                return;
            }
        }
        if let Some(r) = self.probe.relays.remove(&ack.seq_no) {
            let pmax = self.members.get(&r.origin_node).map(|m| m.node.pmax());
            let fwd = Message::Ack(Ack {
                seq_no: r.origin_seq,
                payload: Vec::new(),
            });
            self.send_msg(r.origin, pmax, &fwd, d);
        }
    }

    pub(super) fn handle_nack(&mut self, nack: Nack) {
        if let Some(p) = self.probe.current.as_mut() {
            if p.seq == nack.seq_no && p.phase == Phase::Indirect {
                p.nacks += 1;
            }
        }
    }
}

/// The address a ping or indirect ping asks us to answer at.
fn reply_addr(addr: &[u8], port: u16) -> Option<SocketAddr> {
    if addr.is_empty() || port == 0 {
        return None;
    }
    Some(SocketAddr::new(ip_from_wire(addr)?, port))
}
