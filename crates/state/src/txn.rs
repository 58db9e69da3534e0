//! A write transaction over a private copy of the tables, and the dispatch
//! of transaction operations onto it.

use std::sync::Arc;

use crate::command::{KvOp, KvVerb, TxnOp};
use crate::kv::DirEntry;
use crate::session::ReleasedLock;
use crate::snapshot::Tables;
use crate::table::Table;
use crate::Index;

/// Past this many changed rows in one table, a commit wakes every watcher of
/// that table instead of tracking rows (go-memdb draws the same line).
pub(crate) const CHANGE_TRACKING_LIMIT: usize = 8192;

/// The rows a transaction changed, for waking watchers after it commits.
#[derive(Default)]
pub(crate) struct Changes {
    pub(crate) rows: Vec<(Table, String)>,
    pub(crate) per_table: [usize; Table::COUNT],
}

impl Changes {
    /// Whether `table` changed so much that all its watchers should wake.
    pub(crate) fn overflowed(&self, table: Table) -> bool {
        self.per_table[table.slot()] > CHANGE_TRACKING_LIMIT
    }
}

/// A transaction in progress: a copy of the tables it may change, the index
/// it writes at, and what it changed so far. Dropping it discards all.
pub(crate) struct WriteTxn {
    pub(crate) index: Index,
    pub(crate) tables: Tables,
    pub(crate) changes: Changes,
    /// Locks freed by destroyed sessions, for the agent's lock delays.
    pub(crate) released: Vec<ReleasedLock>,
    /// Services whose health view must be rebuilt before commit.
    pub(crate) stale_views: std::collections::BTreeSet<String>,
}

impl WriteTxn {
    pub(crate) fn new(index: Index, tables: Tables) -> WriteTxn {
        WriteTxn {
            index,
            tables,
            changes: Changes::default(),
            released: Vec::new(),
            stale_views: std::collections::BTreeSet::new(),
        }
    }

    /// Records that `key` of `table` changed at this transaction's index.
    pub(crate) fn touch(&mut self, table: Table, key: &str) {
        self.tables.indexes.set(table, self.index);
        self.mark(table, key);
    }

    /// Records that readers of `key` in `table` must look again, without
    /// moving the table's index (a node change, say, is news to the
    /// readers of every service on it).
    pub(crate) fn mark(&mut self, table: Table, key: &str) {
        let count = &mut self.changes.per_table[table.slot()];
        *count += 1;
        if *count <= CHANGE_TRACKING_LIMIT {
            self.changes.rows.push((table, key.to_owned()));
        }
    }

    /// Runs `ops` in order. Like Consul, every operation runs even after one
    /// fails, so the caller hears of every failure; any failure means the
    /// caller must discard this transaction.
    pub(crate) fn run(&mut self, ops: &[TxnOp]) -> TxnOutcome {
        let mut results = Vec::new();
        let mut errors = Vec::new();
        for (op_index, op) in ops.iter().enumerate() {
            match op {
                TxnOp::Kv(kv) => match self.kv_op(kv) {
                    Ok(found) => results.extend(found),
                    Err(what) => errors.push(TxnError { op_index, what }),
                },
            }
        }
        if errors.is_empty() {
            TxnOutcome::Committed(results)
        } else {
            TxnOutcome::Aborted(errors)
        }
    }

    pub(crate) fn kv_op(&mut self, op: &KvOp) -> Result<Vec<TxnResult>, String> {
        let key = op.key.as_str();
        let quoted = go_quote(key);
        let written = |entry: Arc<DirEntry>| vec![TxnResult::kv_without_value(&entry)];
        Ok(match op.verb {
            KvVerb::Set => written(self.kv_set(key, &op.value, op.flags)),
            KvVerb::Cas => match self.kv_set_cas(key, &op.value, op.flags, op.index) {
                Some(entry) => written(entry),
                None => return Err(format!("failed to set key {quoted}, index is stale")),
            },
            KvVerb::Delete => {
                self.kv_delete(key);
                Vec::new()
            }
            KvVerb::DeleteCas => {
                if !self.kv_delete_cas(key, op.index) {
                    return Err(format!("failed to delete key {quoted}, index is stale"));
                }
                Vec::new()
            }
            KvVerb::DeleteTree => {
                self.kv_delete_tree(key);
                Vec::new()
            }
            KvVerb::Get => match self.kv_get(key) {
                Some(entry) => vec![TxnResult::Kv(entry)],
                None => return Err(format!("key {quoted} doesn't exist")),
            },
            KvVerb::GetTree => self.kv_list(key).into_iter().map(TxnResult::Kv).collect(),
            KvVerb::CheckIndex => match self.kv_get(key) {
                None => return Err(format!("failed to check index, key {quoted} doesn't exist")),
                Some(e) if e.modify_index != op.index => {
                    return Err(format!(
                        "failed index check for key {quoted}, current modify index {} != {}",
                        e.modify_index, op.index
                    ))
                }
                Some(e) => written(e),
            },
            KvVerb::CheckNotExists => match self.kv_get(key) {
                Some(_) => return Err(format!("key {quoted} exists")),
                None => Vec::new(),
            },
            KvVerb::Lock => {
                self.check_lock_session(&op.session)?;
                match self.kv_lock(key, &op.value, op.flags, &op.session) {
                    Some(entry) => written(entry),
                    None => {
                        return Err(format!("failed to lock key {quoted}, lock is already held"))
                    }
                }
            }
            KvVerb::Unlock => {
                if op.session.is_empty() {
                    return Err("missing session".into());
                }
                match self.kv_unlock(key, &op.value, op.flags, &op.session) {
                    Some(entry) => written(entry),
                    None => {
                        return Err(format!(
                            "failed to unlock key {quoted}, lock isn't held, or is held by another session"
                        ))
                    }
                }
            }
            KvVerb::CheckSession => match self.kv_get(key) {
                None => {
                    return Err(format!(
                        "failed to check session, key {quoted} doesn't exist"
                    ))
                }
                Some(e) if e.session.as_deref().unwrap_or("") != op.session => {
                    return Err(format!(
                        "failed session check for key {quoted}, current session {} != {}",
                        go_quote(e.session.as_deref().unwrap_or("")),
                        go_quote(&op.session)
                    ))
                }
                Some(e) => written(e),
            },
        })
    }
}

impl WriteTxn {
    /// A lock needs a session that exists (Consul's texts).
    pub(crate) fn check_lock_session(&self, session: &str) -> Result<(), String> {
        if session.is_empty() {
            return Err("missing session".into());
        }
        if !self.session_exists(session) {
            return Err(format!("invalid session {}", go_quote(session)));
        }
        Ok(())
    }
}

/// What a transaction produced: its results if every operation succeeded,
/// or every failure if any did (and then nothing was applied).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum TxnOutcome {
    Committed(Vec<TxnResult>),
    Aborted(Vec<TxnError>),
}

/// One row a transaction operation returns.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum TxnResult {
    Kv(Arc<DirEntry>),
}

impl TxnResult {
    /// Writes and checks return the row without its value, as Consul does,
    /// so a large transaction does not echo its payload back.
    fn kv_without_value(entry: &DirEntry) -> TxnResult {
        TxnResult::Kv(Arc::new(DirEntry {
            value: Vec::new(),
            ..entry.clone()
        }))
    }
}

/// Why one operation of a transaction failed.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TxnError {
    /// The position of the failing operation in the request.
    pub op_index: usize,
    /// Consul's wording of the failure.
    pub what: String,
}

/// Quotes a string the way Go's `%q` does for the characters keys contain.
fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::go_quote;

    #[test]
    fn quotes_like_go() {
        assert_eq!(go_quote("a/b"), "\"a/b\"");
        assert_eq!(go_quote("say \"hi\"\n"), "\"say \\\"hi\\\"\\n\"");
    }
}
