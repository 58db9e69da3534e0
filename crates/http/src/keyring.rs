//! `/v1/operator/keyring`: the LAN pool's gossip encryption keys. GET lists
//! them, POST installs a key, PUT makes one primary, DELETE removes one.
//!
//! The agent that receives the call runs the key query on its own LAN pool
//! (see `forward.rs`). Consul's agents forward it to a server, which queries
//! the LAN pool and the WAN pool; in one datacenter the LAN answer is the
//! same whichever member asks, and praetor has no WAN pool to report.

use std::collections::BTreeMap;
use std::sync::Arc;

use agent::keyring::KeyringOp;
use agent::Agent;
use axum::body::Body;
use axum::extract::State;
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use crate::error::HttpError;
use crate::params::Params;
use crate::reply;

/// The largest request body read: a key and a token.
const MAX_BODY: usize = 64 * 1024;

/// One pool's answer, in Consul's `structs.KeyringResponse` shape.
#[derive(Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
struct KeyringResponseJson {
    #[serde(rename = "WAN")]
    wan: bool,
    datacenter: String,
    segment: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    messages: BTreeMap<String, String>,
    keys: BTreeMap<String, usize>,
    primary_keys: BTreeMap<String, usize>,
    num_nodes: usize,
    #[serde(skip_serializing_if = "String::is_empty")]
    error: String,
}

impl KeyringResponseJson {
    fn of(datacenter: &str, outcome: Result<serf::KeySummary, String>) -> KeyringResponseJson {
        let (summary, error) = match outcome {
            Ok(s) => {
                let error = s.error().unwrap_or_default();
                (s, error)
            }
            Err(e) => (serf::KeySummary::default(), e),
        };
        KeyringResponseJson {
            wan: false,
            datacenter: datacenter.to_owned(),
            segment: String::new(),
            messages: summary.messages,
            keys: summary.keys,
            primary_keys: summary.primary_keys,
            num_nodes: summary.num_nodes,
            error,
        }
    }

    /// Consul's `keyringErrorsOrNil` lines for this pool: its error, then
    /// each member's message.
    fn error_lines(&self) -> Vec<String> {
        if self.error.is_empty() {
            return Vec::new();
        }
        let pool = if self.wan {
            "WAN".to_owned()
        } else {
            format!("{} (LAN)", self.datacenter)
        };
        let mut lines = vec![format!("{pool} error: {}", self.error)];
        lines.extend(self.messages.iter().map(|(node, m)| format!("{node}: {m}")));
        lines
    }
}

/// go-multierror's text for a list of errors.
fn multierror(errors: &[String]) -> String {
    if let [one] = errors {
        return format!("1 error occurred:\n\t* {one}\n\n");
    }
    let points: Vec<String> = errors.iter().map(|e| format!("* {e}")).collect();
    format!(
        "{} errors occurred:\n\t{}\n\n",
        errors.len(),
        points.join("\n\t")
    )
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct KeyringArgs {
    #[serde(default)]
    key: String,
}

/// Go's `strconv.Atoi` error text for `raw`.
fn atoi(raw: &str) -> Result<i64, String> {
    let digits = raw.strip_prefix(['+', '-']).unwrap_or(raw);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("strconv.Atoi: parsing {raw:?}: invalid syntax"));
    }
    raw.parse()
        .map_err(|_| format!("strconv.Atoi: parsing {raw:?}: value out of range"))
}

/// Go's `strconv.ParseBool`.
fn parse_bool(raw: &str) -> Result<bool, String> {
    match raw {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err(format!(
            "strconv.ParseBool: parsing {raw:?}: invalid syntax"
        )),
    }
}

/// `?relay-factor`, 0 to 5.
fn relay_factor(params: &Params) -> Result<u8, HttpError> {
    let Some(raw) = params.get("relay-factor").filter(|r| !r.is_empty()) else {
        return Ok(0);
    };
    let n = atoi(raw)
        .map_err(|e| HttpError::bad_request(format!("Error parsing relay factor: {e}")))?;
    u8::try_from(n).ok().filter(|n| *n <= 5).ok_or_else(|| {
        HttpError::bad_request("Invalid relay-factor: Relay factor must be in range: [0, 5]")
    })
}

/// `?local-only`, which only a list may set. Every list is local here.
fn check_local_only(params: &Params, list: bool) -> Result<(), HttpError> {
    let Some(raw) = params.get("local-only").filter(|r| !r.is_empty()) else {
        return Ok(());
    };
    let local = parse_bool(raw)
        .map_err(|e| HttpError::bad_request(format!("Error parsing local-only: {e}")))?;
    if local && !list {
        return Err(HttpError::bad_request(
            "Invalid use of local-only: local-only can only be set for list requests",
        ));
    }
    Ok(())
}

async fn read_key(body: Body) -> Result<String, HttpError> {
    let bytes = crate::body::read(body, MAX_BODY).await?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        // What Go's JSON decoder says of an empty body.
        return Err(HttpError::bad_request("Request decode failed: EOF"));
    }
    let args: KeyringArgs = crate::body::decode(&bytes)?;
    Ok(args.key)
}

pub async fn endpoint(
    State(agent): State<Arc<Agent>>,
    method: Method,
    uri: Uri,
    body: Body,
) -> Response {
    if let Some(refused) = reply::refuse_method(&method, &["GET", "POST", "PUT", "DELETE"]) {
        return refused;
    }
    let params = Params::parse(uri.query());
    let result = async {
        let list = method == Method::GET;
        let key = if list {
            String::new()
        } else {
            read_key(body).await?
        };
        let relay = relay_factor(&params)?;
        check_local_only(&params, list)?;
        let op = match method.as_str() {
            "POST" => KeyringOp::Install(key),
            "PUT" => KeyringOp::Use(key),
            "DELETE" => KeyringOp::Remove(key),
            _ => KeyringOp::List,
        };
        let lan = agent
            .lan()
            .ok_or_else(|| HttpError::internal("Keyring not available: no LAN pool"))?;
        let outcome = lan.key_operation(op, relay).await;
        let response = KeyringResponseJson::of(&agent.config().datacenter, outcome);
        let errors = response.error_lines();
        if !errors.is_empty() {
            return Err(HttpError::internal(multierror(&errors)));
        }
        Ok(if list {
            reply::ok(&[response], reply::pretty(agent.config().dev, &params))
        } else {
            StatusCode::OK.into_response()
        })
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(nodes: usize) -> serf::KeySummary {
        serf::KeySummary {
            num_nodes: nodes,
            num_resp: nodes,
            ..Default::default()
        }
    }

    #[test]
    fn a_listing_has_consuls_fields() {
        let mut s = summary(3);
        s.keys.insert("K1".into(), 3);
        s.primary_keys.insert("K1".into(), 3);
        let json = serde_json::to_value(KeyringResponseJson::of("dc1", Ok(s))).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "WAN": false, "Datacenter": "dc1", "Segment": "",
                "Keys": {"K1": 3}, "PrimaryKeys": {"K1": 3}, "NumNodes": 3
            })
        );
    }

    #[test]
    fn failures_read_as_consuls_multierror() {
        let mut s = summary(2);
        s.num_err = 2;
        for n in ["c1", "s1"] {
            s.messages
                .insert(n.into(), "Removing the primary key is not allowed".into());
        }
        let response = KeyringResponseJson::of("dc1", Ok(s));
        assert_eq!(
            multierror(&response.error_lines()),
            "3 errors occurred:\n\t* dc1 (LAN) error: 2/2 nodes reported failure\n\t\
             * c1: Removing the primary key is not allowed\n\t\
             * s1: Removing the primary key is not allowed\n\n"
        );
        let bad = KeyringResponseJson::of("dc1", Err("illegal base64 data at input byte 0".into()));
        assert_eq!(
            multierror(&bad.error_lines()),
            "1 error occurred:\n\t* dc1 (LAN) error: illegal base64 data at input byte 0\n\n"
        );
        assert!(KeyringResponseJson::of("dc1", Ok(summary(1)))
            .error_lines()
            .is_empty());
    }

    #[test]
    fn relay_factor_and_local_only_are_checked_as_consul_does() {
        let p = |q: &str| Params::parse(Some(q));
        assert_eq!(relay_factor(&p("relay-factor=3")), Ok(3));
        assert_eq!(relay_factor(&p("")), Ok(0));
        assert_eq!(
            relay_factor(&p("relay-factor=x")).unwrap_err().message,
            "Error parsing relay factor: strconv.Atoi: parsing \"x\": invalid syntax"
        );
        assert_eq!(
            relay_factor(&p("relay-factor=6")).unwrap_err().message,
            "Invalid relay-factor: Relay factor must be in range: [0, 5]"
        );
        assert!(relay_factor(&p("relay-factor=-1")).is_err());
        assert!(check_local_only(&p("local-only=true"), true).is_ok());
        assert!(check_local_only(&p("local-only=false"), false).is_ok());
        assert_eq!(
            check_local_only(&p("local-only=1"), false)
                .unwrap_err()
                .message,
            "Invalid use of local-only: local-only can only be set for list requests"
        );
        assert_eq!(
            check_local_only(&p("local-only=yes"), true)
                .unwrap_err()
                .message,
            "Error parsing local-only: strconv.ParseBool: parsing \"yes\": invalid syntax"
        );
    }
}
