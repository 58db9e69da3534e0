//! DNS names of other datacenters, and prepared queries failing over, on a
//! server: the reads go through its WAN pool ([`Federation`]), the same
//! way `?dc=` API calls go.

use std::sync::Arc;

use agent::federation::{Federation, FederationError};
use agent::Agent;
use dns::{OtherDatacenters, RemoteError};
use state::{CheckServiceNode, Execution, Node, PreparedQuery};

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

    async fn fail_over(&self, query: &PreparedQuery, run: Execution) -> Execution {
        self.agent.fail_over_if_empty(query, 0, run).await
    }
}
