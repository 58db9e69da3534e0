//! Other datacenters, for the names that ask for one
//! (`web.service.dc2.consul`). A server reaches them through its WAN pool
//! and a client agent through its server; the agent layer plugs either in
//! as an [`OtherDatacenters`], and an agent without one answers every
//! other datacenter's name as not found. (A prepared query's failover is
//! the [`Catalog`](crate::Catalog)'s job: it runs where the query does.)

use state::{CheckServiceNode, Execution, Node};

use crate::answer::{Fetched, Wanted};

/// Why another datacenter gave no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RemoteError {
    /// No server of that datacenter is known (Consul's `ErrNoDCPath`):
    /// answered NXDOMAIN, as if the name did not exist.
    #[error("No path to datacenter")]
    NoPath,
    /// It was asked and failed: answered SERVFAIL.
    #[error("{0}")]
    Failed(String),
}

/// The reads DNS makes of other datacenters (Consul's DNS server sends
/// these RPCs to a server of the datacenter the name asks for).
#[async_trait::async_trait]
pub trait OtherDatacenters: Send + Sync + 'static {
    /// Every instance of `service` in `datacenter`, with nodes and checks.
    async fn service_health(
        &self,
        datacenter: &str,
        service: &str,
    ) -> Result<Vec<CheckServiceNode>, RemoteError>;

    /// The node `name` of `datacenter`, if it has one.
    async fn node(&self, datacenter: &str, name: &str) -> Result<Option<Node>, RemoteError>;

    /// The prepared query `id_or_name` run in `datacenter` (failing over
    /// from there if need be); `None` when it has no such query.
    async fn execute_query(
        &self,
        datacenter: &str,
        id_or_name: &str,
    ) -> Result<Option<Execution>, RemoteError>;
}

fn fetched<T>(result: Result<T, RemoteError>, kind: impl FnOnce(T) -> Fetched) -> Fetched {
    match result {
        Ok(data) => kind(data),
        Err(RemoteError::NoPath) => Fetched::NoPath,
        Err(RemoteError::Failed(reason)) => {
            tracing::warn!(%reason, "dns: another datacenter could not answer");
            Fetched::Failed
        }
    }
}

/// Goes for what `wanted` names; without a way to other datacenters
/// there is no path to any.
pub(crate) async fn fetch(remote: Option<&dyn OtherDatacenters>, wanted: &Wanted) -> Fetched {
    let Some(remote) = remote else {
        return Fetched::NoPath;
    };
    match wanted {
        Wanted::Service {
            datacenter,
            service,
            ..
        } => fetched(
            remote.service_health(datacenter, service).await,
            Fetched::Instances,
        ),
        Wanted::Node { datacenter, name } => {
            fetched(remote.node(datacenter, name).await, Fetched::Node)
        }
        Wanted::Query { datacenter, name } => fetched(
            remote.execute_query(datacenter, name).await,
            Fetched::Execution,
        ),
    }
}
