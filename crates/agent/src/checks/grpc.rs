//! gRPC checks: the standard `grpc.health.v1.Health/Check` call over HTTP/2,
//! with its two one-field protobuf messages encoded by hand (no protoc, no
//! tonic: see DESIGN.md "Avoid").

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::HeaderValue;
use hyper::{HeaderMap, Method, Request, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::time::Instant;

use super::dial::{open, TlsTarget};
use super::scheduler::{AbortOnDrop, ProbeResult};
use super::tls::Alpn;
use super::CheckStatus;

const HEALTH_CHECK_PATH: &str = "/grpc.health.v1.Health/Check";

/// `HealthCheckResponse.ServingStatus.SERVING`.
const SERVING: u64 = 1;

/// A gRPC check (`GRPC`, `GRPCUseTLS`, `TLSSkipVerify`, `TLSServerName`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrpcCheck {
    /// `host:port`, optionally followed by `/service` to ask about one
    /// service instead of the whole server.
    pub target: String,
    pub use_tls: bool,
    pub tls_skip_verify: bool,
    pub tls_server_name: Option<String>,
    pub interval: Duration,
    /// Covers connecting and the call (Consul's default 10s).
    pub timeout: Duration,
}

impl GrpcCheck {
    /// One probe: passing with `gRPC check <target>: success` when the
    /// server answers SERVING, else critical with grpc-go's error text.
    pub(crate) async fn probe(&self) -> ProbeResult {
        let deadline = Instant::now() + self.timeout;
        match tokio::time::timeout_at(deadline, self.call(deadline)).await {
            Ok(Ok(())) => ProbeResult::new(
                CheckStatus::Passing,
                format!("gRPC check {}: success", self.target),
            ),
            Ok(Err(text)) => ProbeResult::new(CheckStatus::Critical, text),
            Err(_) => ProbeResult::new(
                CheckStatus::Critical,
                "rpc error: code = DeadlineExceeded desc = context deadline exceeded".to_owned(),
            ),
        }
    }

    async fn call(&self, deadline: Instant) -> Result<(), String> {
        let (server, service) = self
            .target
            .split_once('/')
            .unwrap_or((self.target.as_str(), ""));
        let host = server
            .rsplit_once(':')
            .map_or(server, |(host, _)| host)
            .trim_start_matches('[')
            .trim_end_matches(']');
        let tls = self.use_tls.then(|| TlsTarget {
            server_name: self.tls_server_name.as_deref().unwrap_or(host),
            skip_verify: self.tls_skip_verify,
            alpn: Alpn::H2,
        });
        let io = open(server, tls, deadline).await.map_err(|e| {
            rpc_error(
                14,
                &format!("connection error: desc = \"transport: Error while dialing: {e}\""),
            )
        })?;
        let (mut sender, connection) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(io))
                .await
                .map_err(|e| rpc_error(14, &format!("connection error: desc = \"{e}\"")))?;
        let _connection = AbortOnDrop::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "gRPC check connection ended with an error");
            }
        });

        let scheme = if self.use_tls { "https" } else { "http" };
        let request = Request::builder()
            .method(Method::POST)
            .uri(format!("{scheme}://{server}{HEALTH_CHECK_PATH}"))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(Full::new(encode_request(service)))
            .map_err(|e| rpc_error(13, &e.to_string()))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| rpc_error(14, &e.to_string()))?;

        let (head, body) = response.into_parts();
        // A "Trailers-Only" answer carries grpc-status in the headers.
        if let Some(status) = grpc_status(&head.headers) {
            return check_grpc_status(status, &head.headers);
        }
        if head.status != StatusCode::OK {
            return Err(http_status_error(head.status));
        }
        let collected = body
            .collect()
            .await
            .map_err(|e| rpc_error(14, &e.to_string()))?;
        let trailers = collected.trailers().cloned().unwrap_or_default();
        let Some(status) = grpc_status(&trailers) else {
            return Err(rpc_error(
                13,
                "server closed the stream without sending trailers",
            ));
        };
        check_grpc_status(status, &trailers)?;
        let serving = decode_response(&collected.to_bytes()).map_err(|reason| {
            rpc_error(
                13,
                &format!("grpc: failed to unmarshal the received message: {reason}"),
            )
        })?;
        if serving != SERVING {
            return Err(format!(
                "gRPC {} serving status: {}",
                self.target,
                serving_status_name(serving)
            ));
        }
        Ok(())
    }
}

fn grpc_status(headers: &HeaderMap) -> Option<u32> {
    headers
        .get("grpc-status")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse().ok())
}

fn check_grpc_status(status: u32, headers: &HeaderMap) -> Result<(), String> {
    if status == 0 {
        return Ok(());
    }
    let message = headers
        .get("grpc-message")
        .map(HeaderValue::as_bytes)
        .map(percent_decode)
        .unwrap_or_default();
    Err(rpc_error(status, &message))
}

/// grpc-go's `status.Error` text: `rpc error: code = <Code> desc = <text>`.
fn rpc_error(code: u32, description: &str) -> String {
    format!("rpc error: code = {} desc = {description}", code_name(code))
}

/// grpc-go's mapping of a non-200 HTTP answer to a gRPC status.
fn http_status_error(status: StatusCode) -> String {
    let code = match status.as_u16() {
        400 => 13,
        401 => 16,
        403 => 7,
        404 => 12,
        429 | 502 | 503 | 504 => 14,
        _ => 2,
    };
    let reason = status.canonical_reason().unwrap_or("");
    rpc_error(
        code,
        &format!(
            "unexpected HTTP status code received from server: {} ({reason})",
            status.as_u16()
        ),
    )
}

/// `codes.Code.String()` from grpc-go.
fn code_name(code: u32) -> String {
    let name = match code {
        0 => "OK",
        1 => "Canceled",
        2 => "Unknown",
        3 => "InvalidArgument",
        4 => "DeadlineExceeded",
        5 => "NotFound",
        6 => "AlreadyExists",
        7 => "PermissionDenied",
        8 => "ResourceExhausted",
        9 => "FailedPrecondition",
        10 => "Aborted",
        11 => "OutOfRange",
        12 => "Unimplemented",
        13 => "Internal",
        14 => "Unavailable",
        15 => "DataLoss",
        16 => "Unauthenticated",
        other => return format!("Code({other})"),
    };
    name.to_owned()
}

/// `HealthCheckResponse.ServingStatus` names as Go's protobuf prints them;
/// unknown values print as their number.
fn serving_status_name(status: u64) -> String {
    match status {
        0 => "UNKNOWN".to_owned(),
        1 => "SERVING".to_owned(),
        2 => "NOT_SERVING".to_owned(),
        3 => "SERVICE_UNKNOWN".to_owned(),
        other => other.to_string(),
    }
}

/// `grpc-message` is percent-encoded (gRPC over HTTP/2 spec).
fn percent_decode(raw: &[u8]) -> String {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let hex = raw
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (raw[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// One length-prefixed gRPC message holding `HealthCheckRequest{service}`:
/// field 1, wire type 2 (tag byte 0x0a); an empty service is omitted, as
/// proto3 omits default values.
pub(crate) fn encode_request(service: &str) -> Bytes {
    let mut message = Vec::with_capacity(service.len() + 6);
    if !service.is_empty() {
        message.push(0x0a);
        put_varint(&mut message, service.len() as u64);
        message.extend_from_slice(service.as_bytes());
    }
    let mut framed = Vec::with_capacity(message.len() + 5);
    framed.push(0); // not compressed
    framed.extend_from_slice(&(message.len() as u32).to_be_bytes());
    framed.extend_from_slice(&message);
    Bytes::from(framed)
}

/// Reads `HealthCheckResponse.status` (field 1, varint) from one
/// length-prefixed gRPC message, skipping fields it does not know.
pub(crate) fn decode_response(body: &[u8]) -> Result<u64, String> {
    let (&compressed, rest) = body.split_first().ok_or("empty response")?;
    if compressed != 0 {
        return Err("compressed messages are not supported".to_owned());
    }
    let length_bytes: [u8; 4] = rest
        .get(..4)
        .and_then(|b| b.try_into().ok())
        .ok_or("truncated message header")?;
    let length = u32::from_be_bytes(length_bytes) as usize;
    let mut message = rest.get(4..4 + length).ok_or("truncated message")?;
    let mut status = 0;
    while !message.is_empty() {
        let key = take_varint(&mut message)?;
        match (key >> 3, key & 7) {
            (1, 0) => status = take_varint(&mut message)?,
            (_, 0) => {
                take_varint(&mut message)?;
            }
            (_, 1) => skip(&mut message, 8)?,
            (_, 2) => {
                let len = usize::try_from(take_varint(&mut message)?)
                    .map_err(|_| "field too long".to_owned())?;
                skip(&mut message, len)?;
            }
            (_, 5) => skip(&mut message, 4)?,
            (_, wire) => return Err(format!("unsupported wire type {wire}")),
        }
    }
    Ok(status)
}

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn take_varint(input: &mut &[u8]) -> Result<u64, String> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = input.split_first().ok_or("truncated varint")?;
        *input = rest;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err("varint overflow".to_owned())
}

fn skip(input: &mut &[u8], len: usize) -> Result<(), String> {
    *input = input.get(len..).ok_or("truncated field")?;
    Ok(())
}

#[cfg(test)]
mod tests;
