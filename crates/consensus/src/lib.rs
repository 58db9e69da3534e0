//! Praetor's Raft storage.
//!
//! - [`wal`]: the Raft log, a segmented write-ahead log of our own (CRC32C per
//!   record, one `fdatasync` per batch, whole-segment purge, durable tail
//!   truncation, recovery that cuts a torn tail and refuses real corruption).
//! - [`meta`]: the vote and the committed log id, each a small file replaced
//!   atomically (temp file, fsync, rename, fsync of the directory).
//!
//! The API is shaped after openraft's `RaftLogStorage` (append with a
//! completion once durable, read a range, log state, truncate after, purge,
//! save and read the vote) so that wiring openraft on top is a thin adapter.

pub mod error;
pub mod meta;
pub mod wal;

pub use error::{Result, StorageError};
pub use meta::{Meta, Vote};
pub use wal::{Entry, GroupCommit, LogState, Wal, WalOptions};

/// A Raft log id: the term of the leader that created the entry and its index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct LogId {
    pub term: u64,
    pub index: u64,
}
