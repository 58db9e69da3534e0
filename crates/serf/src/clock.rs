//! Lamport clocks: a counter that only moves forward, advanced past every
//! time we witness, so causally later messages carry larger times.

/// A Lamport timestamp.
pub type LamportTime = u64;

#[derive(Debug, Default, Clone)]
pub struct LamportClock {
    counter: LamportTime,
}

impl LamportClock {
    pub fn new() -> Self {
        Self::default()
    }

    /// The current time.
    pub fn time(&self) -> LamportTime {
        self.counter
    }

    /// Moves the clock forward one tick and returns the new time.
    pub fn increment(&mut self) -> LamportTime {
        self.counter += 1;
        self.counter
    }

    /// Records that `t` happened: afterwards our time is past it.
    pub fn witness(&mut self, t: LamportTime) {
        if t >= self.counter {
            self.counter = t + 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn witness_moves_past_and_never_back() {
        let mut c = LamportClock::new();
        assert_eq!(c.increment(), 1);
        c.witness(41);
        assert_eq!(c.time(), 42);
        c.witness(10);
        assert_eq!(c.time(), 42);
    }

    proptest! {
        #[test]
        fn monotone_and_after_every_witness(ops in proptest::collection::vec(proptest::option::of(0u64..1_000_000), 1..200)) {
            let mut c = LamportClock::new();
            let mut last = 0;
            for op in ops {
                match op {
                    Some(t) => { c.witness(t); prop_assert!(c.time() > t); }
                    None => { c.increment(); }
                }
                prop_assert!(c.time() >= last);
                last = c.time();
            }
        }
    }
}
