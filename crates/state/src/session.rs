//! Sessions: a lock holder bound to a node and its health checks. When the
//! node goes or a check turns critical, the session is destroyed and the
//! keys it holds are released (or deleted), which is what makes Consul's
//! locks safe against a dead holder.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::catalog::WriteError;
use crate::snapshot::Snapshot;
use crate::table::Table;
use crate::txn::WriteTxn;
use crate::watch::WatchSet;
use crate::Index;

/// What happens to a session's keys when it is destroyed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Behavior {
    /// The keys stay, unlocked.
    #[default]
    Release,
    /// The keys are deleted.
    Delete,
}

impl Behavior {
    pub fn as_str(self) -> &'static str {
        match self {
            Behavior::Release => "release",
            Behavior::Delete => "delete",
        }
    }
}

/// A session (Consul's `structs.Session`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub id: String,
    pub name: String,
    pub node: String,
    /// Node-level checks the session depends on (`serfHealth` by default).
    pub node_checks: Vec<String>,
    /// Service checks (on the same node) the session depends on.
    pub service_checks: Vec<String>,
    /// How long a released key cannot be re-acquired, in nanoseconds.
    pub lock_delay_ns: u64,
    pub behavior: Behavior,
    /// As given (`"30s"`), or empty for no TTL.
    pub ttl: String,
    pub create_index: Index,
    pub modify_index: Index,
}

impl Session {
    fn checks(&self) -> impl Iterator<Item = &String> {
        self.node_checks.iter().chain(&self.service_checks)
    }
}

/// A key whose lock a destroyed session gave up, and how long it must stay
/// free: the agent turns this into a lock-delay deadline.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleasedLock {
    pub key: String,
    pub lock_delay_ns: u64,
}

impl WriteTxn {
    pub(crate) fn session_create(&mut self, session: &Session) -> Result<(), WriteError> {
        let node_key = session.node.to_lowercase();
        if !self.tables.catalog.nodes.contains_key(&node_key) {
            return Err(WriteError("Missing node registration".into()));
        }
        for check_id in session.checks() {
            let key = (node_key.clone(), check_id.clone());
            let Some(check) = self.tables.catalog.checks.get(&key) else {
                return Err(WriteError(format!(
                    "Missing check '{check_id}' registration"
                )));
            };
            if check.status == "critical" {
                return Err(WriteError(format!(
                    "Check '{check_id}' is in critical state"
                )));
            }
        }
        let row = Session {
            create_index: self.index,
            modify_index: self.index,
            ..session.clone()
        };
        let id = row.id.to_lowercase();
        self.tables.sessions.insert(id.clone(), Arc::new(row));
        self.touch(Table::Sessions, &id);
        Ok(())
    }

    /// Destroys a session and frees what it holds. Unknown IDs are ignored.
    pub(crate) fn session_destroy(&mut self, id: &str) {
        let id = id.to_lowercase();
        let Some(session) = self.tables.sessions.remove(&id) else {
            return;
        };
        self.touch(Table::Sessions, &id);
        self.delete_session_queries(&id);
        let held: Vec<String> = self
            .tables
            .kvs
            .iter()
            .filter(|(_, e)| {
                e.session
                    .as_deref()
                    .is_some_and(|s| s.eq_ignore_ascii_case(&id))
            })
            .map(|(k, _)| k.clone())
            .collect();
        for key in held {
            match session.behavior {
                Behavior::Release => self.kv_release(&key),
                Behavior::Delete => self.kv_delete(&key),
            }
            self.released.push(ReleasedLock {
                key,
                lock_delay_ns: session.lock_delay_ns,
            });
        }
    }

    /// Destroys the sessions that depend on `check_id` of a node.
    pub(crate) fn invalidate_check_sessions(&mut self, node_key: &str, check_id: &str) {
        let doomed: Vec<String> = self
            .tables
            .sessions
            .values()
            .filter(|s| s.node.to_lowercase() == node_key && s.checks().any(|c| c == check_id))
            .map(|s| s.id.clone())
            .collect();
        for id in doomed {
            self.session_destroy(&id);
        }
    }

    /// Destroys every session of a node.
    pub(crate) fn invalidate_node_sessions(&mut self, node_key: &str) {
        let doomed: Vec<String> = self
            .tables
            .sessions
            .values()
            .filter(|s| s.node.to_lowercase() == node_key)
            .map(|s| s.id.clone())
            .collect();
        for id in doomed {
            self.session_destroy(&id);
        }
    }

    pub(crate) fn session_exists(&self, id: &str) -> bool {
        self.tables.sessions.contains_key(&id.to_lowercase())
    }
}

impl Snapshot {
    /// One session by ID (any case). Index: the sessions table.
    pub fn session(&self, id: &str, ws: &mut WatchSet) -> (Index, Option<Arc<Session>>) {
        ws.add_table(Table::Sessions);
        (
            self.table_index(Table::Sessions),
            self.tables.sessions.get(&id.to_lowercase()).cloned(),
        )
    }

    /// Every session, or those of one node.
    pub fn sessions(&self, node: Option<&str>, ws: &mut WatchSet) -> (Index, Vec<Arc<Session>>) {
        ws.add_table(Table::Sessions);
        let node = node.map(str::to_lowercase);
        let out = self
            .tables
            .sessions
            .values()
            .filter(|s| node.as_ref().is_none_or(|n| s.node.to_lowercase() == *n))
            .cloned()
            .collect();
        (self.table_index(Table::Sessions), out)
    }
}
