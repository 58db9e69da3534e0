//! `praetor operator raft list-peers|remove-peer|transfer-leader`, with
//! Consul's tables, messages and exit codes.

use hyper::Method;
use serde::Deserialize;

use crate::catalog_cmd::{
    block_on, call, columnize, connect, fail, get_json, no_arguments, push_query, Failure,
};
use crate::cli::{OperatorCommand, OperatorRaftArgs, OperatorRaftCommand};

pub fn run(command: OperatorCommand) -> u8 {
    match command {
        OperatorCommand::Raft(OperatorRaftCommand::ListPeers(a)) => block_on(list_peers(a)),
        OperatorCommand::Raft(OperatorRaftCommand::RemovePeer(a)) => block_on(remove_peer(a)),
        OperatorCommand::Raft(OperatorRaftCommand::TransferLeader(a)) => {
            block_on(transfer_leader(a))
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RaftServer {
    #[serde(rename = "ID")]
    id: String,
    node: String,
    address: String,
    leader: bool,
    #[serde(default)]
    protocol_version: String,
    voter: bool,
    #[serde(default)]
    last_index: u64,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RaftConfiguration {
    servers: Vec<RaftServer>,
}

/// The peer table: who leads, who votes, and how far each trails.
fn peer_table(servers: &[RaftServer]) -> String {
    let leader_index = servers.iter().find(|s| s.leader).map(|s| s.last_index);
    let mut rows = vec![[
        "Node",
        "ID",
        "Address",
        "State",
        "Voter",
        "RaftProtocol",
        "Commit Index",
        "Trails Leader By",
    ]
    .map(String::from)
    .to_vec()];
    for s in servers {
        let trails = match (s.leader, leader_index) {
            (true, _) => "-".to_owned(),
            (false, Some(lead)) => format!("{} commits", lead.saturating_sub(s.last_index)),
            (false, None) => "-".to_owned(),
        };
        rows.push(vec![
            s.node.clone(),
            s.id.clone(),
            s.address.clone(),
            if s.leader { "leader" } else { "follower" }.to_owned(),
            s.voter.to_string(),
            if s.protocol_version.is_empty() {
                "<=1".to_owned()
            } else {
                s.protocol_version.clone()
            },
            s.last_index.to_string(),
            trails,
        ]);
    }
    columnize(&rows)
}

async fn list_peers(a: OperatorRaftArgs) -> Result<u8, Failure> {
    no_arguments(&a.args)?;
    let client = connect(&a.http)?;
    let (config, _): (RaftConfiguration, _) = get_json(&client, "/v1/operator/raft/configuration")
        .await
        .map_err(|e| Failure(format!("Error getting peers: {e}")))?;
    println!("{}", peer_table(&config.servers));
    Ok(0)
}

async fn remove_peer(a: OperatorRaftArgs) -> Result<u8, Failure> {
    no_arguments(&a.args)?;
    let (name, value) = match (&a.id, &a.address) {
        (Some(_), Some(_)) => return fail("Only one of -id or -address should be specified"),
        (None, None) => return fail("Missing peer identifier (-id or -address)"),
        (Some(id), None) => ("id", id),
        (None, Some(address)) => ("address", address),
    };
    let client = connect(&a.http)?;
    let mut query = String::new();
    push_query(&mut query, name, value);
    call(
        &client,
        Method::DELETE,
        &format!("/v1/operator/raft/peer{query}"),
        Vec::new(),
    )
    .await
    .map_err(|e| Failure(format!("Error removing peer: {e}")))?;
    println!("Removed peer with {name} \"{value}\"");
    Ok(0)
}

async fn transfer_leader(a: OperatorRaftArgs) -> Result<u8, Failure> {
    no_arguments(&a.args)?;
    let client = connect(&a.http)?;
    let mut query = String::new();
    if let Some(id) = &a.id {
        push_query(&mut query, "id", id);
    }
    #[derive(Deserialize)]
    struct Reply {
        #[serde(rename = "Success")]
        success: bool,
    }
    let answer = call(
        &client,
        Method::POST,
        &format!("/v1/operator/raft/transfer-leader{query}"),
        Vec::new(),
    )
    .await
    .map_err(|e| {
        Failure(format!(
            "Error transfering leadership: Failed to transfer leadership {e}"
        ))
    })?;
    let reply: Reply = serde_json::from_slice(&answer.body)
        .map_err(|e| Failure(format!("Error transfering leadership: {e}")))?;
    if !reply.success {
        return fail("Error transfering leadership: Failed to transfer leadership");
    }
    println!("Success");
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_peer_table_shows_how_far_followers_trail() {
        let server = |node: &str, leader: bool, last_index: u64| RaftServer {
            id: format!("{node}-id"),
            node: node.to_owned(),
            address: format!("{node}:8300"),
            leader,
            protocol_version: "3".to_owned(),
            voter: true,
            last_index,
        };
        let table = peer_table(&[server("a", true, 20), server("b", false, 17)]);
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[0].starts_with("Node"));
        let cells: Vec<&str> = lines[1].split_whitespace().collect();
        assert_eq!(cells[3..], ["leader", "true", "3", "20", "-"]);
        assert!(lines[2].ends_with("3 commits"), "{table}");
    }
}
