//! Latency samples and failure counts, merged from the workers.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::api::Failure;

#[derive(Default)]
pub struct Tally {
    /// Latency of each measured success, in microseconds.
    pub latencies_us: Vec<u32>,
    pub failures: BTreeMap<Failure, u64>,
    /// The first failure seen, with what the server said, for the log.
    pub first_failure: Option<String>,
}

impl Tally {
    pub fn success(&mut self, latency: Duration) {
        self.latencies_us
            .push(u32::try_from(latency.as_micros()).unwrap_or(u32::MAX));
    }

    pub fn failure(&mut self, failure: Failure, detail: impl FnOnce() -> String) {
        *self.failures.entry(failure).or_default() += 1;
        if self.first_failure.is_none() {
            self.first_failure = Some(format!("{failure}: {}", detail()));
        }
    }

    pub fn merge(&mut self, other: Tally) {
        self.latencies_us.extend(other.latencies_us);
        for (failure, n) in other.failures {
            *self.failures.entry(failure).or_default() += n;
        }
        if self.first_failure.is_none() {
            self.first_failure = other.first_failure;
        }
    }

    pub fn errors(&self) -> u64 {
        self.failures.values().sum()
    }

    /// `kind:count,...`, or `none`.
    pub fn failure_list(&self) -> String {
        if self.failures.is_empty() {
            return "none".into();
        }
        self.failures
            .iter()
            .map(|(f, n)| format!("{f}:{n}"))
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// p50, p99 and max of `samples` in milliseconds (sorts them).
pub struct Percentiles {
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

pub fn percentiles(samples: &mut [u32]) -> Percentiles {
    samples.sort_unstable();
    let at = |q: f64| -> f64 {
        if samples.is_empty() {
            return 0.0;
        }
        // Nearest rank: the smallest sample with at least q of them at or below it.
        let rank = ((q * samples.len() as f64).ceil() as usize).clamp(1, samples.len());
        f64::from(samples[rank - 1]) / 1000.0
    };
    Percentiles {
        p50: at(0.50),
        p99: at(0.99),
        max: at(1.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank() {
        let mut s: Vec<u32> = (1..=100).rev().map(|ms| ms * 1000).collect();
        let p = percentiles(&mut s);
        assert_eq!((p.p50, p.p99, p.max), (50.0, 99.0, 100.0));
        let p = percentiles(&mut []);
        assert_eq!(p.max, 0.0);
    }
}
