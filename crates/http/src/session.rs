//! `/v1/session/*`: create, destroy, renew, info, node and list.

use std::sync::Arc;

use agent::sessions::SessionRequest;
use agent::Agent;
use axum::body::Body;
use axum::extract::State;
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use state::Session;

use crate::blocking;
use crate::catalog::tail;
use crate::error::HttpError;
use crate::params::Params;
use crate::reply;

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ServiceCheckJson<'a> {
    #[serde(rename = "ID")]
    id: &'a str,
    namespace: &'a str,
}

/// A session in Consul's JSON shape (`LockDelay` in nanoseconds).
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct SessionJson<'a> {
    #[serde(rename = "ID")]
    id: &'a str,
    name: &'a str,
    node: &'a str,
    lock_delay: u64,
    behavior: &'a str,
    #[serde(rename = "TTL")]
    ttl: &'a str,
    node_checks: &'a [String],
    service_checks: Option<Vec<ServiceCheckJson<'a>>>,
    create_index: u64,
    modify_index: u64,
}

impl<'a> From<&'a Session> for SessionJson<'a> {
    fn from(s: &'a Session) -> Self {
        SessionJson {
            id: &s.id,
            name: &s.name,
            node: &s.node,
            lock_delay: s.lock_delay_ns,
            behavior: s.behavior.as_str(),
            ttl: &s.ttl,
            node_checks: &s.node_checks,
            service_checks: (!s.service_checks.is_empty()).then(|| {
                s.service_checks
                    .iter()
                    .map(|id| ServiceCheckJson { id, namespace: "" })
                    .collect()
            }),
            create_index: s.create_index,
            modify_index: s.modify_index,
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct ServiceCheckBody {
    #[serde(rename = "ID")]
    id: String,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct CreateBody {
    name: String,
    node: String,
    lock_delay: Option<serde_json::Value>,
    behavior: String,
    #[serde(rename = "TTL")]
    ttl: String,
    node_checks: Option<Vec<String>>,
    checks: Option<Vec<String>>,
    service_checks: Option<Vec<ServiceCheckBody>>,
}

/// Consul's reading of `LockDelay`: a Go duration string or nanoseconds,
/// where anything under a microsecond is taken as seconds.
fn lock_delay(value: &serde_json::Value) -> Result<std::time::Duration, HttpError> {
    let nanos: u64 = match value {
        serde_json::Value::Number(n) => n.as_u64().unwrap_or(0),
        serde_json::Value::String(s) => {
            let d = crate::params::parse_go_duration(s).ok_or_else(|| {
                HttpError::bad_request(format!("Request decode failed: invalid LockDelay {s:?}"))
            })?;
            u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
        }
        _ => {
            return Err(HttpError::bad_request(
                "Request decode failed: invalid LockDelay",
            ))
        }
    };
    Ok(if nanos < 1000 {
        std::time::Duration::from_secs(nanos)
    } else {
        std::time::Duration::from_nanos(nanos)
    })
}

pub async fn create(
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
        crate::params::check_datacenter(&agent, &params)?;
        let bytes = crate::body::read(body, crate::body::MAX_DEFINITION_BODY).await?;
        let body: CreateBody = if bytes.iter().all(u8::is_ascii_whitespace) {
            CreateBody::default()
        } else {
            crate::body::decode(&bytes)?
        };
        let request = SessionRequest {
            name: body.name,
            node: body.node,
            node_checks: body.node_checks.or(body.checks),
            service_checks: body
                .service_checks
                .unwrap_or_default()
                .into_iter()
                .map(|c| c.id)
                .collect(),
            lock_delay: body.lock_delay.as_ref().map(lock_delay).transpose()?,
            behavior: body.behavior,
            ttl: body.ttl,
        };
        let id = agent
            .create_session(request)
            .await
            .map_err(|e| HttpError::internal(e.0))?;
        Ok::<_, HttpError>(reply::ok(
            &serde_json::json!({ "ID": id }),
            reply::pretty(agent.config().dev, &params),
        ))
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

pub async fn destroy(State(agent): State<Arc<Agent>>, method: Method, uri: Uri) -> Response {
    if let Some(refused) = reply::refuse_method(&method, &["PUT"]) {
        return refused;
    }
    let params = Params::parse(uri.query());
    let id = tail(&uri, "/v1/session/destroy/");
    if id.is_empty() {
        return HttpError::bad_request("Missing session").into_response();
    }
    match agent.destroy_session(&id).await {
        Ok(()) => reply::ok(&true, reply::pretty(agent.config().dev, &params)),
        Err(e) => HttpError::internal(e.0).into_response(),
    }
}

pub async fn renew(State(agent): State<Arc<Agent>>, method: Method, uri: Uri) -> Response {
    if let Some(refused) = reply::refuse_method(&method, &["PUT"]) {
        return refused;
    }
    let params = Params::parse(uri.query());
    let id = tail(&uri, "/v1/session/renew/");
    if id.is_empty() {
        return HttpError::bad_request("Missing session").into_response();
    }
    match agent.renew_session(&id) {
        Some(session) => reply::ok(
            &[SessionJson::from(&*session)],
            reply::pretty(agent.config().dev, &params),
        ),
        None => HttpError::new(
            StatusCode::NOT_FOUND,
            format!("Session id '{id}' not found"),
        )
        .into_response(),
    }
}

fn sessions_reply(sessions: &[Arc<Session>], pretty: bool) -> Response {
    let json: Vec<SessionJson> = sessions.iter().map(|s| SessionJson::from(&**s)).collect();
    reply::ok(&json, pretty)
}

pub async fn info(State(agent): State<Arc<Agent>>, method: Method, uri: Uri) -> Response {
    if let Some(refused) = reply::refuse_method(&method, &["GET"]) {
        return refused;
    }
    let params = Params::parse(uri.query());
    let id = tail(&uri, "/v1/session/info/");
    if id.is_empty() {
        return HttpError::bad_request("Missing session").into_response();
    }
    blocking::respond(
        &agent,
        &params,
        |snap, ws| {
            let (index, found) = snap.session(&id, ws);
            (index, found.into_iter().collect::<Vec<_>>())
        },
        |s, pretty| sessions_reply(s, pretty),
    )
    .await
    .unwrap_or_else(IntoResponse::into_response)
}

pub async fn node(State(agent): State<Arc<Agent>>, method: Method, uri: Uri) -> Response {
    if let Some(refused) = reply::refuse_method(&method, &["GET"]) {
        return refused;
    }
    let params = Params::parse(uri.query());
    let node = tail(&uri, "/v1/session/node/");
    if node.is_empty() {
        return HttpError::bad_request("Missing node name").into_response();
    }
    blocking::respond(
        &agent,
        &params,
        |snap, ws| snap.sessions(Some(&node), ws),
        |s, pretty| sessions_reply(s, pretty),
    )
    .await
    .unwrap_or_else(IntoResponse::into_response)
}

pub async fn list(State(agent): State<Arc<Agent>>, method: Method, uri: Uri) -> Response {
    if let Some(refused) = reply::refuse_method(&method, &["GET"]) {
        return refused;
    }
    let params = Params::parse(uri.query());
    blocking::respond(
        &agent,
        &params,
        |snap, ws| snap.sessions(None, ws),
        |s, pretty| sessions_reply(s, pretty),
    )
    .await
    .unwrap_or_else(IntoResponse::into_response)
}
