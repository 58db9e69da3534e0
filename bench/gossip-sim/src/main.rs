//! Runs the gossip core on the simulator and prints markdown tables:
//!
//! - `scale`: for each cluster size, the LAN profile's convergence after a
//!   join and after a failure, and steady-state bytes per node per second;
//! - `lifeguard`: Lifeguard's experiment, a share of the nodes starved of
//!   CPU, counting healthy nodes declared dead with Lifeguard off and on,
//!   and how fast real failures are still detected.
//!
//! `gossip-sim-bench [scale] [lifeguard] [--sizes 100,1000,5000] [--seed N]
//! [--warm-from 3000] [--lg-nodes 100] [--lg-secs 600] [--lg-seeds 1,2,3]
//! [--lg-fractions 10,25] [--pause-ms MIN-MAX]
//! [--gap-ms MEAN | --busy-ms PER_MESSAGE | --lag-ms DELAY] [--max-rss-gb 16]`
//!
//! Clusters of `--warm-from` nodes or more do not bootstrap through the
//! protocol: they start converged ([`Sim::assume_converged`]), because a
//! bootstrap costs some `16 n²` alive messages (400 million at 5,000
//! nodes). Everything measured (joins, failures, steady-state traffic)
//! runs the protocol either way.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use gossip::sim::{Kind, Sim, Slowness};
use gossip::Lifeguard;

const SECOND: Duration = Duration::from_secs(1);

struct Args {
    scale: bool,
    lifeguard: bool,
    sizes: Vec<usize>,
    seed: u64,
    warm_from: usize,
    lg_nodes: usize,
    lg_secs: u64,
    lg_seeds: Vec<u64>,
    lg_fractions: Vec<usize>,
    pause: (u64, u64),
    gap: u64,
    busy: Option<u64>,
    lag: Option<u64>,
    max_rss_gb: u64,
}

fn parse_list<T: std::str::FromStr>(s: &str) -> Vec<T> {
    s.split(',').filter_map(|x| x.trim().parse().ok()).collect()
}

fn parse_args() -> Args {
    let mut a = Args {
        scale: false,
        lifeguard: false,
        sizes: vec![100, 1000, 5000],
        seed: 1,
        warm_from: 3000,
        lg_nodes: 100,
        lg_secs: 600,
        lg_seeds: vec![1, 2, 3],
        lg_fractions: vec![10, 25],
        pause: (500, 3000),
        gap: 3000,
        busy: None,
        lag: None,
        max_rss_gb: 16,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut val = || it.next().unwrap_or_default();
        match arg.as_str() {
            "scale" => a.scale = true,
            "lifeguard" => a.lifeguard = true,
            "--sizes" => a.sizes = parse_list(&val()),
            "--seed" => a.seed = val().parse().unwrap_or(1),
            "--warm-from" => a.warm_from = val().parse().unwrap_or(3000),
            "--lg-nodes" => a.lg_nodes = val().parse().unwrap_or(100),
            "--lg-secs" => a.lg_secs = val().parse().unwrap_or(600),
            "--lg-seeds" => a.lg_seeds = parse_list(&val()),
            "--lg-fractions" => a.lg_fractions = parse_list(&val()),
            "--pause-ms" => {
                let v: Vec<u64> = val().split('-').filter_map(|x| x.parse().ok()).collect();
                if let [lo, hi] = v[..] {
                    a.pause = (lo, hi);
                }
            }
            "--gap-ms" => a.gap = val().parse().unwrap_or(3000),
            "--busy-ms" => a.busy = val().parse().ok(),
            "--lag-ms" => a.lag = val().parse().ok(),
            "--max-rss-gb" => a.max_rss_gb = val().parse().unwrap_or(16),
            other => {
                eprintln!("unknown argument {other}");
                std::process::exit(2);
            }
        }
    }
    if !a.scale && !a.lifeguard {
        a.scale = true;
        a.lifeguard = true;
    }
    a
}

/// Resident memory of this process, in MB.
fn rss_mb() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4 / 1024)
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

/// Runs `sim` until `done` or `max`, reporting progress on stderr every
/// 10 s of wall time and giving up if memory passes `max_rss_mb`.
fn run_watched(
    sim: &mut Sim,
    what: &str,
    mut done: impl FnMut(&Sim) -> bool,
    max: Duration,
    max_rss_mb: u64,
) -> Result<Option<Duration>, String> {
    let start = sim.elapsed();
    let wall = Instant::now();
    let mut last = Instant::now();
    let mut over = None;
    let took = sim.run_until(
        |s| {
            if last.elapsed() > 10 * SECOND {
                last = Instant::now();
                let rss = rss_mb();
                eprintln!(
                    "  {what}: virtual {:.1} s, {} unsettled, {} queued, wall {:.0} s, rss {rss} MB",
                    (s.elapsed() - start).as_secs_f64(),
                    s.unsettled(),
                    s.queued(),
                    wall.elapsed().as_secs_f64(),
                );
                if rss > max_rss_mb {
                    over = Some(rss);
                    return true;
                }
            }
            done(s)
        },
        max,
    );
    match over {
        Some(rss) => Err(format!("stopped at {rss} MB of memory during {what}")),
        None => Ok(took),
    }
}

// ----- scale -----

struct ScaleRow {
    n: usize,
    /// Started converged instead of bootstrapping.
    warm: bool,
    stagger: Duration,
    bootstrap: Duration,
    bootstrap_wall: Duration,
    drain: Duration,
    joins: Vec<Duration>,
    fail_first: Vec<Duration>,
    fail_all: Vec<Duration>,
    udp_bps: f64,
    udp_pps: f64,
    tcp_bps: f64,
    window: Duration,
    wall: Duration,
    rss: u64,
}

fn stagger_for(n: usize) -> Duration {
    // Each node retires about 19 alive messages a second (15 gossip packets
    // of some 20 messages, each message sent 16 times). Joins faster than
    // that pile up in every node's broadcast queue, which at 5,000 nodes
    // costs gigabytes; so large clusters join more slowly.
    match n {
        0..=200 => Duration::from_millis(20),
        201..=2000 => Duration::from_millis(10),
        _ => Duration::from_millis(100),
    }
}

fn queued_total(sim: &Sim) -> usize {
    sim.live().map(|i| sim.node(i).queued_broadcasts()).sum()
}

fn scale(n: usize, seed: u64, warm: bool, max_rss_mb: u64) -> Result<ScaleRow, String> {
    let wall = Instant::now();
    let mut sim = Sim::new(seed);
    sim.log_joins(false);
    sim.add_nodes(n).map_err(|e| e.to_string())?;
    let stagger = stagger_for(n);
    let bootstrap = if warm {
        sim.assume_converged();
        if !sim.converged() {
            return Err(format!(
                "{n} nodes: {} unsettled after a warm start",
                sim.unsettled()
            ));
        }
        Duration::ZERO
    } else {
        sim.join_staggered(&[0, 1, 2], stagger);
        let max = stagger * n as u32 + 600 * SECOND;
        run_watched(&mut sim, "bootstrap", Sim::converged, max, max_rss_mb)?
            .ok_or_else(|| format!("{n} nodes did not converge; {} unsettled", sim.unsettled()))?
    };
    let bootstrap_wall = wall.elapsed();
    eprintln!(
        "{n}: converged after {bootstrap:?}{} (wall {bootstrap_wall:?}, rss {} MB)",
        if warm { " (warm start)" } else { "" },
        rss_mb()
    );

    // Let the join storm's broadcasts run out before measuring anything.
    let t = sim.elapsed();
    for _ in 0..900 {
        if queued_total(&sim) == 0 {
            break;
        }
        sim.run_for(SECOND);
        if rss_mb() > max_rss_mb {
            return Err(format!("stopped at {} MB while draining", rss_mb()));
        }
    }
    let drain = sim.elapsed() - t;
    eprintln!("{n}: broadcasts drained after {drain:?} more");

    // Steady state: traffic over one push-pull period (every node starts
    // one push-pull in it) with nothing else happening.
    let lan = gossip::Config::lan("x", gossip::sim::addr_of(0));
    let window = gossip::swim::push_pull_scale(lan.push_pull_interval, n);
    let live: Vec<usize> = sim.live().collect();
    let out = |s: &Sim| -> (u64, u64) {
        live.iter().fold((0, 0), |(b, p), &i| {
            let m = s.node(i).metrics();
            (b + m.bytes_out, p + m.packets_out)
        })
    };
    let (b0, p0) = out(&sim);
    let s0 = sim.stats().stream_bytes;
    sim.run_for(window);
    let (b1, p1) = out(&sim);
    let s1 = sim.stats().stream_bytes;
    let per = |x: u64| x as f64 / live.len() as f64 / window.as_secs_f64();
    let (udp_bps, udp_pps, tcp_bps) = (per(b1 - b0), per(p1 - p0), per(s1 - s0));

    // Joins: a new node joins through a seed; until every node holds it alive.
    let mut joins = Vec::new();
    for _ in 0..3 {
        let i = sim.add_node().map_err(|e| e.to_string())?;
        sim.join(i, &[0]);
        let t = run_watched(
            &mut sim,
            "join",
            |s| s.all_see_alive(i),
            120 * SECOND,
            max_rss_mb,
        )?
        .ok_or_else(|| format!("node {i} not seen by all"))?;
        joins.push(t);
        sim.run_for(10 * SECOND);
    }

    // Failures: a node crashes; until the first and the last live node
    // declare it dead.
    let mut fail_first = Vec::new();
    let mut fail_all = Vec::new();
    for k in 0..3 {
        let victim = 3 + (k * 7919 + seed as usize * 104_729) % (n - 3);
        let t0 = sim.elapsed();
        sim.kill(victim);
        let all = run_watched(
            &mut sim,
            "failure",
            |s| s.none_see_alive(victim),
            180 * SECOND,
            max_rss_mb,
        )?
        .ok_or_else(|| {
            format!(
                "node {victim} still held alive by {}",
                sim.seen_alive_by(victim)
            )
        })?;
        let first = sim
            .first(victim, Kind::Dead, t0)
            .map(|r| r.at - t0)
            .unwrap_or(all);
        fail_first.push(first);
        fail_all.push(all);
        sim.run_for(10 * SECOND);
    }
    Ok(ScaleRow {
        n,
        warm,
        stagger,
        bootstrap,
        bootstrap_wall,
        drain,
        joins,
        fail_first,
        fail_all,
        udp_bps,
        udp_pps,
        tcp_bps,
        window,
        wall: wall.elapsed(),
        rss: rss_mb(),
    })
}

fn print_scale(rows: &[Result<ScaleRow, String>], sizes: &[usize], seed: u64) {
    println!("### Convergence and bandwidth, LAN profile (seed {seed})\n");
    println!(
        "| nodes | bootstrap: converged after (joins every) | join seen by all: median (max) of 3 | failure: first declares dead, median of 3 | failure: all declare dead, median (max) of 3 | steady state out per node | of which UDP | TCP push-pull | wall time (RSS) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for (n, r) in sizes.iter().zip(rows) {
        match r {
            Ok(r) => {
                let max = |v: &[Duration]| v.iter().max().copied().unwrap_or_default();
                let bootstrap = if r.warm {
                    "warm start".to_string()
                } else {
                    format!("{} ({} ms)", secs(r.bootstrap), r.stagger.as_millis())
                };
                println!(
                    "| {} | {} | {} ({}) | {} | {} ({}) | {:.0} B/s | {:.0} B/s, {:.1} packets/s | {:.0} B/s | {:.0} s ({} MB) |",
                    r.n,
                    bootstrap,
                    secs(median(r.joins.clone())),
                    secs(max(&r.joins)),
                    secs(median(r.fail_first.clone())),
                    secs(median(r.fail_all.clone())),
                    secs(max(&r.fail_all)),
                    r.udp_bps + r.tcp_bps,
                    r.udp_bps,
                    r.udp_pps,
                    r.tcp_bps,
                    r.wall.as_secs_f64(),
                    r.rss,
                );
                eprintln!(
                    "{}: bootstrap wall {:?}, drain {:?}, window {:?}",
                    r.n, r.bootstrap_wall, r.drain, r.window
                );
            }
            Err(e) => println!("| {n} | not run to the end: {e} | | | | | | | |"),
        }
    }
    println!();
}

// ----- lifeguard -----

/// What one Lifeguard run saw. A "declaration" is one member marking
/// another dead (a `notify_leave` with state Dead); "healthy" members are
/// the ones neither starved nor killed (a victim counts as healthy until
/// its kill).
#[derive(Default)]
struct LgRow {
    about_healthy: usize,
    about_healthy_by_healthy: usize,
    healthy_members: usize,
    healthy_members_by_healthy: usize,
    about_starved: usize,
    starved_members: usize,
    first_detect: Vec<Duration>,
    all_detect: Vec<Duration>,
    /// Victims some live node never declared dead.
    undetected: usize,
    refutations: u64,
    probe_failures: u64,
    bytes_per_node_s: f64,
}

impl LgRow {
    fn add(&mut self, r: LgRow, runs: usize) {
        self.about_healthy += r.about_healthy;
        self.about_healthy_by_healthy += r.about_healthy_by_healthy;
        self.healthy_members += r.healthy_members;
        self.healthy_members_by_healthy += r.healthy_members_by_healthy;
        self.about_starved += r.about_starved;
        self.starved_members += r.starved_members;
        self.first_detect.extend(r.first_detect);
        self.all_detect.extend(r.all_detect);
        self.undetected += r.undetected;
        self.refutations += r.refutations;
        self.probe_failures += r.probe_failures;
        self.bytes_per_node_s += r.bytes_per_node_s / runs as f64;
    }
}

/// A deterministic permutation of `0..n` from `seed` (Fisher-Yates over
/// splitmix64), to pick the starved nodes and the victims.
fn permutation(n: usize, seed: u64) -> Vec<usize> {
    let mut x = seed ^ 0x1f3a_5c7e_9b2d_4f60;
    let mut next = || {
        x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    let mut v: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = (next() % (i as u64 + 1)) as usize;
        v.swap(i, j);
    }
    v
}

const KILLS: usize = 3;

fn lifeguard_run(
    n: usize,
    slow_pct: usize,
    on: bool,
    seed: u64,
    duration: Duration,
    slowness: Slowness,
) -> Result<LgRow, String> {
    let mut sim = Sim::new(seed);
    sim.configure(move |_, c| c.lifeguard = if on { Lifeguard::ON } else { Lifeguard::OFF });
    sim.log_joins(false);
    sim.add_nodes(n).map_err(|e| e.to_string())?;
    sim.join_staggered(&[0, 1, 2], Duration::from_millis(20));
    sim.run_until(Sim::converged, 300 * SECOND)
        .ok_or("did not converge")?;
    sim.run_for(30 * SECOND);

    // Seeds stay healthy so that nothing depends on who joined through whom.
    let order: Vec<usize> = permutation(n, seed)
        .into_iter()
        .filter(|&i| i >= 3)
        .collect();
    let n_slow = n * slow_pct / 100;
    let slow: BTreeSet<usize> = order[..n_slow].iter().copied().collect();
    let victims: Vec<usize> = order[n_slow..n_slow + KILLS].to_vec();
    for &s in &slow {
        sim.set_slowness(s, Some(slowness));
    }
    let t0 = sim.elapsed();
    let mut killed_at = Vec::new();
    for (k, &v) in victims.iter().enumerate() {
        let at = t0 + duration * (k as u32 + 1) / (KILLS as u32 + 1);
        sim.run_for(at - sim.elapsed());
        sim.kill(v);
        killed_at.push((v, at));
    }
    sim.run_for(t0 + duration - sim.elapsed());

    let mut row = LgRow::default();
    let kill_time = |s: usize| killed_at.iter().find(|(v, _)| *v == s).map(|(_, at)| *at);
    let (mut healthy, mut healthy_by_healthy, mut starved) =
        (BTreeSet::new(), BTreeSet::new(), BTreeSet::new());
    for r in sim.log() {
        if r.kind != Kind::Dead || r.at < t0 {
            continue;
        }
        let (o, s) = (r.observer as usize, r.subject as usize);
        if kill_time(s).is_some_and(|at| r.at >= at) {
            continue;
        }
        if slow.contains(&s) {
            row.about_starved += 1;
            starved.insert(s);
            continue;
        }
        row.about_healthy += 1;
        healthy.insert(s);
        if !slow.contains(&o) {
            row.about_healthy_by_healthy += 1;
            healthy_by_healthy.insert(s);
        }
    }
    row.healthy_members = healthy.len();
    row.healthy_members_by_healthy = healthy_by_healthy.len();
    row.starved_members = starved.len();
    let live: Vec<usize> = sim.live().collect();
    for &(v, at) in &killed_at {
        let firsts: Vec<Duration> = live
            .iter()
            .filter_map(|&o| {
                sim.log()
                    .iter()
                    .find(|r| {
                        r.at >= at
                            && r.kind == Kind::Dead
                            && r.observer as usize == o
                            && r.subject as usize == v
                    })
                    .map(|r| r.at - at)
            })
            .collect();
        if firsts.len() < live.len() {
            row.undetected += 1;
        }
        if let Some(f) = firsts.iter().min() {
            row.first_detect.push(*f);
        }
        if let Some(l) = firsts.iter().max() {
            row.all_detect.push(*l);
        }
    }
    row.refutations = (0..n).map(|i| sim.node(i).metrics().refutations).sum();
    row.probe_failures = (0..n).map(|i| sim.node(i).metrics().probe_failures).sum();
    let bytes: u64 = (0..n).map(|i| sim.node(i).metrics().bytes_out).sum();
    row.bytes_per_node_s = bytes as f64 / n as f64 / sim.elapsed().as_secs_f64();
    Ok(row)
}

fn print_lifeguard(a: &Args) {
    let (lo, hi) = a.pause;
    let (slowness, how) = match (a.lag, a.busy) {
        (Some(ms), _) => (
            Slowness::Lag {
                delay: Duration::from_millis(ms),
            },
            format!("starved nodes read every message {ms} ms after it arrives"),
        ),
        (None, Some(ms)) => (
            Slowness::Busy {
                per_input: Duration::from_millis(ms),
            },
            format!("starved nodes take {ms} ms to handle each message"),
        ),
        (None, None) => (
            Slowness::Random {
                mean_gap: Duration::from_millis(a.gap),
                min: Duration::from_millis(lo),
                max: Duration::from_millis(hi),
            },
            format!(
                "starved nodes paused {lo}-{hi} ms after gaps of {} ms on average",
                a.gap
            ),
        ),
    };
    let duration = Duration::from_secs(a.lg_secs);
    println!(
        "### Lifeguard: {} nodes, {} s, {how}, {KILLS} nodes killed, seeds {:?}\n",
        a.lg_nodes, a.lg_secs, a.lg_seeds
    );
    println!(
        "| starved | Lifeguard | dead declarations about healthy members (by healthy members) | healthy members declared dead (by healthy members) | declarations about starved members (members) | refutations | failed probes | kill detected, first: median (max) | kill detected by all: median (max) | kills some node missed | bytes out per node/s |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    let mut ratios = Vec::new();
    for &pct in &a.lg_fractions {
        let mut totals = Vec::new();
        for on in [false, true] {
            let mut sum = LgRow::default();
            for &seed in &a.lg_seeds {
                let wall = Instant::now();
                match lifeguard_run(a.lg_nodes, pct, on, seed, duration, slowness) {
                    Ok(r) => {
                        eprintln!(
                            "lifeguard {pct}% {} seed {seed}: {} about healthy ({} by healthy), {} about starved; wall {:?}",
                            if on { "on" } else { "off" },
                            r.about_healthy,
                            r.about_healthy_by_healthy,
                            r.about_starved,
                            wall.elapsed()
                        );
                        sum.add(r, a.lg_seeds.len());
                    }
                    Err(e) => eprintln!("lifeguard {pct}% seed {seed}: {e}"),
                }
            }
            let max = |v: &[Duration]| v.iter().max().copied().unwrap_or_default();
            println!(
                "| {pct} % | {} | {} ({}) | {} ({}) | {} ({}) | {} | {} | {} ({}) | {} ({}) | {} | {:.0} B/s |",
                if on { "on" } else { "off" },
                sum.about_healthy,
                sum.about_healthy_by_healthy,
                sum.healthy_members,
                sum.healthy_members_by_healthy,
                sum.about_starved,
                sum.starved_members,
                sum.refutations,
                sum.probe_failures,
                secs(median(sum.first_detect.clone())),
                secs(max(&sum.first_detect)),
                secs(median(sum.all_detect.clone())),
                secs(max(&sum.all_detect)),
                sum.undetected,
                sum.bytes_per_node_s,
            );
            totals.push(sum.about_healthy);
        }
        if let [off, on] = totals[..] {
            ratios.push(match (off, on) {
                (0, 0) => format!("{pct} % starved: no dead declarations about healthy members either way."),
                (off, 0) => format!(
                    "{pct} % starved: {off} dead declarations about healthy members without Lifeguard, none with it."
                ),
                (off, on) => format!(
                    "{pct} % starved: {off} dead declarations about healthy members without Lifeguard, {on} with it: {:.1}x {}.",
                    if off >= on { off as f64 / on as f64 } else { on as f64 / off.max(1) as f64 },
                    if off >= on { "fewer" } else { "more" },
                ),
            });
        }
    }
    println!();
    for r in ratios {
        println!("{r}");
    }
    println!(
        "\nCounts are summed over the seeds; detection times pool the {} kills of all seeds.\n",
        KILLS
    );
}

fn main() {
    let a = parse_args();
    if a.scale {
        let mut rows = Vec::new();
        for &n in &a.sizes {
            let r = scale(n, a.seed, n >= a.warm_from, a.max_rss_gb * 1024);
            if let Err(e) = &r {
                eprintln!("{n}: {e}");
            }
            rows.push(r);
        }
        print_scale(&rows, &a.sizes, a.seed);
    }
    if a.lifeguard {
        print_lifeguard(&a);
    }
}
