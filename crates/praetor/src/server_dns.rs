//! A server's DNS interface: its catalog is its own state store, and
//! names of other datacenters, and prepared queries failing over, are read
//! through its WAN pool ([`Federation`]), the same way `?dc=` API calls go.

use std::net::IpAddr;
use std::sync::Arc;

use agent::federation::{Federation, FederationError};
use agent::Agent;
use dns::{AddressOwners, Catalog, CatalogError, DnsConfig, OtherDatacenters, RemoteError};
use state::{CheckServiceNode, Execution, Node, Snapshot};

/// The DNS handler of a server (and the one answering its clients' reads).
pub fn handler(agent: &Arc<Agent>, config: &DnsConfig) -> dns::CatalogDns {
    let reading = Arc::clone(agent);
    let catalogs: dns::CatalogSource =
        Arc::new(move || -> Arc<dyn Catalog> { Arc::new(ServerCatalog::of(&reading)) });
    dns::CatalogDns::reading(catalogs, config.clone()).with_other_datacenters(Arc::new(WanDns {
        agent: Arc::clone(agent),
    }))
}

/// A server's catalog for one DNS query: one state-store version, and the
/// agent for a prepared query's failover to other datacenters.
pub struct ServerCatalog {
    snapshot: Arc<Snapshot>,
    agent: Arc<Agent>,
}

impl ServerCatalog {
    /// The agent's state as it is now.
    pub fn of(agent: &Arc<Agent>) -> ServerCatalog {
        ServerCatalog {
            snapshot: agent.store().snapshot(),
            agent: Arc::clone(agent),
        }
    }
}

#[async_trait::async_trait]
impl Catalog for ServerCatalog {
    async fn node(&self, name: &str) -> Result<Option<Node>, CatalogError> {
        Catalog::node(&*self.snapshot, name).await
    }

    async fn service_health(&self, service: &str) -> Result<Vec<CheckServiceNode>, CatalogError> {
        Catalog::service_health(&*self.snapshot, service).await
    }

    /// Run here; when nothing healthy is found, failed over as the query
    /// says (Consul's `PreparedQuery.Execute`).
    async fn prepared_query(
        &self,
        name: &str,
        agent_node: &str,
        datacenter: &str,
    ) -> Result<Option<Execution>, CatalogError> {
        let Some((query, run)) =
            dns::run_prepared_query(&self.snapshot, name, agent_node, datacenter)
        else {
            return Ok(None);
        };
        Ok(Some(self.agent.fail_over_if_empty(&query, 0, run).await))
    }

    async fn address_owners(&self, ip: IpAddr) -> Result<AddressOwners, CatalogError> {
        Catalog::address_owners(&*self.snapshot, ip).await
    }
}

/// A server's way to other datacenters, for its DNS interface.
pub struct WanDns {
    pub agent: Arc<Agent>,
}

impl WanDns {
    fn federation(&self) -> Result<&Arc<Federation>, RemoteError> {
        self.agent.federation().ok_or(RemoteError::NoPath)
    }
}

fn remote_error(error: FederationError) -> RemoteError {
    match error {
        FederationError::NoPath => RemoteError::NoPath,
        FederationError::Rpc(reason) => RemoteError::Failed(reason),
    }
}

#[async_trait::async_trait]
impl OtherDatacenters for WanDns {
    async fn service_health(
        &self,
        datacenter: &str,
        service: &str,
    ) -> Result<Vec<CheckServiceNode>, RemoteError> {
        self.federation()?
            .service_health(datacenter, service)
            .await
            .map_err(remote_error)
    }

    async fn node(&self, datacenter: &str, name: &str) -> Result<Option<Node>, RemoteError> {
        self.federation()?
            .node(datacenter, name)
            .await
            .map_err(remote_error)
    }

    async fn execute_query(
        &self,
        datacenter: &str,
        id_or_name: &str,
    ) -> Result<Option<Execution>, RemoteError> {
        self.federation()?
            .execute_query(datacenter, id_or_name)
            .await
            .map_err(remote_error)
    }
}
