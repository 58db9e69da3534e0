use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use state::{Command, Index, Outcome, StateError, Store, Table};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio_util::sync::CancellationToken;

use crate::checks::{CheckScheduler, CheckUpdate};
use consensus::{Cluster, ClusterError, ReadMode};

use crate::config::Config;
use crate::events::EventBuffer;
use crate::federation::Federation;
use crate::lan::{LanPool, WanPool};
use crate::local_log::LocalLog;
use crate::local_state::LocalState;
use crate::persisted::{Definition, DefinitionStore};
use crate::registrations::Source;
use crate::router::{RouteError, ServerRouter};
use crate::service_definition::ServiceDefinition;
use crate::sessions::{LockDelays, SessionTimers};
use crate::tombstone_reaper::TombstoneReaper;

/// The Consul release whose API praetor answers like; clients that check
/// `Config.Version` in `/v1/agent/self` see this.
pub const CONSUL_COMPATIBLE_VERSION: &str = "1.22.0";

/// Praetor's own version.
pub const PRAETOR_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Why the agent could not carry out a write or confirm a read.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    State(#[from] StateError),
    /// Raft could not take the write or confirm the read: no leader, a
    /// lost leadership, a failed forward. The text is Consul's.
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    /// A client agent could not get its write to a server.
    #[error(transparent)]
    Route(#[from] RouteError),
}

/// How sure a read must be that it sees every acknowledged write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadConsistency {
    /// Consul's default: as the leader sees it (leader lease).
    Leader,
    /// `?consistent`: the leader confirms with a quorum first.
    Consistent,
    /// `?stale`: this server's own state, unless it has not heard from the
    /// leader within `max_stale`.
    Stale { max_stale: Option<Duration> },
}

/// Where writes go.
enum Replication {
    /// Applied here at once: an agent on its own (tests of the API alone).
    Local(LocalLog),
    /// Through Raft: a server or a dev agent.
    Raft(Arc<Cluster>),
    /// To a server: a client agent, which keeps no catalog of its own.
    Remote(Arc<ServerRouter>),
}

/// One running agent: its configuration, its state, and the token that
/// stops it.
pub struct Agent {
    config: Config,
    node_id: String,
    store: Arc<Store>,
    replication: Replication,
    shutdown: CancellationToken,
    /// Set by `/v1/agent/leave`: a server leaves the Raft configuration on
    /// its way out rather than just stopping.
    graceful_leave: std::sync::atomic::AtomicBool,
    started: Instant,
    local: Mutex<LocalState>,
    local_changed: tokio::sync::Notify,
    /// Runs the checks; their results arrive on `check_updates`.
    checks: Mutex<Option<CheckScheduler>>,
    check_updates: Mutex<Option<UnboundedReceiver<CheckUpdate>>>,
    /// Where API registrations are kept across restarts (with a data dir).
    definitions: Option<DefinitionStore>,
    session_timers: SessionTimers,
    lock_delays: LockDelays,
    events: EventBuffer,
    /// The LAN gossip pool, once started.
    lan: std::sync::OnceLock<Arc<LanPool>>,
    /// A server's WAN pool and its way to other datacenters, once started.
    federation: std::sync::OnceLock<Arc<Federation>>,
}

impl Agent {
    /// Creates the agent. With a data directory, its saved registrations
    /// directory is opened (and created) here, so a bad one fails start-up.
    pub fn new(config: Config) -> std::io::Result<Arc<Agent>> {
        let store = Arc::new(Store::new());
        Agent::build(config, store, Replication::Local(LocalLog::default()))
    }

    /// Creates a client agent: its writes and API calls go to the servers
    /// `router` finds.
    pub fn as_client(config: Config, router: Arc<ServerRouter>) -> std::io::Result<Arc<Agent>> {
        Agent::build(config, Arc::new(Store::new()), Replication::Remote(router))
    }

    /// Creates a server (or dev) agent whose writes go through `cluster`
    /// and whose reads come from its state machine's store.
    pub fn with_cluster(config: Config, cluster: Arc<Cluster>) -> std::io::Result<Arc<Agent>> {
        let store = Arc::clone(cluster.node().store());
        Agent::build(config, store, Replication::Raft(cluster))
    }

    fn build(
        config: Config,
        store: Arc<Store>,
        replication: Replication,
    ) -> std::io::Result<Arc<Agent>> {
        let definitions = match (&config.data_dir, config.dev) {
            (Some(dir), false) => Some(DefinitionStore::open(dir)?),
            _ => None,
        };
        let node_id = config.node_id.clone().unwrap_or_else(random_uuid);
        let (updates_tx, updates_rx) = tokio::sync::mpsc::unbounded_channel();
        Ok(Arc::new(Agent {
            config,
            node_id,
            store,
            replication,
            shutdown: CancellationToken::new(),
            graceful_leave: std::sync::atomic::AtomicBool::new(false),
            started: Instant::now(),
            local: Mutex::new(LocalState::default()),
            local_changed: tokio::sync::Notify::new(),
            checks: Mutex::new(Some(CheckScheduler::new(updates_tx))),
            check_updates: Mutex::new(Some(updates_rx)),
            definitions,
            session_timers: SessionTimers::default(),
            lock_delays: LockDelays::default(),
            events: EventBuffer::default(),
            lan: std::sync::OnceLock::new(),
            federation: std::sync::OnceLock::new(),
        }))
    }

    /// Saves (or with `None`, forgets) an API registration so it survives
    /// a restart. The file IO runs off the async workers.
    pub async fn persist(
        &self,
        kind: Definition,
        id: &str,
        raw: Option<serde_json::Value>,
    ) -> std::io::Result<()> {
        let Some(store) = self.definitions.clone() else {
            return Ok(());
        };
        let id = id.to_owned();
        tokio::task::spawn_blocking(move || match raw {
            Some(raw) => store.save(kind, &id, &raw),
            None => store.forget(kind, &id),
        })
        .await
        .map_err(std::io::Error::other)?
    }

    /// Keeps a TTL check's reported status on disk (off the async workers)
    /// so that a restart within the TTL does not reset it.
    pub(crate) fn remember_ttl_status(
        &self,
        id: &str,
        status: crate::checks::CheckStatus,
        output: String,
    ) {
        let Some(store) = self.definitions.clone() else {
            return;
        };
        let ttl = self.local_state().check(id).and_then(|c| c.ttl);
        let Some(ttl) = ttl else {
            return;
        };
        let expires = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            + ttl;
        let id = id.to_owned();
        tokio::task::spawn_blocking(move || {
            if let Err(error) =
                store.save_check_state(&id, status.as_str(), &output, expires.as_millis())
            {
                tracing::warn!(%error, check = %id, "could not save a TTL check's status");
            }
        });
    }

    /// Puts back the saved status of every TTL check that has one.
    fn restore_ttl_statuses(&self, store: &DefinitionStore) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis();
        let ttl_checks: Vec<String> = self
            .local_state()
            .checks()
            .values()
            .filter(|c| c.ttl.is_some())
            .map(|c| c.check.check_id.clone())
            .collect();
        for id in ttl_checks {
            if let Some((status, output)) = store.load_check_state(&id, now) {
                if let Ok(status) = status.parse() {
                    self.check_scheduler().ttl_update(&id, status, output);
                }
            }
        }
    }

    /// Registers again what the API registered before a restart.
    pub fn restore_definitions(&self) -> std::io::Result<()> {
        let Some(store) = &self.definitions else {
            return Ok(());
        };
        for raw in store.load(Definition::Service)? {
            let added = crate::decode::from_value::<ServiceDefinition>(raw)
                .map_err(|e| e.to_string())
                .and_then(|d| {
                    self.add_service(&d, false, Source::Api)
                        .map_err(|e| e.to_string())
                });
            if let Err(error) = added {
                tracing::warn!(%error, "could not restore a saved service");
            }
        }
        for raw in store.load(Definition::Check)? {
            let added = crate::decode::from_value::<crate::checks::CheckDefinition>(raw)
                .map_err(|e| e.to_string())
                .and_then(|d| self.add_check(d, Source::Api).map_err(|e| e.to_string()));
            if let Err(error) = added {
                tracing::warn!(%error, "could not restore a saved check");
            }
        }
        self.restore_ttl_statuses(store);
        Ok(())
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The store, for servers (DNS) that outlive a borrow of the agent.
    pub fn shared_store(&self) -> Arc<Store> {
        Arc::clone(&self.store)
    }

    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// This agent's own services and checks, for reading.
    pub fn local_state(&self) -> MutexGuard<'_, LocalState> {
        self.local.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Changes the local state and wakes anti-entropy if anything changed.
    pub fn update_local<T>(&self, change: impl FnOnce(&mut LocalState) -> T) -> T {
        let mut local = self.local_state();
        let before = local.version();
        let result = change(&mut local);
        let changed = local.version() != before;
        drop(local);
        if changed {
            self.local_changed.notify_one();
        }
        result
    }

    /// The check scheduler (held briefly: starting or stopping a check).
    pub(crate) fn check_scheduler(&self) -> SchedulerGuard<'_> {
        SchedulerGuard(self.checks.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Records check results in the local state until the agent stops;
    /// also deregisters services whose check stayed critical too long.
    pub async fn run_checks(self: Arc<Self>) {
        let Some(mut updates) = self
            .check_updates
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        else {
            return;
        };
        let mut reaper = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                update = updates.recv() => {
                    let Some(update) = update else { return };
                    self.update_local(|local| {
                        local.update_check(&update.check_id, update.status.as_str(), &update.output)
                    });
                }
                _ = reaper.tick() => {
                    let expired = self.local_state().expired_services(Instant::now());
                    for service_id in expired {
                        tracing::info!(service = %service_id, "deregistering a service whose check stayed critical");
                        if let Some(checks) = self.remove_service(&service_id) {
                            let _ = self.persist(Definition::Service, &service_id, None).await;
                            for check_id in checks {
                                let _ = self.persist(Definition::Check, &check_id, None).await;
                            }
                        }
                    }
                }
                _ = self.stopping() => {
                    // Stop every runner (scripts in flight are killed).
                    self.checks.lock().unwrap_or_else(PoisonError::into_inner).take();
                    return;
                }
            }
        }
    }

    /// Resolves after the local state changed (anti-entropy waits here).
    pub async fn local_changed(&self) {
        self.local_changed.notified().await;
    }

    /// Replicates `command` and applies it; returns the index it was
    /// applied at and what it produced.
    pub async fn apply(&self, command: Command) -> Result<(Index, Outcome), AgentError> {
        let now = Instant::now();
        if let Some(refused) = self.lock_delays.refusal(&command, now) {
            return Ok((self.store.index(), refused));
        }
        let (index, outcome, released) = match &self.replication {
            Replication::Local(log) => log.append(&self.store, &command)?,
            Replication::Raft(cluster) => {
                let written = cluster.write(command).await?;
                (written.index, written.outcome, written.released)
            }
            Replication::Remote(router) => {
                let written = router.write(command).await?;
                (written.index, written.outcome, written.released)
            }
        };
        if !released.is_empty() {
            self.lock_delays.record(&released, now);
        }
        Ok((index, outcome))
    }

    /// The user events this agent has received.
    pub fn events(&self) -> &EventBuffer {
        &self.events
    }

    pub(crate) fn session_timers(&self) -> &SessionTimers {
        &self.session_timers
    }

    /// The Raft server this agent runs, if it is a server.
    pub fn cluster(&self) -> Option<&Arc<Cluster>> {
        match &self.replication {
            Replication::Raft(cluster) => Some(cluster),
            Replication::Local(_) | Replication::Remote(_) => None,
        }
    }

    /// The client agent's way to the servers; `None` on a server.
    pub fn router(&self) -> Option<&Arc<ServerRouter>> {
        match &self.replication {
            Replication::Remote(router) => Some(router),
            Replication::Local(_) | Replication::Raft(_) => None,
        }
    }

    /// Waits until a read at `consistency` may be answered from this
    /// agent's store.
    pub async fn read_barrier(&self, consistency: ReadConsistency) -> Result<(), AgentError> {
        let Some(cluster) = self.cluster() else {
            return Ok(());
        };
        let mode = match consistency {
            ReadConsistency::Leader => ReadMode::Lease,
            ReadConsistency::Consistent => ReadMode::Quorum,
            ReadConsistency::Stale { max_stale } => {
                let fresh = match (max_stale, cluster.last_contact()) {
                    (None, _) => true,
                    (Some(limit), Some(contact)) => contact <= limit,
                    (Some(_), None) => false,
                };
                if fresh {
                    return Ok(());
                }
                ReadMode::Lease
            }
        };
        cluster.read_barrier(mode).await?;
        Ok(())
    }

    /// Whether this agent knows of a leader (`X-Consul-KnownLeader`).
    pub fn known_leader(&self) -> bool {
        self.cluster().is_none_or(|c| c.leader_addr().is_some())
    }

    /// Time since this server last heard from the leader
    /// (`X-Consul-LastContact`); zero on the leader.
    pub fn last_contact(&self) -> Duration {
        match self.cluster() {
            Some(c) => c.last_contact().unwrap_or(Duration::ZERO),
            None => Duration::ZERO,
        }
    }

    /// The Raft address of the leader, as `/v1/status/leader` reports it
    /// (empty when there is none).
    pub fn leader_address(&self) -> String {
        match self.cluster() {
            Some(c) => c.leader_addr().unwrap_or_default(),
            None => {
                std::net::SocketAddr::new(self.advertise_ip(), self.config.ports.server).to_string()
            }
        }
    }

    /// The Raft addresses of every voting server.
    pub fn peers(&self) -> Vec<String> {
        match self.cluster() {
            Some(c) => c.peers(),
            None => vec![self.leader_address()],
        }
    }

    /// The address other nodes reach this agent at.
    pub fn advertise_ip(&self) -> std::net::IpAddr {
        let ip = self.config.advertise_addr.unwrap_or(self.config.bind_addr);
        if ip.is_unspecified() {
            std::net::IpAddr::from([127, 0, 0, 1])
        } else {
            ip
        }
    }

    /// Puts this agent's node in the catalog with its `serfHealth` check,
    /// and, on a server, the `consul` service, as Consul's leader does for
    /// every member.
    pub async fn register_self(&self) -> Result<(), AgentError> {
        let address = self.advertise_ip().to_string();
        let node = crate::leader::member_node(
            &self.config.node_name,
            &self.node_id,
            &address,
            &self.config.datacenter,
        );
        let registration = crate::leader::member_registration(
            node,
            self.config.server.then_some(self.config.ports.server),
            "passing",
            SERF_ALIVE_OUTPUT,
        );
        match self
            .apply(Command::Register(Box::new(registration)))
            .await?
        {
            (_, Outcome::Write(Err(error))) => {
                tracing::warn!(%error, "could not register this agent in the catalog");
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// Gives the agent its LAN gossip pool (once; later calls are ignored).
    pub fn attach_lan(&self, lan: Arc<LanPool>) {
        let _ = self.lan.set(lan);
    }

    /// The LAN gossip pool, when the agent runs one.
    pub fn lan(&self) -> Option<&Arc<LanPool>> {
        self.lan.get()
    }

    /// Gives a server its WAN gossip pool (once; later calls are ignored).
    pub fn attach_wan(&self, wan: Arc<WanPool>) {
        let federation = Federation::new(wan, self.config.datacenter.clone());
        let _ = self.federation.set(Arc::new(federation));
    }

    /// The WAN gossip pool, on a server that runs one.
    pub fn wan(&self) -> Option<&Arc<WanPool>> {
        self.federation.get().map(|f| f.pool())
    }

    /// The way to other datacenters, on a server that has a WAN pool.
    pub fn federation(&self) -> Option<&Arc<Federation>> {
        self.federation.get()
    }

    /// Asks the agent to leave and stop; every server loop watches
    /// [`Agent::stopping`].
    pub fn leave(&self) {
        self.shutdown.cancel();
    }

    /// Leaves the cluster gracefully, then stops (`/v1/agent/leave`).
    pub fn leave_cluster(&self) {
        self.graceful_leave
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.shutdown.cancel();
    }

    /// Whether the agent is stopping by a graceful leave.
    pub fn leaves_cluster(&self) -> bool {
        self.graceful_leave
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Resolves once the agent is stopping.
    pub async fn stopping(&self) {
        self.shutdown.cancelled().await;
    }

    pub fn is_stopping(&self) -> bool {
        self.shutdown.is_cancelled()
    }

    /// Runs the leader's tombstone reaper until the agent stops.
    pub async fn reap_tombstones(self: Arc<Self>, tick: Duration) {
        let mut reaper = TombstoneReaper::default();
        let mut ticker = tokio::time::interval(tick);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = self.stopping() => return,
            }
            let now = Instant::now();
            reaper.observe(now, self.store.snapshot().table_index(Table::Tombstones));
            if let Some(up_to) = reaper.due(now) {
                if let Err(error) = self.apply(Command::ReapTombstones { up_to }).await {
                    tracing::warn!(%error, "failed to reap tombstones");
                }
            }
        }
    }
}

/// The check every member carries, passing while gossip finds it alive.
pub const SERF_CHECK_ID: &str = "serfHealth";
pub const SERF_CHECK_NAME: &str = "Serf Health Status";
pub const SERF_ALIVE_OUTPUT: &str = "Agent alive and reachable";

/// A random (version 4) UUID, as Consul generates node IDs.
pub fn random_uuid() -> String {
    let mut b: [u8; 16] = rand::random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// The scheduler, or nothing once the agent has stopped its checks.
pub(crate) struct SchedulerGuard<'a>(MutexGuard<'a, Option<CheckScheduler>>);

impl SchedulerGuard<'_> {
    pub(crate) fn start(
        &mut self,
        check_id: String,
        kind: crate::checks::CheckKind,
        thresholds: crate::checks::Thresholds,
    ) {
        if let Some(scheduler) = self.0.as_mut() {
            scheduler.start(check_id, kind, thresholds);
        }
    }

    pub(crate) fn stop(&mut self, check_id: &str) {
        if let Some(scheduler) = self.0.as_mut() {
            scheduler.stop(check_id);
        }
    }

    pub(crate) fn ttl_update(
        &mut self,
        check_id: &str,
        status: crate::checks::CheckStatus,
        output: String,
    ) -> bool {
        self.0
            .as_mut()
            .is_some_and(|s| s.ttl_update(check_id, status, output))
    }

    pub(crate) fn ttl_record(
        &mut self,
        check_id: &str,
        status: crate::checks::CheckStatus,
        output: String,
    ) -> Option<CheckUpdate> {
        self.0.as_mut()?.ttl_record(check_id, status, output)
    }
}
