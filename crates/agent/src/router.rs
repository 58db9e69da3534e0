//! How a client agent reaches the servers. It keeps no state of the
//! catalog: every write and every API call goes to one server of its
//! datacenter, found from the LAN pool's tags. The agent sticks to one
//! server (so its connection is reused) for a while, then moves to another
//! so clients spread over the servers; a server that cannot be reached is
//! dropped at once and the next one is tried.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use consensus::{
    paths, ApiReply, ApiRequest, CallError, DnsRead, DnsRows, NodeStateReply, RpcClient,
    WriteReply, WriteRequest,
};
use rand::seq::SliceRandom;
use state::{Command, Outcome, ReleasedLock};

use crate::lan::LanPool;

/// How long a client stays with one server before moving on (Consul
/// rebalances every two minutes or so, scaled by the cluster's size).
const REBALANCE_AFTER: Duration = Duration::from_secs(120);
/// How long a forwarded API call may take: a blocking query waits up to
/// ten minutes plus a sixteenth of it.
const API_TIMEOUT: Duration = Duration::from_secs(11 * 60);
/// How long a DNS catalog read may take: resolvers give up after a few
/// seconds anyway.
const DNS_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a forwarded call failed.
#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    /// Consul's `structs.ErrNoServers`.
    #[error("No known Consul servers")]
    NoServers,
    #[error("No cluster leader")]
    NoLeader,
    #[error("leadership lost while committing log")]
    LeadershipLost,
    #[error("rpc error: {0}")]
    Rpc(String),
}

/// A write's result, as the leader applied it.
#[derive(Debug)]
pub struct RoutedWrite {
    pub index: u64,
    pub outcome: Outcome,
    pub released: Vec<ReleasedLock>,
}

#[derive(Debug, Clone, Copy)]
struct Preferred {
    addr: SocketAddr,
    until: Instant,
}

/// The client agent's way to the servers.
pub struct ServerRouter {
    lan: Arc<LanPool>,
    datacenter: String,
    client: RpcClient,
    preferred: Mutex<Option<Preferred>>,
    /// How long to wait for a server to appear (Consul's `rpc_hold_timeout`).
    hold_timeout: Duration,
}

impl ServerRouter {
    pub fn new(lan: Arc<LanPool>, datacenter: String, hold_timeout: Duration) -> ServerRouter {
        ServerRouter {
            lan,
            datacenter,
            client: RpcClient::default(),
            preferred: Mutex::new(None),
            hold_timeout,
        }
    }

    /// The servers to try, the current one first, the others shuffled.
    fn candidates(&self) -> Vec<SocketAddr> {
        let mut servers: Vec<SocketAddr> = self
            .lan
            .servers(&self.datacenter)
            .iter()
            .map(|s| s.addr)
            .collect();
        servers.shuffle(&mut rand::rng());
        let preferred = *self
            .preferred
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(p) = preferred.filter(|p| p.until > Instant::now()) {
            if let Some(i) = servers.iter().position(|a| *a == p.addr) {
                servers.swap(0, i);
            }
        }
        servers
    }

    fn settle_on(&self, addr: SocketAddr) {
        let mut preferred = self
            .preferred
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if preferred.is_none_or(|p| p.addr != addr || p.until <= Instant::now()) {
            *preferred = Some(Preferred {
                addr,
                until: Instant::now() + REBALANCE_AFTER,
            });
        }
    }

    fn forget(&self, addr: SocketAddr) {
        let mut preferred = self
            .preferred
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if preferred.is_some_and(|p| p.addr == addr) {
            *preferred = None;
        }
    }

    /// The server this client currently talks to, if any.
    pub fn current(&self) -> Option<SocketAddr> {
        self.candidates().first().copied()
    }

    /// Sends one call to a server, moving on to the next when one cannot
    /// be reached (the call was never sent, so trying again is safe), and
    /// waiting up to the hold timeout for a server to be known.
    async fn call<Q, A>(&self, path: &str, request: &Q, timeout: Duration) -> Result<A, RouteError>
    where
        Q: serde::Serialize,
        A: serde::de::DeserializeOwned,
    {
        let deadline = Instant::now() + self.hold_timeout;
        let mut pause = Duration::from_millis(50);
        loop {
            for addr in self.candidates() {
                match self
                    .client
                    .call(&addr.to_string(), path, request, timeout)
                    .await
                {
                    Ok(answer) => {
                        self.settle_on(addr);
                        return Ok(answer);
                    }
                    Err(CallError::Unreachable { reason, .. }) => {
                        tracing::debug!(server = %addr, %reason, "server unreachable, trying another");
                        self.forget(addr);
                    }
                    Err(error) => {
                        self.forget(addr);
                        return Err(RouteError::Rpc(error.to_string()));
                    }
                }
            }
            if Instant::now() + pause > deadline {
                return Err(RouteError::NoServers);
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(500));
        }
    }

    /// Commits `command` through a server (which finds the leader).
    pub async fn write(&self, command: Command) -> Result<RoutedWrite, RouteError> {
        let request = WriteRequest { command };
        // The server itself waits up to its hold timeout for a leader.
        let timeout = self.hold_timeout + Duration::from_secs(5);
        match self.call(paths::CLIENT_WRITE, &request, timeout).await? {
            WriteReply::Written {
                index,
                outcome,
                released,
            } => Ok(RoutedWrite {
                index,
                outcome,
                released,
            }),
            WriteReply::NotLeader { .. } => Err(RouteError::NoLeader),
            WriteReply::LeadershipLost => Err(RouteError::LeadershipLost),
            WriteReply::Failed(reason) => Err(RouteError::Rpc(reason)),
        }
    }

    /// `node`'s services and checks in the catalog.
    pub async fn node_state(&self, node: &str) -> Result<NodeStateReply, RouteError> {
        let timeout = self.hold_timeout + Duration::from_secs(5);
        self.call(paths::NODE_STATE, &node, timeout).await
    }

    /// Reads what this agent's DNS interface needs from a server's catalog.
    pub async fn dns_read(&self, read: &DnsRead) -> Result<DnsRows, RouteError> {
        self.call(paths::DNS_READ, read, DNS_TIMEOUT).await
    }

    /// Has a server answer an HTTP API call with its own API.
    pub async fn api(&self, request: &ApiRequest) -> Result<ApiReply, RouteError> {
        self.call(paths::API, request, API_TIMEOUT).await
    }
}
