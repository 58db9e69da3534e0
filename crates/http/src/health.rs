//! `/v1/health/*`: checks by node, service and state, and service
//! instances with their health.

use std::sync::Arc;

use agent::Agent;
use axum::extract::State;
use axum::http::{Method, Uri};
use axum::response::{IntoResponse, Response};

use crate::blocking;
use crate::catalog::{has_tags, tail};
use crate::error::HttpError;
use crate::filter::{self, schema, Filter};
use crate::near;
use crate::params::{node_meta_filters, Params};
use crate::reply;
use crate::shapes::{CheckServiceNodeJson, HealthCheckJson};

/// The common frame of the health reads: GET only, a non-empty name from
/// the path, and the `?filter=` for elements of `schema`.
fn frame(
    method: &Method,
    uri: &Uri,
    prefix: &str,
    missing: &str,
    schema: &'static schema::Ty,
) -> Result<(Params, String, Option<Filter>), Box<Response>> {
    if let Some(refused) = reply::refuse_method(method, &["GET"]) {
        return Err(Box::new(refused));
    }
    let params = Params::parse(uri.query());
    let name = tail(uri, prefix);
    if name.is_empty() {
        return Err(Box::new(HttpError::bad_request(missing).into_response()));
    }
    let expr = filter::from_params(&params, schema).map_err(|e| Box::new(e.into_response()))?;
    Ok((params, name, expr))
}

fn checks_reply(
    checks: &[Arc<state::HealthCheck>],
    expr: Option<&Filter>,
    pretty: bool,
) -> Response {
    let json: Vec<HealthCheckJson> = checks
        .iter()
        .map(|c| HealthCheckJson::from(&**c))
        .filter(|j| filter::passes(expr, j))
        .collect();
    reply::ok(&json, pretty)
}

pub async fn node(State(agent): State<Arc<Agent>>, method: Method, uri: Uri) -> Response {
    let (params, name, expr) = match frame(
        &method,
        &uri,
        "/v1/health/node/",
        "Missing node name",
        &schema::HEALTH_CHECK,
    ) {
        Ok(framed) => framed,
        Err(refused) => return *refused,
    };
    blocking::respond(
        &agent,
        &params,
        |snap, ws| snap.node_checks(&name, ws),
        |c, pretty| checks_reply(c, expr.as_ref(), pretty),
    )
    .await
    .unwrap_or_else(IntoResponse::into_response)
}

pub async fn checks(State(agent): State<Arc<Agent>>, method: Method, uri: Uri) -> Response {
    let (params, name, expr) = match frame(
        &method,
        &uri,
        "/v1/health/checks/",
        "Missing service name",
        &schema::HEALTH_CHECK,
    ) {
        Ok(framed) => framed,
        Err(refused) => return *refused,
    };
    let filters = node_meta_filters(&params);
    blocking::respond(
        &agent,
        &params,
        |snap, ws| {
            let (index, checks) = snap.service_checks(&name, ws);
            let kept = checks
                .into_iter()
                .filter(|c| {
                    filters.is_empty()
                        || snap
                            .node(&c.node)
                            .is_some_and(|n| filters.iter().all(|(k, v)| n.meta.get(k) == Some(v)))
                })
                .collect::<Vec<_>>();
            (index, kept)
        },
        |c, pretty| checks_reply(c, expr.as_ref(), pretty),
    )
    .await
    .unwrap_or_else(IntoResponse::into_response)
}

pub async fn state(State(agent): State<Arc<Agent>>, method: Method, uri: Uri) -> Response {
    let (params, wanted, expr) = match frame(
        &method,
        &uri,
        "/v1/health/state/",
        "Missing check state",
        &schema::HEALTH_CHECK,
    ) {
        Ok(framed) => framed,
        Err(refused) => return *refused,
    };
    blocking::respond(
        &agent,
        &params,
        |snap, ws| snap.checks_in_state(&wanted, ws),
        |c, pretty| checks_reply(c, expr.as_ref(), pretty),
    )
    .await
    .unwrap_or_else(IntoResponse::into_response)
}

/// `?passing` as Go's `strconv.ParseBool` reads it; bare means true.
fn passing_only(params: &Params) -> Result<bool, HttpError> {
    match params.get("passing") {
        None => Ok(false),
        Some("") => Ok(true),
        Some("1" | "t" | "T" | "TRUE" | "true" | "True") => Ok(true),
        Some("0" | "f" | "F" | "FALSE" | "false" | "False") => Ok(false),
        Some(_) => Err(HttpError::bad_request("Invalid value for ?passing")),
    }
}

pub async fn service(State(agent): State<Arc<Agent>>, method: Method, uri: Uri) -> Response {
    let (params, name, expr) = match frame(
        &method,
        &uri,
        "/v1/health/service/",
        "Missing service name",
        &schema::CHECK_SERVICE_NODE,
    ) {
        Ok(framed) => framed,
        Err(refused) => return *refused,
    };
    let passing = match passing_only(&params) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let tags: Vec<String> = params.get_all("tag").map(str::to_owned).collect();
    let filters = node_meta_filters(&params);
    let near = near::source(&agent, &params);
    blocking::respond(
        &agent,
        &params,
        |snap, ws| {
            let (index, mut instances) = snap.check_service_nodes(&name, ws);
            near::sort(snap, near.as_deref(), &mut instances, |i| &i.node.name);
            (index, instances)
        },
        |instances, pretty| {
            let json: Vec<CheckServiceNodeJson> = instances
                .iter()
                .filter(|i| has_tags(&i.service.tags, &tags))
                .filter(|i| filters.iter().all(|(k, v)| i.node.meta.get(k) == Some(v)))
                .filter(|i| !passing || i.checks.iter().all(|c| c.status == "passing"))
                .map(CheckServiceNodeJson::from)
                .filter(|j| filter::passes(expr.as_ref(), j))
                .collect();
            reply::ok(&json, pretty)
        },
    )
    .await
    .unwrap_or_else(IntoResponse::into_response)
}
