//! The simulated network: one-way latency with jitter, packet loss and
//! partitions, globally or per link. Packets (UDP) may be lost; streams
//! (TCP) are never lost, but neither crosses a partition.

use std::collections::HashMap;
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::Rng;

/// Overrides for one direction of one link.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Link {
    /// Fixed part of the one-way latency.
    pub latency: Duration,
    /// Up to this much is added at random to each crossing.
    pub jitter: Duration,
    /// Probability that a packet is lost.
    pub loss: f64,
}

/// Base latency of the link `from -> to`, for models richer than one
/// number (racks, zones): see [`Network::set_latency_fn`].
pub type LatencyFn = Box<dyn Fn(usize, usize) -> Duration>;

/// What happens to a packet put on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Fate {
    Arrives(Duration),
    Lost,
    Blocked,
}

/// The links between simulated nodes.
pub struct Network {
    /// Fixed part of the one-way latency of links without an override.
    pub latency: Duration,
    /// Random part (uniform in `0..jitter`) of links without an override.
    pub jitter: Duration,
    /// Probability a packet is lost, on links without an override.
    pub loss: f64,
    /// A stream to a peer that cannot be reached (partitioned, killed) fails
    /// with `StreamError::Connect` this long after it is opened, or at its
    /// deadline if that comes first.
    pub connect_fail_after: Duration,
    /// A stream's request arrives after this many one-way latencies (the
    /// TCP handshake comes first); its reply after one more.
    pub stream_request_trips: u32,
    links: HashMap<(usize, usize), Link>,
    latency_fn: Option<LatencyFn>,
    /// Partition group of each node; nodes talk only within a group.
    /// Empty: no partition.
    groups: Vec<u32>,
}

impl std::fmt::Debug for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Network")
            .field("latency", &self.latency)
            .field("jitter", &self.jitter)
            .field("loss", &self.loss)
            .field("links", &self.links.len())
            .field("partitioned", &!self.groups.is_empty())
            .finish_non_exhaustive()
    }
}

impl Default for Network {
    /// A quiet LAN: 0.5 ms one way plus up to 0.5 ms of jitter, no loss,
    /// connection failures noticed after 1 s.
    fn default() -> Self {
        Network {
            latency: Duration::from_micros(500),
            jitter: Duration::from_micros(500),
            loss: 0.0,
            connect_fail_after: Duration::from_secs(1),
            stream_request_trips: 3,
            links: HashMap::new(),
            latency_fn: None,
            groups: Vec::new(),
        }
    }
}

impl Network {
    /// Overrides both directions of the link between `a` and `b`.
    pub fn set_link(&mut self, a: usize, b: usize, link: Link) {
        self.links.insert((a, b), link);
        self.links.insert((b, a), link);
    }

    /// Overrides one direction only (asymmetric loss, say).
    pub fn set_link_one_way(&mut self, from: usize, to: usize, link: Link) {
        self.links.insert((from, to), link);
    }

    /// Drops every per-link override.
    pub fn clear_links(&mut self) {
        self.links.clear();
    }

    /// Base latency from a function of `(from, to)` for links without an
    /// override; `jitter` still adds to it. The function must not draw
    /// randomness of its own, or runs stop being repeatable.
    pub fn set_latency_fn(&mut self, f: impl Fn(usize, usize) -> Duration + 'static) {
        self.latency_fn = Some(Box::new(f));
    }

    /// Splits the cluster: nodes in different groups cannot reach each
    /// other. Nodes not listed form one more group of their own.
    pub fn partition(&mut self, groups: &[&[usize]]) {
        let n = groups
            .iter()
            .flat_map(|g| g.iter())
            .map(|&i| i + 1)
            .max()
            .unwrap_or(0)
            .max(self.groups.len());
        self.groups = vec![0; n];
        for (k, g) in groups.iter().enumerate() {
            for &i in *g {
                self.groups[i] = k as u32 + 1;
            }
        }
    }

    /// Ends every partition.
    pub fn heal(&mut self) {
        self.groups.clear();
    }

    /// Whether `a` and `b` are on the same side of any partition.
    pub fn reachable(&self, a: usize, b: usize) -> bool {
        let g = |i: usize| self.groups.get(i).copied().unwrap_or(0);
        self.groups.is_empty() || g(a) == g(b)
    }

    /// The one-way latency of one crossing `from -> to`.
    pub(super) fn delay(&self, from: usize, to: usize, rng: &mut SmallRng) -> Duration {
        let (base, jitter) = match self.links.get(&(from, to)) {
            Some(l) => (l.latency, l.jitter),
            None => {
                let base = match &self.latency_fn {
                    Some(f) => f(from, to),
                    None => self.latency,
                };
                (base, self.jitter)
            }
        };
        base + random_below(jitter, rng)
    }

    /// Decides what becomes of one packet `from -> to`.
    pub(super) fn packet(&self, from: usize, to: usize, rng: &mut SmallRng) -> Fate {
        if !self.reachable(from, to) {
            return Fate::Blocked;
        }
        let loss = self.links.get(&(from, to)).map_or(self.loss, |l| l.loss);
        if loss > 0.0 && rng.random_bool(loss.clamp(0.0, 1.0)) {
            return Fate::Lost;
        }
        Fate::Arrives(self.delay(from, to, rng))
    }
}

/// A uniform duration in `0..d` (zero when `d` is zero).
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
    use rand::SeedableRng;

    #[test]
    fn partitions_split_and_heal() {
        let mut net = Network::default();
        net.partition(&[&[0, 1], &[2]]);
        assert!(net.reachable(0, 1));
        assert!(!net.reachable(1, 2));
        assert!(
            !net.reachable(0, 3),
            "unlisted nodes are a group of their own"
        );
        assert!(net.reachable(3, 4));
        net.heal();
        assert!(net.reachable(1, 2));
    }

    #[test]
    fn link_overrides_beat_the_defaults() {
        let mut rng = SmallRng::seed_from_u64(1);
        let mut net = Network::default();
        let slow = Link {
            latency: Duration::from_millis(40),
            jitter: Duration::ZERO,
            loss: 1.0,
        };
        net.set_link(0, 1, slow);
        assert_eq!(net.packet(0, 1, &mut rng), Fate::Lost);
        assert_eq!(net.delay(1, 0, &mut rng), Duration::from_millis(40));
        net.set_latency_fn(|a, b| Duration::from_millis((a + b) as u64));
        net.jitter = Duration::ZERO;
        assert_eq!(net.delay(2, 3, &mut rng), Duration::from_millis(5));
        assert_eq!(
            net.packet(2, 3, &mut rng),
            Fate::Arrives(Duration::from_millis(5))
        );
    }
}
