//! openraft's log storage over our segmented log ([`crate::wal`]) and the
//! vote/committed files ([`crate::meta`]).
//!
//! # How openraft's contracts are kept
//!
//! - `append` writes the entries before it returns (so they are readable at
//!   once) and hands the completion to [`GroupCommit`]: openraft hears that
//!   they are durable only from the sync thread, after the `fdatasync`.
//! - `save_vote` first waits until every entry appended before it is
//!   durable, then replaces the vote file (temp, fsync, rename, fsync dir):
//!   writes reach the disk in the order openraft issued them.
//! - `truncate_after` and `purge` are durable when they return (see
//!   [`crate::wal::Wal`]).
//! - The committed log id is only an optimisation (it lets a restart
//!   re-apply up to it at once). It is written by a background thread, at
//!   most every [`COMMITTED_INTERVAL`], and only after the entries it covers
//!   are durable, so a restart never finds a committed id past its own log.
//!   On disk it may lag the real one; a lagging value costs nothing but a
//!   later catch-up.
//!
//! Calls that fsync run on tokio's blocking pool, so the Raft core task
//! never waits on the disk itself.
//!
//! The metadata directory holds a `LOCK` file, locked (`flock`) while the
//! store is open: a second server on the same directory is refused.

use std::fmt::Debug;
use std::fs::{File, OpenOptions};
use std::io;
use std::ops::RangeBounds;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use openraft::storage::{IOFlushed, RaftLogStorage};
use openraft::{LogState, OptionalSend, RaftLogReader};

use crate::closing::{self, Closed, OpenGuard};
use crate::codec::{decode_entry, encode_entry};
use crate::error::StorageError;
use crate::meta::Meta;
use crate::types::{
    from_meta_vote, from_raft_log_id, to_meta_vote, to_raft_log_id, RaftEntry, RaftLogId, RaftVote,
    TypeConfig,
};
use crate::wal::{GroupCommit, Wal, WalOptions};
use crate::LogId;

/// The committed log id reaches the disk at most this often.
pub(crate) const COMMITTED_INTERVAL: Duration = Duration::from_millis(100);

/// The durable Raft log of one server: a handle that is cheap to clone (the
/// clones are openraft's log readers).
#[derive(Clone)]
pub(crate) struct LogStore {
    inner: Arc<Inner>,
}

struct Inner {
    disk: Arc<Disk>,
    /// The last saved vote, so readers need not wait for the meta lock
    /// while a file is being replaced.
    vote: Mutex<Option<RaftVote>>,
    committed: CommittedWriter,
    /// Dropped last, once the committed writer has finished.
    _open: OpenGuard,
}

struct Disk {
    wal: GroupCommit,
    meta: Mutex<Meta>,
    /// Holds the directory lock until the last handle is gone.
    _lock: File,
}

impl LogStore {
    /// Opens the log in `log_dir` and the vote/committed files in
    /// `meta_dir` (creating both if needed), recovering the log as
    /// [`Wal::open`] describes. Also returns what resolves once the last
    /// handle is dropped and every file is closed.
    pub(crate) fn open(
        log_dir: &Path,
        meta_dir: &Path,
        options: WalOptions,
    ) -> Result<(LogStore, Closed), StorageError> {
        let meta = Meta::open(meta_dir)?;
        let lock = lock_dir(meta_dir)?;
        let wal = Wal::open(log_dir, options)?;
        let vote = match meta.vote() {
            Some(vote) => Some(
                from_meta_vote(vote).ok_or_else(|| StorageError::CorruptMeta {
                    path: meta_dir.join("vote"),
                    reason: "the vote names no candidate".to_string(),
                })?,
            ),
            None => None,
        };
        let committed = meta.committed();
        let disk = Arc::new(Disk {
            wal: GroupCommit::new(wal)?,
            meta: Mutex::new(meta),
            _lock: lock,
        });
        let committed = CommittedWriter::start(Arc::clone(&disk), committed, meta_dir)?;
        let (open, closed) = closing::guard();
        let store = LogStore {
            inner: Arc::new(Inner {
                disk,
                vote: Mutex::new(vote),
                committed,
                _open: open,
            }),
        };
        Ok((store, closed))
    }

    fn disk(&self) -> Arc<Disk> {
        Arc::clone(&self.inner.disk)
    }
}

/// Locks `dir/LOCK` for this process, or fails if someone else holds it.
fn lock_dir(dir: &Path) -> Result<File, StorageError> {
    use std::os::fd::AsRawFd;
    let path = dir.join("LOCK");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| StorageError::io("open", &path, e))?;
    // SAFETY: `file` owns the descriptor for the whole call; flock reads no
    // memory of ours.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        let err = io::Error::last_os_error();
        if err.kind() == io::ErrorKind::WouldBlock {
            return Err(StorageError::Locked { path });
        }
        return Err(StorageError::io("lock", &path, err));
    }
    Ok(file)
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every value behind these locks is replaced whole, never left half
    // updated, so a panic elsewhere does not make it unusable.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn storage_io(error: StorageError) -> io::Error {
    io::Error::other(error)
}

/// Runs disk work that may fsync on the blocking pool.
async fn on_blocking_pool<T, F>(work: F) -> io::Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, StorageError> + Send + 'static,
{
    tokio::task::spawn_blocking(work)
        .await
        .map_err(io::Error::other)?
        .map_err(storage_io)
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> io::Result<Vec<RaftEntry>> {
        let stored = self
            .inner
            .disk
            .wal
            .read(|wal| wal.entries(range))
            .and_then(|entries| entries)
            .map_err(storage_io)?;
        stored
            .iter()
            .map(|entry| {
                decode_entry(entry).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
            })
            .collect()
    }

    async fn read_vote(&mut self) -> io::Result<Option<RaftVote>> {
        Ok(*lock(&self.inner.vote))
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> io::Result<LogState<TypeConfig>> {
        let state = self.inner.disk.wal.log_state().map_err(storage_io)?;
        Ok(LogState {
            last_purged_log_id: state.last_purged.map(to_raft_log_id),
            last_log_id: state.last.map(to_raft_log_id),
        })
    }

    async fn get_log_reader(&mut self) -> LogStore {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &RaftVote) -> io::Result<()> {
        let disk = self.disk();
        let saved = to_meta_vote(vote);
        on_blocking_pool(move || {
            disk.wal.flush()?;
            lock(&disk.meta).save_vote(&saved)
        })
        .await?;
        *lock(&self.inner.vote) = Some(*vote);
        Ok(())
    }

    async fn save_committed(&mut self, committed: Option<RaftLogId>) -> io::Result<()> {
        self.inner
            .committed
            .submit(committed.as_ref().map(from_raft_log_id));
        Ok(())
    }

    async fn read_committed(&mut self) -> io::Result<Option<RaftLogId>> {
        Ok(self.inner.committed.latest().map(to_raft_log_id))
    }

    async fn append<I>(&mut self, entries: I, callback: IOFlushed<TypeConfig>) -> io::Result<()>
    where
        I: IntoIterator<Item = RaftEntry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let encoded = entries
            .into_iter()
            .map(|entry| encode_entry(&entry))
            .collect::<Result<Vec<_>, _>>()
            .map_err(io::Error::other)?;
        self.inner
            .disk
            .wal
            .append_async(&encoded, move |outcome| {
                callback.io_completed(outcome.map_err(storage_io));
            })
            .map_err(storage_io)
    }

    async fn truncate_after(&mut self, last_log_id: Option<RaftLogId>) -> io::Result<()> {
        let disk = self.disk();
        let last_kept = last_log_id.map(|id| id.index);
        on_blocking_pool(move || disk.wal.truncate_after(last_kept)).await
    }

    async fn purge(&mut self, log_id: RaftLogId) -> io::Result<()> {
        let disk = self.disk();
        let upto = from_raft_log_id(&log_id);
        on_blocking_pool(move || disk.wal.purge(upto)).await
    }
}

/// Writes the committed log id in the background: see the module docs.
struct CommittedWriter {
    shared: Arc<(Mutex<CommittedSlot>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

#[derive(Default)]
struct CommittedSlot {
    /// The newest value not yet written.
    pending: Option<Option<LogId>>,
    /// The newest value submitted (or read at open).
    latest: Option<LogId>,
    stop: bool,
}

impl CommittedWriter {
    fn start(disk: Arc<Disk>, on_disk: Option<LogId>, dir: &Path) -> Result<Self, StorageError> {
        let shared = Arc::new((
            Mutex::new(CommittedSlot {
                latest: on_disk,
                ..CommittedSlot::default()
            }),
            Condvar::new(),
        ));
        let theirs = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("raft-committed".to_string())
            .spawn(move || write_committed(&disk, &theirs))
            .map_err(|e| StorageError::io("spawn committed writer for", dir, e))?;
        Ok(CommittedWriter {
            shared,
            thread: Some(thread),
        })
    }

    fn submit(&self, committed: Option<LogId>) {
        let (slot, wake) = &*self.shared;
        let mut slot = lock(slot);
        slot.pending = Some(committed);
        slot.latest = committed;
        wake.notify_one();
    }

    fn latest(&self) -> Option<LogId> {
        lock(&self.shared.0).latest
    }
}

impl Drop for CommittedWriter {
    fn drop(&mut self) {
        let (slot, wake) = &*self.shared;
        lock(slot).stop = true;
        wake.notify_one();
        if let Some(thread) = self.thread.take() {
            // A panic on that thread has already been reported by the
            // panic hook; the value it lost is only an optimisation.
            let _ = thread.join();
        }
    }
}

fn write_committed(disk: &Disk, shared: &(Mutex<CommittedSlot>, Condvar)) {
    let (slot, wake) = shared;
    loop {
        let (value, stopping) = {
            let mut guard = lock(slot);
            while guard.pending.is_none() && !guard.stop {
                guard = wake.wait(guard).unwrap_or_else(PoisonError::into_inner);
            }
            (guard.pending.take(), guard.stop)
        };
        if let Some(committed) = value {
            // The entries up to `committed` were written before openraft
            // asked to save it; make them durable first.
            let saved = disk
                .wal
                .flush()
                .and_then(|()| lock(&disk.meta).save_committed(committed));
            if let Err(error) = saved {
                tracing::warn!(%error, "could not save the committed log id");
            }
        }
        if stopping {
            return;
        }
        // Let later values gather: only the newest is worth writing.
        let guard = lock(slot);
        let _wait = wake
            .wait_timeout_while(guard, COMMITTED_INTERVAL, |s| !s.stop)
            .unwrap_or_else(PoisonError::into_inner);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_open_of_the_same_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (log, meta) = (dir.path().join("log"), dir.path().join("meta"));
        let (first, closed) = LogStore::open(&log, &meta, WalOptions::default()).unwrap();
        assert!(matches!(
            LogStore::open(&log, &meta, WalOptions::default()),
            Err(StorageError::Locked { .. })
        ));
        drop(first);
        drop(closed);
        LogStore::open(&log, &meta, WalOptions::default()).unwrap();
    }

    #[tokio::test]
    async fn the_last_committed_id_is_on_disk_once_the_store_is_closed() {
        let dir = tempfile::tempdir().unwrap();
        let (log, meta) = (dir.path().join("log"), dir.path().join("meta"));
        let (mut store, closed) = LogStore::open(&log, &meta, WalOptions::default()).unwrap();
        for index in 1..=50 {
            let id = to_raft_log_id(LogId { term: 1, index });
            store.save_committed(Some(id)).await.unwrap();
        }
        drop(store);
        closed.wait().await;
        let (mut store, _) = LogStore::open(&log, &meta, WalOptions::default()).unwrap();
        let want = to_raft_log_id(LogId { term: 1, index: 50 });
        assert_eq!(store.read_committed().await.unwrap(), Some(want));
    }
}
