//! `/v1/agent/self` and `/v1/agent/leave`.

use std::collections::BTreeMap;
use std::sync::Arc;

use agent::{Agent, CONSUL_COMPATIBLE_VERSION, PRAETOR_VERSION};
use axum::extract::State;
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use state::Table;

use crate::params::Params;
use crate::reply;

pub async fn self_(State(agent): State<Arc<Agent>>, method: Method, uri: Uri) -> Response {
    if let Some(refused) = reply::refuse_method(&method, &["GET"]) {
        return refused;
    }
    let params = Params::parse(uri.query());
    let config = agent.config();
    let snapshot = agent.store().snapshot();
    let (keys, tombstones) = snapshot.kv_counts();
    let body = json!({
        "Config": {
            "Datacenter": config.datacenter,
            "PrimaryDatacenter": config.datacenter,
            "NodeName": config.node_name,
            "NodeID": agent.node_id(),
            "Revision": "praetor",
            "Server": config.server,
            "Version": CONSUL_COMPATIBLE_VERSION,
            "BuildDate": "",
            "PraetorVersion": PRAETOR_VERSION,
        },
        "DebugConfig": {
            "Datacenter": config.datacenter,
            "NodeName": config.node_name,
            "DevMode": config.dev,
            "ServerMode": config.server,
            "Bootstrap": config.bootstrap,
            "KVMaxValueSize": config.kv_max_value_size,
            "TxnMaxReqLen": config.txn_max_req_len,
            "RaftMultiplier": config.raft_multiplier,
            "EnableScriptChecks": config.enable_script_checks,
        },
        "Coord": {"Vec": [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0], "Error": 1.5, "Adjustment": 0.0, "Height": 1e-5},
        "Member": own_member(&agent),
        "Stats": {
            "agent": {"checks": "0", "services": "0", "check_monitors": "0", "check_ttls": "0"},
            "build": {"version": CONSUL_COMPATIBLE_VERSION, "prerelease": "", "revision": "praetor", "praetor": PRAETOR_VERSION},
            "consul": {
                "server": config.server.to_string(),
                "leader": "true",
                "leader_addr": agent.leader_address(),
                "bootstrap": config.bootstrap.to_string(),
                "known_datacenters": "1",
            },
            "raft": {
                "state": "Leader",
                "applied_index": snapshot.index().to_string(),
                "num_peers": "0",
            },
            "kvs": {
                "keys": keys.to_string(),
                "tombstones": tombstones.to_string(),
                "index": snapshot.table_index(Table::Kvs).to_string(),
            },
            "runtime": {
                "os": std::env::consts::OS,
                "arch": std::env::consts::ARCH,
                "uptime_seconds": agent.uptime().as_secs().to_string(),
            },
        },
        "Meta": {"consul-network-segment": ""},
    });
    reply::json(StatusCode::OK, &body, reply::pretty(config.dev, &params))
}

/// This agent as a gossip member, in Consul's `AgentMember` shape. Until
/// the gossip layer lands, it is the only member an agent knows.
fn own_member(agent: &Agent) -> serde_json::Value {
    let config = agent.config();
    let role = if config.server { "consul" } else { "node" };
    let mut tags = BTreeMap::from([
        ("dc", config.datacenter.clone()),
        ("id", agent.node_id().to_owned()),
        ("role", role.to_owned()),
        ("port", config.ports.server.to_string()),
        ("build", format!("{CONSUL_COMPATIBLE_VERSION}:praetor")),
        ("vsn", "2".to_owned()),
        ("vsn_min", "2".to_owned()),
        ("vsn_max", "3".to_owned()),
        ("segment", String::new()),
    ]);
    if config.bootstrap {
        tags.insert("bootstrap", "1".to_owned());
    }
    json!({
        "Name": config.node_name,
        "Addr": agent.advertise_ip().to_string(),
        "Port": config.ports.serf_lan,
        "Tags": tags,
        "Status": 1,
        "ProtocolMin": 1, "ProtocolMax": 5, "ProtocolCur": 2,
        "DelegateMin": 2, "DelegateMax": 5, "DelegateCur": 4,
    })
}

/// `/v1/agent/members`: the LAN members (with `?wan`, a server's WAN
/// member, named `<node>.<dc>` as Consul names them).
pub async fn members(State(agent): State<Arc<Agent>>, method: Method, uri: Uri) -> Response {
    if let Some(refused) = reply::refuse_method(&method, &["GET"]) {
        return refused;
    }
    let params = Params::parse(uri.query());
    let mut member = own_member(&agent);
    if params.has("wan") {
        if !agent.config().server {
            return reply::ok(
                &Vec::<serde_json::Value>::new(),
                reply::pretty(agent.config().dev, &params),
            );
        }
        let config = agent.config();
        member["Name"] = json!(format!("{}.{}", config.node_name, config.datacenter));
        member["Port"] = json!(config.ports.serf_wan);
    }
    reply::ok(&[member], reply::pretty(agent.config().dev, &params))
}

/// `/v1/agent/join/<address>`: joining needs the gossip layer, which this
/// agent does not run yet, so every join fails the way an unreachable
/// address does, with the reason.
pub async fn join(State(_agent): State<Arc<Agent>>, method: Method, uri: Uri) -> Response {
    if let Some(refused) = reply::refuse_method(&method, &["PUT"]) {
        return refused;
    }
    let address = crate::catalog::tail(&uri, "/v1/agent/join/");
    crate::error::HttpError::internal(format!(
        "1 error occurred:\n\t* Failed to join {address}: gossip is not running on this agent yet\n\n"
    ))
    .into_response()
}

/// `/v1/agent/force-leave/<node>`: only this agent is a member, and it is
/// alive, so forcing it out changes nothing (as serf ignores live members).
pub async fn force_leave(State(agent): State<Arc<Agent>>, method: Method, uri: Uri) -> Response {
    if let Some(refused) = reply::refuse_method(&method, &["PUT"]) {
        return refused;
    }
    let node = crate::catalog::tail(&uri, "/v1/agent/force-leave/");
    if node.eq_ignore_ascii_case(&agent.config().node_name) {
        reply::empty_ok()
    } else {
        crate::error::HttpError::internal(format!("agent: No node found with name '{node}'"))
            .into_response()
    }
}

/// Leaves and stops the agent; answers first with an empty 200, which the
/// graceful shutdown lets reach the client.
pub async fn leave(State(agent): State<Arc<Agent>>, method: Method) -> Response {
    if let Some(refused) = reply::refuse_method(&method, &["PUT"]) {
        return refused;
    }
    tracing::info!("agent: leave requested over HTTP");
    agent.leave_cluster();
    reply::empty_ok()
}
