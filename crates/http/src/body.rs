//! Request bodies: read with a bound, decoded leniently with Consul's
//! error text. (KV and txn bodies have limits and messages of their own.)

use axum::body::{Body, Bytes};
use serde::de::DeserializeOwned;

use crate::error::HttpError;

/// The largest JSON body a definition endpoint reads.
pub const MAX_DEFINITION_BODY: usize = 1 << 20;

/// Reads a whole body, refusing one larger than `max` with a 413.
pub async fn read(body: Body, max: usize) -> Result<Bytes, HttpError> {
    axum::body::to_bytes(body, max)
        .await
        .map_err(|_| HttpError::too_large("Request body too large"))
}

/// Decodes JSON as Consul's agent does (any case, snake_case aliases).
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, HttpError> {
    agent::decode::from_slice(bytes).map_err(decode_failed)
}

/// Decodes an already-parsed JSON tree the same way.
pub fn decode_value<T: DeserializeOwned>(tree: serde_json::Value) -> Result<T, HttpError> {
    agent::decode::from_value(tree).map_err(decode_failed)
}

fn decode_failed(error: serde_json::Error) -> HttpError {
    HttpError::bad_request(format!("Request decode failed: {error}"))
}
