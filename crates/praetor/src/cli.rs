//! The command line, Consul style: Go's flag syntax (`-flag`, `-flag=v`,
//! `-flag v`, flags before arguments) on top of clap.

use agent::config::AgentFlags;
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "praetor",
    about = "Service discovery and configuration: a drop-in Consul agent",
    disable_version_flag = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Runs an agent.
    Agent(Box<AgentFlags>),
    /// Reads and writes the key/value store.
    #[command(subcommand)]
    Kv(KvCommand),
    /// Prints the version.
    Version(VersionArgs),
    /// Interacts with the catalog.
    #[command(subcommand)]
    Catalog(CatalogCommand),
    /// Registers or deregisters services with the local agent.
    #[command(subcommand)]
    Services(ServicesCommand),
    /// Controls node or service maintenance mode.
    Maint(MaintArgs),
    /// Fires a new event.
    Event(EventArgs),
    /// Lists the members of the cluster.
    Members(MembersArgs),
    /// Tells the agent to join the cluster through existing members.
    Join(JoinArgs),
    /// Gracefully leaves the cluster and shuts the agent down.
    Leave(LeaveArgs),
    /// Forces a member of the cluster to enter the "left" state.
    ForceLeave(ForceLeaveArgs),
    /// Executes a command holding a lock.
    Lock(LockArgs),
    /// Watches for changes in the catalog, KV store, health or events.
    Watch(WatchArgs),
    /// Operates the cluster's servers.
    #[command(subcommand)]
    Operator(OperatorCommand),
    /// Saves, restores and inspects snapshots of the servers' state.
    #[command(subcommand)]
    Snapshot(crate::snapshot_cmd::SnapshotCommand),
    /// Estimates the network round trip time between nodes.
    Rtt(RttArgs),
    /// Generates a new gossip encryption key.
    Keygen(crate::keyring_cmd::KeygenArgs),
    /// Manages gossip layer encryption keys.
    Keyring(crate::keyring_cmd::KeyringArgs),
    /// Serf's commands: talk to a Serf agent over its RPC port.
    #[command(subcommand)]
    Serf(crate::serf_cmd::SerfCommand),
}

/// Flags every command that talks to an agent's HTTP API takes.
#[derive(Args, Clone, Debug, Default)]
pub struct HttpFlags {
    /// The agent's HTTP address (default: $CONSUL_HTTP_ADDR or 127.0.0.1:8500).
    #[arg(long = "http-addr")]
    pub http_addr: Option<String>,
    /// An ACL token (accepted; ACLs arrive later).
    #[arg(long)]
    pub token: Option<String>,
    #[arg(long)]
    pub datacenter: Option<String>,
    /// Read from any server instead of the leader.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub stale: Option<bool>,
}

#[derive(Args)]
pub struct VersionArgs {
    /// `pretty` or `json`.
    #[arg(long, default_value = "pretty")]
    pub format: String,
}

#[derive(Subcommand)]
pub enum KvCommand {
    /// Reads a key, or the keys under a prefix.
    Get(KvGet),
    /// Writes a key.
    Put(KvPut),
    /// Deletes a key, or every key under a prefix.
    Delete(KvDelete),
    /// Prints the keys under a prefix as JSON.
    Export(KvExport),
    /// Writes keys from JSON made by `kv export`.
    Import(KvImport),
}

#[derive(Args)]
pub struct KvGet {
    #[command(flatten)]
    pub http: HttpFlags,
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false")]
    pub base64: bool,
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false")]
    pub detailed: bool,
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false")]
    pub keys: bool,
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false")]
    pub recurse: bool,
    #[arg(long, default_value = "/")]
    pub separator: String,
    #[arg(allow_hyphen_values = true)]
    pub args: Vec<String>,
}

#[derive(Args)]
pub struct KvPut {
    #[command(flatten)]
    pub http: HttpFlags,
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false")]
    pub cas: bool,
    #[arg(long, default_value_t = 0)]
    pub flags: u64,
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false")]
    pub base64: bool,
    #[arg(long = "modify-index", default_value_t = 0)]
    pub modify_index: u64,
    #[arg(long, default_value = "")]
    pub session: String,
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false")]
    pub acquire: bool,
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false")]
    pub release: bool,
    #[arg(allow_hyphen_values = true)]
    pub args: Vec<String>,
}

#[derive(Args)]
pub struct KvDelete {
    #[command(flatten)]
    pub http: HttpFlags,
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false")]
    pub cas: bool,
    #[arg(long = "modify-index", default_value_t = 0)]
    pub modify_index: u64,
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false")]
    pub recurse: bool,
    #[arg(allow_hyphen_values = true)]
    pub args: Vec<String>,
}

#[derive(Args)]
pub struct KvExport {
    #[command(flatten)]
    pub http: HttpFlags,
    #[arg(allow_hyphen_values = true)]
    pub args: Vec<String>,
}

#[derive(Args)]
pub struct KvImport {
    #[command(flatten)]
    pub http: HttpFlags,
    #[arg(long, default_value = "")]
    pub prefix: String,
    #[arg(allow_hyphen_values = true)]
    pub args: Vec<String>,
}

#[derive(Subcommand)]
pub enum CatalogCommand {
    /// Lists all known datacenters.
    Datacenters(CatalogDatacenters),
    /// Lists all nodes in the given datacenter.
    Nodes(CatalogNodes),
    /// Lists all registered services in a datacenter.
    Services(CatalogServices),
}

#[derive(Args)]
pub struct CatalogDatacenters {
    #[command(flatten)]
    pub http: HttpFlags,
    #[arg(allow_hyphen_values = true)]
    pub args: Vec<String>,
}

#[derive(Args)]
pub struct CatalogNodes {
    #[command(flatten)]
    pub http: HttpFlags,
    /// Also show full node IDs, tagged addresses and metadata.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false")]
    pub detailed: bool,
    /// Sort by estimated round-trip time from this node (`_agent`: this agent).
    #[arg(long, default_value = "")]
    pub near: String,
    /// Only nodes with this `key=value` metadata (repeatable).
    #[arg(long = "node-meta")]
    pub node_meta: Vec<String>,
    /// Only nodes providing this service.
    #[arg(long, default_value = "")]
    pub service: String,
    /// A filter expression.
    #[arg(long, default_value = "")]
    pub filter: String,
    #[arg(allow_hyphen_values = true)]
    pub args: Vec<String>,
}

#[derive(Args)]
pub struct CatalogServices {
    #[command(flatten)]
    pub http: HttpFlags,
    /// List the services of this node (name or ID).
    #[arg(long, default_value = "")]
    pub node: String,
    /// Only services on nodes with this `key=value` metadata (repeatable).
    #[arg(long = "node-meta")]
    pub node_meta: Vec<String>,
    /// Show each service's tags beside it.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false")]
    pub tags: bool,
    #[arg(allow_hyphen_values = true)]
    pub args: Vec<String>,
}

#[derive(Subcommand)]
pub enum ServicesCommand {
    /// Registers services with the local agent.
    Register(ServicesRegister),
    /// Deregisters services from the local agent.
    Deregister(ServicesDeregister),
}

#[derive(Args)]
pub struct ServicesRegister {
    #[command(flatten)]
    pub http: HttpFlags,
    #[arg(long, default_value = "")]
    pub id: String,
    #[arg(long, default_value = "")]
    pub name: String,
    #[arg(long, default_value = "")]
    pub address: String,
    #[arg(long, default_value = "0")]
    pub port: String,
    #[arg(long, default_value = "")]
    pub socket: String,
    /// `key=value` metadata (repeatable).
    #[arg(long)]
    pub meta: Vec<String>,
    /// A tag (repeatable).
    #[arg(long)]
    pub tag: Vec<String>,
    /// `key=address:port` (repeatable).
    #[arg(long = "tagged-address")]
    pub tagged_address: Vec<String>,
    #[arg(long, default_value = "")]
    pub kind: String,
    /// Service definition files (JSON or HCL).
    #[arg(allow_hyphen_values = true)]
    pub args: Vec<String>,
}

#[derive(Args)]
pub struct ServicesDeregister {
    #[command(flatten)]
    pub http: HttpFlags,
    #[arg(long, default_value = "")]
    pub id: String,
    /// Service definition files (JSON or HCL).
    #[arg(allow_hyphen_values = true)]
    pub args: Vec<String>,
}

#[derive(Args)]
pub struct MaintArgs {
    #[command(flatten)]
    pub http: HttpFlags,
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false")]
    pub enable: bool,
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false")]
    pub disable: bool,
    #[arg(long, default_value = "")]
    pub reason: String,
    /// A service ID.
    #[arg(long, default_value = "")]
    pub service: String,
    #[arg(allow_hyphen_values = true)]
    pub args: Vec<String>,
}

#[derive(Args)]
pub struct EventArgs {
    #[command(flatten)]
    pub http: HttpFlags,
    #[arg(long, default_value = "")]
    pub name: String,
    /// Regular expression on node names.
    #[arg(long, default_value = "")]
    pub node: String,
    /// Regular expression on service names.
    #[arg(long, default_value = "")]
    pub service: String,
    /// Regular expression on service tags (needs -service).
    #[arg(long, default_value = "")]
    pub tag: String,
    #[arg(allow_hyphen_values = true)]
    pub args: Vec<String>,
}

#[derive(Args)]
pub struct RttArgs {
    #[command(flatten)]
    pub http: HttpFlags,
    /// Use WAN coordinates instead of LAN coordinates.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false")]
    pub wan: bool,
    #[arg(allow_hyphen_values = true)]
    pub args: Vec<String>,
}

#[derive(Args)]
pub struct MembersArgs {
    #[command(flatten)]
    pub http: HttpFlags,
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false")]
    pub detailed: bool,
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false")]
    pub wan: bool,
    /// Regular expression on member status.
    #[arg(long, default_value = ".*")]
    pub status: String,
    #[arg(long, default_value = "_all")]
    pub segment: String,
    #[arg(long, default_value = "")]
    pub filter: String,
    #[arg(allow_hyphen_values = true)]
    pub args: Vec<String>,
}

#[derive(Args)]
pub struct JoinArgs {
    #[command(flatten)]
    pub http: HttpFlags,
    /// Joins a server to another server in the WAN pool.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false")]
    pub wan: bool,
    /// The addresses to join.
    #[arg(allow_hyphen_values = true)]
    pub args: Vec<String>,
}

#[derive(Args)]
pub struct LeaveArgs {
    #[command(flatten)]
    pub http: HttpFlags,
    #[arg(allow_hyphen_values = true)]
    pub args: Vec<String>,
}

#[derive(Args)]
pub struct ForceLeaveArgs {
    #[command(flatten)]
    pub http: HttpFlags,
    /// Remove the member from the member list at once.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false")]
    pub prune: bool,
    /// Leave only the WAN pool.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false")]
    pub wan: bool,
    /// The member's node name.
    #[arg(allow_hyphen_values = true)]
    pub args: Vec<String>,
}

#[derive(Args)]
pub struct LockArgs {
    #[command(flatten)]
    pub http: HttpFlags,
    /// Exit 2 when the child fails.
    #[arg(long = "child-exit-code", num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false")]
    pub child_exit_code: bool,
    /// Number of concurrent holders (more than 1: a semaphore).
    #[arg(long = "n", default_value = "1", allow_negative_numbers = true)]
    pub limit: String,
    #[arg(
        long = "monitor-retry",
        default_value = "3",
        allow_negative_numbers = true
    )]
    pub monitor_retry: String,
    /// The lock session's name.
    #[arg(long, default_value = "")]
    pub name: String,
    #[arg(long = "pass-stdin", num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false")]
    pub pass_stdin: bool,
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "true")]
    pub shell: bool,
    /// Longest wait for the lock, as a Go duration ("1s", "3h").
    #[arg(long, allow_hyphen_values = true)]
    pub timeout: Option<String>,
    /// Deprecated spelling of -timeout.
    #[arg(long = "try", allow_hyphen_values = true)]
    pub try_timeout: Option<String>,
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false")]
    pub verbose: bool,
    /// PREFIX CHILD...
    #[arg(allow_hyphen_values = true)]
    pub args: Vec<String>,
}

#[derive(Args)]
pub struct WatchArgs {
    #[command(flatten)]
    pub http: HttpFlags,
    /// key, keyprefix, services, nodes, service, checks or event.
    #[arg(long = "type", default_value = "")]
    pub watch_type: String,
    #[arg(long, default_value = "")]
    pub key: String,
    #[arg(long, default_value = "")]
    pub prefix: String,
    #[arg(long, default_value = "")]
    pub service: String,
    #[arg(long, default_value = "")]
    pub tag: String,
    /// `true` or `false`: only instances passing all checks.
    #[arg(long, default_value = "")]
    pub passingonly: String,
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "true")]
    pub shell: bool,
    #[arg(long, default_value = "")]
    pub state: String,
    #[arg(long, default_value = "")]
    pub name: String,
    /// The handler command.
    #[arg(allow_hyphen_values = true)]
    pub args: Vec<String>,
}

/// Why the command line was refused.
pub enum ParseError {
    /// Help or usage text from clap (help goes to stdout and exits 0).
    Clap(clap::Error),
    /// A flag the command does not define, reported as Go's flag package
    /// does.
    UndefinedFlag(String),
}

pub fn parse(args: Vec<String>) -> Result<Cli, ParseError> {
    // `praetor serf agent` takes the agent's own flags, unparsed here.
    if args.get(1).map(String::as_str) == Some("serf")
        && args.get(2).map(String::as_str) == Some("agent")
    {
        let rest = args.into_iter().skip(3).collect();
        return Ok(Cli {
            command: Command::Serf(crate::serf_cmd::SerfCommand::Agent(
                crate::serf_cmd::SerfAgentArgs { args: rest },
            )),
        });
    }
    let command = Cli::command();
    let args = go_style(&command, args).map_err(ParseError::UndefinedFlag)?;
    let matches = command
        .try_get_matches_from(args)
        .map_err(ParseError::Clap)?;
    Cli::from_arg_matches(&matches).map_err(ParseError::Clap)
}

/// Rewrites Go-style flags for clap: `-name[=v]` becomes `--name[=v]` for
/// the flags the command defines, a flag's separate value is passed through
/// untouched, and the first plain argument ends the flags (as in Go), so
/// later arguments that start with `-` are data.
fn go_style(root: &clap::Command, args: Vec<String>) -> Result<Vec<String>, String> {
    let mut args = args.into_iter();
    let mut out: Vec<String> = args.next().into_iter().collect();
    let mut command = root;
    let mut rest: Vec<String> = Vec::new();
    for arg in args.by_ref() {
        match command.find_subcommand(&arg) {
            Some(sub) => {
                out.push(arg);
                command = sub;
            }
            None => {
                rest.push(arg);
                break;
            }
        }
    }
    rest.extend(args);
    let mut rest = rest.into_iter();
    while let Some(arg) = rest.next() {
        if arg == "--" {
            out.push(arg);
            out.extend(rest.by_ref());
            break;
        }
        let name = arg
            .strip_prefix("--")
            .or_else(|| arg.strip_prefix('-'))
            .filter(|n| !n.is_empty() && arg != "-");
        let Some(name) = name else {
            out.push("--".to_owned());
            out.push(arg);
            out.extend(rest.by_ref());
            break;
        };
        let (flag, inline_value) = match name.split_once('=') {
            Some((f, _)) => (f, true),
            None => (name, false),
        };
        if matches!(flag, "h" | "help") {
            out.push("--help".to_owned());
            continue;
        }
        let Some(defined) = command.get_arguments().find(|a| a.get_long() == Some(flag)) else {
            return Err(format!("flag provided but not defined: -{flag}"));
        };
        out.push(format!("--{name}"));
        let optional_value = defined
            .get_num_args()
            .is_some_and(|range| range.min_values() == 0);
        if !inline_value && !optional_value {
            if let Some(value) = rest.next() {
                out.push(value);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewrite(line: &str) -> Vec<String> {
        go_style(
            &Cli::command(),
            line.split(' ').map(str::to_owned).collect(),
        )
        .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn go_flags_become_clap_flags() {
        assert_eq!(
            rewrite("praetor agent -dev -http-port 8501 -node=n1"),
            [
                "praetor",
                "agent",
                "--dev",
                "--http-port",
                "8501",
                "--node=n1"
            ]
        );
    }

    #[test]
    fn first_argument_ends_flags() {
        assert_eq!(
            rewrite("praetor kv put -flags 5 key -value"),
            ["praetor", "kv", "put", "--flags", "5", "--", "key", "-value"]
        );
        assert_eq!(
            rewrite("praetor kv put key -"),
            ["praetor", "kv", "put", "--", "key", "-"]
        );
    }

    #[test]
    fn parses_agent_flags() {
        let cli = parse(
            "praetor agent -dev -config-file a.json -config-file b.hcl"
                .split(' ')
                .map(str::to_owned)
                .collect(),
        )
        .unwrap_or_else(|_| panic!("agent flags should parse"));
        let Command::Agent(flags) = cli.command else {
            panic!("expected agent")
        };
        assert!(flags.dev);
        assert_eq!(flags.config_file.len(), 2);
    }
}

#[derive(Subcommand)]
pub enum OperatorCommand {
    /// Raft: the servers' configuration.
    #[command(subcommand)]
    Raft(OperatorRaftCommand),
}

#[derive(Subcommand)]
pub enum OperatorRaftCommand {
    /// Displays the current Raft peer configuration.
    ListPeers(OperatorRaftArgs),
    /// Removes a server from the Raft configuration.
    RemovePeer(OperatorRaftArgs),
    /// Transfers Raft leadership to another server.
    TransferLeader(OperatorRaftArgs),
}

#[derive(Args)]
pub struct OperatorRaftArgs {
    #[command(flatten)]
    pub http: HttpFlags,
    /// The server's ID (remove-peer, transfer-leader).
    #[arg(long)]
    pub id: Option<String>,
    /// The server's Raft address, IP:port (remove-peer).
    #[arg(long)]
    pub address: Option<String>,
    #[arg(allow_hyphen_values = true)]
    pub args: Vec<String>,
}
