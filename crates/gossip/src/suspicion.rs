//! A suspicion of one node, with Lifeguard's dynamic timeout: it starts at
//! `max` and shrinks towards `min` as independent peers confirm it, because
//! each confirmation makes a false alarm less likely.

use std::collections::HashSet;
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct Suspicion {
    /// Confirmations expected before the timeout reaches `min`.
    k: u32,
    /// Confirmations so far (the original accuser not counted).
    n: u32,
    min: Duration,
    max: Duration,
    start: Instant,
    /// Who has accused, so a repeat does not count twice.
    from: HashSet<String>,
    /// The suspected incarnation, to ignore a stale timer.
    pub incarnation: u32,
}

impl Suspicion {
    pub fn new(
        from: &str,
        incarnation: u32,
        k: u32,
        min: Duration,
        max: Duration,
        now: Instant,
    ) -> Suspicion {
        let mut who = HashSet::new();
        who.insert(from.to_string());
        Suspicion {
            k,
            n: 0,
            min,
            max,
            start: now,
            from: who,
            incarnation,
        }
    }

    /// Counts a confirmation from a new accuser; true if it was new (and
    /// worth re-gossiping).
    pub fn confirm(&mut self, from: &str) -> bool {
        if self.n >= self.k || self.from.contains(from) {
            return false;
        }
        self.from.insert(from.to_string());
        self.n += 1;
        true
    }

    pub fn confirmations(&self) -> u32 {
        self.n
    }

    /// When the node is to be declared dead.
    pub fn deadline(&self) -> Instant {
        if self.k < 1 {
            return self.start + self.min;
        }
        let frac = ((self.n as f64) + 1.0).ln() / ((self.k as f64) + 1.0).ln();
        let raw = self.max.as_secs_f64() - frac * (self.max.as_secs_f64() - self.min.as_secs_f64());
        let timeout = Duration::from_millis((raw * 1000.0).floor().max(0.0) as u64).max(self.min);
        self.start + timeout
    }
}

/// The shortest suspicion: `mult * max(1, log10(max(1, n))) * interval`,
/// computed in milliseconds of node scale as memberlist does.
pub fn suspicion_timeout(mult: usize, n: usize, interval: Duration) -> Duration {
    let scale = (n.max(1) as f64).log10().max(1.0);
    let scaled = (scale * 1000.0) as u64;
    interval * (mult as u32) * (scaled as u32) / 1000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeout_shrinks_with_confirmations() {
        let t0 = Instant::now();
        let min = Duration::from_secs(2);
        let max = Duration::from_secs(30);
        let mut s = Suspicion::new("a", 1, 3, min, max, t0);
        assert_eq!(s.deadline(), t0 + max);
        assert!(s.confirm("b"));
        assert!(!s.confirm("b"), "a repeat accuser does not count");
        assert!(!s.confirm("a"), "nor does the first one");
        let d1 = s.deadline();
        assert!(d1 < t0 + max && d1 > t0 + min);
        assert!(s.confirm("c"));
        assert!(s.confirm("d"));
        assert_eq!(s.deadline(), t0 + min);
        assert!(!s.confirm("e"), "no more than k confirmations");
    }

    #[test]
    fn no_expected_confirmations_means_min() {
        let t0 = Instant::now();
        let s = Suspicion::new(
            "a",
            1,
            0,
            Duration::from_secs(1),
            Duration::from_secs(6),
            t0,
        );
        assert_eq!(s.deadline(), t0 + Duration::from_secs(1));
    }

    #[test]
    fn base_timeout_scales_with_log_n() {
        let i = Duration::from_secs(1);
        assert_eq!(suspicion_timeout(4, 1, i), Duration::from_secs(4));
        assert_eq!(suspicion_timeout(4, 10, i), Duration::from_secs(4));
        assert_eq!(suspicion_timeout(4, 1000, i), Duration::from_secs(12));
        assert_eq!(suspicion_timeout(4, 100, i), Duration::from_secs(8));
    }
}
