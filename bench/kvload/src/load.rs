//! Closed-loop load: N workers, each with its own keep-alive connection,
//! each sending its next request as soon as the last one is answered.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::api::{key_name, value_for, Failure, Op, Request, Target};
use crate::http::{call, connect, Conn};
use crate::stats::{percentiles, Tally};

pub struct Plan {
    pub target: Target,
    pub op: Op,
    /// Workers go round-robin over these: worker i uses endpoint i mod len.
    pub endpoints: Vec<String>,
    pub concurrency: usize,
    pub keys: usize,
    pub prefix: String,
    pub value_size: usize,
    /// Each key once, in order (the `populate` mode), instead of random keys.
    pub sequential: bool,
    /// Run this long after the warm-up (if set), else until `requests`.
    pub duration: Option<Duration>,
    pub requests: Option<u64>,
    /// Sent but not measured, before the measured window.
    pub warmup: Duration,
    pub timeout: Duration,
}

pub struct Outcome {
    pub ok: u64,
    pub seconds: f64,
    pub tally: Tally,
}

impl Outcome {
    pub fn report(mut self, label: &str) -> String {
        let ops = self.ok as f64 / self.seconds.max(1e-9);
        let p = percentiles(&mut self.tally.latencies_us);
        if let Some(first) = &self.tally.first_failure {
            eprintln!("kvload: first failure: {first}");
        }
        format!(
            "{label} ok={} errors={} seconds={:.2} ops_per_s={ops:.0} p50_ms={:.2} p99_ms={:.2} max_ms={:.2} failures={}",
            self.ok,
            self.tally.errors(),
            self.seconds,
            p.p50,
            p.p99,
            p.max,
            self.tally.failure_list()
        )
    }
}

struct Shared {
    requests: Vec<Request>,
    plan: Plan,
    /// Requests handed out (for `requests` and `sequential`).
    issued: AtomicU64,
    /// Start of the measured window.
    measure_from: Instant,
    /// End of the run, if it runs for a duration.
    deadline: Option<Instant>,
}

pub async fn run(plan: Plan) -> Outcome {
    // Every request is prepared up front, so workers only clone Bytes.
    let value_size = plan.value_size;
    let requests: Vec<Request> = (0..plan.keys)
        .map(|i| {
            let key = key_name(&plan.prefix, i);
            plan.target
                .request(plan.op, &key, &value_for(i, value_size))
        })
        .collect();
    let start = Instant::now();
    let measure_from = start + plan.warmup;
    let deadline = plan.duration.map(|d| measure_from + d);
    let concurrency = plan.concurrency;
    let shared = Arc::new(Shared {
        requests,
        plan,
        issued: AtomicU64::new(0),
        measure_from,
        deadline,
    });
    let workers: Vec<_> = (0..concurrency)
        .map(|id| tokio::spawn(worker(id, shared.clone())))
        .collect();
    let mut tally = Tally::default();
    for w in workers {
        match w.await {
            Ok(t) => tally.merge(t),
            Err(error) => tally.failure(Failure::Transport, || format!("worker died: {error}")),
        }
    }
    let end = Instant::now();
    let seconds = match deadline {
        Some(deadline) => (deadline.min(end) - measure_from).as_secs_f64(),
        None => (end - measure_from).as_secs_f64(),
    };
    Outcome {
        ok: tally.latencies_us.len() as u64,
        seconds,
        tally,
    }
}

/// splitmix64: enough randomness to pick keys, no dependency.
struct KeyPicker(u64);

impl KeyPicker {
    fn next(&mut self, n: usize) -> usize {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z % n as u64) as usize
    }
}

async fn worker(id: usize, shared: Arc<Shared>) -> Tally {
    let plan = &shared.plan;
    let endpoint = plan.endpoints[id % plan.endpoints.len()].as_str();
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mut picker = KeyPicker(seed ^ (id as u64).wrapping_mul(0x1000_0000_01B3));
    let mut tally = Tally::default();
    let mut conn: Option<Conn> = None;
    loop {
        if shared.deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        let key = if plan.sequential || plan.requests.is_some() {
            let n = shared.issued.fetch_add(1, Ordering::Relaxed);
            if plan.sequential && n >= plan.keys as u64 {
                break;
            }
            if plan.requests.is_some_and(|limit| n >= limit) {
                break;
            }
            if plan.sequential {
                n as usize
            } else {
                picker.next(plan.keys)
            }
        } else {
            picker.next(plan.keys)
        };
        let c = match conn.as_mut() {
            Some(c) => c,
            None => match tokio::time::timeout(plan.timeout, connect(endpoint)).await {
                Ok(Ok(c)) => conn.insert(c),
                Ok(Err(error)) => {
                    tally.failure(Failure::Connect, || format!("{endpoint}: {error}"));
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
                Err(_) => {
                    tally.failure(Failure::Connect, || {
                        format!("{endpoint}: connect timed out")
                    });
                    continue;
                }
            },
        };
        let request = &shared.requests[key];
        let sent = Instant::now();
        let answer = tokio::time::timeout(
            plan.timeout,
            call(
                c,
                endpoint,
                request.method.clone(),
                &request.path,
                request.body.clone(),
            ),
        )
        .await;
        let answered = Instant::now();
        let measured = sent >= shared.measure_from && shared.deadline.is_none_or(|d| answered <= d);
        match answer {
            Ok(Ok(reply)) => match plan.target.check(plan.op, reply.status, &reply.body) {
                Ok(()) if measured => tally.success(answered - sent),
                Ok(()) => {}
                Err(failure) => tally.failure(failure, || {
                    format!(
                        "{endpoint} {}: {}",
                        request.path,
                        String::from_utf8_lossy(&reply.body[..reply.body.len().min(200)])
                    )
                }),
            },
            Ok(Err(error)) => {
                conn = None;
                tally.failure(Failure::Transport, || format!("{endpoint}: {error}"));
            }
            Err(_) => {
                conn = None;
                tally.failure(Failure::Timeout, || format!("{endpoint} {}", request.path));
            }
        }
    }
    tally
}
