//! The server role: the agent's Raft server, built from its configuration.
//!
//! A dev agent runs a one-server cluster with its log in memory; a server
//! keeps its log, vote and snapshots under `data_dir/raft`, finds the other
//! servers through the LAN gossip pool's tags and talks to them on the
//! server port (`ports.server`, 8300). Both write through the same
//! [`Cluster`].

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use consensus::{
    Cluster, ClusterOptions, RaftNode, RaftOptions, RpcClient, ServerInfo, ServerNode,
};
use serf::{Event, MemberEventKind};
use tokio::net::TcpListener;
use tokio::sync::broadcast::error::RecvError;

use crate::config::Config;
use crate::lan::{LanPool, ServerMeta};

/// Why the server role could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("failed to listen on the server port {addr}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot start raft: {0}")]
    Raft(#[from] consensus::NodeError),
    #[error("cannot keep the node ID in {path}")]
    NodeId {
        path: String,
        source: std::io::Error,
    },
    #[error("a server needs a data_dir")]
    NoDataDir,
}

/// A started server role: the cluster and the bound server port.
pub struct ServerRole {
    pub cluster: Arc<Cluster>,
    /// `None` for a dev agent, which serves no other server.
    pub listener: Option<TcpListener>,
}

/// Consul's Raft timing at `raft_multiplier = 1`, scaled by the multiplier:
/// an election timeout of one second, heartbeats ten times as often.
pub fn raft_options(config: &Config) -> RaftOptions {
    let multiplier = u32::from(config.raft_multiplier.max(1));
    let election = Duration::from_millis(1000) * multiplier;
    let mut options = RaftOptions {
        heartbeat_interval: election / 10,
        election_timeout: election,
        snapshot_threshold: config.raft_snapshot_threshold,
        trailing_logs: config.raft_trailing_logs,
        ..RaftOptions::default()
    };
    if config.dev {
        // The log lives in memory and no follower will ever read it: keep
        // nothing behind the snapshot.
        options.trailing_logs = 0;
    }
    options
}

/// The node ID a data directory keeps (`data_dir/node-id`, as Consul does):
/// read if present, else `wanted` (or `fresh`) written there.
pub fn persistent_node_id(
    dir: &Path,
    wanted: Option<&str>,
    fresh: impl FnOnce() -> String,
) -> Result<String, ServerError> {
    let path = dir.join("node-id");
    let failed = |source| ServerError::NodeId {
        path: path.display().to_string(),
        source,
    };
    // Consul makes the data directory on first start.
    std::fs::create_dir_all(dir).map_err(failed)?;
    match std::fs::read_to_string(&path) {
        Ok(saved) if !saved.trim().is_empty() && wanted.is_none_or(|w| w == saved.trim()) => {
            return Ok(saved.trim().to_lowercase())
        }
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(failed(e)),
    }
    let id = wanted.map(str::to_owned).unwrap_or_else(fresh);
    std::fs::write(&path, &id).map_err(failed)?;
    Ok(id)
}

/// Starts the server role of an agent whose node ID is `node_id`.
pub async fn start(config: &Config, node_id: &str) -> Result<ServerRole, ServerError> {
    let id = consensus::server_id(node_id);
    let options = raft_options(config);
    let advertise = SocketAddr::new(advertise_ip(config), config.ports.server);
    let me = ServerNode {
        addr: advertise.to_string(),
        name: config.node_name.clone(),
        uuid: node_id.to_string(),
    };
    if config.dev {
        let node = RaftNode::in_memory(id, me, options).await?;
        node.bootstrap().await?;
        let cluster = Cluster::start(
            node,
            RpcClient::default(),
            ClusterOptions {
                datacenter: config.datacenter.clone(),
                bootstrap: true,
                hold_timeout: config.rpc_hold_timeout,
                ..ClusterOptions::default()
            },
        );
        // Ready before the first request: a dev agent leads itself at once.
        cluster
            .node()
            .wait_for_leader(Duration::from_secs(10))
            .await?;
        return Ok(ServerRole {
            cluster,
            listener: None,
        });
    }
    let dir = config.data_dir.as_ref().ok_or(ServerError::NoDataDir)?;
    let bind = SocketAddr::new(config.bind_addr, config.ports.server);
    let listener = TcpListener::bind(bind)
        .await
        .map_err(|source| ServerError::Listen { addr: bind, source })?;
    let client = RpcClient::default();
    let raft = RaftNode::open(id, me, &dir.join("raft"), options, client.clone()).await?;
    let cluster = Cluster::start(
        raft,
        client,
        ClusterOptions {
            datacenter: config.datacenter.clone(),
            bootstrap: config.bootstrap || config.bootstrap_expect == Some(1),
            expect: config.bootstrap_expect.unwrap_or(0),
            hold_timeout: config.rpc_hold_timeout,
            cleanup_dead_servers: config.cleanup_dead_servers,
            ..ClusterOptions::default()
        },
    );
    Ok(ServerRole {
        cluster,
        listener: Some(listener),
    })
}

/// The address other servers reach this one at.
pub fn advertise_ip(config: &Config) -> std::net::IpAddr {
    let ip = config.advertise_addr.unwrap_or(config.bind_addr);
    if ip.is_unspecified() {
        std::net::IpAddr::from([127, 0, 0, 1])
    } else {
        ip
    }
}

/// Tells `cluster` of every server the LAN pool knows, now and as servers
/// join or change, so that servers meet through gossip as Consul's do.
/// Runs until the pool stops.
pub async fn discover_servers(lan: Arc<LanPool>, cluster: Arc<Cluster>) {
    let mut events = lan.subscribe();
    let datacenter = cluster.me().datacenter.clone();
    let introduce = |s: &ServerMeta| {
        cluster.discovered(ServerInfo {
            id: consensus::server_id(&s.id),
            uuid: s.id.clone(),
            name: s.name.clone(),
            addr: s.addr.to_string(),
            datacenter: s.datacenter.clone(),
            expect: s.expect,
        })
    };
    lan.servers(&datacenter).iter().for_each(introduce);
    loop {
        match events.recv().await {
            Ok(Event::Member {
                kind: MemberEventKind::Join | MemberEventKind::Update,
                members,
            }) => {
                members
                    .iter()
                    .filter_map(ServerMeta::of)
                    .for_each(|s| introduce(&s));
            }
            Ok(_) => {}
            Err(RecvError::Lagged(_)) => lan.servers(&datacenter).iter().for_each(introduce),
            Err(RecvError::Closed) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_multiplier_scales_raft_timing() {
        let config = Config {
            raft_multiplier: 5,
            ..Config::default()
        };
        let options = raft_options(&config);
        assert_eq!(options.election_timeout, Duration::from_secs(5));
        assert_eq!(options.heartbeat_interval, Duration::from_millis(500));
    }

    #[test]
    fn the_node_id_is_kept_in_the_data_dir() {
        let dir = tempfile::tempdir().unwrap();
        let first = persistent_node_id(dir.path(), None, || "a-fresh-id".into()).unwrap();
        assert_eq!(first, "a-fresh-id");
        let again = persistent_node_id(dir.path(), None, || "another".into()).unwrap();
        assert_eq!(again, "a-fresh-id");
    }
}
