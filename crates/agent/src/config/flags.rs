//! The `agent` command's flags, under Consul's names.

use std::path::PathBuf;

use serde_json::{Map, Value};

/// Consul's `agent` command-line flags. The binary turns Go-style `-flag`
/// into `--flag` before clap sees them. Bool flags take an optional
/// `=true`/`=false`.
///
/// A bool flag left off and one given as `=false` look the same here, so a
/// false flag does not override a `true` from a file.
#[derive(clap::Args, Debug, Clone, Default, PartialEq, Eq)]
pub struct AgentFlags {
    /// Start in development mode: an in-memory server that bootstraps itself.
    #[arg(long, num_args(0..=1), require_equals = true, default_missing_value = "true", action = clap::ArgAction::Set, default_value = "false")]
    pub dev: bool,
    /// Name of this node; must be unique in the cluster.
    #[arg(long)]
    pub node: Option<String>,
    /// A unique ID (UUID) for this node across all time.
    #[arg(long = "node-id")]
    pub node_id: Option<String>,
    /// Datacenter of the agent.
    #[arg(long)]
    pub datacenter: Option<String>,
    /// Address(es) to bind client interfaces (HTTP, DNS) to, space-separated.
    #[arg(long)]
    pub client: Option<String>,
    /// Address to bind server listeners to.
    #[arg(long)]
    pub bind: Option<String>,
    /// Address to advertise instead of the bind address.
    #[arg(long)]
    pub advertise: Option<String>,
    /// HTTP API port; -1 disables it.
    #[arg(long = "http-port", allow_negative_numbers = true)]
    pub http_port: Option<i64>,
    /// DNS port; -1 disables it.
    #[arg(long = "dns-port", allow_negative_numbers = true)]
    pub dns_port: Option<i64>,
    /// gRPC port; -1 disables it.
    #[arg(long = "grpc-port", allow_negative_numbers = true)]
    pub grpc_port: Option<i64>,
    /// Server RPC port.
    #[arg(long = "server-port")]
    pub server_port: Option<i64>,
    /// LAN gossip port.
    #[arg(long = "serf-lan-port")]
    pub serf_lan_port: Option<i64>,
    /// WAN gossip port.
    #[arg(long = "serf-wan-port")]
    pub serf_wan_port: Option<i64>,
    /// A configuration file (.json or .hcl), or a directory of them; repeatable.
    #[arg(long = "config-file")]
    pub config_file: Vec<PathBuf>,
    /// A directory of .json and .hcl configuration files; repeatable.
    #[arg(long = "config-dir")]
    pub config_dir: Vec<PathBuf>,
    /// Directory for the agent's state.
    #[arg(long = "data-dir")]
    pub data_dir: Option<PathBuf>,
    /// Log level: trace, debug, info, warn or err.
    #[arg(long = "log-level")]
    pub log_level: Option<String>,
    /// Log in JSON.
    #[arg(long = "log-json", num_args(0..=1), require_equals = true, default_missing_value = "true", action = clap::ArgAction::Set, default_value = "false")]
    pub log_json: bool,
    /// Run as a server.
    #[arg(long, num_args(0..=1), require_equals = true, default_missing_value = "true", action = clap::ArgAction::Set, default_value = "false")]
    pub server: bool,
    /// Bootstrap the cluster with this server alone.
    #[arg(long, num_args(0..=1), require_equals = true, default_missing_value = "true", action = clap::ArgAction::Set, default_value = "false")]
    pub bootstrap: bool,
    /// An agent to join at start; repeatable.
    #[arg(long = "join")]
    pub join: Vec<String>,
    /// An agent to join, retried until it answers; repeatable.
    #[arg(long = "retry-join")]
    pub retry_join: Vec<String>,
    /// Time between rounds of -retry-join (a Go duration).
    #[arg(long = "retry-interval")]
    pub retry_interval: Option<String>,
    /// A server to join in the WAN pool at start; repeatable.
    #[arg(long = "join-wan")]
    pub join_wan: Vec<String>,
    /// A server to join in the WAN pool, retried until it answers; repeatable.
    #[arg(long = "retry-join-wan")]
    pub retry_join_wan: Vec<String>,
    /// Time between rounds of -retry-join-wan (a Go duration).
    #[arg(long = "retry-interval-wan")]
    pub retry_interval_wan: Option<String>,
    /// The gossip encryption key, base64.
    #[arg(long)]
    pub encrypt: Option<String>,
    /// Rejoin the pool from the gossip snapshot even after a leave.
    #[arg(long, num_args(0..=1), require_equals = true, default_missing_value = "true", action = clap::ArgAction::Set, default_value = "false")]
    pub rejoin: bool,
    /// Wait for this many servers before bootstrapping.
    #[arg(long = "bootstrap-expect")]
    pub bootstrap_expect: Option<u32>,
    /// Serve the web UI.
    #[arg(long, num_args(0..=1), require_equals = true, default_missing_value = "true", action = clap::ArgAction::Set, default_value = "false")]
    pub ui: bool,
    /// File to write the agent's PID to.
    #[arg(long = "pid-file")]
    pub pid_file: Option<PathBuf>,
    /// Allow checks that run scripts.
    #[arg(long = "enable-script-checks", num_args(0..=1), require_equals = true, default_missing_value = "true", action = clap::ArgAction::Set, default_value = "false")]
    pub enable_script_checks: bool,
}

impl AgentFlags {
    /// Each flag that was given, as the config key it sets: `(flag name,
    /// tree)`, so flag values are checked by the same schema as files.
    pub(crate) fn sources(&self) -> Vec<(&'static str, Map<String, Value>)> {
        let mut out = Vec::new();
        let mut add = |flag: &'static str, key: &str, value: Value| {
            let mut tree = Map::new();
            match key.split_once('.') {
                Some((outer, inner)) => {
                    let mut nested = Map::new();
                    nested.insert(inner.to_owned(), value);
                    tree.insert(outer.to_owned(), Value::Object(nested));
                }
                None => {
                    tree.insert(key.to_owned(), value);
                }
            }
            out.push((flag, tree));
        };
        let path = |p: &PathBuf| Value::from(p.to_string_lossy().into_owned());
        if let Some(v) = &self.node {
            add("node", "node_name", v.as_str().into());
        }
        if let Some(v) = &self.node_id {
            add("node-id", "node_id", v.as_str().into());
        }
        if let Some(v) = &self.datacenter {
            add("datacenter", "datacenter", v.as_str().into());
        }
        if let Some(v) = &self.client {
            add("client", "client_addr", v.as_str().into());
        }
        if let Some(v) = &self.bind {
            add("bind", "bind_addr", v.as_str().into());
        }
        if let Some(v) = &self.advertise {
            add("advertise", "advertise_addr", v.as_str().into());
        }
        for (flag, key, port) in [
            ("http-port", "ports.http", self.http_port),
            ("dns-port", "ports.dns", self.dns_port),
            ("grpc-port", "ports.grpc", self.grpc_port),
            ("server-port", "ports.server", self.server_port),
            ("serf-lan-port", "ports.serf_lan", self.serf_lan_port),
            ("serf-wan-port", "ports.serf_wan", self.serf_wan_port),
        ] {
            if let Some(port) = port {
                add(flag, key, port.into());
            }
        }
        if let Some(v) = &self.data_dir {
            add("data-dir", "data_dir", path(v));
        }
        if let Some(v) = &self.log_level {
            add("log-level", "log_level", v.as_str().into());
        }
        if let Some(v) = self.bootstrap_expect {
            add("bootstrap-expect", "bootstrap_expect", v.into());
        }
        if let Some(v) = &self.pid_file {
            add("pid-file", "pid_file", path(v));
        }
        if let Some(v) = &self.retry_interval {
            add("retry-interval", "retry_interval", v.as_str().into());
        }
        if let Some(v) = &self.retry_interval_wan {
            add(
                "retry-interval-wan",
                "retry_interval_wan",
                v.as_str().into(),
            );
        }
        if let Some(v) = &self.encrypt {
            add("encrypt", "encrypt", v.as_str().into());
        }
        for (flag, key, addrs) in [
            ("join", "start_join", &self.join),
            ("retry-join", "retry_join", &self.retry_join),
            ("join-wan", "start_join_wan", &self.join_wan),
            ("retry-join-wan", "retry_join_wan", &self.retry_join_wan),
        ] {
            if !addrs.is_empty() {
                add(
                    flag,
                    key,
                    addrs.iter().map(|a| Value::from(a.as_str())).collect(),
                );
            }
        }
        for (flag, key, on) in [
            ("log-json", "log_json", self.log_json),
            ("server", "server", self.server),
            ("bootstrap", "bootstrap", self.bootstrap),
            ("ui", "ui", self.ui),
            ("rejoin", "rejoin_after_leave", self.rejoin),
            (
                "enable-script-checks",
                "enable_script_checks",
                self.enable_script_checks,
            ),
        ] {
            if on {
                add(flag, key, true.into());
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        flags: AgentFlags,
    }

    fn parse(args: &[&str]) -> Result<AgentFlags, clap::Error> {
        Cli::try_parse_from(std::iter::once("agent").chain(args.iter().copied())).map(|c| c.flags)
    }

    #[test]
    fn consul_flag_names_parse() {
        let f = parse(&[
            "--dev",
            "--node=n1",
            "--http-port=-1",
            "--config-file",
            "a.json",
            "--config-file=b.hcl",
            "--config-dir",
            "d",
            "--data-dir",
            "/tmp/x",
            "--log-level",
            "debug",
            "--bootstrap-expect=3",
            "--ui=false",
            "--server=true",
            "--pid-file=/run/p",
        ])
        .unwrap();
        assert!(f.dev && f.server && !f.ui);
        assert_eq!(f.node.as_deref(), Some("n1"));
        assert_eq!(f.http_port, Some(-1));
        assert_eq!(f.config_file, [PathBuf::from("a.json"), "b.hcl".into()]);
        assert_eq!(f.config_dir, [PathBuf::from("d")]);
        assert_eq!(f.bootstrap_expect, Some(3));
    }

    #[test]
    fn bool_flag_does_not_swallow_the_next_argument() {
        let f = parse(&["--dev", "--node", "n"]).unwrap();
        assert!(f.dev);
        assert!(parse(&["--dev=maybe"]).is_err());
    }
}
