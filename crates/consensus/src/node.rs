//! A Raft server in this process: openraft driving our log and our state
//! machine, behind an API with no openraft types in it.
//!
//! Writes go in as [`Command`]s ([`RaftNode::write`]) and come back with
//! their index and [`Outcome`] once applied; reads go straight to the
//! [`Store`] ([`RaftNode::store`]). A server keeps its log, vote and
//! snapshot under one directory ([`RaftNode::open`]); the dev agent keeps
//! everything in memory ([`RaftNode::in_memory`]) but writes through the
//! same path.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use openraft::errors::{
    ClientWriteError, ForwardToLeader, InitializeError, LinearizableReadError, RaftError,
};
use openraft::metrics::WaitError;
use openraft::raft::ReadPolicy;
use openraft::ChangeMembers;
use openraft::{RaftMetrics, ServerState, SnapshotPolicy};
use state::{Command, Index, Outcome, ReleasedLock, Store};

use crate::closing::Closed;
use crate::error::StorageError;
use crate::log_store::LogStore;
use crate::mem_log::MemLog;
use crate::rpc::client::RaftTransport;
use crate::rpc::wire::ReadMode;
use crate::rpc::RpcClient;
use crate::state_machine::StateMachine;
use crate::types::{Request, Response, ServerNode, TypeConfig};
use crate::wal::WalOptions;

/// How a Raft server behaves; the defaults are Consul's (with
/// `raft_multiplier = 1`, which Consul recommends for production).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RaftOptions {
    /// How often the leader sends heartbeats.
    pub heartbeat_interval: Duration,
    /// A follower that hears from no leader for this long may vote for a
    /// new one (openraft's leader lease); it stands itself after a random
    /// time between half of this and this. Consul's raft waits between one
    /// and two heartbeat timeouts before standing, which makes failover
    /// take about 1.5 timeouts; this takes about one.
    pub election_timeout: Duration,
    /// Consul's `raft_snapshot_threshold`: a snapshot is taken once this
    /// many entries were applied since the last one. `0`: only on demand
    /// ([`RaftNode::snapshot`]).
    pub snapshot_threshold: u64,
    /// Consul's `raft_trailing_logs`: entries kept in the log behind a
    /// snapshot, so a follower a little behind catches up from the log
    /// rather than from a whole snapshot.
    pub trailing_logs: u64,
    /// The log's file layout.
    pub wal: WalOptions,
}

impl Default for RaftOptions {
    fn default() -> Self {
        RaftOptions {
            heartbeat_interval: Duration::from_millis(100),
            election_timeout: Duration::from_millis(1000),
            snapshot_threshold: 16384,
            trailing_logs: 10240,
            wal: WalOptions::default(),
        }
    }
}

impl RaftOptions {
    fn to_openraft(&self) -> Result<openraft::Config, NodeError> {
        let millis = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let election = millis(self.election_timeout);
        let config = openraft::Config {
            cluster_name: "praetor".to_string(),
            heartbeat_interval: millis(self.heartbeat_interval),
            election_timeout_min: (election / 2).max(1),
            election_timeout_max: election,
            snapshot_policy: match self.snapshot_threshold {
                0 => SnapshotPolicy::Never,
                n => SnapshotPolicy::LogsSinceLast(n),
            },
            max_in_snapshot_log_to_keep: self.trailing_logs,
            // The state machine is rebuilt from a snapshot and the log on
            // restart, and the committed id on disk may lag: a restarted
            // leader must win an election (and commit an entry of its new
            // term) before it serves, or it could answer from a stale
            // state.
            enable_leader_restore: Some(false),
            // A server cut off from the others must not raise its term by
            // electing itself over and over: when it comes back it would
            // depose a healthy leader. Pre-vote asks first.
            enable_pre_vote: Some(true),
            ..openraft::Config::default()
        };
        config
            .validate()
            .map_err(|e| NodeError::Options(e.to_string()))
    }
}

/// Why a Raft server could not start or do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("invalid raft options: {0}")]
    Options(String),
    /// Raft stopped: a storage failure (the log must be reopened) or a
    /// shutdown.
    #[error("raft stopped: {0}")]
    Stopped(String),
    #[error("cannot bootstrap the cluster: {0}")]
    Bootstrap(String),
    #[error("timed out after {waited:?} waiting for {what}")]
    Timeout { waited: Duration, what: String },
}

/// Why a write was not applied.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// This server is not the leader; nothing was written. `leader` is the
    /// current leader if known, to forward the write to.
    #[error("not the leader")]
    NotLeader { leader: Option<Leader> },
    /// The entry was appended, then leadership moved before it committed:
    /// it may or may not take effect.
    #[error("leadership lost while committing log")]
    LeadershipLost { leader: Option<Leader> },
    /// Raft stopped (a storage failure or a shutdown).
    #[error("raft stopped: {0}")]
    Stopped(String),
    /// Raft answered a write in a way it never should.
    #[error("unexpected raft answer: {0}")]
    Unexpected(String),
}

/// A server known to be the leader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leader {
    pub id: u64,
    /// Its server RPC address, if membership knows it.
    pub addr: Option<String>,
}

/// A write that was committed and applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// The entry's log index: the `ModifyIndex` of what it changed.
    pub index: Index,
    pub outcome: Outcome,
    /// Locks given up by destroyed sessions, for lock delays.
    pub released: Vec<ReleasedLock>,
}

/// A server's part in the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Leader,
    Candidate,
    Follower,
    /// Receives the log but does not vote.
    Learner,
    Shutdown,
}

/// Where a Raft server is, from its metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RaftStatus {
    pub role: Role,
    pub term: u64,
    pub leader: Option<u64>,
    pub last_log_index: Option<u64>,
    pub committed: Option<u64>,
    pub applied: Option<u64>,
    /// The last index the current snapshot covers.
    pub snapshot: Option<u64>,
    /// The last index removed from the log.
    pub purged: Option<u64>,
    /// On a leader: how long since a quorum last acknowledged it.
    pub quorum_ack_age: Option<Duration>,
}

impl RaftStatus {
    fn from_metrics(m: &RaftMetrics<TypeConfig>) -> RaftStatus {
        RaftStatus {
            role: match m.state {
                ServerState::Leader => Role::Leader,
                ServerState::Candidate => Role::Candidate,
                ServerState::Follower => Role::Follower,
                ServerState::Learner => Role::Learner,
                ServerState::Shutdown => Role::Shutdown,
            },
            term: m.current_term,
            leader: m.current_leader,
            last_log_index: m.last_log_index,
            committed: m.local_committed.map(|id| id.index),
            applied: m.last_applied.map(|id| id.index),
            snapshot: m.snapshot.map(|id| id.index),
            purged: m.purged.map(|id| id.index),
            quorum_ack_age: m
                .last_quorum_acked
                .as_ref()
                .map(|at| openraft::Instant::elapsed(&**at)),
        }
    }
}

fn leader_of(f: ForwardToLeader<TypeConfig>) -> Option<Leader> {
    f.leader_id.map(|id| Leader {
        id,
        addr: f.leader_node.map(|n| n.addr),
    })
}

fn write_error(e: RaftError<TypeConfig, ClientWriteError<TypeConfig>>) -> WriteError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => WriteError::NotLeader {
            leader: leader_of(f),
        },
        RaftError::APIError(ClientWriteError::LogEntryDiscarded(f)) => WriteError::LeadershipLost {
            leader: leader_of(f),
        },
        RaftError::APIError(e) => WriteError::Unexpected(e.to_string()),
        RaftError::Fatal(e) => WriteError::Stopped(e.to_string()),
    }
}

/// Why a read could not be confirmed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("not the leader")]
    NotLeader { leader: Option<Leader> },
    /// The leader could not hear from a quorum: it may have been deposed.
    #[error("no quorum: {0}")]
    NoQuorum(String),
    #[error("raft stopped: {0}")]
    Stopped(String),
}

/// The Raft configuration as `/v1/operator/raft/configuration` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Configuration {
    /// The index of the entry that made this configuration.
    pub index: u64,
    pub leader: Option<u64>,
    pub members: Vec<Member>,
    /// The last log index known to be on each server.
    pub matched: BTreeMap<u64, u64>,
}

/// A server of the Raft configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub id: u64,
    pub node: ServerNode,
    /// A voter rather than a learner (a non-voting follower).
    pub voter: bool,
}

/// One Raft server running in this process.
pub struct RaftNode {
    id: u64,
    node: ServerNode,
    raft: openraft::Raft<TypeConfig, StateMachine>,
    store: Arc<Store>,
    /// The election timeout: a leader unheard by a quorum for this long
    /// may already have been replaced.
    lease: Duration,
    /// Resolve once openraft's tasks have let go of the storage.
    closed: std::sync::Mutex<Vec<Closed>>,
}

/// How long [`RaftNode::shutdown`] waits for the storage to close.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(30);

impl RaftNode {
    /// Starts server `id` (reached at `node`) on the data in `dir`:
    /// `dir/log` (the log), `dir/meta` (vote, committed),
    /// `dir/snapshots`. Created if missing; otherwise the state is rebuilt
    /// from the last snapshot and the log.
    pub async fn open(
        id: u64,
        node: ServerNode,
        dir: &Path,
        options: RaftOptions,
        peers: RpcClient,
    ) -> Result<RaftNode, NodeError> {
        let dir = dir.to_path_buf();
        let wal = options.wal;
        let ((log, log_closed), (state_machine, sm_closed)) =
            tokio::task::spawn_blocking(move || -> Result<_, StorageError> {
                let log = LogStore::open(&dir.join("log"), &dir.join("meta"), wal)?;
                let state_machine = StateMachine::open(Some(dir.join("snapshots")))?;
                Ok((log, state_machine))
            })
            .await
            .map_err(|e| NodeError::Stopped(e.to_string()))??;
        let config = options.to_openraft()?;
        let lease = options.election_timeout;
        let store = Arc::clone(state_machine.store());
        let network = RaftTransport::new(peers);
        let raft = openraft::Raft::new(id, Arc::new(config), network, log, state_machine)
            .await
            .map_err(|e| NodeError::Stopped(e.to_string()))?;
        Ok(RaftNode {
            lease,
            id,
            node,
            raft,
            store,
            closed: std::sync::Mutex::new(vec![log_closed, sm_closed]),
        })
    }

    /// Starts server `id` with its log and snapshots in memory (the dev
    /// agent): nothing survives the process.
    pub async fn in_memory(
        id: u64,
        node: ServerNode,
        options: RaftOptions,
    ) -> Result<RaftNode, NodeError> {
        let config = options.to_openraft()?;
        let lease = options.election_timeout;
        let (state_machine, closed) = StateMachine::open(None::<PathBuf>)?;
        let store = Arc::clone(state_machine.store());
        let raft = openraft::Raft::new(
            id,
            Arc::new(config),
            RaftTransport::default(),
            MemLog::default(),
            state_machine,
        )
        .await
        .map_err(|e| NodeError::Stopped(e.to_string()))?;
        Ok(RaftNode {
            lease,
            id,
            node,
            raft,
            store,
            closed: std::sync::Mutex::new(vec![closed]),
        })
    }

    /// This server's id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The state store the log is applied to. Reads take a snapshot of it
    /// and never wait for Raft.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// Makes a new cluster with this server as its only voter (Consul's
    /// `-bootstrap`). Returns `false`, changing nothing, if this server
    /// already has a log or a vote.
    pub async fn bootstrap(&self) -> Result<bool, NodeError> {
        let members = BTreeMap::from([(self.id, self.node.clone())]);
        self.initialize(members).await
    }

    /// Makes a new cluster of these voters (`bootstrap_expect`: every
    /// server calls this with the same set). Returns `false`, changing
    /// nothing, if this server already has a log or a vote.
    pub async fn initialize(&self, members: BTreeMap<u64, ServerNode>) -> Result<bool, NodeError> {
        match self.raft.initialize(members).await {
            Ok(()) => Ok(true),
            Err(RaftError::APIError(InitializeError::NotAllowed(_))) => Ok(false),
            Err(e) => Err(NodeError::Bootstrap(e.to_string())),
        }
    }

    /// Replicates `command`, waits until it is committed and applied, and
    /// returns its index and outcome.
    pub async fn write(&self, command: Command) -> Result<Written, WriteError> {
        match self.raft.client_write(Request(command)).await {
            Ok(answer) => match answer.data {
                Response::Applied { outcome, released } => Ok(Written {
                    index: answer.log_id.index,
                    outcome,
                    released,
                }),
                Response::Nothing => Err(WriteError::Unexpected(format!(
                    "entry {} applied without an outcome",
                    answer.log_id.index
                ))),
            },
            Err(e) => Err(write_error(e)),
        }
    }

    /// Where this server is now.
    pub fn status(&self) -> RaftStatus {
        use openraft::async_runtime::watch::WatchReceiver;
        RaftStatus::from_metrics(&self.raft.metrics().borrow_watched())
    }

    /// Waits up to `timeout` until `done` holds for this server's status.
    pub async fn wait_until(
        &self,
        timeout: Duration,
        what: &str,
        done: impl Fn(&RaftStatus) -> bool + Send + Sync,
    ) -> Result<RaftStatus, NodeError> {
        let metrics = self
            .raft
            .wait(Some(timeout))
            .metrics(|m| done(&RaftStatus::from_metrics(m)), what)
            .await
            .map_err(|e| match e {
                WaitError::Timeout(waited, _) => NodeError::Timeout {
                    waited,
                    what: what.to_string(),
                },
                WaitError::ShuttingDown => NodeError::Stopped(e.to_string()),
            })?;
        Ok(RaftStatus::from_metrics(&metrics))
    }

    /// Waits up to `timeout` for a leader to be known; returns its id.
    pub async fn wait_for_leader(&self, timeout: Duration) -> Result<u64, NodeError> {
        let status = self
            .wait_until(timeout, "a leader", |s| s.leader.is_some())
            .await?;
        status.leader.ok_or_else(|| NodeError::Timeout {
            waited: timeout,
            what: "a leader".to_string(),
        })
    }

    /// Takes a snapshot of everything applied so far and waits up to
    /// `timeout` for it to be on disk; returns the last index it covers
    /// (`None` if nothing was ever applied). Log entries more than
    /// `trailing_logs` behind it are then purged.
    pub async fn snapshot(&self, timeout: Duration) -> Result<Option<u64>, NodeError> {
        // Metrics trail the state machine a little; the store does not.
        // Everything applied by now is applied before the snapshot is
        // built (the state machine takes its requests in order).
        let target = match (self.status().applied, self.store.index()) {
            (None, 0) => return Ok(None),
            (applied, stored) => applied.unwrap_or(0).max(stored),
        };
        self.raft
            .trigger()
            .snapshot()
            .await
            .map_err(|e| NodeError::Stopped(e.to_string()))?;
        let status = self
            .wait_until(timeout, "the snapshot", |s| {
                s.snapshot.is_some_and(|i| i >= target)
            })
            .await?;
        Ok(status.snapshot)
    }

    /// How long a leader may go unacknowledged by a quorum and still be
    /// sure no other leader was elected.
    pub fn lease(&self) -> Duration {
        self.lease
    }

    /// This server's address and names.
    pub fn node(&self) -> &ServerNode {
        &self.node
    }

    pub(crate) fn raft(&self) -> &openraft::Raft<TypeConfig, StateMachine> {
        &self.raft
    }

    /// Whether this server has a cluster configuration (a log or a vote).
    pub async fn is_initialized(&self) -> Result<bool, NodeError> {
        self.raft
            .is_initialized()
            .await
            .map_err(|e| NodeError::Stopped(e.to_string()))
    }

    /// The index a read must see applied to reflect every write
    /// acknowledged before it was asked, confirmed as `mode` says. Only the
    /// leader can answer.
    pub async fn read_index(&self, mode: ReadMode) -> Result<u64, ReadError> {
        let policy = match mode {
            ReadMode::Lease => ReadPolicy::LeaseRead,
            ReadMode::Quorum => ReadPolicy::ReadIndex,
        };
        match self.raft.get_read_linearizer(policy).await {
            Ok(linearizer) => Ok(linearizer.read_log_id().index()),
            Err(RaftError::APIError(LinearizableReadError::ForwardToLeader(f))) => {
                Err(ReadError::NotLeader {
                    leader: f.leader_id.map(|id| Leader {
                        id,
                        addr: f.leader_node.map(|n| n.addr),
                    }),
                })
            }
            Err(RaftError::APIError(LinearizableReadError::QuorumNotEnough(e))) => {
                Err(ReadError::NoQuorum(e.to_string()))
            }
            Err(RaftError::Fatal(e)) => Err(ReadError::Stopped(e.to_string())),
        }
    }

    /// Waits up to `timeout` until this server applied `index`.
    pub async fn wait_applied(&self, index: u64, timeout: Duration) -> Result<(), NodeError> {
        if self.status().applied.is_some_and(|a| a >= index) {
            return Ok(());
        }
        self.wait_until(timeout, "the read index to be applied", |s| {
            s.applied.is_some_and(|a| a >= index)
        })
        .await
        .map(|_| ())
    }

    /// The servers of the configuration in force (the newest one, joint
    /// or not), voters first.
    pub fn members(&self) -> Vec<Member> {
        use openraft::async_runtime::watch::WatchReceiver;
        let metrics = self.raft.metrics().borrow_watched().clone();
        let membership = metrics.membership_config.membership();
        let voters: std::collections::BTreeSet<u64> = membership.voter_ids().collect();
        let mut members: Vec<Member> = membership
            .nodes()
            .map(|(id, node)| Member {
                id: *id,
                node: node.clone(),
                voter: voters.contains(id),
            })
            .collect();
        members.sort_by_key(|m| (!m.voter, m.id));
        members
    }

    /// The configuration in force with where each server's log is: the
    /// index of the configuration's entry, and per server the last index
    /// known to be in its log (every server on the leader, only itself
    /// elsewhere).
    pub fn configuration(&self) -> Configuration {
        use openraft::async_runtime::watch::WatchReceiver;
        let metrics = self.raft.metrics().borrow_watched().clone();
        let index = metrics
            .membership_config
            .log_id()
            .as_ref()
            .map_or(0, |id| id.index);
        let mut matched: BTreeMap<u64, u64> = metrics
            .replication
            .iter()
            .flatten()
            .filter_map(|(id, log)| log.as_ref().map(|l| (*id, l.index)))
            .collect();
        if let Some(last) = metrics.last_log_index {
            matched.insert(self.id, last);
        }
        Configuration {
            index,
            leader: metrics.current_leader,
            members: self.members(),
            matched,
        }
    }

    /// Adds server `id` as a voter: it first follows as a learner until it
    /// has caught up, then joins the voters. Leader only.
    pub async fn add_voter(&self, id: u64, node: ServerNode) -> Result<(), WriteError> {
        let known = self.members();
        match known.iter().find(|m| m.id == id) {
            Some(m) if m.voter && m.node == node => return Ok(()),
            Some(m) if m.node != node => {
                // The same server at a new address: replace the record.
                let nodes = BTreeMap::from([(id, node.clone())]);
                self.change(ChangeMembers::SetNodes(nodes)).await?;
            }
            Some(_) => {}
            None => {
                self.raft
                    .add_learner(id, node, true)
                    .await
                    .map_err(write_error)?;
            }
        }
        self.change(ChangeMembers::AddVoterIds([id].into())).await
    }

    /// Removes server `id` from the configuration. Leader only.
    pub async fn remove_server(&self, id: u64) -> Result<(), WriteError> {
        let known = self.members();
        let Some(member) = known.iter().find(|m| m.id == id) else {
            return Ok(());
        };
        if member.voter {
            self.change(ChangeMembers::RemoveVoters([id].into()))
                .await?;
        }
        self.change(ChangeMembers::RemoveNodes([id].into())).await
    }

    async fn change(&self, change: ChangeMembers<u64, ServerNode>) -> Result<(), WriteError> {
        self.raft
            .change_membership(change, false)
            .await
            .map(|_| ())
            .map_err(write_error)
    }

    /// Asks the leader (this server) to hand leadership to `to`.
    pub async fn transfer_leader(&self, to: u64) -> Result<(), NodeError> {
        self.raft
            .trigger()
            .transfer_leader(to)
            .await
            .map_err(|e| NodeError::Stopped(e.to_string()))
    }

    /// Stops Raft and waits until its log and state machine are closed
    /// (files synced and released), so the directory can be opened again.
    pub async fn shutdown(&self) -> Result<(), NodeError> {
        self.raft
            .shutdown()
            .await
            .map_err(|e| NodeError::Stopped(e.to_string()))?;
        let closed = std::mem::take(
            &mut *self
                .closed
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        for storage in closed {
            tokio::time::timeout(CLOSE_TIMEOUT, storage.wait())
                .await
                .map_err(|_| NodeError::Timeout {
                    waited: CLOSE_TIMEOUT,
                    what: "the log and state machine to close".to_string(),
                })?;
        }
        Ok(())
    }
}
