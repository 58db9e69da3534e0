//! Consul's v1 HTTP API: the same paths, JSON shapes, status codes, plain
//! text errors and `X-Consul-*` headers, served from the agent's state.
//!
//! Each endpoint family has its module; `params`, `blocking` and `reply`
//! hold what they share: query parsing, the blocking-query loop and the
//! response conventions.

mod agent_endpoint;
mod blocking;
pub mod decode;
mod error;
mod kv;
mod params;
mod reply;
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
        .route("/v1/status/leader", any(status::leader))
        .route("/v1/status/peers", any(status::peers))
        .route("/v1/agent/self", any(agent_endpoint::self_))
        .route("/v1/agent/leave", any(agent_endpoint::leave))
        .fallback(reply::not_found)
        .with_state(agent)
}

/// Serves the API on `listener` until the agent stops; in-flight requests
/// (blocking queries included, which return early) finish first.
pub async fn serve(listener: TcpListener, agent: Arc<Agent>) -> std::io::Result<()> {
    let stopping = Arc::clone(&agent);
    axum::serve(listener, router(agent))
        .with_graceful_shutdown(async move { stopping.stopping().await })
        .await
}
