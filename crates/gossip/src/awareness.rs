//! Lifeguard's local health awareness: a score that rises when we seem to be
//! the slow one (missed nacks, having to refute) and scales our probe
//! interval, so a starved node stops accusing healthy peers.

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Awareness {
    max: usize,
    score: usize,
}

impl Awareness {
    /// `max` is the largest multiplier; the score stays in `0..max`.
    pub fn new(max: usize) -> Awareness {
        Awareness {
            max: max.max(1),
            score: 0,
        }
    }

    pub fn apply_delta(&mut self, delta: isize) {
        let s = self.score as isize + delta;
        self.score = s.clamp(0, self.max as isize - 1) as usize;
    }

    /// 0 is healthy.
    pub fn health_score(&self) -> usize {
        self.score
    }

    pub fn scale(&self, timeout: Duration) -> Duration {
        timeout * (self.score as u32 + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn score_is_clamped_and_scales() {
        let mut a = Awareness::new(8);
        a.apply_delta(-3);
        assert_eq!(a.health_score(), 0);
        a.apply_delta(3);
        assert_eq!(a.scale(Duration::from_secs(1)), Duration::from_secs(4));
        a.apply_delta(100);
        assert_eq!(a.health_score(), 7);
        let off = Awareness::new(1);
        let mut off2 = off.clone();
        off2.apply_delta(5);
        assert_eq!(off2.scale(Duration::from_secs(1)), Duration::from_secs(1));
    }
}
