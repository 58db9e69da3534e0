//! Group commit: appends write at once and share `fdatasync`s.
//!
//! openraft submits an append and is told later, through a callback, when it
//! is durable; it does not wait before submitting the next one. So an append
//! here writes its records right away (they are readable as soon as
//! [`GroupCommit::append_async`] returns) and queues its callback. One
//! background thread takes every queued callback, syncs once, and completes
//! them all: while one sync runs, the appends that arrive meanwhile gather
//! into the next.

use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;

use super::{Entry, LogState, Wal};
use crate::error::{Result, StorageError};
use crate::LogId;

/// Told whether the records of one append are durable.
type Completion = Box<dyn FnOnce(Result<()>) + Send>;

/// A [`Wal`] shared between appenders (through `&self`) and one sync thread.
///
/// Dropping it waits for the callbacks already queued to complete.
#[derive(Debug)]
pub struct GroupCommit {
    wal: Arc<Mutex<Wal>>,
    queue: Option<Sender<Completion>>,
    syncer: Option<JoinHandle<()>>,
}

impl GroupCommit {
    /// Starts the sync thread for `wal`.
    pub fn new(wal: Wal) -> Result<GroupCommit> {
        let dir = wal.dir().to_path_buf();
        let wal = Arc::new(Mutex::new(wal));
        let (queue, waiting) = mpsc::channel();
        let shared = Arc::clone(&wal);
        let syncer = std::thread::Builder::new()
            .name("wal-sync".to_string())
            .spawn(move || run_syncs(&shared, &waiting))
            .map_err(|e| StorageError::io("spawn sync thread for", dir, e))?;
        Ok(GroupCommit {
            wal,
            queue: Some(queue),
            syncer: Some(syncer),
        })
    }

    /// Writes `entries` now (same rules as [`Wal::append`]) and calls `done`
    /// from the sync thread once they are durable, or with the error if the
    /// sync failed. Callbacks run in submission order.
    ///
    /// If this returns `Err`, nothing was queued and `done` is dropped
    /// without being called.
    ///
    /// `done` runs on the sync thread: it must not wait for the log (call
    /// [`GroupCommit::append`] or [`GroupCommit::flush`], or drop the last
    /// handle), or that thread would wait for itself.
    pub fn append_async<F>(&self, entries: &[Entry], done: F) -> Result<()>
    where
        F: FnOnce(Result<()>) + Send + 'static,
    {
        let mut wal = self.lock()?;
        wal.write(entries)?;
        // Queued under the lock, so the queue is in write order.
        let queue = self.queue.as_ref().ok_or(StorageError::Failed)?;
        queue.send(Box::new(done)).map_err(|_| StorageError::Failed)
    }

    /// Appends `entries` and waits until they are durable.
    pub fn append(&self, entries: &[Entry]) -> Result<()> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.append_async(entries, move |outcome| {
            // The receiver is waiting below; if it is gone nobody cares.
            let _ = tx.send(outcome);
        })?;
        rx.recv().map_err(|_| StorageError::Failed)?
    }

    /// Waits until everything appended so far is durable.
    pub fn flush(&self) -> Result<()> {
        self.append(&[])
    }

    /// [`Wal::truncate_after`] under the lock (durable when it returns).
    pub fn truncate_after(&self, last_kept: Option<u64>) -> Result<()> {
        self.lock()?.truncate_after(last_kept)
    }

    /// [`Wal::purge`] under the lock.
    pub fn purge(&self, upto: LogId) -> Result<()> {
        self.lock()?.purge(upto)
    }

    /// [`Wal::log_state`].
    pub fn log_state(&self) -> Result<LogState> {
        Ok(self.lock()?.log_state())
    }

    /// Runs `read` on the log under its lock (for [`Wal::entries`] and the
    /// other getters). Keep it short: appends wait for it.
    pub fn read<R>(&self, read: impl FnOnce(&Wal) -> R) -> Result<R> {
        let wal = self.lock()?;
        Ok(read(&wal))
    }

    /// Stops the sync thread (completing what is queued) and hands the log
    /// back.
    pub fn into_inner(mut self) -> Result<Wal> {
        self.stop();
        let wal = Arc::clone(&self.wal);
        drop(self);
        let mutex = Arc::try_unwrap(wal).map_err(|_| StorageError::Failed)?;
        mutex.into_inner().map_err(|_| StorageError::Failed)
    }

    fn lock(&self) -> Result<MutexGuard<'_, Wal>> {
        // A panic while holding the lock may have left the log half-updated.
        self.wal.lock().map_err(|_| StorageError::Failed)
    }

    fn stop(&mut self) {
        self.queue = None;
        if let Some(syncer) = self.syncer.take() {
            // A panic in a callback ended the thread; it has nothing more to
            // report.
            let _ = syncer.join();
        }
    }
}

impl Drop for GroupCommit {
    fn drop(&mut self) {
        self.stop();
    }
}

fn run_syncs(wal: &Mutex<Wal>, waiting: &Receiver<Completion>) {
    while let Ok(first) = waiting.recv() {
        let mut batch = vec![first];
        batch.extend(waiting.try_iter());
        let outcome = sync_once(wal);
        for done in batch {
            done(outcome.clone());
        }
    }
}

/// One `fdatasync` covering everything written before it was taken; the
/// lock is not held while the disk works.
fn sync_once(wal: &Mutex<Wal>) -> Result<()> {
    let ticket = wal
        .lock()
        .map_err(|_| StorageError::Failed)?
        .sync_ticket()?;
    let Some(ticket) = ticket else {
        return Ok(());
    };
    let synced = ticket.sync();
    wal.lock()
        .map_err(|_| StorageError::Failed)?
        .finish_sync(&ticket, synced)
}
