//! The RPC's messages and their exact wire shapes.
//!
//! A conversation is a stream of MessagePack values on one TCP connection.
//! The client sends a request header `{Command, Seq}`, followed by a body
//! map for the commands that take one ([`Command::has_body`]). The agent
//! answers with a response header `{Error, Seq}` echoing the `Seq`, followed
//! by a body for the commands that return one ([`Command::has_response_body`]),
//! even when `Error` is set. Streaming commands (`stream`, `monitor`,
//! `query`) first answer with a bare header, then keep pushing
//! header-and-record pairs under the same `Seq`.
//!
//! Field names, their order (go-msgpack sorts them) and their integer and
//! byte types are those of the Go agent (`cmd/serf/command/agent/ipc.go`)
//! and client (`client/const.go`); see [`crate::msgpack`] for the encoding
//! rules.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use crate::msgpack::Value;
use crate::types::{
    Coordinate, EventRecord, KeyResponse, Member, MemberStatus, QueryRecord, Stats, UserEvent,
};

/// The only protocol version there is.
pub const IPC_VERSION: i32 = 1;

/// Error strings the Go agent answers with, which clients compare against.
pub mod errors {
    pub const UNSUPPORTED_COMMAND: &str = "Unsupported command";
    pub const UNSUPPORTED_IPC_VERSION: &str = "Unsupported IPC version";
    pub const DUPLICATE_HANDSHAKE: &str = "Handshake already performed";
    pub const HANDSHAKE_REQUIRED: &str = "Handshake required";
    pub const MONITOR_EXISTS: &str = "Monitor already exists";
    pub const INVALID_FILTER: &str = "Invalid event filter";
    pub const STREAM_EXISTS: &str = "Stream with given sequence exists";
    pub const INVALID_QUERY_ID: &str = "No pending queries matching ID";
    pub const AUTH_REQUIRED: &str = "Authentication required";
    pub const INVALID_AUTH_TOKEN: &str = "Invalid authentication token";
}

/// Query record types.
pub const QUERY_RECORD_ACK: &str = "ack";
pub const QUERY_RECORD_RESPONSE: &str = "response";
pub const QUERY_RECORD_DONE: &str = "done";

/// The commands, by their wire names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Command {
    Handshake,
    Auth,
    Event,
    ForceLeave,
    Join,
    Members,
    MembersFiltered,
    Stream,
    Stop,
    Monitor,
    Leave,
    InstallKey,
    UseKey,
    RemoveKey,
    ListKeys,
    Tags,
    Query,
    Respond,
    Stats,
    GetCoordinate,
}

impl Command {
    pub const ALL: [Command; 20] = [
        Command::Handshake,
        Command::Auth,
        Command::Event,
        Command::ForceLeave,
        Command::Join,
        Command::Members,
        Command::MembersFiltered,
        Command::Stream,
        Command::Stop,
        Command::Monitor,
        Command::Leave,
        Command::InstallKey,
        Command::UseKey,
        Command::RemoveKey,
        Command::ListKeys,
        Command::Tags,
        Command::Query,
        Command::Respond,
        Command::Stats,
        Command::GetCoordinate,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Command::Handshake => "handshake",
            Command::Auth => "auth",
            Command::Event => "event",
            Command::ForceLeave => "force-leave",
            Command::Join => "join",
            Command::Members => "members",
            Command::MembersFiltered => "members-filtered",
            Command::Stream => "stream",
            Command::Stop => "stop",
            Command::Monitor => "monitor",
            Command::Leave => "leave",
            Command::InstallKey => "install-key",
            Command::UseKey => "use-key",
            Command::RemoveKey => "remove-key",
            Command::ListKeys => "list-keys",
            Command::Tags => "tags",
            Command::Query => "query",
            Command::Respond => "respond",
            Command::Stats => "stats",
            Command::GetCoordinate => "get-coordinate",
        }
    }

    pub fn parse(name: &str) -> Option<Command> {
        Command::ALL.into_iter().find(|c| c.name() == name)
    }

    /// Whether a request body follows the header.
    pub fn has_body(self) -> bool {
        !matches!(
            self,
            Command::Members | Command::Leave | Command::ListKeys | Command::Stats
        )
    }

    /// Whether the (first) response header is followed by a body.
    pub fn has_response_body(self) -> bool {
        matches!(
            self,
            Command::Join
                | Command::Members
                | Command::MembersFiltered
                | Command::InstallKey
                | Command::UseKey
                | Command::RemoveKey
                | Command::ListKeys
                | Command::Stats
                | Command::GetCoordinate
        )
    }
}

/// A body did not have the shape its command needs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShapeError {
    #[error("{what}: expected a map")]
    NotAMap { what: &'static str },
    #[error("{what}.{field}: expected {expected}")]
    Field {
        what: &'static str,
        field: String,
        expected: &'static str,
    },
}

/// Walks the fields of a Go struct body. `nil` reads as an empty struct.
struct Fields<'a> {
    what: &'static str,
    entries: &'a [(Value, Value)],
}

impl<'a> Fields<'a> {
    fn of(value: &'a Value, what: &'static str) -> Result<Fields<'a>, ShapeError> {
        match value {
            Value::Nil => Ok(Fields { what, entries: &[] }),
            Value::Map(entries) => Ok(Fields { what, entries }),
            _ => Err(ShapeError::NotAMap { what }),
        }
    }

    /// Calls `f(name, value)` for each field with a text key.
    fn each(
        &self,
        mut f: impl FnMut(&str, &'a Value) -> Result<(), ShapeError>,
    ) -> Result<(), ShapeError> {
        for (k, v) in self.entries {
            if let Some(name) = k.as_text() {
                f(&name, v)?;
            }
        }
        Ok(())
    }

    fn bad(&self, field: &str, expected: &'static str) -> ShapeError {
        ShapeError::Field {
            what: self.what,
            field: field.to_owned(),
            expected,
        }
    }

    fn text(&self, field: &str, v: &Value) -> Result<String, ShapeError> {
        match v {
            Value::Nil => Ok(String::new()),
            v => v.as_text().ok_or_else(|| self.bad(field, "a string")),
        }
    }

    fn bytes(&self, field: &str, v: &Value) -> Result<Vec<u8>, ShapeError> {
        match v {
            Value::Nil => Ok(Vec::new()),
            v => v
                .as_byte_slice()
                .map(<[u8]>::to_vec)
                .ok_or_else(|| self.bad(field, "bytes")),
        }
    }

    fn boolean(&self, field: &str, v: &Value) -> Result<bool, ShapeError> {
        match v {
            Value::Nil => Ok(false),
            v => v.as_bool().ok_or_else(|| self.bad(field, "a bool")),
        }
    }

    fn unsigned<T: TryFrom<u64>>(&self, field: &str, v: &Value) -> Result<T, ShapeError> {
        match v {
            Value::Nil => T::try_from(0).map_err(|_| self.bad(field, "an unsigned integer")),
            v => v
                .as_u64()
                .and_then(|u| T::try_from(u).ok())
                .ok_or_else(|| self.bad(field, "an unsigned integer in range")),
        }
    }

    fn signed<T: TryFrom<i64>>(&self, field: &str, v: &Value) -> Result<T, ShapeError> {
        match v {
            Value::Nil => T::try_from(0).map_err(|_| self.bad(field, "an integer")),
            v => v
                .as_i64()
                .and_then(|i| T::try_from(i).ok())
                .ok_or_else(|| self.bad(field, "an integer in range")),
        }
    }

    fn float(&self, field: &str, v: &Value) -> Result<f64, ShapeError> {
        match v {
            Value::Nil => Ok(0.0),
            v => v.as_f64().ok_or_else(|| self.bad(field, "a number")),
        }
    }

    fn strings(&self, field: &str, v: &Value) -> Result<Vec<String>, ShapeError> {
        match v {
            Value::Nil => Ok(Vec::new()),
            Value::Array(items) => items
                .iter()
                .map(|i| match i {
                    Value::Nil => Ok(String::new()),
                    i => i
                        .as_text()
                        .ok_or_else(|| self.bad(field, "a list of strings")),
                })
                .collect(),
            _ => Err(self.bad(field, "a list of strings")),
        }
    }

    fn string_map(&self, field: &str, v: &Value) -> Result<BTreeMap<String, String>, ShapeError> {
        string_map(v).ok_or_else(|| self.bad(field, "a map of strings"))
    }

    fn int_map(&self, field: &str, v: &Value) -> Result<BTreeMap<String, i64>, ShapeError> {
        match v {
            Value::Nil => Ok(BTreeMap::new()),
            Value::Map(entries) => entries
                .iter()
                .map(|(k, v)| match (k.as_text(), v.as_i64()) {
                    (Some(k), Some(v)) => Ok((k, v)),
                    _ => Err(self.bad(field, "a map of string to integer")),
                })
                .collect(),
            _ => Err(self.bad(field, "a map of string to integer")),
        }
    }
}

/// A `map[string]string`; `nil` is empty, a `nil` value is "".
fn string_map(v: &Value) -> Option<BTreeMap<String, String>> {
    match v {
        Value::Nil => Some(BTreeMap::new()),
        Value::Map(entries) => entries
            .iter()
            .map(|(k, v)| {
                let v = match v {
                    Value::Nil => Some(String::new()),
                    v => v.as_text(),
                };
                Some((k.as_text()?, v?))
            })
            .collect(),
        _ => None,
    }
}

/// `{Command, Seq}`, before every request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHeader {
    pub command: String,
    pub seq: u64,
}

impl RequestHeader {
    pub fn to_value(&self) -> Value {
        Value::go_struct(vec![
            ("Command", Value::str(self.command.as_str())),
            ("Seq", Value::Uint(self.seq)),
        ])
    }

    pub fn from_value(v: &Value) -> Result<RequestHeader, ShapeError> {
        let f = Fields::of(v, "requestHeader")?;
        let mut h = RequestHeader {
            command: String::new(),
            seq: 0,
        };
        f.each(|name, v| {
            match name {
                "Command" => h.command = f.text(name, v)?,
                "Seq" => h.seq = f.unsigned(name, v)?,
                _ => {}
            }
            Ok(())
        })?;
        Ok(h)
    }
}

/// `{Error, Seq}`, before every response and every pushed record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHeader {
    pub seq: u64,
    /// Empty on success.
    pub error: String,
}

impl ResponseHeader {
    pub fn ok(seq: u64) -> ResponseHeader {
        ResponseHeader {
            seq,
            error: String::new(),
        }
    }

    pub fn error(seq: u64, error: impl Into<String>) -> ResponseHeader {
        ResponseHeader {
            seq,
            error: error.into(),
        }
    }

    pub fn to_value(&self) -> Value {
        Value::go_struct(vec![
            ("Error", Value::str(self.error.as_str())),
            ("Seq", Value::Uint(self.seq)),
        ])
    }

    /// Lenient, as the Go client is: a value that is not a header (a stray
    /// record body) reads as `Seq` 0, which no request ever uses.
    pub fn from_value(v: &Value) -> ResponseHeader {
        let mut h = ResponseHeader::ok(0);
        if let Ok(f) = Fields::of(v, "responseHeader") {
            let _ = f.each(|name, v| {
                match name {
                    "Seq" => h.seq = f.unsigned(name, v)?,
                    "Error" => h.error = f.text(name, v)?,
                    _ => {}
                }
                Ok(())
            });
        }
        h
    }
}

/// Generates a body struct with a `to_value`/`from_value` pair from a list
/// of (wire name, Rust field, kind) triples.
macro_rules! body {
    (
        $(#[$meta:meta])*
        $name:ident, $go:literal {
            $( $(#[$fmeta:meta])* $wire:literal => $field:ident : $ty:ty as $kind:ident ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Default, PartialEq)]
        pub struct $name {
            $( $(#[$fmeta])* pub $field: $ty, )*
        }

        impl $name {
            pub fn to_value(&self) -> Value {
                Value::go_struct(vec![
                    $( ($wire, body!(@enc $kind, &self.$field)), )*
                ])
            }

            pub fn from_value(v: &Value) -> Result<$name, ShapeError> {
                let f = Fields::of(v, $go)?;
                let mut out = $name::default();
                f.each(|name, v| {
                    match name {
                        $( $wire => out.$field = body!(@dec $kind, f, name, v), )*
                        _ => {}
                    }
                    Ok(())
                })?;
                Ok(out)
            }
        }
    };
    (@enc text, $e:expr) => { Value::str($e.as_str()) };
    (@enc bytes, $e:expr) => { Value::bytes_or_nil($e) };
    (@enc boolean, $e:expr) => { Value::Bool(*$e) };
    (@enc unsigned, $e:expr) => { Value::Uint(u64::from(*$e)) };
    (@enc signed, $e:expr) => { Value::Int(i64::from(*$e)) };
    (@enc strings, $e:expr) => { Value::strings_or_nil($e) };
    (@enc string_map, $e:expr) => { Value::string_map($e) };
    (@dec text, $f:ident, $n:ident, $v:ident) => { $f.text($n, $v)? };
    (@dec bytes, $f:ident, $n:ident, $v:ident) => { $f.bytes($n, $v)? };
    (@dec boolean, $f:ident, $n:ident, $v:ident) => { $f.boolean($n, $v)? };
    (@dec unsigned, $f:ident, $n:ident, $v:ident) => { $f.unsigned($n, $v)? };
    (@dec signed, $f:ident, $n:ident, $v:ident) => { $f.signed($n, $v)? };
    (@dec strings, $f:ident, $n:ident, $v:ident) => { $f.strings($n, $v)? };
    (@dec string_map, $f:ident, $n:ident, $v:ident) => { $f.string_map($n, $v)? };
}

body!(
    /// `handshake`: the protocol version the client speaks.
    HandshakeRequest, "handshakeRequest" {
        "Version" => version: i32 as signed,
    }
);

body!(
    /// `auth`: the agent's RPC token.
    AuthRequest, "authRequest" {
        "AuthKey" => auth_key: String as text,
    }
);

body!(
    /// `get-coordinate`.
    CoordinateRequest, "coordinateRequest" {
        "Node" => node: String as text,
    }
);

body!(
    /// `event`: fire a user event.
    EventRequest, "eventRequest" {
        "Name" => name: String as text,
        "Payload" => payload: Vec<u8> as bytes,
        "Coalesce" => coalesce: bool as boolean,
    }
);

body!(
    /// `force-leave`.
    ForceLeaveRequest, "forceLeaveRequest" {
        "Node" => node: String as text,
        "Prune" => prune: bool as boolean,
    }
);

body!(
    /// `join`.
    JoinRequest, "joinRequest" {
        "Existing" => existing: Vec<String> as strings,
        "Replay" => replay: bool as boolean,
    }
);

body!(
    /// `join`'s answer: how many nodes were contacted.
    JoinResponse, "joinResponse" {
        "Num" => num: i32 as signed,
    }
);

body!(
    /// `members-filtered`: anchored regular expressions on tags, status and
    /// name (an empty status or name does not filter).
    MembersFilteredRequest, "membersFilteredRequest" {
        "Tags" => tags: BTreeMap<String, String> as string_map,
        "Status" => status: String as text,
        "Name" => name: String as text,
    }
);

body!(
    /// `install-key`, `use-key`, `remove-key`.
    KeyRequest, "keyRequest" {
        "Key" => key: String as text,
    }
);

body!(
    /// `monitor`: the lowest level to stream.
    MonitorRequest, "monitorRequest" {
        "LogLevel" => log_level: String as text,
    }
);

body!(
    /// `stream`: an event filter such as `member-join,user:deploy`.
    StreamRequest, "streamRequest" {
        "Type" => filter: String as text,
    }
);

body!(
    /// `stop`: the `Seq` of the stream or monitor to end.
    StopRequest, "stopRequest" {
        "Stop" => stop: u64 as unsigned,
    }
);

body!(
    /// `tags`: tags to set, tags to delete.
    TagsRequest, "tagsRequest" {
        "Tags" => tags: BTreeMap<String, String> as string_map,
        "DeleteTags" => delete_tags: Vec<String> as strings,
    }
);

body!(
    /// `respond`: answer a query received on an event stream.
    RespondRequest, "respondRequest" {
        "ID" => id: u64 as unsigned,
        "Payload" => payload: Vec<u8> as bytes,
    }
);

body!(
    /// A `monitor` record.
    LogRecord, "logRecord" {
        "Log" => log: String as text,
    }
);

/// `query`: start a query; `Timeout` is a Go `time.Duration` (nanoseconds,
/// signed).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueryRequest {
    pub filter_nodes: Vec<String>,
    pub filter_tags: BTreeMap<String, String>,
    pub request_ack: bool,
    pub relay_factor: u8,
    pub timeout: Duration,
    pub name: String,
    pub payload: Vec<u8>,
}

impl QueryRequest {
    pub fn to_value(&self) -> Value {
        let nanos = i64::try_from(self.timeout.as_nanos()).unwrap_or(i64::MAX);
        Value::go_struct(vec![
            ("FilterNodes", Value::strings_or_nil(&self.filter_nodes)),
            ("FilterTags", Value::string_map(&self.filter_tags)),
            ("RequestAck", Value::Bool(self.request_ack)),
            ("RelayFactor", Value::Uint(u64::from(self.relay_factor))),
            ("Timeout", Value::Int(nanos)),
            ("Name", Value::str(self.name.as_str())),
            ("Payload", Value::bytes_or_nil(&self.payload)),
        ])
    }

    pub fn from_value(v: &Value) -> Result<QueryRequest, ShapeError> {
        let f = Fields::of(v, "queryRequest")?;
        let mut q = QueryRequest::default();
        f.each(|name, v| {
            match name {
                "FilterNodes" => q.filter_nodes = f.strings(name, v)?,
                "FilterTags" => q.filter_tags = f.string_map(name, v)?,
                "RequestAck" => q.request_ack = f.boolean(name, v)?,
                "RelayFactor" => q.relay_factor = f.unsigned(name, v)?,
                "Timeout" => {
                    // A negative duration means "no timeout given" to Serf.
                    let nanos: i64 = f.signed(name, v)?;
                    q.timeout = Duration::from_nanos(u64::try_from(nanos).unwrap_or(0));
                }
                "Name" => q.name = f.text(name, v)?,
                "Payload" => q.payload = f.bytes(name, v)?,
                _ => {}
            }
            Ok(())
        })?;
        Ok(q)
    }
}

/// A member as the RPC carries it.
pub fn member_to_value(m: &Member) -> Value {
    let addr = match m.addr {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    };
    Value::go_struct(vec![
        ("Name", Value::str(m.name.as_str())),
        ("Addr", Value::Bin(addr)),
        ("Port", Value::Uint(u64::from(m.port))),
        ("Tags", Value::string_map(&m.tags)),
        ("Status", Value::str(m.status.as_str())),
        ("ProtocolMin", Value::Uint(u64::from(m.protocol_min))),
        ("ProtocolMax", Value::Uint(u64::from(m.protocol_max))),
        ("ProtocolCur", Value::Uint(u64::from(m.protocol_cur))),
        ("DelegateMin", Value::Uint(u64::from(m.delegate_min))),
        ("DelegateMax", Value::Uint(u64::from(m.delegate_max))),
        ("DelegateCur", Value::Uint(u64::from(m.delegate_cur))),
    ])
}

/// Go's `net.IP` bytes: 4 or 16 (an IPv4-mapped IPv6 address reads as the
/// IPv4 address, as Go prints it); empty reads as 0.0.0.0.
fn ip_from_bytes(b: &[u8]) -> Option<IpAddr> {
    match b.len() {
        0 => Some(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
        4 => {
            let o: [u8; 4] = b.try_into().ok()?;
            Some(IpAddr::V4(Ipv4Addr::from(o)))
        }
        16 => {
            let o: [u8; 16] = b.try_into().ok()?;
            let v6 = Ipv6Addr::from(o);
            Some(match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => IpAddr::V6(v6),
            })
        }
        _ => None,
    }
}

pub fn member_from_value(v: &Value) -> Result<Member, ShapeError> {
    let f = Fields::of(v, "Member")?;
    let mut m = Member::named("");
    m.status = MemberStatus::None;
    f.each(|name, v| {
        match name {
            "Name" => m.name = f.text(name, v)?,
            "Addr" => {
                let bytes = f.bytes(name, v)?;
                m.addr = ip_from_bytes(&bytes).ok_or_else(|| f.bad(name, "4 or 16 bytes"))?;
            }
            "Port" => m.port = f.unsigned(name, v)?,
            "Tags" => m.tags = f.string_map(name, v)?,
            "Status" => m.status = MemberStatus::parse(&f.text(name, v)?),
            "ProtocolMin" => m.protocol_min = f.unsigned(name, v)?,
            "ProtocolMax" => m.protocol_max = f.unsigned(name, v)?,
            "ProtocolCur" => m.protocol_cur = f.unsigned(name, v)?,
            "DelegateMin" => m.delegate_min = f.unsigned(name, v)?,
            "DelegateMax" => m.delegate_max = f.unsigned(name, v)?,
            "DelegateCur" => m.delegate_cur = f.unsigned(name, v)?,
            _ => {}
        }
        Ok(())
    })?;
    Ok(m)
}

fn members_list(f: &Fields<'_>, field: &str, v: &Value) -> Result<Vec<Member>, ShapeError> {
    match v {
        Value::Nil => Ok(Vec::new()),
        Value::Array(items) => items.iter().map(member_from_value).collect(),
        _ => Err(f.bad(field, "a list of members")),
    }
}

/// `members` / `members-filtered` answer: `{Members}`.
pub fn members_response_to_value(members: &[Member]) -> Value {
    Value::go_struct(vec![(
        "Members",
        Value::Array(members.iter().map(member_to_value).collect()),
    )])
}

pub fn members_response_from_value(v: &Value) -> Result<Vec<Member>, ShapeError> {
    let f = Fields::of(v, "membersResponse")?;
    let mut members = Vec::new();
    f.each(|name, v| {
        if name == "Members" {
            members = members_list(&f, name, v)?;
        }
        Ok(())
    })?;
    Ok(members)
}

/// Key-ring answers: `{Keys, Messages, NumErr, NumNodes, NumResp}`.
/// `Keys` is a map for `list-keys` (`listing`) and `nil` otherwise, as the
/// Go agent sends it; `Messages` is always a map. `PrimaryKeys`, which Serf
/// 0.10 agents add to `list-keys`, is written only when there are any, so
/// the bytes stay those of the 0.9 agent otherwise.
pub fn key_response_to_value(r: &KeyResponse, listing: bool) -> Value {
    let mut fields = vec![
        ("Messages", Value::string_map(&r.messages)),
        (
            "Keys",
            if listing {
                Value::int_map(&r.keys)
            } else {
                Value::Nil
            },
        ),
        ("NumNodes", Value::Int(r.num_nodes)),
        ("NumErr", Value::Int(r.num_err)),
        ("NumResp", Value::Int(r.num_resp)),
    ];
    if !r.primary_keys.is_empty() {
        fields.push(("PrimaryKeys", Value::int_map(&r.primary_keys)));
    }
    Value::go_struct(fields)
}

pub fn key_response_from_value(v: &Value) -> Result<KeyResponse, ShapeError> {
    let f = Fields::of(v, "keyResponse")?;
    let mut r = KeyResponse::default();
    f.each(|name, v| {
        match name {
            "Messages" => r.messages = f.string_map(name, v)?,
            "Keys" => r.keys = f.int_map(name, v)?,
            "PrimaryKeys" => r.primary_keys = f.int_map(name, v)?,
            "NumNodes" => r.num_nodes = f.signed(name, v)?,
            "NumErr" => r.num_err = f.signed(name, v)?,
            "NumResp" => r.num_resp = f.signed(name, v)?,
            _ => {}
        }
        Ok(())
    })?;
    Ok(r)
}

/// `stats` answer: a map of maps of strings.
pub fn stats_to_value(stats: &Stats) -> Value {
    Value::Map(
        stats
            .iter()
            .map(|(k, v)| (Value::str(k.as_str()), Value::string_map(v)))
            .collect(),
    )
}

pub fn stats_from_value(v: &Value) -> Result<Stats, ShapeError> {
    let bad = || ShapeError::Field {
        what: "stats",
        field: String::new(),
        expected: "a map of maps of strings",
    };
    match v {
        Value::Nil => Ok(Stats::new()),
        Value::Map(entries) => entries
            .iter()
            .map(|(k, v)| Ok((k.as_text().ok_or_else(bad)?, string_map(v).ok_or_else(bad)?)))
            .collect(),
        _ => Err(bad()),
    }
}

/// A Vivaldi coordinate: `{Adjustment, Error, Height, Vec}`; an empty
/// vector is `nil` (Go's zero coordinate).
pub fn coordinate_to_value(c: &Coordinate) -> Value {
    let vec = if c.vec.is_empty() {
        Value::Nil
    } else {
        Value::Array(c.vec.iter().map(|f| Value::F64(*f)).collect())
    };
    Value::go_struct(vec![
        ("Vec", vec),
        ("Error", Value::F64(c.error)),
        ("Adjustment", Value::F64(c.adjustment)),
        ("Height", Value::F64(c.height)),
    ])
}

pub fn coordinate_from_value(v: &Value) -> Result<Coordinate, ShapeError> {
    let f = Fields::of(v, "Coordinate")?;
    let mut c = Coordinate {
        vec: Vec::new(),
        error: 0.0,
        adjustment: 0.0,
        height: 0.0,
    };
    f.each(|name, v| {
        match name {
            "Vec" => {
                c.vec = match v {
                    Value::Nil => Vec::new(),
                    Value::Array(items) => items
                        .iter()
                        .map(|i| i.as_f64().ok_or_else(|| f.bad(name, "a list of numbers")))
                        .collect::<Result<_, _>>()?,
                    _ => return Err(f.bad(name, "a list of numbers")),
                }
            }
            "Error" => c.error = f.float(name, v)?,
            "Adjustment" => c.adjustment = f.float(name, v)?,
            "Height" => c.height = f.float(name, v)?,
            _ => {}
        }
        Ok(())
    })?;
    Ok(c)
}

/// `get-coordinate` answer: `{Coord, Ok}`; when the node is unknown, `Coord`
/// is Go's zero coordinate and `Ok` false.
pub fn coordinate_response_to_value(c: Option<&Coordinate>) -> Value {
    let zero = Coordinate {
        vec: Vec::new(),
        error: 0.0,
        adjustment: 0.0,
        height: 0.0,
    };
    Value::go_struct(vec![
        ("Coord", coordinate_to_value(c.unwrap_or(&zero))),
        ("Ok", Value::Bool(c.is_some())),
    ])
}

pub fn coordinate_response_from_value(v: &Value) -> Result<Option<Coordinate>, ShapeError> {
    let f = Fields::of(v, "coordinateResponse")?;
    let mut coord = None;
    let mut ok = false;
    f.each(|name, v| {
        match name {
            "Coord" => coord = Some(coordinate_from_value(v)?),
            "Ok" => ok = f.boolean(name, v)?,
            _ => {}
        }
        Ok(())
    })?;
    Ok(if ok { coord } else { None })
}

/// A query's pushed record: `{From, Payload, Type}`.
pub fn query_record_to_value(record: Option<&QueryRecord>) -> Value {
    let (kind, from, payload): (&str, &str, &[u8]) = match record {
        Some(QueryRecord::Ack { from }) => (QUERY_RECORD_ACK, from, &[]),
        Some(QueryRecord::Response { from, payload }) => (QUERY_RECORD_RESPONSE, from, payload),
        None => (QUERY_RECORD_DONE, "", &[]),
    };
    Value::go_struct(vec![
        ("Type", Value::str(kind)),
        ("From", Value::str(from)),
        ("Payload", Value::bytes_or_nil(payload)),
    ])
}

/// What a pushed query record said.
#[derive(Debug, Clone, PartialEq)]
pub enum QueryPush {
    Record(QueryRecord),
    Done,
    /// A record type this side does not know (skipped).
    Unknown(String),
}

pub fn query_record_from_value(v: &Value) -> Result<QueryPush, ShapeError> {
    let f = Fields::of(v, "queryRecord")?;
    let (mut kind, mut from, mut payload) = (String::new(), String::new(), Vec::new());
    f.each(|name, v| {
        match name {
            "Type" => kind = f.text(name, v)?,
            "From" => from = f.text(name, v)?,
            "Payload" => payload = f.bytes(name, v)?,
            _ => {}
        }
        Ok(())
    })?;
    Ok(match kind.as_str() {
        QUERY_RECORD_ACK => QueryPush::Record(QueryRecord::Ack { from }),
        QUERY_RECORD_RESPONSE => QueryPush::Record(QueryRecord::Response { from, payload }),
        QUERY_RECORD_DONE => QueryPush::Done,
        _ => QueryPush::Unknown(kind),
    })
}

/// A member event record: `{Event, Members}`.
pub fn member_event_to_value(event: &str, members: &[Member]) -> Value {
    Value::go_struct(vec![
        ("Event", Value::str(event)),
        (
            "Members",
            Value::Array(members.iter().map(member_to_value).collect()),
        ),
    ])
}

/// A user event record: `{Coalesce, Event, LTime, Name, Payload}`.
pub fn user_event_to_value(e: &UserEvent) -> Value {
    Value::go_struct(vec![
        ("Event", Value::str("user")),
        ("LTime", Value::Uint(e.ltime)),
        ("Name", Value::str(e.name.as_str())),
        ("Payload", Value::bytes_or_nil(&e.payload)),
        ("Coalesce", Value::Bool(e.coalesce)),
    ])
}

/// A query event record: `{Event, ID, LTime, Name, Payload}`.
pub fn query_event_to_value(id: u64, ltime: u64, name: &str, payload: &[u8]) -> Value {
    Value::go_struct(vec![
        ("Event", Value::str("query")),
        ("ID", Value::Uint(id)),
        ("LTime", Value::Uint(ltime)),
        ("Name", Value::str(name)),
        ("Payload", Value::bytes_or_nil(payload)),
    ])
}

/// Reads an event-stream record; `None` for an event type this side does
/// not know.
pub fn event_record_from_value(v: &Value) -> Result<Option<EventRecord>, ShapeError> {
    let f = Fields::of(v, "eventRecord")?;
    let mut event = String::new();
    let (mut ltime, mut id) = (0u64, 0u64);
    let (mut name, mut payload, mut coalesce) = (String::new(), Vec::new(), false);
    let mut members = Vec::new();
    f.each(|field, v| {
        match field {
            "Event" => event = f.text(field, v)?,
            "LTime" => ltime = f.unsigned(field, v)?,
            "ID" => id = f.unsigned(field, v)?,
            "Name" => name = f.text(field, v)?,
            "Payload" => payload = f.bytes(field, v)?,
            "Coalesce" => coalesce = f.boolean(field, v)?,
            "Members" => members = members_list(&f, field, v)?,
            _ => {}
        }
        Ok(())
    })?;
    Ok(match event.as_str() {
        "user" => Some(EventRecord::User(UserEvent {
            ltime,
            name,
            payload,
            coalesce,
        })),
        "query" => Some(EventRecord::Query {
            id,
            ltime,
            name,
            payload,
        }),
        e if e.starts_with("member-") => Some(EventRecord::Member { event, members }),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msgpack::{from_bytes, to_bytes};

    /// Hand-assembled msgpack, the way go-msgpack writes it: the tests
    /// spell each expected encoding out so a change of shape is visible.
    struct Go(Vec<u8>);

    impl Go {
        fn new() -> Go {
            Go(Vec::new())
        }
        fn map(mut self, n: u8) -> Go {
            self.0.push(0x80 | n);
            self
        }
        fn arr(mut self, n: u8) -> Go {
            self.0.push(0x90 | n);
            self
        }
        fn s(mut self, s: &str) -> Go {
            assert!(s.len() < 32);
            self.0.push(0xa0 | s.len() as u8);
            self.0.extend_from_slice(s.as_bytes());
            self
        }
        fn bin(mut self, b: &[u8]) -> Go {
            self.0.push(0xc4);
            self.0.push(b.len() as u8);
            self.0.extend_from_slice(b);
            self
        }
        fn raw(mut self, b: &[u8]) -> Go {
            self.0.extend_from_slice(b);
            self
        }
        fn nil(self) -> Go {
            self.raw(&[0xc0])
        }
        fn f64(self, f: f64) -> Go {
            let mut g = self.raw(&[0xcb]);
            g.0.extend_from_slice(&f.to_bits().to_be_bytes());
            g
        }
    }

    #[test]
    fn request_header_bytes() {
        let h = RequestHeader {
            command: "members".into(),
            seq: 300,
        };
        let want = Go::new()
            .map(2)
            .s("Command")
            .s("members")
            .s("Seq")
            .raw(&[0xcd, 0x01, 0x2c]);
        assert_eq!(to_bytes(&h.to_value()), want.0);
        assert_eq!(RequestHeader::from_value(&h.to_value()), Ok(h));
    }

    #[test]
    fn response_header_bytes_and_leniency() {
        let h = ResponseHeader::error(1, errors::HANDSHAKE_REQUIRED);
        let want = Go::new()
            .map(2)
            .s("Error")
            .s("Handshake required")
            .s("Seq")
            .raw(&[0x01]);
        assert_eq!(to_bytes(&h.to_value()), want.0);
        // A record body read where a header was expected is Seq 0.
        let stray = LogRecord { log: "x".into() }.to_value();
        assert_eq!(ResponseHeader::from_value(&stray), ResponseHeader::ok(0));
        assert_eq!(
            ResponseHeader::from_value(&Value::Uint(3)),
            ResponseHeader::ok(0)
        );
    }

    #[test]
    fn handshake_and_event_bytes() {
        let hs = HandshakeRequest { version: 1 };
        assert_eq!(
            to_bytes(&hs.to_value()),
            Go::new().map(1).s("Version").raw(&[0x01]).0
        );
        let ev = EventRequest {
            name: "deploy".into(),
            payload: b"v1".to_vec(),
            coalesce: true,
        };
        let want = Go::new()
            .map(3)
            .s("Coalesce")
            .raw(&[0xc3])
            .s("Name")
            .s("deploy")
            .s("Payload")
            .bin(b"v1");
        assert_eq!(to_bytes(&ev.to_value()), want.0);
        // No payload: Go sends a nil slice.
        let bare = EventRequest {
            name: "x".into(),
            ..Default::default()
        };
        let want = Go::new()
            .map(3)
            .s("Coalesce")
            .raw(&[0xc2])
            .s("Name")
            .s("x")
            .s("Payload")
            .nil();
        assert_eq!(to_bytes(&bare.to_value()), want.0);
    }

    #[test]
    fn member_bytes() {
        let mut m = Member::named("a");
        m.addr = "127.0.0.1"
            .parse()
            .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
        m.port = 7946;
        m.tags.insert("role".into(), "web".into());
        m.protocol_min = 1;
        m.protocol_max = 5;
        m.protocol_cur = 2;
        m.delegate_min = 2;
        m.delegate_max = 5;
        m.delegate_cur = 4;
        let want = Go::new()
            .map(11)
            .s("Addr")
            .bin(&[127, 0, 0, 1])
            .s("DelegateCur")
            .raw(&[4])
            .s("DelegateMax")
            .raw(&[5])
            .s("DelegateMin")
            .raw(&[2])
            .s("Name")
            .s("a")
            .s("Port")
            .raw(&[0xcd, 0x1f, 0x0a])
            .s("ProtocolCur")
            .raw(&[2])
            .s("ProtocolMax")
            .raw(&[5])
            .s("ProtocolMin")
            .raw(&[1])
            .s("Status")
            .s("alive")
            .s("Tags")
            .map(1)
            .s("role")
            .s("web");
        assert_eq!(to_bytes(&member_to_value(&m)), want.0);
        assert_eq!(member_from_value(&member_to_value(&m)), Ok(m.clone()));

        // Go's 16-byte form of an IPv4 address reads as IPv4; v6 stays v6.
        let mut mapped = [0u8; 16];
        mapped[10] = 0xff;
        mapped[11] = 0xff;
        mapped[12..].copy_from_slice(&[10, 0, 0, 9]);
        assert_eq!(
            ip_from_bytes(&mapped),
            Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 9)))
        );
        assert_eq!(
            ip_from_bytes(&Ipv6Addr::LOCALHOST.octets()),
            Some(IpAddr::V6(Ipv6Addr::LOCALHOST))
        );
        assert_eq!(ip_from_bytes(&[1, 2, 3]), None);
    }

    /// Bytes a serf 0.9.4 agent sent (`serf agent -node a -tag role=web`
    /// on 127.0.0.1:17946).
    #[test]
    fn captured_member_and_coordinate_bytes() {
        let captured: &[u8] = b"\x8b\xa4Addr\xc4\x04\x7f\x00\x00\x01\xabDelegateCur\x05\xabDelegateMax\x05\xabDelegateMin\x02\xa4Name\xa1a\xa4Port\xcdF\x1a\xabProtocolCur\x02\xabProtocolMax\x05\xabProtocolMin\x01\xa6Status\xa5alive\xa4Tags\x81\xa4role\xa3web";
        let member = from_bytes(captured).map(|v| member_from_value(&v));
        let Some(Ok(member)) = member else {
            panic!("captured member should decode: {member:?}")
        };
        assert_eq!(member.port, 17946);
        assert_eq!(member.delegate_cur, 5);
        assert_eq!(to_bytes(&member_to_value(&member)), captured);

        let unknown: &[u8] = b"\x82\xa5Coord\x84\xaaAdjustment\xcb\0\0\0\0\0\0\0\0\xa5Error\xcb\0\0\0\0\0\0\0\0\xa6Height\xcb\0\0\0\0\0\0\0\0\xa3Vec\xc0\xa2Ok\xc2";
        assert_eq!(to_bytes(&coordinate_response_to_value(None)), unknown);
    }

    #[test]
    fn member_decoding_is_lenient() {
        // Strings as bin, address as str, integers in wider forms, unknown
        // fields.
        let v = from_bytes(
            &Go::new()
                .map(5)
                .s("Name")
                .bin(b"n1")
                .s("Addr")
                .s("\u{7f}\0\0\u{1}")
                .s("Port")
                .raw(&[0xce, 0, 0, 0x1f, 0x0a])
                .s("Status")
                .s("left")
                .s("Future")
                .arr(1)
                .nil()
                .0,
        );
        let m = v.as_ref().map(member_from_value);
        let Some(Ok(m)) = m else {
            panic!("member should decode: {m:?}")
        };
        assert_eq!(m.name, "n1");
        assert_eq!(m.addr, IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)));
        assert_eq!(m.port, 7946);
        assert_eq!(m.status, MemberStatus::Left);
        // A port that does not fit u16 is an error, not a wrap.
        let bad = Go::new().map(1).s("Port").raw(&[0xce, 0, 1, 0, 0]);
        assert!(from_bytes(&bad.0).is_some_and(|v| member_from_value(&v).is_err()));
    }

    #[test]
    fn query_request_bytes() {
        let q = QueryRequest {
            filter_nodes: vec![],
            filter_tags: BTreeMap::new(),
            request_ack: true,
            relay_factor: 0,
            timeout: Duration::from_secs(2),
            name: "ping".into(),
            payload: vec![],
        };
        let want = Go::new()
            .map(7)
            .s("FilterNodes")
            .nil()
            .s("FilterTags")
            .map(0)
            .s("Name")
            .s("ping")
            .s("Payload")
            .nil()
            .s("RelayFactor")
            .raw(&[0])
            .s("RequestAck")
            .raw(&[0xc3])
            .s("Timeout")
            .raw(&[0xce, 0x77, 0x35, 0x94, 0x00]);
        assert_eq!(to_bytes(&q.to_value()), want.0);
        assert_eq!(QueryRequest::from_value(&q.to_value()), Ok(q));
        // A negative timeout is "none given".
        let neg = Go::new().map(1).s("Timeout").raw(&[0xff]);
        let parsed = from_bytes(&neg.0).map(|v| QueryRequest::from_value(&v));
        assert_eq!(
            parsed.and_then(Result::ok).map(|q| q.timeout),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn query_record_bytes() {
        let ack = query_record_to_value(Some(&QueryRecord::Ack { from: "a".into() }));
        let want = Go::new()
            .map(3)
            .s("From")
            .s("a")
            .s("Payload")
            .nil()
            .s("Type")
            .s("ack");
        assert_eq!(to_bytes(&ack), want.0);
        let done = query_record_to_value(None);
        assert_eq!(query_record_from_value(&done), Ok(QueryPush::Done));
        let resp = QueryRecord::Response {
            from: "b".into(),
            payload: b"pong".to_vec(),
        };
        assert_eq!(
            query_record_from_value(&query_record_to_value(Some(&resp))),
            Ok(QueryPush::Record(resp))
        );
    }

    #[test]
    fn key_response_bytes() {
        let mut r = KeyResponse {
            num_nodes: 2,
            num_resp: 2,
            ..Default::default()
        };
        r.keys.insert("k1".into(), 2);
        let want = Go::new()
            .map(5)
            .s("Keys")
            .map(1)
            .s("k1")
            .raw(&[2])
            .s("Messages")
            .map(0)
            .s("NumErr")
            .raw(&[0])
            .s("NumNodes")
            .raw(&[2])
            .s("NumResp")
            .raw(&[2]);
        assert_eq!(to_bytes(&key_response_to_value(&r, true)), want.0);
        assert_eq!(
            key_response_from_value(&key_response_to_value(&r, true)),
            Ok(r.clone())
        );

        // Captured from serf 0.9.4: `list-keys` on an agent without
        // encryption.
        let captured = b"\x85\xa4Keys\x80\xa8Messages\x81\xa1a\xd9)Keyring is empty (encryption not enabled)\xa6NumErr\x01\xa8NumNodes\x01\xa7NumResp\x01";
        let answer = KeyResponse {
            messages: BTreeMap::from([(
                "a".to_owned(),
                "Keyring is empty (encryption not enabled)".to_owned(),
            )]),
            num_err: 1,
            num_nodes: 1,
            num_resp: 1,
            ..Default::default()
        };
        assert_eq!(to_bytes(&key_response_to_value(&answer, true)), captured);

        // Other operations: Keys is nil; primary keys appear when known.
        let mut install = KeyResponse::default();
        let v = key_response_to_value(&install, false);
        assert_eq!(v.get("Keys"), Some(&Value::Nil));
        install.primary_keys.insert("k".into(), 1);
        let v = key_response_to_value(&install, true);
        assert_eq!(v.as_map().map(<[_]>::len), Some(6));
        assert_eq!(
            key_response_from_value(&v).map(|r| r.primary_keys),
            Ok(install.primary_keys)
        );
    }

    #[test]
    fn coordinate_bytes() {
        let c = Coordinate {
            vec: vec![0.5],
            error: 1.5,
            adjustment: 0.0,
            height: 1.0e-5,
        };
        let want = Go::new()
            .map(2)
            .s("Coord")
            .map(4)
            .s("Adjustment")
            .f64(0.0)
            .s("Error")
            .f64(1.5)
            .s("Height")
            .f64(1.0e-5)
            .s("Vec")
            .arr(1)
            .f64(0.5)
            .s("Ok")
            .raw(&[0xc3]);
        assert_eq!(to_bytes(&coordinate_response_to_value(Some(&c))), want.0);
        assert_eq!(
            coordinate_response_from_value(&coordinate_response_to_value(Some(&c))),
            Ok(Some(c))
        );
        let unknown = coordinate_response_to_value(None);
        assert_eq!(
            unknown.get("Coord").and_then(|c| c.get("Vec")),
            Some(&Value::Nil)
        );
        assert_eq!(coordinate_response_from_value(&unknown), Ok(None));
    }

    #[test]
    fn event_records_round_trip() {
        let ue = UserEvent {
            ltime: 9,
            name: "deploy".into(),
            payload: b"x".to_vec(),
            coalesce: false,
        };
        let v = user_event_to_value(&ue);
        let keys: Vec<String> = v
            .as_map()
            .unwrap_or(&[])
            .iter()
            .filter_map(|(k, _)| k.as_text())
            .collect();
        assert_eq!(keys, ["Coalesce", "Event", "LTime", "Name", "Payload"]);
        assert_eq!(event_record_from_value(&v), Ok(Some(EventRecord::User(ue))));

        let q = query_event_to_value(3, 4, "q", b"p");
        assert_eq!(
            event_record_from_value(&q),
            Ok(Some(EventRecord::Query {
                id: 3,
                ltime: 4,
                name: "q".into(),
                payload: b"p".to_vec()
            }))
        );
        let m = member_event_to_value("member-join", &[Member::named("a")]);
        assert_eq!(
            event_record_from_value(&m),
            Ok(Some(EventRecord::Member {
                event: "member-join".into(),
                members: vec![Member::named("a")]
            }))
        );
    }

    #[test]
    fn stats_round_trip() {
        let mut stats = Stats::new();
        stats
            .entry("agent".into())
            .or_default()
            .insert("name".into(), "a".into());
        stats.entry("tags".into()).or_default();
        assert_eq!(stats_from_value(&stats_to_value(&stats)), Ok(stats));
    }

    #[test]
    fn bodies_reject_wrong_types() {
        let v = Go::new().map(1).s("Version").s("one");
        let parsed = from_bytes(&v.0).map(|v| HandshakeRequest::from_value(&v));
        assert!(matches!(parsed, Some(Err(ShapeError::Field { .. }))));
        assert!(JoinRequest::from_value(&Value::Uint(1)).is_err());
        assert_eq!(
            JoinRequest::from_value(&Value::Nil),
            Ok(JoinRequest::default())
        );
    }

    #[test]
    fn commands_and_bodies() {
        for c in Command::ALL {
            assert_eq!(Command::parse(c.name()), Some(c));
        }
        assert!(!Command::Members.has_body());
        assert!(Command::MembersFiltered.has_body());
        assert!(Command::Stats.has_response_body());
        assert!(!Command::Stream.has_response_body());
        assert_eq!(Command::parse("nope"), None);
    }
}
