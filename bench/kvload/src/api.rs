//! The two KV APIs under test and what a good answer from each looks like.
//!
//! - praetor (Consul's v1 HTTP API): `PUT /v1/kv/<key>` with the raw value as
//!   the body, answered `true`; `GET /v1/kv/<key>?consistent`, answered with a
//!   JSON array of one entry (a 404 means the key is missing).
//! - etcd (v3 JSON gateway of etcd 3.4, which serves both `/v3/` and
//!   `/v3beta/`): `POST /v3/kv/put` with `{"key": b64, "value": b64}` and
//!   `POST /v3/kv/range` with `{"key": b64}`, linearizable unless the body asks
//!   for `"serializable": true`. Errors come back as non-200 statuses with a
//!   JSON `error` body.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bytes::Bytes;
use hyper::{Method, StatusCode};

use crate::http::{call, connect, BoxError};

/// How long one endpoint may take to say who leads.
const LEADER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Target {
    /// Consul's HTTP API as praetor serves it.
    Praetor,
    /// etcd's v3 HTTP/JSON gateway.
    Etcd,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Write,
    Read,
}

/// One prepared request: everything but the connection.
#[derive(Clone)]
pub struct Request {
    pub method: Method,
    pub path: String,
    pub body: Bytes,
}

/// The name of key `i` in the key space.
pub fn key_name(prefix: &str, i: usize) -> String {
    format!("{prefix}{i}")
}

/// A value of `size` printable bytes that differs from key to key.
pub fn value_for(i: usize, size: usize) -> Vec<u8> {
    let tag = format!("{i}:");
    tag.bytes()
        .chain(std::iter::repeat(b'v'))
        .take(size)
        .collect()
}

impl Target {
    /// The request for `op` on key `key` (with `value` for writes).
    pub fn request(self, op: Op, key: &str, value: &[u8]) -> Request {
        match (self, op) {
            (Target::Praetor, Op::Write) => Request {
                method: Method::PUT,
                path: format!("/v1/kv/{key}"),
                body: Bytes::copy_from_slice(value),
            },
            (Target::Praetor, Op::Read) => Request {
                method: Method::GET,
                path: format!("/v1/kv/{key}?consistent"),
                body: Bytes::new(),
            },
            (Target::Etcd, Op::Write) => Request {
                method: Method::POST,
                path: "/v3/kv/put".into(),
                body: format!(
                    r#"{{"key":"{}","value":"{}"}}"#,
                    STANDARD.encode(key),
                    STANDARD.encode(value)
                )
                .into(),
            },
            (Target::Etcd, Op::Read) => Request {
                method: Method::POST,
                path: "/v3/kv/range".into(),
                body: format!(r#"{{"key":"{}"}}"#, STANDARD.encode(key)).into(),
            },
        }
    }

    /// Whether `status` and `body` are a successful answer to `op`; the
    /// reason if not.
    pub fn check(self, op: Op, status: StatusCode, body: &[u8]) -> Result<(), Failure> {
        if status != StatusCode::OK {
            return Err(Failure::Status(status.as_u16()));
        }
        let ok = match (self, op) {
            (Target::Praetor, Op::Write) => body.trim_ascii() == b"true",
            (Target::Praetor, Op::Read) => body.trim_ascii_start().starts_with(b"["),
            // A put answers {"header": {...}}; a range that found the key
            // carries "kvs" (a missing key leaves it out).
            (Target::Etcd, Op::Write) => contains(body, b"\"header\""),
            (Target::Etcd, Op::Read) => contains(body, b"\"kvs\""),
        };
        if ok {
            Ok(())
        } else {
            Err(Failure::Body)
        }
    }

    /// The endpoint (from `endpoints`) of the current leader. Every endpoint
    /// must answer and name the same one: a member still starting or a
    /// cluster in the middle of an election is an error, so that a harness can
    /// poll this until the cluster is whole.
    pub async fn leader(self, endpoints: &[String]) -> Result<String, BoxError> {
        let mut found: Option<String> = None;
        for endpoint in endpoints {
            let ask = async {
                match self {
                    Target::Praetor => praetor_leader(endpoint, endpoints).await,
                    Target::Etcd => etcd_leader(endpoint, endpoints).await,
                }
            };
            let leader = match tokio::time::timeout(LEADER_TIMEOUT, ask).await {
                Ok(answer) => answer.map_err(|error| format!("{endpoint}: {error}"))?,
                Err(_) => return Err(format!("{endpoint}: no answer in {LEADER_TIMEOUT:?}").into()),
            };
            match &found {
                None => found = Some(leader),
                Some(seen) if *seen == leader => {}
                Some(seen) => {
                    return Err(
                        format!("endpoints disagree on the leader: {seen} vs {leader}").into(),
                    )
                }
            }
        }
        found.ok_or_else(|| "no endpoints".into())
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Why an answer was not a success.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Failure {
    /// A non-200 status.
    Status(u16),
    /// 200 but not the expected body.
    Body,
    /// Could not connect.
    Connect,
    /// The connection failed mid-request.
    Transport,
    /// No answer within the request timeout.
    Timeout,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Status(code) => write!(f, "http_{code}"),
            Failure::Body => f.write_str("bad_body"),
            Failure::Connect => f.write_str("connect"),
            Failure::Transport => f.write_str("transport"),
            Failure::Timeout => f.write_str("timeout"),
        }
    }
}

/// praetor: `GET /v1/status/leader` answers `"IP:8300"` (the leader's server
/// RPC address); the leader's endpoint is the one on the same IP.
async fn praetor_leader(endpoint: &str, endpoints: &[String]) -> Result<String, BoxError> {
    let mut conn = connect(endpoint).await?;
    let reply = call(
        &mut conn,
        endpoint,
        Method::GET,
        "/v1/status/leader",
        Bytes::new(),
    )
    .await?;
    if reply.status != StatusCode::OK {
        return Err(format!("status {}", reply.status).into());
    }
    let address: String = serde_json::from_slice(&reply.body)?;
    let ip = address
        .rsplit_once(':')
        .map(|(ip, _)| ip)
        .filter(|ip| !ip.is_empty())
        .ok_or_else(|| format!("no leader yet ({address:?})"))?;
    endpoints
        .iter()
        .find(|e| e.rsplit_once(':').map(|(host, _)| host) == Some(ip))
        .cloned()
        .ok_or_else(|| format!("leader {address} is on none of the endpoints").into())
}

/// etcd: `POST /v3/maintenance/status` answers the member's own id
/// (`header.member_id`) and the leader's id (`leader`); the leader's endpoint
/// is the one whose member id is that.
async fn etcd_leader(endpoint: &str, endpoints: &[String]) -> Result<String, BoxError> {
    let leader = etcd_status(endpoint).await?.1;
    if leader.is_empty() || leader == "0" {
        return Err("no leader yet".into());
    }
    for candidate in endpoints {
        match etcd_status(candidate).await {
            Ok((member, _)) if member == leader => return Ok(candidate.clone()),
            _ => {}
        }
    }
    Err(format!("leader {leader} is on none of the endpoints").into())
}

/// (own member id, leader's member id), as decimal strings.
async fn etcd_status(endpoint: &str) -> Result<(String, String), BoxError> {
    let mut conn = connect(endpoint).await?;
    let reply = call(
        &mut conn,
        endpoint,
        Method::POST,
        "/v3/maintenance/status",
        "{}".into(),
    )
    .await?;
    if reply.status != StatusCode::OK {
        return Err(format!("status {}", reply.status).into());
    }
    let doc: serde_json::Value = serde_json::from_slice(&reply.body)?;
    // The gateway writes 64-bit integers as JSON strings; accept numbers too.
    let id = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Number(n) => n.to_string(),
        _ => String::new(),
    };
    Ok((id(&doc["header"]["member_id"]), id(&doc["leader"])))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etcd_put_body_is_base64_json() {
        let r = Target::Etcd.request(Op::Write, "k", b"ab");
        assert_eq!(r.path, "/v3/kv/put");
        assert_eq!(&r.body[..], br#"{"key":"aw==","value":"YWI="}"#);
    }

    #[test]
    fn values_have_the_asked_size() {
        assert_eq!(value_for(12345, 256).len(), 256);
        assert!(value_for(7, 256).starts_with(b"7:v"));
    }

    #[test]
    fn checks() {
        let ok = StatusCode::OK;
        assert!(Target::Praetor.check(Op::Write, ok, b"true\n").is_ok());
        assert_eq!(
            Target::Praetor.check(Op::Write, ok, b"false"),
            Err(Failure::Body)
        );
        assert_eq!(
            Target::Praetor.check(Op::Read, StatusCode::NOT_FOUND, b""),
            Err(Failure::Status(404))
        );
        assert!(Target::Etcd
            .check(Op::Read, ok, br#"{"header":{},"kvs":[{}],"count":"1"}"#)
            .is_ok());
        assert_eq!(
            Target::Etcd.check(Op::Read, ok, br#"{"header":{}}"#),
            Err(Failure::Body)
        );
    }
}
