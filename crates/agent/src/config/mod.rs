//! The agent's configuration: Consul's defaults, `-dev` defaults, JSON and
//! HCL files, then command-line flags, merged in that order into [`Config`].
//!
//! Every source is parsed into one tree shape and checked by one schema
//! walker (`schema`) before anything is applied, so a bad file changes
//! nothing: [`load`] returns either a whole `Config` or an error that names
//! the file, the key and what was expected.

mod file;
mod flags;
mod known_keys;
mod schema;

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

pub use flags::AgentFlags;
use schema::{Parsed, Refusal};

/// Consul's default `limits.kv_max_value_size` and `limits.txn_max_req_len`
/// (raft's suggested maximum entry size).
pub const DEFAULT_MAX_REQUEST_SIZE: u64 = 512 * 1024;

/// Consul's default `reconnect_timeout` and `reconnect_timeout_wan`: a
/// failed member is forgotten after three days.
pub const DEFAULT_RECONNECT_TIMEOUT: Duration = Duration::from_secs(72 * 3600);

/// The agent's configuration after every source is merged.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub node_name: String,
    /// Lowercased UUID, if one was configured.
    pub node_id: Option<String>,
    /// Lowercased, as Consul does.
    pub datacenter: String,
    pub dev: bool,
    pub server: bool,
    pub bootstrap: bool,
    /// `None` when unset or 0; 1 turns into `bootstrap`, as in Consul.
    pub bootstrap_expect: Option<u32>,
    /// Where the client listeners (HTTP, DNS, gRPC) bind unless
    /// `addresses` says otherwise.
    pub client_addrs: Vec<IpAddr>,
    pub bind_addr: IpAddr,
    pub advertise_addr: Option<IpAddr>,
    pub ports: Ports,
    pub addresses: Addresses,
    pub data_dir: Option<PathBuf>,
    pub log_level: LogLevel,
    pub log_json: bool,
    pub ui: bool,
    pub pid_file: Option<PathBuf>,
    /// Scales Raft timeouts: 1 is fastest, 10 slowest.
    pub raft_multiplier: u8,
    /// Addresses of agents to join at start (`start_join`, `-join`) and to
    /// keep trying until one answers (`retry_join`, `-retry-join`).
    pub start_join: Vec<String>,
    pub retry_join: Vec<String>,
    /// How long between rounds of `retry_join`.
    pub retry_interval: Duration,
    /// The same for a server's WAN pool: `start_join_wan` (`-join-wan`),
    /// `retry_join_wan` (`-retry-join-wan`) and `retry_interval_wan`.
    pub start_join_wan: Vec<String>,
    pub retry_join_wan: Vec<String>,
    pub retry_interval_wan: Duration,
    /// After a graceful leave, rejoin the pool from the gossip snapshot
    /// at the next start.
    pub rejoin_after_leave: bool,
    /// How long a failed member stays in the LAN pool (`reconnect_timeout`)
    /// and the WAN pool (`reconnect_timeout_wan`) before it is reaped.
    pub reconnect_timeout: Duration,
    pub reconnect_timeout_wan: Duration,
    /// A client's own reconnect timeout, advertised to the LAN pool so the
    /// other members reap it sooner (`advertise_reconnect_timeout`).
    pub advertise_reconnect_timeout: Option<Duration>,
    /// The gossip encryption key (base64 of 16, 24 or 32 bytes).
    pub encrypt: Option<String>,
    /// Autopilot removes servers that stay dead.
    pub cleanup_dead_servers: bool,
    /// `raft_snapshot_threshold` and `raft_trailing_logs`.
    pub raft_snapshot_threshold: u64,
    pub raft_trailing_logs: u64,
    pub leave_drain_time: Duration,
    pub rpc_hold_timeout: Duration,
    pub enable_script_checks: bool,
    pub kv_max_value_size: u64,
    pub txn_max_req_len: u64,
    /// Consul's default: true for clients, false for servers.
    pub leave_on_terminate: bool,
    /// Accepted for compatibility; praetor never checks for updates.
    pub disable_update_check: bool,
    /// Script checks from config files only (`enable_script_checks` also
    /// allows them over the API).
    pub enable_local_script_checks: bool,
    /// The DNS domain, `consul.` by default, and a second one if set.
    pub domain: String,
    pub alt_domain: Option<String>,
    /// Where DNS questions outside the domain go (`host` or `host:port`).
    pub recursors: Vec<String>,
    pub dns: DnsSettings,
    /// `service`/`services` definition blocks, decoded by the agent.
    pub services: Vec<serde_json::Value>,
    /// `check`/`checks` definition blocks.
    pub checks: Vec<serde_json::Value>,
}

/// `dns_config`: how the DNS interface answers.
#[derive(Debug, Clone, PartialEq)]
pub struct DnsSettings {
    pub node_ttl: Duration,
    /// By service name; a key ending in `*` is a prefix (`*`: every one).
    pub service_ttl: BTreeMap<String, Duration>,
    pub only_passing: bool,
    pub udp_answer_limit: u16,
    pub a_record_limit: u16,
    pub enable_truncate: bool,
    pub allow_stale: bool,
    pub max_stale: Duration,
    pub recursor_timeout: Duration,
    pub enable_additional_node_meta_txt: bool,
    pub soa: SoaSettings,
}

/// `dns_config.soa`: the SOA record's timers, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SoaSettings {
    pub refresh: u32,
    pub retry: u32,
    pub expire: u32,
    pub min_ttl: u32,
}

impl Default for SoaSettings {
    /// Consul's defaults.
    fn default() -> Self {
        SoaSettings {
            refresh: 3600,
            retry: 600,
            expire: 86400,
            min_ttl: 0,
        }
    }
}

impl Default for DnsSettings {
    /// Consul's defaults.
    fn default() -> Self {
        DnsSettings {
            node_ttl: Duration::ZERO,
            service_ttl: BTreeMap::new(),
            only_passing: false,
            udp_answer_limit: 3,
            a_record_limit: 0,
            enable_truncate: false,
            allow_stale: true,
            max_stale: Duration::from_secs(87_600 * 3600),
            recursor_timeout: Duration::from_secs(2),
            enable_additional_node_meta_txt: true,
            soa: SoaSettings::default(),
        }
    }
}

/// Listener ports; `None` is a disabled listener (`-1` in Consul).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ports {
    pub http: Option<u16>,
    pub dns: Option<u16>,
    pub server: u16,
    pub serf_lan: u16,
    /// `None`: a server in no WAN pool (`-1`, or 0, in Consul).
    pub serf_wan: Option<u16>,
    pub https: Option<u16>,
    pub grpc: Option<u16>,
}

impl Default for Ports {
    fn default() -> Self {
        Ports {
            http: Some(8500),
            dns: Some(8600),
            server: 8300,
            serf_lan: 8301,
            serf_wan: Some(8302),
            https: None,
            grpc: None,
        }
    }
}

/// Per-listener bind addresses; `None` falls back to `client_addrs`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Addresses {
    pub http: Option<Vec<IpAddr>>,
    pub dns: Option<Vec<IpAddr>>,
    pub https: Option<Vec<IpAddr>>,
    pub grpc: Option<Vec<IpAddr>>,
}

/// Consul's log levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum LogLevel {
    Trace,
    Debug,
    #[default]
    Info,
    Warn,
    Err,
}

impl LogLevel {
    /// The level as a `tracing` filter directive.
    pub fn as_filter(self) -> &'static str {
        match self {
            LogLevel::Trace => "trace",
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Err => "error",
        }
    }
}

impl fmt::Display for LogLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LogLevel::Trace => "TRACE",
            LogLevel::Debug => "DEBUG",
            LogLevel::Info => "INFO",
            LogLevel::Warn => "WARN",
            LogLevel::Err => "ERR",
        })
    }
}

impl FromStr for LogLevel {
    type Err = String;

    /// Case-insensitive, with the spellings Consul accepts.
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "trace" => Ok(LogLevel::Trace),
            "debug" => Ok(LogLevel::Debug),
            "info" => Ok(LogLevel::Info),
            "warn" | "warning" => Ok(LogLevel::Warn),
            "err" | "error" => Ok(LogLevel::Err),
            _ => Err(format!("invalid log level {s:?}")),
        }
    }
}

impl Default for Config {
    /// Consul's defaults, without a node name.
    fn default() -> Self {
        Config {
            node_name: String::new(),
            node_id: None,
            datacenter: "dc1".to_owned(),
            dev: false,
            server: false,
            bootstrap: false,
            bootstrap_expect: None,
            client_addrs: vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
            bind_addr: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            advertise_addr: None,
            ports: Ports::default(),
            addresses: Addresses::default(),
            data_dir: None,
            log_level: LogLevel::Info,
            log_json: false,
            ui: false,
            pid_file: None,
            raft_multiplier: 5,
            start_join: Vec::new(),
            retry_join: Vec::new(),
            retry_interval: Duration::from_secs(30),
            start_join_wan: Vec::new(),
            retry_join_wan: Vec::new(),
            retry_interval_wan: Duration::from_secs(30),
            rejoin_after_leave: false,
            reconnect_timeout: DEFAULT_RECONNECT_TIMEOUT,
            reconnect_timeout_wan: DEFAULT_RECONNECT_TIMEOUT,
            advertise_reconnect_timeout: None,
            encrypt: None,
            cleanup_dead_servers: true,
            raft_snapshot_threshold: 16384,
            raft_trailing_logs: 10240,
            leave_drain_time: Duration::from_secs(5),
            rpc_hold_timeout: Duration::from_secs(7),
            enable_script_checks: false,
            kv_max_value_size: DEFAULT_MAX_REQUEST_SIZE,
            txn_max_req_len: DEFAULT_MAX_REQUEST_SIZE,
            leave_on_terminate: true,
            disable_update_check: false,
            enable_local_script_checks: false,
            domain: "consul.".to_owned(),
            alt_domain: None,
            recursors: Vec::new(),
            dns: DnsSettings::default(),
            services: Vec::new(),
            checks: Vec::new(),
        }
    }
}

impl Config {
    /// Consul's `-dev` defaults on top of the normal ones.
    fn dev() -> Self {
        Config {
            dev: true,
            server: true,
            ui: true,
            bind_addr: IpAddr::V4(Ipv4Addr::LOCALHOST),
            log_level: LogLevel::Debug,
            raft_multiplier: 1,
            ports: Ports {
                grpc: Some(8502),
                ..Ports::default()
            },
            ..Config::default()
        }
    }

    /// Where the HTTP API listens; empty if it is disabled.
    pub fn http_addrs(&self) -> Vec<SocketAddr> {
        self.listener(self.ports.http, &self.addresses.http)
    }

    /// Where the DNS interface listens; empty if it is disabled.
    pub fn dns_addrs(&self) -> Vec<SocketAddr> {
        self.listener(self.ports.dns, &self.addresses.dns)
    }

    /// Where the HTTPS API listens; empty if it is disabled.
    pub fn https_addrs(&self) -> Vec<SocketAddr> {
        self.listener(self.ports.https, &self.addresses.https)
    }

    /// Where the gRPC interface listens; empty if it is disabled.
    pub fn grpc_addrs(&self) -> Vec<SocketAddr> {
        self.listener(self.ports.grpc, &self.addresses.grpc)
    }

    fn listener(&self, port: Option<u16>, addrs: &Option<Vec<IpAddr>>) -> Vec<SocketAddr> {
        let Some(port) = port else { return Vec::new() };
        addrs
            .as_deref()
            .unwrap_or(&self.client_addrs)
            .iter()
            .map(|ip| SocketAddr::new(*ip, port))
            .collect()
    }

    /// Sets the field a schema key names. Returns false for a key/value
    /// pair the schema cannot produce.
    fn apply(&mut self, key: &str, value: Parsed) -> bool {
        use Parsed as P;
        match (key, value) {
            ("node_name", P::Str(v)) => self.node_name = v,
            ("node_id", P::Str(v)) => self.node_id = Some(v),
            ("datacenter", P::Str(v)) => self.datacenter = v,
            ("data_dir", P::Str(v)) => self.data_dir = Some(v.into()),
            ("pid_file", P::Str(v)) => self.pid_file = Some(v.into()),
            ("server", P::Bool(v)) => self.server = v,
            ("bootstrap", P::Bool(v)) => self.bootstrap = v,
            ("ui" | "ui_config.enabled", P::Bool(v)) => self.ui = v,
            ("log_json", P::Bool(v)) => self.log_json = v,
            ("enable_script_checks", P::Bool(v)) => self.enable_script_checks = v,
            ("leave_on_terminate", P::Bool(v)) => self.leave_on_terminate = v,
            ("disable_update_check", P::Bool(v)) => self.disable_update_check = v,
            ("bootstrap_expect", P::Int(v)) => {
                self.bootstrap_expect = u32::try_from(v).ok().filter(|n| *n > 0)
            }
            ("performance.raft_multiplier", P::Int(v)) => {
                self.raft_multiplier = u8::try_from(v).unwrap_or(u8::MAX)
            }
            ("performance.leave_drain_time", P::Duration(v)) => self.leave_drain_time = v,
            ("performance.rpc_hold_timeout", P::Duration(v)) => self.rpc_hold_timeout = v,
            ("limits.kv_max_value_size", P::Size(v)) => self.kv_max_value_size = v,
            ("limits.txn_max_req_len", P::Size(v)) => self.txn_max_req_len = v,
            ("log_level", P::LogLevel(v)) => self.log_level = v,
            ("bind_addr", P::Ip(v)) => self.bind_addr = v,
            ("advertise_addr", P::Ip(v)) => self.advertise_addr = Some(v),
            ("client_addr", P::Addrs(v)) => self.client_addrs = v,
            ("addresses.http", P::Addrs(v)) => self.addresses.http = Some(v),
            ("addresses.dns", P::Addrs(v)) => self.addresses.dns = Some(v),
            ("addresses.https", P::Addrs(v)) => self.addresses.https = Some(v),
            ("addresses.grpc", P::Addrs(v)) => self.addresses.grpc = Some(v),
            ("ports.http", P::Port(v)) => self.ports.http = v,
            ("ports.dns", P::Port(v)) => self.ports.dns = v,
            ("ports.https", P::Port(v)) => self.ports.https = v,
            ("ports.grpc", P::Port(v)) => self.ports.grpc = v,
            ("ports.server", P::Port(Some(v))) => self.ports.server = v,
            ("ports.serf_lan", P::Port(Some(v))) => self.ports.serf_lan = v,
            ("ports.serf_wan", P::Port(v)) => self.ports.serf_wan = v,
            ("enable_local_script_checks", P::Bool(v)) => self.enable_local_script_checks = v,
            ("domain", P::Str(v)) => self.domain = v,
            ("alt_domain", P::Str(v)) => self.alt_domain = Some(v).filter(|d| !d.is_empty()),
            ("recursors", P::StrList(v)) => self.recursors = v,
            ("retry_join", P::StrList(v)) => self.retry_join.extend(v),
            ("retry_interval", P::Duration(v)) => self.retry_interval = v,
            ("retry_join_wan", P::StrList(v)) => self.retry_join_wan.extend(v),
            ("retry_interval_wan", P::Duration(v)) => self.retry_interval_wan = v,
            ("start_join_wan", P::StrList(v)) => self.start_join_wan.extend(v),
            ("rejoin_after_leave", P::Bool(v)) => self.rejoin_after_leave = v,
            ("reconnect_timeout", P::Duration(v)) => self.reconnect_timeout = v,
            ("reconnect_timeout_wan", P::Duration(v)) => self.reconnect_timeout_wan = v,
            // As in Consul, 0 means "not set".
            ("advertise_reconnect_timeout", P::Duration(v)) => {
                self.advertise_reconnect_timeout = Some(v).filter(|d| !d.is_zero())
            }
            ("encrypt", P::Str(v)) => self.encrypt = Some(v).filter(|k| !k.is_empty()),
            ("start_join", P::StrList(v)) => self.start_join.extend(v),
            ("autopilot.cleanup_dead_servers", P::Bool(v)) => self.cleanup_dead_servers = v,
            ("raft_snapshot_threshold", P::Int(v)) => {
                self.raft_snapshot_threshold = u64::try_from(v).unwrap_or(0)
            }
            ("raft_trailing_logs", P::Int(v)) => {
                self.raft_trailing_logs = u64::try_from(v).unwrap_or(0)
            }
            ("service" | "services", P::Definitions(v)) => self.services.extend(v),
            ("check" | "checks", P::Definitions(v)) => self.checks.extend(v),
            ("dns_config.node_ttl", P::Duration(v)) => self.dns.node_ttl = v,
            // Later files add to the map and override its keys, as Consul merges maps.
            ("dns_config.service_ttl", P::DurationMap(v)) => self.dns.service_ttl.extend(v),
            ("dns_config.soa.refresh", P::Int(v)) => self.dns.soa.refresh = seconds(v),
            ("dns_config.soa.retry", P::Int(v)) => self.dns.soa.retry = seconds(v),
            ("dns_config.soa.expire", P::Int(v)) => self.dns.soa.expire = seconds(v),
            ("dns_config.soa.min_ttl", P::Int(v)) => self.dns.soa.min_ttl = seconds(v),
            ("dns_config.only_passing", P::Bool(v)) => self.dns.only_passing = v,
            ("dns_config.udp_answer_limit", P::Int(v)) => {
                self.dns.udp_answer_limit = u16::try_from(v).unwrap_or(u16::MAX)
            }
            ("dns_config.a_record_limit", P::Int(v)) => {
                self.dns.a_record_limit = u16::try_from(v).unwrap_or(u16::MAX)
            }
            ("dns_config.enable_truncate", P::Bool(v)) => self.dns.enable_truncate = v,
            ("dns_config.allow_stale", P::Bool(v)) => self.dns.allow_stale = v,
            ("dns_config.max_stale", P::Duration(v)) => self.dns.max_stale = v,
            ("dns_config.recursor_timeout", P::Duration(v)) => self.dns.recursor_timeout = v,
            ("dns_config.enable_additional_node_meta_txt", P::Bool(v)) => {
                self.dns.enable_additional_node_meta_txt = v
            }
            _ => return false,
        }
        true
    }
}

/// An SOA timer the schema has already bounded to `u32`.
fn seconds(v: i64) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

/// A merged configuration and the warnings met on the way (keys accepted
/// without effect, skipped files, risky settings), for the caller to log.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    pub warnings: Vec<String>,
}

/// Where a setting came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    File(PathBuf),
    /// A command-line flag, by its name without dashes.
    Flag(&'static str),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File(path) => write!(f, "{}", path.display()),
            Origin::Flag(name) => write!(f, "flag -{name}"),
        }
    }
}

/// Why the configuration could not be loaded. Each renders as one line.
#[derive(thiserror::Error, Debug)]
pub enum ConfigError {
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("file {} has unknown extension; must be .hcl or .json", path.display())]
    UnknownExtension { path: PathBuf },
    #[error("{}: syntax error: {message}", path.display())]
    Syntax { path: PathBuf, message: String },
    #[error("{origin}: unknown configuration key \"{key}\"")]
    UnknownKey { origin: Origin, key: String },
    #[error("{origin}: key \"{key}\": expected {expected}, found {found}")]
    BadValue {
        origin: Origin,
        key: String,
        expected: String,
        found: String,
    },
    /// The merged settings contradict each other or a required one is
    /// missing; the text is Consul's.
    #[error("{0}")]
    Invalid(String),
}

impl ConfigError {
    fn refused(origin: Origin, refusal: Refusal) -> Self {
        match refusal {
            Refusal::UnknownKey(key) => ConfigError::UnknownKey { origin, key },
            Refusal::BadValue {
                key,
                expected,
                found,
            } => ConfigError::BadValue {
                origin,
                key,
                expected: expected.into_owned(),
                found,
            },
        }
    }
}

/// Builds the configuration from `flags` and the files they name.
pub fn load(flags: &AgentFlags) -> Result<Loaded, ConfigError> {
    load_with_hostname(flags, hostname)
}

fn load_with_hostname(
    flags: &AgentFlags,
    hostname: impl FnOnce() -> Option<String>,
) -> Result<Loaded, ConfigError> {
    let mut warnings = Vec::new();

    // Read and check every source before applying any of them.
    let mut sources = Vec::new();
    for path in flags.config_file.iter().chain(&flags.config_dir) {
        for file in file::expand(path, &mut warnings)? {
            let tree = file::read(&file)?;
            sources.push((Origin::File(file), tree));
        }
    }
    sources.extend(
        flags
            .sources()
            .into_iter()
            .map(|(flag, tree)| (Origin::Flag(flag), tree)),
    );
    let mut checked = Vec::with_capacity(sources.len());
    for (origin, tree) in sources {
        let walked = schema::walk(&tree).map_err(|r| ConfigError::refused(origin.clone(), r))?;
        for key in &walked.unimplemented {
            warnings.push(format!(
                "config key \"{key}\" in {origin} is accepted but not yet implemented by praetor; it has no effect"
            ));
        }
        if let Origin::File(path) = &origin {
            if walked.settings.iter().any(|(k, _)| *k == "ui") {
                warnings.push(format!(
                    "{}: the \"ui\" key is deprecated; use \"ui_config.enabled\" instead",
                    path.display()
                ));
            }
        }
        checked.push(walked.settings);
    }

    let mut config = if flags.dev {
        Config::dev()
    } else {
        Config::default()
    };
    let mut leave_on_terminate = None;
    for (key, value) in checked.into_iter().flatten() {
        if let ("leave_on_terminate", Parsed::Bool(v)) = (key, &value) {
            leave_on_terminate = Some(*v);
        }
        let applied = config.apply(key, value);
        debug_assert!(applied, "schema key {key} has no field");
    }
    config.leave_on_terminate = leave_on_terminate.unwrap_or(!config.server);
    finish(&mut config, hostname, &mut warnings)?;
    Ok(Loaded { config, warnings })
}

/// Defaults that depend on other settings, and Consul's cross-checks.
fn finish(
    c: &mut Config,
    hostname: impl FnOnce() -> Option<String>,
    warnings: &mut Vec<String>,
) -> Result<(), ConfigError> {
    let invalid = |msg: String| Err(ConfigError::Invalid(msg));
    c.datacenter = c.datacenter.to_ascii_lowercase();
    if c.datacenter.is_empty() {
        return invalid("datacenter cannot be empty".into());
    }
    if !c
        .datacenter
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return invalid(format!(
            "datacenter cannot be {:?}. Please use only [a-z0-9-_]",
            c.datacenter
        ));
    }
    match &c.data_dir {
        None if !c.dev => return invalid("data_dir cannot be empty".into()),
        Some(dir) if dir.as_os_str().is_empty() && !c.dev => {
            return invalid("data_dir cannot be empty".into())
        }
        Some(dir) if Path::new(dir).exists() && !dir.is_dir() => {
            return invalid(format!("data_dir {:?} is not a directory", dir.display()))
        }
        _ => {}
    }
    if c.node_name.is_empty() {
        c.node_name = hostname().unwrap_or_default();
    }
    if c.node_name.is_empty() {
        return invalid("node_name cannot be empty".into());
    }
    if c.advertise_addr.is_some_and(|ip| ip.is_unspecified()) {
        return invalid("Advertise address cannot be 0.0.0.0, :: or [::]".into());
    }

    if let Some(n) = c.bootstrap_expect {
        if !c.server {
            return invalid("'bootstrap_expect > 0' requires server mode".into());
        }
        if c.dev {
            return invalid("'bootstrap_expect > 0' not allowed in dev mode".into());
        }
        if c.bootstrap {
            return invalid(
                "'bootstrap_expect > 0' and 'bootstrap = true' are mutually exclusive".into(),
            );
        }
        match n {
            1 => {
                warnings.push(
                    "BootstrapExpect is set to 1; this is the same as Bootstrap mode.".into(),
                );
                c.bootstrap_expect = None;
                c.bootstrap = true;
            }
            2 => warnings.push(
                "bootstrap_expect = 2: A cluster with 2 servers will provide no failure tolerance"
                    .into(),
            ),
            n if n % 2 == 0 => warnings.push(format!(
                "bootstrap_expect = {n}: A cluster with an even number of servers does not achieve optimum fault tolerance"
            )),
            _ => {}
        }
        if n > 1 {
            warnings.push(format!("bootstrap_expect > 0: expecting {n} servers"));
        }
    }
    if c.bootstrap && !c.server {
        return invalid("'bootstrap = true' requires server mode".into());
    }
    if (c.server || c.dev) && c.advertise_reconnect_timeout.is_some() {
        return invalid("advertise_reconnect_timeout can only be used on a client".into());
    }
    if c.bootstrap && !c.dev {
        warnings.push("bootstrap = true: do not enable unless necessary".into());
    }
    // A dev server forms a cluster of one on its own.
    if c.dev && c.server {
        c.bootstrap = true;
    }
    Ok(())
}

/// The machine's host name, as Consul's default node name.
fn hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|s| !s.is_empty()))
}

#[cfg(test)]
mod tests;
