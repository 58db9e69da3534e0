//! Vivaldi network coordinates, as Serf keeps them: a point in an
//! 8-dimensional Euclidean space plus a height (the access-link latency
//! that no direction can shorten), an error estimate, and an adjustment
//! term learnt from how far off the raw distances run. Two coordinates
//! estimate the round trip between their nodes without measuring it.
//!
//! [`Client`] holds our own coordinate and moves it after each measured
//! round trip; [`Coordinate`] is the value gossiped on acks (see
//! [`wire`]). Sans-IO: the caller supplies the RTTs.

mod client;
mod vector;
pub mod wire;

pub use client::{Client, ClientStats, UpdateError};

/// Tunables, with Serf's defaults in [`Config::default`].
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Dimensions of the Euclidean part.
    pub dimensionality: usize,
    /// Error starts here and is never allowed above it.
    pub error_max: f64,
    /// How fast the error estimate follows new observations (c_e).
    pub ce: f64,
    /// How far one observation moves the coordinate (c_c).
    pub cc: f64,
    /// Samples averaged into the adjustment term; 0 turns it off.
    pub adjustment_window: usize,
    /// Smallest height, seconds.
    pub height_min: f64,
    /// RTT samples per peer whose median is used.
    pub latency_filter_size: usize,
    /// Pull towards the origin grows with (distance / rho)^2, keeping the
    /// whole system from drifting.
    pub gravity_rho: f64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            dimensionality: 8,
            error_max: 1.5,
            ce: 0.25,
            cc: 0.25,
            adjustment_window: 20,
            height_min: 10.0e-6,
            latency_filter_size: 3,
            gravity_rho: 150.0,
        }
    }
}

/// A node's position. All quantities are in seconds.
#[derive(Debug, Clone, PartialEq)]
pub struct Coordinate {
    pub vec: Vec<f64>,
    pub error: f64,
    pub adjustment: f64,
    pub height: f64,
}

/// Below this, distances and weights count as zero.
pub(crate) const ZERO_THRESHOLD: f64 = 1.0e-6;

impl Coordinate {
    /// The origin, with maximal error: "we know nothing yet".
    pub fn new(config: &Config) -> Coordinate {
        Coordinate {
            vec: vec![0.0; config.dimensionality],
            error: config.error_max,
            adjustment: 0.0,
            height: config.height_min,
        }
    }

    /// No NaN or infinity anywhere.
    pub fn is_valid(&self) -> bool {
        self.vec.iter().all(|f| f.is_finite())
            && self.error.is_finite()
            && self.adjustment.is_finite()
            && self.height.is_finite()
    }

    pub fn is_compatible_with(&self, other: &Coordinate) -> bool {
        self.vec.len() == other.vec.len()
    }

    /// Euclidean distance plus both heights, without adjustments.
    pub fn raw_distance_to(&self, other: &Coordinate) -> f64 {
        vector::magnitude_of_difference(&self.vec, &other.vec) + self.height + other.height
    }

    /// Estimated round trip to `other`, seconds. Adjustments apply only
    /// when they leave the estimate positive. `None` if the dimensions
    /// differ.
    pub fn distance_to(&self, other: &Coordinate) -> Option<f64> {
        if !self.is_compatible_with(other) {
            return None;
        }
        let raw = self.raw_distance_to(other);
        let adjusted = raw + self.adjustment + other.adjustment;
        Some(if adjusted > 0.0 { adjusted } else { raw })
    }

    /// Estimated round trip as a `Duration` (zero if incompatible).
    pub fn rtt_to(&self, other: &Coordinate) -> std::time::Duration {
        let secs = self.distance_to(other).unwrap_or(0.0);
        std::time::Duration::from_secs_f64(secs.max(0.0))
    }
}
