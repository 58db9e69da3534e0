//! Event coalescing, as the Serf agent does it by default: a burst of
//! member events (or of coalescable user events) is held until it goes
//! quiet for the quiescent period or the coalesce period ends, then
//! delivered as one event per kind with the latest state of each member
//! (or only the newest user event of each name). Sans-IO: time is passed
//! in and [`Coalescer::poll_timeout`] says when to call back.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use crate::clock::LamportTime;
use crate::event::{Event, MemberEventKind};
use crate::member::Member;

/// One coalescing stage's timers.
#[derive(Debug, Clone, Default)]
struct Window {
    /// End of the coalesce period (set by the first event of a burst).
    quantum: Option<Instant>,
    /// End of the quiet period (pushed back by every event).
    quiescent: Option<Instant>,
}

impl Window {
    fn touch(&mut self, now: Instant, period: Duration, quiet: Duration) {
        self.quantum.get_or_insert(now + period);
        self.quiescent = Some(now + quiet);
    }

    fn due(&self, now: Instant) -> bool {
        self.quantum.is_some_and(|t| now >= t) || self.quiescent.is_some_and(|t| now >= t)
    }

    fn next(&self) -> Option<Instant> {
        match (self.quantum, self.quiescent) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Coalescer {
    period: Duration,
    quiet: Duration,
    member_window: Window,
    /// Latest event kind and member state per name in this burst.
    latest: BTreeMap<String, (MemberEventKind, Member)>,
    /// The kind last delivered per member (repeats are dropped).
    delivered: HashMap<String, MemberEventKind>,
    user_window: Window,
    /// Per event name: the newest Lamport time and its events.
    user: BTreeMap<String, (LamportTime, Vec<Event>)>,
}

impl Coalescer {
    /// Serf agent's setting is 3 s / 1 s for both member and user events.
    pub fn new(period: Duration, quiet: Duration) -> Coalescer {
        Coalescer {
            period,
            quiet,
            member_window: Window::default(),
            latest: BTreeMap::new(),
            delivered: HashMap::new(),
            user_window: Window::default(),
            user: BTreeMap::new(),
        }
    }

    /// Takes an event; returns it back if it is not coalesced.
    pub fn push(&mut self, now: Instant, e: Event) -> Option<Event> {
        match e {
            Event::Member { kind, members } => {
                self.member_window.touch(now, self.period, self.quiet);
                for m in members {
                    self.latest.insert(m.name.clone(), (kind, m));
                }
                None
            }
            Event::User {
                ltime,
                ref name,
                coalesce: true,
                ..
            } => {
                self.user_window.touch(now, self.period, self.quiet);
                let entry = self.user.entry(name.clone()).or_insert((ltime, Vec::new()));
                if entry.0 < ltime {
                    *entry = (ltime, vec![e]);
                } else if entry.0 == ltime {
                    entry.1.push(e);
                }
                None
            }
            other => Some(other),
        }
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        match (self.member_window.next(), self.user_window.next()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Events whose window has closed at `now`.
    pub fn flush_due(&mut self, now: Instant) -> Vec<Event> {
        let mut out = Vec::new();
        if self.member_window.due(now) {
            self.member_window = Window::default();
            out.extend(self.flush_members());
        }
        if self.user_window.due(now) {
            self.user_window = Window::default();
            for (_, (_, evs)) in std::mem::take(&mut self.user) {
                out.extend(evs);
            }
        }
        out
    }

    /// Everything held, now (on shutdown).
    pub fn flush_all(&mut self) -> Vec<Event> {
        let mut out = self.flush_members();
        for (_, (_, evs)) in std::mem::take(&mut self.user) {
            out.extend(evs);
        }
        self.member_window = Window::default();
        self.user_window = Window::default();
        out
    }

    fn flush_members(&mut self) -> Vec<Event> {
        let mut by_kind: BTreeMap<&'static str, (MemberEventKind, Vec<Member>)> = BTreeMap::new();
        for (name, (kind, m)) in std::mem::take(&mut self.latest) {
            if self.delivered.get(&name) == Some(&kind) && kind != MemberEventKind::Update {
                continue;
            }
            self.delivered.insert(name, kind);
            by_kind
                .entry(kind.as_str())
                .or_insert((kind, Vec::new()))
                .1
                .push(m);
        }
        by_kind
            .into_values()
            .map(|(kind, members)| Event::Member { kind, members })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::member::MemberStatus;

    fn member(name: &str) -> Member {
        Member {
            name: name.into(),
            addr: "127.0.0.1".parse().unwrap(),
            port: 7946,
            tags: Default::default(),
            status: MemberStatus::Alive,
            vsn: [1, 5, 2, 2, 5, 4],
        }
    }

    fn join(name: &str) -> Event {
        Event::Member {
            kind: MemberEventKind::Join,
            members: vec![member(name)],
        }
    }

    #[test]
    fn a_burst_of_joins_becomes_one_event_after_the_quiet_period() {
        let t0 = Instant::now();
        let mut c = Coalescer::new(Duration::from_secs(3), Duration::from_secs(1));
        assert!(c.push(t0, join("a")).is_none());
        assert!(c.push(t0 + Duration::from_millis(500), join("b")).is_none());
        assert!(c.flush_due(t0 + Duration::from_millis(1200)).is_empty());
        assert_eq!(c.poll_timeout(), Some(t0 + Duration::from_millis(1500)));
        let out = c.flush_due(t0 + Duration::from_millis(1500));
        assert_eq!(out.len(), 1);
        let Event::Member { kind, members } = &out[0] else {
            panic!()
        };
        assert_eq!(*kind, MemberEventKind::Join);
        assert_eq!(members.len(), 2);
        // The same state again is not repeated.
        c.push(t0 + Duration::from_secs(5), join("a"));
        assert!(c.flush_due(t0 + Duration::from_secs(9)).is_empty());
    }

    #[test]
    fn the_latest_state_wins_and_the_period_caps_waiting() {
        let t0 = Instant::now();
        let mut c = Coalescer::new(Duration::from_secs(3), Duration::from_secs(1));
        for i in 0..10 {
            let kind = if i % 2 == 0 {
                MemberEventKind::Join
            } else {
                MemberEventKind::Failed
            };
            c.push(
                t0 + Duration::from_millis(400 * i),
                Event::Member {
                    kind,
                    members: vec![member("a")],
                },
            );
        }
        // Events keep coming every 400 ms: the 3 s period ends the burst.
        let out = c.flush_due(t0 + Duration::from_secs(3));
        assert_eq!(out.len(), 1);
        assert!(matches!(
            &out[0],
            Event::Member {
                kind: MemberEventKind::Failed,
                ..
            }
        ));
    }

    #[test]
    fn user_events_keep_only_the_newest_of_each_name() {
        let t0 = Instant::now();
        let mut c = Coalescer::new(Duration::from_secs(3), Duration::from_secs(1));
        let ev = |ltime, name: &str, coalesce| Event::User {
            ltime,
            name: name.into(),
            payload: vec![],
            coalesce,
        };
        assert!(c.push(t0, ev(1, "deploy", true)).is_none());
        assert!(c.push(t0, ev(3, "deploy", true)).is_none());
        assert!(c.push(t0, ev(2, "deploy", true)).is_none());
        assert!(
            c.push(t0, ev(4, "other", false)).is_some(),
            "not coalescable"
        );
        let out = c.flush_due(t0 + Duration::from_secs(1));
        assert_eq!(out, vec![ev(3, "deploy", true)]);
    }
}
