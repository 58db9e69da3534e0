//! The catalog: nodes, the service instances registered on them, and their
//! health checks, with Consul's per-service and per-node indexes.
//!
//! Rows are keyed by lowercased names, as Consul's memdb indexes are, so
//! `Web` and `web` are the same node; the row keeps the name as registered.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use imbl::OrdMap;
use serde::{Deserialize, Serialize};

use crate::snapshot::Snapshot;
use crate::table::Table;
use crate::txn::WriteTxn;
use crate::watch::WatchSet;
use crate::Index;

/// A node of the catalog.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    pub id: String,
    pub name: String,
    pub address: String,
    pub datacenter: String,
    pub tagged_addresses: BTreeMap<String, String>,
    pub meta: BTreeMap<String, String>,
    pub create_index: Index,
    pub modify_index: Index,
}

impl Node {
    fn same_content(&self, other: &Node) -> bool {
        self.id == other.id
            && self.name == other.name
            && self.address == other.address
            && self.datacenter == other.datacenter
            && self.tagged_addresses == other.tagged_addresses
            && self.meta == other.meta
    }
}

/// An address a service is reachable at under some tag (`lan`, `wan`, ...).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceAddress {
    pub address: String,
    pub port: u16,
}

/// How DNS weighs an instance by its health.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Weights {
    pub passing: u32,
    pub warning: u32,
}

impl Default for Weights {
    fn default() -> Self {
        Weights {
            passing: 1,
            warning: 1,
        }
    }
}

/// A service instance on a node (Consul's `NodeService`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceInstance {
    /// The node it is registered on, as that node is named.
    pub node: String,
    pub kind: String,
    pub id: String,
    pub service: String,
    pub tags: Vec<String>,
    pub address: String,
    pub tagged_addresses: BTreeMap<String, ServiceAddress>,
    pub meta: BTreeMap<String, String>,
    pub port: u16,
    pub socket_path: String,
    pub weights: Weights,
    pub enable_tag_override: bool,
    pub create_index: Index,
    pub modify_index: Index,
}

impl ServiceInstance {
    /// Equal in everything but the Raft indexes: a write of `other` would
    /// change nothing.
    pub fn same_content(&self, other: &ServiceInstance) -> bool {
        ServiceInstance {
            create_index: 0,
            modify_index: 0,
            ..self.clone()
        } == ServiceInstance {
            create_index: 0,
            modify_index: 0,
            ..other.clone()
        }
    }
}

/// A health check's state in the catalog.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthCheck {
    pub node: String,
    pub check_id: String,
    pub name: String,
    /// `passing`, `warning` or `critical`.
    pub status: String,
    pub notes: String,
    pub output: String,
    /// Empty for a node-level check.
    pub service_id: String,
    pub service_name: String,
    pub service_tags: Vec<String>,
    /// `ttl`, `http`, `tcp`, `script`, `grpc`, `serf` ... (empty if unknown).
    pub check_type: String,
    pub interval: String,
    pub timeout: String,
    pub create_index: Index,
    pub modify_index: Index,
}

impl HealthCheck {
    /// Equal in everything but the Raft indexes.
    pub fn same_content(&self, other: &HealthCheck) -> bool {
        HealthCheck {
            create_index: 0,
            modify_index: 0,
            ..self.clone()
        } == HealthCheck {
            create_index: 0,
            modify_index: 0,
            ..other.clone()
        }
    }
}

/// A catalog registration: a node, and optionally a service and checks on
/// it, applied all or nothing (Consul's `RegisterRequest`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registration {
    pub node: Node,
    /// Leave an existing node as it is (a service or check update only).
    pub skip_node_update: bool,
    pub service: Option<ServiceInstance>,
    pub checks: Vec<HealthCheck>,
}

/// What to remove: a service (and its checks), else a check, else the whole
/// node (Consul's `DeregisterRequest` precedence).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deregistration {
    pub node: String,
    pub service_id: Option<String>,
    pub check_id: Option<String>,
}

/// A service instance and the node it is on.
pub type ServiceOnNode = (Arc<ServiceInstance>, Arc<Node>);

/// A node and the service instances registered on it.
pub type NodeWithServices = (Arc<Node>, Vec<Arc<ServiceInstance>>);

/// One instance with its node and every check that applies to it: the
/// node's own checks first, then the service's.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CheckServiceNode {
    pub node: Arc<Node>,
    pub service: Arc<ServiceInstance>,
    pub checks: Vec<Arc<HealthCheck>>,
}

/// Catalog rows and their secondary indexes; part of every version.
#[derive(Clone, Default)]
pub(crate) struct CatalogTables {
    /// By lowercased node name.
    pub(crate) nodes: OrdMap<String, Arc<Node>>,
    /// By (lowercased node name, service ID).
    pub(crate) services: OrdMap<(String, String), Arc<ServiceInstance>>,
    /// (lowercased service name, lowercased node name, service ID): the
    /// same instances as `services`, found by name.
    pub(crate) services_by_name: OrdMap<(String, String, String), Arc<ServiceInstance>>,
    /// Each node's checks grouped for health reads, rebuilt whenever the
    /// node's checks change, so a read does no scanning.
    pub(crate) health: OrdMap<String, Arc<NodeHealth>>,
    /// Each service's instances with their nodes and checks, rebuilt when
    /// anything they show changes: the health and DNS reads are then one
    /// lookup. A write pays O(instances of the service) instead.
    pub(crate) views: OrdMap<String, Arc<[CheckServiceNode]>>,
    /// By (lowercased node name, check ID).
    pub(crate) checks: OrdMap<(String, String), Arc<HealthCheck>>,
    /// Consul's named index rows: `service.<name>`, `node.<name>`,
    /// `service_last_extinction`, `node_last_extinction`.
    pub(crate) named: OrdMap<String, Index>,
}

/// A node's checks: its own, and each service instance's.
#[derive(Debug, Default)]
pub(crate) struct NodeHealth {
    pub(crate) node_level: Vec<Arc<HealthCheck>>,
    pub(crate) per_service: BTreeMap<String, Vec<Arc<HealthCheck>>>,
}

impl CatalogTables {
    /// The instances of a service (by lowercased name) with their health.
    fn build_view(&self, name_key: &str) -> Vec<CheckServiceNode> {
        self.services_by_name
            .range((name_key.to_owned(), String::new(), String::new())..)
            .take_while(|((n, _, _), _)| n == name_key)
            .filter_map(|((_, node_key, _), service)| {
                let node = self.nodes.get(node_key)?;
                let mut checks = Vec::new();
                if let Some(h) = self.health.get(node_key) {
                    let own = h.per_service.get(&service.id);
                    checks.reserve(h.node_level.len() + own.map_or(0, Vec::len));
                    checks.extend(h.node_level.iter().cloned());
                    checks.extend(own.into_iter().flatten().cloned());
                }
                Some(CheckServiceNode {
                    node: Arc::clone(node),
                    service: Arc::clone(service),
                    checks,
                })
            })
            .collect()
    }

    /// Rebuilds the view of one service.
    pub(crate) fn refresh_view(&mut self, name_key: &str) {
        let view = self.build_view(name_key);
        if view.is_empty() {
            self.views.remove(name_key);
        } else {
            self.views.insert(name_key.to_owned(), view.into());
        }
    }

    /// Regroups the checks of one node after any of them changed.
    pub(crate) fn reindex_health(&mut self, node_key: &str) {
        let mut health = NodeHealth::default();
        for (_, check) in with_first(&self.checks, node_key) {
            if check.service_id.is_empty() {
                health.node_level.push(Arc::clone(check));
            } else {
                health
                    .per_service
                    .entry(check.service_id.clone())
                    .or_default()
                    .push(Arc::clone(check));
            }
        }
        if health.node_level.is_empty() && health.per_service.is_empty() {
            self.health.remove(node_key);
        } else {
            self.health.insert(node_key.to_owned(), Arc::new(health));
        }
    }
}

fn lower(s: &str) -> String {
    s.to_lowercase()
}

pub(crate) const SERVICE_EXTINCTION: &str = "service_last_extinction";
pub(crate) const NODE_EXTINCTION: &str = "node_last_extinction";

fn service_row(name: &str) -> String {
    format!("service.{}", lower(name))
}

fn node_row(name: &str) -> String {
    format!("node.{}", lower(name))
}

/// Rows of an ordered map whose key tuple starts with `first`.
fn with_first<'a, V: Clone>(
    map: &'a OrdMap<(String, String), V>,
    first: &'a str,
) -> impl Iterator<Item = (&'a (String, String), &'a V)> + 'a {
    map.range((first.to_owned(), String::new())..)
        .take_while(move |((a, _), _)| a == first)
}

/// Why a catalog or session write was refused; the text is Consul's.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
#[error("{0}")]
pub struct WriteError(pub String);

impl WriteTxn {
    fn bump_named(&mut self, row: String) {
        self.tables.catalog.named.insert(row, self.index);
    }

    /// Marks a service name changed: its index row, its watchers, and its
    /// view (rebuilt once, at commit).
    fn bump_service(&mut self, name: &str) {
        self.bump_named(service_row(name));
        let key = lower(name);
        self.mark(Table::Services, &key);
        self.stale_views.insert(key);
    }

    /// Rebuilds the views of every service this transaction touched.
    pub(crate) fn refresh_views(&mut self) {
        for name_key in std::mem::take(&mut self.stale_views) {
            self.tables.catalog.refresh_view(&name_key);
        }
    }

    fn bump_node(&mut self, name: &str) {
        self.bump_named(node_row(name));
        self.mark(Table::Nodes, &lower(name));
    }

    fn services_of(&self, node_key: &str) -> Vec<Arc<ServiceInstance>> {
        with_first(&self.tables.catalog.services, node_key)
            .map(|(_, s)| Arc::clone(s))
            .collect()
    }

    fn bump_all_services_of(&mut self, node_key: &str) {
        for service in self.services_of(node_key) {
            self.bump_service(&service.service);
        }
    }

    /// Applies a registration; on error the caller discards the transaction.
    pub(crate) fn register(&mut self, reg: &Registration) -> Result<(), WriteError> {
        let node_name = reg.node.name.as_str();
        if node_name.is_empty() {
            return Err(WriteError("Must provide node".into()));
        }
        let node_key = lower(node_name);
        let existing = self.tables.catalog.nodes.get(&node_key).cloned();
        if !(reg.skip_node_update && existing.is_some()) {
            self.upsert_node(&node_key, &reg.node, existing);
        }
        if let Some(service) = &reg.service {
            self.upsert_service(&node_key, node_name, service)?;
        }
        for check in &reg.checks {
            self.upsert_check(&node_key, node_name, check)?;
        }
        Ok(())
    }

    fn upsert_node(&mut self, node_key: &str, node: &Node, existing: Option<Arc<Node>>) {
        let mut row = Node {
            create_index: self.index,
            modify_index: self.index,
            ..node.clone()
        };
        if let Some(old) = &existing {
            if old.same_content(&row) {
                return;
            }
            row.create_index = old.create_index;
        }
        self.tables
            .catalog
            .nodes
            .insert(node_key.to_owned(), Arc::new(row));
        self.touch(Table::Nodes, node_key);
        self.bump_node(&node.name);
        self.bump_all_services_of(node_key);
    }

    fn upsert_service(
        &mut self,
        node_key: &str,
        node_name: &str,
        service: &ServiceInstance,
    ) -> Result<(), WriteError> {
        if !self.tables.catalog.nodes.contains_key(node_key) {
            return Err(WriteError("Missing node registration".into()));
        }
        let id = if service.id.is_empty() {
            service.service.clone()
        } else {
            service.id.clone()
        };
        let key = (node_key.to_owned(), id.clone());
        let existing = self.tables.catalog.services.get(&key).cloned();
        let mut row = ServiceInstance {
            node: node_name.to_owned(),
            id,
            create_index: self.index,
            modify_index: self.index,
            ..service.clone()
        };
        if let Some(old) = &existing {
            if old.same_content(&row) {
                return Ok(());
            }
            row.create_index = old.create_index;
            if lower(&old.service) != lower(&row.service) {
                self.unindex_service_name(old);
                self.bump_service(&old.service);
            }
        }
        let name = row.service.clone();
        let row = Arc::new(row);
        self.tables.catalog.services_by_name.insert(
            (lower(&row.service), node_key.to_owned(), row.id.clone()),
            Arc::clone(&row),
        );
        self.tables.catalog.services.insert(key, row);
        self.touch(Table::Services, &lower(&name));
        self.bump_service(&name);
        self.tables.indexes.set(Table::Nodes, self.index);
        self.bump_node(node_name);
        Ok(())
    }

    fn unindex_service_name(&mut self, service: &ServiceInstance) {
        self.tables.catalog.services_by_name.remove(&(
            lower(&service.service),
            lower(&service.node),
            service.id.clone(),
        ));
    }

    fn upsert_check(
        &mut self,
        node_key: &str,
        node_name: &str,
        check: &HealthCheck,
    ) -> Result<(), WriteError> {
        if !check.node.is_empty() && lower(&check.node) != node_key {
            return Err(WriteError(format!(
                "check node {:?} does not match node {:?}",
                check.node, node_name
            )));
        }
        if !self.tables.catalog.nodes.contains_key(node_key) {
            return Err(WriteError("Missing node registration".into()));
        }
        let check_id = if check.check_id.is_empty() {
            check.name.clone()
        } else {
            check.check_id.clone()
        };
        let mut row = HealthCheck {
            node: node_name.to_owned(),
            check_id: check_id.clone(),
            status: if check.status.is_empty() {
                "critical".to_owned()
            } else {
                check.status.clone()
            },
            create_index: self.index,
            modify_index: self.index,
            ..check.clone()
        };
        if !row.service_id.is_empty() {
            let key = (node_key.to_owned(), row.service_id.clone());
            let Some(service) = self.tables.catalog.services.get(&key) else {
                return Err(WriteError(format!(
                    "failed inserting check on node {node_name:?}: Missing service registration"
                )));
            };
            row.service_name = service.service.clone();
            row.service_tags = service.tags.clone();
        }
        let key = (node_key.to_owned(), check_id);
        if let Some(old) = self.tables.catalog.checks.get(&key) {
            if old.same_content(&row) {
                return Ok(());
            }
            row.create_index = old.create_index;
        }
        let service_name = row.service_name.clone();
        let critical = row.status == "critical";
        let check_id = row.check_id.clone();
        self.tables.catalog.checks.insert(key, Arc::new(row));
        self.tables.catalog.reindex_health(node_key);
        self.touch(Table::Checks, node_key);
        if critical {
            self.invalidate_check_sessions(node_key, &check_id);
        }
        if service_name.is_empty() {
            self.bump_all_services_of(node_key);
        } else {
            self.bump_service(&service_name);
        }
        Ok(())
    }

    /// Applies a deregistration. Removing what is not there is not an error.
    pub(crate) fn deregister(&mut self, dereg: &Deregistration) -> Result<(), WriteError> {
        if dereg.node.is_empty() {
            return Err(WriteError("Must provide node".into()));
        }
        let node_key = lower(&dereg.node);
        if let Some(service_id) = dereg.service_id.as_deref().filter(|s| !s.is_empty()) {
            self.delete_service(&node_key, service_id);
        } else if let Some(check_id) = dereg.check_id.as_deref().filter(|c| !c.is_empty()) {
            self.delete_check(&node_key, check_id);
        } else {
            self.delete_node(&node_key);
        }
        Ok(())
    }

    fn delete_check(&mut self, node_key: &str, check_id: &str) {
        let key = (node_key.to_owned(), check_id.to_owned());
        let Some(check) = self.tables.catalog.checks.remove(&key) else {
            return;
        };
        self.tables.catalog.reindex_health(node_key);
        self.touch(Table::Checks, node_key);
        self.invalidate_check_sessions(node_key, check_id);
        if check.service_name.is_empty() {
            self.bump_all_services_of(node_key);
        } else {
            self.bump_service(&check.service_name);
        }
    }

    fn delete_service(&mut self, node_key: &str, service_id: &str) {
        let key = (node_key.to_owned(), service_id.to_owned());
        let Some(service) = self.tables.catalog.services.remove(&key) else {
            return;
        };
        let doomed: Vec<String> = with_first(&self.tables.catalog.checks, node_key)
            .filter(|(_, c)| c.service_id == service_id)
            .map(|((_, id), _)| id.clone())
            .collect();
        for check_id in doomed {
            self.tables
                .catalog
                .checks
                .remove(&(node_key.to_owned(), check_id));
            self.touch(Table::Checks, node_key);
        }
        self.tables.catalog.reindex_health(node_key);
        self.unindex_service_name(&service);
        self.touch(Table::Services, &lower(&service.service));
        self.tables.indexes.set(Table::Nodes, self.index);
        self.bump_node(&service.node);
        let name_key = lower(&service.service);
        let remaining = self
            .tables
            .catalog
            .services_by_name
            .range((name_key.clone(), String::new(), String::new())..)
            .next()
            .is_some_and(|((n, _, _), _)| *n == name_key);
        if remaining {
            self.bump_service(&service.service);
        } else {
            self.tables
                .catalog
                .named
                .remove(&service_row(&service.service));
            self.bump_named(SERVICE_EXTINCTION.to_owned());
            self.mark(Table::Services, &name_key);
            self.stale_views.insert(name_key);
        }
    }

    fn delete_node(&mut self, node_key: &str) {
        if !self.tables.catalog.nodes.contains_key(node_key) {
            return;
        }
        for service in self.services_of(node_key) {
            self.delete_service(node_key, &service.id);
        }
        let doomed: Vec<String> = with_first(&self.tables.catalog.checks, node_key)
            .map(|((_, id), _)| id.clone())
            .collect();
        for check_id in doomed {
            self.delete_check(node_key, &check_id);
        }
        self.invalidate_node_sessions(node_key);
        self.delete_node_coordinates(node_key);
        if let Some(node) = self.tables.catalog.nodes.remove(node_key) {
            self.touch(Table::Nodes, node_key);
            self.tables.catalog.named.remove(&node_row(&node.name));
            self.bump_named(NODE_EXTINCTION.to_owned());
        }
    }
}

impl Snapshot {
    fn named(&self, row: &str) -> Option<Index> {
        self.tables.catalog.named.get(row).copied()
    }

    /// Every node, in name order. Index: the nodes table.
    pub fn nodes(&self, ws: &mut WatchSet) -> (Index, Vec<Arc<Node>>) {
        ws.add_table(Table::Nodes);
        (
            self.table_index(Table::Nodes),
            self.tables.catalog.nodes.values().cloned().collect(),
        )
    }

    /// One node by name (any case).
    pub fn node(&self, name: &str) -> Option<Arc<Node>> {
        self.tables.catalog.nodes.get(&lower(name)).cloned()
    }

    /// Service names with the union of their tags. Index: the services table.
    pub fn services(&self, ws: &mut WatchSet) -> (Index, BTreeMap<String, BTreeSet<String>>) {
        ws.add_table(Table::Services);
        let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for service in self.tables.catalog.services.values() {
            out.entry(service.service.clone())
                .or_default()
                .extend(service.tags.iter().cloned());
        }
        (self.table_index(Table::Services), out)
    }

    /// Every instance of the service `name` (any case), with its node.
    /// Index: the service's own row; once it has no instances, the last
    /// extinction; never registered, the services and nodes tables.
    pub fn service_nodes(&self, name: &str, ws: &mut WatchSet) -> (Index, Vec<ServiceOnNode>) {
        let key = lower(name);
        ws.add_key(Table::Services, &key);
        let out = self.instances(&key);
        (self.service_index(&key, false), out)
    }

    fn instances(&self, name_key: &str) -> Vec<ServiceOnNode> {
        let catalog = &self.tables.catalog;
        catalog
            .services_by_name
            .range((name_key.to_owned(), String::new(), String::new())..)
            .take_while(|((n, _, _), _)| n == name_key)
            .filter_map(|((_, node, _), service)| {
                let node = catalog.nodes.get(node)?;
                Some((Arc::clone(service), Arc::clone(node)))
            })
            .collect()
    }

    fn service_index(&self, name_key: &str, with_checks: bool) -> Index {
        if let Some(index) = self.named(&format!("service.{name_key}")) {
            return index;
        }
        if let Some(index) = self.named(SERVICE_EXTINCTION) {
            return index;
        }
        let mut index = self
            .table_index(Table::Services)
            .max(self.table_index(Table::Nodes));
        if with_checks {
            index = index.max(self.table_index(Table::Checks));
        }
        index
    }

    /// A node and the services on it. Index: the node's row, else the last
    /// node extinction.
    pub fn node_services(
        &self,
        name: &str,
        ws: &mut WatchSet,
    ) -> (Index, Option<NodeWithServices>) {
        let key = lower(name);
        ws.add_key(Table::Nodes, &key);
        let index = self
            .named(&node_row(name))
            .or_else(|| self.named(NODE_EXTINCTION))
            .unwrap_or(0);
        let found = self.tables.catalog.nodes.get(&key).map(|node| {
            let services = with_first(&self.tables.catalog.services, &key)
                .map(|(_, s)| Arc::clone(s))
                .collect();
            (Arc::clone(node), services)
        });
        (index, found)
    }

    /// The checks of a node (node-level and its services'). Index: the
    /// checks table.
    pub fn node_checks(&self, name: &str, ws: &mut WatchSet) -> (Index, Vec<Arc<HealthCheck>>) {
        ws.add_table(Table::Checks);
        let key = lower(name);
        let checks = with_first(&self.tables.catalog.checks, &key)
            .map(|(_, c)| Arc::clone(c))
            .collect();
        (self.table_index(Table::Checks), checks)
    }

    /// The checks of every instance of the service `name`.
    pub fn service_checks(&self, name: &str, ws: &mut WatchSet) -> (Index, Vec<Arc<HealthCheck>>) {
        ws.add_table(Table::Checks);
        let key = lower(name);
        let checks = self
            .tables
            .catalog
            .checks
            .values()
            .filter(|c| !c.service_name.is_empty() && lower(&c.service_name) == key)
            .cloned()
            .collect();
        (self.table_index(Table::Checks), checks)
    }

    /// Every check in `state` (`any` for all).
    pub fn checks_in_state(
        &self,
        state: &str,
        ws: &mut WatchSet,
    ) -> (Index, Vec<Arc<HealthCheck>>) {
        ws.add_table(Table::Checks);
        let checks = self
            .tables
            .catalog
            .checks
            .values()
            .filter(|c| state == "any" || c.status == state)
            .cloned()
            .collect();
        (self.table_index(Table::Checks), checks)
    }

    /// Every instance of `name` with its node and checks. Index: the
    /// service's row, else as [`Snapshot::service_nodes`] with the checks
    /// table too.
    pub fn check_service_nodes(
        &self,
        name: &str,
        ws: &mut WatchSet,
    ) -> (Index, Vec<CheckServiceNode>) {
        let key = lower(name);
        ws.add_key(Table::Services, &key);
        let out = self
            .tables
            .catalog
            .views
            .get(&key)
            .map(|view| view.to_vec())
            .unwrap_or_default();
        (self.service_index(&key, true), out)
    }

    /// The instances of `name` with their health, shared rather than
    /// copied: for readers (DNS) that only look.
    pub fn service_health(&self, name: &str) -> Option<Arc<[CheckServiceNode]>> {
        self.tables.catalog.views.get(&lower(name)).cloned()
    }

    /// One check of a node.
    pub fn check(&self, node: &str, check_id: &str) -> Option<Arc<HealthCheck>> {
        self.tables
            .catalog
            .checks
            .get(&(lower(node), check_id.to_owned()))
            .cloned()
    }

    /// One service instance of a node.
    pub fn service_instance(&self, node: &str, service_id: &str) -> Option<Arc<ServiceInstance>> {
        self.tables
            .catalog
            .services
            .get(&(lower(node), service_id.to_owned()))
            .cloned()
    }
}
