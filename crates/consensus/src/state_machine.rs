//! openraft's state machine over the state store.
//!
//! Each committed normal entry's [`state::Command`] is applied with the
//! entry's log index as its index ([`Store::apply_with_effects`]), so
//! `ModifyIndex` and `X-Consul-Index` are Raft indexes. Blank and membership
//! entries leave the store as it is (the membership is kept here, for
//! snapshots).
//!
//! The store lives in memory; snapshots make it durable. A snapshot is
//! built from an immutable store version taken on the apply path in O(1)
//! (the encoding and the file writing run on tokio's blocking pool while
//! entries keep being applied) and written as described in
//! [`crate::snapshot_file`]. On restart openraft installs the last snapshot
//! and re-applies the log after it.
//!
//! A state machine either keeps its snapshot in a directory (servers) or in
//! memory (the dev agent).

use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use futures_util::{Stream, TryStreamExt};
use openraft::storage::{EntryResponder, RaftStateMachine};
use openraft::{EntryPayload, OptionalSend, RaftSnapshotBuilder};
use state::Store;

use crate::closing::{self, Closed, OpenGuard};
use crate::error::StorageError;
use crate::snapshot_file;
use crate::types::{
    RaftEntry, RaftLogId, RaftSnapshot as Snapshot, Request, Response, SnapshotData, SnapshotMeta,
    StoredMembership, TypeConfig,
};

/// The state machine of one Raft server.
pub(crate) struct StateMachine {
    store: Arc<Store>,
    applied: Option<RaftLogId>,
    membership: StoredMembership,
    snapshots: Arc<Snapshots>,
}

impl StateMachine {
    /// A state machine over a new, empty store, keeping its snapshot in
    /// `dir` (created if needed), or in memory for `None`. Also returns what
    /// resolves once the state machine and every snapshot build started
    /// from it are gone.
    pub(crate) fn open(dir: Option<PathBuf>) -> Result<(StateMachine, Closed), StorageError> {
        let (open, closed) = closing::guard();
        let state_machine = StateMachine {
            store: Arc::new(Store::new()),
            applied: None,
            membership: StoredMembership::default(),
            snapshots: Arc::new(Snapshots::open(dir, open)?),
        };
        Ok((state_machine, closed))
    }

    /// The store this state machine applies to; reads go straight to it.
    pub(crate) fn store(&self) -> &Arc<Store> {
        &self.store
    }

    fn apply_entry(&mut self, entry: RaftEntry) -> io::Result<Response> {
        let index = entry.log_id.index;
        let response = match entry.payload {
            EntryPayload::Blank => Response::Nothing,
            EntryPayload::Normal(Request(command)) => {
                let (outcome, released) = self
                    .store
                    .apply_with_effects(index, &command)
                    .map_err(io::Error::other)?;
                Response::Applied { outcome, released }
            }
            EntryPayload::Membership(membership) => {
                self.membership = StoredMembership::new(Some(entry.log_id), membership);
                Response::Nothing
            }
        };
        self.applied = Some(entry.log_id);
        Ok(response)
    }

    fn builder(&self) -> SnapshotBuilder {
        SnapshotBuilder {
            state: self.store.snapshot(),
            meta: SnapshotMeta {
                last_log_id: self.applied,
                last_membership: self.membership.clone(),
            },
            snapshots: Arc::clone(&self.snapshots),
        }
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotData = SnapshotData;
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> io::Result<(Option<RaftLogId>, StoredMembership)> {
        Ok((self.applied, self.membership.clone()))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> io::Result<()>
    where
        Strm: Stream<Item = io::Result<EntryResponder<TypeConfig>>> + Unpin + OptionalSend,
    {
        while let Some((entry, responder)) = entries.try_next().await? {
            let response = self.apply_entry(entry)?;
            if let Some(responder) = responder {
                responder.send(response);
            }
        }
        Ok(())
    }

    async fn try_create_snapshot_builder(&mut self, _force: bool) -> Option<SnapshotBuilder> {
        Some(self.builder())
    }

    async fn get_snapshot_builder(&mut self) -> SnapshotBuilder {
        self.builder()
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: SnapshotData,
    ) -> io::Result<()> {
        // Decoding happens first: bytes that are not a snapshot change
        // nothing.
        self.store
            .restore(&snapshot)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        self.applied = meta.last_log_id;
        self.membership = meta.last_membership.clone();
        let snapshots = Arc::clone(&self.snapshots);
        let meta = meta.clone();
        on_blocking_pool(move || snapshots.save(&meta, snapshot).map(|_| ())).await
    }

    async fn get_current_snapshot(&mut self) -> io::Result<Option<Snapshot>> {
        let snapshots = Arc::clone(&self.snapshots);
        let current = on_blocking_pool(move || snapshots.load()).await?;
        Ok(current.map(|(meta, snapshot)| Snapshot { meta, snapshot }))
    }
}

/// Builds a snapshot from one immutable store version.
pub(crate) struct SnapshotBuilder {
    state: Arc<state::Snapshot>,
    meta: SnapshotMeta,
    snapshots: Arc<Snapshots>,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    type SnapshotData = SnapshotData;

    async fn build_snapshot(&mut self) -> io::Result<Snapshot> {
        let state = Arc::clone(&self.state);
        let meta = self.meta.clone();
        let snapshots = Arc::clone(&self.snapshots);
        on_blocking_pool(move || {
            let bytes = state.to_bytes();
            let bytes = snapshots.save(&meta, bytes)?;
            Ok(Snapshot {
                meta,
                snapshot: bytes,
            })
        })
        .await
    }
}

async fn on_blocking_pool<T, F>(work: F) -> io::Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, StorageError> + Send + 'static,
{
    tokio::task::spawn_blocking(work)
        .await
        .map_err(io::Error::other)?
        .map_err(io::Error::other)
}

/// Where the current snapshot is kept, and which one it is.
struct Snapshots {
    dir: Option<PathBuf>,
    /// The current snapshot's metadata, and for an in-memory state machine
    /// its bytes. Held while a snapshot is written, so a build that
    /// finishes late cannot replace a newer one that was installed.
    current: Mutex<Option<(SnapshotMeta, Option<SnapshotData>)>>,
    _open: OpenGuard,
}

impl Snapshots {
    fn open(dir: Option<PathBuf>, open: OpenGuard) -> Result<Snapshots, StorageError> {
        let mut current = None;
        if let Some(dir) = &dir {
            std::fs::create_dir_all(dir).map_err(|e| StorageError::io("create dir", dir, e))?;
            snapshot_file::remove_stale_temp(dir)?;
            current = snapshot_file::read_meta(dir)?.map(|meta| (meta, None));
        }
        Ok(Snapshots {
            dir,
            current: Mutex::new(current),
            _open: open,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Option<(SnapshotMeta, Option<SnapshotData>)>> {
        // Replaced whole or not at all.
        self.current.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Makes `meta` and `state` the current snapshot, durably, unless the
    /// current one already covers as much of the log. Hands `state` back.
    fn save(&self, meta: &SnapshotMeta, state: SnapshotData) -> Result<SnapshotData, StorageError> {
        let mut current = self.lock();
        if let Some((held, _)) = current.as_ref() {
            if held.last_log_id >= meta.last_log_id {
                return Ok(state);
            }
        }
        match &self.dir {
            Some(dir) => {
                snapshot_file::write(dir, meta, &state)?;
                *current = Some((meta.clone(), None));
            }
            None => *current = Some((meta.clone(), Some(state.clone()))),
        }
        Ok(state)
    }

    /// The current snapshot, read (and verified) from its file.
    fn load(&self) -> Result<Option<(SnapshotMeta, SnapshotData)>, StorageError> {
        let current = self.lock();
        match (&self.dir, current.as_ref()) {
            (_, None) => Ok(None),
            (None, Some((meta, state))) => {
                Ok(Some((meta.clone(), state.clone().unwrap_or_default())))
            }
            (Some(dir), Some(_)) => snapshot_file::read(dir),
        }
    }
}
