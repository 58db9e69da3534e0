use std::sync::Arc;

use imbl::OrdMap;

use crate::catalog::CatalogTables;
use crate::coordinate::{CoordinateKey, NodeCoordinate};
use crate::kv::DirEntry;
use crate::prepared_query::PreparedQuery;
use crate::session::Session;
use crate::table::{Table, TableIndexes};
use crate::Index;

/// Every table at one moment. Cloning shares structure, so a writer starts
/// from the current version in O(1) and readers keep theirs untouched.
#[derive(Clone, Default)]
pub(crate) struct Tables {
    pub(crate) kvs: OrdMap<String, Arc<DirEntry>>,
    /// Deleted keys, with the index that deleted them.
    pub(crate) tombstones: OrdMap<String, Index>,
    /// Prefixes removed by a delete-tree: one marker stands for every key
    /// below it, so it also bounds reads of longer prefixes.
    pub(crate) tree_tombstones: OrdMap<String, Index>,
    pub(crate) catalog: CatalogTables,
    /// By lowercased session ID.
    pub(crate) sessions: OrdMap<String, Arc<Session>>,
    pub(crate) coordinates: OrdMap<CoordinateKey, Arc<NodeCoordinate>>,
    /// By lowercased query ID. Names and template prefixes are found by
    /// scanning: clusters hold few queries.
    pub(crate) prepared_queries: OrdMap<String, Arc<PreparedQuery>>,
    pub(crate) indexes: TableIndexes,
}

/// A consistent, immutable view of the store as of one applied index.
/// Holding one never blocks a writer; later writes are not visible in it.
#[derive(Clone, Default)]
pub struct Snapshot {
    pub(crate) index: Index,
    pub(crate) tables: Tables,
}

impl Snapshot {
    /// The last log index applied to this version.
    pub fn index(&self) -> Index {
        self.index
    }

    /// The last index that changed `table`.
    pub fn table_index(&self, table: Table) -> Index {
        self.tables.indexes.get(table)
    }

    /// How many live KV entries and tombstones this version holds.
    pub fn kv_counts(&self) -> (usize, usize) {
        (
            self.tables.kvs.len(),
            self.tables.tombstones.len() + self.tables.tree_tombstones.len(),
        )
    }
}
