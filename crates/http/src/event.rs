//! `/v1/event/fire/:name` and `/v1/event/list`.

use std::sync::Arc;

use agent::events::{event_index, FireRequest, UserEvent};
use agent::Agent;
use axum::body::Body;
use axum::extract::State;
use axum::http::{Method, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde::Serialize;

use crate::catalog::tail;
use crate::error::HttpError;
use crate::params::{Params, QueryOptions};
use crate::reply::{self, QueryMeta};

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct UserEventJson<'a> {
    #[serde(rename = "ID")]
    id: &'a str,
    name: &'a str,
    payload: Option<String>,
    node_filter: &'a str,
    service_filter: &'a str,
    tag_filter: &'a str,
    version: u8,
    #[serde(rename = "LTime")]
    ltime: u64,
}

impl<'a> From<&'a UserEvent> for UserEventJson<'a> {
    fn from(e: &'a UserEvent) -> Self {
        UserEventJson {
            id: &e.id,
            name: &e.name,
            payload: (!e.payload.is_empty())
                .then(|| base64::engine::general_purpose::STANDARD.encode(&e.payload)),
            node_filter: &e.node_filter,
            service_filter: &e.service_filter,
            tag_filter: &e.tag_filter,
            version: e.version,
            ltime: e.ltime,
        }
    }
}

pub async fn fire(
    State(agent): State<Arc<Agent>>,
    method: Method,
    uri: Uri,
    body: Body,
) -> Response {
    if let Some(refused) = reply::refuse_method(&method, &["PUT"]) {
        return refused;
    }
    let params = Params::parse(uri.query());
    let name = tail(&uri, "/v1/event/fire/");
    let result = async {
        if name.is_empty() {
            return Err(HttpError::bad_request("Missing name"));
        }
        crate::params::check_datacenter(&agent, &params)?;
        let payload = crate::body::read(body, 64 * 1024).await?;
        let request = FireRequest {
            name,
            payload: payload.to_vec(),
            node_filter: params.get("node").unwrap_or_default().to_owned(),
            service_filter: params.get("service").unwrap_or_default().to_owned(),
            tag_filter: params.get("tag").unwrap_or_default().to_owned(),
        };
        let event = agent
            .fire_event(request)
            .await
            .map_err(|e| HttpError::internal(e.0))?;
        Ok(reply::ok(
            &UserEventJson::from(&event),
            reply::pretty(agent.config().dev, &params),
        ))
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

/// The event list blocks on its own index (derived from the newest event's
/// ID) rather than the state store's: events never touch the store.
pub async fn list(State(agent): State<Arc<Agent>>, method: Method, uri: Uri) -> Response {
    if let Some(refused) = reply::refuse_method(&method, &["GET"]) {
        return refused;
    }
    let params = Params::parse(uri.query());
    let options = match QueryOptions::parse(&params) {
        Ok(o) => o,
        Err(e) => return e.into_response(),
    };
    let name = params
        .get("name")
        .filter(|n| !n.is_empty())
        .map(str::to_owned);
    let mut arrivals = agent.events().subscribe();
    let deadline = tokio::time::Instant::now() + options.wait;
    let events = loop {
        arrivals.borrow_and_update();
        let events = agent.events().list(name.as_deref());
        if options.min_index == 0 || event_index(&events) != options.min_index {
            break events;
        }
        tokio::select! {
            changed = arrivals.changed() => if changed.is_err() { break events },
            _ = tokio::time::sleep_until(deadline) => break events,
            _ = agent.stopping() => break events,
        }
    };
    let json: Vec<UserEventJson> = events.iter().map(UserEventJson::from).collect();
    let meta = QueryMeta::new(&agent, event_index(&events), options.consistency);
    meta.on(reply::ok(&json, reply::pretty(agent.config().dev, &params)))
}
