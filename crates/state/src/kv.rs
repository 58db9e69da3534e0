//! The KV table: Consul's `DirEntry` rows, their reads on a snapshot, and the
//! row-level writes a transaction makes.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::snapshot::Snapshot;
use crate::table::Table;
use crate::txn::WriteTxn;
use crate::watch::WatchSet;
use crate::Index;

/// One key/value entry, as Consul stores and returns it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirEntry {
    pub key: String,
    #[serde(with = "serde_bytes")]
    pub value: Vec<u8>,
    /// Opaque to the store; clients keep their own metadata here.
    pub flags: u64,
    /// The session holding the lock on this key, if any.
    pub session: Option<String>,
    /// How many times the lock on this key has been acquired.
    pub lock_index: u64,
    pub create_index: Index,
    pub modify_index: Index,
}

impl DirEntry {
    /// Whether a write of `other` would change nothing a reader can see, in
    /// which case Consul keeps the old `ModifyIndex` and wakes no one.
    fn same_content(&self, other: &DirEntry) -> bool {
        self.flags == other.flags
            && self.value == other.value
            && self.session == other.session
            && self.lock_index == other.lock_index
    }
}

/// The keys under `prefix`, in order.
fn under<'a>(
    map: &'a imbl::OrdMap<String, Arc<DirEntry>>,
    prefix: &'a str,
) -> impl Iterator<Item = (&'a String, &'a Arc<DirEntry>)> + 'a {
    map.range(prefix.to_owned()..)
        .take_while(move |(k, _)| k.starts_with(prefix))
}

impl Snapshot {
    /// The highest index of the KV table and its tombstones: what a KV read
    /// reports when it has nothing more specific.
    pub fn kvs_max_index(&self) -> Index {
        self.table_index(Table::Kvs)
            .max(self.table_index(Table::Tombstones))
    }

    /// The highest index of a deletion that a read of `prefix` covers: a
    /// deleted key under it, a deleted tree under it, or a deleted tree
    /// that contained it. 0 if none.
    fn graveyard_max_index(&self, prefix: &str) -> Index {
        let below = |map: &imbl::OrdMap<String, Index>| {
            map.range(prefix.to_owned()..)
                .take_while(|(k, _)| k.starts_with(prefix))
                .map(|(_, &index)| index)
                .max()
                .unwrap_or(0)
        };
        let trees = &self.tables.tree_tombstones;
        let above = prefix
            .char_indices()
            .map(|(i, _)| i)
            .filter_map(|end| trees.get(&prefix[..end]).copied())
            .max()
            .unwrap_or(0);
        below(&self.tables.tombstones).max(below(trees)).max(above)
    }

    /// One key, and the KV table's index. Watches the key.
    pub fn kv_get(&self, key: &str, ws: &mut WatchSet) -> (Index, Option<Arc<DirEntry>>) {
        ws.add_key(Table::Kvs, key);
        (self.kvs_max_index(), self.tables.kvs.get(key).cloned())
    }

    /// Every entry under `prefix`, with the index of the newest change under
    /// it (including deletions, through tombstones). Watches the prefix.
    pub fn kv_list(&self, prefix: &str, ws: &mut WatchSet) -> (Index, Vec<Arc<DirEntry>>) {
        ws.add_prefix(Table::Kvs, prefix);
        let entries: Vec<Arc<DirEntry>> = under(&self.tables.kvs, prefix)
            .map(|(_, e)| Arc::clone(e))
            .collect();
        let newest = entries.iter().map(|e| e.modify_index).max().unwrap_or(0);
        (self.prefix_index(prefix, newest), entries)
    }

    /// The keys under `prefix`; with a separator, keys are cut after the
    /// first separator past the prefix and repeats collapsed, as a directory
    /// listing. Watches the prefix.
    pub fn kv_keys(
        &self,
        prefix: &str,
        separator: Option<&str>,
        ws: &mut WatchSet,
    ) -> (Index, Vec<String>) {
        ws.add_prefix(Table::Kvs, prefix);
        let mut newest = 0;
        let mut keys: Vec<String> = Vec::new();
        for (key, entry) in under(&self.tables.kvs, prefix) {
            newest = newest.max(entry.modify_index);
            let listed = match separator.filter(|s| !s.is_empty()) {
                Some(sep) => match key[prefix.len()..].find(sep) {
                    Some(at) => &key[..prefix.len() + at + sep.len()],
                    None => key.as_str(),
                },
                None => key.as_str(),
            };
            if keys.last().map(String::as_str) != Some(listed) {
                keys.push(listed.to_owned());
            }
        }
        (self.prefix_index(prefix, newest), keys)
    }

    /// Consul's rule for a prefix read's index: the newest entry or
    /// tombstone under the prefix, else the whole table's index.
    fn prefix_index(&self, prefix: &str, newest_entry: Index) -> Index {
        let newest = if prefix.is_empty() {
            self.kvs_max_index()
        } else {
            newest_entry.max(self.graveyard_max_index(prefix))
        };
        if newest == 0 {
            self.kvs_max_index()
        } else {
            newest
        }
    }
}

impl WriteTxn {
    pub(crate) fn kv_get(&self, key: &str) -> Option<Arc<DirEntry>> {
        self.tables.kvs.get(key).cloned()
    }

    pub(crate) fn kv_list(&self, prefix: &str) -> Vec<Arc<DirEntry>> {
        under(&self.tables.kvs, prefix)
            .map(|(_, e)| Arc::clone(e))
            .collect()
    }

    /// Writes `entry` (key, value, flags), keeping the existing row's
    /// creation index, lock index and session. Returns the row as stored.
    pub(crate) fn kv_set(&mut self, key: &str, value: &[u8], flags: u64) -> Arc<DirEntry> {
        let existing = self.kv_get(key);
        let mut entry = DirEntry {
            key: key.to_owned(),
            value: value.to_vec(),
            flags,
            session: None,
            lock_index: 0,
            create_index: self.index,
            modify_index: self.index,
        };
        if let Some(old) = &existing {
            entry.create_index = old.create_index;
            entry.lock_index = old.lock_index;
            entry.session = old.session.clone();
            if old.same_content(&entry) {
                return Arc::clone(old);
            }
        }
        let entry = Arc::new(entry);
        self.tables.kvs.insert(key.to_owned(), Arc::clone(&entry));
        self.touch(Table::Kvs, key);
        entry
    }

    /// Takes the key's lock for `session` (which must exist), writing the
    /// value. Re-acquiring by the holder keeps the lock index; a new holder
    /// increments it. `None` if another session holds the lock.
    pub(crate) fn kv_lock(
        &mut self,
        key: &str,
        value: &[u8],
        flags: u64,
        session: &str,
    ) -> Option<Arc<DirEntry>> {
        let existing = self.kv_get(key);
        let (create_index, lock_index) = match &existing {
            Some(e) => match e.session.as_deref() {
                Some(holder) if holder == session => (e.create_index, e.lock_index),
                Some(_) => return None,
                None => (e.create_index, e.lock_index + 1),
            },
            None => (self.index, 1),
        };
        let entry = DirEntry {
            key: key.to_owned(),
            value: value.to_vec(),
            flags,
            session: Some(session.to_owned()),
            lock_index,
            create_index,
            modify_index: self.index,
        };
        if existing.as_deref().is_some_and(|e| e.same_content(&entry)) {
            return existing;
        }
        let entry = Arc::new(entry);
        self.tables.kvs.insert(key.to_owned(), Arc::clone(&entry));
        self.touch(Table::Kvs, key);
        Some(entry)
    }

    /// Releases the key's lock if `session` holds it, writing the value.
    pub(crate) fn kv_unlock(
        &mut self,
        key: &str,
        value: &[u8],
        flags: u64,
        session: &str,
    ) -> Option<Arc<DirEntry>> {
        let existing = self.kv_get(key)?;
        if existing.session.as_deref() != Some(session) {
            return None;
        }
        let entry = Arc::new(DirEntry {
            value: value.to_vec(),
            flags,
            session: None,
            modify_index: self.index,
            ..(*existing).clone()
        });
        self.tables.kvs.insert(key.to_owned(), Arc::clone(&entry));
        self.touch(Table::Kvs, key);
        Some(entry)
    }

    /// Clears a key's lock holder, keeping its value (a destroyed session
    /// with the `release` behavior).
    pub(crate) fn kv_release(&mut self, key: &str) {
        let Some(existing) = self.kv_get(key) else {
            return;
        };
        let entry = DirEntry {
            session: None,
            modify_index: self.index,
            ..(*existing).clone()
        };
        self.tables.kvs.insert(key.to_owned(), Arc::new(entry));
        self.touch(Table::Kvs, key);
    }

    /// Check-and-set: index 0 writes only a new key; any other index writes
    /// only if it is the key's current `ModifyIndex`.
    pub(crate) fn kv_set_cas(
        &mut self,
        key: &str,
        value: &[u8],
        flags: u64,
        cas: Index,
    ) -> Option<Arc<DirEntry>> {
        let current = self.kv_get(key).map(|e| e.modify_index);
        let allowed = match (cas, current) {
            (0, None) => true,
            (c, Some(m)) => c != 0 && c == m,
            (_, None) => false,
        };
        allowed.then(|| self.kv_set(key, value, flags))
    }

    /// Deletes one key, leaving a tombstone. A missing key is not an error.
    pub(crate) fn kv_delete(&mut self, key: &str) {
        if self.tables.kvs.remove(key).is_some() {
            self.bury(key);
        }
    }

    /// Deletes a key only if `cas` is its current `ModifyIndex`. As in
    /// Consul, deleting a key that does not exist succeeds.
    pub(crate) fn kv_delete_cas(&mut self, key: &str, cas: Index) -> bool {
        match self.kv_get(key) {
            None => true,
            Some(e) if e.modify_index == cas => {
                self.kv_delete(key);
                true
            }
            Some(_) => false,
        }
    }

    /// Deletes every key under `prefix`. Like Consul, one tombstone at the
    /// prefix stands for them all (none for the empty prefix: the table's
    /// own index already covers every reader).
    pub(crate) fn kv_delete_tree(&mut self, prefix: &str) {
        let doomed: Vec<String> = under(&self.tables.kvs, prefix)
            .map(|(k, _)| k.clone())
            .collect();
        for key in &doomed {
            self.tables.kvs.remove(key);
            self.touch(Table::Kvs, key);
        }
        if !doomed.is_empty() && !prefix.is_empty() {
            self.tables
                .tree_tombstones
                .insert(prefix.to_owned(), self.index);
            self.tables.indexes.set(Table::Tombstones, self.index);
        }
    }

    fn bury(&mut self, key: &str) {
        self.tables.tombstones.insert(key.to_owned(), self.index);
        self.tables.indexes.set(Table::Tombstones, self.index);
        self.touch(Table::Kvs, key);
    }

    /// Drops tombstones at or below `up_to`: they have outlived any client
    /// that could still be blocked on an older index.
    pub(crate) fn reap_tombstones(&mut self, up_to: Index) {
        let mut reaped = false;
        for map in [
            &mut self.tables.tombstones,
            &mut self.tables.tree_tombstones,
        ] {
            let expired: Vec<String> = map
                .iter()
                .filter(|(_, &index)| index <= up_to)
                .map(|(k, _)| k.clone())
                .collect();
            for key in &expired {
                map.remove(key);
            }
            reaped |= !expired.is_empty();
        }
        if reaped {
            self.tables.indexes.set(Table::Tombstones, self.index);
        }
    }
}
