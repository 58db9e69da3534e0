//! `/v1/agent/check*`, `/v1/agent/checks` and maintenance mode.

use std::collections::BTreeMap;
use std::sync::Arc;

use agent::checks::{CheckDefinition, CheckStatus};
use agent::persisted::Definition;
use agent::registrations::RegisterError;
use agent::Agent;
use axum::body::Body;
use axum::extract::State;
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::catalog::tail;
use crate::error::HttpError;
use crate::filter;
use crate::params::Params;
use crate::reply;
use crate::shapes::HealthCheckJson;

/// Consul's status for each kind of refusal.
pub fn register_error(error: RegisterError) -> HttpError {
    match error {
        RegisterError::Invalid(m) => HttpError::bad_request(m),
        RegisterError::NotFound(m) => HttpError::new(StatusCode::NOT_FOUND, m),
        RegisterError::Refused(m) => HttpError::internal(m),
    }
}

pub async fn list(State(agent): State<Arc<Agent>>, method: Method, uri: Uri) -> Response {
    if let Some(refused) = reply::refuse_method(&method, &["GET"]) {
        return refused;
    }
    let params = Params::parse(uri.query());
    let expr = match filter::from_params(&params, &filter::schema::HEALTH_CHECK) {
        Ok(expr) => expr,
        Err(e) => return e.into_response(),
    };
    let local = agent.local_state();
    let json: BTreeMap<&str, HealthCheckJson> = local
        .checks()
        .iter()
        .map(|(id, c)| (id.as_str(), HealthCheckJson::from(&c.check)))
        .filter(|(_, j)| filter::passes(expr.as_ref(), j))
        .collect();
    reply::ok(&json, reply::pretty(agent.config().dev, &params))
}

pub async fn register(State(agent): State<Arc<Agent>>, method: Method, body: Body) -> Response {
    if let Some(refused) = reply::refuse_method(&method, &["PUT"]) {
        return refused;
    }
    let result = async {
        let raw: serde_json::Value =
            crate::body::decode(&crate::body::read(body, crate::body::MAX_DEFINITION_BODY).await?)?;
        let definition: CheckDefinition = crate::body::decode_value(raw.clone())?;
        let id = definition.effective_id().to_owned();
        agent
            .add_check(definition, agent::registrations::Source::Api)
            .map_err(register_error)?;
        agent
            .persist(Definition::Check, &id, Some(raw))
            .await
            .map_err(|e| HttpError::internal(format!("failed persisting check: {e}")))?;
        Ok::<_, HttpError>(reply::empty_ok())
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

pub async fn deregister(State(agent): State<Arc<Agent>>, method: Method, uri: Uri) -> Response {
    if let Some(refused) = reply::refuse_method(&method, &["PUT"]) {
        return refused;
    }
    let id = tail(&uri, "/v1/agent/check/deregister/");
    if agent.remove_check(&id) {
        match agent.persist(Definition::Check, &id, None).await {
            Ok(()) => reply::empty_ok(),
            Err(e) => {
                HttpError::internal(format!("failed removing persisted check: {e}")).into_response()
            }
        }
    } else {
        HttpError::new(
            StatusCode::NOT_FOUND,
            format!(
                "Unknown check ID {id:?}. Ensure that the check ID is passed, not the check name."
            ),
        )
        .into_response()
    }
}

/// `/v1/agent/check/pass|warn|fail/:id?note=`: the note becomes the output.
pub async fn report(State(agent): State<Arc<Agent>>, method: Method, uri: Uri) -> Response {
    if let Some(refused) = reply::refuse_method(&method, &["PUT"]) {
        return refused;
    }
    let rest = tail(&uri, "/v1/agent/check/");
    let Some((verb, id)) = rest.split_once('/') else {
        return HttpError::new(
            StatusCode::NOT_FOUND,
            "Invalid URL path: not a recognized HTTP API endpoint\n",
        )
        .into_response();
    };
    let status = match verb {
        "pass" => CheckStatus::Passing,
        "warn" => CheckStatus::Warning,
        _ => CheckStatus::Critical,
    };
    let params = Params::parse(uri.query());
    let note = params.get("note").unwrap_or_default().to_owned();
    match agent.update_ttl(id, status, note) {
        Ok(()) => reply::empty_ok(),
        Err(e) => register_error(e).into_response(),
    }
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct UpdateBody {
    status: String,
    output: String,
}

pub async fn update(
    State(agent): State<Arc<Agent>>,
    method: Method,
    uri: Uri,
    body: Body,
) -> Response {
    if let Some(refused) = reply::refuse_method(&method, &["PUT"]) {
        return refused;
    }
    let id = tail(&uri, "/v1/agent/check/update/");
    let result = async {
        let update: UpdateBody =
            crate::body::decode(&crate::body::read(body, crate::body::MAX_DEFINITION_BODY).await?)?;
        let status: CheckStatus = update.status.parse().map_err(|_| {
            HttpError::bad_request(format!("Invalid check status: '{}'", update.status))
        })?;
        agent
            .update_ttl(&id, status, update.output)
            .map_err(register_error)?;
        Ok::<_, HttpError>(reply::empty_ok())
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

/// `enable` as Go's `strconv.ParseBool` reads it; it is required.
fn enable_param(params: &Params) -> Result<bool, HttpError> {
    match params.get("enable") {
        None => Err(HttpError::bad_request("Missing value for enable")),
        Some("1" | "t" | "T" | "TRUE" | "true" | "True") => Ok(true),
        Some("0" | "f" | "F" | "FALSE" | "false" | "False") => Ok(false),
        Some(raw) => Err(HttpError::bad_request(format!(
            "Invalid value for enable: {raw:?}"
        ))),
    }
}

pub async fn node_maintenance(
    State(agent): State<Arc<Agent>>,
    method: Method,
    uri: Uri,
) -> Response {
    if let Some(refused) = reply::refuse_method(&method, &["PUT"]) {
        return refused;
    }
    let params = Params::parse(uri.query());
    match enable_param(&params) {
        Ok(enable) => {
            agent.set_node_maintenance(enable, params.get("reason").unwrap_or_default());
            reply::empty_ok()
        }
        Err(e) => e.into_response(),
    }
}

pub async fn service_maintenance(
    State(agent): State<Arc<Agent>>,
    method: Method,
    uri: Uri,
) -> Response {
    if let Some(refused) = reply::refuse_method(&method, &["PUT"]) {
        return refused;
    }
    let params = Params::parse(uri.query());
    let id = tail(&uri, "/v1/agent/service/maintenance/");
    let result = (|| {
        if id.is_empty() {
            return Err(HttpError::bad_request("Missing service ID"));
        }
        let enable = enable_param(&params)?;
        agent
            .set_service_maintenance(&id, enable, params.get("reason").unwrap_or_default())
            .map_err(register_error)
    })();
    match result {
        Ok(()) => reply::empty_ok(),
        Err(e) => e.into_response(),
    }
}
