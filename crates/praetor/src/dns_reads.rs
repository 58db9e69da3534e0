//! The catalog reads of a client agent's DNS interface, both ends. A client
//! keeps no catalog, yet its DNS answers must follow its own `domain`,
//! `dns_config` and `recursors`, as a Consul client's do: so the client runs
//! the same [`dns::CatalogDns`] as a server, over a [`RemoteCatalog`] that
//! asks a server (`/rpc/dns-read`) for each row it needs, and the server
//! answers each read from its state store in [`answer_read`].

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use agent::router::ServerRouter;
use agent::{Agent, ReadConsistency};
use consensus::{DnsLookup, DnsRead, DnsRows, PreparedRows};
use dns::{AddressOwners, Catalog, CatalogError, PreparedAnswer};
use state::{CheckServiceNode, Node};

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
    ) -> Result<Option<PreparedAnswer>, CatalogError> {
        let lookup = DnsLookup::PreparedQuery {
            name: name.to_owned(),
            agent_node: agent_node.to_owned(),
            datacenter: datacenter.to_owned(),
        };
        match self.read(lookup).await? {
            DnsRows::PreparedQuery(found) => Ok(found.map(|rows| PreparedAnswer {
                service: rows.service,
                nodes: rows.nodes,
                dns_ttl: rows.dns_ttl,
            })),
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
pub async fn answer_read(agent: &Agent, read: DnsRead) -> DnsRows {
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
    let snapshot = agent.store().snapshot();
    let catalog: &dyn Catalog = &*snapshot;
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
            .map(|found| {
                DnsRows::PreparedQuery(found.map(|answer| PreparedRows {
                    service: answer.service,
                    nodes: answer.nodes,
                    dns_ttl: answer.dns_ttl,
                }))
            }),
        DnsLookup::AddressOwners(ip) => {
            catalog
                .address_owners(ip)
                .await
                .map(|owners| DnsRows::AddressOwners {
                    nodes: owners.nodes,
                    services: owners.services,
                })
        }
    };
    rows.unwrap_or_else(|error| DnsRows::Failed(error.to_string()))
}
