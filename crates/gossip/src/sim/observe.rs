//! What the simulator sees: every node's membership callbacks, stamped with
//! virtual time, and a live picture of who sees whom alive, kept so that
//! "has the cluster converged?" costs nothing to ask at 5,000 nodes.

use std::time::Duration;

use super::index_of;
use crate::delegate::Delegate;
use crate::node::{Node, State};

/// What an observer noticed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// The subject became alive in the observer's view (`notify_join`).
    Join,
    /// The observer declared or learnt the subject dead (`notify_leave`).
    Dead,
    /// The observer learnt the subject left (`notify_leave`).
    Left,
    /// The subject's meta changed (`notify_update`).
    Update,
    /// The observer's join through a seed completed (subject = observer).
    Joined,
    /// The observer's join through a seed failed (subject = observer).
    JoinFailed,
    /// The observer's leave was gossiped (subject = observer).
    LeaveDone,
}

/// One line of the simulator's log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Record {
    /// Virtual time since the simulation began.
    pub at: Duration,
    pub observer: u32,
    pub subject: u32,
    pub kind: Kind,
}

/// For each observer, the set of subjects it holds alive (or suspect: not
/// yet dead or left), as its delegate was told; and for each subject, how
/// many live observers hold it alive.
#[derive(Debug, Default)]
pub(super) struct Views {
    rows: Vec<Vec<u64>>,
    seen: Vec<u32>,
    live: Vec<bool>,
    live_count: u32,
    /// A subject is settled when every live observer holds it alive (a live
    /// subject) or none does (any other).
    settled: Vec<bool>,
    unsettled: usize,
}

impl Views {
    fn words(n: usize) -> usize {
        n.div_ceil(64)
    }

    pub(super) fn add_node(&mut self) {
        let n = self.seen.len() + 1;
        let w = Self::words(n);
        for r in &mut self.rows {
            r.resize(w, 0);
        }
        self.rows.push(vec![0; w]);
        self.seen.push(0);
        self.live.push(false);
        self.settled.push(true);
    }

    pub(super) fn sees(&self, o: usize, s: usize) -> bool {
        self.rows[o][s / 64] & (1 << (s % 64)) != 0
    }

    pub(super) fn set(&mut self, o: usize, s: usize, alive: bool) {
        if s >= self.seen.len() || self.sees(o, s) == alive {
            return;
        }
        self.rows[o][s / 64] ^= 1 << (s % 64);
        if self.live[o] {
            if alive {
                self.seen[s] += 1;
            } else {
                self.seen[s] -= 1;
            }
            self.resettle(s);
        }
    }

    fn resettle(&mut self, s: usize) {
        let ok = if self.live[s] {
            self.seen[s] == self.live_count
        } else {
            self.seen[s] == 0
        };
        if ok != self.settled[s] {
            self.settled[s] = ok;
            if ok {
                self.unsettled -= 1;
            } else {
                self.unsettled += 1;
            }
        }
    }

    /// Marks `o` live or not; its view counts only while it is live.
    pub(super) fn set_live(&mut self, o: usize, live: bool) {
        if self.live[o] == live {
            return;
        }
        self.live[o] = live;
        if live {
            self.live_count += 1;
        } else {
            self.live_count -= 1;
        }
        for (w, &bits) in self.rows[o].iter().enumerate() {
            let mut b = bits;
            while b != 0 {
                let s = w * 64 + b.trailing_zeros() as usize;
                b &= b - 1;
                if live {
                    self.seen[s] += 1;
                } else {
                    self.seen[s] -= 1;
                }
            }
        }
        for s in 0..self.seen.len() {
            self.resettle(s);
        }
    }

    pub(super) fn is_live(&self, o: usize) -> bool {
        self.live[o]
    }

    pub(super) fn live_count(&self) -> usize {
        self.live_count as usize
    }

    /// Live observers that hold `s` alive.
    pub(super) fn seen_by(&self, s: usize) -> usize {
        self.seen[s] as usize
    }

    pub(super) fn converged(&self) -> bool {
        self.unsettled == 0
    }

    pub(super) fn unsettled(&self) -> usize {
        self.unsettled
    }
}

/// The log and the views, fed by every node's delegate.
#[derive(Debug)]
pub(super) struct Observer {
    pub(super) log: Vec<Record>,
    pub(super) log_joins: bool,
    pub(super) views: Views,
}

impl Observer {
    pub(super) fn new() -> Observer {
        Observer {
            log: Vec::new(),
            log_joins: true,
            views: Views::default(),
        }
    }

    pub(super) fn note(&mut self, at: Duration, observer: usize, subject: usize, kind: Kind) {
        if kind == Kind::Join && !self.log_joins {
            return;
        }
        self.log.push(Record {
            at,
            observer: observer as u32,
            subject: subject as u32,
            kind,
        });
    }
}

/// The delegate lent to one node for one input: it writes what the node is
/// told into the observer, stamped with the current virtual time.
pub(super) struct Tap<'a> {
    pub(super) at: Duration,
    pub(super) node: usize,
    pub(super) obs: &'a mut Observer,
}

impl Tap<'_> {
    fn change(&mut self, node: &Node, kind: Kind, alive: bool) {
        let Some(s) = index_of(node.addr) else {
            return;
        };
        self.obs.views.set(self.node, s, alive);
        self.obs.note(self.at, self.node, s, kind);
    }
}

impl Delegate for Tap<'_> {
    fn notify_join(&mut self, node: &Node) {
        self.change(node, Kind::Join, true);
    }

    fn notify_leave(&mut self, node: &Node) {
        let kind = if node.state == State::Left {
            Kind::Left
        } else {
            Kind::Dead
        };
        self.change(node, kind, false);
    }

    fn notify_update(&mut self, node: &Node) {
        if let Some(s) = index_of(node.addr) {
            self.obs.note(self.at, self.node, s, Kind::Update);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn views_track_convergence() {
        let mut v = Views::default();
        for _ in 0..3 {
            v.add_node();
        }
        assert!(v.converged(), "nobody live, nobody seen");
        for i in 0..3 {
            v.set_live(i, true);
            v.set(i, i, true);
        }
        assert!(!v.converged());
        for o in 0..3 {
            for s in 0..3 {
                v.set(o, s, true);
            }
        }
        assert!(v.converged());
        v.set_live(2, false);
        assert!(!v.converged(), "0 and 1 still hold 2 alive");
        assert_eq!(v.seen_by(2), 2);
        v.set(0, 2, false);
        v.set(1, 2, false);
        assert!(v.converged());
        assert_eq!(v.unsettled(), 0);
    }
}
