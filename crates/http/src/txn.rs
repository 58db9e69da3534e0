//! `/v1/txn`: atomic KV transactions, with Consul's limits and messages.

use std::sync::Arc;

use agent::Agent;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use state::{Command, KvOp, KvVerb, Outcome, TxnError, TxnOp, TxnOutcome, TxnResult};

use crate::error::HttpError;
use crate::kv::{content_length, DirEntryJson};
use crate::params::Params;
use crate::reply;
use agent::decode;

/// The most operations one transaction may carry.
pub const MAX_TXN_OPS: usize = 128;

const LIMIT_HINT: &str =
    "See https://www.consul.io/docs/agent/config/config-files#txn_max_req_len.";

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct OpBody {
    #[serde(rename = "KV")]
    kv: Option<KvBody>,
    node: Option<Value>,
    service: Option<Value>,
    check: Option<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct KvBody {
    #[serde(default)]
    verb: String,
    #[serde(default)]
    key: String,
    value: Option<String>,
    #[serde(default)]
    flags: u64,
    #[serde(default)]
    index: u64,
    #[serde(default)]
    session: String,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ErrorJson<'a> {
    op_index: usize,
    what: &'a str,
}

#[derive(Serialize)]
struct ResultJson<'a> {
    #[serde(rename = "KV")]
    kv: DirEntryJson<'a>,
}

pub async fn endpoint(
    State(agent): State<Arc<Agent>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if let Some(refused) = reply::refuse_method(&method, &["PUT"]) {
        return refused;
    }
    let params = Params::parse(uri.query());
    transact(&agent, &params, &headers, body)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

async fn transact(
    agent: &Agent,
    params: &Params,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, HttpError> {
    let config = agent.config();
    let max = config.txn_max_req_len.max(config.kv_max_value_size);
    if let Some(length) = content_length(headers) {
        if length > max {
            return Err(HttpError::too_large(format!(
                "Request body({length} bytes) too large, max size: {max} bytes. {LIMIT_HINT}"
            )));
        }
    }
    let bytes = axum::body::to_bytes(body, usize::try_from(max).unwrap_or(usize::MAX))
        .await
        .map_err(|_| {
            HttpError::too_large(format!(
                "Request body too large, max size: {max} bytes. {LIMIT_HINT}"
            ))
        })?;
    let bodies: Vec<OpBody> = decode::from_slice(&bytes)
        .map_err(|e| HttpError::bad_request(format!("Failed to parse body: {e}")))?;
    if bodies.len() > MAX_TXN_OPS {
        return Err(HttpError::too_large(format!(
            "Transaction contains too many operations ({} > {MAX_TXN_OPS})",
            bodies.len()
        )));
    }
    let pretty = reply::pretty(config.dev, params);
    let (ops, refused) = convert(bodies, config.kv_max_value_size)?;
    if !refused.is_empty() {
        return Ok(conflict(&refused, pretty));
    }
    if ops.iter().all(|TxnOp::Kv(op)| op.verb.is_read()) {
        let options = crate::params::QueryOptions::parse(params)?;
        let consistency = options.consistency;
        agent
            .read_barrier(options.read_consistency())
            .await
            .map_err(|e| HttpError::internal(e.to_string()))?;
        let (index, outcome) = agent.store().read_txn(&ops);
        let meta = crate::reply::QueryMeta::new(agent, index, consistency);
        let mut response = match outcome {
            TxnOutcome::Committed(results) => {
                let results: Vec<ResultJson> = results.iter().map(result_json).collect();
                let body = serde_json::json!({
                    "Results": results,
                    "Errors": null,
                    "Index": index,
                    "LastContact": meta.last_contact_ms,
                    "KnownLeader": meta.known_leader,
                    "ConsistencyLevel": consistency.as_str(),
                });
                reply::json(StatusCode::OK, &body, pretty)
            }
            TxnOutcome::Aborted(errors) => conflict(&errors, pretty),
        };
        meta.apply_leadership(response.headers_mut());
        return Ok(response);
    }
    match agent.apply(Command::Txn(ops)).await {
        Ok((_, Outcome::Txn(TxnOutcome::Committed(results)))) => {
            let results: Vec<ResultJson> = results.iter().map(result_json).collect();
            let body = serde_json::json!({ "Results": results, "Errors": null });
            Ok(reply::json(StatusCode::OK, &body, pretty))
        }
        Ok((_, Outcome::Txn(TxnOutcome::Aborted(errors)))) => Ok(conflict(&errors, pretty)),
        Ok((_, other)) => Err(HttpError::internal(format!(
            "unexpected outcome of a transaction: {other:?}"
        ))),
        Err(error) => Err(HttpError::internal(error.to_string())),
    }
}

fn result_json(result: &TxnResult) -> ResultJson<'_> {
    match result {
        TxnResult::Kv(entry) => ResultJson {
            kv: DirEntryJson::from(&**entry),
        },
    }
}

fn conflict(errors: &[TxnError], pretty: bool) -> Response {
    let errors: Vec<ErrorJson> = errors
        .iter()
        .map(|e| ErrorJson {
            op_index: e.op_index,
            what: &e.what,
        })
        .collect();
    let body = serde_json::json!({ "Results": null, "Errors": errors });
    reply::json(StatusCode::CONFLICT, &body, pretty)
}

/// Turns the request's operations into state operations. Size violations
/// fail the request (413); operations the store cannot run are reported per
/// operation, as Consul's pre-checks are, and nothing is applied.
fn convert(bodies: Vec<OpBody>, max_value: u64) -> Result<(Vec<TxnOp>, Vec<TxnError>), HttpError> {
    let mut ops = Vec::with_capacity(bodies.len());
    let mut refused = Vec::new();
    for (op_index, body) in bodies.into_iter().enumerate() {
        let mut refuse = |what: String| refused.push(TxnError { op_index, what });
        let Some(kv) = body.kv else {
            if body.node.is_some() || body.service.is_some() || body.check.is_some() {
                refuse("catalog operations are not supported by this agent yet".to_owned());
            } else {
                refuse("no operation specified".to_owned());
            }
            continue;
        };
        let value = match kv.value.as_deref() {
            None => Vec::new(),
            Some(encoded) => base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .map_err(|e| HttpError::bad_request(format!("Failed to parse body: {e}")))?,
        };
        if value.len() as u64 > max_value {
            return Err(HttpError::too_large(format!(
                "Value for key {:?} is too large ({} > {max_value} bytes)",
                kv.key,
                value.len()
            )));
        }
        let Some(verb) = KvVerb::parse(&kv.verb) else {
            refuse(format!("unknown KV verb {:?}", kv.verb));
            continue;
        };
        if kv.key.is_empty() && verb != KvVerb::DeleteTree {
            refuse("Must provide key".to_owned());
            continue;
        }
        ops.push(TxnOp::Kv(KvOp {
            verb,
            key: kv.key,
            value,
            flags: kv.flags,
            index: kv.index,
            session: kv.session,
        }));
    }
    Ok((ops, refused))
}
