//! `/v1/agent/self` and `/v1/agent/leave`.

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
                "known_datacenters": agent
                    .federation()
                    .map_or(1, |f| f.datacenters_by_distance().len())
                    .to_string(),
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

/// A gossip member in Consul's `AgentMember` shape (`Status` is serf's
/// number: 1 alive, 2 leaving, 3 left, 4 failed).
fn member_json(m: &serf::Member) -> serde_json::Value {
    json!({
        "Name": m.name,
        "Addr": m.addr.to_string(),
        "Port": m.port,
        "Tags": m.tags,
        "Status": m.status.wire(),
        "ProtocolMin": m.vsn[0], "ProtocolMax": m.vsn[1], "ProtocolCur": m.vsn[2],
        "DelegateMin": m.vsn[3], "DelegateMax": m.vsn[4], "DelegateCur": m.vsn[5],
    })
}

/// This agent as a member: the pool's view of it, or what it would
/// gossip when no pool runs.
fn own_member(agent: &Agent) -> serde_json::Value {
    if let Some(m) = agent.lan().and_then(|lan| lan.local_member()) {
        return member_json(&m);
    }
    let config = agent.config();
    member_json(&serf::Member {
        name: config.node_name.clone(),
        addr: agent.advertise_ip(),
        port: config.ports.serf_lan,
        tags: agent::lan::lan_tags(config, agent.node_id()),
        status: serf::MemberStatus::Alive,
        vsn: [1, 5, 2, 2, 5, 4],
    })
}

/// `/v1/agent/members`: the LAN pool's members, whatever their status;
/// with `?wan`, a server's WAN pool, whose members are named `<node>.<dc>`
/// (a client agent, or a server whose WAN port is -1, is in no WAN pool).
pub async fn members(State(agent): State<Arc<Agent>>, method: Method, uri: Uri) -> Response {
    if let Some(refused) = reply::refuse_method(&method, &["GET"]) {
        return refused;
    }
    let params = Params::parse(uri.query());
    let pretty = reply::pretty(agent.config().dev, &params);
    // Consul's API client sends `wan=1`; a bare `?wan` counts too.
    if params.has("wan") {
        if params
            .get("segment")
            .is_some_and(|s| !s.is_empty() && s != "_all")
        {
            return crate::error::HttpError::bad_request("Cannot provide a segment with wan=true")
                .into_response();
        }
        // A client, or a server with `ports.serf_wan = -1`, is in no WAN
        // pool: Consul answers its nil member list, `null`.
        let Some(wan) = agent.wan() else {
            return reply::ok(&serde_json::Value::Null, pretty);
        };
        return reply::ok(&sorted_members(wan.members()), pretty);
    }
    let Some(lan) = agent.lan() else {
        return reply::ok(&[own_member(&agent)], pretty);
    };
    reply::ok(&sorted_members(lan.members()), pretty)
}

fn sorted_members(mut members: Vec<serf::Member>) -> Vec<serde_json::Value> {
    members.sort_by(|a, b| a.name.cmp(&b.name));
    members.iter().map(member_json).collect()
}

fn join_failed(address: &str, error: &str) -> Response {
    crate::error::HttpError::internal(format!(
        "1 error occurred:\n\t* Failed to join {address}: {error}\n\n"
    ))
    .into_response()
}

/// `/v1/agent/join/<address>[?wan]`: joins the LAN pool (with `wan`, a
/// server's WAN pool) through the agent at `address` (the pool's port
/// when the address names none).
pub async fn join(State(agent): State<Arc<Agent>>, method: Method, uri: Uri) -> Response {
    if let Some(refused) = reply::refuse_method(&method, &["PUT"]) {
        return refused;
    }
    let address = crate::catalog::tail(&uri, "/v1/agent/join/").to_owned();
    let pool = if Params::parse(uri.query()).has("wan") {
        match agent.wan() {
            Some(wan) => wan,
            None => {
                let why = if agent.cluster().is_some() {
                    "WAN Federation is disabled"
                } else {
                    "Must be a server to join WAN cluster"
                };
                return crate::error::HttpError::internal(why).into_response();
            }
        }
    } else {
        match agent.lan() {
            Some(lan) => lan,
            None => return join_failed(&address, "this agent runs no gossip pool"),
        }
    };
    match pool.join(std::slice::from_ref(&address)).await {
        Ok(_) => reply::empty_ok(),
        Err(error) => join_failed(&address, &error),
    }
}

/// `/v1/agent/force-leave/<node>[?prune][&wan]`: marks a failed member as
/// left (a live member refutes it, as in serf); `prune` forgets it at
/// once. Without `wan`, a server also removes the node's WAN member
/// (`<node>.<dc>`), as Consul's do; with it, only the WAN member.
pub async fn force_leave(State(agent): State<Arc<Agent>>, method: Method, uri: Uri) -> Response {
    if let Some(refused) = reply::refuse_method(&method, &["PUT"]) {
        return refused;
    }
    let node = crate::catalog::tail(&uri, "/v1/agent/force-leave/").to_owned();
    let params = Params::parse(uri.query());
    let prune = params.has("prune");
    let wan_name = |wan: &agent::lan::WanPool| {
        let qualified = format!("{node}.{}", agent.config().datacenter);
        if wan.members().iter().any(|m| m.name == node) {
            node.clone()
        } else {
            qualified
        }
    };
    let result = if params.has("wan") {
        match agent.wan() {
            Some(wan) => wan.force_leave(&wan_name(wan), prune).await,
            None => Err("Must be a server to force-leave a node from the WAN cluster".to_owned()),
        }
    } else {
        let result = match agent.lan() {
            Some(lan) => lan.force_leave(&node, prune).await,
            None if node.eq_ignore_ascii_case(&agent.config().node_name) => Ok(()),
            None => Err(format!("agent: No node found with name '{node}'")),
        };
        if let Some(wan) = agent.wan() {
            let name = wan_name(wan);
            if wan.members().iter().any(|m| m.name == name) {
                if let Err(error) = wan.force_leave(&name, prune).await {
                    tracing::warn!(%error, node = %name, "could not force the WAN member out");
                }
            }
        }
        result
    };
    match result {
        Ok(()) => reply::empty_ok(),
        Err(error) => crate::error::HttpError::internal(error).into_response(),
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
