//! The API across the client/server split, as Consul draws it: a client
//! agent answers `/v1/agent/*` and `/v1/event/*` itself (its own services,
//! checks and gossip pool) and hands every other call to a server, which
//! answers it with its own API — blocking queries, consistency modes and
//! `X-Consul-*` headers included. An event for another datacenter goes to
//! a server too, which sends it there.

use std::sync::Arc;

use agent::Agent;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use consensus::{ApiReply, ApiRequest, ByteText};

use crate::error::HttpError;

/// Whether a client agent sends `path` to a server.
///
/// Keyring operations stay on the agent that received them: Consul's
/// client forwards them to a server, which runs the key query on the LAN
/// pool (and the WAN pool), but within one datacenter a key query asked
/// from any member reaches the same members and sums up the same answers.
pub(crate) fn goes_to_server(path: &str) -> bool {
    path.starts_with("/v1/")
        && !path.starts_with("/v1/agent/")
        && !path.starts_with("/v1/event/")
        && path != "/v1/operator/keyring"
}

/// Headers that describe one hop, not the message.
pub(crate) fn per_hop(name: &str) -> bool {
    matches!(
        name,
        "connection" | "content-length" | "transfer-encoding" | "keep-alive" | "upgrade" | "host"
    )
}

/// `near=_agent` means the node asking: the client, not the server that
/// answers for it.
fn near_this_node(uri: &str, node: &str) -> String {
    let Some((path, query)) = uri.split_once('?') else {
        return uri.to_owned();
    };
    let query: Vec<String> = query
        .split('&')
        .map(|pair| match pair {
            "near=_agent" => format!("near={node}"),
            other => other.to_owned(),
        })
        .collect();
    format!("{path}?{}", query.join("&"))
}

/// A session made through a client belongs to the client's node unless
/// the body names another (the server would otherwise fill in its own).
fn session_on_this_node(path: &str, body: Vec<u8>, node: &str) -> Vec<u8> {
    if path != "/v1/session/create" {
        return body;
    }
    let mut fields = if body.iter().all(u8::is_ascii_whitespace) {
        serde_json::Map::new()
    } else {
        match serde_json::from_slice::<serde_json::Value>(&body) {
            Ok(serde_json::Value::Object(fields)) => fields,
            // Let the server word the error.
            _ => return body,
        }
    };
    if fields.keys().any(|k| k.eq_ignore_ascii_case("node")) {
        return body;
    }
    fields.insert("Node".to_owned(), node.into());
    serde_json::to_vec(&fields).unwrap_or(body)
}

/// Middleware: on a client agent, forwards what belongs to the servers.
pub async fn to_server(State(agent): State<Arc<Agent>>, request: Request, next: Next) -> Response {
    let Some(router) = agent.router() else {
        return next.run(request).await;
    };
    let uri = request.uri();
    let elsewhere =
        crate::remote_dc::fires_elsewhere(uri.path(), uri.query(), &agent.config().datacenter);
    if !goes_to_server(uri.path()) && !elsewhere {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    // The HTTP server already refused bodies beyond the agent's limits.
    let body = match axum::body::to_bytes(body, usize::MAX).await {
        Ok(body) => body,
        Err(error) => return HttpError::bad_request(error.to_string()).into_response(),
    };
    let uri = parts
        .uri
        .path_and_query()
        .map_or_else(|| parts.uri.path().to_owned(), |pq| pq.as_str().to_owned());
    let node = &agent.config().node_name;
    let body = session_on_this_node(parts.uri.path(), body.to_vec(), node);
    let request = ApiRequest {
        method: parts.method.as_str().to_owned(),
        uri: near_this_node(&uri, node),
        headers: parts
            .headers
            .iter()
            .filter(|(name, _)| !per_hop(name.as_str()))
            .map(|(name, value)| {
                (
                    name.as_str().to_owned(),
                    ByteText(value.as_bytes().to_vec()),
                )
            })
            .collect(),
        body,
    };
    match router.api(&request).await {
        Ok(reply) => into_response(reply),
        Err(error) => HttpError::internal(error.to_string()).into_response(),
    }
}

pub(crate) fn into_response(reply: ApiReply) -> Response {
    let mut response = Response::new(Body::from(reply.body));
    *response.status_mut() =
        StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let headers = response.headers_mut();
    for (name, value) in reply.headers {
        if per_hop(&name) {
            continue;
        }
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_bytes(&value.0),
        ) {
            headers.append(name, value);
        }
    }
    response
}

/// A server's own API, for the calls its client agents forward.
#[derive(Clone)]
pub struct ServerApi(Router);

impl ServerApi {
    pub fn new(agent: Arc<Agent>) -> ServerApi {
        ServerApi(crate::router(agent))
    }

    /// Answers a forwarded call in process, as if it came over HTTP.
    pub async fn answer(&self, request: ApiRequest) -> ApiReply {
        answer(&self.0, request).await
    }
}

async fn answer(router: &Router, request: ApiRequest) -> ApiReply {
    let mut router = router.clone();
    let mut builder = axum::http::Request::builder()
        .method(request.method.as_str())
        .uri(request.uri.as_str());
    for (name, value) in &request.headers {
        builder = builder.header(name.as_str(), value.0.as_slice());
    }
    let request = match builder.body(Body::from(request.body)) {
        Ok(request) => request,
        Err(error) => return text_reply(StatusCode::BAD_REQUEST, &error.to_string()),
    };
    let response = tower_service::Service::call(&mut router, request)
        .await
        .unwrap_or_else(|never| match never {});
    let (parts, body) = response.into_parts();
    let body = match axum::body::to_bytes(body, usize::MAX).await {
        Ok(body) => body.to_vec(),
        Err(error) => return text_reply(StatusCode::INTERNAL_SERVER_ERROR, &error.to_string()),
    };
    ApiReply {
        status: parts.status.as_u16(),
        headers: parts
            .headers
            .iter()
            .map(|(name, value)| {
                (
                    name.as_str().to_owned(),
                    ByteText(value.as_bytes().to_vec()),
                )
            })
            .collect(),
        body,
    }
}

fn text_reply(status: StatusCode, text: &str) -> ApiReply {
    ApiReply {
        status: status.as_u16(),
        headers: Vec::new(),
        body: text.as_bytes().to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_and_event_calls_stay_on_the_client() {
        assert!(goes_to_server("/v1/kv/a"));
        assert!(goes_to_server("/v1/health/service/web"));
        assert!(goes_to_server("/v1/status/leader"));
        assert!(!goes_to_server("/v1/agent/self"));
        assert!(!goes_to_server("/v1/event/list"));
        assert!(!goes_to_server("/v1/operator/keyring"));
        assert!(goes_to_server("/v1/operator/raft/configuration"));
        assert!(!goes_to_server("/ui/"));
    }

    #[test]
    fn sessions_made_through_a_client_default_to_its_node() {
        let made = |body: &str| {
            let out = session_on_this_node("/v1/session/create", body.as_bytes().to_vec(), "c1");
            serde_json::from_slice::<serde_json::Value>(&out).ok()
        };
        assert_eq!(made("").unwrap()["Node"], "c1");
        assert_eq!(made(r#"{"TTL": "10s"}"#).unwrap()["Node"], "c1");
        assert_eq!(made(r#"{"node": "other"}"#).unwrap()["node"], "other");
        assert!(made("{bad").is_none());
        let kv = session_on_this_node("/v1/kv/a", b"x".to_vec(), "c1");
        assert_eq!(kv, b"x");
    }

    #[test]
    fn near_agent_names_the_client() {
        assert_eq!(
            near_this_node("/v1/catalog/nodes?near=_agent&stale", "c1"),
            "/v1/catalog/nodes?near=c1&stale"
        );
        assert_eq!(
            near_this_node("/v1/catalog/nodes", "c1"),
            "/v1/catalog/nodes"
        );
        assert_eq!(
            near_this_node("/v1/catalog/nodes?near=web", "c1"),
            "/v1/catalog/nodes?near=web"
        );
    }
}
