//! Snapshot to bytes and back: the payload of Raft snapshots and of
//! `/v1/snapshot`.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::catalog::{HealthCheck, Node, ServiceInstance, NODE_EXTINCTION, SERVICE_EXTINCTION};
use crate::coordinate::NodeCoordinate;
use crate::error::StateError;
use crate::kv::DirEntry;
use crate::prepared_query::PreparedQuery;
use crate::session::Session;
use crate::snapshot::{Snapshot, Tables};
use crate::table::{Table, TableIndexes};
use crate::Index;

/// Leads every snapshot, so a foreign or future file is refused, not misread.
const MAGIC: &[u8; 8] = b"PRSTATE3";

#[derive(Serialize, Deserialize)]
struct Persisted {
    index: Index,
    indexes: TableIndexes,
    kvs: Vec<DirEntry>,
    tombstones: Vec<(String, Index)>,
    tree_tombstones: Vec<(String, Index)>,
    nodes: Vec<Node>,
    services: Vec<ServiceInstance>,
    checks: Vec<HealthCheck>,
    named_indexes: Vec<(String, Index)>,
    sessions: Vec<Session>,
    /// Absent from snapshots written before coordinates were kept.
    #[serde(default)]
    coordinates: Vec<NodeCoordinate>,
    /// Absent from snapshots written before prepared queries were kept.
    #[serde(default)]
    prepared_queries: Vec<PreparedQuery>,
}

impl Snapshot {
    /// Encodes this version. Runs on a snapshot, so it never holds up writes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let catalog = &self.tables.catalog;
        let persisted = Persisted {
            index: self.index,
            indexes: self.tables.indexes,
            kvs: self.tables.kvs.values().map(|e| (**e).clone()).collect(),
            tombstones: pairs(&self.tables.tombstones),
            tree_tombstones: pairs(&self.tables.tree_tombstones),
            nodes: catalog.nodes.values().map(|n| (**n).clone()).collect(),
            services: catalog.services.values().map(|s| (**s).clone()).collect(),
            checks: catalog.checks.values().map(|c| (**c).clone()).collect(),
            named_indexes: pairs(&catalog.named),
            sessions: self
                .tables
                .sessions
                .values()
                .map(|s| (**s).clone())
                .collect(),
            coordinates: self
                .tables
                .coordinates
                .values()
                .map(|c| (**c).clone())
                .collect(),
            prepared_queries: self
                .tables
                .prepared_queries
                .values()
                .map(|q| (**q).clone())
                .collect(),
        };
        let mut out = MAGIC.to_vec();
        // Encoding plain owned data into a Vec cannot fail.
        rmp_serde::encode::write(&mut out, &persisted).unwrap_or_default();
        out
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Snapshot, StateError> {
        decode(bytes)?.into_snapshot()
    }

    /// Decodes a snapshot that replaces the state at log index `at` (a
    /// restore from `/v1/snapshot`). Everything counts as changed at `at`:
    /// every table and named index is `at`, and a tree tombstone at the
    /// empty prefix makes every prefix read report `at`, so no reader's
    /// index goes back and every blocking query wakes with the new state.
    /// Row indexes are kept where they are at or below `at` (restoring
    /// into a cluster whose log has passed the snapshot's index keeps them
    /// all); rows newer than `at` are brought down to `at`, since an index
    /// after the restore entry would collide with later entries.
    pub(crate) fn restored_at(bytes: &[u8], at: Index) -> Result<Snapshot, StateError> {
        let mut persisted = decode(bytes)?;
        persisted.validate()?;
        persisted.restamp(at);
        persisted.into_snapshot()
    }
}

/// What one kind of row in a snapshot amounts to: Consul's `snapshot
/// inspect` table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RowStats {
    /// Consul's name for the record type (`KVS`, `Register`, ...).
    pub name: &'static str,
    pub count: usize,
    /// Encoded bytes.
    pub size: usize,
}

/// The index and the rows of snapshot bytes made by [`Snapshot::to_bytes`],
/// by record type, largest first (ties by name).
pub fn snapshot_stats(bytes: &[u8]) -> Result<(Index, Vec<RowStats>), StateError> {
    let persisted = decode(bytes)?;
    fn stats<T: Serialize>(name: &'static str, rows: &[T]) -> RowStats {
        let size = rows
            .iter()
            .map(|row| rmp_serde::to_vec(row).map_or(0, |b| b.len()))
            .sum();
        RowStats {
            name,
            count: rows.len(),
            size,
        }
    }
    let register = [
        stats("Register", &persisted.nodes),
        stats("Register", &persisted.services),
        stats("Register", &persisted.checks),
    ];
    let tombstones = [
        stats("Tombstone", &persisted.tombstones),
        stats("Tombstone", &persisted.tree_tombstones),
    ];
    let merge = |parts: &[RowStats]| RowStats {
        name: parts[0].name,
        count: parts.iter().map(|p| p.count).sum(),
        size: parts.iter().map(|p| p.size).sum(),
    };
    let mut rows = vec![
        stats("KVS", &persisted.kvs),
        merge(&register),
        merge(&tombstones),
        stats("Session", &persisted.sessions),
        stats("Index", &persisted.named_indexes),
        stats("Coordinate", &persisted.coordinates),
        stats("PreparedQuery", &persisted.prepared_queries),
    ];
    rows.retain(|r| r.count > 0);
    rows.sort_by(|a, b| b.size.cmp(&a.size).then(a.name.cmp(b.name)));
    Ok((persisted.index, rows))
}

fn decode(bytes: &[u8]) -> Result<Persisted, StateError> {
    let body = bytes
        .strip_prefix(MAGIC.as_slice())
        .ok_or_else(|| StateError::InvalidSnapshot("missing header".into()))?;
    rmp_serde::from_slice(body).map_err(|e| StateError::InvalidSnapshot(e.to_string()))
}

impl Persisted {
    fn validate(&self) -> Result<(), StateError> {
        for entry in &self.kvs {
            if entry.modify_index > self.index {
                return Err(StateError::InvalidSnapshot(format!(
                    "key {:?} modified at {} after the snapshot's index {}",
                    entry.key, entry.modify_index, self.index
                )));
            }
        }
        Ok(())
    }

    /// See [`Snapshot::restored_at`].
    fn restamp(&mut self, at: Index) {
        let clamp = |index: &mut Index| *index = (*index).min(at);
        for entry in &mut self.kvs {
            clamp(&mut entry.create_index);
            clamp(&mut entry.modify_index);
        }
        for (_, index) in self
            .tombstones
            .iter_mut()
            .chain(self.tree_tombstones.iter_mut())
        {
            clamp(index);
        }
        self.tree_tombstones
            .retain(|(prefix, _)| !prefix.is_empty());
        self.tree_tombstones.push((String::new(), at));
        for node in &mut self.nodes {
            clamp(&mut node.create_index);
            clamp(&mut node.modify_index);
        }
        for service in &mut self.services {
            clamp(&mut service.create_index);
            clamp(&mut service.modify_index);
        }
        for check in &mut self.checks {
            clamp(&mut check.create_index);
            clamp(&mut check.modify_index);
        }
        for session in &mut self.sessions {
            clamp(&mut session.create_index);
            clamp(&mut session.modify_index);
        }
        for query in &mut self.prepared_queries {
            clamp(&mut query.create_index);
            clamp(&mut query.modify_index);
        }
        for (_, index) in &mut self.named_indexes {
            *index = at;
        }
        for row in [SERVICE_EXTINCTION, NODE_EXTINCTION] {
            if !self.named_indexes.iter().any(|(name, _)| name == row) {
                self.named_indexes.push((row.to_owned(), at));
            }
        }
        for table in Table::ALL {
            self.indexes.set(table, at);
        }
        self.index = at;
    }

    fn into_snapshot(self) -> Result<Snapshot, StateError> {
        let persisted = self;
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
        let catalog = &mut tables.catalog;
        for node in persisted.nodes {
            catalog
                .nodes
                .insert(node.name.to_lowercase(), Arc::new(node));
        }
        for service in persisted.services {
            let node_key = service.node.to_lowercase();
            let service = Arc::new(service);
            catalog.services_by_name.insert(
                (
                    service.service.to_lowercase(),
                    node_key.clone(),
                    service.id.clone(),
                ),
                Arc::clone(&service),
            );
            catalog
                .services
                .insert((node_key, service.id.clone()), service);
        }
        for check in persisted.checks {
            catalog.checks.insert(
                (check.node.to_lowercase(), check.check_id.clone()),
                Arc::new(check),
            );
        }
        let node_keys: Vec<String> = catalog.nodes.keys().cloned().collect();
        for node_key in node_keys {
            catalog.reindex_health(&node_key);
        }
        let names: std::collections::BTreeSet<String> = catalog
            .services_by_name
            .keys()
            .map(|(name, _, _)| name.clone())
            .collect();
        for name in names {
            catalog.refresh_view(&name);
        }
        catalog.named = persisted.named_indexes.into_iter().collect();
        for session in persisted.sessions {
            tables
                .sessions
                .insert(session.id.to_lowercase(), Arc::new(session));
        }
        for coordinate in persisted.coordinates {
            let key = crate::coordinate::key_of(&coordinate.node, &coordinate.segment);
            tables.coordinates.insert(key, Arc::new(coordinate));
        }
        for query in persisted.prepared_queries {
            tables
                .prepared_queries
                .insert(query.id.to_lowercase(), Arc::new(query));
        }
        Ok(Snapshot {
            index: persisted.index,
            tables,
        })
    }
}

fn pairs(map: &imbl::OrdMap<String, Index>) -> Vec<(String, Index)> {
    map.iter().map(|(k, &i)| (k.clone(), i)).collect()
}
