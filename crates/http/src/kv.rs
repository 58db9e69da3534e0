//! `/v1/kv/<key>`: get, list, put and delete, with Consul's index rules.

use std::sync::Arc;

use agent::Agent;
use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde::Serialize;
use state::{Command, DirEntry, KvOp, KvVerb, Outcome};

use crate::blocking;
use crate::error::HttpError;
use crate::params::{Params, QueryOptions};
use crate::reply::{self, QueryMeta};

const METHODS: &[&str] = &["GET", "PUT", "DELETE"];

/// A `DirEntry` in Consul's JSON shape and field order.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DirEntryJson<'a> {
    lock_index: u64,
    key: &'a str,
    flags: u64,
    value: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    session: Option<&'a str>,
    create_index: u64,
    modify_index: u64,
}

impl<'a> From<&'a DirEntry> for DirEntryJson<'a> {
    fn from(e: &'a DirEntry) -> Self {
        DirEntryJson {
            lock_index: e.lock_index,
            key: &e.key,
            flags: e.flags,
            value: (!e.value.is_empty())
                .then(|| base64::engine::general_purpose::STANDARD.encode(&e.value)),
            session: e.session.as_deref(),
            create_index: e.create_index,
            modify_index: e.modify_index,
        }
    }
}

pub async fn endpoint(
    State(agent): State<Arc<Agent>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if let Some(refused) = reply::refuse_method(&method, METHODS) {
        return refused;
    }
    let key = key_of(&uri);
    let params = Params::parse(uri.query());
    let result = match method {
        Method::GET => get(&agent, &key, &params).await,
        Method::PUT => put(&agent, &key, &params, &headers, body).await,
        _ => delete(&agent, &key, &params).await,
    };
    result.unwrap_or_else(IntoResponse::into_response)
}

/// The key is the decoded path after `/v1/kv/`.
fn key_of(uri: &Uri) -> String {
    let raw = uri.path().strip_prefix("/v1/kv/").unwrap_or("");
    percent_encoding::percent_decode_str(raw)
        .decode_utf8_lossy()
        .into_owned()
}

fn missing_key() -> HttpError {
    HttpError::bad_request("Missing key name")
}

async fn get(agent: &Agent, key: &str, params: &Params) -> Result<Response, HttpError> {
    let options = QueryOptions::parse(params)?;
    let pretty = reply::pretty(agent.config().dev, params);
    let meta = |index| QueryMeta::new(agent, index, options.consistency);
    if params.has("keys") {
        let separator = params
            .get("separator")
            .or_else(|| params.get("seperator"))
            .map(str::to_owned);
        let (index, keys) = blocking::run(agent, &options, |snap, ws| {
            snap.kv_keys(key, separator.as_deref(), ws)
        })
        .await?;
        if keys.is_empty() && !key.is_empty() {
            return Ok(meta(index).on(StatusCode::NOT_FOUND.into_response()));
        }
        return Ok(meta(index).on(reply::json(StatusCode::OK, &keys, pretty)));
    }
    if params.has("recurse") {
        let (index, entries) =
            blocking::run(agent, &options, |snap, ws| snap.kv_list(key, ws)).await?;
        if entries.is_empty() {
            return Ok(meta(index).on(StatusCode::NOT_FOUND.into_response()));
        }
        let json: Vec<DirEntryJson> = entries.iter().map(|e| DirEntryJson::from(&**e)).collect();
        return Ok(meta(index).on(reply::json(StatusCode::OK, &json, pretty)));
    }
    if key.is_empty() {
        return Err(missing_key());
    }
    let (index, entry) = blocking::run(agent, &options, |snap, ws| {
        let (table_index, entry) = snap.kv_get(key, ws);
        let index = entry.as_ref().map_or(table_index, |e| e.modify_index);
        (index, entry)
    })
    .await?;
    let Some(entry) = entry else {
        return Ok(meta(index).on(StatusCode::NOT_FOUND.into_response()));
    };
    if params.has("raw") {
        let mut response = entry.value.clone().into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        headers.insert(
            "X-Content-Type-Options",
            HeaderValue::from_static("nosniff"),
        );
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("sandbox"),
        );
        return Ok(meta(index).on(response));
    }
    let json = [DirEntryJson::from(&*entry)];
    Ok(meta(index).on(reply::json(StatusCode::OK, &json, pretty)))
}

/// Consul refuses a write that names more than one of these at once.
fn conflicting(params: &Params, names: &[&str]) -> Result<(), HttpError> {
    if names.iter().filter(|n| params.has(n)).count() > 1 {
        return Err(HttpError::bad_request(format!(
            "Conflicting flags: {}",
            params.encode_sorted()
        )));
    }
    Ok(())
}

async fn put(
    agent: &Agent,
    key: &str,
    params: &Params,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, HttpError> {
    QueryOptions::parse(params)?;
    if key.is_empty() {
        return Err(missing_key());
    }
    conflicting(params, &["cas", "acquire", "release"])?;
    let flags = params.parse_u64("flags")?.unwrap_or(0);
    let cas = params.parse_u64("cas")?;
    let max = agent.config().kv_max_value_size;
    let too_large = |size: u64| {
        HttpError::too_large(format!(
            "Request body({size} bytes) too large, max size: {max} bytes. See https://developer.hashicorp.com/docs/agent/config/config-files#kv_max_value_size."
        ))
    };
    if let Some(length) = content_length(headers) {
        if length > max {
            return Err(too_large(length));
        }
    }
    let value = axum::body::to_bytes(body, usize::try_from(max).unwrap_or(usize::MAX))
        .await
        .map_err(|_| too_large(max + 1))?;
    let pretty = reply::pretty(agent.config().dev, params);
    let (verb, session) = if let Some(session) = params.get("acquire") {
        (KvVerb::Lock, session)
    } else if let Some(session) = params.get("release") {
        (KvVerb::Unlock, session)
    } else if cas.is_some() {
        (KvVerb::Cas, "")
    } else {
        (KvVerb::Set, "")
    };
    let op = KvOp {
        verb,
        key: key.to_owned(),
        value: value.to_vec(),
        flags,
        index: cas.unwrap_or(0),
        session: session.to_owned(),
    };
    write(agent, op, pretty).await
}

async fn delete(agent: &Agent, key: &str, params: &Params) -> Result<Response, HttpError> {
    QueryOptions::parse(params)?;
    conflicting(params, &["recurse", "cas"])?;
    let recurse = params.has("recurse");
    if !recurse && key.is_empty() {
        return Err(missing_key());
    }
    let cas = params.parse_u64("cas")?;
    let verb = match (recurse, cas) {
        (true, _) => KvVerb::DeleteTree,
        (false, Some(_)) => KvVerb::DeleteCas,
        (false, None) => KvVerb::Delete,
    };
    let op = KvOp {
        index: cas.unwrap_or(0),
        ..KvOp::new(verb, key)
    };
    write(agent, op, reply::pretty(agent.config().dev, params)).await
}

async fn write(agent: &Agent, op: KvOp, pretty: bool) -> Result<Response, HttpError> {
    match agent.apply(Command::Kv(op)).await {
        Ok((_, Outcome::Kv(done))) => Ok(reply::json(StatusCode::OK, &done, pretty)),
        Ok((_, Outcome::KvRefused(why))) => Err(HttpError::internal(why)),
        Ok((_, other)) => Err(HttpError::internal(format!(
            "unexpected outcome of a KV write: {other:?}"
        ))),
        Err(error) => Err(HttpError::internal(error.to_string())),
    }
}

pub fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}
