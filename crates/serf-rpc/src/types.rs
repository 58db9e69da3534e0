//! The domain values that cross the RPC: members, events, query records,
//! key-ring answers, log lines. Their wire shapes live in [`crate::protocol`].

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

pub use coordinate::Coordinate;

/// A member's state as Serf reports it (`MemberStatus.String()`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum MemberStatus {
    None,
    Alive,
    Leaving,
    Left,
    Failed,
    /// A name this side does not know (kept for display).
    Other(String),
}

impl MemberStatus {
    pub fn as_str(&self) -> &str {
        match self {
            MemberStatus::None => "none",
            MemberStatus::Alive => "alive",
            MemberStatus::Leaving => "leaving",
            MemberStatus::Left => "left",
            MemberStatus::Failed => "failed",
            MemberStatus::Other(s) => s,
        }
    }

    pub fn parse(s: &str) -> MemberStatus {
        match s {
            "none" => MemberStatus::None,
            "alive" => MemberStatus::Alive,
            "leaving" => MemberStatus::Leaving,
            "left" => MemberStatus::Left,
            "failed" => MemberStatus::Failed,
            other => MemberStatus::Other(other.to_owned()),
        }
    }
}

impl fmt::Display for MemberStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One member of the cluster, as `members` and member events carry it.
#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    pub name: String,
    pub addr: IpAddr,
    /// The gossip port.
    pub port: u16,
    pub tags: BTreeMap<String, String>,
    pub status: MemberStatus,
    /// memberlist protocol versions: lowest and highest understood, in use.
    pub protocol_min: u8,
    pub protocol_max: u8,
    pub protocol_cur: u8,
    /// Serf ("delegate") protocol versions.
    pub delegate_min: u8,
    pub delegate_max: u8,
    pub delegate_cur: u8,
}

impl Member {
    /// A member with the given name and nothing else set (tests, fakes).
    pub fn named(name: impl Into<String>) -> Member {
        Member {
            name: name.into(),
            addr: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            port: 0,
            tags: BTreeMap::new(),
            status: MemberStatus::Alive,
            protocol_min: 0,
            protocol_max: 0,
            protocol_cur: 0,
            delegate_min: 0,
            delegate_max: 0,
            delegate_cur: 0,
        }
    }
}

/// Which member event happened (`EventType.String()` in Serf).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberEventKind {
    Join,
    Leave,
    Failed,
    Update,
    Reap,
}

impl MemberEventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MemberEventKind::Join => "member-join",
            MemberEventKind::Leave => "member-leave",
            MemberEventKind::Failed => "member-failed",
            MemberEventKind::Update => "member-update",
            MemberEventKind::Reap => "member-reap",
        }
    }

    pub fn parse(s: &str) -> Option<MemberEventKind> {
        Some(match s {
            "member-join" => MemberEventKind::Join,
            "member-leave" => MemberEventKind::Leave,
            "member-failed" => MemberEventKind::Failed,
            "member-update" => MemberEventKind::Update,
            "member-reap" => MemberEventKind::Reap,
            _ => return None,
        })
    }
}

/// A user event, as delivered to event streams.
#[derive(Debug, Clone, PartialEq)]
pub struct UserEvent {
    /// The event's Lamport time.
    pub ltime: u64,
    pub name: String,
    pub payload: Vec<u8>,
    pub coalesce: bool,
}

/// Answers one query that this agent received. The server keeps it, under
/// a per-connection ID, until the query's deadline so that a stream client
/// can answer with `respond`.
pub trait QueryResponder: Send + Sync {
    /// Sends `payload` as this node's response. An error (deadline passed,
    /// already responded, payload too large) is shown to the client as is.
    fn respond(&self, payload: Vec<u8>) -> Result<(), String>;
}

/// A query this agent received, as delivered to event streams.
#[derive(Clone)]
pub struct QueryEvent {
    pub ltime: u64,
    pub name: String,
    pub payload: Vec<u8>,
    /// After this instant a response is refused; the server forgets the
    /// query then.
    pub deadline: tokio::time::Instant,
    pub responder: Arc<dyn QueryResponder>,
}

impl fmt::Debug for QueryEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QueryEvent")
            .field("ltime", &self.ltime)
            .field("name", &self.name)
            .field("payload", &self.payload)
            .field("deadline", &self.deadline)
            .finish_non_exhaustive()
    }
}

/// Everything an event stream (`stream` command) can carry.
#[derive(Debug, Clone)]
pub enum StreamEvent {
    Member {
        kind: MemberEventKind,
        members: Vec<Member>,
    },
    User(UserEvent),
    Query(QueryEvent),
}

impl StreamEvent {
    /// The name event filters match on: `member-join`, ..., `user`, `query`.
    pub fn type_name(&self) -> &'static str {
        match self {
            StreamEvent::Member { kind, .. } => kind.as_str(),
            StreamEvent::User(_) => "user",
            StreamEvent::Query(_) => "query",
        }
    }
}

/// An event-stream record as a client receives it.
#[derive(Debug, Clone, PartialEq)]
pub enum EventRecord {
    Member {
        /// `member-join`, `member-leave`, ...
        event: String,
        members: Vec<Member>,
    },
    User(UserEvent),
    Query {
        /// Pass this to `respond` to answer the query.
        id: u64,
        ltime: u64,
        name: String,
        payload: Vec<u8>,
    },
}

/// Parameters of a query started over RPC.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueryParams {
    pub name: String,
    pub payload: Vec<u8>,
    /// Only these nodes answer (empty: no restriction).
    pub filter_nodes: Vec<String>,
    /// Only nodes whose tag matches the anchored regular expression answer.
    pub filter_tags: BTreeMap<String, String>,
    /// Ask nodes to acknowledge receipt.
    pub request_ack: bool,
    /// Extra nodes each response is relayed through.
    pub relay_factor: u8,
    /// Zero: the agent's default (Serf scales it with the cluster's size).
    pub timeout: Duration,
}

/// One thing a running query produced.
#[derive(Debug, Clone, PartialEq)]
pub enum QueryRecord {
    Ack { from: String },
    Response { from: String, payload: Vec<u8> },
}

/// A key-ring operation (`install-key`, `use-key`, `remove-key`,
/// `list-keys`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyOp {
    Install(String),
    Use(String),
    Remove(String),
    List,
}

/// What the cluster answered to a key-ring operation.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KeyResponse {
    /// Per node, the error that node reported.
    pub messages: BTreeMap<String, String>,
    /// `list-keys`: each key (base64) and how many nodes hold it.
    pub keys: BTreeMap<String, i64>,
    /// `list-keys` on newer agents: each primary key and how many nodes use
    /// it. Empty when unknown.
    pub primary_keys: BTreeMap<String, i64>,
    pub num_nodes: i64,
    pub num_err: i64,
    pub num_resp: i64,
}

/// A key-ring operation's result: the answers, and the error when not every
/// node succeeded (the answers still say which failed).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KeyOutcome {
    pub response: KeyResponse,
    pub error: Option<String>,
}

/// `stats`: sections (`agent`, `runtime`, `serf`, `tags`, ...) of named
/// values.
pub type Stats = BTreeMap<String, BTreeMap<String, String>>;

/// Log levels, lowest first, as Serf's log filter knows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Err,
}

impl LogLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Trace => "TRACE",
            LogLevel::Debug => "DEBUG",
            LogLevel::Info => "INFO",
            LogLevel::Warn => "WARN",
            LogLevel::Err => "ERR",
        }
    }

    /// Exact, upper-case names only (the server upper-cases first).
    pub fn parse(s: &str) -> Option<LogLevel> {
        Some(match s {
            "TRACE" => LogLevel::Trace,
            "DEBUG" => LogLevel::Debug,
            "INFO" => LogLevel::Info,
            "WARN" => LogLevel::Warn,
            "ERR" => LogLevel::Err,
            _ => return None,
        })
    }
}

/// One line of the agent's log, for `monitor`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub level: LogLevel,
    /// The whole line as the agent writes it (Serf's look:
    /// `2024/01/02 15:04:05 [INFO] serf: EventMemberJoin: a 127.0.0.1`).
    pub text: String,
}
