use std::sync::{Mutex, PoisonError};

use state::{Command, Index, Outcome, StateError, Store};

/// The dev agent's log: it gives each command the next index and applies it
/// at once, with nothing kept on disk. Servers replace it with Raft, which
/// applies the same commands through the same [`Store::apply`].
#[derive(Default)]
pub struct LocalLog {
    last: Mutex<Index>,
}

impl LocalLog {
    /// Appends `command` and applies it; returns its index and outcome.
    pub fn append(&self, store: &Store, command: &Command) -> Result<(Index, Outcome), StateError> {
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        let index = (*last).max(store.index()) + 1;
        let outcome = store.apply(index, command)?;
        *last = index;
        Ok((index, outcome))
    }
}
