//! Consul's v1 HTTP API: the same paths, JSON shapes, status codes, plain
//! text errors and `X-Consul-*` headers, served from the agent's state.
//!
//! Each endpoint family has its module; `params`, `blocking` and `reply`
//! hold what they share: query parsing, the blocking-query loop and the
//! response conventions.

mod agent_checks;
mod agent_endpoint;
mod agent_services;
mod blocking;
mod body;
mod catalog;
mod coordinate;
mod error;
mod event;
pub mod filter;
pub mod forward;
mod health;
mod http1;
mod keyring;
mod kv;
mod near;
mod operator;
mod params;
mod query;
mod remote_dc;
mod reply;
mod session;
mod shapes;
mod snapshot;
mod status;
mod txn;

use std::sync::Arc;

use agent::Agent;
use axum::routing::any;
use axum::Router;
use tokio::net::TcpListener;

pub use error::HttpError;

/// The router for every endpoint praetor serves.
pub fn router(agent: Arc<Agent>) -> Router {
    Router::new()
        .route("/v1/kv/", any(kv::endpoint))
        .route("/v1/kv/{*key}", any(kv::endpoint))
        .route("/v1/txn", any(txn::endpoint))
        .route("/v1/snapshot", any(snapshot::endpoint))
        .route("/v1/status/leader", any(status::leader))
        .route("/v1/status/peers", any(status::peers))
        .route(
            "/v1/operator/raft/configuration",
            any(operator::configuration),
        )
        .route("/v1/operator/keyring", any(keyring::endpoint))
        .route("/v1/operator/raft/peer", any(operator::peer))
        .route(
            "/v1/operator/raft/transfer-leader",
            any(operator::transfer_leader),
        )
        .route("/v1/catalog/register", any(catalog::register))
        .route("/v1/catalog/deregister", any(catalog::deregister))
        .route("/v1/catalog/datacenters", any(catalog::datacenters))
        .route("/v1/catalog/nodes", any(catalog::nodes))
        .route("/v1/catalog/services", any(catalog::services))
        .route("/v1/catalog/service/", any(catalog::service))
        .route("/v1/catalog/service/{*name}", any(catalog::service))
        .route("/v1/catalog/node/", any(catalog::node))
        .route("/v1/catalog/node/{*name}", any(catalog::node))
        .route("/v1/catalog/node-services/", any(catalog::node_services))
        .route(
            "/v1/catalog/node-services/{*name}",
            any(catalog::node_services),
        )
        .route("/v1/coordinate/datacenters", any(coordinate::datacenters))
        .route("/v1/coordinate/nodes", any(coordinate::nodes))
        .route("/v1/coordinate/node/{*node}", any(coordinate::node))
        .route("/v1/coordinate/update", any(coordinate::update))
        .route("/v1/health/node/", any(health::node))
        .route("/v1/health/node/{*name}", any(health::node))
        .route("/v1/health/checks/", any(health::checks))
        .route("/v1/health/checks/{*name}", any(health::checks))
        .route("/v1/health/state/", any(health::state))
        .route("/v1/health/state/{*name}", any(health::state))
        .route("/v1/health/service/", any(health::service))
        .route("/v1/health/service/{*name}", any(health::service))
        .route("/v1/session/create", any(session::create))
        .route("/v1/session/destroy/", any(session::destroy))
        .route("/v1/session/destroy/{*id}", any(session::destroy))
        .route("/v1/session/renew/", any(session::renew))
        .route("/v1/session/renew/{*id}", any(session::renew))
        .route("/v1/session/info/", any(session::info))
        .route("/v1/session/info/{*id}", any(session::info))
        .route("/v1/session/node/", any(session::node))
        .route("/v1/session/node/{*node}", any(session::node))
        .route("/v1/session/list", any(session::list))
        .route("/v1/query", any(query::general))
        .route("/v1/query/{*rest}", any(query::specific))
        .route("/v1/event/fire/", any(event::fire))
        .route("/v1/event/fire/{*name}", any(event::fire))
        .route("/v1/event/list", any(event::list))
        .route("/v1/agent/self", any(agent_endpoint::self_))
        .route("/v1/agent/members", any(agent_endpoint::members))
        .route("/v1/agent/join/{*address}", any(agent_endpoint::join))
        .route(
            "/v1/agent/force-leave/{*node}",
            any(agent_endpoint::force_leave),
        )
        .route("/v1/agent/services", any(agent_services::list))
        .route("/v1/agent/service/register", any(agent_services::register))
        .route(
            "/v1/agent/service/deregister/{*id}",
            any(agent_services::deregister),
        )
        .route(
            "/v1/agent/service/maintenance/",
            any(agent_checks::service_maintenance),
        )
        .route(
            "/v1/agent/service/maintenance/{*id}",
            any(agent_checks::service_maintenance),
        )
        .route("/v1/agent/service/{*id}", any(agent_services::one))
        .route("/v1/agent/checks", any(agent_checks::list))
        .route("/v1/agent/check/register", any(agent_checks::register))
        .route(
            "/v1/agent/check/deregister/{*id}",
            any(agent_checks::deregister),
        )
        .route("/v1/agent/check/update/{*id}", any(agent_checks::update))
        .route("/v1/agent/check/pass/{*id}", any(agent_checks::report))
        .route("/v1/agent/check/warn/{*id}", any(agent_checks::report))
        .route("/v1/agent/check/fail/{*id}", any(agent_checks::report))
        .route("/v1/agent/maintenance", any(agent_checks::node_maintenance))
        .route("/v1/agent/leave", any(agent_endpoint::leave))
        .fallback(reply::not_found)
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&agent),
            remote_dc::to_datacenter,
        ))
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&agent),
            forward::to_server,
        ))
        .with_state(agent)
}

/// Serves the API on `listener` until the agent stops; in-flight requests
/// (blocking queries included, which return early) finish first.
pub async fn serve(listener: TcpListener, agent: Arc<Agent>) -> std::io::Result<()> {
    let config = agent.config();
    // Bodies beyond the largest a handler accepts are refused unread.
    let max_body = config.kv_max_value_size.max(config.txn_max_req_len);
    let max_body = usize::try_from(max_body).unwrap_or(usize::MAX);
    http1::serve(listener, router(Arc::clone(&agent)), agent, max_body).await;
    Ok(())
}
