//! A Raft log kept in memory, for the dev agent: the same write path as a
//! server (entries, commit, the same state machine), nothing on disk.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::io;
use std::ops::RangeBounds;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use openraft::storage::{IOFlushed, RaftLogStorage};
use openraft::{LogState, OptionalSend, RaftLogReader};

use crate::types::{RaftEntry, RaftLogId, RaftVote, TypeConfig};

/// An in-memory Raft log; clones share it.
#[derive(Clone, Default)]
pub(crate) struct MemLog {
    inner: Arc<Mutex<MemLogState>>,
}

#[derive(Default)]
struct MemLogState {
    entries: BTreeMap<u64, RaftEntry>,
    purged: Option<RaftLogId>,
    vote: Option<RaftVote>,
    committed: Option<RaftLogId>,
}

impl MemLog {
    fn lock(&self) -> MutexGuard<'_, MemLogState> {
        // Each operation below leaves the state whole before it can panic.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl RaftLogReader<TypeConfig> for MemLog {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> io::Result<Vec<RaftEntry>> {
        Ok(self
            .lock()
            .entries
            .range(range)
            .map(|(_, e)| e.clone())
            .collect())
    }

    async fn read_vote(&mut self) -> io::Result<Option<RaftVote>> {
        Ok(self.lock().vote)
    }
}

impl RaftLogStorage<TypeConfig> for MemLog {
    type LogReader = MemLog;

    async fn get_log_state(&mut self) -> io::Result<LogState<TypeConfig>> {
        let state = self.lock();
        let last = state.entries.values().next_back().map(|e| e.log_id);
        Ok(LogState {
            last_purged_log_id: state.purged,
            last_log_id: last.or(state.purged),
        })
    }

    async fn get_log_reader(&mut self) -> MemLog {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &RaftVote) -> io::Result<()> {
        self.lock().vote = Some(*vote);
        Ok(())
    }

    async fn save_committed(&mut self, committed: Option<RaftLogId>) -> io::Result<()> {
        self.lock().committed = committed;
        Ok(())
    }

    async fn read_committed(&mut self) -> io::Result<Option<RaftLogId>> {
        Ok(self.lock().committed)
    }

    async fn append<I>(&mut self, entries: I, callback: IOFlushed<TypeConfig>) -> io::Result<()>
    where
        I: IntoIterator<Item = RaftEntry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        {
            let mut state = self.lock();
            for entry in entries {
                state.entries.insert(entry.log_id.index, entry);
            }
        }
        // Memory is as durable as this log gets.
        callback.io_completed(Ok(()));
        Ok(())
    }

    async fn truncate_after(&mut self, last_log_id: Option<RaftLogId>) -> io::Result<()> {
        let mut state = self.lock();
        match last_log_id {
            Some(id) => {
                let _removed = state.entries.split_off(&id.index.saturating_add(1));
            }
            None => state.entries.clear(),
        }
        Ok(())
    }

    async fn purge(&mut self, log_id: RaftLogId) -> io::Result<()> {
        let mut state = self.lock();
        if state.purged.is_some_and(|p| p.index >= log_id.index) {
            return Ok(());
        }
        state.entries = state.entries.split_off(&log_id.index.saturating_add(1));
        state.purged = Some(log_id);
        Ok(())
    }
}
