//! Snapshot to bytes and back: the payload of Raft snapshots and of
//! `/v1/snapshot`.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::error::StateError;
use crate::kv::DirEntry;
use crate::snapshot::{Snapshot, Tables};
use crate::table::TableIndexes;
use crate::Index;

/// Leads every snapshot, so a foreign or future file is refused, not misread.
const MAGIC: &[u8; 8] = b"PRSTATE1";

#[derive(Serialize, Deserialize)]
struct Persisted {
    index: Index,
    indexes: TableIndexes,
    kvs: Vec<DirEntry>,
    tombstones: Vec<(String, Index)>,
    tree_tombstones: Vec<(String, Index)>,
}

impl Snapshot {
    /// Encodes this version. Runs on a snapshot, so it never holds up writes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let persisted = Persisted {
            index: self.index,
            indexes: self.tables.indexes,
            kvs: self.tables.kvs.values().map(|e| (**e).clone()).collect(),
            tombstones: pairs(&self.tables.tombstones),
            tree_tombstones: pairs(&self.tables.tree_tombstones),
        };
        let mut out = MAGIC.to_vec();
        // Encoding plain owned data into a Vec cannot fail.
        rmp_serde::encode::write(&mut out, &persisted).unwrap_or_default();
        out
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Snapshot, StateError> {
        let body = bytes
            .strip_prefix(MAGIC.as_slice())
            .ok_or_else(|| StateError::InvalidSnapshot("missing header".into()))?;
        let persisted: Persisted =
            rmp_serde::from_slice(body).map_err(|e| StateError::InvalidSnapshot(e.to_string()))?;
        let mut tables = Tables {
            indexes: persisted.indexes,
            ..Tables::default()
        };
        for entry in persisted.kvs {
            if entry.modify_index > persisted.index {
                return Err(StateError::InvalidSnapshot(format!(
                    "key {:?} modified at {} after the snapshot's index {}",
                    entry.key, entry.modify_index, persisted.index
                )));
            }
            tables.kvs.insert(entry.key.clone(), Arc::new(entry));
        }
        tables.tombstones = persisted.tombstones.into_iter().collect();
        tables.tree_tombstones = persisted.tree_tombstones.into_iter().collect();
        Ok(Snapshot {
            index: persisted.index,
            tables,
        })
    }
}

fn pairs(map: &imbl::OrdMap<String, Index>) -> Vec<(String, Index)> {
    map.iter().map(|(k, &i)| (k.clone(), i)).collect()
}
