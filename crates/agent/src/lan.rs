//! The gossip pools. Every agent, server or client, is a member of its
//! datacenter's LAN Serf pool on `ports.serf_lan` (8301), tagged as Consul
//! tags its members, so that agents find the servers from gossip and a
//! node's failure is noticed by its peers rather than by the servers.
//! Servers are also members of the WAN pool on `ports.serf_wan` (8302),
//! shared with the servers of every other datacenter, as `<node>.<dc>`:
//! that is how a server finds a way to another datacenter.
//!
//! Both pools run the same [`AgentNode`] the Serf agent runs; this module
//! builds it from the Consul configuration and reads Consul's meaning out
//! of the members' tags. [`PoolKind`] holds what differs between them.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gossip::shell::{bind_both, runner};
use serf::snapshot::Snapshotter;
use serf::{Event, Member, MemberStatus, ReconnectTimeoutOverride, Serf, Tags};
use serf_agent::handle::NodeHandle;
use serf_agent::node::{AgentNode, NodeParts, Published};
use tokio::sync::broadcast;

use crate::config::Config;
use crate::CONSUL_COMPATIBLE_VERSION;

/// The tag in which a client advertises its own reconnect timeout
/// (`advertise_reconnect_timeout`), a Go duration; Consul's `rc_tm`.
pub const RECONNECT_TIMEOUT_TAG: &str = "rc_tm";

/// Which of Consul's two pools.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolKind {
    /// Every agent of one datacenter, named by node name.
    Lan,
    /// The servers of every datacenter, named `<node>.<dc>`.
    Wan,
}

impl PoolKind {
    /// How Consul's logs and errors name the pool.
    pub fn label(self) -> &'static str {
        match self {
            PoolKind::Lan => "LAN",
            PoolKind::Wan => "WAN",
        }
    }

    /// The port the pool gossips on; `None` for a WAN pool turned off.
    fn port(self, config: &Config) -> Option<u16> {
        match self {
            PoolKind::Lan => Some(config.ports.serf_lan),
            PoolKind::Wan => config.ports.serf_wan,
        }
    }

    /// This agent's member name in the pool.
    pub fn member_name(self, config: &Config) -> String {
        match self {
            PoolKind::Lan => config.node_name.clone(),
            PoolKind::Wan => format!("{}.{}", config.node_name, config.datacenter),
        }
    }

    /// The stem of the snapshot and keyring files under `data_dir/serf`
    /// (Consul's `local.*` and `remote.*`).
    fn file_stem(self) -> &'static str {
        match self {
            PoolKind::Lan => "local",
            PoolKind::Wan => "remote",
        }
    }

    /// How long a failed member stays in the pool before it is reaped.
    fn reconnect_timeout(self, config: &Config) -> Duration {
        match self {
            PoolKind::Lan => config.reconnect_timeout,
            PoolKind::Wan => config.reconnect_timeout_wan,
        }
    }

    fn gossip_config(self, name: String, advertise: SocketAddr) -> gossip::Config {
        match self {
            PoolKind::Lan => gossip::Config::lan(name, advertise),
            PoolKind::Wan => gossip::Config::wan(name, advertise),
        }
    }

    fn tags(self, config: &Config, node_id: &str) -> Tags {
        match self {
            PoolKind::Lan => lan_tags(config, node_id),
            PoolKind::Wan => wan_tags(config, node_id),
        }
    }
}

/// Why the pool could not start.
#[derive(Debug, thiserror::Error)]
pub enum LanError {
    #[error("Failed to configure keyring: {0}")]
    Keyring(String),
    #[error("Failed to start {pool} Serf: failed to listen on {addr}: {reason}")]
    Listen {
        pool: &'static str,
        addr: SocketAddr,
        reason: String,
    },
    #[error("Failed to start {pool} Serf: {reason}")]
    Start { pool: &'static str, reason: String },
}

/// A Consul server as its LAN tags describe it (Consul's
/// `metadata.IsConsulServer`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerMeta {
    pub name: String,
    /// Its node ID (the `id` tag).
    pub id: String,
    pub datacenter: String,
    /// Its server port: the member's address with the `port` tag.
    pub addr: SocketAddr,
    /// Its `bootstrap_expect` (0: none).
    pub expect: u32,
    pub bootstrap: bool,
    pub status: MemberStatus,
}

impl ServerMeta {
    /// The server a member is, if its tags say it is one; a member whose
    /// server tags do not parse is not taken for a server.
    pub fn of(member: &Member) -> Option<ServerMeta> {
        let tags = &member.tags;
        if tags.get("role").map(String::as_str) != Some("consul") {
            return None;
        }
        let port: u16 = tags.get("port")?.parse().ok()?;
        let expect = match tags.get("expect") {
            Some(e) => e.parse().ok()?,
            None => 0,
        };
        Some(ServerMeta {
            name: member.name.clone(),
            id: tags.get("id").cloned().unwrap_or_default(),
            datacenter: tags.get("dc")?.clone(),
            addr: SocketAddr::new(member.addr, port),
            expect,
            bootstrap: tags.get("bootstrap").is_some_and(|b| b == "1"),
            status: member.status,
        })
    }
}

/// The tags a Consul agent gossips: its role, datacenter, node ID and
/// protocol range; servers add their server port and bootstrap settings.
pub fn lan_tags(config: &Config, node_id: &str) -> Tags {
    let mut tags = Tags::new();
    let mut set = |k: &str, v: String| {
        tags.insert(k.to_owned(), v);
    };
    let server = config.server || config.dev;
    set("role", if server { "consul" } else { "node" }.into());
    set("dc", config.datacenter.clone());
    set("segment", String::new());
    set("id", node_id.to_owned());
    set("vsn", "2".into());
    set("vsn_min", "2".into());
    set("vsn_max", "3".into());
    set("build", format!("{CONSUL_COMPATIBLE_VERSION}:praetor"));
    if let (false, Some(timeout)) = (server, config.advertise_reconnect_timeout) {
        set(
            RECONNECT_TIMEOUT_TAG,
            crate::go_duration::format_go_duration(timeout),
        );
    }
    if server {
        set("port", config.ports.server.to_string());
        set("raft_vsn", "3".into());
        // A server out of the WAN pool has no WAN port to be joined at.
        if let Some(port) = config.ports.serf_wan {
            set("wan_join_port", port.to_string());
        }
        if config.bootstrap {
            set("bootstrap", "1".into());
        }
        if let Some(expect) = config.bootstrap_expect {
            set("expect", expect.to_string());
        }
    }
    tags
}

/// The reap timeout of `member`: the one it advertises in its `rc_tm` tag
/// if that is a positive duration, else the pool's `timeout` (Consul's
/// `ReconnectOverride`).
pub fn advertised_reconnect_timeout(member: &Member, timeout: Duration) -> Duration {
    let Some(advertised) = member.tags.get(RECONNECT_TIMEOUT_TAG) else {
        return timeout;
    };
    match crate::go_duration::parse_go_duration(advertised) {
        Ok(nanos) if nanos > 0 => Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX)),
        Ok(_) => timeout,
        Err(_) => {
            tracing::warn!(member = %member.name, rc_tm = %advertised,
                "Member is advertising a malformed reconnect timeout");
            timeout
        }
    }
}

/// The tags a server gossips in the WAN pool: its LAN server tags, less
/// the WAN port (the pool's own address says it).
pub fn wan_tags(config: &Config, node_id: &str) -> Tags {
    let mut tags = lan_tags(config, node_id);
    tags.remove("wan_join_port");
    tags
}

/// A running pool, LAN or WAN.
pub struct SerfPool {
    kind: PoolKind,
    node: NodeHandle,
    events: broadcast::Sender<Event>,
    /// The port join addresses without one are taken to mean.
    port: u16,
}

/// The LAN pool (every agent has one).
pub type LanPool = SerfPool;
/// The WAN pool (servers only).
pub type WanPool = SerfPool;

impl SerfPool {
    /// Starts the LAN pool: see [`SerfPool::start_kind`].
    pub async fn start(config: &Config, node_id: &str) -> Result<Arc<SerfPool>, LanError> {
        SerfPool::start_kind(PoolKind::Lan, config, node_id).await
    }

    /// Binds `bind_addr` on the pool's port and starts gossiping; rejoins
    /// the nodes the snapshot remembers unless the last run left the pool.
    pub async fn start_kind(
        kind: PoolKind,
        config: &Config,
        node_id: &str,
    ) -> Result<Arc<SerfPool>, LanError> {
        let pool = kind.label();
        let failed = |reason: String| LanError::Start { pool, reason };
        let port = kind
            .port(config)
            .ok_or_else(|| failed("the pool is disabled (its port is -1)".to_owned()))?;
        let bind = SocketAddr::new(config.bind_addr, port);
        let mut advertise = SocketAddr::new(crate::server::advertise_ip(config), bind.port());
        let (listener, udp) = bind_both(bind).await.map_err(|e| LanError::Listen {
            pool,
            addr: bind,
            reason: e.to_string(),
        })?;
        if let Ok(local) = listener.local_addr() {
            gossip::shell::resolve_advertise(&mut advertise, local)
                .map_err(|e| failed(e.to_string()))?;
        }
        let me = kind.member_name(config);
        let mut gossip_config = kind.gossip_config(me.clone(), advertise);
        let dir = (!config.dev)
            .then(|| config.data_dir.as_ref().map(|d| d.join("serf")))
            .flatten();
        let stem = kind.file_stem();
        let keyring_file = dir.as_ref().map(|d| d.join(format!("{stem}.keyring")));
        gossip_config.keyring = keyring(config, keyring_file.as_deref())?;

        let mut serf_config = serf::Config::new(gossip_config);
        serf_config.tags = kind.tags(config, node_id);
        serf_config.reconnect_timeout = kind.reconnect_timeout(config);
        serf_config.reconnect_timeout_override =
            Some(ReconnectTimeoutOverride::new(advertised_reconnect_timeout));
        // Node IDs, not a vote of the pool, settle who owns a name.
        serf_config.enable_name_conflict_resolution = false;

        let now = Instant::now();
        let (snapshot, previous) = match &dir {
            Some(d) => {
                std::fs::create_dir_all(d).map_err(|e| failed(format!("{}: {e}", d.display())))?;
                let file = d.join(format!("{stem}.snapshot"));
                let (s, prev) = Snapshotter::open(&file, config.rejoin_after_leave, now)
                    .map_err(|e| failed(e.to_string()))?;
                (Some(s), Some(prev))
            }
            None => (None, None),
        };
        let mut serf =
            Serf::new(serf_config, now, rand::random()).map_err(|e| failed(e.to_string()))?;
        if let Some(prev) = &previous {
            serf.restore(prev);
        }
        let published = Arc::new(Published::default());
        let (events, _) = broadcast::channel(4096);
        let parts = NodeParts {
            // Member events drive the catalog and server discovery: they
            // go out as they happen, not coalesced.
            coalescer: None,
            snapshot,
            events: events.clone(),
            keyring_file,
            tags_file: None,
            published: Arc::clone(&published),
        };
        let runner = runner::start(AgentNode::new(serf, parts, now), listener, udp)
            .map_err(|e| failed(e.to_string()))?;
        let pool = Arc::new(SerfPool {
            kind,
            node: NodeHandle {
                runner: Arc::new(runner),
                published,
            },
            events,
            port: bind.port(),
        });
        if let Some(prev) = previous {
            let addrs: Vec<String> = prev
                .alive
                .into_iter()
                .filter(|(name, _)| *name != me)
                .map(|(_, addr)| addr)
                .collect();
            tokio::spawn(Arc::clone(&pool).rejoin(addrs));
        }
        Ok(pool)
    }

    /// Joins the first previously known node that answers.
    async fn rejoin(self: Arc<Self>, addrs: Vec<String>) {
        for addr in addrs {
            if self.join(std::slice::from_ref(&addr)).await.is_ok() {
                tracing::info!(%addr, "serf: re-joined a previously known node");
                return;
            }
        }
    }

    /// Which pool this is.
    pub fn kind(&self) -> PoolKind {
        self.kind
    }

    /// Every member of the pool, as last published (this agent included).
    pub fn members(&self) -> Vec<Member> {
        self.node.members()
    }

    /// This agent as a member.
    pub fn local_member(&self) -> Option<Member> {
        self.node.local_member()
    }

    /// The Vivaldi coordinate Serf holds for `node` (this agent's own
    /// included), as last published; `None` before the first publication.
    pub fn coordinate_of(&self, node: &str) -> Option<coordinate::Coordinate> {
        let published = self.node.published.coordinates.read().ok()?;
        published.get(node).cloned()
    }

    /// The servers of `datacenter` the pool says are alive.
    pub fn servers(&self, datacenter: &str) -> Vec<ServerMeta> {
        self.members()
            .iter()
            .filter_map(ServerMeta::of)
            .filter(|s| s.datacenter == datacenter && s.status == MemberStatus::Alive)
            .collect()
    }

    /// The pool's events as they happen: member changes and user events.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    /// Joins the agents at `addrs` (`host`, `ip`, `host:port`); a missing
    /// port is this pool's port. Returns how many were contacted.
    pub async fn join(&self, addrs: &[String]) -> Result<u32, String> {
        self.node.join(addrs, self.port, false).await
    }

    /// Joins `addrs` every `interval` until one round contacts a node.
    pub async fn retry_join(&self, addrs: Vec<String>, interval: Duration) {
        loop {
            let pool = self.kind.label();
            tracing::info!(addrs = ?addrs, "agent: joining the {pool} pool");
            match self.join(&addrs).await {
                Ok(n) => {
                    tracing::info!(nodes = n, "agent: joined the {pool} pool");
                    return;
                }
                Err(error) => {
                    tracing::warn!(%error, retry_interval = ?interval, "agent: join failed, will retry");
                }
            }
            tokio::time::sleep(interval).await;
        }
    }

    /// Leaves the pool gracefully: the others see this agent as left, not
    /// failed.
    pub async fn leave(&self) -> Result<(), String> {
        self.node.leave().await
    }

    /// Marks the failed member `node` as left (`prune`: forgets it too).
    pub async fn force_leave(&self, node: &str, prune: bool) -> Result<(), String> {
        if !self.members().iter().any(|m| m.name == node) {
            return Err(format!("agent: No node found with name '{node}'"));
        }
        self.node.force_leave(node.to_owned(), prune).await
    }

    /// Gossips a user event (never coalesced); returns the Lamport time
    /// serf gave it, the time every member will see it with.
    pub async fn user_event(&self, name: String, payload: Vec<u8>) -> Result<u64, String> {
        self.node
            .run(move |n, now| {
                let ltime = n.serf.clocks().1;
                n.serf
                    .user_event(now, &name, &payload, false)
                    .map(|()| ltime)
                    .map_err(|e| e.to_string())
            })
            .await?
    }

    /// Runs a key-management query across the pool and sums up the
    /// members' answers; `Err` when the query could not be sent (a key
    /// that is not base64, a stopped agent).
    pub async fn key_operation(
        &self,
        op: crate::keyring::KeyringOp,
        relay_factor: u8,
    ) -> Result<serf::KeySummary, String> {
        use base64::Engine as _;
        // Serf reads the key back from canonical base64.
        let key = match op.key() {
            Some(k) => Some(
                base64::engine::general_purpose::STANDARD.encode(crate::keyring::decode_key(k)?),
            ),
            None => None,
        };
        let kop = op.serf_op();
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.node
            .run(move |n, now| n.key_query(now, kop, key.as_deref(), relay_factor, tx))
            .await??;
        rx.await.map_err(|_| "the agent stopped".to_string())
    }

    /// Stops gossiping (after a final snapshot flush), without a leave.
    pub async fn shutdown(&self) {
        let _ = self
            .node
            .run(|n, _| {
                n.close();
                n.request_stop();
            })
            .await;
    }
}

/// The pool's keyring: the keyring file a previous start wrote, else the
/// `encrypt` key (then written to the file so later starts keep using the
/// keys installed since), else none.
fn keyring(
    config: &Config,
    file: Option<&Path>,
) -> Result<Option<gossip::keyring::Keyring>, LanError> {
    let failed = |e: serf_agent::config::ConfigError| LanError::Keyring(e.to_string());
    if let Some(path) = file.filter(|p| p.exists()) {
        if config.encrypt.is_some() {
            tracing::warn!(
                path = %path.display(),
                "loaded the keyring from its file: the encrypt key is ignored"
            );
        }
        let keys = serf_agent::config::load_keyring_file(path).map_err(failed)?;
        return serf_agent::config::keyring(&keys).map_err(failed);
    }
    let Some(key) = &config.encrypt else {
        return Ok(None);
    };
    use base64::Engine as _;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(key.trim())
        .map_err(|e| LanError::Keyring(format!("Invalid encryption key: {e}")))?;
    let ring = serf_agent::config::keyring(std::slice::from_ref(&raw)).map_err(failed)?;
    if let Some(path) = file {
        write_keyring(path, key.trim())?;
    }
    Ok(ring)
}

fn write_keyring(path: &Path, key: &str) -> Result<(), LanError> {
    let failed =
        |e: std::io::Error| LanError::Keyring(format!("cannot write {}: {e}", path.display()));
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(failed)?;
    }
    serf_agent::config::write_keyring_file(path, &[key.to_owned()]).map_err(failed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{IpAddr, Ipv4Addr};

    fn member(tags: &[(&str, &str)]) -> Member {
        Member {
            name: "s1".into(),
            addr: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
            port: 8301,
            tags: tags
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            status: MemberStatus::Alive,
            vsn: [2, 5, 2, 2, 5, 4],
        }
    }

    #[test]
    fn servers_are_read_from_their_tags() {
        let m = member(&[
            ("role", "consul"),
            ("dc", "east"),
            ("port", "8300"),
            ("expect", "3"),
            ("id", "abc"),
        ]);
        let s = ServerMeta::of(&m).expect("a server");
        assert_eq!(s.addr, "10.0.0.1:8300".parse().unwrap());
        assert_eq!(
            (s.expect, s.datacenter.as_str(), s.id.as_str()),
            (3, "east", "abc")
        );
        assert!(!s.bootstrap);
    }

    #[test]
    fn clients_and_malformed_servers_are_not_servers() {
        assert!(ServerMeta::of(&member(&[("role", "node"), ("dc", "dc1")])).is_none());
        let bad_port = member(&[("role", "consul"), ("dc", "dc1"), ("port", "x")]);
        assert!(ServerMeta::of(&bad_port).is_none());
        let bad_expect = member(&[
            ("role", "consul"),
            ("dc", "dc1"),
            ("port", "8300"),
            ("expect", "three"),
        ]);
        assert!(ServerMeta::of(&bad_expect).is_none());
    }

    #[test]
    fn servers_tag_their_port_and_expectation_clients_do_not() {
        let server = Config {
            server: true,
            bootstrap_expect: Some(3),
            ..Config::default()
        };
        let tags = lan_tags(&server, "id-1");
        assert_eq!(tags["role"], "consul");
        assert_eq!(tags["port"], "8300");
        assert_eq!(tags["expect"], "3");
        assert_eq!(tags["id"], "id-1");
        let client = lan_tags(&Config::default(), "id-2");
        assert_eq!(client["role"], "node");
        assert!(!client.contains_key("port") && !client.contains_key("expect"));
    }

    #[test]
    fn a_client_advertises_its_reconnect_timeout_and_members_honour_it() {
        let client = Config {
            advertise_reconnect_timeout: Some(Duration::from_secs(90)),
            ..Config::default()
        };
        let tags = lan_tags(&client, "id-1");
        assert_eq!(tags[RECONNECT_TIMEOUT_TAG], "1m30s");
        assert!(!lan_tags(&Config::default(), "id-2").contains_key(RECONNECT_TIMEOUT_TAG));

        let pool = Duration::from_secs(72 * 3600);
        let timeout = |tag: &str| {
            advertised_reconnect_timeout(&member(&[(RECONNECT_TIMEOUT_TAG, tag)]), pool)
        };
        assert_eq!(timeout("1m30s"), Duration::from_secs(90));
        assert_eq!(timeout("500ms"), Duration::from_millis(500));
        // Zero, negative and malformed values leave the pool's timeout.
        assert_eq!(timeout("0s"), pool);
        assert_eq!(timeout("-5s"), pool);
        assert_eq!(timeout("soon"), pool);
        assert_eq!(advertised_reconnect_timeout(&member(&[]), pool), pool);
    }

    #[test]
    fn the_wan_pool_names_servers_by_datacenter_and_drops_the_wan_port_tag() {
        let server = Config {
            server: true,
            node_name: "s1".into(),
            datacenter: "east".into(),
            ..Config::default()
        };
        assert_eq!(PoolKind::Wan.member_name(&server), "s1.east");
        assert_eq!(PoolKind::Lan.member_name(&server), "s1");
        let lan = lan_tags(&server, "id-1");
        let wan = wan_tags(&server, "id-1");
        assert_eq!(lan["wan_join_port"], "8302");
        assert!(!wan.contains_key("wan_join_port"));
        assert_eq!(
            (wan["role"].as_str(), wan["dc"].as_str()),
            ("consul", "east")
        );
        assert_eq!(wan["port"], "8300");
        let meta = ServerMeta::of(&Member {
            name: "s1.east".into(),
            tags: wan,
            ..member(&[])
        })
        .expect("a WAN member is a server");
        assert_eq!(meta.datacenter, "east");
    }
}
