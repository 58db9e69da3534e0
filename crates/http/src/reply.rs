//! How responses are shaped: JSON (pretty in `-dev` or with `?pretty`, as
//! Consul does), the `X-Consul-*` query metadata, and method checks.

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::error::HttpError;
use crate::params::{Consistency, Params};

/// A JSON body, compact or indented with four spaces and a newline.
pub fn json<T: Serialize>(status: StatusCode, value: &T, pretty: bool) -> Response {
    let body = if pretty {
        serde_json::to_vec_pretty(value).map(|mut v| {
            v.push(b'\n');
            v
        })
    } else {
        serde_json::to_vec(value)
    };
    match body {
        Ok(bytes) => {
            let mut response = (status, bytes).into_response();
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            response
        }
        Err(error) => HttpError::internal(error.to_string()).into_response(),
    }
}

/// A 200 with a JSON body.
pub fn ok<T: Serialize>(value: &T, pretty: bool) -> Response {
    json(StatusCode::OK, value, pretty)
}

/// Whether JSON should be indented: always for a dev agent, else on
/// `?pretty`.
pub fn pretty(dev: bool, params: &Params) -> bool {
    dev || params.has("pretty")
}

/// What a read reports about the state it answered from.
#[derive(Clone, Copy, Debug)]
pub struct QueryMeta {
    pub index: u64,
    pub consistency: Consistency,
    pub known_leader: bool,
    /// Milliseconds since this server heard from the leader.
    pub last_contact_ms: u64,
}

impl QueryMeta {
    /// The meta of a read `agent` answered at `index`.
    pub fn new(agent: &agent::Agent, index: u64, consistency: Consistency) -> QueryMeta {
        QueryMeta {
            index,
            consistency,
            known_leader: agent.known_leader(),
            last_contact_ms: u64::try_from(agent.last_contact().as_millis()).unwrap_or(u64::MAX),
        }
    }

    /// Adds Consul's query headers. An index of 0 is reported as 1: a
    /// blocking client that saw 0 would spin.
    pub fn apply(&self, headers: &mut HeaderMap) {
        headers.insert("X-Consul-Index", HeaderValue::from(self.index.max(1)));
        self.apply_leadership(headers);
        headers.insert(
            "X-Consul-Effective-Consistency",
            HeaderValue::from_static(self.consistency.as_str()),
        );
    }

    /// `X-Consul-KnownLeader` and `X-Consul-LastContact` alone.
    pub fn apply_leadership(&self, headers: &mut HeaderMap) {
        headers.insert(
            "X-Consul-Knownleader",
            HeaderValue::from_static(if self.known_leader { "true" } else { "false" }),
        );
        headers.insert(
            "X-Consul-Lastcontact",
            HeaderValue::from(self.last_contact_ms),
        );
    }

    pub fn on(self, mut response: Response) -> Response {
        self.apply(response.headers_mut());
        response
    }
}

/// Refuses methods an endpoint does not serve, as Consul does: `OPTIONS`
/// lists them, anything else is a 405 naming the method.
pub fn refuse_method(method: &Method, allowed: &[&str]) -> Option<Response> {
    if allowed.contains(&method.as_str()) {
        return None;
    }
    let allow = format!("OPTIONS,{}", allowed.join(","));
    let mut response = if method == Method::OPTIONS {
        StatusCode::OK.into_response()
    } else {
        HttpError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("method {method} not allowed"),
        )
        .into_response()
    };
    if let Ok(value) = HeaderValue::from_str(&allow) {
        response.headers_mut().insert(header::ALLOW, value);
    }
    Some(response)
}

/// A 200 with no body (what `/v1/agent/leave` answers).
pub fn empty_ok() -> Response {
    Response::new(Body::empty())
}

/// Paths no endpoint serves, with Consul's hints.
pub async fn not_found(uri: Uri) -> Response {
    let path = uri.path();
    if path == "/" {
        return (
            StatusCode::OK,
            "Consul Agent: UI disabled. To enable, set ui_config.enabled=true in the agent configuration and restart.",
        )
            .into_response();
    }
    let message = if path.contains("/v1/") {
        "Invalid URL path: not a recognized HTTP API endpoint\n"
    } else {
        "Invalid URL path: if attempting to use the HTTP API, ensure the path starts with '/v1/'\n"
    };
    HttpError::new(StatusCode::NOT_FOUND, message).into_response()
}
