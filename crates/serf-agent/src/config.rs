//! The Serf agent's configuration: Serf's defaults, JSON config files
//! (`-config-file`, `-config-dir`), then command-line flags, merged the
//! way Serf merges them (later non-empty values win, lists append, tags
//! merge). Unknown keys and wrongly typed values are errors naming the
//! file, the key and what was expected.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

/// Shortest retry interval accepted (shorter values are raised).
pub const MIN_RETRY_INTERVAL: Duration = Duration::from_secs(1);
/// Shortest broadcast timeout accepted (shorter values are raised).
pub const MIN_BROADCAST_TIMEOUT: Duration = Duration::from_millis(100);

#[derive(Debug, Clone, PartialEq)]
pub struct AgentConfig {
    pub node_name: String,
    pub role: String,
    pub disable_coordinates: bool,
    pub tags: BTreeMap<String, String>,
    pub tags_file: String,
    pub bind: String,
    pub advertise: String,
    pub encrypt_key: String,
    pub keyring_file: String,
    pub log_level: String,
    pub rpc_addr: String,
    pub rpc_auth: String,
    pub protocol: i64,
    pub replay_on_join: bool,
    pub query_response_size_limit: usize,
    pub query_size_limit: usize,
    pub user_event_size_limit: usize,
    pub start_join: Vec<String>,
    pub event_handlers: Vec<String>,
    pub profile: String,
    pub snapshot_path: String,
    pub leave_on_terminate: bool,
    pub skip_leave_on_interrupt: bool,
    pub reconnect_interval: Option<Duration>,
    pub reconnect_timeout: Option<Duration>,
    pub tombstone_timeout: Option<Duration>,
    pub disable_name_resolution: bool,
    pub retry_join: Vec<String>,
    pub retry_max_attempts: u64,
    pub retry_interval: Duration,
    pub rejoin_after_leave: bool,
    pub enable_compression: bool,
    pub broadcast_timeout: Duration,
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            node_name: String::new(),
            role: String::new(),
            disable_coordinates: false,
            tags: BTreeMap::new(),
            tags_file: String::new(),
            bind: "0.0.0.0".into(),
            advertise: String::new(),
            encrypt_key: String::new(),
            keyring_file: String::new(),
            log_level: "INFO".into(),
            rpc_addr: "127.0.0.1:7373".into(),
            rpc_auth: String::new(),
            protocol: i64::from(serf::config::PROTOCOL_MAX),
            replay_on_join: false,
            query_response_size_limit: 1024,
            query_size_limit: 1024,
            user_event_size_limit: 512,
            start_join: Vec::new(),
            event_handlers: Vec::new(),
            profile: "lan".into(),
            snapshot_path: String::new(),
            leave_on_terminate: false,
            skip_leave_on_interrupt: false,
            reconnect_interval: None,
            reconnect_timeout: None,
            tombstone_timeout: None,
            disable_name_resolution: false,
            retry_join: Vec::new(),
            retry_max_attempts: 0,
            retry_interval: Duration::from_secs(30),
            rejoin_after_leave: false,
            enable_compression: true,
            broadcast_timeout: Duration::from_secs(5),
        }
    }
}

/// A configuration problem, with where it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("Error reading '{path}': {reason}")]
    Read { path: String, reason: String },
    #[error("Error decoding '{path}': {reason}")]
    Decode { path: String, reason: String },
    #[error("Error decoding '{path}': key '{key}': expected {expected}")]
    Type {
        path: String,
        key: String,
        expected: &'static str,
    },
    #[error("Error decoding '{path}': unknown key '{key}'")]
    UnknownKey { path: String, key: String },
    #[error("{0}")]
    Invalid(String),
}

/// The settings one source (a file or the flags) gives; `None` = unset.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Partial {
    pub node_name: Option<String>,
    pub role: Option<String>,
    pub disable_coordinates: Option<bool>,
    pub tags: BTreeMap<String, String>,
    pub tags_file: Option<String>,
    pub bind: Option<String>,
    pub advertise: Option<String>,
    pub encrypt_key: Option<String>,
    pub keyring_file: Option<String>,
    pub log_level: Option<String>,
    pub rpc_addr: Option<String>,
    pub rpc_auth: Option<String>,
    pub protocol: Option<i64>,
    pub replay_on_join: Option<bool>,
    pub query_response_size_limit: Option<usize>,
    pub query_size_limit: Option<usize>,
    pub user_event_size_limit: Option<usize>,
    pub start_join: Vec<String>,
    pub event_handlers: Vec<String>,
    pub profile: Option<String>,
    pub snapshot_path: Option<String>,
    pub leave_on_terminate: Option<bool>,
    pub skip_leave_on_interrupt: Option<bool>,
    pub reconnect_interval: Option<Duration>,
    pub reconnect_timeout: Option<Duration>,
    pub tombstone_timeout: Option<Duration>,
    pub disable_name_resolution: Option<bool>,
    pub retry_join: Vec<String>,
    pub retry_max_attempts: Option<u64>,
    pub retry_interval: Option<Duration>,
    pub rejoin_after_leave: Option<bool>,
    pub enable_compression: Option<bool>,
    pub broadcast_timeout: Option<Duration>,
}

impl AgentConfig {
    /// Applies `p` over `self`.
    pub fn merge(&mut self, p: &Partial) {
        macro_rules! take {
            ($($f:ident),*) => { $( if let Some(v) = &p.$f { self.$f = v.clone(); } )* };
        }
        take!(
            node_name,
            role,
            disable_coordinates,
            tags_file,
            bind,
            advertise,
            encrypt_key,
            keyring_file,
            log_level,
            rpc_addr,
            rpc_auth,
            protocol,
            replay_on_join,
            query_response_size_limit,
            query_size_limit,
            user_event_size_limit,
            profile,
            snapshot_path,
            leave_on_terminate,
            skip_leave_on_interrupt,
            disable_name_resolution,
            retry_max_attempts,
            retry_interval,
            rejoin_after_leave,
            enable_compression,
            broadcast_timeout
        );
        if p.reconnect_interval.is_some() {
            self.reconnect_interval = p.reconnect_interval;
        }
        if p.reconnect_timeout.is_some() {
            self.reconnect_timeout = p.reconnect_timeout;
        }
        if p.tombstone_timeout.is_some() {
            self.tombstone_timeout = p.tombstone_timeout;
        }
        for (k, v) in &p.tags {
            self.tags.insert(k.clone(), v.clone());
        }
        self.start_join.extend(p.start_join.iter().cloned());
        self.event_handlers.extend(p.event_handlers.iter().cloned());
        self.retry_join.extend(p.retry_join.iter().cloned());
    }

    /// Checks and normalises the merged configuration; returns warnings.
    pub fn finish(&mut self) -> Result<Vec<String>, ConfigError> {
        let mut warnings = Vec::new();
        for s in self
            .event_handlers
            .iter()
            .flat_map(|h| crate::handlers::parse_event_script(h))
        {
            if !s.filter.is_valid() {
                return Err(ConfigError::Invalid(format!("Invalid event script: {s}")));
            }
        }
        if !self.role.is_empty() {
            warnings.push("Deprecation warning: 'Role' has been replaced with 'Tags'".to_string());
            self.tags.insert("role".into(), self.role.clone());
        }
        if self.retry_interval < MIN_RETRY_INTERVAL {
            self.retry_interval = MIN_RETRY_INTERVAL;
            warnings.push(format!(
                "Warning: 'RetryInterval' is too low. Setting to {:?}",
                self.retry_interval
            ));
        }
        if self.broadcast_timeout < MIN_BROADCAST_TIMEOUT {
            self.broadcast_timeout = MIN_BROADCAST_TIMEOUT;
            warnings.push(format!(
                "Warning: 'BroadcastTimeout' is too low. Setting to {:?}",
                self.broadcast_timeout
            ));
        }
        if self.rejoin_after_leave && self.snapshot_path.is_empty() {
            warnings.push("Warning: 'RejoinAfterLeave' enabled without snapshot file".to_string());
        }
        if !matches!(self.profile.as_str(), "lan" | "wan" | "local") {
            return Err(ConfigError::Invalid(format!(
                "Unknown profile: {}",
                self.profile
            )));
        }
        let p = self.protocol;
        let (min, max) = (serf::config::PROTOCOL_MIN, serf::config::PROTOCOL_MAX);
        if p < i64::from(min) || p > i64::from(max) {
            return Err(ConfigError::Invalid(format!(
                "Protocol version '{p}' too {}. Must be in range: [{min}, {max}]",
                if p < i64::from(min) { "low" } else { "high" }
            )));
        }
        Ok(warnings)
    }

    /// The gossip encryption key, decoded.
    pub fn encrypt_bytes(&self) -> Result<Option<Vec<u8>>, ConfigError> {
        if self.encrypt_key.is_empty() {
            return Ok(None);
        }
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD
            .decode(self.encrypt_key.trim())
            .map(Some)
            .map_err(|e| ConfigError::Invalid(format!("Invalid encryption key: {e}")))
    }
}

/// The keyring for raw `keys`, the first one primary; `None` for no keys.
pub fn keyring(keys: &[Vec<u8>]) -> Result<Option<gossip::keyring::Keyring>, ConfigError> {
    let Some((first, rest)) = keys.split_first() else {
        return Ok(None);
    };
    let bad = |e: gossip::CodecError| ConfigError::Invalid(format!("Invalid encryption key: {e}"));
    let primary = gossip::keyring::Key::new(first).map_err(bad)?;
    let others = rest
        .iter()
        .map(|k| gossip::keyring::Key::new(k).map_err(bad))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Some(gossip::keyring::Keyring::new(primary, others)))
}

/// Reads `-config-file`/`-config-dir` paths in order: files directly,
/// directories by their `*.json` files in name order.
pub fn read_config_paths(paths: &[PathBuf]) -> Result<Vec<Partial>, ConfigError> {
    let mut out = Vec::new();
    for path in paths {
        let read_err = |e: std::io::Error| ConfigError::Read {
            path: path.display().to_string(),
            reason: e.to_string(),
        };
        let meta = std::fs::metadata(path).map_err(read_err)?;
        if !meta.is_dir() {
            out.push(read_file(path)?);
            continue;
        }
        let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(read_err)?
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "json"))
            .collect();
        entries.sort();
        for p in entries {
            out.push(read_file(&p)?);
        }
    }
    Ok(out)
}

fn read_file(path: &Path) -> Result<Partial, ConfigError> {
    let p = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
        path: p.clone(),
        reason: e.to_string(),
    })?;
    decode(&p, &text)
}

/// Decodes one JSON config document.
pub fn decode(path: &str, text: &str) -> Result<Partial, ConfigError> {
    let v: Value = serde_json::from_str(text).map_err(|e| ConfigError::Decode {
        path: path.into(),
        reason: e.to_string(),
    })?;
    let Value::Object(map) = v else {
        return Err(ConfigError::Decode {
            path: path.into(),
            reason: "the top level must be an object".into(),
        });
    };
    let mut p = Partial::default();
    let ty = |key: &str, expected: &'static str| ConfigError::Type {
        path: path.into(),
        key: key.into(),
        expected,
    };
    let string = |key: &str, v: &Value| {
        v.as_str()
            .map(str::to_string)
            .ok_or_else(|| ty(key, "a string"))
    };
    let boolean = |key: &str, v: &Value| v.as_bool().ok_or_else(|| ty(key, "true or false"));
    let int = |key: &str, v: &Value| v.as_i64().ok_or_else(|| ty(key, "an integer"));
    let uint = |key: &str, v: &Value| {
        v.as_u64()
            .and_then(|n| usize::try_from(n).ok())
            .ok_or_else(|| ty(key, "a non-negative integer"))
    };
    let strings = |key: &str, v: &Value| -> Result<Vec<String>, ConfigError> {
        v.as_array()
            .ok_or_else(|| ty(key, "a list of strings"))?
            .iter()
            .map(|x| {
                x.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| ty(key, "a list of strings"))
            })
            .collect()
    };
    let duration = |key: &str, v: &Value| -> Result<Duration, ConfigError> {
        let s = v
            .as_str()
            .ok_or_else(|| ty(key, "a duration such as \"30s\""))?;
        let ns =
            go_duration::parse_go_duration(s).map_err(|_| ty(key, "a duration such as \"30s\""))?;
        u64::try_from(ns)
            .map(Duration::from_nanos)
            .map_err(|_| ty(key, "a non-negative duration"))
    };
    for (key, v) in &map {
        let k = key.as_str();
        match k {
            "node_name" => p.node_name = Some(string(k, v)?),
            "role" => p.role = Some(string(k, v)?),
            "disable_coordinates" => p.disable_coordinates = Some(boolean(k, v)?),
            "tags" => {
                let obj = v.as_object().ok_or_else(|| ty(k, "an object of strings"))?;
                for (tk, tv) in obj {
                    let tv = tv.as_str().ok_or_else(|| ty(k, "an object of strings"))?;
                    p.tags.insert(tk.clone(), tv.to_string());
                }
            }
            "tags_file" => p.tags_file = Some(string(k, v)?),
            "bind" => p.bind = Some(string(k, v)?),
            "advertise" => p.advertise = Some(string(k, v)?),
            "encrypt_key" => p.encrypt_key = Some(string(k, v)?),
            "keyring_file" => p.keyring_file = Some(string(k, v)?),
            "log_level" => p.log_level = Some(string(k, v)?),
            "rpc_addr" => p.rpc_addr = Some(string(k, v)?),
            "rpc_auth" => p.rpc_auth = Some(string(k, v)?),
            "protocol" => p.protocol = Some(int(k, v)?),
            "replay_on_join" => p.replay_on_join = Some(boolean(k, v)?),
            "query_response_size_limit" => p.query_response_size_limit = Some(uint(k, v)?),
            "query_size_limit" => p.query_size_limit = Some(uint(k, v)?),
            "user_event_size_limit" => p.user_event_size_limit = Some(uint(k, v)?),
            "start_join" => p.start_join = strings(k, v)?,
            "event_handlers" => p.event_handlers = strings(k, v)?,
            "profile" => p.profile = Some(string(k, v)?),
            "snapshot_path" => p.snapshot_path = Some(string(k, v)?),
            "leave_on_terminate" => p.leave_on_terminate = Some(boolean(k, v)?),
            "skip_leave_on_interrupt" => p.skip_leave_on_interrupt = Some(boolean(k, v)?),
            "reconnect_interval" => p.reconnect_interval = Some(duration(k, v)?),
            "reconnect_timeout" => p.reconnect_timeout = Some(duration(k, v)?),
            "tombstone_timeout" => p.tombstone_timeout = Some(duration(k, v)?),
            "disable_name_resolution" => p.disable_name_resolution = Some(boolean(k, v)?),
            "retry_join" => p.retry_join = strings(k, v)?,
            "retry_max_attempts" => p.retry_max_attempts = Some(uint(k, v)? as u64),
            "retry_interval" => p.retry_interval = Some(duration(k, v)?),
            "rejoin_after_leave" => p.rejoin_after_leave = Some(boolean(k, v)?),
            "enable_compression" => p.enable_compression = Some(boolean(k, v)?),
            "broadcast_timeout" => p.broadcast_timeout = Some(duration(k, v)?),
            // Accepted and ignored: features praetor does not provide
            // (mDNS discovery, interface binding, syslog, metrics sinks).
            "discover" | "interface" | "enable_syslog" | "syslog_facility" | "statsite_addr"
            | "statsd_addr" => {
                tracing::warn!(
                    key = k,
                    file = path,
                    "serf agent: config key is accepted but has no effect"
                );
            }
            _ => {
                return Err(ConfigError::UnknownKey {
                    path: path.into(),
                    key: key.clone(),
                })
            }
        }
    }
    Ok(p)
}

/// Parses `-tag key=value` flags.
pub fn parse_tag(v: &str) -> Result<(String, String), ConfigError> {
    match v.split_once('=') {
        Some((k, val)) if !k.is_empty() => Ok((k.to_string(), val.to_string())),
        _ => Err(ConfigError::Invalid(format!("Error: Invalid tag: '{v}'"))),
    }
}

/// Reads a tags file (a JSON object of strings); a missing file is empty.
pub fn load_tags_file(path: &Path) -> Result<BTreeMap<String, String>, ConfigError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => {
            return Err(ConfigError::Read {
                path: path.display().to_string(),
                reason: e.to_string(),
            })
        }
    };
    serde_json::from_str(&text).map_err(|e| ConfigError::Decode {
        path: path.display().to_string(),
        reason: format!("Failed to decode tags file: {e}"),
    })
}

/// Writes the tags file (0600, via a temporary file and rename).
pub fn write_tags_file(path: &Path, tags: &BTreeMap<String, String>) -> std::io::Result<()> {
    let body = serde_json::to_vec(tags).map_err(std::io::Error::other)?;
    write_private(path, &body)
}

/// Writes a keyring file: a JSON list of base64 keys, primary first.
pub fn write_keyring_file(path: &Path, keys: &[String]) -> std::io::Result<()> {
    let body = serde_json::to_vec_pretty(keys).map_err(std::io::Error::other)?;
    write_private(path, &body)
}

/// Reads a keyring file.
pub fn load_keyring_file(path: &Path) -> Result<Vec<Vec<u8>>, ConfigError> {
    let p = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
        path: p.clone(),
        reason: e.to_string(),
    })?;
    let keys: Vec<String> = serde_json::from_str(&text).map_err(|e| ConfigError::Decode {
        path: p.clone(),
        reason: e.to_string(),
    })?;
    if keys.is_empty() {
        return Err(ConfigError::Invalid(format!(
            "Keyring file '{p}' contains no keys"
        )));
    }
    use base64::Engine as _;
    keys.iter()
        .map(|k| {
            base64::engine::general_purpose::STANDARD
                .decode(k)
                .map_err(|e| {
                    ConfigError::Invalid(format!("Invalid key in keyring file '{p}': {e}"))
                })
        })
        .collect()
}

fn write_private(path: &Path, body: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(body)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_then_flags_merge_like_serf() {
        let a = decode("a.json", r#"{"node_name":"x","tags":{"role":"web"},"start_join":["1.2.3.4"],"reconnect_timeout":"1h"}"#).unwrap();
        let b = decode(
            "b.json",
            r#"{"tags":{"dc":"east"},"start_join":["5.6.7.8"],"protocol":4}"#,
        )
        .unwrap();
        let mut c = AgentConfig::default();
        c.merge(&a);
        c.merge(&b);
        assert_eq!(c.node_name, "x");
        assert_eq!(c.tags.len(), 2);
        assert_eq!(c.start_join, vec!["1.2.3.4", "5.6.7.8"]);
        assert_eq!(c.reconnect_timeout, Some(Duration::from_secs(3600)));
        assert_eq!(c.protocol, 4);
        assert!(c.finish().unwrap().is_empty());
    }

    #[test]
    fn bad_files_name_the_key() {
        let e = decode("c.json", r#"{"protocol":"five"}"#).unwrap_err();
        assert_eq!(
            e.to_string(),
            "Error decoding 'c.json': key 'protocol': expected an integer"
        );
        let e = decode("c.json", r#"{"bogus":1}"#).unwrap_err();
        assert_eq!(
            e.to_string(),
            "Error decoding 'c.json': unknown key 'bogus'"
        );
        let e = decode("c.json", r#"{"retry_interval":"soon"}"#).unwrap_err();
        assert!(e.to_string().contains("retry_interval"));
        let mut c = AgentConfig {
            protocol: 9,
            ..Default::default()
        };
        assert!(c.finish().unwrap_err().to_string().contains("too high"));
        let mut c = AgentConfig {
            event_handlers: vec!["member-bogus=x.sh".into()],
            ..Default::default()
        };
        assert!(c.finish().is_err());
        assert!(parse_tag("novalue").is_err());
    }
}
