//! The messages of the server port, as MessagePack maps with named fields.
//!
//! Raft's messages are our own shapes, converted to and from openraft's at
//! this edge, so an openraft upgrade cannot change what crosses the wire.
//! Log entries travel as the log stores them ([`crate::codec`]): a server
//! receiving entries decodes exactly what its own log would.

use serde::{Deserialize, Serialize};
use state::{CheckServiceNode, Command, Execution, Node, Outcome, PreparedQuery, ReleasedLock};

use crate::codec::{decode_entry, decode_snapshot_meta, encode_entry, encode_snapshot_meta};
use crate::types::{
    from_raft_log_id, to_raft_log_id, RaftEntry, RaftLogId, RaftVote, SnapshotMeta, TypeConfig,
};
use crate::wal::Entry;
use crate::LogId;

/// A message that cannot be turned into openraft's types.
#[derive(Debug, thiserror::Error)]
#[error("bad server RPC message: {0}")]
pub struct WireError(pub String);

type Pair = Option<(u64, u64)>;

fn pair(id: Option<&RaftLogId>) -> Pair {
    id.map(|id| {
        let id = from_raft_log_id(id);
        (id.term, id.index)
    })
}

fn unpair(pair: Pair) -> Option<RaftLogId> {
    pair.map(|(term, index)| to_raft_log_id(LogId { term, index }))
}

/// A vote: the candidate (or leader) it is for, in which term, and whether
/// a quorum granted it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireVote {
    pub term: u64,
    pub node: u64,
    pub committed: bool,
}

impl WireVote {
    pub(crate) fn from_raft(vote: &RaftVote) -> WireVote {
        WireVote {
            term: vote.leader_id.term,
            node: vote.leader_id.voted_for,
            committed: vote.committed,
        }
    }

    pub(crate) fn into_raft(self) -> RaftVote {
        let mut vote = openraft::Vote::new(self.term, self.node);
        vote.committed = self.committed;
        vote
    }
}

/// One log entry as the log stores it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WireEntry {
    pub term: u64,
    pub index: u64,
    #[serde(with = "serde_bytes")]
    pub payload: Vec<u8>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AppendRequest {
    pub vote: WireVote,
    pub prev: Pair,
    pub commit: Pair,
    pub entries: Vec<WireEntry>,
}

type RaftAppend = openraft::raft::AppendEntriesRequest<TypeConfig>;
type RaftAppendReply = openraft::raft::AppendEntriesResponse<TypeConfig>;

impl AppendRequest {
    pub(crate) fn from_raft(rpc: &RaftAppend) -> Result<AppendRequest, WireError> {
        let entries = rpc
            .entries
            .iter()
            .map(|e| {
                let Entry {
                    index,
                    term,
                    payload,
                } = encode_entry(e).map_err(|e| WireError(e.to_string()))?;
                Ok(WireEntry {
                    term,
                    index,
                    payload,
                })
            })
            .collect::<Result<_, WireError>>()?;
        Ok(AppendRequest {
            vote: WireVote::from_raft(&rpc.vote),
            prev: pair(rpc.prev_log_id.as_ref()),
            commit: pair(rpc.leader_commit.as_ref()),
            entries,
        })
    }

    pub(crate) fn into_raft(self) -> Result<RaftAppend, WireError> {
        let entries = self
            .entries
            .into_iter()
            .map(|e| {
                decode_entry(&Entry {
                    index: e.index,
                    term: e.term,
                    payload: e.payload,
                })
                .map_err(|e| WireError(e.to_string()))
            })
            .collect::<Result<Vec<RaftEntry>, WireError>>()?;
        Ok(RaftAppend {
            vote: self.vote.into_raft(),
            prev_log_id: unpair(self.prev),
            leader_commit: unpair(self.commit),
            entries,
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum AppendReply {
    Success,
    /// Accepted up to this log id (the rest of the batch was not).
    Partial(Pair),
    /// The follower's log does not hold `prev`.
    Conflict,
    /// The follower has seen a newer vote: the sender is no longer leader.
    HigherVote(WireVote),
}

impl AppendReply {
    pub(crate) fn from_raft(reply: &RaftAppendReply) -> AppendReply {
        match reply {
            RaftAppendReply::Success => AppendReply::Success,
            RaftAppendReply::PartialSuccess(id) => AppendReply::Partial(pair(id.as_ref())),
            RaftAppendReply::Conflict => AppendReply::Conflict,
            RaftAppendReply::HigherVote(v) => AppendReply::HigherVote(WireVote::from_raft(v)),
        }
    }

    pub(crate) fn into_raft(self) -> RaftAppendReply {
        match self {
            AppendReply::Success => RaftAppendReply::Success,
            AppendReply::Partial(id) => RaftAppendReply::PartialSuccess(unpair(id)),
            AppendReply::Conflict => RaftAppendReply::Conflict,
            AppendReply::HigherVote(v) => RaftAppendReply::HigherVote(v.into_raft()),
        }
    }
}

type RaftVoteRequest = openraft::raft::VoteRequest<TypeConfig>;
type RaftVoteReply = openraft::raft::VoteResponse<TypeConfig>;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VoteRequest {
    pub vote: WireVote,
    pub last: Pair,
    /// The candidate was named by a leadership transfer.
    #[serde(default)]
    pub transfer: bool,
}

impl VoteRequest {
    pub(crate) fn from_raft(rpc: &RaftVoteRequest) -> VoteRequest {
        VoteRequest {
            vote: WireVote::from_raft(&rpc.vote),
            last: pair(rpc.last_log_id.as_ref()),
            transfer: rpc.leadership_transfer,
        }
    }

    pub(crate) fn into_raft(self) -> RaftVoteRequest {
        let mut rpc = RaftVoteRequest::new(self.vote.into_raft(), unpair(self.last));
        rpc.leadership_transfer = self.transfer;
        rpc
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VoteReply {
    pub vote: WireVote,
    pub granted: bool,
    pub last: Pair,
}

impl VoteReply {
    pub(crate) fn from_raft(reply: &RaftVoteReply) -> VoteReply {
        VoteReply {
            vote: WireVote::from_raft(&reply.vote),
            granted: reply.vote_granted,
            last: pair(reply.last_log_id.as_ref()),
        }
    }

    pub(crate) fn into_raft(self) -> RaftVoteReply {
        RaftVoteReply::new(self.vote.into_raft(), unpair(self.last), self.granted)
    }
}

/// The head of a snapshot install; the state bytes follow in the request
/// body after it (see [`crate::rpc::server`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SnapshotHead {
    pub vote: WireVote,
    /// The snapshot's metadata in the snapshot file's encoding.
    #[serde(with = "serde_bytes")]
    pub meta: Vec<u8>,
}

impl SnapshotHead {
    pub(crate) fn new(vote: &RaftVote, meta: &SnapshotMeta) -> Result<SnapshotHead, WireError> {
        Ok(SnapshotHead {
            vote: WireVote::from_raft(vote),
            meta: encode_snapshot_meta(meta).map_err(|e| WireError(e.to_string()))?,
        })
    }

    pub(crate) fn meta(&self) -> Result<SnapshotMeta, WireError> {
        decode_snapshot_meta(&self.meta).map_err(|e| WireError(e.to_string()))
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TransferRequest {
    pub from: WireVote,
    pub to: u64,
    pub last: Pair,
}

/// A forwarded write's answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum WriteReply {
    Written {
        index: u64,
        outcome: Outcome,
        released: Vec<ReleasedLock>,
    },
    /// The receiver is not the leader (any more); `leader` is its guess.
    NotLeader {
        leader: Option<String>,
    },
    /// Appended, then leadership moved: it may or may not take effect.
    LeadershipLost,
    Failed(String),
}

/// A write forwarded to the leader.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WriteRequest {
    pub command: Command,
}

/// An HTTP API request a client agent hands to a server to answer with
/// its own API (Consul's clients forward their RPCs the same way).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiRequest {
    pub method: String,
    /// Path and query, as the client received them.
    pub uri: String,
    pub headers: Vec<(String, ByteText)>,
    #[serde(with = "serde_bytes")]
    pub body: Vec<u8>,
}

/// The server's answer to an [`ApiRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiReply {
    pub status: u16,
    pub headers: Vec<(String, ByteText)>,
    #[serde(with = "serde_bytes")]
    pub body: Vec<u8>,
}

/// A read one server asks of a server of another datacenter: the RPCs
/// Consul sends across the WAN for DNS names of that datacenter and for
/// prepared queries failing over to it. The server asked answers from its
/// own state, as a stale read.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum DcRead {
    /// Consul's `Health.ServiceNodes`: every instance of a service with
    /// its node and checks.
    ServiceHealth { service: String },
    /// A node of the catalog (Consul's `Catalog.NodeServices`, whose node
    /// is all DNS uses).
    Node { name: String },
    /// Consul's `PreparedQuery.Execute` by ID or name, for an asker in
    /// another datacenter: no distance sort, and failover from there.
    ExecuteQuery { id_or_name: String },
    /// Consul's `PreparedQuery.ExecuteRemote`: the (rendered) query
    /// itself, run there without failing over any further.
    ExecuteRemote {
        query: Box<PreparedQuery>,
        limit: u64,
    },
}

/// The answer to a [`DcRead`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum DcReadReply {
    Instances(Vec<CheckServiceNode>),
    Node(Option<Node>),
    /// `None`: no query has that ID or name there.
    Execution(Option<Box<Execution>>),
    /// The read failed there; the reason, as Consul's RPC error says it.
    Failed(String),
}

/// One catalog read for a client agent's DNS interface, which formats the
/// answer itself with its own settings (Consul's client DNS makes the same
/// reads over RPC).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DnsRead {
    pub lookup: DnsLookup,
    /// `dns_config.allow_stale`: whether the server may answer from its own
    /// state rather than the leader's.
    pub allow_stale: bool,
    /// `dns_config.max_stale`: how far behind the leader a stale read may be.
    pub max_stale: std::time::Duration,
}

/// What a [`DnsRead`] reads.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum DnsLookup {
    /// A node by name.
    Node(String),
    /// Every instance of a service with its node and checks.
    ServiceHealth(String),
    /// A prepared query run for the asking agent.
    PreparedQuery {
        name: String,
        agent_node: String,
        datacenter: String,
    },
    /// The nodes, else the services, registered with an address.
    AddressOwners(std::net::IpAddr),
    /// A read of another datacenter, made by the server through its WAN
    /// pool (a client has none).
    OtherDatacenter { datacenter: String, read: DcRead },
}

/// The server's answer to a [`DnsRead`], one variant per [`DnsLookup`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum DnsRows {
    Node(Option<state::Node>),
    Instances(Vec<state::CheckServiceNode>),
    /// What the query found, failed over if need be; `None`: no query.
    PreparedQuery(Option<Box<Execution>>),
    AddressOwners {
        nodes: Vec<String>,
        services: Vec<String>,
    },
    /// What the other datacenter answered to [`DnsLookup::OtherDatacenter`].
    OtherDatacenter(DcReadReply),
    /// No server of the datacenter asked for is known.
    NoPath,
    /// The read could not be done (no leader for a read that needs one).
    Failed(String),
}

/// What the catalog holds for one node, for a client agent's
/// anti-entropy to compare with its own services and checks.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct NodeStateReply {
    pub services: Vec<state::ServiceInstance>,
    pub checks: Vec<state::HealthCheck>,
}

/// A header value: bytes, since HTTP does not promise text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ByteText(#[serde(with = "serde_bytes")] pub Vec<u8>);

/// How sure a read must be that it sees every acknowledged write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReadMode {
    /// Consul's default: the leader answers from its state while its lease
    /// (a quorum heard from within the election timeout) holds.
    Lease,
    /// `?consistent`: the leader confirms with a quorum first (ReadIndex).
    Quorum,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ReadIndexReply {
    /// Apply up to this index, then read.
    Index(u64),
    NotLeader {
        leader: Option<String>,
    },
    Failed(String),
}

/// What one server tells another about itself when they meet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerInfo {
    pub id: u64,
    pub uuid: String,
    pub name: String,
    /// Its server RPC address.
    pub addr: String,
    pub datacenter: String,
    /// Its `bootstrap_expect` (0: none).
    pub expect: u32,
}

/// The answer to a hello: everything the receiver knows.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HelloReply {
    pub me: ServerInfo,
    /// Every other server the receiver has met.
    pub known: Vec<ServerInfo>,
    /// Whether the receiver has a Raft configuration (a log or a vote).
    pub initialized: bool,
    pub leader: Option<String>,
}

/// A membership change asked of the leader.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum MembershipRequest {
    /// Make this server a voter (a learner first, then promoted).
    AddVoter(ServerInfo),
    /// Remove a server by Raft id.
    Remove { id: u64 },
    /// Hand leadership to `to`, or to the most up-to-date voter.
    TransferLeader { to: Option<u64> },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum MembershipReply {
    Done,
    NotLeader { leader: Option<String> },
    Failed(String),
}

/// One server of the configuration, as the operator endpoints show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigServer {
    /// Its node ID (a UUID).
    pub id: String,
    pub node: String,
    pub address: String,
    pub leader: bool,
    pub voter: bool,
    /// The last log index known to be on it (the leader knows them all).
    pub last_index: Option<u64>,
}

/// The configuration in force and the index of its entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigurationView {
    pub servers: Vec<ConfigServer>,
    pub index: u64,
    /// The leader's last log index, for how far each server trails.
    pub leader_last_index: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ConfigurationReply {
    View(ConfigurationView),
    NotLeader { leader: Option<String> },
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::entry::RaftEntry as _;
    use state::{KvOp, KvVerb};

    #[test]
    fn append_round_trips_through_msgpack() {
        let id = to_raft_log_id(LogId { term: 3, index: 9 });
        let mut op = KvOp::new(KvVerb::Set, "k");
        op.value = b"v".to_vec();
        let command = Command::Kv(op);
        let rpc = RaftAppend {
            vote: openraft::Vote::new_committed(3, 1),
            prev_log_id: Some(to_raft_log_id(LogId { term: 3, index: 8 })),
            leader_commit: Some(id),
            entries: vec![RaftEntry::new_normal(
                id,
                crate::types::Request(command.clone()),
            )],
        };
        let wire = AppendRequest::from_raft(&rpc).unwrap();
        let bytes = rmp_serde::to_vec_named(&wire).unwrap();
        let back: AppendRequest = rmp_serde::from_slice(&bytes).unwrap();
        let back = back.into_raft().unwrap();
        assert_eq!(back.vote, rpc.vote);
        assert_eq!(back.prev_log_id, rpc.prev_log_id);
        assert_eq!(back.leader_commit, rpc.leader_commit);
        assert_eq!(back.entries.len(), 1);
        assert_eq!(back.entries[0].log_id, id);
    }

    #[test]
    fn votes_round_trip() {
        let rpc = RaftVoteRequest::new(openraft::Vote::new(4, 2), None);
        let back = VoteRequest::from_raft(&rpc).into_raft();
        assert_eq!(back.vote, rpc.vote);
        assert_eq!(back.last_log_id, None);
        let reply = RaftVoteReply::new(openraft::Vote::new(4, 2), None, true);
        let back = VoteReply::from_raft(&reply).into_raft();
        assert!(back.vote_granted);
    }

    #[test]
    fn a_damaged_entry_is_an_error_not_a_panic() {
        let wire = AppendRequest {
            vote: WireVote {
                term: 1,
                node: 1,
                committed: true,
            },
            prev: None,
            commit: None,
            entries: vec![WireEntry {
                term: 1,
                index: 1,
                payload: vec![2, 0xc1],
            }],
        };
        assert!(wire.into_raft().is_err());
    }
}
