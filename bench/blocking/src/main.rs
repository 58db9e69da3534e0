//! Many blocking KV queries held at once against one praetor agent, then
//! writes to random watched keys, one at a time.
//!
//! ```text
//! bench-blocking ADDR PID [KEYS] [WRITES]
//! ```
//!
//! 1. Creates KEYS keys `bench/w/<i>` (default 10,000).
//! 2. Opens one keep-alive connection per key, reads the key's index on it,
//!    then holds `GET /v1/kv/bench/w/<i>?index=<index>&wait=60s` on it.
//! 3. Once every query is sent and the agent holds a socket for each, reads
//!    the agent's RSS from `/proc/PID/status`.
//! 4. Sends WRITES PUTs (default 1,000) to random watched keys, one after
//!    another. Each write's write-to-wake latency is the time from sending
//!    the PUT to the return of the blocking query on that key with a larger
//!    X-Consul-Index. The woken query is re-armed at the new index.
//!
//! Any query that returns before its wait ran out without its index having
//! moved is an *unneeded wake*; the aim is none.
//!
//! The last line printed is `key=value` pairs for scripts.

use std::error::Error;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::HOST;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use rand::Rng;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, Semaphore};

type BoxError = Box<dyn Error + Send + Sync>;
type Conn = SendRequest<Full<Bytes>>;

const PREFIX: &str = "bench/w/";
/// The wait each blocking query asks for.
const WAIT: Duration = Duration::from_secs(60);
/// How long a write may take to wake its query before it counts as missed.
const WAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections opened (and first reads made) at once while arming, so the
/// agent's accept backlog does not overflow.
const ARM_CONCURRENCY: usize = 256;
/// Connections used to create the keys.
const CREATE_CONNECTIONS: usize = 16;

struct Args {
    addr: String,
    pid: u32,
    keys: usize,
    writes: usize,
}

fn parse_args() -> Result<Args, BoxError> {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    if argv.len() < 2 || argv.len() > 4 {
        return Err("usage: bench-blocking ADDR PID [KEYS] [WRITES]".into());
    }
    Ok(Args {
        addr: argv[0].clone(),
        pid: argv[1].parse()?,
        keys: argv.get(2).map_or(Ok(10_000), |s| s.parse())?,
        writes: argv.get(3).map_or(Ok(1_000), |s| s.parse())?,
    })
}

/// Counters and hand-offs shared by the watchers and the writer.
struct Shared {
    /// Per key: when the write to it was sent, until its query sees it.
    pending: Vec<Mutex<Option<Instant>>>,
    /// Watchers that have sent their first blocking query.
    armed: AtomicUsize,
    /// Returned early with the index unchanged.
    unneeded: AtomicU64,
    /// Returned with a larger index although no write to the key was pending.
    unexpected: AtomicU64,
    /// Returned with the index unchanged after the wait ran out (not a fault).
    expired: AtomicU64,
    /// Transport or HTTP errors in watchers.
    errors: AtomicU64,
    /// (key, write-to-wake) for each write a watcher saw.
    wakes: mpsc::UnboundedSender<(usize, Duration)>,
}

async fn connect(addr: &str) -> Result<Conn, BoxError> {
    let mut delay = Duration::from_millis(10);
    let stream = loop {
        match TcpStream::connect(addr).await {
            Ok(stream) => break stream,
            Err(_) if delay < Duration::from_secs(2) => {
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
            Err(error) => return Err(error.into()),
        }
    };
    stream.set_nodelay(true)?;
    let (sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

struct Reply {
    status: StatusCode,
    index: Option<u64>,
    body: Bytes,
}

async fn call(
    conn: &mut Conn,
    addr: &str,
    method: Method,
    path: &str,
    body: Bytes,
) -> Result<Reply, BoxError> {
    conn.ready().await?;
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header(HOST, addr)
        .body(Full::new(body))?;
    let response = conn.send_request(request).await?;
    let status = response.status();
    let index = response
        .headers()
        .get("x-consul-index")
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.parse().ok());
    let body = response.into_body().collect().await?.to_bytes();
    Ok(Reply {
        status,
        index,
        body,
    })
}

/// A PUT that must answer 200 `true`.
async fn put(conn: &mut Conn, addr: &str, key: &str, value: String) -> Result<(), BoxError> {
    let reply = call(
        conn,
        addr,
        Method::PUT,
        &format!("/v1/kv/{key}"),
        value.into(),
    )
    .await?;
    if reply.status != StatusCode::OK || reply.body.trim_ascii() != b"true" {
        return Err(format!("PUT {key}: {} {:?}", reply.status, reply.body).into());
    }
    Ok(())
}

async fn create_keys(addr: &str, keys: usize) -> Result<(), BoxError> {
    let mut tasks = Vec::new();
    for lane in 0..CREATE_CONNECTIONS {
        let addr = addr.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut conn = connect(&addr).await?;
            for i in (lane..keys).step_by(CREATE_CONNECTIONS) {
                put(&mut conn, &addr, &format!("{PREFIX}{i}"), format!("v{i}")).await?;
            }
            Ok::<(), BoxError>(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok(())
}

/// Holds the blocking query on key `i` for as long as the process runs.
async fn watch(i: usize, addr: Arc<str>, shared: Arc<Shared>, arming: Arc<Semaphore>) {
    let path = format!("/v1/kv/{PREFIX}{i}");
    let permit = arming.acquire().await;
    let (mut conn, mut index) = match first_read(&addr, &path).await {
        Ok(ok) => ok,
        Err(error) => {
            eprintln!("watcher {i}: {error}");
            shared.errors.fetch_add(1, Ordering::Relaxed);
            return;
        }
    };
    drop(permit);
    let wait = format!("{}s", WAIT.as_secs());
    let mut first = true;
    loop {
        let uri = format!("{path}?index={index}&wait={wait}");
        if first {
            shared.armed.fetch_add(1, Ordering::Relaxed);
            first = false;
        }
        let started = Instant::now();
        let reply = call(&mut conn, &addr, Method::GET, &uri, Bytes::new()).await;
        let now = Instant::now();
        let reply = match reply {
            Ok(reply) if reply.status == StatusCode::OK => reply,
            Ok(reply) => {
                eprintln!("watcher {i}: {} {:?}", reply.status, reply.body);
                shared.errors.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Err(error) => {
                eprintln!("watcher {i}: {error}");
                shared.errors.fetch_add(1, Ordering::Relaxed);
                return;
            }
        };
        let Some(new_index) = reply.index else {
            eprintln!("watcher {i}: no X-Consul-Index");
            shared.errors.fetch_add(1, Ordering::Relaxed);
            return;
        };
        if new_index > index {
            let sent = shared.pending[i]
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take();
            match sent {
                Some(sent) => {
                    let _ = shared.wakes.send((i, now - sent));
                }
                None => {
                    shared.unexpected.fetch_add(1, Ordering::Relaxed);
                }
            }
            index = new_index;
        } else if new_index < index {
            // Consul's rule for an index going back: start over from it.
            shared.unexpected.fetch_add(1, Ordering::Relaxed);
            index = new_index;
        } else if now - started < WAIT {
            shared.unneeded.fetch_add(1, Ordering::Relaxed);
        } else {
            shared.expired.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Opens the watcher's connection and reads its key's current index on it.
async fn first_read(addr: &str, path: &str) -> Result<(Conn, u64), BoxError> {
    let mut conn = connect(addr).await?;
    let reply = call(&mut conn, addr, Method::GET, path, Bytes::new()).await?;
    if reply.status != StatusCode::OK {
        return Err(format!("GET {path}: {}", reply.status).into());
    }
    let index = reply.index.ok_or("no X-Consul-Index")?;
    Ok((conn, index))
}

fn rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

fn mb(kb: u64) -> f64 {
    kb as f64 / 1024.0
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Nearest-rank percentile of sorted samples.
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[tokio::main]
async fn main() {
    if let Err(error) = run().await {
        eprintln!("bench-blocking: {error}");
        std::process::exit(1);
    }
}

async fn run() -> Result<(), BoxError> {
    let args = parse_args()?;
    let addr: Arc<str> = args.addr.as_str().into();
    println!(
        "agent {} (pid {}), {} keys, {} writes",
        args.addr, args.pid, args.keys, args.writes
    );
    let rss_start = rss_kb(args.pid).ok_or("cannot read the agent's RSS")?;
    // The agent's own descriptors (listener, runtime), before any of ours.
    let fds_before = open_fds(args.pid);

    let t = Instant::now();
    create_keys(&addr, args.keys).await?;
    let rss_keys = rss_kb(args.pid).unwrap_or(0);
    println!(
        "created {} keys in {:.2} s; agent RSS {:.1} MB at start, {:.1} MB with the keys",
        args.keys,
        t.elapsed().as_secs_f64(),
        mb(rss_start),
        mb(rss_keys)
    );

    let (wakes_tx, mut wakes) = mpsc::unbounded_channel();
    let shared = Arc::new(Shared {
        pending: (0..args.keys).map(|_| Mutex::new(None)).collect(),
        armed: AtomicUsize::new(0),
        unneeded: AtomicU64::new(0),
        unexpected: AtomicU64::new(0),
        expired: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        wakes: wakes_tx,
    });
    let arming = Arc::new(Semaphore::new(ARM_CONCURRENCY));
    let t = Instant::now();
    for i in 0..args.keys {
        tokio::spawn(watch(
            i,
            Arc::clone(&addr),
            Arc::clone(&shared),
            Arc::clone(&arming),
        ));
    }
    // Every query sent, and the agent holding a socket for each.
    let arm_deadline = Instant::now() + Duration::from_secs(120);
    let mut next_report = Instant::now() + Duration::from_secs(5);
    loop {
        let armed = shared.armed.load(Ordering::Relaxed);
        let errors = shared.errors.load(Ordering::Relaxed) as usize;
        let fds = open_fds(args.pid);
        if armed + errors >= args.keys && fds >= fds_before + armed {
            break;
        }
        if Instant::now() > arm_deadline {
            return Err(format!(
                "only {armed} of {} queries armed ({errors} errors, agent fds {fds})",
                args.keys
            )
            .into());
        }
        if Instant::now() > next_report {
            eprintln!("arming: {armed} sent, {errors} errors, agent fds {fds}");
            next_report += Duration::from_secs(5);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let armed_in = t.elapsed();
    // Give the agent time to read and register the last queries, then wait
    // for its RSS to settle.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut rss_held = rss_kb(args.pid).unwrap_or(0);
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = rss_kb(args.pid).unwrap_or(0);
        let settled = now.abs_diff(rss_held) * 100 <= rss_held;
        rss_held = now;
        if settled {
            break;
        }
    }
    let fds_held = open_fds(args.pid);
    let armed = shared.armed.load(Ordering::Relaxed);
    println!(
        "armed {armed} blocking queries in {:.2} s; agent open fds {fds_held}; agent RSS with all held {:.1} MB",
        armed_in.as_secs_f64(),
        mb(rss_held)
    );
    let unneeded_while_holding = shared.unneeded.load(Ordering::Relaxed);

    // The writes: random watched keys, one at a time, each waited for.
    let targets: Vec<usize> = {
        let mut rng = rand::rng();
        (0..args.writes)
            .map(|_| rng.random_range(0..args.keys))
            .collect()
    };
    let mut writer = connect(&addr).await?;
    let mut wake_latencies = Vec::with_capacity(args.writes);
    let mut put_latencies = Vec::with_capacity(args.writes);
    let mut missed = 0u64;
    let t = Instant::now();
    for (w, &key) in targets.iter().enumerate() {
        let name = format!("{PREFIX}{key}");
        let sent = Instant::now();
        *shared.pending[key]
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(sent);
        put(&mut writer, &addr, &name, format!("write-{w}")).await?;
        put_latencies.push(sent.elapsed());
        let deadline = tokio::time::Instant::from_std(sent + WAKE_TIMEOUT);
        loop {
            match tokio::time::timeout_at(deadline, wakes.recv()).await {
                Ok(Some((k, latency))) if k == key => {
                    wake_latencies.push(latency);
                    break;
                }
                // A late wake for an earlier write already counted as missed.
                Ok(Some(_)) => continue,
                Ok(None) | Err(_) => {
                    missed += 1;
                    shared.pending[key]
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .take();
                    break;
                }
            }
        }
    }
    let writes_took = t.elapsed();
    // Late, unneeded wakes would show up here.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_end = rss_kb(args.pid).unwrap_or(0);

    wake_latencies.sort();
    put_latencies.sort();
    let p50 = percentile(&wake_latencies, 50.0);
    let p99 = percentile(&wake_latencies, 99.0);
    let max = wake_latencies.last().copied().unwrap_or_default();
    let unneeded = shared.unneeded.load(Ordering::Relaxed);
    let unexpected = shared.unexpected.load(Ordering::Relaxed);
    let expired = shared.expired.load(Ordering::Relaxed);
    let errors = shared.errors.load(Ordering::Relaxed);
    println!(
        "{} writes in {:.2} s; PUT round trip p50 {:.3} ms, p99 {:.3} ms",
        args.writes,
        writes_took.as_secs_f64(),
        ms(percentile(&put_latencies, 50.0)),
        ms(percentile(&put_latencies, 99.0))
    );
    println!(
        "write-to-wake over {} wakes: p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms; missed (no wake within {} s) {missed}",
        wake_latencies.len(),
        ms(p50),
        ms(p99),
        ms(max),
        WAKE_TIMEOUT.as_secs()
    );
    println!(
        "unneeded wakes {unneeded} ({unneeded_while_holding} before the writes); wakes without a write {unexpected}; waits expired {expired}; watcher errors {errors}; agent RSS after {:.1} MB",
        mb(rss_end)
    );
    println!(
        "RESULT keys={} armed={armed} rss_held_mb={:.1} rss_keys_mb={:.1} wake_p50_ms={:.3} wake_p99_ms={:.3} wake_max_ms={:.3} wakes={} missed={missed} unneeded={unneeded} unexpected={unexpected} expired={expired} errors={errors}",
        args.keys,
        mb(rss_held),
        mb(rss_keys),
        ms(p50),
        ms(p99),
        ms(max),
        wake_latencies.len()
    );
    Ok(())
}
