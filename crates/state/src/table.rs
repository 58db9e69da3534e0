use serde::{Deserialize, Serialize};

use crate::Index;

/// The tables of the store. Each has its own index (the last log index that
/// changed it), which is what list endpoints report when they have no row.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Table {
    /// Key/value entries (`/v1/kv`).
    Kvs,
    /// Markers left by deleted keys so a prefix's index never goes back.
    Tombstones,
    /// Catalog nodes.
    Nodes,
    /// Service instances registered on nodes.
    Services,
    /// Health checks, of nodes and of service instances.
    Checks,
    /// Sessions: lock holders tied to a node and its checks.
    Sessions,
    /// Network coordinates of catalog nodes.
    Coordinates,
    /// Prepared queries (`/v1/query`).
    PreparedQueries,
}

impl Table {
    pub const COUNT: usize = 8;
    pub const ALL: [Table; Table::COUNT] = [
        Table::Kvs,
        Table::Tombstones,
        Table::Nodes,
        Table::Services,
        Table::Checks,
        Table::Sessions,
        Table::Coordinates,
        Table::PreparedQueries,
    ];

    pub(crate) fn slot(self) -> usize {
        self as usize
    }

    /// Consul's name for the table.
    pub fn name(self) -> &'static str {
        match self {
            Table::Kvs => "kvs",
            Table::Tombstones => "tombstones",
            Table::Nodes => "nodes",
            Table::Services => "services",
            Table::Checks => "checks",
            Table::Sessions => "sessions",
            Table::Coordinates => "coordinates",
            Table::PreparedQueries => "prepared-queries",
        }
    }
}

/// The last index that changed each table.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub(crate) struct TableIndexes([Index; Table::COUNT]);

/// Read from any length, so snapshots written before a table was added
/// still load (the new tables start at 0).
impl<'de> Deserialize<'de> for TableIndexes {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let stored = Vec::<Index>::deserialize(deserializer)?;
        let mut indexes = [0; Table::COUNT];
        for (slot, index) in indexes.iter_mut().zip(stored) {
            *slot = index;
        }
        Ok(TableIndexes(indexes))
    }
}

impl TableIndexes {
    pub(crate) fn get(&self, table: Table) -> Index {
        self.0[table.slot()]
    }

    pub(crate) fn set(&mut self, table: Table, index: Index) {
        self.0[table.slot()] = index;
    }
}
