//! TTL checks: the application reports its own status and must keep doing
//! so; silence for longer than the TTL turns the check critical.

use std::time::Duration;

use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use tokio::time::Instant;

use super::output::truncate_ttl_output;
use super::scheduler::AbortOnDrop;
use super::{CheckStatus, CheckUpdate};

/// The scheduler's handle on a running TTL timer.
#[derive(Debug)]
pub(crate) struct TtlTimer {
    /// Each report's (truncated) output; receiving one re-arms the timer.
    resets: UnboundedSender<String>,
    output_max_size: usize,
}

impl TtlTimer {
    /// Starts the timer now (Consul arms it at registration).
    pub(crate) fn start(
        check_id: String,
        ttl: Duration,
        output_max_size: usize,
        updates: UnboundedSender<CheckUpdate>,
    ) -> (AbortOnDrop, TtlTimer) {
        let (resets, reset_rx) = unbounded_channel();
        let task = AbortOnDrop::spawn(expire(check_id, ttl, updates, reset_rx));
        (
            task,
            TtlTimer {
                resets,
                output_max_size,
            },
        )
    }

    /// An application report (`check/pass|warn|fail|update`): Consul's
    /// `CheckTTL.SetStatus`. Returns the update to publish, whose output is
    /// the HEAD of `output` when it exceeds the limit.
    pub(crate) fn report(
        &self,
        check_id: &str,
        status: CheckStatus,
        output: String,
    ) -> CheckUpdate {
        let output = truncate_ttl_output(output, self.output_max_size);
        // A closed channel means the timer task is gone, which only happens
        // while the check is being removed; the report itself still counts.
        let _ = self.resets.send(output.clone());
        CheckUpdate {
            check_id: check_id.to_owned(),
            status,
            output,
        }
    }
}

/// Fires once per silent TTL period; only a report re-arms it.
async fn expire(
    check_id: String,
    ttl: Duration,
    updates: UnboundedSender<CheckUpdate>,
    mut resets: UnboundedReceiver<String>,
) {
    let mut last_output = String::new();
    let mut deadline = Some(Instant::now() + ttl);
    loop {
        let expiry = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = expiry => {
                deadline = None;
                tracing::warn!(check = %check_id, "check missed TTL, is now critical");
                let update = CheckUpdate {
                    check_id: check_id.clone(),
                    status: CheckStatus::Critical,
                    output: expired_output(&last_output),
                };
                if updates.send(update).is_err() {
                    return;
                }
            }
            reset = resets.recv() => match reset {
                Some(output) => {
                    last_output = output;
                    deadline = Some(Instant::now() + ttl);
                }
                None => return,
            },
        }
    }
}

/// Consul's text for an expired TTL, carrying the last report's output so
/// the operator sees what the application said before it went silent.
fn expired_output(last_output: &str) -> String {
    if last_output.is_empty() {
        "TTL expired".to_owned()
    } else {
        format!("TTL expired (last output before timeout follows): {last_output}")
    }
}
