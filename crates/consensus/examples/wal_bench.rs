//! Throughput of the Raft log on this machine's disk.
//!
//! ```text
//! cargo run --release -p consensus --example wal_bench -- [DIR] [SECONDS] [ROUNDS]
//! ```
//!
//! DIR (default: the system temp dir) must be on the disk to measure, not a
//! tmpfs. Each case appends 256-byte entries for SECONDS (default 3):
//! `Wal::append` with 1, 64 and 1024 entries per call (one fdatasync per
//! call), with and without preallocated segments, then `GroupCommit` fed one
//! entry per `append_async` by one producer with up to 1024 entries in flight
//! (syncs shared by whatever queued up). With ROUNDS > 1 (default 1) the cases
//! run interleaved that many times and the medians are printed: a shared
//! virtual disk is noisy.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use consensus::{Entry, GroupCommit, Wal, WalOptions};

const PAYLOAD: usize = 256;

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = args
        .next()
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let seconds: f64 = args
        .next()
        .map(|s| s.parse().expect("SECONDS must be a number"))
        .unwrap_or(3.0);
    let rounds: usize = args
        .next()
        .map(|s| s.parse().expect("ROUNDS must be a number"))
        .unwrap_or(1);
    let budget = Duration::from_secs_f64(seconds);
    println!(
        "dir {} ; {PAYLOAD}-byte payloads ; {seconds} s per case ; {rounds} round(s), cases interleaved",
        dir.display()
    );
    println!(
        "{:<44} {:>12} {:>10} {:>9}",
        "case", "entries/s", "syncs/s", "MiB/s"
    );

    let mut results: Vec<(String, Vec<f64>)> = Vec::new();
    let mut record = |case: String, rate: f64| match results.iter_mut().find(|(c, _)| *c == case) {
        Some((_, rates)) => rates.push(rate),
        None => results.push((case, vec![rate])),
    };
    for _ in 0..rounds {
        for batch in [1usize, 64, 1024] {
            for preallocate in [true, false] {
                let case = format!("Wal::append, batch {batch}, preallocate {preallocate}");
                let rate = appends(&dir, batch, preallocate, budget, &case);
                record(case, rate);
            }
        }
        let case = "GroupCommit, 1 per call, 1024 in flight".to_string();
        let rate = group_commit(&dir, budget, &case);
        record(case, rate);
    }
    if rounds > 1 {
        println!("\nmedian of {rounds} rounds");
        for (case, mut rates) in results {
            rates.sort_by(f64::total_cmp);
            println!("{case:<44} {:>12.0}", rates[rates.len() / 2]);
        }
    }
}

/// `Wal::append` of `batch` entries per call (one fdatasync each).
fn appends(dir: &Path, batch: usize, preallocate: bool, budget: Duration, case: &str) -> f64 {
    let scratch = tempfile::tempdir_in(dir).expect("create a directory under DIR");
    let options = WalOptions {
        preallocate,
        ..WalOptions::default()
    };
    let mut wal = Wal::open(scratch.path(), options).expect("open");
    let mut next = 1u64;
    let mut syncs = 0u64;
    let start = Instant::now();
    while start.elapsed() < budget {
        let entries: Vec<Entry> = (next..next + batch as u64).map(entry).collect();
        wal.append(&entries).expect("append");
        next += batch as u64;
        syncs += 1;
    }
    report(case, next - 1, Some(syncs), start.elapsed())
}

/// One producer feeding `GroupCommit` one entry per call, with at most
/// `WINDOW` entries not yet durable.
fn group_commit(dir: &Path, budget: Duration, case: &str) -> f64 {
    const WINDOW: usize = 1024;
    let scratch = tempfile::tempdir_in(dir).expect("create a directory under DIR");
    let wal = Wal::open(scratch.path(), WalOptions::default()).expect("open");
    let group = GroupCommit::new(wal).expect("start group commit");
    let in_flight = Arc::new((Mutex::new(0usize), Condvar::new()));
    let start = Instant::now();
    let mut next = 1u64;
    while start.elapsed() < budget {
        {
            let (count, room) = &*in_flight;
            let mut count = count.lock().expect("lock");
            while *count >= WINDOW {
                count = room.wait(count).expect("wait");
            }
            *count += 1;
        }
        let done = Arc::clone(&in_flight);
        group
            .append_async(&[entry(next)], move |outcome| {
                outcome.expect("sync");
                let (count, room) = &*done;
                *count.lock().expect("lock") -= 1;
                room.notify_one();
            })
            .expect("append");
        next += 1;
    }
    group.flush().expect("flush");
    report(case, next - 1, None, start.elapsed())
}

fn entry(index: u64) -> Entry {
    Entry {
        index,
        term: 1,
        payload: vec![(index % 251) as u8; PAYLOAD],
    }
}

fn report(case: &str, entries: u64, syncs: Option<u64>, took: Duration) -> f64 {
    let secs = took.as_secs_f64();
    let syncs = syncs.map_or("-".to_string(), |s| format!("{:.0}", s as f64 / secs));
    let mib = entries as f64 * (PAYLOAD + 32) as f64 / secs / (1 << 20) as f64;
    let rate = entries as f64 / secs;
    println!("{case:<44} {rate:>12.0} {syncs:>10} {mib:>9.1}");
    rate
}
