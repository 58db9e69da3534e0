//! Our own coordinate and the Vivaldi update that moves it.

use std::collections::HashMap;
use std::time::Duration;

use crate::vector::unit_vector_at;
use crate::{Config, Coordinate, ZERO_THRESHOLD};

/// Round trips above this are measurement errors, not latencies.
const MAX_RTT: Duration = Duration::from_secs(10);

/// Why an observation was rejected; the coordinate is left unchanged.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum UpdateError {
    #[error("dimensions aren't compatible")]
    Incompatible,
    #[error("coordinate is invalid")]
    Invalid,
    #[error(
        "round trip time not in valid range, duration {0:?} is not a positive value less than 10s"
    )]
    BadRtt(Duration),
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientStats {
    /// Times the coordinate went invalid and was reset to the origin.
    pub resets: u64,
}

/// Keeps this node's coordinate.
#[derive(Debug, Clone)]
pub struct Client {
    coord: Coordinate,
    origin: Coordinate,
    config: Config,
    adjustment_index: usize,
    adjustment_samples: Vec<f64>,
    /// Recent RTT samples per peer, for the median filter.
    latency_samples: HashMap<String, Vec<f64>>,
    stats: ClientStats,
    /// xorshift state for the rare random direction.
    rng: u64,
}

impl Client {
    /// `seed` feeds the random direction used when two nodes coincide.
    pub fn new(config: Config, seed: u64) -> Client {
        Client {
            coord: Coordinate::new(&config),
            origin: Coordinate::new(&config),
            adjustment_index: 0,
            adjustment_samples: vec![0.0; config.adjustment_window],
            latency_samples: HashMap::new(),
            stats: ClientStats::default(),
            rng: seed | 1,
            config,
        }
    }

    pub fn coordinate(&self) -> &Coordinate {
        &self.coord
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Replaces our coordinate (e.g. restored from a snapshot).
    pub fn set_coordinate(&mut self, c: Coordinate) -> Result<(), UpdateError> {
        self.check(&c)?;
        self.coord = c;
        Ok(())
    }

    /// Drops the RTT history of a node that left.
    pub fn forget(&mut self, node: &str) {
        self.latency_samples.remove(node);
    }

    pub fn stats(&self) -> &ClientStats {
        &self.stats
    }

    pub fn distance_to(&self, other: &Coordinate) -> Option<f64> {
        self.coord.distance_to(other)
    }

    fn check(&self, c: &Coordinate) -> Result<(), UpdateError> {
        if !self.coord.is_compatible_with(c) {
            return Err(UpdateError::Incompatible);
        }
        if !c.is_valid() {
            return Err(UpdateError::Invalid);
        }
        Ok(())
    }

    /// Moves our coordinate after measuring `rtt` to `node`, whose
    /// coordinate is `other`. Returns the new coordinate.
    pub fn update(
        &mut self,
        node: &str,
        other: &Coordinate,
        rtt: Duration,
    ) -> Result<&Coordinate, UpdateError> {
        self.check(other)?;
        if rtt > MAX_RTT {
            return Err(UpdateError::BadRtt(rtt));
        }
        let rtt = self.latency_filter(node, rtt.as_secs_f64());
        self.update_vivaldi(other, rtt);
        self.update_adjustment(other, rtt);
        self.update_gravity();
        if !self.coord.is_valid() {
            self.stats.resets += 1;
            self.coord = Coordinate::new(&self.config);
        }
        Ok(&self.coord)
    }

    /// The median of the last few samples to `node` (including this one).
    fn latency_filter(&mut self, node: &str, rtt: f64) -> f64 {
        let size = self.config.latency_filter_size.max(1);
        let samples = self.latency_samples.entry(node.to_string()).or_default();
        samples.push(rtt);
        if samples.len() > size {
            samples.remove(0);
        }
        let mut sorted = samples.clone();
        sorted.sort_by(f64::total_cmp);
        sorted[sorted.len() / 2]
    }

    fn random(&mut self) -> f64 {
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        (x >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Moves `coord` along the line to `other` by `force` seconds (positive
    /// pushes away); the height takes its share of the move.
    fn apply_force(&mut self, from: &Coordinate, force: f64, other: &Coordinate) -> Coordinate {
        let mut ret = from.clone();
        let (unit, mag) = unit_vector_at(&from.vec, &other.vec, || self.random());
        for (r, u) in ret.vec.iter_mut().zip(&unit) {
            *r += u * force;
        }
        if mag > ZERO_THRESHOLD {
            ret.height = (ret.height + other.height) * force / mag + ret.height;
            ret.height = ret.height.max(self.config.height_min);
        }
        ret
    }

    fn update_vivaldi(&mut self, other: &Coordinate, rtt: f64) {
        let dist = self.coord.distance_to(other).unwrap_or(0.0);
        let rtt = rtt.max(ZERO_THRESHOLD);
        let wrongness = (dist - rtt).abs() / rtt;
        let total_error = (self.coord.error + other.error).max(ZERO_THRESHOLD);
        let weight = self.coord.error / total_error;
        let ce = self.config.ce;
        self.coord.error = (ce * weight * wrongness + self.coord.error * (1.0 - ce * weight))
            .min(self.config.error_max);
        let force = self.config.cc * weight * (rtt - dist);
        let from = self.coord.clone();
        self.coord = self.apply_force(&from, force, other);
    }

    fn update_adjustment(&mut self, other: &Coordinate, rtt: f64) {
        let window = self.config.adjustment_window;
        if window == 0 {
            return;
        }
        let dist = self.coord.raw_distance_to(other);
        self.adjustment_samples[self.adjustment_index] = rtt - dist;
        self.adjustment_index = (self.adjustment_index + 1) % window;
        let sum: f64 = self.adjustment_samples.iter().sum();
        self.coord.adjustment = sum / (2.0 * window as f64);
    }

    fn update_gravity(&mut self) {
        let dist = self.origin.distance_to(&self.coord).unwrap_or(0.0);
        let force = -(dist / self.config.gravity_rho).powi(2);
        let from = self.coord.clone();
        let origin = self.origin.clone();
        self.coord = self.apply_force(&from, force, &origin);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(vec: &[f64]) -> Coordinate {
        Coordinate {
            vec: vec.to_vec(),
            error: 1.5,
            adjustment: 0.0,
            height: 10.0e-6,
        }
    }

    #[test]
    fn rejects_bad_input_and_keeps_the_coordinate() {
        let mut c = Client::new(Config::default(), 1);
        let before = c.coordinate().clone();
        let mut nan = Coordinate::new(&Config::default());
        nan.vec[3] = f64::NAN;
        assert_eq!(
            c.update("a", &nan, Duration::from_millis(1)),
            Err(UpdateError::Invalid)
        );
        let short = at(&[0.0; 2]);
        assert_eq!(
            c.update("a", &short, Duration::from_millis(1)),
            Err(UpdateError::Incompatible)
        );
        let ok = Coordinate::new(&Config::default());
        assert!(matches!(
            c.update("a", &ok, Duration::from_secs(11)),
            Err(UpdateError::BadRtt(_))
        ));
        assert_eq!(c.coordinate(), &before);
    }

    #[test]
    fn two_nodes_settle_at_their_rtt() {
        let cfg = Config::default();
        let mut a = Client::new(cfg.clone(), 1);
        let mut b = Client::new(cfg, 2);
        let rtt = Duration::from_millis(50);
        for _ in 0..200 {
            let cb = b.coordinate().clone();
            a.update("b", &cb, rtt).unwrap();
            let ca = a.coordinate().clone();
            b.update("a", &ca, rtt).unwrap();
        }
        let est = a.coordinate().distance_to(b.coordinate()).unwrap();
        assert!((est - 0.050).abs() < 0.005, "estimate {est}");
        assert!(a.coordinate().error < 0.5);
    }

    #[test]
    fn median_filter_ignores_one_outlier() {
        let mut c = Client::new(Config::default(), 1);
        assert_eq!(c.latency_filter("x", 0.010), 0.010);
        assert_eq!(c.latency_filter("x", 0.500), 0.500);
        assert_eq!(c.latency_filter("x", 0.011), 0.011);
        assert_eq!(c.latency_filter("x", 0.012), 0.012);
        c.forget("x");
        assert_eq!(c.latency_filter("x", 0.3), 0.3);
    }

    #[test]
    fn distance_uses_height_and_positive_adjustment_only() {
        let mut a = at(&[0.0, 0.0]);
        let mut b = at(&[3.0, 4.0]);
        a.height = 1.0;
        b.height = 2.0;
        assert_eq!(a.distance_to(&b), Some(8.0));
        a.adjustment = -100.0;
        assert_eq!(
            a.distance_to(&b),
            Some(8.0),
            "negative result falls back to raw"
        );
        a.adjustment = 0.5;
        assert_eq!(a.distance_to(&b), Some(8.5));
        assert_eq!(a.distance_to(&at(&[1.0])), None);
    }
}
