//! Watch sets: what a reader looked at, so a blocking query sleeps until one
//! of exactly those rows changes.
//!
//! A commit publishes the new version first and then wakes the watchers of
//! the rows it changed; registering a watch checks, under the same lock,
//! whether a version newer than the one read has been published. Between the
//! two, no change can slip past a watcher.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::Notify;

use crate::table::Table;
use crate::txn::Changes;

/// How many rows a watch set tracks before it falls back to watching whole
/// tables; Consul's catalog endpoints use the same budget.
pub const DEFAULT_WATCH_LIMIT: usize = 2048;

/// One thing a reader depends on.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum WatchScope {
    /// A single row, present or not.
    Key(Table, String),
    /// Every row whose key starts with the prefix.
    Prefix(Table, String),
    /// Any row of the table.
    Table(Table),
}

impl WatchScope {
    fn table(&self) -> Table {
        match self {
            WatchScope::Key(t, _) | WatchScope::Prefix(t, _) | WatchScope::Table(t) => *t,
        }
    }
}

/// The scopes one read depended on. Above its limit, the set stops tracking
/// rows and watches the tables they belong to instead: more wake-ups, bounded
/// memory.
#[derive(Clone, Debug)]
pub struct WatchSet {
    scopes: Vec<WatchScope>,
    limit: usize,
    whole_table: [bool; Table::COUNT],
}

impl Default for WatchSet {
    fn default() -> Self {
        WatchSet::with_limit(DEFAULT_WATCH_LIMIT)
    }
}

impl WatchSet {
    pub fn new() -> WatchSet {
        WatchSet::default()
    }

    pub fn with_limit(limit: usize) -> WatchSet {
        WatchSet {
            scopes: Vec::new(),
            limit,
            whole_table: [false; Table::COUNT],
        }
    }

    pub fn add_key(&mut self, table: Table, key: &str) {
        self.add(WatchScope::Key(table, key.to_owned()));
    }

    pub fn add_prefix(&mut self, table: Table, prefix: &str) {
        self.add(WatchScope::Prefix(table, prefix.to_owned()));
    }

    pub fn add_table(&mut self, table: Table) {
        self.add(WatchScope::Table(table));
    }

    fn add(&mut self, scope: WatchScope) {
        let table = scope.table();
        if self.whole_table[table.slot()] {
            return;
        }
        if matches!(scope, WatchScope::Table(_)) {
            self.scopes.retain(|s| s.table() != table);
            self.whole_table[table.slot()] = true;
        } else if self.scopes.len() >= self.limit {
            self.coarsen();
            if self.whole_table[table.slot()] {
                return;
            }
            self.whole_table[table.slot()] = true;
            self.scopes.push(WatchScope::Table(table));
            return;
        }
        self.scopes.push(scope);
    }

    /// Replaces every row and prefix scope by its table.
    fn coarsen(&mut self) {
        let mut tables = self.whole_table;
        for scope in &self.scopes {
            tables[scope.table().slot()] = true;
        }
        self.whole_table = tables;
        self.scopes = Table::ALL
            .into_iter()
            .filter(|t| tables[t.slot()])
            .map(WatchScope::Table)
            .collect();
    }

    pub fn scopes(&self) -> &[WatchScope] {
        &self.scopes
    }

    pub fn is_empty(&self) -> bool {
        self.scopes.is_empty()
    }
}

/// The one-shot signal behind a [`Watch`].
#[derive(Default)]
struct Signal {
    fired: AtomicBool,
    notify: Notify,
}

impl Signal {
    fn fire(&self) {
        self.fired.store(true, Ordering::Release);
        self.notify.notify_one();
    }
}

struct Waiter {
    id: u64,
    signal: Arc<Signal>,
}

type Waiters = HashMap<Box<str>, Vec<Waiter>>;

#[derive(Default)]
struct Registered {
    next_id: u64,
    keys: [Waiters; Table::COUNT],
    prefixes: [Waiters; Table::COUNT],
    tables: [Vec<Waiter>; Table::COUNT],
}

/// Every registered watch, by what it watches.
#[derive(Default)]
pub(crate) struct WatchRegistry {
    registered: Mutex<Registered>,
}

fn fire_all(waiters: impl IntoIterator<Item = Waiter>) {
    for waiter in waiters {
        waiter.signal.fire();
    }
}

impl WatchRegistry {
    /// Holds the registry. The writer holds it while waking watchers, and a
    /// reader while registering, which is what orders the two.
    pub(crate) fn lock(&self) -> RegistryGuard<'_> {
        RegistryGuard(
            self.registered
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        )
    }
}

pub(crate) struct RegistryGuard<'a>(MutexGuard<'a, Registered>);

impl RegistryGuard<'_> {
    /// Registers a watch on `set`; it fires at once if `stale` (a newer
    /// version than the one the reader saw is already published).
    pub(crate) fn register(
        &mut self,
        registry: &Arc<WatchRegistry>,
        set: &WatchSet,
        stale: bool,
    ) -> Watch {
        let reg = &mut *self.0;
        let id = reg.next_id;
        reg.next_id += 1;
        let signal = Arc::new(Signal::default());
        for scope in set.scopes() {
            let waiter = Waiter {
                id,
                signal: Arc::clone(&signal),
            };
            match scope {
                WatchScope::Key(t, key) => reg.keys[t.slot()]
                    .entry(key.as_str().into())
                    .or_default()
                    .push(waiter),
                WatchScope::Prefix(t, prefix) => reg.prefixes[t.slot()]
                    .entry(prefix.as_str().into())
                    .or_default()
                    .push(waiter),
                WatchScope::Table(t) => reg.tables[t.slot()].push(waiter),
            }
        }
        if stale {
            signal.fire();
        }
        Watch {
            id,
            signal,
            scopes: set.scopes().to_vec(),
            registry: Arc::clone(registry),
        }
    }

    /// Wakes the watchers of every row in `changes`, and every watcher of a
    /// table whose changes were too many to track row by row.
    pub(crate) fn notify(&mut self, changes: &Changes) {
        let reg = &mut *self.0;
        for table in Table::ALL {
            let t = table.slot();
            if changes.per_table[t] == 0 {
                continue;
            }
            fire_all(std::mem::take(&mut reg.tables[t]));
            if changes.overflowed(table) {
                fire_all(reg.keys[t].drain().flat_map(|(_, w)| w));
                fire_all(reg.prefixes[t].drain().flat_map(|(_, w)| w));
            }
        }
        for (table, key) in &changes.rows {
            let t = table.slot();
            if changes.overflowed(*table) {
                continue;
            }
            if let Some(waiters) = reg.keys[t].remove(key.as_str()) {
                fire_all(waiters);
            }
            if reg.prefixes[t].is_empty() {
                continue;
            }
            let ends = key.char_indices().map(|(i, _)| i).chain([key.len()]);
            for end in ends {
                if let Some(waiters) = reg.prefixes[t].remove(&key[..end]) {
                    fire_all(waiters);
                }
            }
        }
    }

    /// Wakes every watcher (the whole state was replaced).
    pub(crate) fn notify_everything(&mut self) {
        let reg = &mut *self.0;
        for t in 0..Table::COUNT {
            fire_all(std::mem::take(&mut reg.tables[t]));
            fire_all(reg.keys[t].drain().flat_map(|(_, w)| w));
            fire_all(reg.prefixes[t].drain().flat_map(|(_, w)| w));
        }
    }

    fn forget(&mut self, id: u64, scopes: &[WatchScope]) {
        let reg = &mut *self.0;
        fn remove_from(map: &mut Waiters, key: &str, id: u64) {
            if let Some(waiters) = map.get_mut(key) {
                waiters.retain(|w| w.id != id);
                if waiters.is_empty() {
                    map.remove(key);
                }
            }
        }
        for scope in scopes {
            match scope {
                WatchScope::Key(t, key) => remove_from(&mut reg.keys[t.slot()], key, id),
                WatchScope::Prefix(t, p) => remove_from(&mut reg.prefixes[t.slot()], p, id),
                WatchScope::Table(t) => reg.tables[t.slot()].retain(|w| w.id != id),
            }
        }
    }
}

/// A registered watch: resolves once something it watches changes. Dropping
/// it unregisters it.
pub struct Watch {
    id: u64,
    signal: Arc<Signal>,
    scopes: Vec<WatchScope>,
    registry: Arc<WatchRegistry>,
}

impl Watch {
    /// Waits until a watched row changes (at once if one already has).
    pub async fn changed(&self) {
        if !self.has_fired() {
            self.signal.notify.notified().await;
        }
    }

    pub fn has_fired(&self) -> bool {
        self.signal.fired.load(Ordering::Acquire)
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        if !self.scopes.is_empty() {
            self.registry.lock().forget(self.id, &self.scopes);
        }
    }
}
