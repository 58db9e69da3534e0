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
}

impl Table {
    pub const COUNT: usize = 6;
    pub const ALL: [Table; Table::COUNT] = [
        Table::Kvs,
        Table::Tombstones,
        Table::Nodes,
        Table::Services,
        Table::Checks,
        Table::Sessions,
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
        }
    }
}

/// The last index that changed each table.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct TableIndexes([Index; Table::COUNT]);

impl TableIndexes {
    pub(crate) fn get(&self, table: Table) -> Index {
        self.0[table.slot()]
    }

    pub(crate) fn set(&mut self, table: Table, index: Index) {
        self.0[table.slot()] = index;
    }
}
