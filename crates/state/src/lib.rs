//! Praetor's state store.
//!
//! The store keeps every table in persistent ordered maps and publishes each
//! committed version atomically: one writer applies [`Command`]s, any number of
//! readers take a [`Snapshot`] without a lock and keep reading it while later
//! writes land. A [`WatchSet`] records what a reader looked at, so a blocking
//! query sleeps until exactly those rows (a key, a prefix, or as a coarse
//! fallback a whole table) change.
//!
//! The store does no IO and reads no clock: the caller supplies the index of
//! every change (the Raft log index), which becomes `ModifyIndex` and
//! `X-Consul-Index`.

mod catalog;
mod command;
mod coordinate;
mod error;
mod kv;
mod persist;
mod prepared_query;
mod session;
mod snapshot;
mod store;
mod table;
mod template;
mod txn;
mod watch;

pub use catalog::{
    CheckServiceNode, Deregistration, HealthCheck, Node, Registration, ServiceAddress,
    ServiceInstance, Weights, WriteError,
};
pub use command::{Command, KvOp, KvVerb, Outcome, TxnOp};
pub use coordinate::{Coord, NodeCoordinate};
pub use error::StateError;
pub use kv::DirEntry;
pub use persist::{snapshot_stats, RowStats};
pub use prepared_query::{
    ExecuteOptions, Execution, FailoverTarget, PreparedQuery, QueryDns, QueryFailover,
    QueryTemplate, ServiceQuery, NAME_PREFIX_MATCH, QUERY_NOT_FOUND,
};
pub use session::{Behavior, ReleasedLock, Session};
pub use snapshot::Snapshot;
pub use store::Store;
pub use table::Table;
pub use txn::{TxnError, TxnOutcome, TxnResult};
pub use watch::{Watch, WatchScope, WatchSet, DEFAULT_WATCH_LIMIT};

/// A Raft log index: the position of a change in the one global history.
pub type Index = u64;
