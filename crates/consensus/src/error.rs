//! The error type of Praetor's Raft storage.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

/// What went wrong in the log, the metadata files or the snapshot file.
///
/// Errors are `Clone` (the IO error is shared) so that one failed `fdatasync`
/// can be reported to every appender whose batch it covered.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StorageError {
    /// A system call failed. If it was a write, truncate or sync of the log,
    /// the log is now [`StorageError::Failed`] and must be reopened.
    #[error("{op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: Arc<io::Error>,
    },

    /// A record or header on disk is damaged somewhere a torn write cannot
    /// explain: data that was reported durable would be lost. The log refuses
    /// to open rather than drop it silently.
    #[error("corrupt log at {} offset {offset}: {reason}", path.display())]
    Corrupt {
        path: PathBuf,
        offset: u64,
        reason: String,
    },

    /// Segment files do not form one contiguous run of indexes (a file is
    /// missing, or two overlap). Nothing was changed on disk.
    #[error("log segments are not contiguous: {reason}")]
    Gap { reason: String },

    /// A metadata file (vote, committed, purged) failed its checks. These files
    /// are replaced atomically, so this is damage, not a torn write.
    #[error("corrupt metadata file {}: {reason}", path.display())]
    CorruptMeta { path: PathBuf, reason: String },

    /// Another process (or another open log in this one) holds the data
    /// directory. Two Raft servers on one log would destroy it.
    #[error("{} is locked: another server is using this data directory", path.display())]
    Locked { path: PathBuf },

    /// A snapshot file failed its checks. Snapshot files are replaced
    /// atomically, so this is damage, not a torn write.
    #[error("corrupt snapshot file {}: {reason}", path.display())]
    CorruptSnapshot { path: PathBuf, reason: String },

    /// An append did not continue the log: Raft indexes must be consecutive
    /// and terms must not go down. Nothing was written.
    #[error("append out of order: {reason}")]
    OutOfOrder { reason: String },

    /// An entry's payload is larger than one record may hold. Nothing was
    /// written.
    #[error("entry {index} has a {len}-byte payload; the limit is {max} bytes")]
    TooLarge { index: u64, len: usize, max: usize },

    /// `truncate_after` would remove entries that were already purged (they
    /// are covered by a snapshot and so committed). Nothing was changed.
    #[error("cannot truncate after {requested:?}: entries up to {purged} are purged")]
    TruncatePurged { requested: Option<u64>, purged: u64 },

    /// An earlier write, truncate or sync failed, so what is on disk is
    /// unknown (after a failed fsync the kernel may have dropped the dirty
    /// pages). Every further change is refused; reopen the log to recover.
    #[error("the log stopped after an earlier IO failure; reopen it")]
    Failed,
}

impl StorageError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        StorageError::Io {
            op,
            path: path.into(),
            source: Arc::new(source),
        }
    }
}

/// Shorthand for results of this crate.
pub type Result<T, E = StorageError> = std::result::Result<T, E>;
