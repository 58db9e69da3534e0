//! `/v1/agent/service*` and `/v1/agent/services`: the services this agent
//! runs, kept in its local state and synced to the catalog.

use std::collections::BTreeMap;
use std::sync::Arc;

use agent::persisted::Definition;
use agent::Agent;
use axum::body::Body;
use axum::extract::State;
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use state::ServiceInstance;

use agent::service_definition::ServiceDefinition;

use crate::catalog::tail;
use crate::error::HttpError;
use crate::filter;
use crate::params::Params;
use crate::reply;

/// A service as `/v1/agent/services` shows it (Consul's `AgentService`).
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct AgentServiceJson<'a> {
    #[serde(skip_serializing_if = "str::is_empty")]
    kind: &'a str,
    #[serde(rename = "ID")]
    id: &'a str,
    service: &'a str,
    tags: &'a [String],
    meta: &'a BTreeMap<String, String>,
    port: u16,
    address: &'a str,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    tagged_addresses: BTreeMap<&'a str, serde_json::Value>,
    weights: serde_json::Value,
    enable_tag_override: bool,
    datacenter: &'a str,
}

impl<'a> AgentServiceJson<'a> {
    pub fn new(s: &'a ServiceInstance, datacenter: &'a str) -> Self {
        AgentServiceJson {
            kind: &s.kind,
            id: &s.id,
            service: &s.service,
            tags: &s.tags,
            meta: &s.meta,
            port: s.port,
            address: &s.address,
            tagged_addresses: s
                .tagged_addresses
                .iter()
                .map(|(k, a)| {
                    (
                        k.as_str(),
                        serde_json::json!({"Address": a.address, "Port": a.port}),
                    )
                })
                .collect(),
            weights: serde_json::json!({"Passing": s.weights.passing, "Warning": s.weights.warning}),
            enable_tag_override: s.enable_tag_override,
            datacenter,
        }
    }
}

pub async fn list(State(agent): State<Arc<Agent>>, method: Method, uri: Uri) -> Response {
    if let Some(refused) = reply::refuse_method(&method, &["GET"]) {
        return refused;
    }
    let params = Params::parse(uri.query());
    let expr = match filter::from_params(&params, &filter::schema::AGENT_SERVICE) {
        Ok(expr) => expr,
        Err(e) => return e.into_response(),
    };
    let local = agent.local_state();
    let dc = agent.config().datacenter.as_str();
    let json: BTreeMap<&str, AgentServiceJson> = local
        .services()
        .iter()
        .map(|(id, s)| (id.as_str(), AgentServiceJson::new(&s.instance, dc)))
        .filter(|(_, j)| filter::passes(expr.as_ref(), j))
        .collect();
    reply::ok(&json, reply::pretty(agent.config().dev, &params))
}

pub async fn one(State(agent): State<Arc<Agent>>, method: Method, uri: Uri) -> Response {
    if let Some(refused) = reply::refuse_method(&method, &["GET"]) {
        return refused;
    }
    let params = Params::parse(uri.query());
    let id = tail(&uri, "/v1/agent/service/");
    let local = agent.local_state();
    match local.service(&id) {
        Some(s) => {
            let json = AgentServiceJson::new(&s.instance, &agent.config().datacenter);
            let hash = content_hash(&json);
            let mut body = serde_json::to_value(&json).unwrap_or_default();
            if let Some(object) = body.as_object_mut() {
                object.insert("ContentHash".into(), hash.clone().into());
            }
            let mut response = reply::ok(&body, reply::pretty(agent.config().dev, &params));
            if let Ok(value) = axum::http::HeaderValue::from_str(&hash) {
                response.headers_mut().insert("X-Consul-ContentHash", value);
            }
            response
        }
        None => HttpError::new(StatusCode::NOT_FOUND, format!("unknown service ID: {id}"))
            .into_response(),
    }
}

pub async fn register(
    State(agent): State<Arc<Agent>>,
    method: Method,
    uri: Uri,
    body: Body,
) -> Response {
    if let Some(refused) = reply::refuse_method(&method, &["PUT"]) {
        return refused;
    }
    let params = Params::parse(uri.query());
    let result = async {
        let bytes = crate::body::read(body, crate::body::MAX_DEFINITION_BODY).await?;
        let raw: serde_json::Value = crate::body::decode(&bytes)?;
        let definition: ServiceDefinition = crate::body::decode_value(raw.clone())?;
        definition
            .validate()
            .map_err(|e| HttpError::bad_request(e.to_string()))?;
        let replace_checks = matches!(params.get("replace-existing-checks"), Some("" | "true"));
        agent
            .add_service(
                &definition,
                replace_checks,
                agent::registrations::Source::Api,
            )
            .map_err(crate::agent_checks::register_error)?;
        agent
            .persist(Definition::Service, definition.effective_id(), Some(raw))
            .await
            .map_err(|e| HttpError::internal(format!("failed persisting service: {e}")))?;
        Ok::<_, HttpError>(reply::empty_ok())
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

pub async fn deregister(State(agent): State<Arc<Agent>>, method: Method, uri: Uri) -> Response {
    if let Some(refused) = reply::refuse_method(&method, &["PUT"]) {
        return refused;
    }
    let id = tail(&uri, "/v1/agent/service/deregister/");
    let Some(removed_checks) = agent.remove_service(&id) else {
        return crate::agent_checks::register_error(Agent::unknown_service_error(&id))
            .into_response();
    };
    let forgotten = async {
        agent.persist(Definition::Service, &id, None).await?;
        for check_id in removed_checks {
            agent.persist(Definition::Check, &check_id, None).await?;
        }
        Ok::<_, std::io::Error>(())
    };
    match forgotten.await {
        Ok(()) => reply::empty_ok(),
        Err(e) => {
            HttpError::internal(format!("failed removing persisted service: {e}")).into_response()
        }
    }
}

/// A hash of what a service looks like, so a client can tell whether it
/// changed (Consul's `ContentHash`): FNV-1a over its JSON.
fn content_hash<T: Serialize>(value: &T) -> String {
    let bytes = serde_json::to_vec(value).unwrap_or_default();
    let hash = bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("{hash:016x}")
}
