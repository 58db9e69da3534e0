//! The other datacenters, as a server sees them through the WAN pool.
//!
//! Every server of every datacenter is a member of one WAN Serf pool,
//! tagged with its datacenter and server port. From those members a
//! server knows which datacenters exist, how far each one is (the median
//! of the estimated round trips from its own WAN coordinate to that
//! datacenter's servers, as Consul's `GetDatacentersByDistance` measures
//! it) and where to send a call meant for one of them: an HTTP API call
//! (`?dc=`), or a read of its catalog (DNS names of that datacenter,
//! prepared queries failing over to it).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use consensus::{paths, ApiReply, ApiRequest, CallError, DcRead, DcReadReply, RpcClient};
use coordinate::Coordinate;
use rand::seq::SliceRandom;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serf::{Event, Member, MemberEventKind, MemberStatus};
use state::{CheckServiceNode, Execution, Node, PreparedQuery};
use tokio::sync::broadcast::error::RecvError;

use crate::lan::{LanPool, ServerMeta, WanPool};

/// How long a call forwarded to another datacenter may take: a blocking
/// query waits up to ten minutes plus a sixteenth of it.
const API_TIMEOUT: Duration = Duration::from_secs(11 * 60);

/// How long a read of another datacenter's catalog may take: these are
/// never blocking queries, and a DNS client gives up after a few seconds.
const DC_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a call could not reach another datacenter.
#[derive(Debug, thiserror::Error)]
pub enum FederationError {
    /// Consul's `structs.ErrNoDCPath`: no server of that datacenter is
    /// known and alive.
    #[error("No path to datacenter")]
    NoPath,
    #[error("rpc error: {0}")]
    Rpc(String),
}

/// One server of a datacenter with its WAN coordinate, if Serf has one.
#[derive(Debug, Clone)]
pub struct ServerCoordinate {
    /// Its node name, without the `.<dc>` the WAN pool adds.
    pub node: String,
    pub coordinate: Option<Coordinate>,
}

/// A server's way to the other datacenters.
pub struct Federation {
    wan: Arc<WanPool>,
    datacenter: String,
    client: RpcClient,
}

impl Federation {
    pub fn new(wan: Arc<WanPool>, datacenter: String) -> Federation {
        Federation {
            wan,
            datacenter,
            client: RpcClient::default(),
        }
    }

    /// The WAN pool.
    pub fn pool(&self) -> &Arc<WanPool> {
        &self.wan
    }

    /// Every server of the WAN pool that has not left (failed ones
    /// included: their datacenter still exists).
    fn servers(&self) -> Vec<ServerMeta> {
        self.wan
            .members()
            .iter()
            .filter_map(ServerMeta::of)
            .filter(|s| s.status != MemberStatus::Left)
            .collect()
    }

    /// Whether `datacenter` is this server's own.
    pub fn is_local(&self, datacenter: &str) -> bool {
        datacenter.eq_ignore_ascii_case(&self.datacenter)
    }

    /// Every known datacenter, nearest first (this one first of all).
    pub fn datacenters_by_distance(&self) -> Vec<String> {
        let me = self.wan.local_member().map(|m| m.name);
        let own = me.and_then(|name| self.wan.coordinate_of(&name));
        let servers: Vec<(String, Option<Coordinate>)> = self
            .servers()
            .into_iter()
            .map(|s| {
                let coord = self.wan.coordinate_of(&s.name);
                (s.datacenter, coord)
            })
            .collect();
        sort_by_distance(&self.datacenter, own.as_ref(), &servers)
    }

    /// Each datacenter's servers with their WAN coordinates, datacenters
    /// and nodes in name order.
    pub fn datacenter_maps(&self) -> BTreeMap<String, Vec<ServerCoordinate>> {
        let mut maps: BTreeMap<String, Vec<ServerCoordinate>> = BTreeMap::new();
        for server in self.servers() {
            let suffix = format!(".{}", server.datacenter);
            let node = server
                .name
                .strip_suffix(&suffix)
                .unwrap_or(&server.name)
                .to_owned();
            let coordinate = self.wan.coordinate_of(&server.name);
            maps.entry(server.datacenter)
                .or_default()
                .push(ServerCoordinate { node, coordinate });
        }
        for servers in maps.values_mut() {
            servers.sort_by(|a, b| a.node.cmp(&b.node));
        }
        maps
    }

    /// The alive servers of `datacenter`, shuffled so calls spread.
    fn route(&self, datacenter: &str) -> Vec<ServerMeta> {
        let mut servers: Vec<ServerMeta> = self
            .servers()
            .into_iter()
            .filter(|s| {
                s.status == MemberStatus::Alive && s.datacenter.eq_ignore_ascii_case(datacenter)
            })
            .collect();
        servers.shuffle(&mut rand::rng());
        servers
    }

    /// Every known datacenter but this one, nearest first (Consul's
    /// `GetOtherDatacentersByDistance`).
    pub fn other_datacenters_by_distance(&self) -> Vec<String> {
        self.datacenters_by_distance()
            .into_iter()
            .filter(|dc| !self.is_local(dc))
            .collect()
    }

    /// Sends `request` to `path` on an alive server of `datacenter`; a
    /// server that cannot be reached is passed over for the next.
    async fn call<Q: Serialize, A: DeserializeOwned>(
        &self,
        datacenter: &str,
        path: &str,
        request: &Q,
        timeout: Duration,
    ) -> Result<A, FederationError> {
        for server in self.route(datacenter) {
            let addr = server.addr.to_string();
            match self.client.call(&addr, path, request, timeout).await {
                Ok(reply) => return Ok(reply),
                Err(CallError::Unreachable { reason, .. }) => {
                    tracing::debug!(server = %addr, %datacenter, %reason, "remote server unreachable, trying another");
                }
                Err(error) => return Err(FederationError::Rpc(error.to_string())),
            }
        }
        Err(FederationError::NoPath)
    }

    /// Has a server of `datacenter` answer an HTTP API call with its own
    /// API.
    pub async fn api(
        &self,
        datacenter: &str,
        request: &ApiRequest,
    ) -> Result<ApiReply, FederationError> {
        self.call(datacenter, paths::API, request, API_TIMEOUT)
            .await
    }

    /// Has a server of `datacenter` answer `read` from its catalog.
    pub async fn read(
        &self,
        datacenter: &str,
        read: &DcRead,
    ) -> Result<DcReadReply, FederationError> {
        match self
            .call(datacenter, paths::DC_READ, read, DC_READ_TIMEOUT)
            .await?
        {
            DcReadReply::Failed(reason) => Err(FederationError::Rpc(reason)),
            reply => Ok(reply),
        }
    }

    /// Every instance of `service` in `datacenter`, with nodes and checks.
    pub async fn service_health(
        &self,
        datacenter: &str,
        service: &str,
    ) -> Result<Vec<CheckServiceNode>, FederationError> {
        let read = DcRead::ServiceHealth {
            service: service.to_owned(),
        };
        match self.read(datacenter, &read).await? {
            DcReadReply::Instances(instances) => Ok(instances),
            other => Err(unexpected(&other)),
        }
    }

    /// The node `name` of `datacenter`, if there is one.
    pub async fn node(
        &self,
        datacenter: &str,
        name: &str,
    ) -> Result<Option<Node>, FederationError> {
        let read = DcRead::Node {
            name: name.to_owned(),
        };
        match self.read(datacenter, &read).await? {
            DcReadReply::Node(node) => Ok(node),
            other => Err(unexpected(&other)),
        }
    }

    /// The prepared query `id_or_name` of `datacenter` run there for an
    /// asker here; `None` when it has no such query.
    pub async fn execute_query(
        &self,
        datacenter: &str,
        id_or_name: &str,
    ) -> Result<Option<Execution>, FederationError> {
        let read = DcRead::ExecuteQuery {
            id_or_name: id_or_name.to_owned(),
        };
        match self.read(datacenter, &read).await? {
            DcReadReply::Execution(run) => Ok(run.map(|run| *run)),
            other => Err(unexpected(&other)),
        }
    }

    /// `query` itself run in `datacenter`, which fails over no further
    /// (Consul's `PreparedQuery.ExecuteRemote`).
    pub async fn execute_remote(
        &self,
        datacenter: &str,
        query: &PreparedQuery,
        limit: usize,
    ) -> Result<Execution, FederationError> {
        let read = DcRead::ExecuteRemote {
            query: Box::new(query.clone()),
            limit: u64::try_from(limit).unwrap_or(u64::MAX),
        };
        match self.read(datacenter, &read).await? {
            DcReadReply::Execution(Some(run)) => Ok(*run),
            other => Err(unexpected(&other)),
        }
    }
}

/// An answer of another kind than the read asked for.
fn unexpected(reply: &DcReadReply) -> FederationError {
    let kind = match reply {
        DcReadReply::Instances(_) => "instances",
        DcReadReply::Node(_) => "a node",
        DcReadReply::Execution(_) => "a query execution",
        DcReadReply::Failed(_) => "a failure",
    };
    FederationError::Rpc(format!("a datacenter read was answered with {kind}"))
}

/// The WAN address of a LAN member that is a server of `datacenter` and
/// is missing from the WAN pool: its address with its `wan_join_port` tag.
fn missing_from_wan(member: &Member, datacenter: &str, wan: &WanPool) -> Option<String> {
    let server = ServerMeta::of(member)?;
    if server.datacenter != datacenter || server.status != MemberStatus::Alive {
        return None;
    }
    let port: u16 = member.tags.get("wan_join_port")?.parse().ok()?;
    let wan_name = format!("{}.{datacenter}", member.name);
    if wan.members().iter().any(|m| m.name == wan_name) {
        return None;
    }
    Some(std::net::SocketAddr::new(member.addr, port).to_string())
}

/// Consul's flood join: every server of this datacenter the LAN pool
/// knows is joined into the WAN pool too (at its `wan_join_port`), so
/// that joining one server of a datacenter over the WAN brings in the
/// others. Runs until the LAN pool stops.
pub async fn flood_join(lan: Arc<LanPool>, wan: Arc<WanPool>, datacenter: String) {
    let mut events = lan.subscribe();
    let flood = |members: &[Member]| {
        let addrs: Vec<String> = members
            .iter()
            .filter_map(|m| missing_from_wan(m, &datacenter, &wan))
            .collect();
        let wan = Arc::clone(&wan);
        async move {
            if addrs.is_empty() {
                return;
            }
            match wan.join(&addrs).await {
                Ok(n) => tracing::info!(
                    nodes = n,
                    "agent: flood-joined LAN servers into the WAN pool"
                ),
                Err(error) => tracing::debug!(%error, "agent: WAN flood join failed"),
            }
        }
    };
    flood(&lan.members()).await;
    loop {
        match events.recv().await {
            Ok(Event::Member {
                kind: MemberEventKind::Join | MemberEventKind::Update,
                members,
            }) => flood(&members).await,
            Ok(_) => {}
            Err(RecvError::Lagged(_)) => flood(&lan.members()).await,
            Err(RecvError::Closed) => return,
        }
    }
}

/// Datacenter names ordered by the median estimated round trip from `own`
/// to each one's servers: `local` counts as zero, a server without a
/// coordinate (or with an incompatible one) as infinitely far. Ties keep
/// name order. `local` is listed even when the pool holds none of its
/// servers.
pub fn sort_by_distance(
    local: &str,
    own: Option<&Coordinate>,
    servers: &[(String, Option<Coordinate>)],
) -> Vec<String> {
    let mut rtts: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    rtts.entry(local).or_default().push(0.0);
    for (datacenter, coord) in servers {
        let rtt = if datacenter.as_str() == local {
            0.0
        } else {
            own.zip(coord.as_ref())
                .and_then(|(a, b)| a.distance_to(b))
                .filter(|d| !d.is_nan())
                .unwrap_or(f64::INFINITY)
        };
        rtts.entry(datacenter).or_default().push(rtt);
    }
    let mut medians: Vec<(&str, f64)> = rtts
        .into_iter()
        .map(|(dc, mut v)| {
            v.sort_by(f64::total_cmp);
            (dc, v[v.len() / 2])
        })
        .collect();
    // Stable: equal distances stay in name order.
    medians.sort_by(|a, b| a.1.total_cmp(&b.1));
    medians.into_iter().map(|(dc, _)| dc.to_owned()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(x: f64) -> Coordinate {
        let mut c = Coordinate::new(&coordinate::Config::default());
        c.vec[0] = x;
        c.height = 0.0;
        c.adjustment = 0.0;
        c
    }

    fn dcs(local: &str, own: Option<&Coordinate>, servers: &[(&str, Option<f64>)]) -> Vec<String> {
        let servers: Vec<(String, Option<Coordinate>)> = servers
            .iter()
            .map(|(dc, x)| (dc.to_string(), x.map(at)))
            .collect();
        sort_by_distance(local, own, &servers)
    }

    #[test]
    fn nearer_datacenters_come_first_the_local_one_before_all() {
        let own = at(0.0);
        let sorted = dcs(
            "dc1",
            Some(&own),
            &[
                ("far", Some(0.9)),
                ("dc1", Some(5.0)),
                ("near", Some(0.1)),
                ("mid", Some(0.4)),
            ],
        );
        assert_eq!(sorted, ["dc1", "near", "mid", "far"]);
    }

    #[test]
    fn a_datacenter_is_as_far_as_the_median_of_its_servers() {
        let own = at(0.0);
        // a: 0.1, 0.2, 0.9 -> 0.2; b: 0.15, 0.3, 0.35 -> 0.3.
        let sorted = dcs(
            "home",
            Some(&own),
            &[
                ("a", Some(0.1)),
                ("a", Some(0.9)),
                ("a", Some(0.2)),
                ("b", Some(0.3)),
                ("b", Some(0.15)),
                ("b", Some(0.35)),
            ],
        );
        assert_eq!(sorted, ["home", "a", "b"]);
    }

    #[test]
    fn unknown_distances_sort_last_in_name_order() {
        let own = at(0.0);
        let sorted = dcs(
            "dc2",
            Some(&own),
            &[("zeta", None), ("alpha", None), ("mid", Some(0.5))],
        );
        assert_eq!(sorted, ["dc2", "mid", "alpha", "zeta"]);
        // Without a coordinate of its own a server knows no distance.
        let sorted = dcs("dc2", None, &[("b", Some(0.1)), ("a", Some(0.9))]);
        assert_eq!(sorted, ["dc2", "a", "b"]);
    }

    #[test]
    fn the_local_datacenter_is_listed_even_alone() {
        assert_eq!(dcs("dc1", None, &[]), ["dc1"]);
    }
}
