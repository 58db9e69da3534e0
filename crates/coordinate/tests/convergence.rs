//! Vivaldi on synthetic latency matrices: the estimated round trips must
//! come close to the true ones. The figures printed here are reported in
//! bench/RESULTS.md (run with `--nocapture`).

use std::time::Duration;

use coordinate::{Client, Config};

/// A small deterministic generator for test data.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Runs `cycles` rounds in which every node measures one random peer, then
/// returns the median and 90th percentile relative error over all pairs.
fn simulate(truth: &[Vec<f64>], cycles: usize, seed: u64) -> (f64, f64) {
    simulate_noisy(truth, cycles, seed, 0.0)
}

/// Like [`simulate`], with each measurement off by up to ±`noise`/2.
fn simulate_noisy(truth: &[Vec<f64>], cycles: usize, seed: u64, noise: f64) -> (f64, f64) {
    let n = truth.len();
    let mut rng = Lcg(seed);
    let mut clients: Vec<Client> = (0..n)
        .map(|i| Client::new(Config::default(), i as u64 + 1))
        .collect();
    for _ in 0..cycles {
        for i in 0..n {
            let j = (rng.next() * n as f64) as usize % n;
            if i == j {
                continue;
            }
            let other = clients[j].coordinate().clone();
            let jitter = 1.0 + noise * (rng.next() - 0.5);
            let rtt = Duration::from_secs_f64(truth[i][j] * jitter);
            clients[i].update(&format!("n{j}"), &other, rtt).unwrap();
        }
    }
    let mut errs = Vec::new();
    for i in 0..n {
        for j in i + 1..n {
            let est = clients[i]
                .coordinate()
                .distance_to(clients[j].coordinate())
                .unwrap();
            errs.push((est - truth[i][j]).abs() / truth[i][j]);
        }
    }
    errs.sort_by(f64::total_cmp);
    (errs[errs.len() / 2], errs[errs.len() * 9 / 10])
}

/// Nodes in a plane (up to 100 ms across) with access links of 1-10 ms:
/// exactly the 2D+height model.
fn plane_with_heights(n: usize, seed: u64) -> Vec<Vec<f64>> {
    let mut rng = Lcg(seed);
    let pts: Vec<(f64, f64, f64)> = (0..n)
        .map(|_| {
            (
                rng.next() * 0.1,
                rng.next() * 0.1,
                0.001 + rng.next() * 0.009,
            )
        })
        .collect();
    (0..n)
        .map(|i| {
            (0..n)
                .map(|j| {
                    let (a, b) = (pts[i], pts[j]);
                    ((a.0 - b.0).powi(2) + (a.1 - b.1).powi(2)).sqrt() + a.2 + b.2
                })
                .collect()
        })
        .collect()
}

#[test]
fn converges_on_a_plane_with_heights() {
    let truth = plane_with_heights(64, 7);
    let (median, p90) = simulate(&truth, 1000, 3);
    eprintln!(
        "plane+height, 64 nodes, 1000 cycles: median relative error {median:.3}, p90 {p90:.3}"
    );
    assert!(median < 0.15, "median relative error {median}");
}

#[test]
fn converges_on_two_distant_clusters() {
    // Two sites 80 ms apart, 2 ms inside each: the split Serf's own tests use.
    let n = 32;
    let truth: Vec<Vec<f64>> = (0..n)
        .map(|i| {
            (0..n)
                .map(|j| {
                    if (i < n / 2) == (j < n / 2) {
                        0.002
                    } else {
                        0.080
                    }
                })
                .collect()
        })
        .collect();
    let (median, p90) = simulate(&truth, 1000, 5);
    eprintln!("two clusters, 32 nodes: median relative error {median:.3}, p90 {p90:.3}");
    assert!(median < 0.25, "median relative error {median}");
}

#[test]
fn tolerates_measurement_noise() {
    let truth = plane_with_heights(64, 11);
    let (median, p90) = simulate_noisy(&truth, 1000, 13, 0.4);
    eprintln!("plane+height with ±20% jitter: median relative error {median:.3}, p90 {p90:.3}");
    assert!(median < 0.15, "median relative error {median}");
}
