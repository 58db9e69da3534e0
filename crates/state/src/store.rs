use std::sync::{Arc, Mutex, PoisonError};

use arc_swap::ArcSwap;

use crate::catalog::WriteError;
use crate::command::{Command, KvVerb, Outcome, TxnOp};
use crate::error::StateError;
use crate::session::ReleasedLock;
use crate::snapshot::Snapshot;
use crate::txn::{TxnOutcome, WriteTxn};
use crate::watch::{Watch, WatchRegistry, WatchSet};
use crate::Index;

/// The state store: the current version, published atomically; one writer at
/// a time; watchers woken after each commit.
pub struct Store {
    current: ArcSwap<Snapshot>,
    writer: Mutex<()>,
    watches: Arc<WatchRegistry>,
}

impl Default for Store {
    fn default() -> Self {
        Store::new()
    }
}

impl Store {
    pub fn new() -> Store {
        Store {
            current: ArcSwap::from_pointee(Snapshot::default()),
            writer: Mutex::new(()),
            watches: Arc::default(),
        }
    }

    /// The current version. Never blocks, whatever writers are doing.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// The last applied index.
    pub fn index(&self) -> Index {
        self.current.load().index
    }

    /// Applies `command` at log index `index`: the one place where state
    /// changes. Indexes must increase from call to call.
    ///
    /// A [`Command::Restore`] replaces everything and wakes every watcher;
    /// the store's index becomes `index` (never the snapshot's own, which
    /// may lie behind or ahead of this log), as do every table's index and
    /// every prefix's, so no reader sees an index go back.
    pub fn apply(&self, index: Index, command: &Command) -> Result<Outcome, StateError> {
        self.apply_with_effects(index, command)
            .map(|(outcome, _)| outcome)
    }

    /// [`Store::apply`], also reporting the locks that destroyed sessions
    /// gave up, for the lock delays the leader enforces.
    pub fn apply_with_effects(
        &self,
        index: Index,
        command: &Command,
    ) -> Result<(Outcome, Vec<ReleasedLock>), StateError> {
        let _writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let current = self.current.load_full();
        if index <= current.index {
            return Err(StateError::IndexNotIncreasing {
                given: index,
                applied: current.index,
            });
        }
        let mut txn = WriteTxn::new(index, current.tables.clone());
        let (outcome, keep) = match command {
            Command::Kv(op) => {
                let refused = match op.verb {
                    KvVerb::Lock => txn.check_lock_session(&op.session).err(),
                    KvVerb::Unlock if op.session.is_empty() => Some("missing session".to_owned()),
                    _ => None,
                };
                match refused {
                    Some(why) => (Outcome::KvRefused(why), false),
                    None => {
                        let ok = txn.kv_op(op).is_ok();
                        (Outcome::Kv(ok), ok)
                    }
                }
            }
            Command::Txn(ops) => {
                let outcome = txn.run(ops);
                let keep = matches!(outcome, TxnOutcome::Committed(_));
                (Outcome::Txn(outcome), keep)
            }
            Command::ReapTombstones { up_to } => {
                txn.reap_tombstones(*up_to);
                (Outcome::Reaped, true)
            }
            Command::Register(registration) => {
                let result = txn.register(registration);
                let keep = result.is_ok();
                (Outcome::Write(result), keep)
            }
            Command::Deregister(deregistration) => {
                let result = txn.deregister(deregistration);
                let keep = result.is_ok();
                (Outcome::Write(result), keep)
            }
            Command::SessionCreate(session) => {
                let result = txn.session_create(session);
                let keep = result.is_ok();
                (Outcome::Write(result), keep)
            }
            Command::SessionDestroy { id } => {
                txn.session_destroy(id);
                (Outcome::Write(Ok(())), true)
            }
            Command::CoordinateBatchUpdate(updates) => {
                txn.coordinate_batch_update(updates);
                (Outcome::Write(Ok(())), true)
            }
            Command::PreparedQuerySet(query) => {
                let result = txn.prepared_query_set(query);
                let keep = result.is_ok();
                (Outcome::Write(result), keep)
            }
            Command::PreparedQueryDelete { id } => {
                txn.prepared_query_delete(id);
                (Outcome::Write(Ok(())), true)
            }
            Command::Restore { state } => {
                return Ok((self.restore_at(index, state, &current), Vec::new()));
            }
        };
        let tables = if keep {
            txn.refresh_views();
            txn.tables
        } else {
            current.tables.clone()
        };
        self.current.store(Arc::new(Snapshot { index, tables }));
        if keep && !txn.changes.rows.is_empty() {
            self.watches.lock().notify(&txn.changes);
        }
        let released = if keep { txn.released } else { Vec::new() };
        Ok((outcome, released))
    }

    /// Runs a transaction of reads against the current version, without a
    /// log entry. Returns the index of the version it read.
    pub fn read_txn(&self, ops: &[TxnOp]) -> (Index, TxnOutcome) {
        debug_assert!(ops.iter().all(|TxnOp::Kv(op)| op.verb.is_read()));
        let snapshot = self.snapshot();
        let mut txn = WriteTxn::new(snapshot.index, snapshot.tables.clone());
        (snapshot.index, txn.run(ops))
    }

    /// Registers `set`, read from the version at index `seen`, for waking.
    /// If a newer version was published since, the watch is already fired:
    /// the reader must read again rather than sleep on what it may have
    /// missed. Taking the index, not the snapshot, lets a waiting reader
    /// drop its version instead of pinning it.
    pub fn watch(&self, set: &WatchSet, seen: Index) -> Watch {
        let mut registry = self.watches.lock();
        let stale = self.current.load().index != seen;
        registry.register(&self.watches, set, stale)
    }

    /// The restore part of [`Store::apply_with_effects`], under the writer
    /// lock. Bytes that do not decode leave the state as it was (at the new
    /// index, as any refused command does).
    fn restore_at(&self, index: Index, state: &[u8], current: &Snapshot) -> Outcome {
        match Snapshot::restored_at(state, index) {
            Ok(restored) => {
                self.current.store(Arc::new(restored));
                self.watches.lock().notify_everything();
                Outcome::Write(Ok(()))
            }
            Err(error) => {
                self.current.store(Arc::new(Snapshot {
                    index,
                    tables: current.tables.clone(),
                }));
                Outcome::Write(Err(WriteError(error.to_string())))
            }
        }
    }

    /// Replaces the whole state with a snapshot made by
    /// [`Snapshot::to_bytes`], and wakes every watcher.
    pub fn restore(&self, bytes: &[u8]) -> Result<(), StateError> {
        let restored = Snapshot::from_bytes(bytes)?;
        let _writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        self.current.store(Arc::new(restored));
        self.watches.lock().notify_everything();
        Ok(())
    }
}

impl KvVerb {
    /// Whether `/v1/kv` may send this verb as a single write.
    pub fn is_kv_write(self) -> bool {
        matches!(
            self,
            KvVerb::Set
                | KvVerb::Cas
                | KvVerb::Delete
                | KvVerb::DeleteCas
                | KvVerb::DeleteTree
                | KvVerb::Lock
                | KvVerb::Unlock
        )
    }
}
