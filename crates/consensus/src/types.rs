//! The one concrete openraft configuration, and conversions between
//! openraft's ids and ours.
//!
//! Everything openraft-typed stays inside this crate: other crates see
//! [`crate::RaftNode`], [`state::Command`] and plain integers.

use std::fmt;

use openraft::vote::leader_id_std;
use state::{Command, Outcome, ReleasedLock};

use crate::meta;
use crate::LogId;

/// How a Raft server is reached and named: the address of its server RPC
/// port (Consul's `:8300`), its node name and its node ID (a UUID, which
/// `/v1/operator/raft/configuration` reports). The numeric Raft id is kept
/// beside it by openraft.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct ServerNode {
    pub addr: String,
    pub name: String,
    pub uuid: String,
}

/// The payload of a normal log entry: one state-store command.
///
/// A newtype because openraft wants `Display` on entry payloads (for its
/// logs) and `Command` lives in another crate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Request(pub(crate) Command);

impl fmt::Display for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Command::Kv(op) => write!(f, "kv {:?} {:?}", op.verb, op.key),
            Command::Txn(ops) => write!(f, "txn of {} ops", ops.len()),
            Command::ReapTombstones { up_to } => write!(f, "reap tombstones up to {up_to}"),
            Command::Register(r) => write!(f, "register on node {:?}", r.node.name),
            Command::Deregister(d) => write!(f, "deregister on node {:?}", d.node),
            Command::SessionCreate(s) => write!(f, "create session {}", s.id),
            Command::SessionDestroy { id } => write!(f, "destroy session {id}"),
            Command::CoordinateBatchUpdate(updates) => {
                write!(f, "update {} coordinates", updates.len())
            }
            Command::PreparedQuerySet(q) => write!(f, "set prepared query {}", q.id),
            Command::PreparedQueryDelete { id } => write!(f, "delete prepared query {id}"),
            Command::Restore { state } => write!(f, "restore a snapshot of {} bytes", state.len()),
        }
    }
}

/// What applying one entry produced, handed back to the writer that
/// proposed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Response {
    /// A command was applied to the store at the entry's index.
    Applied {
        outcome: Outcome,
        released: Vec<ReleasedLock>,
    },
    /// A blank or membership entry: the store did not change.
    Nothing,
}

/// Praetor's openraft configuration: `u64` node ids and terms, standard
/// Raft leader ids (one leader per term, so a log id is just term and
/// index, as our log stores it), state-store commands as entries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct TypeConfig;

impl openraft::RaftTypeConfig for TypeConfig {
    type D = Request;
    type R = Response;
    type NodeId = u64;
    type Node = ServerNode;
    type Term = u64;
    type LeaderId = leader_id_std::LeaderId<u64, u64>;
    type Vote = openraft::Vote<Self::LeaderId>;
    type Payload = openraft::EntryPayload<Request, u64, ServerNode>;
    type Entry = openraft::Entry<CommittedLeaderId, Self::Payload>;
    type AsyncRuntime = openraft_rt_tokio::TokioRuntime;
    type Responder<T>
        = openraft::impls::ProgressResponder<Self, T>
    where
        T: openraft::OptionalSend + 'static;
    type Batch<T>
        = openraft::impls::InlineBatch<T>
    where
        T: openraft::OptionalSend + 'static;
    type ErrorSource = openraft::impls::BoxedErrorSource;
}

pub(crate) type CommittedLeaderId = leader_id_std::CommittedLeaderId<u64>;
/// openraft's log id under [`TypeConfig`].
pub(crate) type RaftLogId = openraft::LogId<CommittedLeaderId>;
/// openraft's vote under [`TypeConfig`].
pub(crate) type RaftVote = openraft::Vote<leader_id_std::LeaderId<u64, u64>>;
pub(crate) type RaftEntry = openraft::Entry<CommittedLeaderId, EntryPayload>;
pub(crate) type EntryPayload = openraft::EntryPayload<Request, u64, ServerNode>;
pub(crate) type Membership = openraft::Membership<u64, ServerNode>;
pub(crate) type StoredMembership = openraft::StoredMembership<CommittedLeaderId, u64, ServerNode>;
pub(crate) type SnapshotMeta = openraft::SnapshotMeta<CommittedLeaderId, u64, ServerNode>;
/// What openraft moves around as a snapshot's content: the state store's
/// snapshot bytes (`state::Snapshot::to_bytes`).
pub(crate) type SnapshotData = Vec<u8>;
pub(crate) type RaftSnapshot = openraft::Snapshot<CommittedLeaderId, u64, ServerNode, SnapshotData>;

pub(crate) fn to_raft_log_id(id: LogId) -> RaftLogId {
    openraft::LogId::new(CommittedLeaderId::new(id.term), id.index)
}

pub(crate) fn from_raft_log_id(id: &RaftLogId) -> LogId {
    LogId {
        term: id.leader_id.term,
        index: id.index,
    }
}

pub(crate) fn to_meta_vote(vote: &RaftVote) -> meta::Vote {
    meta::Vote {
        term: vote.leader_id.term,
        voted_for: Some(vote.leader_id.voted_for),
        committed: vote.committed,
    }
}

/// openraft's standard-Raft vote always names a candidate; a vote file
/// without one was not written by this adapter.
pub(crate) fn from_meta_vote(vote: meta::Vote) -> Option<RaftVote> {
    let candidate = vote.voted_for?;
    let mut raft = openraft::Vote::new(vote.term, candidate);
    raft.committed = vote.committed;
    Some(raft)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip() {
        let id = LogId { term: 7, index: 42 };
        assert_eq!(from_raft_log_id(&to_raft_log_id(id)), id);
        let vote = openraft::Vote::new_committed(9, 3);
        assert_eq!(from_meta_vote(to_meta_vote(&vote)), Some(vote));
        let vote = openraft::Vote::new(2, 0);
        assert_eq!(from_meta_vote(to_meta_vote(&vote)), Some(vote));
        let anonymous = meta::Vote {
            term: 1,
            voted_for: None,
            committed: false,
        };
        assert_eq!(from_meta_vote(anonymous), None);
    }
}
