//! `praetor watch`: Consul's watch plans on blocking queries. Without a
//! handler the first result is printed (indented JSON) and the watch ends;
//! with one, the handler runs on every change with the JSON on stdin and
//! `CONSUL_INDEX` set, and a failing handler ends the watch with exit 1.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;
use tokio::signal::unix::{signal, SignalKind};

use crate::catalog_cmd::{block_on, connect, fail, get_json, node_name, push_query, Failure};
use crate::cli::WatchArgs;
use crate::client::{escape_key, ApiClient};

const HELP: &str = "Usage: praetor watch [options] [child...]

  Watches for changes in a given data view from Consul. If a child process
  is specified, it will be invoked with the latest results on changes. Otherwise,
  the latest values are dumped to stdout and the watch terminates.

  Providing the watch type is required, and other parameters may be required
  or supported depending on the watch type.";

/// Consul's plan: the first retry after an error waits this long, growing
/// with the square of the failures up to `MAX_BACKOFF`.
const RETRY_INTERVAL: Duration = Duration::from_secs(5);
const MAX_BACKOFF: Duration = Duration::from_secs(20);

pub fn run(c: WatchArgs) -> u8 {
    block_on(watch(c))
}

/// What one watch type queries.
enum Kind {
    Key(String),
    KeyPrefix(String),
    Services,
    Nodes,
    Service {
        name: String,
        tag: String,
        passing: bool,
    },
    ChecksState {
        state: String,
        tag: String,
    },
    ChecksService(String),
    Event(String),
}

/// Go's `strconv.ParseBool`.
fn parse_bool(text: &str) -> Option<bool> {
    match text {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// Consul's `watch.Parse` for the parameters the command line can give:
/// the type's own checks first, then any parameter it did not take.
fn plan(c: &WatchArgs, stale: bool, passing: Option<bool>) -> Result<Kind, Failure> {
    let mut unused: Vec<&str> = Vec::new();
    let mut given = |name: &'static str, set: bool, taken: bool| {
        if set && !taken {
            unused.push(name);
        }
    };
    let t = c.watch_type.as_str();
    let kind = match t {
        "key" => {
            if c.key.is_empty() {
                return fail("Must specify a single key to watch");
            }
            Kind::Key(c.key.clone())
        }
        "keyprefix" => {
            if c.prefix.is_empty() {
                return fail("Must specify a single prefix to watch");
            }
            Kind::KeyPrefix(c.prefix.clone())
        }
        "services" => Kind::Services,
        "nodes" => Kind::Nodes,
        "service" => {
            if c.service.is_empty() {
                return fail("Must specify a single service to watch");
            }
            Kind::Service {
                name: c.service.clone(),
                tag: c.tag.clone(),
                passing: passing.unwrap_or(false),
            }
        }
        "checks" => {
            if !c.service.is_empty() && !c.state.is_empty() {
                return fail("Cannot specify service and state");
            }
            if c.service.is_empty() {
                let state = if c.state.is_empty() { "any" } else { &c.state };
                Kind::ChecksState {
                    state: state.to_owned(),
                    tag: c.tag.clone(),
                }
            } else {
                Kind::ChecksService(c.service.clone())
            }
        }
        "event" => Kind::Event(c.name.clone()),
        other => return fail(format!("Unsupported watch type: {other}")),
    };
    given("key", !c.key.is_empty(), t == "key");
    given("name", !c.name.is_empty(), t == "event");
    given("passingonly", passing.is_some(), t == "service");
    given("prefix", !c.prefix.is_empty(), t == "keyprefix");
    given(
        "service",
        !c.service.is_empty(),
        t == "service" || t == "checks",
    );
    given("stale", stale, t != "event");
    given("state", !c.state.is_empty(), t == "checks");
    given("tag", !c.tag.is_empty(), t == "service" || t == "checks");
    if !unused.is_empty() {
        return fail(format!("Invalid parameters: [{}]", unused.join(" ")));
    }
    Ok(kind)
}

/// A KV entry as Consul's Go API client encodes it (its field order).
#[derive(Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
struct KvPair {
    key: String,
    create_index: u64,
    modify_index: u64,
    lock_index: u64,
    flags: u64,
    value: Option<String>,
    #[serde(default, deserialize_with = "null_string")]
    session: String,
}

fn null_string<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(Option::<String>::deserialize(d)?.unwrap_or_default())
}

/// A watch result; KV entries keep the Go client's field order.
#[derive(Serialize, PartialEq)]
#[serde(untagged)]
enum Data {
    Json(Value),
    Key(Option<KvPair>),
    Prefix(Option<Vec<KvPair>>),
}

/// Consul's `Event.IDToIndex`: the halves of the UUID XORed.
fn id_to_index(id: &str) -> u64 {
    let hex: String = id.chars().filter(|c| *c != '-').collect();
    if hex.len() != 32 {
        return 0;
    }
    let lower = u64::from_str_radix(&hex[..16], 16).unwrap_or(0);
    let upper = u64::from_str_radix(&hex[16..], 16).unwrap_or(0);
    lower ^ upper
}

impl Kind {
    /// One (blocking) query: the result and its index.
    async fn fetch(
        &self,
        client: &ApiClient,
        index: Option<u64>,
        stale: bool,
    ) -> Result<(Data, u64), String> {
        let mut query = String::new();
        let path = match self {
            Kind::Key(key) => format!("/v1/kv/{}", escape_key(key)),
            Kind::KeyPrefix(prefix) => {
                push_query(&mut query, "recurse", "");
                format!("/v1/kv/{}", escape_key(prefix))
            }
            Kind::Services => "/v1/catalog/services".to_owned(),
            Kind::Nodes => "/v1/catalog/nodes".to_owned(),
            Kind::Service { name, tag, passing } => {
                if !tag.is_empty() {
                    push_query(&mut query, "tag", tag);
                }
                if *passing {
                    push_query(&mut query, "passing", "1");
                }
                format!(
                    "/v1/health/service/{}",
                    escape_key(name).replace('/', "%2F")
                )
            }
            Kind::ChecksState { state, tag } => {
                if !tag.is_empty() {
                    push_query(&mut query, "tag", tag);
                }
                format!("/v1/health/state/{}", escape_key(state).replace('/', "%2F"))
            }
            Kind::ChecksService(name) => {
                format!("/v1/health/checks/{}", escape_key(name).replace('/', "%2F"))
            }
            Kind::Event(name) => {
                if !name.is_empty() {
                    push_query(&mut query, "name", name);
                }
                "/v1/event/list".to_owned()
            }
        };
        if stale && !matches!(self, Kind::Event(_)) {
            push_query(&mut query, "stale", "");
        }
        if let Some(index) = index.filter(|i| *i > 0) {
            push_query(&mut query, "index", &index.to_string());
        }
        let uri = format!("{path}{query}")
            .replace("recurse=", "recurse")
            .replace("stale=", "stale");
        match self {
            Kind::Key(_) | Kind::KeyPrefix(_) => {
                let answer = client.send(hyper::Method::GET, &uri, Vec::new()).await?;
                let at = answer.index.unwrap_or(0);
                if answer.status == hyper::StatusCode::NOT_FOUND {
                    let none = match self {
                        Kind::Key(_) => Data::Key(None),
                        _ => Data::Prefix(None),
                    };
                    return Ok((none, at));
                }
                if answer.status != hyper::StatusCode::OK {
                    return Err(answer.unexpected());
                }
                let pairs: Vec<KvPair> =
                    serde_json::from_slice(&answer.body).map_err(|e| e.to_string())?;
                let data = if let Kind::Key(_) = self {
                    Data::Key(pairs.into_iter().next())
                } else {
                    Data::Prefix(Some(pairs))
                };
                Ok((data, at))
            }
            _ => {
                let (value, at): (Value, _) = get_json(client, &uri).await?;
                Ok((Data::Json(value), at.unwrap_or(0)))
            }
        }
    }
}

/// Go's `json.Marshal` escapes `<`, `>` and `&` (they only occur inside
/// strings in JSON text).
fn go_escape(text: String) -> String {
    text.replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
        .replace('\u{2028}', "\\u2028")
        .replace('\u{2029}', "\\u2029")
}

/// Go's `json.MarshalIndent(data, "", "    ")`.
fn indented(value: &Data) -> String {
    let mut out = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut out, formatter);
    if value.serialize(&mut ser).is_err() {
        return "null".to_owned();
    }
    go_escape(String::from_utf8_lossy(&out).into_owned())
}

/// Runs the handler with the result on stdin; `Err` ends the watch.
async fn run_handler(c: &WatchArgs, index: u64, value: &Data) -> Result<(), String> {
    let mut command = if c.shell {
        let shell = std::env::var("SHELL")
            .ok()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "/bin/sh".to_owned());
        let mut command = Command::new(shell);
        command.arg("-c").arg(c.args.join(" "));
        command
    } else {
        let mut command = Command::new(&c.args[0]);
        command.args(&c.args[1..]);
        command
    };
    command
        .env("CONSUL_INDEX", index.to_string())
        .stdin(std::process::Stdio::piped());
    let mut input = go_escape(serde_json::to_string(value).map_err(|e| e.to_string())?);
    input.push('\n');
    let mut child = command
        .spawn()
        .map_err(|e| format!("Error starting handler: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A handler that does not read its input is not an error.
        let _ = stdin.write_all(input.as_bytes()).await;
    }
    let status = child
        .wait()
        .await
        .map_err(|e| format!("Error executing handler: {e}"))?;
    if status.success() {
        return Ok(());
    }
    use std::os::unix::process::ExitStatusExt;
    let why = match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(sig)) => format!("signal: {sig}"),
        _ => "exit status unknown".to_owned(),
    };
    Err(format!("Error executing handler: {why}"))
}

async fn watch(c: WatchArgs) -> Result<u8, Failure> {
    if c.watch_type.is_empty() {
        return fail(format!("Watch type must be specified\n\n{HELP}"));
    }
    let passing = if c.passingonly.is_empty() {
        None
    } else {
        Some(parse_bool(&c.passingonly).ok_or_else(|| {
            Failure(format!(
                "Failed to parse passingonly flag: strconv.ParseBool: parsing \"{}\": invalid syntax",
                c.passingonly
            ))
        })?)
    };
    let stale = c.http.stale.unwrap_or(false);
    let kind = plan(&c, stale, passing)?;
    let client = connect(&c.http)?;
    node_name(&client).await?;

    let mut interrupt =
        signal(SignalKind::interrupt()).map_err(|e| Failure(format!("Error starting: {e}")))?;
    let mut terminate =
        signal(SignalKind::terminate()).map_err(|e| Failure(format!("Error starting: {e}")))?;

    let mut last_index: Option<u64> = None;
    let mut last_result: Option<Data> = None;
    let mut failures: u32 = 0;
    loop {
        let fetched = tokio::select! {
            _ = interrupt.recv() => return Ok(0),
            _ = terminate.recv() => return Ok(0),
            fetched = kind.fetch(&client, last_index, stale) => fetched,
        };
        let (mut value, index) = match fetched {
            Ok(v) => v,
            Err(e) => {
                failures += 1;
                last_index = None;
                let retry = (RETRY_INTERVAL * failures * failures).min(MAX_BACKOFF);
                eprintln!(
                    "[ERR] consul.watch: Watch (type: {}) errored: {e}, retry in {}s",
                    c.watch_type,
                    retry.as_secs()
                );
                tokio::select! {
                    _ = interrupt.recv() => return Ok(0),
                    _ = terminate.recv() => return Ok(0),
                    _ = tokio::time::sleep(retry) => continue,
                }
            }
        };
        failures = 0;
        if let (Kind::Event(_), Data::Json(Value::Array(events))) = (&kind, &mut value) {
            // Only the events after the one the last index names.
            if let Some(last) = last_index {
                if let Some(at) = events.iter().position(|e| {
                    e.get("ID")
                        .and_then(Value::as_str)
                        .is_some_and(|id| id_to_index(id) == last)
                }) {
                    events.drain(..=at);
                }
            }
        }
        if last_index == Some(index) {
            continue;
        }
        last_index = Some(match last_index {
            Some(previous) if previous > index => 0,
            _ => index,
        });
        // Never twice for the same result (also after an error reset).
        if last_result.as_ref() == Some(&value) {
            continue;
        }
        if c.args.is_empty() {
            println!("{}", indented(&value));
            return Ok(0);
        }
        if let Err(e) = run_handler(&c, index, &value).await {
            eprintln!("{e}");
            return Ok(1);
        }
        last_result = Some(value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_ids_fold_to_an_index() {
        assert_eq!(id_to_index("00000000-0000-0001-0000-000000000003"), 1 ^ 3);
    }

    #[test]
    fn indented_is_gos_marshal_indent() {
        let value: Value =
            serde_json::from_str(r#"{"a":[1,{"b":"<x>"}],"c":{},"d":[]}"#).unwrap_or(Value::Null);
        assert_eq!(
            indented(&Data::Json(value)),
            "{\n    \"a\": [\n        1,\n        {\n            \"b\": \"\\u003cx\\u003e\"\n        }\n    ],\n    \"c\": {},\n    \"d\": []\n}"
        );
    }

    #[test]
    fn go_bools() {
        assert_eq!(parse_bool("T"), Some(true));
        assert_eq!(parse_bool("yes"), None);
    }
}
