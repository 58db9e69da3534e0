//! What the DNS interface reads from the catalog, behind one trait, so the
//! same answering code serves a server (its own state store) and a client
//! agent (which keeps no catalog and asks a server for each read, as a
//! Consul client's DNS server does over RPC).

use std::net::IpAddr;

use state::{CheckServiceNode, Node, Snapshot, WatchSet};

/// A read the catalog could not answer: a client agent reached no server.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("catalog read failed: {0}")]
pub struct CatalogError(pub String);

/// What running a prepared query found.
#[derive(Debug, Clone, Default)]
pub struct PreparedAnswer {
    /// The service the query looked for (whose `service_ttl` applies).
    pub service: String,
    /// The instances, in the order the query's execution gives them.
    pub nodes: Vec<CheckServiceNode>,
    /// The query's `DNS.TTL`, a Go duration, or empty for the default.
    pub dns_ttl: String,
}

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
    /// `agent_node` of `datacenter`; `None` when no query matches.
    async fn prepared_query(
        &self,
        name: &str,
        agent_node: &str,
        datacenter: &str,
    ) -> Result<Option<PreparedAnswer>, CatalogError>;

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
    ) -> Result<Option<PreparedAnswer>, CatalogError> {
        let Ok(Some(query)) = self.resolve_prepared_query(name) else {
            return Ok(None);
        };
        let options = state::ExecuteOptions {
            datacenter,
            agent_node,
            near: None,
            limit: 0,
        };
        let run = self.execute_prepared_query(&query, &options, &estimated_rtt);
        Ok(Some(PreparedAnswer {
            service: run.service,
            nodes: run.nodes,
            dns_ttl: run.dns_ttl,
        }))
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
