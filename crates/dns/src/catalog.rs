//! What the DNS interface reads from the catalog, behind one trait, so the
//! same answering code serves a server (its own state store) and a client
//! agent (which keeps no catalog and asks a server for each read, as a
//! Consul client's DNS server does over RPC).

use std::net::IpAddr;

use state::{CheckServiceNode, Execution, Node, PreparedQuery, Snapshot, WatchSet};

/// A read the catalog could not answer: a client agent reached no server.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("catalog read failed: {0}")]
pub struct CatalogError(pub String);

/// Whose address an IP is: the nodes registered with it and, only when no
/// node is, the services registered with it as their own address.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AddressOwners {
    pub nodes: Vec<String>,
    pub services: Vec<String>,
}

/// The catalog reads DNS answers need; each maps to one of the reads a
/// Consul agent's DNS server makes (`Catalog.NodeServices`,
/// `Health.ServiceNodes`, `PreparedQuery.Execute`, `Catalog.ListNodes`).
#[async_trait::async_trait]
pub trait Catalog: Send + Sync {
    /// The node named `name` (any case), if it is registered.
    async fn node(&self, name: &str) -> Result<Option<Node>, CatalogError>;

    /// Every instance of `service` with its node and checks, healthy or not.
    async fn service_health(&self, service: &str) -> Result<Vec<CheckServiceNode>, CatalogError>;

    /// Runs the prepared query `name` (an ID or a name) for the agent
    /// `agent_node` of `datacenter`; `None` when no query matches. A
    /// catalog that reaches other datacenters fails the query over to
    /// them when it finds nothing healthy here.
    async fn prepared_query(
        &self,
        name: &str,
        agent_node: &str,
        datacenter: &str,
    ) -> Result<Option<Execution>, CatalogError>;

    /// The nodes, else the services, registered with address `ip`.
    async fn address_owners(&self, ip: IpAddr) -> Result<AddressOwners, CatalogError>;
}

/// Seconds between two catalog coordinates, as Serf's Vivaldi estimates.
fn estimated_rtt(a: &state::Coord, b: &state::Coord) -> Option<f64> {
    let vivaldi = |c: &state::Coord| coordinate::Coordinate {
        vec: c.vec.clone(),
        error: c.error,
        adjustment: c.adjustment,
        height: c.height,
    };
    vivaldi(a).distance_to(&vivaldi(b))
}

fn same_ip(address: &str, ip: IpAddr) -> bool {
    address.parse::<IpAddr>().is_ok_and(|a| a == ip)
}

/// Runs the prepared query `name` resolves to in `snapshot`, as DNS runs
/// it (no limit, sorted by `Near` from `agent_node`); also returns the
/// query, for a failover. `None` when no query resolves from `name` (or a
/// template fails to render for it).
pub fn run_prepared_query(
    snapshot: &Snapshot,
    name: &str,
    agent_node: &str,
    datacenter: &str,
) -> Option<(PreparedQuery, Execution)> {
    let query = snapshot.resolve_prepared_query(name).ok()??;
    let options = state::ExecuteOptions {
        datacenter,
        agent_node,
        near: None,
        limit: 0,
    };
    let run = snapshot.execute_prepared_query(&query, &options, &estimated_rtt);
    Some((query, run))
}

/// A server's catalog: one state-store version, read without a lock.
#[async_trait::async_trait]
impl Catalog for Snapshot {
    async fn node(&self, name: &str) -> Result<Option<Node>, CatalogError> {
        Ok(Snapshot::node(self, name).map(|node| (*node).clone()))
    }

    async fn service_health(&self, service: &str) -> Result<Vec<CheckServiceNode>, CatalogError> {
        Ok(Snapshot::service_health(self, service)
            .map(|view| view.to_vec())
            .unwrap_or_default())
    }

    async fn prepared_query(
        &self,
        name: &str,
        agent_node: &str,
        datacenter: &str,
    ) -> Result<Option<Execution>, CatalogError> {
        Ok(run_prepared_query(self, name, agent_node, datacenter).map(|(_, run)| run))
    }

    async fn address_owners(&self, ip: IpAddr) -> Result<AddressOwners, CatalogError> {
        let mut owners = AddressOwners::default();
        let (_, nodes) = self.nodes(&mut WatchSet::new());
        owners.nodes = nodes
            .iter()
            .filter(|n| same_ip(&n.address, ip))
            .map(|n| n.name.clone())
            .collect();
        if !owners.nodes.is_empty() {
            return Ok(owners);
        }
        let (_, services) = self.services(&mut WatchSet::new());
        for service in services.keys() {
            let (_, instances) = self.service_nodes(service, &mut WatchSet::new());
            if instances.iter().any(|(s, _)| same_ip(&s.address, ip)) {
                owners.services.push(service.clone());
            }
        }
        Ok(owners)
    }
}
