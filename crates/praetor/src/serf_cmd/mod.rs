//! `praetor serf <command>`: the `serf` CLI's client commands, talking to a
//! Serf agent (Go's or praetor's) over its RPC port.
//!
//! They behave as serf's do: the same flags (Go syntax, `-rpc-addr`
//! defaulting to `$SERF_RPC_ADDR` or 127.0.0.1:7373, `-rpc-auth` to
//! `$SERF_RPC_AUTH`), the same output and the same exit codes. Like serf,
//! they write their error messages to standard output too (serf's UI has
//! no separate error writer); only flag-parsing errors go to stderr.

mod event;
mod info;
mod join;
mod keys;
mod members;
mod monitor;
pub(crate) mod output;
mod query;
mod rtt;
mod tags;

use std::future::Future;

use clap::{Args, Subcommand};
use serf_rpc::{Client, ClientConfig};

/// The serf client commands.
#[derive(Subcommand)]
pub enum SerfCommand {
    /// Runs a Serf agent.
    Agent(SerfAgentArgs),
    /// Lists the members of a Serf cluster.
    Members(MembersArgs),
    /// Tells the agent to join a cluster through the given addresses.
    Join(JoinArgs),
    /// Makes the agent leave the cluster gracefully and shut down.
    Leave(LeaveArgs),
    /// Forces a failed member into the "left" state.
    #[command(name = "force-leave")]
    ForceLeave(ForceLeaveArgs),
    /// Fires a user event through the cluster.
    Event(EventArgs),
    /// Sends a query to the cluster and prints acks and responses.
    Query(QueryArgs),
    /// Sets or deletes tags of the agent's node.
    Tags(TagsArgs),
    /// Manages the cluster's gossip encryption key ring.
    Keys(KeysArgs),
    /// Prints a new encryption key.
    Keygen(KeygenArgs),
    /// Estimates the round trip time between two nodes.
    Rtt(RttArgs),
    /// Streams the agent's log lines and events.
    Monitor(MonitorArgs),
    /// Prints the agent's debugging information.
    Info(InfoArgs),
    /// Checks that every live member answers a ping query.
    Reachability(ReachabilityArgs),
}

/// The agent's RPC address and token, as every client command takes them.
#[derive(Args, Clone, Debug, Default)]
pub struct RpcFlags {
    /// The agent's RPC address (default: $SERF_RPC_ADDR, else
    /// 127.0.0.1:7373).
    #[arg(long = "rpc-addr")]
    pub rpc_addr: Option<String>,
    /// The agent's RPC token (default: $SERF_RPC_AUTH).
    #[arg(long = "rpc-auth")]
    pub rpc_auth: Option<String>,
}

impl RpcFlags {
    fn config(&self) -> ClientConfig {
        let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let addr = self
            .rpc_addr
            .clone()
            .or_else(|| env("SERF_RPC_ADDR"))
            .unwrap_or_else(|| "127.0.0.1:7373".to_owned());
        let mut config = ClientConfig::new(addr);
        config.auth_key = self.rpc_auth.clone().or_else(|| env("SERF_RPC_AUTH"));
        config
    }
}

/// `praetor serf agent`: everything after `agent`, unparsed.
#[derive(Args)]
pub struct SerfAgentArgs {
    #[arg(allow_hyphen_values = true, trailing_var_arg = true)]
    pub args: Vec<String>,
}

#[derive(Args)]
pub struct MembersArgs {
    #[command(flatten)]
    pub rpc: RpcFlags,
    /// Also show protocol versions (text output only).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false")]
    pub detailed: bool,
    /// `text` or `json`.
    #[arg(long, default_value = "text")]
    pub format: String,
    /// Only members whose name matches this anchored regular expression.
    #[arg(long, default_value = "")]
    pub name: String,
    /// Deprecated: the same as `-tag role=<regexp>`.
    #[arg(long, default_value = "")]
    pub role: String,
    /// Only members whose status matches this anchored regular expression.
    #[arg(long, default_value = "")]
    pub status: String,
    /// `key=regexp`: only members whose tag matches (repeatable).
    #[arg(long)]
    pub tag: Vec<String>,
    #[arg(allow_hyphen_values = true)]
    pub args: Vec<String>,
}

#[derive(Args)]
pub struct JoinArgs {
    #[command(flatten)]
    pub rpc: RpcFlags,
    /// Replay past user events.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false")]
    pub replay: bool,
    /// Addresses of existing members.
    #[arg(allow_hyphen_values = true)]
    pub args: Vec<String>,
}

#[derive(Args)]
pub struct LeaveArgs {
    #[command(flatten)]
    pub rpc: RpcFlags,
    #[arg(allow_hyphen_values = true)]
    pub args: Vec<String>,
}

#[derive(Args)]
pub struct ForceLeaveArgs {
    #[command(flatten)]
    pub rpc: RpcFlags,
    /// Remove the member from the member list at once.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false")]
    pub prune: bool,
    /// The member's name.
    #[arg(allow_hyphen_values = true)]
    pub args: Vec<String>,
}

#[derive(Args)]
pub struct EventArgs {
    #[command(flatten)]
    pub rpc: RpcFlags,
    /// Whether repeated events of this name may be coalesced.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "true")]
    pub coalesce: bool,
    /// NAME [PAYLOAD]
    #[arg(allow_hyphen_values = true)]
    pub args: Vec<String>,
}

#[derive(Args)]
pub struct QueryArgs {
    #[command(flatten)]
    pub rpc: RpcFlags,
    /// Only this node answers (repeatable).
    #[arg(long)]
    pub node: Vec<String>,
    /// `key=regexp`: only nodes whose tag matches answer (repeatable).
    #[arg(long)]
    pub tag: Vec<String>,
    /// How long to wait for answers, as a Go duration (default: the
    /// agent's, which grows with the cluster).
    #[arg(long, default_value = "0s", allow_hyphen_values = true)]
    pub timeout: String,
    /// Do not ask nodes to acknowledge the query.
    #[arg(long = "no-ack", num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false")]
    pub no_ack: bool,
    /// `text` or `json`.
    #[arg(long, default_value = "text")]
    pub format: String,
    /// Relay each response through this many extra nodes (0-255).
    #[arg(long = "relay-factor", default_value = "0", allow_hyphen_values = true)]
    pub relay_factor: String,
    /// NAME [PAYLOAD]
    #[arg(allow_hyphen_values = true)]
    pub args: Vec<String>,
}

#[derive(Args)]
pub struct TagsArgs {
    #[command(flatten)]
    pub rpc: RpcFlags,
    /// `key=value` to set (repeatable).
    #[arg(long)]
    pub set: Vec<String>,
    /// A tag to delete (repeatable).
    #[arg(long)]
    pub delete: Vec<String>,
    #[arg(allow_hyphen_values = true)]
    pub args: Vec<String>,
}

#[derive(Args)]
pub struct KeysArgs {
    #[command(flatten)]
    pub rpc: RpcFlags,
    /// Install a key on every member (decryption only until it is used).
    #[arg(long, default_value = "")]
    pub install: String,
    /// Make an installed key the primary (encrypting) key everywhere.
    #[arg(long = "use", default_value = "")]
    pub use_key: String,
    /// Remove a key that is not the primary key from every member.
    #[arg(long, default_value = "")]
    pub remove: String,
    /// List the keys installed in the cluster and on how many members.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false")]
    pub list: bool,
    #[arg(allow_hyphen_values = true)]
    pub args: Vec<String>,
}

#[derive(Args)]
pub struct KeygenArgs {
    #[arg(allow_hyphen_values = true)]
    pub args: Vec<String>,
}

#[derive(Args)]
pub struct RttArgs {
    #[command(flatten)]
    pub rpc: RpcFlags,
    /// NODE1 [NODE2] (NODE2 defaults to the agent's node).
    #[arg(allow_hyphen_values = true)]
    pub args: Vec<String>,
}

#[derive(Args)]
pub struct MonitorArgs {
    #[command(flatten)]
    pub rpc: RpcFlags,
    /// The lowest level shown: TRACE, DEBUG, INFO, WARN or ERR.
    #[arg(long = "log-level", default_value = "INFO")]
    pub log_level: String,
    #[arg(allow_hyphen_values = true)]
    pub args: Vec<String>,
}

#[derive(Args)]
pub struct InfoArgs {
    #[command(flatten)]
    pub rpc: RpcFlags,
    /// `text` or `json`.
    #[arg(long, default_value = "text")]
    pub format: String,
    #[arg(allow_hyphen_values = true)]
    pub args: Vec<String>,
}

#[derive(Args)]
pub struct ReachabilityArgs {
    #[command(flatten)]
    pub rpc: RpcFlags,
    /// Print every ack and the timings.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false")]
    pub verbose: bool,
    #[arg(allow_hyphen_values = true)]
    pub args: Vec<String>,
}

pub fn run(command: SerfCommand) -> u8 {
    match command {
        SerfCommand::Agent(a) => crate::serf_agent_cmd::run(a.args),
        SerfCommand::Members(a) => block_on(members::run(a)),
        SerfCommand::Join(a) => block_on(join::join(a)),
        SerfCommand::Leave(a) => block_on(join::leave(a)),
        SerfCommand::ForceLeave(a) => block_on(join::force_leave(a)),
        SerfCommand::Event(a) => block_on(event::run(a)),
        SerfCommand::Query(a) => block_on(query::query(a)),
        SerfCommand::Reachability(a) => block_on(query::reachability(a)),
        SerfCommand::Tags(a) => block_on(tags::run(a)),
        SerfCommand::Keys(a) => block_on(keys::run(a)),
        SerfCommand::Keygen(a) => keys::keygen(a),
        SerfCommand::Rtt(a) => block_on(rtt::run(a)),
        SerfCommand::Monitor(a) => block_on(monitor::run(a)),
        SerfCommand::Info(a) => block_on(info::run(a)),
    }
}

/// Runs a command on a fresh single-threaded runtime.
fn block_on(work: impl Future<Output = u8>) -> u8 {
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(work),
        Err(e) => {
            println!("Error starting: {e}");
            1
        }
    }
}

/// Prints a line as serf's UI does (errors too go to standard output).
fn say(text: impl AsRef<str>) {
    println!("{}", text.as_ref());
}

/// Connects to the agent, or prints serf's message and gives the exit
/// code.
async fn connect(rpc: &RpcFlags) -> Result<Client, u8> {
    Client::connect(rpc.config()).await.map_err(|e| {
        say(format!("Error connecting to Serf agent: {e}"));
        1
    })
}

/// Prints a usage problem, a blank line and the command's help; exit 1.
fn usage_error(problem: &str, help: &str) -> u8 {
    say(problem);
    say("");
    say(help);
    1
}

/// Parses `key=value` flags as serf does: the key must not be empty, the
/// value may; a later pair wins.
fn parse_tags(pairs: &[String]) -> Result<std::collections::BTreeMap<String, String>, String> {
    pairs
        .iter()
        .map(|pair| match pair.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
            _ => Err(format!("Invalid tag: '{pair}'")),
        })
        .collect()
}

/// A flag value Go's flag package would refuse (printed to stderr, as Go
/// does, with exit 1).
fn invalid_flag_value(flag: &str, value: &str) -> u8 {
    eprintln!("invalid value \"{value}\" for flag -{flag}: parse error");
    1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_need_a_key() {
        let ok = parse_tags(&["a=b".into(), "c=".into(), "d=e=f".into()]);
        assert_eq!(
            ok.map(|m| m.into_iter().collect::<Vec<_>>()),
            Ok(vec![
                ("a".to_owned(), "b".to_owned()),
                ("c".to_owned(), String::new()),
                ("d".to_owned(), "e=f".to_owned())
            ])
        );
        assert_eq!(
            parse_tags(&["=x".into()]),
            Err("Invalid tag: '=x'".to_owned())
        );
        assert_eq!(
            parse_tags(&["x".into()]),
            Err("Invalid tag: 'x'".to_owned())
        );
    }
}
