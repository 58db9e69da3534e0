//! Query-string parameters, parsed the way Consul's agent parses them.

use std::time::Duration;

use crate::error::HttpError;

/// The raw query parameters of a request, in order. Consul's flags are
/// often bare (`?recurse`), so presence and value are separate questions.
#[derive(Debug, Default)]
pub struct Params(Vec<(String, String)>);

impl Params {
    pub fn parse(query: Option<&str>) -> Params {
        Params(
            query
                .and_then(|q| serde_urlencoded::from_str(q).ok())
                .unwrap_or_default(),
        )
    }

    pub fn has(&self, name: &str) -> bool {
        self.0.iter().any(|(k, _)| k == name)
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of a repeatable parameter (`?tag=a&tag=b`).
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The query re-encoded with keys sorted, as Go's `url.Values.Encode`
    /// prints it in Consul's "Conflicting flags" message.
    pub fn encode_sorted(&self) -> String {
        let mut pairs = self.0.clone();
        pairs.sort_by(|a, b| a.0.cmp(&b.0));
        serde_urlencoded::to_string(pairs).unwrap_or_default()
    }

    /// An unsigned integer parameter; a bad value fails with Go's
    /// `strconv.ParseUint` text, which Consul passes through as a 500.
    pub fn parse_u64(&self, name: &str) -> Result<Option<u64>, HttpError> {
        match self.get(name) {
            None => Ok(None),
            Some(raw) => parse_uint(raw).map(Some).map_err(HttpError::internal),
        }
    }
}

/// Go's `strconv.ParseUint(raw, 10, 64)`, with its error text.
pub fn parse_uint(raw: &str) -> Result<u64, String> {
    if raw.is_empty() || !raw.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "strconv.ParseUint: parsing {}: invalid syntax",
            go_quote(raw)
        ));
    }
    raw.parse::<u64>().map_err(|_| {
        format!(
            "strconv.ParseUint: parsing {}: value out of range",
            go_quote(raw)
        )
    })
}

fn go_quote(s: &str) -> String {
    format!("{s:?}")
}

/// Which consistency a read asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Consistency {
    /// The default: answered by the leader.
    Leader,
    /// Any server may answer from its own state.
    Stale,
    /// The leader confirms it still leads before answering.
    Consistent,
}

impl Consistency {
    pub fn as_str(self) -> &'static str {
        match self {
            Consistency::Leader => "leader",
            Consistency::Stale => "stale",
            Consistency::Consistent => "consistent",
        }
    }
}

/// Consul's default and maximum blocking wait.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(300);
pub const MAX_WAIT: Duration = Duration::from_secs(600);

/// The options every read endpoint takes.
#[derive(Clone, Copy, Debug)]
pub struct QueryOptions {
    pub consistency: Consistency,
    /// `?max_stale`: how far behind the leader a stale read may be.
    pub max_stale: Option<Duration>,
    /// Block until the result's index exceeds this (0: answer at once).
    pub min_index: u64,
    /// How long to block at most, before jitter.
    pub wait: Duration,
}

impl QueryOptions {
    /// Parses consistency, then `wait` and `index`, in Consul's order and
    /// with its messages.
    pub fn parse(params: &Params) -> Result<QueryOptions, HttpError> {
        let consistency = parse_consistency(params)?;
        let mut wait = DEFAULT_WAIT;
        if let Some(raw) = params.get("wait").filter(|v| !v.is_empty()) {
            let parsed = parse_go_duration(raw)
                .ok_or_else(|| HttpError::bad_request("Invalid wait time"))?;
            if !parsed.is_zero() {
                wait = parsed.min(MAX_WAIT);
            }
        }
        let mut min_index = 0;
        if let Some(raw) = params.get("index").filter(|v| !v.is_empty()) {
            min_index = parse_uint(raw).map_err(|_| HttpError::bad_request("Invalid index"))?;
        }
        let max_stale = params
            .get("max_stale")
            .and_then(parse_go_duration)
            .filter(|d| !d.is_zero());
        Ok(QueryOptions {
            consistency,
            max_stale,
            min_index,
            wait,
        })
    }
}

impl QueryOptions {
    /// What the agent must confirm before this read is answered.
    pub fn read_consistency(&self) -> agent::ReadConsistency {
        match self.consistency {
            Consistency::Leader => agent::ReadConsistency::Leader,
            Consistency::Consistent => agent::ReadConsistency::Consistent,
            Consistency::Stale => agent::ReadConsistency::Stale {
                max_stale: self.max_stale,
            },
        }
    }
}

/// `stale`, `consistent` and `max_stale`, checked as Consul checks them.
pub fn parse_consistency(params: &Params) -> Result<Consistency, HttpError> {
    let mut stale = params.has("stale");
    if let Some(raw) = params.get("max_stale") {
        let parsed = parse_go_duration(raw).ok_or_else(|| {
            HttpError::bad_request(format!("Invalid max_stale value {}", go_quote(raw)))
        })?;
        stale |= !parsed.is_zero();
    }
    let consistent = params.has("consistent");
    match (stale, consistent) {
        (true, true) => Err(HttpError::bad_request(
            "Cannot specify ?stale with ?consistent, conflicting semantics.",
        )),
        (true, false) => Ok(Consistency::Stale),
        (false, true) => Ok(Consistency::Consistent),
        (false, false) => Ok(Consistency::Leader),
    }
}

/// Go's `time.ParseDuration` (the agent's one parser); negative durations
/// count as zero.
pub fn parse_go_duration(raw: &str) -> Option<Duration> {
    let nanos = agent::go_duration::parse_go_duration(raw).ok()?;
    Some(Duration::from_nanos(
        u64::try_from(nanos.max(0)).unwrap_or(u64::MAX),
    ))
}

/// A handler answers for its own datacenter only: calls for a datacenter
/// the WAN pool knows were sent there before reaching it (`remote_dc`), so
/// any other name gets Consul's answer for an unknown datacenter.
pub fn check_datacenter(agent: &agent::Agent, params: &Params) -> Result<(), HttpError> {
    match params.get("dc").filter(|dc| !dc.is_empty()) {
        Some(dc) if !dc.eq_ignore_ascii_case(&agent.config().datacenter) => {
            Err(HttpError::internal("No path to datacenter"))
        }
        _ => Ok(()),
    }
}

/// `node-meta=key:value` filters; all must match.
pub fn node_meta_filters(params: &Params) -> Vec<(String, String)> {
    params
        .get_all("node-meta")
        .map(|f| match f.split_once(':') {
            Some((k, v)) => (k.to_owned(), v.to_owned()),
            None => (f.to_owned(), String::new()),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("10s"), Some(Duration::from_secs(10)));
        assert_eq!(parse_go_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_go_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_go_duration("1.5h"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_go_duration("0"), Some(Duration::ZERO));
        assert_eq!(parse_go_duration("10"), None);
        assert_eq!(parse_go_duration("abc"), None);
        assert_eq!(parse_go_duration(""), None);
    }

    #[test]
    fn uint_errors_read_like_go() {
        assert_eq!(parse_uint("42"), Ok(42));
        assert_eq!(
            parse_uint("abc").unwrap_err(),
            "strconv.ParseUint: parsing \"abc\": invalid syntax"
        );
        assert!(parse_uint("99999999999999999999")
            .unwrap_err()
            .ends_with("value out of range"));
    }

    #[test]
    fn stale_and_consistent_conflict() {
        let params = Params::parse(Some("stale&consistent"));
        assert_eq!(
            parse_consistency(&params).unwrap_err().message,
            "Cannot specify ?stale with ?consistent, conflicting semantics."
        );
    }
}
