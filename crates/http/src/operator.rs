//! `/v1/operator/raft/*`: the Raft configuration, removing a peer, and
//! handing leadership to another server.

use std::sync::Arc;

use agent::Agent;
use axum::extract::State;
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use consensus::{Cluster, ClusterError, ConfigurationView, MembershipRequest};
use serde::Serialize;

use crate::error::HttpError;
use crate::params::{parse_consistency, Consistency, Params};
use crate::reply;

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct RaftServerJson {
    #[serde(rename = "ID")]
    id: String,
    node: String,
    address: String,
    leader: bool,
    protocol_version: &'static str,
    voter: bool,
    /// Not in every Consul version; clients ignore what they do not know.
    last_index: u64,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct RaftConfigurationJson {
    servers: Vec<RaftServerJson>,
    index: u64,
}

fn configuration_json(view: ConfigurationView) -> RaftConfigurationJson {
    RaftConfigurationJson {
        servers: view
            .servers
            .into_iter()
            .map(|s| RaftServerJson {
                id: s.id,
                node: if s.node.is_empty() {
                    "(unknown)".to_owned()
                } else {
                    s.node
                },
                address: s.address,
                leader: s.leader,
                protocol_version: "3",
                voter: s.voter,
                last_index: s.last_index.unwrap_or(0),
            })
            .collect(),
        index: view.index,
    }
}

fn cluster_of(agent: &Agent) -> Result<&Arc<Cluster>, HttpError> {
    agent
        .cluster()
        .ok_or_else(|| HttpError::internal("No known Consul servers"))
}

fn cluster_error(error: ClusterError) -> HttpError {
    HttpError::internal(error.to_string())
}

pub async fn configuration(State(agent): State<Arc<Agent>>, method: Method, uri: Uri) -> Response {
    if let Some(refused) = reply::refuse_method(&method, &["GET"]) {
        return refused;
    }
    let params = Params::parse(uri.query());
    let result = async {
        let stale = parse_consistency(&params)? == Consistency::Stale;
        crate::params::check_datacenter(&agent, &params)?;
        let cluster = cluster_of(&agent)?;
        let view = cluster.configuration(stale).await.map_err(cluster_error)?;
        Ok::<_, HttpError>(reply::json(
            StatusCode::OK,
            &configuration_json(view),
            reply::pretty(agent.config().dev, &params),
        ))
    };
    result.await.unwrap_or_else(IntoResponse::into_response)
}

pub async fn peer(State(agent): State<Arc<Agent>>, method: Method, uri: Uri) -> Response {
    if let Some(refused) = reply::refuse_method(&method, &["DELETE"]) {
        return refused;
    }
    let params = Params::parse(uri.query());
    let result = async {
        crate::params::check_datacenter(&agent, &params)?;
        let id = params.get("id").filter(|_| params.has("id"));
        let address = params.get("address").filter(|_| params.has("address"));
        let (id, address) = match (params.has("id"), params.has("address")) {
            (false, false) => {
                return Err(HttpError::bad_request(
                    "Must specify either ?id with the server's ID or ?address with IP:port of peer to remove",
                ))
            }
            (true, true) => {
                return Err(HttpError::bad_request(
                    "Must specify only one of ?id or ?address",
                ))
            }
            _ => (id.unwrap_or(""), address.unwrap_or("")),
        };
        let cluster = cluster_of(&agent)?;
        let found = if params.has("id") {
            cluster.find_server(Some(id), None)
        } else {
            cluster.find_server(None, Some(address))
        };
        let Some(raft_id) = found else {
            return Err(HttpError::internal(if params.has("id") {
                format!("id {id:?} was not found in the Raft configuration")
            } else {
                format!("address {address:?} was not found in the Raft configuration")
            }));
        };
        cluster
            .change_membership(MembershipRequest::Remove { id: raft_id })
            .await
            .map_err(cluster_error)?;
        Ok(reply::empty_ok())
    };
    result.await.unwrap_or_else(IntoResponse::into_response)
}

#[derive(Serialize)]
struct TransferJson {
    #[serde(rename = "Success")]
    success: bool,
}

pub async fn transfer_leader(
    State(agent): State<Arc<Agent>>,
    method: Method,
    uri: Uri,
) -> Response {
    if let Some(refused) = reply::refuse_method(&method, &["POST"]) {
        return refused;
    }
    let params = Params::parse(uri.query());
    let result = async {
        let cluster = cluster_of(&agent)?;
        let to = match params.get("id").filter(|id| !id.is_empty()) {
            None => None,
            Some(id) => Some(cluster.find_server(Some(id), None).ok_or_else(|| {
                HttpError::internal(format!("id {id:?} was not found in the Raft configuration"))
            })?),
        };
        let before = cluster.node().status().leader;
        if to.is_some() && to == before {
            return Ok(reply::json(
                StatusCode::OK,
                &TransferJson { success: true },
                reply::pretty(agent.config().dev, &params),
            ));
        }
        cluster
            .change_membership(MembershipRequest::TransferLeader { to })
            .await
            .map_err(cluster_error)?;
        // The transfer is asked for; report it once another server leads.
        let moved = cluster
            .node()
            .wait_until(std::time::Duration::from_secs(10), "a new leader", |s| {
                s.leader.is_some() && s.leader != before && to.is_none_or(|t| s.leader == Some(t))
            })
            .await
            .is_ok();
        if !moved {
            return Err(HttpError::new(
                StatusCode::NOT_FOUND,
                "Failed to transfer Leader: leadership did not move in time",
            ));
        }
        Ok(reply::json(
            StatusCode::OK,
            &TransferJson { success: true },
            reply::pretty(agent.config().dev, &params),
        ))
    };
    result.await.unwrap_or_else(IntoResponse::into_response)
}
