use std::collections::VecDeque;
use std::time::{Duration, Instant};

use state::Index;

/// How long a tombstone outlives its key: long enough that any client still
/// blocked on an older index has come back and seen the deletion.
pub const TOMBSTONE_TTL: Duration = Duration::from_secs(15 * 60);

/// Deletions are grouped into buckets this wide, so the reaper issues at
/// most one command per bucket however many keys are deleted.
pub const TOMBSTONE_GRANULARITY: Duration = Duration::from_secs(30);

/// Decides when tombstones may be reaped. It takes the time as an argument
/// so its rules can be tested without waiting; the agent feeds it the
/// tombstone table's index and acts on [`TombstoneReaper::due`].
pub struct TombstoneReaper {
    ttl: Duration,
    granularity: Duration,
    /// (when first seen, highest tombstone index seen in that bucket).
    pending: VecDeque<(Instant, Index)>,
    seen: Index,
}

impl TombstoneReaper {
    pub fn new(ttl: Duration, granularity: Duration) -> TombstoneReaper {
        TombstoneReaper {
            ttl,
            granularity,
            pending: VecDeque::new(),
            seen: 0,
        }
    }

    /// Notes the tombstone table's index at `now`.
    pub fn observe(&mut self, now: Instant, tombstone_index: Index) {
        if tombstone_index <= self.seen {
            return;
        }
        self.seen = tombstone_index;
        match self.pending.back_mut() {
            Some((since, index)) if now.duration_since(*since) < self.granularity => {
                *index = tombstone_index;
            }
            _ => self.pending.push_back((now, tombstone_index)),
        }
    }

    /// The index up to which tombstones have expired at `now`, if any are
    /// newly expired. Each expiry is returned once.
    pub fn due(&mut self, now: Instant) -> Option<Index> {
        let mut up_to = None;
        while let Some(&(since, index)) = self.pending.front() {
            if now.duration_since(since) < self.ttl + self.granularity {
                break;
            }
            up_to = Some(index);
            self.pending.pop_front();
        }
        up_to
    }
}

impl Default for TombstoneReaper {
    fn default() -> Self {
        TombstoneReaper::new(TOMBSTONE_TTL, TOMBSTONE_GRANULARITY)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reaps_only_after_ttl_and_once() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut reaper = TombstoneReaper::new(s(60), s(10));
        reaper.observe(t0, 5);
        reaper.observe(t0 + s(3), 7);
        reaper.observe(t0 + s(20), 9);
        assert_eq!(reaper.due(t0 + s(60)), None);
        assert_eq!(reaper.due(t0 + s(70)), Some(7));
        assert_eq!(reaper.due(t0 + s(71)), None);
        assert_eq!(reaper.due(t0 + s(200)), Some(9));
        reaper.observe(t0 + s(201), 9);
        assert_eq!(
            reaper.due(t0 + s(999)),
            None,
            "an index seen before is not reaped twice"
        );
    }
}
