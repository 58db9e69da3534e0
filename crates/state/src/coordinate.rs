//! Network coordinates: the Vivaldi position each agent reports for its node
//! (Consul's `coordinates` table). Rows live only as long as their node: an
//! update for a node the catalog does not know is dropped, and deleting a
//! node deletes its coordinates, so no cleanup is ever needed elsewhere.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::snapshot::Snapshot;
use crate::table::Table;
use crate::txn::WriteTxn;
use crate::watch::WatchSet;
use crate::Index;

/// A Vivaldi coordinate as the catalog keeps it (Serf's fields, seconds).
/// The store does not compute with it; the `coordinate` crate does.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Coord {
    pub vec: Vec<f64>,
    pub error: f64,
    pub adjustment: f64,
    pub height: f64,
}

impl Coord {
    /// No NaN or infinity anywhere: Consul drops updates that have one.
    pub fn is_valid(&self) -> bool {
        self.vec.iter().all(|f| f.is_finite())
            && self.error.is_finite()
            && self.adjustment.is_finite()
            && self.height.is_finite()
    }

    fn bits(&self) -> impl Iterator<Item = u64> + '_ {
        self.vec
            .iter()
            .chain([&self.error, &self.adjustment, &self.height])
            .map(|f| f.to_bits())
    }
}

/// Compared bit for bit, so equality is an equivalence (commands are `Eq`).
impl PartialEq for Coord {
    fn eq(&self, other: &Coord) -> bool {
        self.vec.len() == other.vec.len() && self.bits().eq(other.bits())
    }
}

impl Eq for Coord {}

/// One node's coordinate in one network segment (Consul's
/// `structs.Coordinate`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeCoordinate {
    pub node: String,
    /// Empty for the default segment, the only one without Enterprise.
    pub segment: String,
    pub coord: Coord,
}

/// Rows are keyed like Consul's `id` index: lowercased node, then segment.
pub(crate) type CoordinateKey = (String, String);

pub(crate) fn key_of(node: &str, segment: &str) -> CoordinateKey {
    (node.to_lowercase(), segment.to_lowercase())
}

/// The watch key of a node's coordinates: all its segments at once.
fn row(node_key: &str) -> String {
    node_key.to_owned()
}

impl WriteTxn {
    /// Consul's `CoordinateBatchUpdate`: upserts every valid coordinate of
    /// a known node and skips the rest without complaint (a node may send
    /// before it has registered; its next update will land). The table's
    /// index moves even when every update was skipped, as Consul's does.
    pub(crate) fn coordinate_batch_update(&mut self, updates: &[NodeCoordinate]) {
        self.tables.indexes.set(Table::Coordinates, self.index);
        for update in updates {
            let (node_key, segment_key) = key_of(&update.node, &update.segment);
            if !update.coord.is_valid() || !self.tables.catalog.nodes.contains_key(&node_key) {
                continue;
            }
            self.tables
                .coordinates
                .insert((node_key.clone(), segment_key), Arc::new(update.clone()));
            self.touch(Table::Coordinates, &row(&node_key));
        }
    }

    /// Removes every coordinate of a node that is leaving the catalog.
    pub(crate) fn delete_node_coordinates(&mut self, node_key: &str) {
        let doomed: Vec<CoordinateKey> = self
            .tables
            .coordinates
            .keys()
            .filter(|(node, _)| node == node_key)
            .cloned()
            .collect();
        if doomed.is_empty() {
            return;
        }
        for key in doomed {
            self.tables.coordinates.remove(&key);
        }
        self.touch(Table::Coordinates, &row(node_key));
    }
}

impl Snapshot {
    /// Every coordinate, by node then segment. Index: the coordinates table.
    pub fn coordinates(&self, ws: &mut WatchSet) -> (Index, Vec<Arc<NodeCoordinate>>) {
        ws.add_table(Table::Coordinates);
        (
            self.table_index(Table::Coordinates),
            self.tables.coordinates.values().cloned().collect(),
        )
    }

    /// A node's coordinates (one per segment). Index: the coordinates table.
    pub fn node_coordinates(
        &self,
        node: &str,
        ws: &mut WatchSet,
    ) -> (Index, Vec<Arc<NodeCoordinate>>) {
        let node_key = node.to_lowercase();
        ws.add_key(Table::Coordinates, &row(&node_key));
        let out = self
            .tables
            .coordinates
            .range((node_key.clone(), String::new())..)
            .take_while(|((n, _), _)| *n == node_key)
            .map(|(_, c)| Arc::clone(c))
            .collect();
        (self.table_index(Table::Coordinates), out)
    }

    /// A node's coordinate in `segment`, for sorting by distance (`?near`),
    /// which Consul does without watching.
    pub fn coordinate(&self, node: &str, segment: &str) -> Option<Arc<NodeCoordinate>> {
        self.tables.coordinates.get(&key_of(node, segment)).cloned()
    }
}
