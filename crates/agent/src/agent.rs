use std::sync::Arc;
use std::time::{Duration, Instant};

use std::collections::BTreeMap;

use state::{
    Command, HealthCheck, Index, Node, Outcome, Registration, ServiceInstance, StateError, Store,
    Table,
};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::local_log::LocalLog;
use crate::tombstone_reaper::TombstoneReaper;

/// The Consul release whose API praetor answers like; clients that check
/// `Config.Version` in `/v1/agent/self` see this.
pub const CONSUL_COMPATIBLE_VERSION: &str = "1.22.0";

/// Praetor's own version.
pub const PRAETOR_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Why the agent could not carry out a write.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    State(#[from] StateError),
}

/// One running agent: its configuration, its state, and the token that
/// stops it.
pub struct Agent {
    config: Config,
    node_id: String,
    store: Arc<Store>,
    log: LocalLog,
    shutdown: CancellationToken,
    started: Instant,
}

impl Agent {
    pub fn new(config: Config) -> Arc<Agent> {
        let node_id = config.node_id.clone().unwrap_or_else(random_uuid);
        Arc::new(Agent {
            config,
            node_id,
            store: Arc::new(Store::new()),
            log: LocalLog::default(),
            shutdown: CancellationToken::new(),
            started: Instant::now(),
        })
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

    /// Replicates `command` and applies it; returns the index it was
    /// applied at and what it produced.
    pub async fn apply(&self, command: Command) -> Result<(Index, Outcome), AgentError> {
        Ok(self.log.append(&self.store, &command)?)
    }

    /// The Raft address of the leader, as `/v1/status/leader` reports it.
    /// A dev agent leads itself.
    pub fn leader_address(&self) -> String {
        std::net::SocketAddr::new(self.advertise_ip(), self.config.ports.server).to_string()
    }

    /// The Raft addresses of every voting server.
    pub fn peers(&self) -> Vec<String> {
        vec![self.leader_address()]
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
        let tagged_addresses = BTreeMap::from([
            ("lan".to_owned(), address.clone()),
            (format!("lan_{}", ip_family(&address)), address.clone()),
            ("wan".to_owned(), address.clone()),
            (format!("wan_{}", ip_family(&address)), address.clone()),
        ]);
        let node = Node {
            id: self.node_id.clone(),
            name: self.config.node_name.clone(),
            address,
            datacenter: self.config.datacenter.clone(),
            tagged_addresses,
            meta: BTreeMap::from([("consul-network-segment".to_owned(), String::new())]),
            ..Node::default()
        };
        let serf_health = HealthCheck {
            check_id: SERF_CHECK_ID.to_owned(),
            name: SERF_CHECK_NAME.to_owned(),
            status: "passing".to_owned(),
            output: SERF_ALIVE_OUTPUT.to_owned(),
            check_type: String::new(),
            ..HealthCheck::default()
        };
        let service = self.config.server.then(|| ServiceInstance {
            id: "consul".to_owned(),
            service: "consul".to_owned(),
            port: self.config.ports.server,
            ..ServiceInstance::default()
        });
        let registration = Registration {
            node,
            skip_node_update: false,
            service,
            checks: vec![serf_health],
        };
        match self
            .apply(Command::Register(Box::new(registration)))
            .await?
        {
            (_, Outcome::Catalog(Err(error))) => {
                tracing::warn!(%error, "could not register this agent in the catalog");
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// Asks the agent to leave and stop; every server loop watches
    /// [`Agent::stopping`].
    pub fn leave(&self) {
        self.shutdown.cancel();
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

fn ip_family(address: &str) -> &'static str {
    if address.contains(':') {
        "ipv6"
    } else {
        "ipv4"
    }
}

/// A random (version 4) UUID, as Consul generates node IDs.
fn random_uuid() -> String {
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
