//! The SWIM core at cluster scale, on the simulator: joins, failures, loss,
//! partitions and replay. Each test prints what it measured (run with
//! `--nocapture` to see it).

use std::time::Duration;

use gossip::sim::{Kind, Sim, Slowness};

const SECOND: Duration = Duration::from_secs(1);

/// `n` nodes that joined through three seeds, one every `stagger`, run
/// until they all see each other.
fn converged(seed: u64, n: usize, stagger: Duration) -> (Sim, Duration) {
    let mut sim = Sim::new(seed);
    sim.add_nodes(n).unwrap();
    sim.join_staggered(&[0, 1, 2], stagger);
    let took = sim
        .run_until(Sim::converged, 120 * SECOND)
        .unwrap_or_else(|| panic!("{n} nodes not converged: {} unsettled", sim.unsettled()));
    (sim, took)
}

/// Dead declarations about nodes that were never killed.
fn false_deaths(sim: &Sim, killed: &[usize]) -> Vec<String> {
    sim.log()
        .iter()
        .filter(|r| r.kind == Kind::Dead && !killed.contains(&(r.subject as usize)))
        .map(|r| format!("{r:?}"))
        .collect()
}

#[test]
fn a_thousand_nodes_converge_after_staggered_joins() {
    // Compression off: LZW is half the CPU of a join storm and is tested on
    // its own; the protocol is what this test is about.
    let mut sim = Sim::new(1000);
    sim.configure(|_, c| c.enable_compression = false);
    sim.log_joins(false);
    sim.add_nodes(1000).unwrap();
    sim.join_staggered(&[0, 1, 2], Duration::from_millis(10));
    let took = sim.run_until(Sim::converged, 120 * SECOND);
    println!(
        "1,000 nodes (joins 10 ms apart): converged after {took:?} of virtual time, {:?}",
        sim.stats()
    );
    assert!(took.is_some(), "{} nodes still unsettled", sim.unsettled());
    assert!(sim.converged_strict(), "every core holds every node alive");
    assert!(false_deaths(&sim, &[]).is_empty());
}

#[test]
fn a_killed_node_is_declared_dead_by_every_other_node() {
    let n = 64;
    let (mut sim, _) = converged(2, n, Duration::from_millis(20));
    let victim = 17;
    let since = sim.elapsed();
    sim.kill(victim);
    let took = sim.time_all_see(victim, false, 60 * SECOND);
    println!("{n} nodes: node {victim} declared dead by all after {took:?}");
    assert!(
        took.is_some(),
        "still held alive by {}",
        sim.seen_alive_by(victim)
    );
    for o in sim.live() {
        let dead = sim.log().iter().any(|r| {
            r.at >= since
                && r.observer as usize == o
                && r.subject as usize == victim
                && r.kind == Kind::Dead
        });
        assert!(dead, "node {o} has no dead record for node {victim}");
    }
    assert_eq!(false_deaths(&sim, &[victim]), Vec::<String>::new());
    assert!(sim.converged());
}

#[test]
fn ten_percent_packet_loss_declares_no_healthy_node_dead() {
    // 100 nodes for 3 minutes of virtual time; streams (TCP) are not lost,
    // so the fallback ping still gets through, as on a real network.
    let n = 100;
    let (mut sim, _) = converged(3, n, Duration::from_millis(20));
    sim.net_mut().loss = 0.10;
    let before = sim.stats().clone();
    sim.run_for(180 * SECOND);
    let st = sim.stats();
    let lost = st.packets_lost - before.packets_lost;
    let sent = st.packets_sent - before.packets_sent;
    let failures: u64 = (0..n).map(|i| sim.node(i).metrics().probe_failures).sum();
    let refutations: u64 = (0..n).map(|i| sim.node(i).metrics().refutations).sum();
    println!(
        "{n} nodes, 10% loss, 180 s: {lost} of {sent} packets lost, {failures} failed probes, {refutations} refutations"
    );
    assert!(lost * 100 >= sent * 8, "loss applied");
    assert_eq!(false_deaths(&sim, &[]), Vec::<String>::new());
    assert!(sim.converged());
}

#[test]
fn both_sides_of_a_healed_partition_reconverge() {
    let n = 40;
    let (mut sim, _) = converged(4, n, Duration::from_millis(20));
    let a: Vec<usize> = (0..n / 2).collect();
    let b: Vec<usize> = (n / 2..n).collect();
    sim.net_mut().partition(&[&a, &b]);
    let split = |s: &Sim| {
        a.iter().all(|&o| b.iter().all(|&x| !s.sees_alive(o, x)))
            && b.iter().all(|&o| a.iter().all(|&x| !s.sees_alive(o, x)))
    };
    let took = sim.run_until(split, 120 * SECOND);
    println!("{n} nodes split in two: each side holds the other dead after {took:?}");
    assert!(took.is_some(), "the sides never gave each other up");
    sim.net_mut().heal();
    let took = sim.run_until(Sim::converged, 120 * SECOND);
    println!("healed: reconverged after {took:?}");
    assert!(
        took.is_some(),
        "{} unsettled after healing",
        sim.unsettled()
    );
    assert!(sim.converged_strict());
}

#[test]
fn a_graceful_leave_is_seen_as_left_by_all() {
    let n = 32;
    let (mut sim, _) = converged(5, n, Duration::from_millis(20));
    sim.leave(9);
    let took = sim.run_until(|s| s.none_see_alive(9), 30 * SECOND);
    assert!(took.is_some());
    for o in sim.live() {
        assert!(
            sim.log()
                .iter()
                .any(|r| r.observer as usize == o && r.subject == 9 && r.kind == Kind::Left),
            "node {o} saw node 9 leave"
        );
    }
    assert_eq!(false_deaths(&sim, &[]), Vec::<String>::new());
}

/// A run with every kind of fault in it, to replay.
fn eventful(seed: u64) -> Sim {
    let mut sim = Sim::new(seed);
    sim.add_nodes(30).unwrap();
    sim.join_staggered(&[0, 1, 2], Duration::from_millis(50));
    sim.net_mut().loss = 0.05;
    sim.net_mut().jitter = Duration::from_millis(5);
    sim.set_slowness(
        7,
        Some(Slowness::Random {
            mean_gap: 3 * SECOND,
            min: Duration::from_millis(200),
            max: 2 * SECOND,
        }),
    );
    sim.run_for(20 * SECOND);
    sim.kill(11);
    sim.leave(12);
    sim.net_mut().partition(&[&[20, 21, 22]]);
    sim.run_for(15 * SECOND);
    sim.net_mut().heal();
    sim.run_for(25 * SECOND);
    sim
}

#[test]
fn the_same_seed_replays_the_same_run() {
    let a = eventful(42);
    let b = eventful(42);
    assert!(a.log().len() > 1000, "a run with something in it");
    assert_eq!(a.log(), b.log());
    assert_eq!(a.stats(), b.stats());
    let c = eventful(43);
    assert_ne!(a.log(), c.log(), "another seed, another run");
}

#[test]
fn a_warm_start_is_a_converged_cluster_that_runs_the_protocol() {
    let n = 300;
    let mut sim = Sim::new(6);
    sim.log_joins(false);
    sim.add_nodes(n).unwrap();
    sim.assume_converged();
    assert!(sim.converged());
    assert!(sim.converged_strict(), "every core holds every node alive");
    assert_eq!(sim.stats().packets_sent + sim.stats().streams_opened, 0);
    for i in 0..n {
        assert_eq!(
            sim.node(i).queued_broadcasts(),
            0,
            "node {i} queued nothing"
        );
        assert_eq!(sim.node(i).estimated_nodes(), n);
    }
    // Quiet, apart from probes and push-pulls.
    sim.run_for(30 * SECOND);
    assert!(sim.converged_strict());
    assert_eq!(false_deaths(&sim, &[]), Vec::<String>::new());
    // A join and a failure go through the protocol as after a bootstrap.
    let j = sim.add_node().unwrap();
    sim.join(j, &[0]);
    let joined = sim.time_all_see(j, true, 60 * SECOND);
    sim.kill(17);
    let failed = sim.time_all_see(17, false, 120 * SECOND);
    println!(
        "{n} nodes, warm start: join seen by all after {joined:?}, failure by all after {failed:?}"
    );
    assert!(joined.is_some() && failed.is_some());
    assert_eq!(false_deaths(&sim, &[17]), Vec::<String>::new());
}
