//! `?dc=<other>`: a call meant for another datacenter. A server sends it,
//! unchanged, to an alive server of that datacenter found in the WAN pool,
//! which answers with its own API (the datacenter being its own there).
//! A client agent has already sent the call to a server of its own
//! datacenter, which forwards it on.
//!
//! An event fired with `?dc=<other>` goes the same way, to be gossiped in
//! that datacenter's LAN pool (Consul forwards its `Internal.EventFire`
//! RPC there); an event list never leaves the agent asked, `dc` or not.

use std::sync::Arc;

use agent::federation::FederationError;
use agent::Agent;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use consensus::{ApiRequest, ByteText};

use crate::error::HttpError;
use crate::forward::{goes_to_server, into_response, per_hop};
use crate::params::Params;

/// Set on a call one server forwards to another datacenter: the server
/// there answers it or refuses it, and never sends it on again.
const FORWARDED_FROM_DC: &str = "x-praetor-forwarded-dc";

/// Calls a datacenter answers for itself whatever `dc` says (Consul lists
/// datacenters from the server asked).
fn answered_here(path: &str) -> bool {
    matches!(
        path,
        "/v1/catalog/datacenters" | "/v1/coordinate/datacenters"
    )
}

/// Where events are fired.
const EVENT_FIRE: &str = "/v1/event/fire/";

/// Whether `path` with `query` fires an event in another datacenter than
/// `local`: a call the agent asked does not answer itself.
pub(crate) fn fires_elsewhere(path: &str, query: Option<&str>, local: &str) -> bool {
    path.starts_with(EVENT_FIRE) && remote_datacenter(query, local).is_some()
}

/// The datacenter `dc=` names, when it is not this one.
fn remote_datacenter(query: Option<&str>, local: &str) -> Option<String> {
    let params = Params::parse(query);
    params
        .get("dc")
        .filter(|dc| !dc.is_empty() && !dc.eq_ignore_ascii_case(local))
        .map(str::to_owned)
}

/// Middleware: on a server, sends calls for another datacenter there.
pub async fn to_datacenter(
    State(agent): State<Arc<Agent>>,
    request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path();
    if !(goes_to_server(path) || path.starts_with(EVENT_FIRE)) || answered_here(path) {
        return next.run(request).await;
    }
    let Some(datacenter) = remote_datacenter(request.uri().query(), &agent.config().datacenter)
    else {
        return next.run(request).await;
    };
    // A server in no WAN pool (`ports.serf_wan = -1`) knows no other
    // datacenter; a client agent never gets here, it sent the call on.
    let Some(federation) = agent.federation() else {
        return HttpError::internal(FederationError::NoPath.to_string()).into_response();
    };
    if request.headers().contains_key(FORWARDED_FROM_DC) {
        // Sent here for a datacenter this is not: going on could loop.
        return HttpError::internal(FederationError::NoPath.to_string()).into_response();
    }
    let (parts, body) = request.into_parts();
    // The HTTP server already refused bodies beyond the agent's limits.
    let body = match axum::body::to_bytes(body, usize::MAX).await {
        Ok(body) => body.to_vec(),
        Err(error) => return HttpError::bad_request(error.to_string()).into_response(),
    };
    let uri = parts
        .uri
        .path_and_query()
        .map_or_else(|| parts.uri.path().to_owned(), |pq| pq.as_str().to_owned());
    let mut headers: Vec<(String, ByteText)> = parts
        .headers
        .iter()
        .filter(|(name, _)| !per_hop(name.as_str()))
        .map(|(name, value)| {
            (
                name.as_str().to_owned(),
                ByteText(value.as_bytes().to_vec()),
            )
        })
        .collect();
    headers.push((
        FORWARDED_FROM_DC.to_owned(),
        ByteText(agent.config().datacenter.as_bytes().to_vec()),
    ));
    let request = ApiRequest {
        method: parts.method.as_str().to_owned(),
        uri,
        headers,
        body,
    };
    match federation.api(&datacenter, &request).await {
        Ok(reply) => into_response(reply),
        Err(error) => HttpError::internal(error.to_string()).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_another_datacenter_is_remote() {
        assert_eq!(
            remote_datacenter(Some("dc=dc2&stale"), "dc1").as_deref(),
            Some("dc2")
        );
        assert_eq!(remote_datacenter(Some("dc=DC1"), "dc1"), None);
        assert_eq!(remote_datacenter(Some("dc="), "dc1"), None);
        assert_eq!(remote_datacenter(Some("recurse"), "dc1"), None);
        assert_eq!(remote_datacenter(None, "dc1"), None);
    }

    #[test]
    fn only_events_fired_for_another_datacenter_leave() {
        let local = "dc1";
        assert!(fires_elsewhere(
            "/v1/event/fire/deploy",
            Some("dc=dc2"),
            local
        ));
        assert!(!fires_elsewhere(
            "/v1/event/fire/deploy",
            Some("dc=dc1"),
            local
        ));
        assert!(!fires_elsewhere("/v1/event/fire/deploy", None, local));
        assert!(!fires_elsewhere("/v1/event/list", Some("dc=dc2"), local));
    }

    #[test]
    fn datacenter_lists_are_answered_where_asked() {
        assert!(answered_here("/v1/catalog/datacenters"));
        assert!(!answered_here("/v1/catalog/services"));
    }
}
