//! `praetor serf query` and `praetor serf reachability`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serf_rpc::{MemberStatus, QueryParams, QueryRecord};

use super::output::Json;
use super::{
    connect, invalid_flag_value, parse_tags, say, usage_error, QueryArgs, ReachabilityArgs,
};

const HELP: &str = "Usage: praetor serf query [options] name payload

  Sends a query through the Serf cluster and prints the acks and responses
  as they arrive.

Options:

  -format                   `text` (the default) or `json`.
  -node=NAME                Only this node answers (repeatable).
  -tag key=regexp           Only nodes whose tag matches answer (repeatable).
  -timeout=\"15s\"            How long to wait for answers (default: the
                            agent's, which grows with the cluster).
  -no-ack                   Do not ask nodes to acknowledge the query.
  -relay-factor             Relay each response through this many extra
                            nodes, for redundancy.
  -rpc-addr=127.0.0.1:7373  The agent's RPC address.
  -rpc-auth=\"\"              The agent's RPC token.";

/// serf's query name for the reachability ping.
const PING_QUERY: &str = "_serf_ping";

/// How the answers are shown.
enum Format {
    /// Printed as they come, then totals.
    Text {
        name: String,
        no_ack: bool,
        acks: usize,
        responses: usize,
    },
    /// Collected, then printed as one JSON object.
    Json {
        acks: Vec<String>,
        responses: BTreeMap<String, String>,
    },
}

impl Format {
    fn started(&self) {
        if let Format::Text { name, .. } = self {
            say(format!("Query '{name}' dispatched"));
        }
    }

    fn record(&mut self, record: QueryRecord) {
        match (self, record) {
            (Format::Text { acks, .. }, QueryRecord::Ack { from }) => {
                *acks += 1;
                say(format!("Ack from '{from}'"));
            }
            (Format::Text { responses, .. }, QueryRecord::Response { from, mut payload }) => {
                *responses += 1;
                if payload.last() == Some(&b'\n') {
                    payload.pop();
                }
                say(format!(
                    "Response from '{from}': {}",
                    String::from_utf8_lossy(&payload)
                ));
            }
            (Format::Json { acks, .. }, QueryRecord::Ack { from }) => acks.push(from),
            (Format::Json { responses, .. }, QueryRecord::Response { from, payload }) => {
                responses.insert(from, String::from_utf8_lossy(&payload).into_owned());
            }
        }
    }

    fn finished(&self) {
        match self {
            Format::Text {
                no_ack,
                acks,
                responses,
                ..
            } => {
                if !no_ack {
                    say(format!("Total Acks: {acks}"));
                }
                say(format!("Total Responses: {responses}"));
            }
            Format::Json { acks, responses } => {
                let acks = if acks.is_empty() {
                    Json::Null
                } else {
                    Json::Array(acks.iter().map(|a| Json::str(a.as_str())).collect())
                };
                let responses = Json::Object(
                    responses
                        .iter()
                        .map(|(k, v)| (k.clone(), Json::str(v.as_str())))
                        .collect(),
                );
                say(
                    Json::Object(vec![("Acks".into(), acks), ("Responses".into(), responses)])
                        .indented(),
                );
            }
        }
    }
}

pub async fn query(a: QueryArgs) -> u8 {
    let timeout = match agent::go_duration::parse_go_duration(&a.timeout) {
        Ok(nanos) => Duration::from_nanos(u64::try_from(nanos).unwrap_or(0)),
        Err(_) => return invalid_flag_value("timeout", &a.timeout),
    };
    let Ok(relay_factor) = a.relay_factor.parse::<i64>() else {
        return invalid_flag_value("relay-factor", &a.relay_factor);
    };
    let filter_tags = match parse_tags(&a.tag) {
        Ok(tags) => tags,
        Err(e) => {
            say(format!("Error: {e}"));
            return 1;
        }
    };
    let (name, payload) = match a.args.as_slice() {
        [] => return usage_error("A query name must be specified.", HELP),
        [name] => (name.clone(), Vec::new()),
        [name, payload] => (name.clone(), payload.as_bytes().to_vec()),
        _ => {
            return usage_error(
                "Too many command line arguments. Only a name and payload must be specified.",
                HELP,
            )
        }
    };
    let Ok(relay_factor) = u8::try_from(relay_factor) else {
        say("Relay factor must be between 0 and 255");
        return 1;
    };
    let client = match connect(&a.rpc).await {
        Ok(c) => c,
        Err(code) => return code,
    };
    let mut format = match a.format.as_str() {
        "text" => Format::Text {
            name: name.clone(),
            no_ack: a.no_ack,
            acks: 0,
            responses: 0,
        },
        "json" => Format::Json {
            acks: Vec::new(),
            responses: BTreeMap::new(),
        },
        other => {
            say(format!("Invalid format: {other}"));
            return 1;
        }
    };
    let params = QueryParams {
        name,
        payload,
        filter_nodes: a.node,
        filter_tags,
        request_ack: !a.no_ack,
        relay_factor,
        timeout,
    };
    let mut records = match client.query(params).await {
        Ok(r) => r,
        Err(e) => {
            say(format!("Error sending query: {e}"));
            return 1;
        }
    };
    format.started();
    loop {
        tokio::select! {
            record = records.recv() => match record {
                Some(record) => format.record(record),
                None => break,
            },
            _ = tokio::signal::ctrl_c() => return 1,
        }
    }
    client.close().await;
    format.finished();
    0
}

pub async fn reachability(a: ReachabilityArgs) -> u8 {
    let client = match connect(&a.rpc).await {
        Ok(c) => c,
        Err(code) => return code,
    };
    let members = match client.members().await {
        Ok(m) => m,
        Err(e) => {
            say(format!("Error getting members: {e}"));
            return 1;
        }
    };
    let live: BTreeSet<String> = members
        .iter()
        .filter(|m| m.status == MemberStatus::Alive)
        .map(|m| m.name.clone())
        .collect();
    say(format!(
        "Total members: {}, live members: {}",
        members.len(),
        live.len()
    ));
    let params = QueryParams {
        name: PING_QUERY.to_owned(),
        request_ack: true,
        ..Default::default()
    };
    let mut records = match client.query(params).await {
        Ok(r) => r,
        Err(e) => {
            say(format!("Error sending query: {e}"));
            return 1;
        }
    };
    say("Starting reachability test...");
    let start = Instant::now();
    let mut last = start;
    let mut acks_from = BTreeSet::new();
    let mut num_acks = 0usize;
    let mut duplicates = false;
    loop {
        let record = tokio::select! {
            record = records.recv() => record,
            _ = tokio::signal::ctrl_c() => {
                say("Test interrupted");
                return 1;
            }
        };
        let Some(record) = record else { break };
        let QueryRecord::Ack { from } = record else {
            continue;
        };
        if a.verbose {
            say(format!("\tAck from '{from}'"));
        }
        num_acks += 1;
        if !acks_from.insert(from.clone()) {
            duplicates = true;
            say(format!("Duplicate response from '{from}'"));
        }
        last = Instant::now();
    }
    client.close().await;
    if a.verbose {
        say(format!(
            "Query time: {:.2} sec, time to last response: {:.2} sec",
            start.elapsed().as_secs_f64(),
            last.duration_since(start).as_secs_f64()
        ));
    }
    let mut code = 0;
    if duplicates {
        say("Duplicate responses means there is a misconfiguration. Verify that node names are unique.");
        code = 1;
    }
    let troubleshooting = "\nTroubleshooting tips:\n\
* Ensure that the bind addr:port is accessible by all other nodes\n\
* If an advertise address is set, ensure it routes to the bind address\n\
* Check that no nodes are behind a NAT\n\
* If nodes are behind firewalls or iptables, check that Serf traffic is permitted (UDP and TCP)\n\
* Verify networking equipment is functional";
    if num_acks == live.len() {
        say("Successfully contacted all live nodes");
    } else if num_acks > live.len() {
        say("Received more acks than live nodes! Acks from non-live nodes:");
        for m in acks_from.difference(&live) {
            say(format!("\t{m}"));
        }
        say("This could mean Serf is detecting false-failures due to a misconfiguration or network issue.");
        say(troubleshooting);
        return 1;
    } else {
        say("Received less acks than live nodes! Missing acks from:");
        for m in live.difference(&acks_from) {
            say(format!("\t{m}"));
        }
        say("This could mean Serf gossip packets are being lost due to a misconfiguration or network issue.");
        say(troubleshooting);
        return 1;
    }
    code
}
