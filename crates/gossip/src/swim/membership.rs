//! The rules that change a member's state: alive, suspect, dead/left,
//! refutation of accusations about ourselves, and merging a peer's full
//! state from push-pull. Each accepted change is re-broadcast.

use std::time::Instant;

use super::{topic, Memberlist};
use crate::delegate::Delegate;
use crate::message::{self, Alive, Dead, Message, PushNodeState, Suspect};
use crate::node::{ip_from_wire, ip_to_wire, vsn_from_wire, Member, Node, State};
use crate::suspicion::{suspicion_timeout, Suspicion};

impl Memberlist {
    /// Encodes `msg` and queues it for gossip under `name`'s topic.
    pub(super) fn broadcast(&mut self, name: &str, msg: &Message, notify: bool) {
        let Ok(buf) = message::encode(msg) else {
            return;
        };
        if notify {
            self.broadcasts.push_notify(topic(name), buf);
        } else {
            self.broadcasts.push(topic(name), buf);
        }
    }

    /// Announces a higher incarnation of ourselves after an accusation.
    fn refute(&mut self, accused: u32) {
        let mut inc = self.next_incarnation();
        if accused >= inc {
            self.incarnation = accused.wrapping_add(1);
            inc = self.incarnation;
        }
        self.awareness.apply_delta(1);
        self.metrics.refutations += 1;
        let name = self.config.name.clone();
        let Some(me) = self.members.get_mut(&name) else {
            return;
        };
        me.node.incarnation = inc;
        let a = Alive {
            incarnation: inc,
            node: name.clone(),
            addr: ip_to_wire(me.node.addr.ip()),
            port: me.node.addr.port(),
            meta: me.node.meta.clone(),
            vsn: me.node.vsn.to_vec(),
        };
        self.broadcast(&name, &Message::Alive(a), false);
    }

    /// Applies an alive message (`bootstrap` for our own announcements).
    pub(super) fn alive_node(
        &mut self,
        now: Instant,
        a: Alive,
        bootstrap: bool,
        d: &mut impl Delegate,
    ) {
        self.apply_alive(now, a, bootstrap, true, d);
    }

    /// For the simulator: learns every node in `alive` as an alive message
    /// would teach it, but announces nothing, and drops every broadcast
    /// still queued (our own alive message included). This is the state a
    /// bootstrap leaves once its gossip has run out, reached without the
    /// `16 n²` alive messages that gossip costs (see
    /// [`Sim::assume_converged`](crate::sim::Sim::assume_converged)).
    pub(crate) fn assume_members(
        &mut self,
        now: Instant,
        alive: impl IntoIterator<Item = Alive>,
        d: &mut impl Delegate,
    ) {
        for a in alive {
            self.apply_alive(now, a, false, false, d);
        }
        self.broadcasts = crate::broadcast::BroadcastQueue::new();
    }

    /// [`alive_node`](Self::alive_node); an accepted change is re-broadcast
    /// only if `announce`.
    ///
    /// Most alive messages in a large cluster are old news (the same
    /// incarnation arrives some 16 times per member), so the message's name
    /// and meta are moved, not copied, into the candidate the delegate sees
    /// and back into the message if it is re-broadcast.
    fn apply_alive(
        &mut self,
        now: Instant,
        mut a: Alive,
        bootstrap: bool,
        announce: bool,
        d: &mut impl Delegate,
    ) {
        let is_local = a.node == self.config.name;
        if self.left && is_local {
            return;
        }
        let vsn = vsn_from_wire(&a.vsn);
        if a.vsn.len() >= 3 {
            let (pmin, pmax) = (a.vsn[0], a.vsn[1]);
            if pmin == 0 || pmax == 0 || pmin > pmax {
                return;
            }
        }
        let Some(ip) = ip_from_wire(&a.addr) else {
            return;
        };
        let addr = std::net::SocketAddr::new(ip, a.port);
        let candidate = Node {
            name: std::mem::take(&mut a.node),
            addr,
            meta: std::mem::take(&mut a.meta),
            vsn: vsn.unwrap_or_default(),
            state: State::Alive,
            incarnation: a.incarnation,
        };
        if (!bootstrap || !is_local) && d.notify_alive(&candidate).is_err() {
            return;
        }

        let mut updates_addr = false;
        let slot = match self.members.slot_of(&candidate.name) {
            None => {
                let member = Member {
                    node: Node {
                        state: State::Dead,
                        incarnation: 0,
                        ..candidate.clone()
                    },
                    state_change: now,
                };
                let slot = self.members.insert(member);
                // A random slot keeps the detection bound low on average.
                let n = self.order.len();
                self.order.push(slot);
                if n > 0 {
                    let off = rand::Rng::random_range(&mut self.rng, 0..=n);
                    self.order.swap(off, n);
                }
                slot
            }
            Some(slot) => {
                let Some(existing) = self.members.at(slot) else {
                    return;
                };
                if existing.node.addr != addr {
                    let reclaim = !self.config.dead_node_reclaim_time.is_zero()
                        && now.saturating_duration_since(existing.state_change)
                            > self.config.dead_node_reclaim_time;
                    if existing.node.state == State::Left
                        || (existing.node.state == State::Dead && reclaim)
                    {
                        updates_addr = true;
                    } else {
                        d.notify_conflict(&existing.node, &candidate);
                        return;
                    }
                }
                slot
            }
        };

        let Some(state) = self.members.at(slot) else {
            return;
        };
        let cur_inc = state.node.incarnation;
        if a.incarnation <= cur_inc && !is_local && !updates_addr {
            return;
        }
        if a.incarnation < cur_inc && is_local {
            return;
        }
        self.suspicions.remove(&candidate.name);
        let old_state = state.node.state;
        let meta_changed = state.node.meta != candidate.meta;

        if !bootstrap && is_local {
            let same = a.incarnation == cur_inc
                && !meta_changed
                && a.vsn.as_slice() == state.node.vsn.as_slice();
            if same {
                return;
            }
            self.refute(a.incarnation);
            return;
        }

        a.node = candidate.name;
        a.meta = candidate.meta;
        let msg = Message::Alive(a);
        if let Message::Alive(a) = &msg {
            if announce {
                self.broadcast(&a.node, &msg, false);
            }
        }
        let Message::Alive(a) = msg else {
            return;
        };
        let Some(state) = self.members.at_mut(slot) else {
            return;
        };
        if let Some(v) = vsn {
            state.node.vsn = v;
        }
        state.node.incarnation = a.incarnation;
        state.node.meta = a.meta;
        state.node.addr = addr;
        if state.node.state != State::Alive {
            state.node.state = State::Alive;
            state.state_change = now;
        }
        if old_state.is_dead_or_left() {
            d.notify_join(&state.node);
        } else if meta_changed {
            d.notify_update(&state.node);
        }
    }

    /// Applies a suspect message: starts (or confirms) a suspicion, or
    /// refutes it if it is about us.
    pub(super) fn suspect_node(&mut self, now: Instant, s: Suspect, _d: &mut impl Delegate) {
        let Some(slot) = self.members.slot_of(&s.node) else {
            return;
        };
        let Some(state) = self.members.at(slot) else {
            return;
        };
        if s.incarnation < state.node.incarnation {
            return;
        }
        if let Some(sus) = self.suspicions.get_mut(&s.node) {
            if sus.confirm(&s.from) {
                let name = s.node.clone();
                self.broadcast(&name, &Message::Suspect(s), false);
            }
            return;
        }
        if state.node.state != State::Alive {
            return;
        }
        if s.node == self.config.name {
            self.refute(s.incarnation);
            return;
        }
        let name = s.node.clone();
        self.broadcast(&name, &Message::Suspect(s.clone()), false);
        let Some(state) = self.members.at_mut(slot) else {
            return;
        };
        state.node.incarnation = s.incarnation;
        state.node.state = State::Suspect;
        state.state_change = now;

        // k confirmations bring the timeout down to its minimum two probe
        // intervals before the nominal SuspicionMult ones.
        let n = self.order.len();
        let mut k = self.config.suspicion_mult.saturating_sub(2);
        if n.saturating_sub(2) < k || !self.config.lifeguard.dynamic_suspicion {
            k = 0;
        }
        let min = suspicion_timeout(self.config.suspicion_mult, n, self.config.probe_interval);
        let max = min * self.config.suspicion_max_timeout_mult as u32;
        self.suspicions.insert(
            name,
            Suspicion::new(&s.from, s.incarnation, k as u32, min, max, now),
        );
    }

    /// Declares dead every suspect whose suspicion ran out.
    pub(super) fn expire_suspicions(&mut self, now: Instant, d: &mut impl Delegate) {
        let mut due: Vec<String> = self
            .suspicions
            .iter()
            .filter(|(_, s)| s.deadline() <= now)
            .map(|(n, _)| n.clone())
            .collect();
        // In a fixed order, not the map's, so a seed replays a run exactly.
        due.sort_unstable();
        for name in due {
            let Some(sus) = self.suspicions.remove(&name) else {
                continue;
            };
            let Some(m) = self.members.get(&name) else {
                continue;
            };
            if m.node.state != State::Suspect {
                continue;
            }
            let _ = sus.confirmations();
            self.metrics.suspicions_confirmed += 1;
            let dead = Dead {
                incarnation: m.node.incarnation,
                node: name,
                from: self.config.name.clone(),
            };
            self.dead_node(now, dead, d);
        }
    }

    /// Applies a dead message; `from == node` means the node left.
    pub(super) fn dead_node(&mut self, now: Instant, dm: Dead, d: &mut impl Delegate) {
        let Some(slot) = self.members.slot_of(&dm.node) else {
            return;
        };
        let Some(state) = self.members.at(slot) else {
            return;
        };
        if dm.incarnation < state.node.incarnation {
            return;
        }
        self.suspicions.remove(&dm.node);
        if state.node.state.is_dead_or_left() {
            return;
        }
        let name = dm.node.clone();
        if name == self.config.name {
            if !self.left {
                self.refute(dm.incarnation);
                return;
            }
            self.broadcast(&name, &Message::Dead(dm.clone()), true);
        } else {
            self.broadcast(&name, &Message::Dead(dm.clone()), false);
        }
        let Some(state) = self.members.at_mut(slot) else {
            return;
        };
        state.node.incarnation = dm.incarnation;
        state.node.state = if dm.node == dm.from {
            State::Left
        } else {
            State::Dead
        };
        state.state_change = now;
        d.notify_leave(&state.node);
    }

    /// Merges a peer's view from push-pull. A peer's "dead" becomes our
    /// "suspect": we give the node a chance to refute.
    pub(super) fn merge_state(
        &mut self,
        now: Instant,
        remote: Vec<PushNodeState>,
        d: &mut impl Delegate,
    ) {
        for r in remote {
            match State::from_wire(r.state) {
                Some(State::Alive) => {
                    let a = Alive {
                        incarnation: r.incarnation,
                        node: r.name,
                        addr: r.addr,
                        port: r.port,
                        meta: r.meta,
                        vsn: r.vsn,
                    };
                    self.alive_node(now, a, false, d);
                }
                Some(State::Left) => {
                    let dm = Dead {
                        incarnation: r.incarnation,
                        node: r.name.clone(),
                        from: r.name,
                    };
                    self.dead_node(now, dm, d);
                }
                Some(State::Dead) | Some(State::Suspect) => {
                    let s = Suspect {
                        incarnation: r.incarnation,
                        node: r.name,
                        from: self.config.name.clone(),
                    };
                    self.suspect_node(now, s, d);
                }
                None => {}
            }
        }
    }

    /// Checks that every live node, theirs and ours, speaks a protocol and
    /// delegate version inside the range all of them understand.
    pub(super) fn verify_protocol(&self, remote: &[PushNodeState]) -> Result<(), String> {
        let (mut maxpmin, mut minpmax, mut maxdmin, mut mindmax) = (0u8, u8::MAX, 0u8, u8::MAX);
        let remote_vsn = remote
            .iter()
            .filter(|r| r.state == State::Alive.wire())
            .filter_map(|r| vsn_from_wire(&r.vsn));
        let local_vsn = self
            .members
            .values()
            .filter(|m| m.node.state == State::Alive)
            .map(|m| m.node.vsn);
        for v in remote_vsn.chain(local_vsn) {
            maxpmin = maxpmin.max(v[0]);
            minpmax = minpmax.min(v[1]);
            maxdmin = maxdmin.max(v[3]);
            mindmax = mindmax.min(v[4]);
        }
        let check = |name: &str, pcur: u8, dcur: u8| -> Result<(), String> {
            if pcur < maxpmin || pcur > minpmax {
                return Err(format!(
                    "Node '{name}' protocol version ({pcur}) is incompatible: [{maxpmin}, {minpmax}]"
                ));
            }
            if dcur < maxdmin || dcur > mindmax {
                return Err(format!(
                    "Node '{name}' delegate protocol version ({dcur}) is incompatible: [{maxdmin}, {mindmax}]"
                ));
            }
            Ok(())
        };
        for r in remote {
            let v = vsn_from_wire(&r.vsn).unwrap_or_default();
            check(&r.name, v[2], v[5])?;
        }
        for m in self.members.values() {
            check(&m.node.name, m.node.vsn[2], m.node.vsn[5])?;
        }
        Ok(())
    }

    /// Our view for a push-pull exchange.
    pub(super) fn local_push_states(&self) -> Vec<PushNodeState> {
        self.order
            .iter()
            .filter_map(|&slot| self.members.at(slot))
            .map(|m| PushNodeState {
                name: m.node.name.clone(),
                addr: ip_to_wire(m.node.addr.ip()),
                port: m.node.addr.port(),
                meta: m.node.meta.clone(),
                incarnation: m.node.incarnation,
                state: m.node.state.wire(),
                vsn: m.node.vsn.to_vec(),
            })
            .collect()
    }
}

/// A push-pull entry as a [`Node`] (for the merge delegate).
pub(super) fn push_state_node(r: &PushNodeState) -> Option<Node> {
    let ip = ip_from_wire(&r.addr)?;
    Some(Node {
        name: r.name.clone(),
        addr: std::net::SocketAddr::new(ip, r.port),
        meta: r.meta.clone(),
        vsn: vsn_from_wire(&r.vsn).unwrap_or_default(),
        state: State::from_wire(r.state)?,
        incarnation: r.incarnation,
    })
}
