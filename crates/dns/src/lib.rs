//! Praetor's DNS interface: Consul's names answered from the catalog.
//!
//! `<node>.node[.<dc>].<domain>`, `[<tag>.]<service>.service[.<dc>].<domain>`,
//! RFC 2782 `_<service>._<tag|tcp>.service[.<dc>].<domain>`,
//! `<hex-ip>.addr[.<dc>].<domain>`, `<query>.query[.<dc>].<domain>`,
//! reverse (`in-addr.arpa`, `ip6.arpa`) lookups of catalog addresses, and
//! SOA/NS for the domain. Names of another datacenter are answered with
//! what [`OtherDatacenters`] fetches from there. Names outside the domain
//! go to the configured recursors.
//!
//! The catalog is read through [`Catalog`]: on a server every query reads
//! one state-store [`Snapshot`](state::Snapshot) taken for it, so DNS never
//! holds a lock a writer waits on; a client agent, which keeps no catalog,
//! reads through a server and still formats every answer with its own
//! settings, as a Consul client does. [`serve`] is the thin hickory shell
//! around the answering logic.

mod answer;
mod catalog;
mod config;
mod handler;
mod name;
mod recursor;
mod remote;
mod trim;
mod wire;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hickory_server::Server;
use tokio::net::{TcpListener, UdpSocket};

pub use catalog::{run_prepared_query, AddressOwners, Catalog, CatalogError};
pub use config::{DnsConfig, SoaConfig};
pub use handler::CatalogDns;
pub use remote::{OtherDatacenters, RemoteError};

/// Where each query gets the catalog version it answers from.
pub type SnapshotSource = Arc<dyn Fn() -> Arc<state::Snapshot> + Send + Sync>;

/// Where each query gets the catalog it reads from.
pub type CatalogSource = Arc<dyn Fn() -> Arc<dyn Catalog> + Send + Sync>;

/// A [`SnapshotSource`] reading `store`.
pub fn snapshots_of(store: Arc<state::Store>) -> SnapshotSource {
    Arc::new(move || store.snapshot())
}

/// How long an idle TCP connection is kept before it is closed.
const TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// Outgoing responses buffered per TCP connection.
const TCP_RESPONSE_BUFFER: usize = 32;

/// Serves DNS on `udp` and `tcp` with `handler` until `shutdown` resolves;
/// then stops accepting and returns once the queries in flight are answered.
pub async fn serve(
    udp: UdpSocket,
    tcp: TcpListener,
    handler: CatalogDns,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let mut server = Server::new(handler);
    server.register_socket(udp);
    server.register_listener(tcp, TCP_IDLE_TIMEOUT, TCP_RESPONSE_BUFFER);
    let token = server.shutdown_token().clone();
    tokio::select! {
        () = shutdown => token.cancel(),
        done = server.block_until_done() => return done.map_err(std::io::Error::other),
    }
    server
        .block_until_done()
        .await
        .map_err(std::io::Error::other)
}
