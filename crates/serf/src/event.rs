//! What the Serf core tells the layer above.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::clock::LamportTime;
use crate::member::Member;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MemberEventKind {
    Join,
    Leave,
    Failed,
    Update,
    Reap,
}

impl MemberEventKind {
    /// The name event handlers and the RPC stream use.
    pub fn as_str(self) -> &'static str {
        match self {
            MemberEventKind::Join => "member-join",
            MemberEventKind::Leave => "member-leave",
            MemberEventKind::Failed => "member-failed",
            MemberEventKind::Update => "member-update",
            MemberEventKind::Reap => "member-reap",
        }
    }
}

/// A query delivered to us, to be answered with [`crate::Serf::respond`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncomingQuery {
    pub ltime: LamportTime,
    pub id: u32,
    pub name: String,
    pub payload: Vec<u8>,
    pub source_node: String,
    /// Where responses go.
    pub reply_to: SocketAddr,
    pub relay_factor: u8,
    pub deadline: Instant,
}

/// The outcome of a query we sent, record by record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueryRecord {
    Ack {
        from: String,
    },
    Response {
        from: String,
        payload: Vec<u8>,
    },
    /// The query's time is up; no more records follow.
    Done,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Member {
        kind: MemberEventKind,
        members: Vec<Member>,
    },
    User {
        ltime: LamportTime,
        name: String,
        payload: Vec<u8>,
        coalesce: bool,
    },
    Query(IncomingQuery),
    /// A record for a query we started (`ltime` identifies it).
    QueryResult {
        ltime: LamportTime,
        record: QueryRecord,
    },
    /// A join finished: how many push-pulls succeeded, and why others failed.
    JoinResult {
        id: u64,
        joined: usize,
        errors: Vec<String>,
    },
    /// Our graceful leave finished (or timed out after `waited`).
    LeaveComplete {
        waited: Duration,
    },
    /// A key query changed our keyring; these are the keys now installed
    /// (base64, primary first), for the keyring file.
    KeyringChanged {
        keys: Vec<String>,
    },
    /// Another node won a name conflict against us: shut down.
    ConflictLost,
}
