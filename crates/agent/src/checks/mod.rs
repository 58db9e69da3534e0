//! Consul's health check runners: HTTP, TCP, script, gRPC and TTL checks.
//!
//! The agent decodes a [`CheckDefinition`] (agent check register, a service's
//! `Check`/`Checks`), turns it into a runnable [`CheckKind`] with
//! [`CheckDefinition::kind`], and hands it to the [`CheckScheduler`], which
//! reports every status change as a [`CheckUpdate`] on one channel. The
//! runners reproduce Consul's `agent/checks` package: the same defaults,
//! the same status mapping and the same output texts, because operators and
//! tooling read those texts from `/v1/health/...`.
//!
//! The scheduler does not own the check's stored status: until a runner
//! reports, the agent keeps the definition's initial status (`critical` when
//! none is given), exactly as Consul's local state does.

mod definition;
mod dial;
mod grpc;
mod http;
mod output;
mod scheduler;
mod script;
mod status;
mod tcp;
mod thresholds;
mod tls;
mod ttl;

use std::time::Duration;

pub use definition::{CheckDefinition, CheckDefinitionError, CheckKind};
pub use grpc::GrpcCheck;
pub use http::HttpCheck;
pub use scheduler::CheckScheduler;
pub use script::ScriptCheck;
pub use status::{CheckStatus, ParseCheckStatusError};
pub use tcp::TcpCheck;
pub use thresholds::Thresholds;

/// The smallest interval a check may run at (Consul's `checks.MinInterval`);
/// shorter intervals are raised to it so a typo cannot fork-bomb the host.
pub const MIN_INTERVAL: Duration = Duration::from_secs(1);

/// Captured output is capped at this many bytes unless the agent's
/// `check_output_max_size` or the check's `OutputMaxSize` says otherwise
/// (Consul's `checks.DefaultBufSize`).
pub const DEFAULT_OUTPUT_MAX_SIZE: usize = 4 * 1024;

/// The `User-Agent` an HTTP check sends unless its headers set one; services
/// filter health-check traffic from their access logs by this exact value.
pub const USER_AGENT: &str = "Consul Health Check";

/// A status change reported by a runner, to be written to the agent's local
/// state (and from there synced to the catalog).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckUpdate {
    pub check_id: String,
    pub status: CheckStatus,
    pub output: String,
}
