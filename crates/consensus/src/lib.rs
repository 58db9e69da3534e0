//! Praetor's Raft storage.
//!
//! - [`wal`]: the Raft log, a segmented write-ahead log of our own (CRC32C per
//!   record, one `fdatasync` per batch, whole-segment purge, durable tail
//!   truncation, recovery that cuts a torn tail and refuses real corruption).
//! - [`meta`]: the vote and the committed log id, each a small file replaced
//!   atomically (temp file, fsync, rename, fsync of the directory).
//!
//! - [`RaftNode`]: openraft (pinned, see `Cargo.toml`) over that log, the
//!   vote files and a state machine that applies each committed
//!   [`state::Command`] to a [`state::Store`] at its log index, with
//!   snapshots in a file. A server keeps all of it on disk; the dev agent
//!   runs the same write path with the log in memory.
//!
//! openraft's types stay inside this crate (one concrete configuration,
//! private), so its API churn is absorbed here: other crates see
//! [`RaftNode`], `state` types and integers.

mod closing;
pub mod cluster;
mod codec;
#[cfg(test)]
mod conformance;
pub mod error;
mod log_store;
mod mem_log;
pub mod meta;
mod node;
pub mod rpc;
mod snapshot_file;
mod state_machine;
mod types;
pub mod wal;

pub use cluster::{server_id, Cluster, ClusterError, ClusterOptions};
pub use codec::CodecError;
pub use error::{Result, StorageError};
pub use meta::{Meta, Vote};
pub use node::{
    Configuration, Leader, Member, NodeError, RaftNode, RaftOptions, RaftStatus, ReadError, Role,
    WriteError, Written,
};
pub use rpc::paths;
pub use rpc::server::{serve, serve_with_api, ForwardedCalls};
pub use rpc::wire::{
    ApiReply, ApiRequest, ByteText, ConfigServer, ConfigurationView, DcRead, DcReadReply,
    DnsLookup, DnsRead, DnsRows, MembershipRequest, NodeStateReply, ReadMode, ServerInfo,
    WriteReply, WriteRequest,
};
pub use rpc::{CallError, RpcClient};
pub use types::ServerNode;
pub use wal::{Entry, GroupCommit, LogState, Wal, WalOptions};

/// A Raft log id: the term of the leader that created the entry and its index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct LogId {
    pub term: u64,
    pub index: u64,
}
