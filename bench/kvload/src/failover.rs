//! Failover: one client writing continuously while the leader is killed.
//!
//! The client writes one key at a time (concurrency 1). After `kill_after` it
//! sends SIGKILL to `kill_pid` itself, so the kill instant and every
//! acknowledgement are read from one clock. The figure is the time from the
//! kill to the acknowledgement of the first write *sent after* the kill (an
//! answer that was already on its way cannot count).
//!
//! A failed attempt (refused connection, error status, broken connection)
//! moves the client to the next endpoint after `pause`. An attempt that has
//! had no answer for `hedge` is not abandoned: it stays in flight (a
//! follower may be holding it until a new leader is elected, and then it
//! counts), and one more attempt goes to the next endpoint. Attempts die
//! after `attempt_limit`.

use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use crate::api::{key_name, value_for, Failure, Op, Target};
use crate::http::{call, connect, BoxError, Conn};
use crate::stats::{percentiles, Tally};

pub struct Plan {
    pub target: Target,
    pub endpoints: Vec<String>,
    pub keys: usize,
    pub prefix: String,
    pub value_size: usize,
    pub kill_pid: i32,
    pub kill_after: Duration,
    /// Give up if no write is acknowledged this long after the kill.
    pub give_up: Duration,
    /// Keep writing this long after the first acknowledgement after the kill.
    pub after: Duration,
    pub hedge: Duration,
    pub pause: Duration,
    pub attempt_limit: Duration,
}

struct Attempt {
    id: u64,
    endpoint: usize,
    sent: Instant,
    answered: Instant,
    conn: Option<Conn>,
    result: Result<(), (Failure, String)>,
}

async fn attempt(
    id: u64,
    endpoint: usize,
    address: String,
    conn: Option<Conn>,
    target: Target,
    request: crate::api::Request,
    limit: Duration,
) -> Attempt {
    let sent = Instant::now();
    let work = async {
        let mut conn = match conn {
            Some(c) => c,
            None => match connect(&address).await {
                Ok(c) => c,
                Err(e) => return (None, Err((Failure::Connect, format!("{address}: {e}")))),
            },
        };
        match call(
            &mut conn,
            &address,
            request.method,
            &request.path,
            request.body,
        )
        .await
        {
            Ok(reply) => {
                let result = target
                    .check(Op::Write, reply.status, &reply.body)
                    .map_err(|f| {
                        let body = &reply.body[..reply.body.len().min(200)];
                        (f, format!("{address}: {}", String::from_utf8_lossy(body)))
                    });
                (Some(conn), result)
            }
            Err(e) => (None, Err((Failure::Transport, format!("{address}: {e}")))),
        }
    };
    let (conn, result) = match tokio::time::timeout(limit, work).await {
        Ok(done) => done,
        Err(_) => (None, Err((Failure::Timeout, address.clone()))),
    };
    Attempt {
        id,
        endpoint,
        sent,
        answered: Instant::now(),
        conn,
        result,
    }
}

fn kill(pid: i32) -> Result<(), BoxError> {
    // SAFETY: kill(2) takes plain integers and touches no memory of ours.
    let rc = unsafe { libc::kill(pid, libc::SIGKILL) };
    if rc != 0 {
        return Err(format!("kill -9 {pid}: {}", std::io::Error::last_os_error()).into());
    }
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

pub async fn run(plan: Plan) -> Result<String, BoxError> {
    let n = plan.endpoints.len();
    let max_in_flight = 2 * n + 2;
    let start = Instant::now();
    let kill_at = start + plan.kill_after;
    let mut killed_at: Option<Instant> = None;
    let mut pools: Vec<Vec<Conn>> = (0..n).map(|_| Vec::new()).collect();
    let mut in_flight: JoinSet<Attempt> = JoinSet::new();
    let mut next_id = 0u64;
    // The newest attempt of the write now wanted: (id, sent).
    let mut current: Option<(u64, Instant)> = None;
    let mut endpoint = 0usize;
    let mut retry_at = start;
    let mut seq = 0usize;
    let mut before = Tally::default();
    let mut after_kill = Tally::default();
    let mut last_ack_before_kill: Option<Instant> = None;
    // First acknowledgement after the kill of any write, and of a write sent
    // after it (the figure), with the endpoint that gave it.
    let mut first_any: Option<Instant> = None;
    let mut first_sent_after: Option<(Instant, usize)> = None;
    let mut hedges = 0u64;
    let mut stop_at: Option<Instant> = None;

    loop {
        let now = Instant::now();
        if killed_at.is_none() && now >= kill_at {
            kill(plan.kill_pid)?;
            killed_at = Some(Instant::now());
            eprintln!(
                "kvload: killed pid {} at {:.3} s, {} writes acknowledged before",
                plan.kill_pid,
                (now - start).as_secs_f64(),
                before.latencies_us.len()
            );
        }
        if let Some(k) = killed_at {
            if first_sent_after.is_none() && now >= k + plan.give_up {
                return Err(format!(
                    "no write acknowledged within {:?} of the kill; failures after it: {}; first: {}",
                    plan.give_up,
                    after_kill.failure_list(),
                    after_kill.first_failure.as_deref().unwrap_or("-")
                )
                .into());
            }
        }
        if stop_at.is_some_and(|s| now >= s) {
            break;
        }
        let send = match current {
            None => now >= retry_at,
            Some((_, sent)) => {
                let hedge = now - sent >= plan.hedge && in_flight.len() < max_in_flight;
                if hedge {
                    hedges += 1;
                    endpoint = (endpoint + 1) % n;
                }
                hedge
            }
        };
        if send && in_flight.len() < max_in_flight {
            let id = next_id;
            next_id += 1;
            let key = key_name(&plan.prefix, seq % plan.keys);
            let request = plan
                .target
                .request(Op::Write, &key, &value_for(seq, plan.value_size));
            seq += 1;
            current = Some((id, now));
            in_flight.spawn(attempt(
                id,
                endpoint,
                plan.endpoints[endpoint].clone(),
                pools[endpoint].pop(),
                plan.target,
                request,
                plan.attempt_limit,
            ));
        }
        let done = match tokio::time::timeout(Duration::from_millis(1), in_flight.join_next()).await
        {
            Ok(Some(Ok(done))) => done,
            Ok(Some(Err(error))) => return Err(format!("attempt task: {error}").into()),
            Ok(None) => {
                tokio::time::sleep(Duration::from_millis(1)).await;
                continue;
            }
            Err(_) => continue,
        };
        let after = killed_at.is_some_and(|k| done.answered >= k);
        match done.result {
            Ok(()) => {
                if let Some(conn) = done.conn {
                    pools[done.endpoint].push(conn);
                }
                let tally = if after { &mut after_kill } else { &mut before };
                tally.success(done.answered - done.sent);
                if let Some(k) = killed_at.filter(|_| after) {
                    first_any.get_or_insert(done.answered);
                    if done.sent >= k && first_sent_after.is_none() {
                        first_sent_after = Some((done.answered, done.endpoint));
                        stop_at = Some(done.answered + plan.after);
                    }
                } else {
                    last_ack_before_kill = Some(done.answered);
                }
                // Whichever attempt succeeded, the next write is due now.
                current = None;
                retry_at = done.answered;
            }
            Err((failure, detail)) => {
                let tally = if after { &mut after_kill } else { &mut before };
                tally.failure(failure, || detail);
                if let (Failure::Status(_) | Failure::Body, Some(conn)) = (failure, done.conn) {
                    pools[done.endpoint].push(conn);
                }
                if current.is_some_and(|(id, _)| id == done.id) {
                    current = None;
                    retry_at = done.answered + plan.pause;
                    endpoint = (done.endpoint + 1) % n;
                }
            }
        }
    }
    in_flight.abort_all();

    let kill = killed_at.ok_or("the run ended before the kill")?;
    let (first, by) = first_sent_after.ok_or("no write acknowledged after the kill")?;
    if before.latencies_us.is_empty() {
        eprintln!("kvload: warning: no write was acknowledged before the kill");
    }
    let gap = last_ack_before_kill.map_or(0.0, |t| ms(first.saturating_duration_since(t)));
    let before_p = percentiles(&mut before.latencies_us);
    let acked_after = after_kill.latencies_us.len();
    let after_p = percentiles(&mut after_kill.latencies_us);
    if let Some(f) = &after_kill.first_failure {
        eprintln!("kvload: first failure after the kill: {f}");
    }
    Ok(format!(
        "failover failover_ms={:.1} first_ack_any_ms={:.1} gap_ms={gap:.1} acked_by={} \
         writes_before={} p50_before_ms={:.2} p99_before_ms={:.2} writes_after={acked_after} \
         p50_after_ms={:.2} errors_before={} errors_after={} failures_after={} hedges={hedges}",
        ms(first - kill),
        first_any.map_or(0.0, |t| ms(t - kill)),
        plan.endpoints[by],
        before.latencies_us.len(),
        before_p.p50,
        before_p.p99,
        after_p.p50,
        before.errors(),
        after_kill.errors(),
        after_kill.failure_list(),
    ))
}
