//! `praetor serf agent`: Serf's agent flags (Go flag syntax), config files,
//! logging (with `serf monitor` fan-out), then the agent itself.

use std::path::PathBuf;
use std::time::Duration;

use serf_agent::config::{self, AgentConfig, Partial};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Flags that take a value; the rest are booleans.
const VALUE_FLAGS: &[&str] = &[
    "bind",
    "advertise",
    "config-file",
    "config-dir",
    "encrypt",
    "keyring-file",
    "event-handler",
    "join",
    "log-level",
    "node",
    "protocol",
    "role",
    "rpc-addr",
    "rpc-auth",
    "profile",
    "snapshot",
    "tag",
    "discover",
    "iface",
    "tags-file",
    "retry-join",
    "retry-max",
    "retry-interval",
    "broadcast-timeout",
];
const BOOL_FLAGS: &[&str] = &["replay", "syslog", "rejoin", "disable-compression"];

struct Parsed {
    partial: Partial,
    config_paths: Vec<PathBuf>,
    disable_compression: bool,
}

fn go_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

fn duration(flag: &str, v: &str) -> Result<Duration, String> {
    let ns = agent::go_duration::parse_go_duration(v)
        .map_err(|e| format!("invalid value {v:?} for flag -{flag}: {e}"))?;
    u64::try_from(ns)
        .map(Duration::from_nanos)
        .map_err(|_| format!("invalid value {v:?} for flag -{flag}: negative duration"))
}

/// Parses Go-style flags: `-name value`, `-name=value`, `--name`, booleans.
fn parse(args: &[String]) -> Result<Parsed, String> {
    let mut p = Partial::default();
    let mut paths = Vec::new();
    let mut disable_compression = false;
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        i += 1;
        let Some(stripped) = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-')) else {
            return Err(format!("unexpected argument: {arg}"));
        };
        if stripped.is_empty() {
            break;
        }
        let (name, inline) = match stripped.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (stripped, None),
        };
        if BOOL_FLAGS.contains(&name) {
            let v = match inline {
                Some(v) => {
                    go_bool(&v).ok_or_else(|| format!("invalid boolean value {v:?} for -{name}"))?
                }
                None => true,
            };
            match name {
                "replay" => p.replay_on_join = Some(v),
                "rejoin" => p.rejoin_after_leave = Some(v),
                "disable-compression" => disable_compression = v,
                _ => {}
            }
            continue;
        }
        if !VALUE_FLAGS.contains(&name) {
            return Err(format!("flag provided but not defined: -{name}"));
        }
        let v = match inline {
            Some(v) => v,
            None => {
                let v = args
                    .get(i)
                    .cloned()
                    .ok_or_else(|| format!("flag needs an argument: -{name}"))?;
                i += 1;
                v
            }
        };
        match name {
            "bind" => p.bind = Some(v),
            "advertise" => p.advertise = Some(v),
            "config-file" | "config-dir" => paths.push(PathBuf::from(v)),
            "encrypt" => p.encrypt_key = Some(v),
            "keyring-file" => p.keyring_file = Some(v),
            "event-handler" => p.event_handlers.push(v),
            "join" => p.start_join.push(v),
            "log-level" => p.log_level = Some(v),
            "node" => p.node_name = Some(v),
            "protocol" => {
                p.protocol =
                    Some(v.parse().map_err(|_| {
                        format!("invalid value {v:?} for flag -protocol: parse error")
                    })?)
            }
            "role" => p.role = Some(v),
            "rpc-addr" => p.rpc_addr = Some(v),
            "rpc-auth" => p.rpc_auth = Some(v),
            "profile" => p.profile = Some(v),
            "snapshot" => p.snapshot_path = Some(v),
            "tag" => {
                let (k, val) = config::parse_tag(&v).map_err(|e| e.to_string())?;
                p.tags.insert(k, val);
            }
            "tags-file" => p.tags_file = Some(v),
            "retry-join" => p.retry_join.push(v),
            "retry-max" => {
                p.retry_max_attempts =
                    Some(v.parse().map_err(|_| {
                        format!("invalid value {v:?} for flag -retry-max: parse error")
                    })?)
            }
            "retry-interval" => {
                p.retry_interval = Some(duration(name, &v).map_err(|e| format!("Error: {e}"))?)
            }
            "broadcast-timeout" => {
                p.broadcast_timeout = Some(duration(name, &v).map_err(|e| format!("Error: {e}"))?)
            }
            // mDNS discovery, interface binding and syslog are not provided.
            "discover" | "iface" => {
                eprintln!("==> Warning: -{name} is accepted but has no effect in praetor")
            }
            _ => {}
        }
    }
    Ok(Parsed {
        partial: p,
        config_paths: paths,
        disable_compression,
    })
}

/// Runs `praetor serf agent ARGS`; returns the exit code.
pub fn run(args: Vec<String>) -> u8 {
    let parsed = match parse(&args) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("{e}");
            return 1;
        }
    };
    let mut cfg = AgentConfig::default();
    match config::read_config_paths(&parsed.config_paths) {
        Ok(files) => files.iter().for_each(|f| cfg.merge(f)),
        Err(e) => {
            eprintln!("==> {e}");
            return 1;
        }
    }
    cfg.merge(&parsed.partial);
    cfg.enable_compression = !parsed.disable_compression;
    if cfg.node_name.is_empty() {
        cfg.node_name = hostname();
    }
    match cfg.finish() {
        Ok(warnings) => warnings.iter().for_each(|w| println!("==> {w}")),
        Err(e) => {
            eprintln!("==> {e}");
            return 1;
        }
    }
    let level = match cfg.log_level.to_ascii_lowercase().as_str() {
        "trace" => "trace",
        "debug" => "debug",
        "warn" => "warn",
        "err" | "error" => "error",
        _ => "info",
    };
    let (logs, _) = tokio::sync::broadcast::channel(1024);
    let filter = tracing_subscriber::EnvFilter::new(level);
    let fmt = tracing_subscriber::fmt::layer()
        .with_target(false)
        .with_ansi(false)
        .with_writer(std::io::stdout);
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .with(serf_agent::logs::MonitorLayer::new(logs.clone()))
        .try_init();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("==> Failed to start the runtime: {e}");
            return 1;
        }
    };
    let mut out = std::io::stdout();
    match rt.block_on(serf_agent::run(cfg, logs, &mut out)) {
        Ok(code) => u8::try_from(code).unwrap_or(1),
        Err(e) => {
            eprintln!("==> {e}");
            1
        }
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn go_flags() {
        let p = parse(&args("-node a -bind=127.0.0.1:7946 -tag role=web -tag dc=x -join 1.2.3.4 --rejoin -replay=false")).unwrap();
        assert_eq!(p.partial.node_name.as_deref(), Some("a"));
        assert_eq!(p.partial.tags.len(), 2);
        assert_eq!(p.partial.start_join, vec!["1.2.3.4"]);
        assert_eq!(p.partial.rejoin_after_leave, Some(true));
        assert_eq!(p.partial.replay_on_join, Some(false));
        assert_eq!(
            parse(&args("-bogus 1")).err().unwrap(),
            "flag provided but not defined: -bogus"
        );
        assert!(parse(&args("-node")).is_err());
        assert!(parse(&args("-retry-interval soon")).is_err());
    }
}
