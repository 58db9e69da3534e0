use std::sync::{Mutex, PoisonError};

use state::{Command, Index, Outcome, ReleasedLock, StateError, Store};

/// The dev agent's log: it gives each command the next index and applies it
/// at once, with nothing kept on disk. Servers replace it with Raft, which
/// applies the same commands through the same [`Store::apply`].
#[derive(Default)]
pub struct LocalLog {
    last: Mutex<Index>,
}

impl LocalLog {
    /// Appends `command` and applies it; returns its index, its outcome
    /// and the locks it freed.
    pub fn append(
        &self,
        store: &Store,
        command: &Command,
    ) -> Result<(Index, Outcome, Vec<ReleasedLock>), StateError> {
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        let index = (*last).max(store.index()) + 1;
        let (outcome, released) = store.apply_with_effects(index, command)?;
        *last = index;
        Ok((index, outcome, released))
    }
}
