//! The catalog reads of a client agent's DNS interface, both ends. A client
//! keeps no catalog, yet its DNS answers must follow its own `domain`,
//! `dns_config` and `recursors`, as a Consul client's do: so the client runs
//! the same [`dns::CatalogDns`] as a server, over a [`RemoteCatalog`] that
//! asks a server (`/rpc/dns-read`) for each row it needs, and the server
//! answers each read from its state store in [`answer_read`].

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use agent::federation::FederationError;
use agent::router::ServerRouter;
use agent::{Agent, ReadConsistency};
use consensus::{DcRead, DcReadReply, DnsLookup, DnsRead, DnsRows};
use dns::{AddressOwners, Catalog, CatalogError, OtherDatacenters, RemoteError};
use state::{CheckServiceNode, Execution, Node};

use crate::server_dns::ServerCatalog;

/// A client agent's catalog: every read goes to a server.
pub struct RemoteCatalog {
    router: Arc<ServerRouter>,
    allow_stale: bool,
    max_stale: Duration,
}

impl RemoteCatalog {
    /// Reads through `router`, as stale as `dns_config.allow_stale` and
    /// `max_stale` allow.
    pub fn new(router: Arc<ServerRouter>, allow_stale: bool, max_stale: Duration) -> Self {
        RemoteCatalog {
            router,
            allow_stale,
            max_stale,
        }
    }

    async fn read(&self, lookup: DnsLookup) -> Result<DnsRows, CatalogError> {
        let read = DnsRead {
            lookup,
            allow_stale: self.allow_stale,
            max_stale: self.max_stale,
        };
        match self.router.dns_read(&read).await {
            Ok(DnsRows::Failed(reason)) => Err(CatalogError(reason)),
            Ok(rows) => Ok(rows),
            Err(error) => Err(CatalogError(error.to_string())),
        }
    }

    /// `read` of `datacenter`, which the server makes through its WAN pool.
    async fn read_elsewhere(
        &self,
        datacenter: &str,
        read: DcRead,
    ) -> Result<DcReadReply, RemoteError> {
        let lookup = DnsLookup::OtherDatacenter {
            datacenter: datacenter.to_owned(),
            read,
        };
        match self.read(lookup).await {
            Ok(DnsRows::OtherDatacenter(DcReadReply::Failed(reason))) => {
                Err(RemoteError::Failed(reason))
            }
            Ok(DnsRows::OtherDatacenter(reply)) => Ok(reply),
            Ok(DnsRows::NoPath) => Err(RemoteError::NoPath),
            Ok(other) => Err(RemoteError::Failed(mismatch(&other).to_string())),
            Err(error) => Err(RemoteError::Failed(error.to_string())),
        }
    }
}

fn mismatch_elsewhere(reply: &DcReadReply) -> RemoteError {
    RemoteError::Failed(format!("the server answered another read: {reply:?}"))
}

/// Names of other datacenters on a client: its server reads them there.
#[async_trait::async_trait]
impl OtherDatacenters for RemoteCatalog {
    async fn service_health(
        &self,
        datacenter: &str,
        service: &str,
    ) -> Result<Vec<CheckServiceNode>, RemoteError> {
        let read = DcRead::ServiceHealth {
            service: service.to_owned(),
        };
        match self.read_elsewhere(datacenter, read).await? {
            DcReadReply::Instances(instances) => Ok(instances),
            other => Err(mismatch_elsewhere(&other)),
        }
    }

    async fn node(&self, datacenter: &str, name: &str) -> Result<Option<Node>, RemoteError> {
        let read = DcRead::Node {
            name: name.to_owned(),
        };
        match self.read_elsewhere(datacenter, read).await? {
            DcReadReply::Node(node) => Ok(node),
            other => Err(mismatch_elsewhere(&other)),
        }
    }

    async fn execute_query(
        &self,
        datacenter: &str,
        id_or_name: &str,
    ) -> Result<Option<Execution>, RemoteError> {
        let read = DcRead::ExecuteQuery {
            id_or_name: id_or_name.to_owned(),
        };
        match self.read_elsewhere(datacenter, read).await? {
            DcReadReply::Execution(run) => Ok(run.map(|run| *run)),
            other => Err(mismatch_elsewhere(&other)),
        }
    }
}

fn mismatch(rows: &DnsRows) -> CatalogError {
    CatalogError(format!("the server answered another read: {rows:?}"))
}

#[async_trait::async_trait]
impl Catalog for RemoteCatalog {
    async fn node(&self, name: &str) -> Result<Option<Node>, CatalogError> {
        match self.read(DnsLookup::Node(name.to_owned())).await? {
            DnsRows::Node(node) => Ok(node),
            other => Err(mismatch(&other)),
        }
    }

    async fn service_health(&self, service: &str) -> Result<Vec<CheckServiceNode>, CatalogError> {
        match self
            .read(DnsLookup::ServiceHealth(service.to_owned()))
            .await?
        {
            DnsRows::Instances(instances) => Ok(instances),
            other => Err(mismatch(&other)),
        }
    }

    async fn prepared_query(
        &self,
        name: &str,
        agent_node: &str,
        datacenter: &str,
    ) -> Result<Option<Execution>, CatalogError> {
        let lookup = DnsLookup::PreparedQuery {
            name: name.to_owned(),
            agent_node: agent_node.to_owned(),
            datacenter: datacenter.to_owned(),
        };
        match self.read(lookup).await? {
            DnsRows::PreparedQuery(found) => Ok(found.map(|run| *run)),
            other => Err(mismatch(&other)),
        }
    }

    async fn address_owners(&self, ip: IpAddr) -> Result<AddressOwners, CatalogError> {
        match self.read(DnsLookup::AddressOwners(ip)).await? {
            DnsRows::AddressOwners { nodes, services } => Ok(AddressOwners { nodes, services }),
            other => Err(mismatch(&other)),
        }
    }
}

/// A server's answer to a client's read: from its own state, once that
/// state is as fresh as the client's `allow_stale` and `max_stale` ask.
pub async fn answer_read(agent: &Arc<Agent>, read: DnsRead) -> DnsRows {
    let consistency = if read.allow_stale {
        ReadConsistency::Stale {
            max_stale: Some(read.max_stale),
        }
    } else {
        ReadConsistency::Leader
    };
    if let Err(error) = agent.read_barrier(consistency).await {
        return DnsRows::Failed(error.to_string());
    }
    let catalog = ServerCatalog::of(agent);
    let rows = match read.lookup {
        DnsLookup::Node(name) => catalog.node(&name).await.map(DnsRows::Node),
        DnsLookup::ServiceHealth(service) => catalog
            .service_health(&service)
            .await
            .map(DnsRows::Instances),
        DnsLookup::PreparedQuery {
            name,
            agent_node,
            datacenter,
        } => catalog
            .prepared_query(&name, &agent_node, &datacenter)
            .await
            .map(|found| DnsRows::PreparedQuery(found.map(Box::new))),
        DnsLookup::AddressOwners(ip) => {
            catalog
                .address_owners(ip)
                .await
                .map(|owners| DnsRows::AddressOwners {
                    nodes: owners.nodes,
                    services: owners.services,
                })
        }
        DnsLookup::OtherDatacenter { datacenter, read } => {
            return elsewhere(agent, &datacenter, &read).await
        }
    };
    rows.unwrap_or_else(|error| DnsRows::Failed(error.to_string()))
}

/// A client's read of another datacenter, made through the WAN pool.
async fn elsewhere(agent: &Agent, datacenter: &str, read: &DcRead) -> DnsRows {
    let Some(federation) = agent.federation() else {
        return DnsRows::NoPath;
    };
    match federation.read(datacenter, read).await {
        Ok(reply) => DnsRows::OtherDatacenter(reply),
        Err(FederationError::NoPath) => DnsRows::NoPath,
        Err(FederationError::Rpc(reason)) => DnsRows::Failed(reason),
    }
}
