//! The blocking-query loop shared by every read endpoint.

use std::time::Duration;

use agent::Agent;
use rand::Rng;
use state::{Index, Snapshot, Store, WatchSet};

use crate::error::HttpError;
use crate::params::QueryOptions;

/// Consul adds up to `wait / 16` of random delay so that many clients with
/// the same wait do not all return, and come back, at once.
const JITTER_FRACTION: u32 = 16;

/// Runs `query` against the current state. With a `min_index`, it re-runs
/// the query each time a row it read changes, until the result's index
/// passes `min_index`, the wait (plus jitter) runs out, or the agent stops;
/// then it returns the latest result. The index is never below 1.
pub async fn run<T>(
    agent: &Agent,
    options: &QueryOptions,
    query: impl FnMut(&Snapshot, &mut WatchSet) -> (Index, T),
) -> Result<(Index, T), HttpError> {
    agent
        .read_barrier(options.read_consistency())
        .await
        .map_err(|e| HttpError::internal(e.to_string()))?;
    Ok(run_local(agent, options, query).await)
}

/// The loop of [`run`] once the read may be answered locally.
async fn run_local<T>(
    agent: &Agent,
    options: &QueryOptions,
    mut query: impl FnMut(&Snapshot, &mut WatchSet) -> (Index, T),
) -> (Index, T) {
    let store = agent.store();
    let mut watches = WatchSet::new();
    let (mut index, mut result, mut seen) = read(store, &mut watches, &mut query);
    if options.min_index == 0 || index > options.min_index {
        return (index.max(1), result);
    }
    let deadline = tokio::time::Instant::now() + with_jitter(options.wait);
    loop {
        let watch = store.watch(&watches, seen);
        tokio::select! {
            _ = watch.changed() => {}
            _ = tokio::time::sleep_until(deadline) => return (index.max(1), result),
            _ = agent.stopping() => return (index.max(1), result),
        }
        watches = WatchSet::new();
        (index, result, seen) = read(store, &mut watches, &mut query);
        if index > options.min_index {
            return (index.max(1), result);
        }
    }
}

fn with_jitter(wait: Duration) -> Duration {
    let spread = wait / JITTER_FRACTION;
    if spread.is_zero() {
        return wait;
    }
    let extra = rand::rng().random_range(0..spread.as_nanos().min(u64::MAX as u128) as u64);
    wait + Duration::from_nanos(extra)
}

/// One run of the query on the current version. Only the version's index
/// outlives the call, so a waiting query does not keep old state alive.
fn read<T>(
    store: &Store,
    watches: &mut WatchSet,
    query: &mut impl FnMut(&Snapshot, &mut WatchSet) -> (Index, T),
) -> (Index, T, Index) {
    let snapshot = store.snapshot();
    let (index, result) = query(&snapshot, watches);
    (index, result, snapshot.index())
}

/// A read endpoint's whole answer: parse the query options, run `query`
/// (blocking if asked), and render the result as JSON with Consul's query
/// headers.
pub async fn respond<T>(
    agent: &Agent,
    params: &crate::params::Params,
    query: impl FnMut(&Snapshot, &mut WatchSet) -> (Index, T),
    render: impl FnOnce(&T, bool) -> axum::response::Response,
) -> Result<axum::response::Response, crate::error::HttpError> {
    let options = QueryOptions::parse(params)?;
    crate::params::check_datacenter(agent, params)?;
    let (index, result) = run(agent, &options, query).await?;
    let pretty = crate::reply::pretty(agent.config().dev, params);
    let meta = crate::reply::QueryMeta::new(agent, index, options.consistency);
    Ok(meta.on(render(&result, pretty)))
}
