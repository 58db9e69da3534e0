//! kvload: KV load against praetor (Consul's HTTP API) or etcd (its v3
//! HTTP/JSON gateway), for the Raft KV benchmark in `bench/raft/`.
//!
//! ```text
//! kvload populate --target etcd --endpoints A,B,C --concurrency 16
//! kvload write    --target praetor --endpoints A,B,C --concurrency 64 --duration 10
//! kvload read     --target praetor --endpoints A,B,C --concurrency 64 --duration 10
//! kvload leader   --target etcd --endpoints A,B,C
//! kvload failover --target etcd --endpoints LEADER,B,C --kill-pid PID --kill-after 2
//! ```
//!
//! Each worker holds one HTTP/1.1 keep-alive connection; worker i uses
//! endpoint i mod the number of endpoints (`--leader-only`: the leader's
//! only). Writes put a `--value-size` byte value to a random key of
//! `--keys`; reads read one (praetor `?consistent`, etcd's default
//! linearizable range), so `populate` first. The result is one line of
//! `key=value` pairs on stdout; progress and the first failure go to stderr.

mod api;
mod failover;
mod http;
mod load;
mod stats;

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, ValueEnum};

use api::{Op, Target};
use http::BoxError;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// Write every key of the key space once, in order.
    Populate,
    /// Writes to random keys for --duration (or --requests).
    Write,
    /// Linearizable reads of random keys for --duration (or --requests).
    Read,
    /// Print the endpoint of the current leader.
    Leader,
    /// Concurrency-1 writes; kill -9 --kill-pid after --kill-after seconds;
    /// time to the first acknowledged write sent after the kill.
    Failover,
}

#[derive(Parser, Debug)]
#[command(
    name = "kvload",
    about = "KV load against praetor or etcd over HTTP/JSON"
)]
struct Args {
    mode: Mode,
    #[arg(long, value_enum)]
    target: Target,
    /// host:port of each member's HTTP API, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "127.0.0.1:8500")]
    endpoints: Vec<String>,
    /// Send everything to the current leader only.
    #[arg(long)]
    leader_only: bool,
    /// Workers, each with its own connection.
    #[arg(long, default_value_t = 1)]
    concurrency: usize,
    /// Measured seconds (after the warm-up); the default when --requests is absent is 10.
    #[arg(long)]
    duration: Option<f64>,
    /// Total requests, instead of a duration.
    #[arg(long)]
    requests: Option<u64>,
    /// Seconds of load before the measured window (duration runs only).
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    #[arg(long, default_value_t = 10_000)]
    keys: usize,
    #[arg(long, default_value = "bench/k/")]
    prefix: String,
    #[arg(long, default_value_t = 256)]
    value_size: usize,
    /// Per-request timeout (load modes).
    #[arg(long, default_value_t = 10_000)]
    timeout_ms: u64,
    /// Client runtime threads (they share the machine with the servers).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// failover: the process to kill -9 (the leader).
    #[arg(long)]
    kill_pid: Option<i32>,
    /// failover: seconds of writes before the kill.
    #[arg(long, default_value_t = 2.0)]
    kill_after: f64,
    /// failover: fail if no write is acknowledged this many seconds after the kill.
    #[arg(long, default_value_t = 15.0)]
    give_up: f64,
    /// failover: seconds of writes after the first acknowledgement after the kill.
    #[arg(long, default_value_t = 1.0)]
    after: f64,
    /// failover: with no answer after this long, also try the next endpoint
    /// (the unanswered attempt stays in flight and may still count).
    #[arg(long, default_value_t = 250)]
    hedge_ms: u64,
    /// failover: wait after a failed attempt before the next one.
    #[arg(long, default_value_t = 5)]
    pause_ms: u64,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(error) => {
            eprintln!("kvload: runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("kvload: {error}");
            ExitCode::FAILURE
        }
    }
}

fn seconds(s: f64) -> Result<Duration, BoxError> {
    Duration::try_from_secs_f64(s).map_err(|e| format!("{s} s: {e}").into())
}

async fn run(args: Args) -> Result<String, BoxError> {
    if args.endpoints.is_empty() || args.keys == 0 || args.concurrency == 0 {
        return Err("need at least one endpoint, one key and one worker".into());
    }
    let mut endpoints = args.endpoints.clone();
    if args.leader_only && args.mode != Mode::Leader {
        endpoints = vec![args.target.leader(&endpoints).await?];
    }
    let target_name = match args.target {
        Target::Praetor => "praetor",
        Target::Etcd => "etcd",
    };
    let label = format!(
        "target={target_name} concurrency={} endpoints={}",
        args.concurrency,
        endpoints.join(",")
    );
    match args.mode {
        Mode::Leader => args.target.leader(&endpoints).await,
        Mode::Failover => {
            let kill_pid = args.kill_pid.ok_or("failover needs --kill-pid")?;
            let line = failover::run(failover::Plan {
                target: args.target,
                endpoints,
                keys: args.keys,
                prefix: args.prefix,
                value_size: args.value_size,
                kill_pid,
                kill_after: seconds(args.kill_after)?,
                give_up: seconds(args.give_up)?,
                after: seconds(args.after)?,
                hedge: Duration::from_millis(args.hedge_ms),
                pause: Duration::from_millis(args.pause_ms),
                attempt_limit: Duration::from_millis(args.timeout_ms),
            })
            .await?;
            Ok(format!(
                "{line} target={target_name} hedge_ms={}",
                args.hedge_ms
            ))
        }
        Mode::Populate | Mode::Write | Mode::Read => {
            let populate = args.mode == Mode::Populate;
            let duration = match (populate, args.duration, args.requests) {
                (true, _, _) | (false, None, Some(_)) => None,
                (false, Some(d), _) => Some(seconds(d)?),
                (false, None, None) => Some(Duration::from_secs(10)),
            };
            let op = if args.mode == Mode::Read {
                Op::Read
            } else {
                Op::Write
            };
            let outcome = load::run(load::Plan {
                target: args.target,
                op,
                endpoints,
                concurrency: args.concurrency,
                keys: args.keys,
                prefix: args.prefix,
                value_size: args.value_size,
                sequential: populate,
                duration,
                requests: if populate { None } else { args.requests },
                warmup: if duration.is_some() {
                    seconds(args.warmup)?
                } else {
                    Duration::ZERO
                },
                timeout: Duration::from_millis(args.timeout_ms),
            })
            .await;
            let mode = match args.mode {
                Mode::Populate => "populate",
                Mode::Write => "write",
                _ => "read",
            };
            let errors = outcome.tally.errors();
            let line = outcome.report(&format!("{mode} {label}"));
            if populate && errors > 0 {
                return Err(format!("populate had failures: {line}").into());
            }
            Ok(line)
        }
    }
}
