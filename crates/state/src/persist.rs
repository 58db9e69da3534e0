//! Snapshot to bytes and back: the payload of Raft snapshots and of
//! `/v1/snapshot`.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::catalog::{HealthCheck, Node, ServiceInstance};
use crate::error::StateError;
use crate::kv::DirEntry;
use crate::session::Session;
use crate::snapshot::{Snapshot, Tables};
use crate::table::TableIndexes;
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
        Ok(Snapshot {
            index: persisted.index,
            tables,
        })
    }
}

fn pairs(map: &imbl::OrdMap<String, Index>) -> Vec<(String, Index)> {
    map.iter().map(|(k, &i)| (k.clone(), i)).collect()
}
