//! The keys praetor implements, each with the kind of value it takes, and the
//! one walker that checks a parsed configuration tree against them.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use serde_json::{Map, Value};

use super::known_keys::UNIMPLEMENTED;
use super::LogLevel;

/// What a key accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Str,
    Uuid,
    Bool,
    /// An integer in `min..=max`.
    Int {
        min: i64,
        max: i64,
    },
    /// A byte count.
    Size,
    Port,
    /// A port, or -1 (or 0) to disable the listener.
    PortOrOff,
    Ip,
    /// One address, a space-separated string of them, or a list of them.
    Addrs,
    /// A Go-style duration string such as "10s".
    Duration,
    /// A duration no shorter than `min`; `rule` is Consul's text for it.
    DurationAtLeast {
        min: Duration,
        rule: &'static str,
    },
    /// An object of durations by name (`dns_config.service_ttl`).
    DurationMap,
    LogLevel,
    /// A string or a list of strings.
    StrList,
    /// A definition block (`service`, `check`) kept whole for its own
    /// decoder: an object, or a list of them.
    Definitions,
}

impl Kind {
    fn expected(self) -> Cow<'static, str> {
        Cow::Borrowed(match self {
            Kind::Str => "a string",
            Kind::Uuid => "a UUID such as \"adf4238a-882b-9ddc-4a9d-5b6758e4159e\"",
            Kind::Bool => "true or false",
            Kind::Int { min, max } => {
                return Cow::Owned(format!("an integer between {min} and {max}"))
            }
            Kind::Size => "a non-negative integer",
            Kind::Port => "an integer port 1-65535",
            Kind::PortOrOff => "an integer port 0-65535 or -1",
            Kind::Ip => "an IP address",
            Kind::Addrs => "an IP address or a space-separated list of IP addresses",
            Kind::Duration => "a duration such as \"10s\" or \"1m30s\"",
            Kind::DurationAtLeast { min, rule } => {
                return Cow::Owned(format!(
                    "a duration of at least {} ({rule})",
                    humantime::format_duration(min)
                ))
            }
            Kind::DurationMap => "an object of durations such as {\"*\": \"10s\"}",
            Kind::LogLevel => "a log level (trace, debug, info, warn, err)",
            Kind::StrList => "a string or a list of strings",
            Kind::Definitions => "an object or a list of objects",
        })
    }
}

/// A value that passed its key's kind.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Parsed {
    Str(String),
    Bool(bool),
    Int(i64),
    Size(u64),
    /// `None` is a disabled listener.
    Port(Option<u16>),
    Ip(IpAddr),
    Addrs(Vec<IpAddr>),
    Duration(Duration),
    DurationMap(BTreeMap<String, Duration>),
    LogLevel(LogLevel),
    StrList(Vec<String>),
    Definitions(Vec<Value>),
}

/// Consul's floor for `reconnect_timeout` and `reconnect_timeout_wan`: a
/// shorter one could reap servers from the pool during an ordinary outage.
/// (`advertise_reconnect_timeout`, a client's own, has no floor.)
const MIN_RECONNECT_TIMEOUT: Duration = Duration::from_secs(8 * 3600);

/// The SOA timers: seconds, as unsigned 32-bit numbers in the record.
const SOA_SECONDS: Kind = Kind::Int {
    min: 0,
    max: u32::MAX as i64,
};

/// The implemented keys, sorted. Objects on the way (`ports`) are implied by
/// the dotted names.
pub(crate) const SCHEMA: &[(&str, Kind)] = &[
    ("addresses.dns", Kind::Addrs),
    ("addresses.grpc", Kind::Addrs),
    ("addresses.http", Kind::Addrs),
    ("addresses.https", Kind::Addrs),
    ("advertise_addr", Kind::Ip),
    ("advertise_reconnect_timeout", Kind::Duration),
    ("alt_domain", Kind::Str),
    ("autopilot.cleanup_dead_servers", Kind::Bool),
    ("bind_addr", Kind::Ip),
    ("bootstrap", Kind::Bool),
    (
        "bootstrap_expect",
        Kind::Int {
            min: 0,
            max: u32::MAX as i64,
        },
    ),
    ("check", Kind::Definitions),
    ("checks", Kind::Definitions),
    ("client_addr", Kind::Addrs),
    ("data_dir", Kind::Str),
    ("datacenter", Kind::Str),
    ("disable_update_check", Kind::Bool),
    (
        "dns_config.a_record_limit",
        Kind::Int { min: 0, max: 65535 },
    ),
    ("dns_config.allow_stale", Kind::Bool),
    ("dns_config.enable_additional_node_meta_txt", Kind::Bool),
    ("dns_config.enable_truncate", Kind::Bool),
    ("dns_config.max_stale", Kind::Duration),
    ("dns_config.node_ttl", Kind::Duration),
    ("dns_config.only_passing", Kind::Bool),
    ("dns_config.recursor_timeout", Kind::Duration),
    ("dns_config.service_ttl", Kind::DurationMap),
    ("dns_config.soa.expire", SOA_SECONDS),
    ("dns_config.soa.min_ttl", SOA_SECONDS),
    ("dns_config.soa.refresh", SOA_SECONDS),
    ("dns_config.soa.retry", SOA_SECONDS),
    (
        "dns_config.udp_answer_limit",
        Kind::Int { min: 0, max: 65535 },
    ),
    ("domain", Kind::Str),
    ("enable_local_script_checks", Kind::Bool),
    ("enable_script_checks", Kind::Bool),
    ("encrypt", Kind::Str),
    ("leave_on_terminate", Kind::Bool),
    ("limits.kv_max_value_size", Kind::Size),
    ("limits.txn_max_req_len", Kind::Size),
    ("log_json", Kind::Bool),
    ("log_level", Kind::LogLevel),
    ("node_id", Kind::Uuid),
    ("node_name", Kind::Str),
    ("performance.leave_drain_time", Kind::Duration),
    ("performance.raft_multiplier", Kind::Int { min: 1, max: 10 }),
    ("performance.rpc_hold_timeout", Kind::Duration),
    ("pid_file", Kind::Str),
    ("ports.dns", Kind::PortOrOff),
    ("ports.grpc", Kind::PortOrOff),
    ("ports.http", Kind::PortOrOff),
    ("ports.https", Kind::PortOrOff),
    ("ports.serf_lan", Kind::Port),
    ("ports.serf_wan", Kind::PortOrOff),
    ("ports.server", Kind::Port),
    (
        "raft_snapshot_threshold",
        Kind::Int {
            min: 0,
            max: i64::MAX,
        },
    ),
    (
        "raft_trailing_logs",
        Kind::Int {
            min: 0,
            max: i64::MAX,
        },
    ),
    (
        "reconnect_timeout",
        Kind::DurationAtLeast {
            min: MIN_RECONNECT_TIMEOUT,
            rule: "ReconnectTimeoutLan must be >= 8h0m0s",
        },
    ),
    (
        "reconnect_timeout_wan",
        Kind::DurationAtLeast {
            min: MIN_RECONNECT_TIMEOUT,
            rule: "ReconnectTimeoutWan must be >= 8h0m0s",
        },
    ),
    ("recursors", Kind::StrList),
    ("rejoin_after_leave", Kind::Bool),
    ("retry_interval", Kind::Duration),
    ("retry_interval_wan", Kind::Duration),
    ("retry_join", Kind::StrList),
    ("retry_join_wan", Kind::StrList),
    ("server", Kind::Bool),
    ("service", Kind::Definitions),
    ("services", Kind::Definitions),
    ("start_join", Kind::StrList),
    ("start_join_wan", Kind::StrList),
    ("ui", Kind::Bool),
    ("ui_config.enabled", Kind::Bool),
];

/// Why a tree was refused; the caller adds where the tree came from.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Refusal {
    UnknownKey(String),
    BadValue {
        key: String,
        expected: Cow<'static, str>,
        found: String,
    },
}

/// What a valid tree holds: typed settings in the order they appeared, and
/// the keys that are accepted but have no effect.
#[derive(Debug, Default)]
pub(crate) struct Walked {
    pub settings: Vec<(&'static str, Parsed)>,
    pub unimplemented: Vec<String>,
}

/// Checks every key of `tree` (a top-level object) against the schema.
pub(crate) fn walk(tree: &Map<String, Value>) -> Result<Walked, Refusal> {
    let mut walked = Walked::default();
    walk_object(tree, "", &mut walked)?;
    Ok(walked)
}

fn walk_object(map: &Map<String, Value>, prefix: &str, out: &mut Walked) -> Result<(), Refusal> {
    for (name, value) in map {
        // Consul matches key names case-insensitively.
        let name = name.to_ascii_lowercase();
        let key = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}.{name}")
        };
        if let Ok(i) = SCHEMA.binary_search_by(|(k, _)| (*k).cmp(key.as_str())) {
            let (static_key, kind) = SCHEMA[i];
            let parsed = parse(kind, value).ok_or_else(|| Refusal::BadValue {
                key: key.clone(),
                expected: kind.expected(),
                found: describe(value),
            })?;
            out.settings.push((static_key, parsed));
        } else if UNIMPLEMENTED.binary_search(&key.as_str()).is_ok() {
            out.unimplemented.push(key);
        } else if is_parent(&key) {
            let inner = as_object(value).ok_or_else(|| Refusal::BadValue {
                key: key.clone(),
                expected: Cow::Borrowed("an object"),
                found: describe(value),
            })?;
            walk_object(&inner, &key, out)?;
        } else {
            return Err(Refusal::UnknownKey(key));
        }
    }
    Ok(())
}

/// True if some known key lives inside `key`.
fn is_parent(key: &str) -> bool {
    let prefix = format!("{key}.");
    let in_schema = SCHEMA.partition_point(|(k, _)| *k < prefix.as_str());
    let in_known = UNIMPLEMENTED.partition_point(|k| *k < prefix.as_str());
    SCHEMA
        .get(in_schema)
        .is_some_and(|(k, _)| k.starts_with(&prefix))
        || UNIMPLEMENTED
            .get(in_known)
            .is_some_and(|k| k.starts_with(&prefix))
}

/// An object, or (as Consul's HCL decoding allows) a list of objects merged
/// in order.
fn as_object(value: &Value) -> Option<Cow<'_, Map<String, Value>>> {
    match value {
        Value::Object(map) => Some(Cow::Borrowed(map)),
        Value::Array(items) => {
            let mut merged = Map::new();
            for item in items {
                merged.extend(item.as_object()?.clone());
            }
            Some(Cow::Owned(merged))
        }
        _ => None,
    }
}

fn parse(kind: Kind, value: &Value) -> Option<Parsed> {
    Some(match kind {
        Kind::Str => Parsed::Str(value.as_str()?.to_owned()),
        Kind::Uuid => {
            let s = value.as_str()?;
            is_uuid(s).then(|| Parsed::Str(s.to_ascii_lowercase()))?
        }
        Kind::Bool => Parsed::Bool(value.as_bool()?),
        Kind::Int { min, max } => {
            let n = value.as_i64()?;
            (min..=max).contains(&n).then_some(Parsed::Int(n))?
        }
        Kind::Size => Parsed::Size(value.as_u64()?),
        Kind::Port => match value.as_i64()? {
            0 => return None,
            n => Parsed::Port(Some(u16::try_from(n).ok()?)),
        },
        // As in Consul, 0 disables a listener just as -1 does.
        Kind::PortOrOff => match value.as_i64()? {
            -1 | 0 => Parsed::Port(None),
            n => Parsed::Port(Some(u16::try_from(n).ok()?)),
        },
        Kind::Ip => Parsed::Ip(value.as_str()?.trim().parse().ok()?),
        Kind::Addrs => Parsed::Addrs(parse_addrs(value)?),
        Kind::Duration => Parsed::Duration(humantime::parse_duration(value.as_str()?).ok()?),
        Kind::DurationAtLeast { min, .. } => {
            let duration = humantime::parse_duration(value.as_str()?).ok()?;
            (duration >= min).then_some(Parsed::Duration(duration))?
        }
        Kind::DurationMap => Parsed::DurationMap(
            value
                .as_object()?
                .iter()
                .map(|(name, ttl)| {
                    let ttl = humantime::parse_duration(ttl.as_str()?).ok()?;
                    Some((name.clone(), ttl))
                })
                .collect::<Option<_>>()?,
        ),
        Kind::LogLevel => Parsed::LogLevel(value.as_str()?.parse().ok()?),
        Kind::StrList => Parsed::StrList(match value {
            Value::String(s) => vec![s.clone()],
            Value::Array(items) => items
                .iter()
                .map(|v| v.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()?,
            _ => return None,
        }),
        Kind::Definitions => Parsed::Definitions(match value {
            Value::Object(_) => vec![value.clone()],
            Value::Array(items) if items.iter().all(Value::is_object) => items.clone(),
            _ => return None,
        }),
    })
}

fn parse_addrs(value: &Value) -> Option<Vec<IpAddr>> {
    let words: Vec<&str> = match value {
        Value::String(s) => s.split_whitespace().collect(),
        Value::Array(items) => items
            .iter()
            .map(Value::as_str)
            .collect::<Option<Vec<_>>>()?
            .into_iter()
            .flat_map(str::split_whitespace)
            .collect(),
        _ => return None,
    };
    if words.is_empty() {
        return None;
    }
    words.into_iter().map(|w| w.parse().ok()).collect()
}

fn is_uuid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.iter().map(|g| g.len()).eq([8, 4, 4, 4, 12])
        && groups
            .iter()
            .all(|g| g.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// A short rendering of a value for error messages.
fn describe(value: &Value) -> String {
    const MAX: usize = 60;
    match value {
        Value::Array(_) => "a list".to_owned(),
        Value::Object(_) => "an object".to_owned(),
        other => {
            let text = other.to_string();
            if text.chars().count() > MAX {
                let cut: String = text.chars().take(MAX).collect();
                format!("{cut}...")
            } else {
                text
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn walk_json(v: Value) -> Result<Walked, Refusal> {
        walk(v.as_object().expect("test trees are objects"))
    }

    #[test]
    fn tables_are_sorted_and_disjoint() {
        assert!(SCHEMA.windows(2).all(|w| w[0].0 < w[1].0));
        assert!(UNIMPLEMENTED.windows(2).all(|w| w[0] < w[1]));
        for (key, _) in SCHEMA {
            assert!(UNIMPLEMENTED.binary_search(key).is_err(), "{key} in both");
        }
    }

    #[test]
    fn kinds_accept_and_refuse() {
        let cases = [
            (Kind::PortOrOff, json!(-1), Some(Parsed::Port(None))),
            (Kind::PortOrOff, json!(8500), Some(Parsed::Port(Some(8500)))),
            (Kind::Port, json!(-1), None),
            (Kind::Port, json!(0), None),
            (Kind::PortOrOff, json!(0), Some(Parsed::Port(None))),
            (Kind::Port, json!(65536), None),
            (Kind::Port, json!("8500"), None),
            (Kind::Int { min: 1, max: 10 }, json!(11), None),
            (Kind::Size, json!(-1), None),
            (
                Kind::Duration,
                json!("1m30s"),
                Some(Parsed::Duration(Duration::from_secs(90))),
            ),
            (Kind::Duration, json!("10"), None),
            (Kind::Uuid, json!("not-a-uuid"), None),
            (Kind::Addrs, json!(""), None),
            (Kind::Addrs, json!("127.0.0.1 ::1 bogus"), None),
            (
                Kind::Addrs,
                json!(["10.0.0.1", "::1"]),
                Some(Parsed::Addrs(vec![
                    "10.0.0.1".parse().unwrap(),
                    "::1".parse().unwrap(),
                ])),
            ),
        ];
        for (kind, value, want) in cases {
            assert_eq!(parse(kind, &value), want, "{kind:?} {value}");
        }
    }

    #[test]
    fn parents_are_implied_and_lists_of_objects_merge() {
        let walked = walk_json(json!({
            "ports": [{"http": 1}, {"dns": -1}],
            "telemetry": {"statsd_address": "x"},
        }))
        .unwrap();
        assert_eq!(
            walked.settings,
            vec![
                ("ports.dns", Parsed::Port(None)),
                ("ports.http", Parsed::Port(Some(1))),
            ]
        );
        assert_eq!(walked.unimplemented, vec!["telemetry.statsd_address"]);
    }

    #[test]
    fn unknown_nested_key_is_named_by_its_path() {
        let err = walk_json(json!({"Telemetry": {"statsd_addr": "x"}})).unwrap_err();
        assert_eq!(err, Refusal::UnknownKey("telemetry.statsd_addr".into()));
        let err = walk_json(json!({"ports": 8500})).unwrap_err();
        assert!(matches!(err, Refusal::BadValue { key, .. } if key == "ports"));
    }
}
