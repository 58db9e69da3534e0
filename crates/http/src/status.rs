//! `/v1/status/leader` and `/v1/status/peers`.

use std::sync::Arc;

use agent::Agent;
use axum::extract::State;
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

use crate::params::{parse_consistency, Params};
use crate::reply;

fn checked(method: &Method, uri: &Uri) -> Result<Params, Box<Response>> {
    if let Some(refused) = reply::refuse_method(method, &["GET"]) {
        return Err(Box::new(refused));
    }
    let params = Params::parse(uri.query());
    parse_consistency(&params).map_err(|e| Box::new(e.into_response()))?;
    Ok(params)
}

pub async fn leader(State(agent): State<Arc<Agent>>, method: Method, uri: Uri) -> Response {
    match checked(&method, &uri) {
        Ok(params) => reply::json(
            StatusCode::OK,
            &agent.leader_address(),
            reply::pretty(agent.config().dev, &params),
        ),
        Err(refused) => *refused,
    }
}

pub async fn peers(State(agent): State<Arc<Agent>>, method: Method, uri: Uri) -> Response {
    match checked(&method, &uri) {
        Ok(params) => reply::json(
            StatusCode::OK,
            &agent.peers(),
            reply::pretty(agent.config().dev, &params),
        ),
        Err(refused) => *refused,
    }
}
