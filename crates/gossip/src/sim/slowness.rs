//! CPU starvation of a node, in two shapes.
//!
//! Pauses ([`Slowness::Periodic`], [`Slowness::Random`]): the process is not
//! scheduled for a while, so nothing it receives is read and none of its
//! timers run. When it is scheduled again it first runs every timer that
//! came due (as a starved Go process does: its timers have fired, the
//! packets still sit in the socket buffer) and then reads its backlog in
//! arrival order.
//!
//! Slow processing ([`Slowness::Busy`], [`Slowness::Lag`]): the process
//! runs and its timers fire on time, but messages are read late: each takes
//! long to handle, so they wait in line behind each other (`Busy`, a queue
//! that can grow without bound under load), or every one is read a fixed
//! time after it arrived (`Lag`, a queue that stays the same length). An ack
//! can then be read after its probe timed out.
//!
//! Either way this is the fault Lifeguard is about: the starved node misses
//! its acks, accuses healthy peers, and answers accusations about itself
//! too late.

use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// When a node is starved.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Slowness {
    /// Paused for `pause` out of every `period`, at a random phase.
    Periodic { period: Duration, pause: Duration },
    /// Pauses of a length uniform in `min..=max`, each starting after a gap
    /// drawn from an exponential distribution with mean `mean_gap`.
    Random {
        mean_gap: Duration,
        min: Duration,
        max: Duration,
    },
    /// Handling one input (packet, stream request or reply) takes
    /// `per_input`; inputs are handled one at a time, in arrival order.
    Busy { per_input: Duration },
    /// Every input is handled `delay` after it arrives.
    Lag { delay: Duration },
}

impl Slowness {
    /// The time one input takes, for [`Slowness::Busy`].
    pub(super) fn per_input(&self) -> Option<Duration> {
        match self {
            Slowness::Busy { per_input } => Some(*per_input),
            _ => None,
        }
    }

    /// The fixed delay of every input, for [`Slowness::Lag`].
    pub(super) fn lag(&self) -> Option<Duration> {
        match self {
            Slowness::Lag { delay } => Some(*delay),
            _ => None,
        }
    }

    fn pauses(&self) -> bool {
        matches!(self, Slowness::Periodic { .. } | Slowness::Random { .. })
    }
}

/// One node's pause windows, drawn lazily and deterministically.
#[derive(Debug, Clone)]
pub(super) struct Starvation {
    model: Slowness,
    rng: SmallRng,
    /// The current or next pause, `[start, end)` in virtual time since the
    /// simulation began.
    window: (Duration, Duration),
}

impl Starvation {
    pub(super) fn new(model: Slowness, now: Duration, seed: u64) -> Starvation {
        let mut rng = SmallRng::seed_from_u64(seed);
        let window = match model {
            Slowness::Periodic { period, pause } => {
                let phase = random_below(period, &mut rng);
                let start = now + phase;
                (start, start + pause.min(period))
            }
            _ => (now, now),
        };
        let mut s = Starvation { model, rng, window };
        if matches!(model, Slowness::Random { .. }) {
            s.window = s.next_random(now);
        }
        s
    }

    fn next_random(&mut self, after: Duration) -> (Duration, Duration) {
        let Slowness::Random { mean_gap, min, max } = self.model else {
            return self.window;
        };
        // Inverse transform of an exponential; 1 - u is in (0, 1].
        let u: f64 = self.rng.random();
        let gap = mean_gap.as_secs_f64() * -(1.0 - u).ln();
        let start = after + Duration::from_secs_f64(gap);
        let (lo, hi) = (min.min(max), max.max(min));
        let len = lo + random_below(hi - lo + Duration::from_nanos(1), &mut self.rng);
        (start, start + len)
    }

    pub(super) fn model(&self) -> Slowness {
        self.model
    }

    /// If the node is paused at `t`, when it resumes. `t` must not go
    /// backwards between calls.
    pub(super) fn paused_until(&mut self, t: Duration) -> Option<Duration> {
        if !self.model.pauses() {
            return None;
        }
        while self.window.1 <= t {
            self.window = match self.model {
                Slowness::Periodic { period, .. } => {
                    let len = self.window.1 - self.window.0;
                    let behind = (t - self.window.0).as_nanos() / period.as_nanos().max(1);
                    let start = self.window.0 + period * (behind as u32).max(1);
                    (start, start + len)
                }
                Slowness::Random { .. } => self.next_random(self.window.1),
                Slowness::Busy { .. } | Slowness::Lag { .. } => return None,
            };
            if self.window.1 == self.window.0 {
                // A zero-length pause never holds the node.
                return None;
            }
        }
        (self.window.0 <= t).then_some(self.window.1)
    }
}

fn random_below(d: Duration, rng: &mut SmallRng) -> Duration {
    let ns = d.as_nanos() as u64;
    if ns == 0 {
        Duration::ZERO
    } else {
        Duration::from_nanos(rng.random_range(0..ns))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn periodic_pauses_take_their_share() {
        let mut s = Starvation::new(
            Slowness::Periodic {
                period: ms(1000),
                pause: ms(250),
            },
            Duration::ZERO,
            7,
        );
        let paused = (0..20_000)
            .filter(|&i| s.paused_until(ms(i)).is_some())
            .count();
        assert!((4900..=5100).contains(&paused), "{paused} of 20000 ms");
    }

    #[test]
    fn random_pauses_are_repeatable_and_bounded() {
        let model = Slowness::Random {
            mean_gap: ms(2000),
            min: ms(100),
            max: ms(900),
        };
        let mut a = Starvation::new(model, Duration::ZERO, 3);
        let mut b = Starvation::new(model, Duration::ZERO, 3);
        let mut pauses = 0;
        for i in 0..60_000 {
            let (x, y) = (a.paused_until(ms(i)), b.paused_until(ms(i)));
            assert_eq!(x, y);
            if let Some(end) = x {
                assert!(end > ms(i) && end <= ms(i) + ms(900));
                pauses += 1;
            }
        }
        assert!(pauses > 5_000, "paused {pauses} ms of 60 s");
    }
}
