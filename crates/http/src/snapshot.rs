//! `/v1/snapshot`: GET saves the state as Consul's archive (gzip'd tar of
//! `meta.json`, `state.bin`, `SHA256SUMS`); PUT restores one on every
//! server. The archive format and the restore itself are in
//! [`agent::snapshot`].

use std::sync::Arc;

use agent::snapshot::{RestoreError, MAX_RESTORE_ARCHIVE};
use agent::Agent;
use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

use crate::error::HttpError;
use crate::params::{check_datacenter, Params, QueryOptions};
use crate::reply::{self, QueryMeta};

/// The largest body `PUT /v1/snapshot` takes (the HTTP server reads up to
/// this much for that route only).
pub const MAX_BODY: usize = MAX_RESTORE_ARCHIVE;

pub async fn endpoint(
    State(agent): State<Arc<Agent>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if let Some(refused) = reply::refuse_method(&method, &["GET", "PUT"]) {
        return refused;
    }
    let params = Params::parse(uri.query());
    let result = match check_datacenter(&agent, &params) {
        Err(e) => Err(e),
        Ok(()) if method == Method::GET => save(&agent, &params).await,
        Ok(()) => restore(&agent, &headers, body).await,
    };
    result.unwrap_or_else(IntoResponse::into_response)
}

async fn save(agent: &Agent, params: &Params) -> Result<Response, HttpError> {
    let options = QueryOptions::parse(params)?;
    let saved = agent
        .snapshot_save(options.read_consistency())
        .await
        .map_err(|e| HttpError::internal(e.to_string()))?;
    let mut response = (StatusCode::OK, saved.archive).into_response();
    // What Go's content sniffing makes of a gzip stream, as Consul sends it.
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-gzip"),
    );
    Ok(QueryMeta::new(agent, saved.index, options.consistency).on(response))
}

async fn restore(agent: &Agent, headers: &HeaderMap, body: Body) -> Result<Response, HttpError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let too_large = || {
        HttpError::too_large(format!(
            "Snapshot too large: a restore takes an archive of at most {MAX_BODY} bytes"
        ))
    };
    if declared.is_some_and(|length| length > MAX_BODY as u64) {
        return Err(too_large());
    }
    let archive = axum::body::to_bytes(body, MAX_BODY)
        .await
        .map_err(|_| too_large())?;
    match agent.snapshot_restore(archive.to_vec()).await {
        Ok(index) => {
            tracing::info!(index, "restored a snapshot");
            Ok(reply::empty_ok())
        }
        Err(RestoreError::Archive(e @ agent::snapshot::ArchiveError::TooLarge { .. })) => {
            Err(HttpError::too_large(e.to_string()))
        }
        Err(e) => Err(HttpError::internal(e.to_string())),
    }
}
