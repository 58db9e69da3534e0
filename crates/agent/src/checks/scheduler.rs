//! Runs every check of the agent: one small tokio task per check, sleeping
//! between runs, so thousands of checks cost memory in kilobytes, not
//! threads.

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use rand::Rng;
use tokio::sync::mpsc::UnboundedSender;
use tokio::task::JoinHandle;

use super::thresholds::StatusHandler;
use super::ttl::TtlTimer;
use super::{
    CheckKind, CheckStatus, CheckUpdate, GrpcCheck, HttpCheck, ScriptCheck, TcpCheck, Thresholds,
};

/// What one run of a probe found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ProbeResult {
    pub status: CheckStatus,
    pub output: String,
    /// Reported even if the thresholds say wait: Consul's script runner
    /// sends start failures and timeouts straight to local state.
    pub bypass_thresholds: bool,
}

impl ProbeResult {
    pub(crate) fn new(status: CheckStatus, output: String) -> Self {
        ProbeResult {
            status,
            output,
            bypass_thresholds: false,
        }
    }

    pub(crate) fn bypassing_thresholds(mut self) -> Self {
        self.bypass_thresholds = true;
        self
    }
}

/// A spawned task that is cancelled when its owner goes away, so a removed
/// check can never report again.
#[derive(Debug)]
pub(crate) struct AbortOnDrop(JoinHandle<()>);

impl AbortOnDrop {
    pub(crate) fn spawn(task: impl Future<Output = ()> + Send + 'static) -> Self {
        AbortOnDrop(tokio::spawn(task))
    }
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The interval-driven kinds.
#[derive(Debug)]
enum Probe {
    Http(HttpCheck),
    Tcp(TcpCheck),
    Script(ScriptCheck),
    Grpc(GrpcCheck),
}

impl Probe {
    fn interval(&self) -> Duration {
        match self {
            Probe::Http(check) => check.interval,
            Probe::Tcp(check) => check.interval,
            Probe::Script(check) => check.interval,
            Probe::Grpc(check) => check.interval,
        }
    }

    async fn run(&self) -> ProbeResult {
        match self {
            Probe::Http(check) => check.probe().await,
            Probe::Tcp(check) => check.probe().await,
            Probe::Script(check) => check.probe().await,
            Probe::Grpc(check) => check.probe().await,
        }
    }
}

#[derive(Debug)]
struct RunningCheck {
    _task: AbortOnDrop,
    ttl: Option<TtlTimer>,
}

/// Runs the agent's checks and reports their status changes on one channel.
///
/// Must be used inside a tokio runtime. Dropping the scheduler stops every
/// check (a script in flight is killed with its process group).
#[derive(Debug)]
pub struct CheckScheduler {
    updates: UnboundedSender<CheckUpdate>,
    running: HashMap<String, RunningCheck>,
}

impl CheckScheduler {
    pub fn new(updates: UnboundedSender<CheckUpdate>) -> Self {
        CheckScheduler {
            updates,
            running: HashMap::new(),
        }
    }

    /// Starts (or replaces) the check `check_id`. Interval checks first run
    /// after a random stagger within their interval, as Consul does, so an
    /// agent restart does not fire every check at once; a TTL check's timer
    /// starts now. `thresholds` apply to interval checks only.
    pub fn start(&mut self, check_id: String, kind: CheckKind, thresholds: Thresholds) {
        let updates = self.updates.clone();
        let probe = match kind {
            CheckKind::Ttl {
                ttl,
                output_max_size,
            } => {
                let (task, timer) =
                    TtlTimer::start(check_id.clone(), ttl, output_max_size, updates);
                let running = RunningCheck {
                    _task: task,
                    ttl: Some(timer),
                };
                self.running.insert(check_id, running);
                return;
            }
            CheckKind::Http(check) => Probe::Http(check),
            CheckKind::Tcp(check) => Probe::Tcp(check),
            CheckKind::Script(check) => Probe::Script(check),
            CheckKind::Grpc(check) => Probe::Grpc(check),
        };
        let task = AbortOnDrop::spawn(run_interval(check_id.clone(), probe, thresholds, updates));
        // Inserting drops (and so aborts) a previous runner with this id.
        self.running.insert(
            check_id,
            RunningCheck {
                _task: task,
                ttl: None,
            },
        );
    }

    /// Stops the check; unknown ids are ignored.
    pub fn stop(&mut self, check_id: &str) {
        self.running.remove(check_id);
    }

    /// An application's report for a TTL check (`check/pass|warn|fail|update`):
    /// publishes the status (output cut to the check's limit) and re-arms
    /// the TTL. Returns false for unknown or non-TTL checks.
    pub fn ttl_update(&mut self, check_id: &str, status: CheckStatus, output: String) -> bool {
        let Some(timer) = self.running.get(check_id).and_then(|r| r.ttl.as_ref()) else {
            return false;
        };
        let update = timer.report(check_id, status, output);
        if self.updates.send(update).is_err() {
            tracing::debug!(check = %check_id, "check update receiver is gone");
        }
        true
    }

    /// Like [`CheckScheduler::ttl_update`], but hands the update back
    /// instead of sending it, for a caller that applies it at once (so the
    /// report is visible when the request that made it returns).
    pub fn ttl_record(
        &mut self,
        check_id: &str,
        status: CheckStatus,
        output: String,
    ) -> Option<CheckUpdate> {
        let timer = self.running.get(check_id).and_then(|r| r.ttl.as_ref())?;
        Some(timer.report(check_id, status, output))
    }

    /// Whether a runner exists for `check_id`.
    pub fn is_running(&self, check_id: &str) -> bool {
        self.running.contains_key(check_id)
    }
}

/// The life of one interval check: stagger, then probe, report through the
/// thresholds, sleep a full interval after each run (runs never overlap).
async fn run_interval(
    check_id: String,
    probe: Probe,
    thresholds: Thresholds,
    updates: UnboundedSender<CheckUpdate>,
) {
    let interval = probe.interval();
    tokio::time::sleep(random_stagger(interval)).await;
    let mut handler = StatusHandler::new(thresholds);
    loop {
        let result = probe.run().await;
        let status = if result.bypass_thresholds {
            Some(result.status)
        } else {
            handler.record(result.status)
        };
        if let Some(status) = status {
            let update = CheckUpdate {
                check_id: check_id.clone(),
                status,
                output: result.output,
            };
            if updates.send(update).is_err() {
                return;
            }
        }
        tokio::time::sleep(interval).await;
    }
}

/// A uniformly random wait in `[0, interval)` (Consul's `lib.RandomStagger`).
fn random_stagger(interval: Duration) -> Duration {
    let nanos = u64::try_from(interval.as_nanos()).unwrap_or(u64::MAX);
    if nanos == 0 {
        return Duration::ZERO;
    }
    Duration::from_nanos(rand::rng().random_range(0..nanos))
}

#[cfg(test)]
mod tests;
