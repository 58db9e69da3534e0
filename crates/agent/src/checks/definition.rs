//! Consul's check definition as it arrives in JSON, its validation, and the
//! runnable [`CheckKind`] it turns into.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

use super::{
    CheckStatus, GrpcCheck, HttpCheck, ScriptCheck, TcpCheck, Thresholds, DEFAULT_OUTPUT_MAX_SIZE,
    MIN_INTERVAL,
};
use crate::go_duration::parse_go_duration;

/// HTTP, TCP and gRPC probes give up after this long unless `Timeout` says
/// otherwise.
const DEFAULT_NETWORK_TIMEOUT: Duration = Duration::from_secs(10);

/// Scripts get longer: they often do real work (Consul's default 30s).
const DEFAULT_SCRIPT_TIMEOUT: Duration = Duration::from_secs(30);

/// A check definition: `PUT /v1/agent/check/register`, a service's
/// `Check`/`Checks`, or a `check` block in a config file. Field names are
/// Consul's; the HTTP layer's lenient decoder also maps `snake_case`.
/// Durations are Go duration strings or integer nanoseconds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct CheckDefinition {
    /// The check's id (`ID` in agent check register).
    #[serde(rename = "ID")]
    pub id: String,
    /// The same, as a service's check spells it (`CheckID`).
    #[serde(rename = "CheckID")]
    pub check_id: String,
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "Notes")]
    pub notes: String,
    #[serde(rename = "ServiceID")]
    pub service_id: String,
    #[serde(rename = "Token")]
    pub token: String,
    /// Initial status; empty means `critical`.
    #[serde(rename = "Status")]
    pub status: String,

    #[serde(rename = "TTL", deserialize_with = "go_duration")]
    pub ttl: Duration,
    #[serde(rename = "HTTP")]
    pub http: String,
    #[serde(rename = "Method")]
    pub method: String,
    #[serde(rename = "Header")]
    pub header: BTreeMap<String, Vec<String>>,
    #[serde(rename = "Body")]
    pub body: String,
    #[serde(rename = "TLSSkipVerify")]
    pub tls_skip_verify: bool,
    #[serde(rename = "TLSServerName")]
    pub tls_server_name: String,
    #[serde(rename = "DisableRedirects")]
    pub disable_redirects: bool,
    #[serde(rename = "TCP")]
    pub tcp: String,
    #[serde(rename = "TCPUseTLS")]
    pub tcp_use_tls: bool,
    /// `Args` in Consul's documentation; `ScriptArgs` is the Go field name.
    #[serde(rename = "ScriptArgs", alias = "Args")]
    pub script_args: Vec<String>,
    #[serde(rename = "GRPC")]
    pub grpc: String,
    #[serde(rename = "GRPCUseTLS")]
    pub grpc_use_tls: bool,
    #[serde(rename = "Interval", deserialize_with = "go_duration")]
    pub interval: Duration,
    #[serde(rename = "Timeout", deserialize_with = "go_duration")]
    pub timeout: Duration,
    #[serde(
        rename = "DeregisterCriticalServiceAfter",
        deserialize_with = "go_duration"
    )]
    pub deregister_critical_service_after: Duration,
    #[serde(rename = "SuccessBeforePassing")]
    pub success_before_passing: i64,
    #[serde(rename = "FailuresBeforeWarning")]
    pub failures_before_warning: i64,
    #[serde(rename = "FailuresBeforeCritical")]
    pub failures_before_critical: i64,
    /// Caps the output this check reports; 0 means the agent's limit.
    #[serde(rename = "OutputMaxSize")]
    pub output_max_size: i64,

    // Kinds Consul has and praetor does not run yet: decoded so that they
    // are refused by name instead of being mistaken for an empty check.
    #[serde(rename = "UDP")]
    pub udp: String,
    #[serde(rename = "H2PING")]
    pub h2ping: String,
    #[serde(rename = "H2PingUseTLS")]
    pub h2ping_use_tls: Option<bool>,
    #[serde(rename = "DockerContainerID")]
    pub docker_container_id: String,
    #[serde(rename = "Shell")]
    pub shell: String,
    #[serde(rename = "AliasNode")]
    pub alias_node: String,
    #[serde(rename = "AliasService")]
    pub alias_service: String,
    #[serde(rename = "OSService")]
    pub os_service: String,
}

/// A definition the agent cannot run. Messages are Consul's, word for word:
/// the HTTP layer answers the validation ones with 400 `Invalid check: <msg>`
/// (see [`CheckDefinitionError::is_invalid_check`]) and the rest with 500.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckDefinitionError {
    #[error("Interval and TTL cannot both be specified")]
    IntervalAndTtl,
    #[error("Interval must be > 0 for Script, HTTP, H2PING, TCP, UDP or OSService checks")]
    IntervalRequired,
    #[error("Interval cannot be set for Alias checks")]
    AliasWithInterval,
    #[error("TTL must be not be set for Alias checks")]
    AliasWithTtl,
    #[error("TTL must be > 0 for TTL checks")]
    TtlRequired,
    #[error("MaxOutputMaxSize must be positive")]
    NegativeOutputMaxSize,
    #[error("FailuresBeforeWarning can't be higher than FailuresBeforeCritical")]
    WarningAboveCritical,
    /// A script check registered over the API while `enable_script_checks`
    /// is off.
    #[error(
        "Scripts are disabled on this agent from remote calls; to enable, configure 'enable_script_checks' to true"
    )]
    RemoteScriptsDisabled,
    /// A script check from a config file while neither
    /// `enable_script_checks` nor `enable_local_script_checks` is on.
    #[error(
        "Scripts are disabled on this agent; to enable, configure 'enable_script_checks' or 'enable_local_script_checks' to true"
    )]
    LocalScriptsDisabled,
    /// A valid Consul check of a kind praetor does not run (UDP, H2PING,
    /// Docker, Alias, OSService).
    #[error("{0} checks are not supported by praetor")]
    Unsupported(&'static str),
    /// `Status` is set to something other than passing/warning/critical.
    #[error("Bad check status")]
    BadStatus,
}

impl CheckDefinitionError {
    /// Whether this is Consul's `CheckType.Validate` failing (HTTP 400
    /// `Invalid check: <msg>`) rather than the agent refusing to run it.
    pub fn is_invalid_check(&self) -> bool {
        !matches!(
            self,
            CheckDefinitionError::RemoteScriptsDisabled
                | CheckDefinitionError::LocalScriptsDisabled
                | CheckDefinitionError::Unsupported(_)
                | CheckDefinitionError::BadStatus
        )
    }
}

/// What the scheduler runs. Interval kinds carry their resolved timeouts
/// and output limits; `output_max_size` assumes the agent's default limit
/// (4096) and may be lowered by the agent's `check_output_max_size`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckKind {
    Ttl {
        ttl: Duration,
        output_max_size: usize,
    },
    Http(HttpCheck),
    Tcp(TcpCheck),
    Script(ScriptCheck),
    Grpc(GrpcCheck),
}

impl CheckDefinition {
    /// Validates like Consul (`CheckType.Validate`, then the agent's script
    /// gate for a check registered over the API) and yields the runnable
    /// kind, with intervals below [`MIN_INTERVAL`] raised to it.
    pub fn kind(&self, enable_script_checks: bool) -> Result<CheckKind, CheckDefinitionError> {
        self.kind_with(
            enable_script_checks,
            CheckDefinitionError::RemoteScriptsDisabled,
        )
    }

    /// [`CheckDefinition::kind`] for a check from a config file, which
    /// `enable_local_script_checks` (or `enable_script_checks`) allows.
    pub fn kind_from_config(
        &self,
        script_checks_allowed: bool,
    ) -> Result<CheckKind, CheckDefinitionError> {
        self.kind_with(
            script_checks_allowed,
            CheckDefinitionError::LocalScriptsDisabled,
        )
    }

    /// The id the check is registered under: `ID`, else `CheckID`, else the
    /// name (Consul defaults the id to the name).
    pub fn effective_id(&self) -> &str {
        [&self.id, &self.check_id, &self.name]
            .into_iter()
            .find(|s| !s.is_empty())
            .map_or("", String::as_str)
    }

    /// The status the check has until its first result: `Status`, or
    /// `critical` when empty.
    pub fn initial_status(&self) -> Result<CheckStatus, CheckDefinitionError> {
        if self.status.is_empty() {
            return Ok(CheckStatus::Critical);
        }
        self.status
            .parse()
            .map_err(|_| CheckDefinitionError::BadStatus)
    }

    /// The thresholds as Consul's agent applies them (negative counts as 0;
    /// a zero warning threshold follows the critical one).
    pub fn thresholds(&self) -> Thresholds {
        let count = |value: i64| u32::try_from(value.max(0)).unwrap_or(u32::MAX);
        Thresholds {
            success_before_passing: count(self.success_before_passing),
            failures_before_warning: count(self.failures_before_warning),
            failures_before_critical: count(self.failures_before_critical),
        }
    }

    fn kind_with(
        &self,
        scripts_allowed: bool,
        scripts_disabled: CheckDefinitionError,
    ) -> Result<CheckKind, CheckDefinitionError> {
        self.validate()?;
        let is_script = !self.script_args.is_empty();
        if is_script && !scripts_allowed {
            return Err(scripts_disabled);
        }
        let output_max_size = match usize::try_from(self.output_max_size) {
            Ok(size) if size > 0 => size.min(DEFAULT_OUTPUT_MAX_SIZE),
            _ => DEFAULT_OUTPUT_MAX_SIZE,
        };
        if self.ttl > Duration::ZERO {
            return Ok(CheckKind::Ttl {
                ttl: self.ttl,
                output_max_size,
            });
        }
        let interval = self.clamped_interval();
        let timeout_or = |default| {
            if self.timeout > Duration::ZERO {
                self.timeout
            } else {
                default
            }
        };
        let tls_server_name = Some(self.tls_server_name.clone()).filter(|s| !s.is_empty());
        // The same precedence as Consul's agent.addCheck switch.
        if !self.http.is_empty() {
            let method = if self.method.is_empty() {
                "GET".to_owned()
            } else {
                self.method.clone()
            };
            return Ok(CheckKind::Http(HttpCheck {
                url: self.http.clone(),
                method,
                headers: self.header.clone(),
                body: self.body.clone(),
                tls_skip_verify: self.tls_skip_verify,
                tls_server_name,
                disable_redirects: self.disable_redirects,
                interval,
                timeout: timeout_or(DEFAULT_NETWORK_TIMEOUT),
                output_max_size,
            }));
        }
        if !self.tcp.is_empty() {
            if self.tcp_use_tls {
                return Err(CheckDefinitionError::Unsupported("TCP+TLS"));
            }
            return Ok(CheckKind::Tcp(TcpCheck {
                address: self.tcp.clone(),
                interval,
                timeout: timeout_or(DEFAULT_NETWORK_TIMEOUT),
            }));
        }
        if !self.udp.is_empty() {
            return Err(CheckDefinitionError::Unsupported("UDP"));
        }
        if !self.grpc.is_empty() {
            return Ok(CheckKind::Grpc(GrpcCheck {
                target: self.grpc.clone(),
                use_tls: self.grpc_use_tls,
                tls_skip_verify: self.tls_skip_verify,
                tls_server_name,
                interval,
                timeout: timeout_or(DEFAULT_NETWORK_TIMEOUT),
            }));
        }
        if is_script && !self.docker_container_id.is_empty() {
            return Err(CheckDefinitionError::Unsupported("Docker"));
        }
        if !self.os_service.is_empty() {
            return Err(CheckDefinitionError::Unsupported("OSService"));
        }
        if is_script {
            return Ok(CheckKind::Script(ScriptCheck {
                args: self.script_args.clone(),
                interval,
                timeout: timeout_or(DEFAULT_SCRIPT_TIMEOUT),
                output_max_size,
            }));
        }
        if !self.h2ping.is_empty() {
            return Err(CheckDefinitionError::Unsupported("H2PING"));
        }
        Err(CheckDefinitionError::Unsupported("Alias"))
    }

    /// Consul's `CheckType.Validate`, in its order.
    fn validate(&self) -> Result<(), CheckDefinitionError> {
        let interval_check = !self.script_args.is_empty()
            || !self.http.is_empty()
            || !self.tcp.is_empty()
            || !self.udp.is_empty()
            || !self.grpc.is_empty()
            || !self.h2ping.is_empty()
            || !self.os_service.is_empty();
        let alias = !self.alias_node.is_empty() || !self.alias_service.is_empty();
        let has_interval = self.interval > Duration::ZERO;
        let has_ttl = self.ttl > Duration::ZERO;
        if has_interval && has_ttl {
            return Err(CheckDefinitionError::IntervalAndTtl);
        }
        if interval_check && !has_interval {
            return Err(CheckDefinitionError::IntervalRequired);
        }
        if interval_check && alias {
            return Err(CheckDefinitionError::AliasWithInterval);
        }
        if alias && has_ttl {
            return Err(CheckDefinitionError::AliasWithTtl);
        }
        if !interval_check && !alias && !has_ttl {
            return Err(CheckDefinitionError::TtlRequired);
        }
        if self.output_max_size < 0 {
            return Err(CheckDefinitionError::NegativeOutputMaxSize);
        }
        if self.failures_before_warning > self.failures_before_critical {
            return Err(CheckDefinitionError::WarningAboveCritical);
        }
        Ok(())
    }

    fn clamped_interval(&self) -> Duration {
        if self.interval < MIN_INTERVAL {
            tracing::warn!(
                check = %self.effective_id(),
                minimum_interval = "1s",
                "check has interval below minimum"
            );
            return MIN_INTERVAL;
        }
        self.interval
    }
}

/// Deserializes a Go duration string or integer nanoseconds. Negative
/// values become zero: Consul treats every duration field `<= 0` as unset.
fn go_duration<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    struct GoDuration;

    impl Visitor<'_> for GoDuration {
        type Value = Duration;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a duration such as \"10s\" or integer nanoseconds")
        }

        fn visit_str<E: de::Error>(self, text: &str) -> Result<Duration, E> {
            let nanos = parse_go_duration(text).map_err(E::custom)?;
            Ok(Duration::from_nanos(
                u64::try_from(nanos.max(0)).unwrap_or(u64::MAX),
            ))
        }

        fn visit_u64<E: de::Error>(self, nanos: u64) -> Result<Duration, E> {
            Ok(Duration::from_nanos(nanos))
        }

        fn visit_i64<E: de::Error>(self, nanos: i64) -> Result<Duration, E> {
            Ok(Duration::from_nanos(u64::try_from(nanos).unwrap_or(0)))
        }

        fn visit_f64<E: de::Error>(self, nanos: f64) -> Result<Duration, E> {
            Ok(Duration::from_nanos(if nanos > 0.0 {
                nanos as u64
            } else {
                0
            }))
        }

        fn visit_unit<E: de::Error>(self) -> Result<Duration, E> {
            Ok(Duration::ZERO)
        }
    }

    deserializer.deserialize_any(GoDuration)
}

#[cfg(test)]
mod tests;
