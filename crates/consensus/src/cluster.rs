//! This server's part in the cluster of servers: finding the others,
//! forming the cluster (`bootstrap`, `bootstrap_expect`), forwarding
//! writes and read confirmations to the leader, the leader's upkeep of the
//! configuration (new servers become voters, dead ones are cleaned up),
//! and the answers to other servers' messages on the server port.
//!
//! Servers find each other by saying hello ([`wire::ServerInfo`]) on the
//! server port to the configured join addresses and then to every server
//! they have heard of. Only a hello received from a server itself, or its
//! answer to ours, counts as contact: a server named by a third party is
//! known but not yet alive, so a server that left is not brought back by
//! gossip about it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use state::Command;
use tokio::task::JoinHandle;

use crate::node::{Member, RaftNode, ReadError, WriteError, Written};
use crate::rpc::client::CallError;
use crate::rpc::wire::{
    self, ConfigServer, ConfigurationReply, ConfigurationView, HelloReply, MembershipReply,
    MembershipRequest, NodeStateReply, ReadIndexReply, ReadMode, ServerInfo, WireVote, WriteReply,
    WriteRequest,
};
use crate::rpc::{paths, RpcClient};
use crate::types::{RaftSnapshot, ServerNode};

/// How this server joins and serves the cluster.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    pub datacenter: String,
    /// Consul's `bootstrap`: form a cluster of this server alone.
    pub bootstrap: bool,
    /// Consul's `bootstrap_expect` (0: none): form the cluster once this
    /// many servers know each other and none has a configuration yet.
    pub expect: u32,
    /// Other servers' server-port addresses to say hello to.
    pub join: Vec<String>,
    /// Consul's `rpc_hold_timeout`: how long a write or read waits for a
    /// leader before failing.
    pub hold_timeout: Duration,
    /// How often servers greet each other and the leader reconciles the
    /// configuration.
    pub reconcile_interval: Duration,
    /// Consul's `autopilot.cleanup_dead_servers`.
    pub cleanup_dead_servers: bool,
    /// A voter silent this long is dead, for the cleanup.
    pub dead_after: Duration,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            datacenter: "dc1".to_string(),
            bootstrap: false,
            expect: 0,
            join: Vec::new(),
            hold_timeout: Duration::from_secs(7),
            reconcile_interval: Duration::from_secs(1),
            cleanup_dead_servers: true,
            dead_after: Duration::from_secs(30),
        }
    }
}

/// Why a cluster operation failed, with Consul's wording where a client
/// sees it.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// No leader was found within the hold timeout; nothing was written.
    #[error("No cluster leader")]
    NoLeader,
    /// The write was appended, then leadership moved: it may or may not
    /// take effect.
    #[error("leadership lost while committing log")]
    LeadershipLost,
    /// The leader did not answer in time: the write may or may not take
    /// effect.
    #[error("rpc error: {0}")]
    Rpc(String),
    #[error("raft stopped: {0}")]
    Stopped(String),
    #[error("{0}")]
    Refused(String),
}

#[derive(Debug, Clone)]
struct Known {
    info: ServerInfo,
    /// When this server last heard from it directly.
    heard: Option<Instant>,
    /// Whether it said it has a configuration.
    initialized: bool,
}

/// How long the leader waits for a new server to catch up as a learner
/// before giving up for this round.
const ADD_VOTER_TIMEOUT: Duration = Duration::from_secs(30);

/// One server of the cluster.
pub struct Cluster {
    node: RaftNode,
    me: ServerInfo,
    client: RpcClient,
    options: ClusterOptions,
    known: Mutex<BTreeMap<u64, Known>>,
    /// Servers that left or were removed, and when: a late hello from one
    /// must not make it a voter again straight away.
    departed: Mutex<BTreeMap<u64, Instant>>,
    /// The term this server last began to lead in, and when it noticed:
    /// a new leader gives every voter a full `dead_after` to be heard from
    /// before calling it dead.
    leading_since: Mutex<Option<(u64, Instant)>>,
    /// When the leader last sent this server entries or a heartbeat.
    last_contact: Mutex<Option<Instant>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

/// The Raft id of the server with node ID `uuid`: its first 64 bits (a
/// hash of the text for an ID that is not a UUID).
pub fn server_id(uuid: &str) -> u64 {
    let hex: String = uuid.chars().filter(|c| *c != '-').take(16).collect();
    match u64::from_str_radix(&hex, 16) {
        Ok(id) if hex.len() == 16 => id,
        _ => uuid.bytes().fold(0xcbf2_9ce4_8422_2325, |h: u64, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        }),
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Cluster {
    /// Wraps `node` (already opened with a client of the server port) and
    /// starts finding the other servers.
    pub fn start(node: RaftNode, client: RpcClient, options: ClusterOptions) -> Arc<Cluster> {
        let ServerNode { addr, name, uuid } = node.node().clone();
        let me = ServerInfo {
            id: node.id(),
            uuid,
            name,
            addr,
            datacenter: options.datacenter.clone(),
            expect: options.expect,
        };
        let cluster = Arc::new(Cluster {
            node,
            me,
            client,
            options,
            known: Mutex::new(BTreeMap::new()),
            departed: Mutex::new(BTreeMap::new()),
            leading_since: Mutex::new(None),
            last_contact: Mutex::new(None),
            tasks: Mutex::new(Vec::new()),
        });
        let weak = Arc::downgrade(&cluster);
        let interval = cluster.options.reconcile_interval;
        let upkeep = tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(cluster) = weak.upgrade() else {
                    return;
                };
                cluster.upkeep().await;
            }
        });
        lock(&cluster.tasks).push(upkeep);
        cluster
    }

    pub fn node(&self) -> &RaftNode {
        &self.node
    }

    pub fn me(&self) -> &ServerInfo {
        &self.me
    }

    /// One round of greeting, forming and (on the leader) reconciling.
    async fn upkeep(&self) {
        self.greet().await;
        if let Err(error) = self.form().await {
            tracing::warn!(%error, "cannot form the cluster yet");
        }
        let status = self.node.status();
        if status.leader == Some(self.me.id) {
            self.note_leading(status.term);
            self.reconcile().await;
        }
    }

    fn note_leading(&self, term: u64) {
        let mut since = lock(&self.leading_since);
        if since.is_none_or(|(t, _)| t != term) {
            *since = Some((term, Instant::now()));
        }
    }

    /// Says hello to the join addresses and every known server.
    async fn greet(&self) {
        let mut targets: Vec<String> = self.options.join.clone();
        targets.extend(lock(&self.known).values().map(|k| k.info.addr.clone()));
        targets.sort();
        targets.dedup();
        targets.retain(|a| *a != self.me.addr);
        let calls = targets.into_iter().map(|addr| async move {
            let reply: Result<HelloReply, _> = self
                .client
                .call(&addr, paths::HELLO, &self.me, Duration::from_secs(2))
                .await;
            (addr, reply)
        });
        for (addr, reply) in futures_util::future::join_all(calls).await {
            match reply {
                Ok(reply) => self.heard_back(reply),
                Err(error) => tracing::debug!(%addr, %error, "hello unanswered"),
            }
        }
    }

    /// A server found by other means than a hello (the LAN gossip pool's
    /// tags): greeted from the next round on. A new address replaces the
    /// old one.
    pub fn discovered(&self, info: ServerInfo) {
        if info.id == self.me.id || info.datacenter != self.me.datacenter {
            return;
        }
        let mut known = lock(&self.known);
        match known.get_mut(&info.id) {
            Some(k) => k.info = info,
            None => {
                known.insert(
                    info.id,
                    Known {
                        info,
                        heard: None,
                        initialized: false,
                    },
                );
            }
        }
    }

    fn heard_back(&self, reply: HelloReply) {
        let mut known = lock(&self.known);
        if reply.me.id != self.me.id {
            known.insert(
                reply.me.id,
                Known {
                    info: reply.me,
                    heard: Some(Instant::now()),
                    initialized: reply.initialized,
                },
            );
        }
        for info in reply.known {
            if info.id == self.me.id || info.datacenter != self.me.datacenter {
                continue;
            }
            known.entry(info.id).or_insert(Known {
                info,
                heard: None,
                initialized: false,
            });
        }
    }

    fn alive(&self) -> Vec<Known> {
        let now = Instant::now();
        let mut departed = lock(&self.departed);
        departed.retain(|_, at| now.duration_since(*at) < self.options.dead_after);
        lock(&self.known)
            .values()
            .filter(|k| {
                k.heard
                    .is_some_and(|h| now.duration_since(h) < self.options.dead_after)
                    && !departed.contains_key(&k.info.id)
            })
            .cloned()
            .collect()
    }

    /// Forms the cluster if this server is to and it has no configuration.
    async fn form(&self) -> Result<(), ClusterError> {
        if !self.options.bootstrap && self.options.expect == 0 {
            return Ok(());
        }
        if self.initialized().await? {
            return Ok(());
        }
        let mut voters = BTreeMap::from([(self.me.id, self.server_node())]);
        if !self.options.bootstrap {
            let alive: Vec<Known> = self
                .alive()
                .into_iter()
                .filter(|k| k.info.datacenter == self.me.datacenter)
                .collect();
            if alive.iter().any(|k| k.initialized) {
                // A cluster exists: its leader adds this server.
                return Ok(());
            }
            for k in &alive {
                if k.info.expect != 0 && k.info.expect != self.options.expect {
                    tracing::error!(
                        server = %k.info.name,
                        theirs = k.info.expect,
                        ours = self.options.expect,
                        "servers disagree on bootstrap_expect"
                    );
                    return Ok(());
                }
            }
            if alive.len() + 1 < self.options.expect as usize {
                return Ok(());
            }
            voters.extend(alive.iter().map(|k| (k.info.id, node_of(&k.info))));
        }
        let names: Vec<&str> = voters.values().map(|n| n.name.as_str()).collect();
        tracing::info!(servers = ?names, "forming the cluster");
        self.node
            .initialize(voters)
            .await
            .map(|_| ())
            .map_err(|e| ClusterError::Stopped(e.to_string()))
    }

    async fn initialized(&self) -> Result<bool, ClusterError> {
        self.node
            .is_initialized()
            .await
            .map_err(|e| ClusterError::Stopped(e.to_string()))
    }

    fn server_node(&self) -> ServerNode {
        node_of(&self.me)
    }

    /// Leader upkeep: living servers become voters; with cleanup on, voters
    /// silent for `dead_after` are removed while the rest stay a majority.
    async fn reconcile(&self) {
        let members = self.node.members();
        for k in self.alive() {
            if k.info.datacenter != self.me.datacenter {
                continue;
            }
            let node = node_of(&k.info);
            let current = members.iter().find(|m| m.id == k.info.id);
            if current.is_some_and(|m| m.voter && m.node == node) {
                continue;
            }
            tracing::info!(server = %k.info.name, addr = %k.info.addr, "adding server as a voter");
            // A learner that never catches up (it died meanwhile) must not
            // hold up the upkeep.
            let added =
                tokio::time::timeout(ADD_VOTER_TIMEOUT, self.node.add_voter(k.info.id, node));
            match added.await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => {
                    tracing::warn!(server = %k.info.name, %error, "cannot add server");
                    return;
                }
                Err(_) => {
                    tracing::warn!(server = %k.info.name, "server did not catch up in time");
                    return;
                }
            }
        }
        if !self.options.cleanup_dead_servers {
            return;
        }
        let now = Instant::now();
        let leading_since = lock(&self.leading_since).map_or(now, |(_, at)| at);
        // Silent since the later of its last hello and this leader's start.
        let heard: BTreeMap<u64, Option<Instant>> = lock(&self.known)
            .iter()
            .map(|(id, k)| (*id, k.heard))
            .collect();
        let silent = |id: &u64| {
            let last = heard
                .get(id)
                .copied()
                .flatten()
                .map_or(leading_since, |h| h.max(leading_since));
            now.duration_since(last) >= self.options.dead_after
        };
        let members = self.node.members();
        let voters: Vec<&Member> = members.iter().filter(|m| m.voter).collect();
        let dead: Vec<&Member> = voters
            .iter()
            .copied()
            .filter(|m| m.id != self.me.id && silent(&m.id))
            .collect();
        // Autopilot's rule: only while the healthy voters stay a majority.
        if dead.is_empty() || dead.len() * 2 >= voters.len() {
            return;
        }
        for m in dead {
            tracing::info!(server = %m.node.name, "removing dead server");
            if let Err(error) = self.node.remove_server(m.id).await {
                tracing::warn!(server = %m.node.name, %error, "cannot remove dead server");
                return;
            }
            // Not departed: if it comes back and says hello, it is a
            // voter again.
            lock(&self.known).remove(&m.id);
        }
    }

    pub fn is_leader(&self) -> bool {
        self.node.status().leader == Some(self.me.id)
    }

    /// The leader's server-port address, if known. A leader that no quorum
    /// has acknowledged within its lease does not name itself: another may
    /// have been elected (Consul's leader steps down then).
    pub fn leader_addr(&self) -> Option<String> {
        let status = self.node.status();
        let leader = status.leader?;
        if leader == self.me.id {
            let acknowledged = self.sole_voter()
                || status
                    .quorum_ack_age
                    .is_some_and(|age| age <= self.node.lease());
            return acknowledged.then(|| self.me.addr.clone());
        }
        self.node
            .members()
            .into_iter()
            .find(|m| m.id == leader)
            .map(|m| m.node.addr)
    }

    /// The server-port addresses of every voter.
    pub fn peers(&self) -> Vec<String> {
        self.node
            .members()
            .into_iter()
            .filter(|m| m.voter)
            .map(|m| m.node.addr)
            .collect()
    }

    /// How long since this server heard from the leader (zero on the
    /// leader itself); `None` if never.
    pub fn last_contact(&self) -> Option<Duration> {
        if self.is_leader() {
            return Some(Duration::ZERO);
        }
        lock(&self.last_contact).map(|t| t.elapsed())
    }

    /// Replicates `command` through the leader, wherever it is, waiting up
    /// to the hold timeout for one to be elected.
    pub async fn write(&self, command: Command) -> Result<Written, ClusterError> {
        let deadline = Instant::now() + self.options.hold_timeout;
        let mut pause = Duration::from_millis(10);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let attempt = tokio::time::timeout(
                left.max(Duration::from_secs(1)),
                self.node.write(command.clone()),
            );
            let Ok(attempt) = attempt.await else {
                // Appended here as leader, but no quorum took it in time.
                return Err(ClusterError::Rpc(
                    "timed out waiting for a quorum to commit the write".to_string(),
                ));
            };
            let leader = match attempt {
                Ok(written) => return Ok(written),
                Err(WriteError::NotLeader { leader }) => leader.and_then(|l| l.addr),
                Err(WriteError::LeadershipLost { .. }) => return Err(ClusterError::LeadershipLost),
                Err(WriteError::Stopped(e)) => return Err(ClusterError::Stopped(e)),
                Err(WriteError::Unexpected(e)) => return Err(ClusterError::Refused(e)),
            };
            if let Some(addr) = leader.filter(|a| *a != self.me.addr) {
                let request = WriteRequest {
                    command: command.clone(),
                };
                let left = deadline.saturating_duration_since(Instant::now());
                let reply = self
                    .client
                    .call(
                        &addr,
                        paths::WRITE,
                        &request,
                        left.max(Duration::from_secs(1)),
                    )
                    .await;
                match reply {
                    Ok(WriteReply::Written {
                        index,
                        outcome,
                        released,
                    }) => {
                        return Ok(Written {
                            index,
                            outcome,
                            released,
                        })
                    }
                    Ok(WriteReply::NotLeader { .. }) => {}
                    Ok(WriteReply::LeadershipLost) => return Err(ClusterError::LeadershipLost),
                    Ok(WriteReply::Failed(e)) => return Err(ClusterError::Refused(e)),
                    // Never sent: safe to try again.
                    Err(CallError::Unreachable { .. }) => {}
                    Err(e) => return Err(ClusterError::Rpc(e.to_string())),
                }
            }
            if Instant::now() + pause > deadline {
                return Err(ClusterError::NoLeader);
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(200));
        }
    }

    /// Waits until this server's state reflects every write acknowledged
    /// before the call, confirmed by the leader as `mode` says.
    pub async fn read_barrier(&self, mode: ReadMode) -> Result<(), ClusterError> {
        let deadline = Instant::now() + self.options.hold_timeout;
        let mut pause = Duration::from_millis(10);
        loop {
            let status = self.node.status();
            if status.leader == Some(self.me.id) && self.sole_voter() {
                // Nothing can commit anywhere else.
                return Ok(());
            }
            let leader = match self.node.read_index(mode).await {
                Ok(index) => return self.wait_applied(index, deadline).await,
                Err(ReadError::NotLeader { leader }) => leader.and_then(|l| l.addr),
                Err(ReadError::NoQuorum(_)) => None,
                Err(ReadError::Stopped(e)) => return Err(ClusterError::Stopped(e)),
            };
            if let Some(addr) = leader.filter(|a| *a != self.me.addr) {
                let left = deadline.saturating_duration_since(Instant::now());
                let reply = self
                    .client
                    .call(
                        &addr,
                        paths::READ_INDEX,
                        &mode,
                        left.max(Duration::from_secs(1)),
                    )
                    .await;
                match reply {
                    Ok(ReadIndexReply::Index(index)) => {
                        return self.wait_applied(index, deadline).await
                    }
                    Ok(ReadIndexReply::NotLeader { .. }) | Err(_) => {}
                    Ok(ReadIndexReply::Failed(e)) => return Err(ClusterError::Refused(e)),
                }
            }
            if Instant::now() + pause > deadline {
                return Err(ClusterError::NoLeader);
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(200));
        }
    }

    fn sole_voter(&self) -> bool {
        let members = self.node.members();
        let mut voters = members.iter().filter(|m| m.voter);
        matches!((voters.next(), voters.next()), (Some(m), None) if m.id == self.me.id)
    }

    async fn wait_applied(&self, index: u64, deadline: Instant) -> Result<(), ClusterError> {
        let left = deadline.saturating_duration_since(Instant::now());
        self.node
            .wait_applied(index, left.max(Duration::from_millis(100)))
            .await
            .map_err(|e| ClusterError::Rpc(e.to_string()))
    }

    /// Asks the leader for a membership change (run here if this server
    /// leads).
    pub async fn change_membership(&self, request: MembershipRequest) -> Result<(), ClusterError> {
        let deadline = Instant::now() + self.options.hold_timeout;
        loop {
            let reply = if self.is_leader() {
                self.apply_membership(request.clone()).await
            } else if let Some(addr) = self.leader_addr() {
                let left = deadline.saturating_duration_since(Instant::now());
                match self
                    .client
                    .call(
                        &addr,
                        paths::MEMBERSHIP,
                        &request,
                        left.max(Duration::from_secs(1)),
                    )
                    .await
                {
                    Ok(reply) => reply,
                    Err(CallError::Unreachable { .. }) => {
                        MembershipReply::NotLeader { leader: None }
                    }
                    Err(e) => return Err(ClusterError::Rpc(e.to_string())),
                }
            } else {
                MembershipReply::NotLeader { leader: None }
            };
            match reply {
                MembershipReply::Done => return Ok(()),
                MembershipReply::Failed(e) => return Err(ClusterError::Refused(e)),
                MembershipReply::NotLeader { .. } => {}
            }
            if Instant::now() > deadline {
                return Err(ClusterError::NoLeader);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn apply_membership(&self, request: MembershipRequest) -> MembershipReply {
        let result = match request {
            MembershipRequest::AddVoter(info) => {
                let node = node_of(&info);
                self.node.add_voter(info.id, node).await
            }
            MembershipRequest::Remove { id } => {
                lock(&self.known).remove(&id);
                lock(&self.departed).insert(id, Instant::now());
                self.node.remove_server(id).await
            }
            MembershipRequest::TransferLeader { to } => {
                let target = to.or_else(|| {
                    self.node
                        .members()
                        .into_iter()
                        .find(|m| m.voter && m.id != self.me.id)
                        .map(|m| m.id)
                });
                let Some(target) = target else {
                    return MembershipReply::Failed("no other voter to take leadership".into());
                };
                if !self
                    .node
                    .members()
                    .iter()
                    .any(|m| m.voter && m.id == target)
                {
                    return MembershipReply::Failed(format!("server {target} is not a voter"));
                }
                return match self.node.transfer_leader(target).await {
                    Ok(()) => MembershipReply::Done,
                    Err(e) => MembershipReply::Failed(e.to_string()),
                };
            }
        };
        match result {
            Ok(()) => MembershipReply::Done,
            Err(WriteError::NotLeader { leader }) => MembershipReply::NotLeader {
                leader: leader.and_then(|l| l.addr),
            },
            Err(e) => MembershipReply::Failed(e.to_string()),
        }
    }

    /// Leaves the cluster gracefully: the leader removes this server from
    /// the configuration (handing leadership on first if this server
    /// leads), then Raft stops here.
    pub async fn leave(&self) -> Result<(), ClusterError> {
        if self.sole_voter() || !self.initialized().await? {
            return Ok(());
        }
        if self.is_leader() {
            let _ = self
                .apply_membership(MembershipRequest::TransferLeader { to: None })
                .await;
            let _ = self
                .node
                .wait_until(Duration::from_secs(5), "another leader", |s| {
                    s.leader.is_some_and(|l| l != self.me.id)
                })
                .await;
        }
        self.change_membership(MembershipRequest::Remove { id: self.me.id })
            .await
    }

    /// Stops the upkeep and Raft.
    pub async fn shutdown(&self) -> Result<(), ClusterError> {
        for task in lock(&self.tasks).drain(..) {
            task.abort();
        }
        self.node
            .shutdown()
            .await
            .map_err(|e| ClusterError::Stopped(e.to_string()))
    }

    /// The configuration as this server sees it.
    pub fn local_configuration(&self) -> ConfigurationView {
        let config = self.node.configuration();
        let leader_last_index = config.leader.and_then(|l| config.matched.get(&l).copied());
        let servers = config
            .members
            .iter()
            .map(|m| ConfigServer {
                id: m.node.uuid.clone(),
                node: m.node.name.clone(),
                address: m.node.addr.clone(),
                leader: config.leader == Some(m.id),
                voter: m.voter,
                last_index: config.matched.get(&m.id).copied(),
            })
            .collect();
        ConfigurationView {
            servers,
            index: config.index,
            leader_last_index,
        }
    }

    /// The configuration, from the leader unless `stale`.
    pub async fn configuration(&self, stale: bool) -> Result<ConfigurationView, ClusterError> {
        if stale || self.is_leader() {
            return Ok(self.local_configuration());
        }
        let deadline = Instant::now() + self.options.hold_timeout;
        loop {
            if let Some(addr) = self.leader_addr().filter(|a| *a != self.me.addr) {
                let reply = self
                    .client
                    .call(&addr, paths::CONFIGURATION, &(), Duration::from_secs(5))
                    .await;
                match reply {
                    Ok(ConfigurationReply::View(view)) => return Ok(view),
                    Ok(ConfigurationReply::NotLeader { .. })
                    | Err(CallError::Unreachable { .. }) => {}
                    Err(e) => return Err(ClusterError::Rpc(e.to_string())),
                }
            } else if self.is_leader() {
                return Ok(self.local_configuration());
            }
            if Instant::now() > deadline {
                return Err(ClusterError::NoLeader);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The Raft id of the configured server with node ID `uuid` or server
    /// address `address`.
    pub fn find_server(&self, uuid: Option<&str>, address: Option<&str>) -> Option<u64> {
        self.node
            .members()
            .into_iter()
            .find(|m| {
                uuid.is_some_and(|u| m.node.uuid == u) || address.is_some_and(|a| m.node.addr == a)
            })
            .map(|m| m.id)
    }

    // ---- the answering side of the server port ----

    pub(crate) async fn on_append(
        &self,
        request: wire::AppendRequest,
    ) -> Result<wire::AppendReply, String> {
        let rpc = request.into_raft().map_err(|e| e.to_string())?;
        let reply = self
            .node
            .raft()
            .append_entries(rpc)
            .await
            .map_err(|e| e.to_string())?;
        let reply = wire::AppendReply::from_raft(&reply);
        if !matches!(reply, wire::AppendReply::HigherVote(_)) {
            *lock(&self.last_contact) = Some(Instant::now());
        }
        Ok(reply)
    }

    pub(crate) async fn on_vote(
        &self,
        request: wire::VoteRequest,
        pre: bool,
    ) -> Result<wire::VoteReply, String> {
        let rpc = request.into_raft();
        let raft = self.node.raft();
        let reply = if pre {
            raft.pre_vote(rpc).await
        } else {
            raft.vote(rpc).await
        }
        .map_err(|e| e.to_string())?;
        Ok(wire::VoteReply::from_raft(&reply))
    }

    pub(crate) async fn on_snapshot(
        &self,
        head: wire::SnapshotHead,
        state: Vec<u8>,
    ) -> Result<WireVote, String> {
        let meta = head.meta().map_err(|e| e.to_string())?;
        let snapshot = RaftSnapshot {
            meta,
            snapshot: state,
        };
        let reply = self
            .node
            .raft()
            .install_full_snapshot(head.vote.into_raft(), snapshot)
            .await
            .map_err(|e| e.to_string())?;
        *lock(&self.last_contact) = Some(Instant::now());
        Ok(WireVote::from_raft(&reply.vote))
    }

    pub(crate) async fn on_transfer(&self, request: wire::TransferRequest) -> Result<bool, String> {
        let last = request
            .last
            .map(|(term, index)| crate::types::to_raft_log_id(crate::LogId { term, index }));
        let rpc =
            openraft::raft::TransferLeaderRequest::new(request.from.into_raft(), request.to, last);
        let reply = self
            .node
            .raft()
            .handle_transfer_leader(rpc)
            .await
            .map_err(|e| e.to_string())?;
        Ok(reply.is_ok())
    }

    pub(crate) async fn on_write(&self, request: WriteRequest) -> Result<WriteReply, String> {
        Ok(match self.node.write(request.command).await {
            Ok(written) => written.into(),
            Err(WriteError::NotLeader { leader }) => WriteReply::NotLeader {
                leader: leader.and_then(|l| l.addr),
            },
            Err(WriteError::LeadershipLost { .. }) => WriteReply::LeadershipLost,
            Err(e) => WriteReply::Failed(e.to_string()),
        })
    }

    /// A client agent's write: committed through the leader wherever it
    /// is, as this server's own writes are.
    pub(crate) async fn on_client_write(
        &self,
        request: WriteRequest,
    ) -> Result<WriteReply, String> {
        Ok(match self.write(request.command).await {
            Ok(written) => written.into(),
            Err(ClusterError::NoLeader) => WriteReply::NotLeader { leader: None },
            Err(ClusterError::LeadershipLost) => WriteReply::LeadershipLost,
            Err(e) => WriteReply::Failed(e.to_string()),
        })
    }

    /// A node's services and checks as the leader sees them.
    pub(crate) async fn on_node_state(&self, node: String) -> Result<NodeStateReply, String> {
        self.read_barrier(ReadMode::Lease)
            .await
            .map_err(|e| e.to_string())?;
        let snapshot = self.node.store().snapshot();
        let mut ws = state::WatchSet::new();
        let services = snapshot
            .node_services(&node, &mut ws)
            .1
            .map(|(_, services)| services.iter().map(|s| (**s).clone()).collect())
            .unwrap_or_default();
        let checks = snapshot
            .node_checks(&node, &mut ws)
            .1
            .iter()
            .map(|c| (**c).clone())
            .collect();
        Ok(NodeStateReply { services, checks })
    }

    pub(crate) async fn on_read_index(&self, mode: ReadMode) -> Result<ReadIndexReply, String> {
        Ok(match self.node.read_index(mode).await {
            Ok(index) => ReadIndexReply::Index(index),
            Err(ReadError::NotLeader { leader }) => ReadIndexReply::NotLeader {
                leader: leader.and_then(|l| l.addr),
            },
            Err(e) => ReadIndexReply::Failed(e.to_string()),
        })
    }

    pub(crate) async fn on_hello(&self, info: ServerInfo) -> Result<HelloReply, String> {
        if info.id != self.me.id && info.datacenter == self.me.datacenter {
            let mut known = lock(&self.known);
            let entry = known.entry(info.id).or_insert(Known {
                info: info.clone(),
                heard: None,
                initialized: false,
            });
            entry.info = info;
            entry.heard = Some(Instant::now());
        }
        let initialized = self
            .node
            .is_initialized()
            .await
            .map_err(|e| e.to_string())?;
        let known = lock(&self.known).values().map(|k| k.info.clone()).collect();
        Ok(HelloReply {
            me: self.me.clone(),
            known,
            initialized,
            leader: self.leader_addr(),
        })
    }

    pub(crate) async fn on_configuration(&self) -> Result<ConfigurationReply, String> {
        if self.is_leader() {
            Ok(ConfigurationReply::View(self.local_configuration()))
        } else {
            Ok(ConfigurationReply::NotLeader {
                leader: self.leader_addr(),
            })
        }
    }

    pub(crate) async fn on_membership(
        &self,
        request: MembershipRequest,
    ) -> Result<MembershipReply, String> {
        Ok(self.apply_membership(request).await)
    }
}

impl From<Written> for WriteReply {
    fn from(written: Written) -> WriteReply {
        WriteReply::Written {
            index: written.index,
            outcome: written.outcome,
            released: written.released,
        }
    }
}

fn node_of(info: &ServerInfo) -> ServerNode {
    ServerNode {
        addr: info.addr.clone(),
        name: info.name.clone(),
        uuid: info.uuid.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_ids_come_from_the_uuid() {
        assert_eq!(
            server_id("0123abcd-0000-4000-8000-000000000000"),
            0x0123_abcd_0000_4000
        );
        // Not a UUID: still a stable id.
        assert_eq!(server_id("node-a"), server_id("node-a"));
        assert_ne!(server_id("node-a"), server_id("node-b"));
    }
}
