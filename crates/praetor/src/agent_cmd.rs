//! `praetor agent`: load the configuration, start the listeners, run until
//! a signal or `/v1/agent/leave`, then stop cleanly.

use std::sync::Arc;
use std::time::Duration;

use agent::config::{self, AgentFlags, Config};
use agent::lan::{LanPool, PoolKind, SerfPool};
use agent::router::ServerRouter;
use agent::{Agent, CONSUL_COMPATIBLE_VERSION, PRAETOR_VERSION};
use anyhow::Context;
use tokio::net::TcpListener;

/// How often the tombstone reaper looks at the graveyard.
const REAP_TICK: Duration = Duration::from_secs(30);
/// How long a graceful leave may take to reach the LAN pool.
const LEAVE_TIMEOUT: Duration = Duration::from_secs(10);

pub fn run(flags: AgentFlags) -> u8 {
    let loaded = match config::load(&flags) {
        Ok(loaded) => loaded,
        Err(error) => {
            eprintln!("==> {error}");
            return 1;
        }
    };
    init_logging(&loaded.config);
    for warning in &loaded.warnings {
        tracing::warn!("{warning}");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(error) => {
            eprintln!("==> cannot start the runtime: {error}");
            return 1;
        }
    };
    match runtime.block_on(serve(loaded.config)) {
        Ok(()) => 0,
        Err(error) => {
            eprintln!("==> {error:#}");
            1
        }
    }
}

fn init_logging(config: &Config) {
    // hickory logs every query at info; keep that out of the agent's log.
    let filter = tracing_subscriber::EnvFilter::new(format!(
        "{},hickory_server=warn,hickory_proto=warn,openraft=warn",
        config.log_level.as_filter()
    ));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let _ = if config.log_json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

async fn serve(mut config: Config) -> anyhow::Result<()> {
    let http_addrs = config.http_addrs();
    let mut listeners = Vec::new();
    for addr in &http_addrs {
        let listener = TcpListener::bind(addr).await.with_context(|| {
            format!("Error starting agent: failed to listen on HTTP address {addr}")
        })?;
        listeners.push(listener);
    }
    let mut dns_sockets = Vec::new();
    for addr in config.dns_addrs() {
        let udp = tokio::net::UdpSocket::bind(addr).await.with_context(|| {
            format!("Error starting agent: failed to listen on DNS address {addr} (udp)")
        })?;
        let tcp = TcpListener::bind(addr).await.with_context(|| {
            format!("Error starting agent: failed to listen on DNS address {addr} (tcp)")
        })?;
        dns_sockets.push((addr, udp, tcp));
    }
    let dns_config = dns_settings(&config)?;
    let pid_file = config.pid_file.clone();
    if let Some(path) = &pid_file {
        std::fs::write(path, std::process::id().to_string()).with_context(|| {
            format!(
                "Error starting agent: could not write pid file {}",
                path.display()
            )
        })?;
    }
    if let (Some(dir), false) = (&config.data_dir, config.dev) {
        let id =
            agent::server::persistent_node_id(dir, config.node_id.as_deref(), agent::random_uuid)
                .context("Error starting agent")?;
        config.node_id = Some(id);
    }
    let node_id = config.node_id.clone().unwrap_or_else(agent::random_uuid);
    config.node_id = Some(node_id.clone());
    let lan = LanPool::start(&config, &node_id)
        .await
        .context("Error starting agent")?;
    let mut server_port = None;
    let agent = if config.dev || config.server {
        let role = agent::server::start(&config, &node_id)
            .await
            .context("Error starting agent")?;
        server_port = role.listener.map(|l| (l, Arc::clone(&role.cluster)));
        let agent = Agent::with_cluster(config, role.cluster).context("Error starting agent")?;
        // `ports.serf_wan = -1` leaves the server out of every WAN pool.
        if agent.config().ports.serf_wan.is_some() {
            let wan = SerfPool::start_kind(PoolKind::Wan, agent.config(), &node_id)
                .await
                .context("Error starting agent")?;
            agent.attach_wan(wan);
        }
        agent
    } else {
        let router = ServerRouter::new(
            Arc::clone(&lan),
            config.datacenter.clone(),
            config.rpc_hold_timeout,
        );
        Agent::as_client(config, Arc::new(router)).context("Error starting agent")?
    };
    agent.attach_lan(Arc::clone(&lan));
    // Subscribed before the join, so no event gossiped to us is missed.
    tokio::spawn(Arc::clone(&agent).receive_gossiped_events(lan.subscribe()));
    if let Some(cluster) = agent.cluster() {
        tokio::spawn(agent::server::discover_servers(
            Arc::clone(&lan),
            Arc::clone(cluster),
        ));
        tokio::spawn(agent::leader::reconcile_members(
            Arc::clone(&agent),
            Arc::clone(&lan),
            Arc::clone(cluster),
        ));
    }
    join_pool(&agent, &lan).await?;
    if let Some(wan) = agent.wan() {
        join_pool(&agent, wan).await?;
        tokio::spawn(agent::federation::flood_join(
            Arc::clone(&lan),
            Arc::clone(wan),
            agent.config().datacenter.clone(),
        ));
    }
    let c = agent.config();
    tracing::info!(
        version = PRAETOR_VERSION,
        consul_api = CONSUL_COMPATIBLE_VERSION,
        node = %c.node_name,
        node_id = agent.node_id(),
        datacenter = %c.datacenter,
        server = c.server,
        dev = c.dev,
        "praetor agent running"
    );
    for addr in &http_addrs {
        tracing::info!(%addr, "HTTP API listening");
    }
    // The server port outlives the API: a leaving server must still answer
    // Raft (the vote of the server it hands leadership to, the removal's
    // replication) until its leave is done.
    let (close_server_port, server_port_closed) = tokio::sync::oneshot::channel::<()>();
    let rpc_server = server_port.map(|(listener, cluster)| {
        if let Ok(addr) = listener.local_addr() {
            tracing::info!(%addr, "server port listening");
        }
        let for_clients = crate::forwarded::ServerSide {
            api: http_api::forward::ServerApi::new(Arc::clone(&agent)),
            agent: Arc::clone(&agent),
        };
        tokio::spawn(consensus::serve_with_api(
            listener,
            cluster,
            Some(Arc::new(for_clients)),
            async move {
                let _ = server_port_closed.await;
            },
        ))
    });
    if agent.config().dev {
        agent
            .register_self()
            .await
            .context("Error starting agent: could not register this node")?;
    } else {
        // A server may wait for the others (and an election), a client for
        // a server, before any write can commit.
        tokio::spawn(register_when_led(Arc::clone(&agent)));
    }
    tokio::spawn(Arc::clone(&agent).reap_tombstones(REAP_TICK));
    agent
        .load_config_definitions()
        .context("Error starting agent")?;
    agent
        .restore_definitions()
        .context("Error starting agent: could not restore saved services and checks")?;
    tokio::spawn(Arc::clone(&agent).run_checks());
    tokio::spawn(Arc::clone(&agent).run_session_timers());
    let mut servers_dns = Vec::new();
    for (addr, udp, tcp) in dns_sockets {
        tracing::info!(%addr, "DNS listening (udp and tcp)");
        let stopping = Arc::clone(&agent);
        let stop = async move { stopping.stopping().await };
        let serving = match agent.router() {
            // A client keeps no catalog: it reads through a server and
            // answers with its own settings.
            Some(router) => {
                let remote = Arc::new(crate::dns_reads::RemoteCatalog::new(
                    Arc::clone(router),
                    dns_config.allow_stale,
                    dns_config.max_stale,
                ));
                let catalog: Arc<dyn dns::Catalog> = remote.clone();
                let catalogs: dns::CatalogSource = Arc::new(move || Arc::clone(&catalog));
                let handler = dns::CatalogDns::reading(catalogs, dns_config.clone())
                    .with_other_datacenters(remote);
                tokio::spawn(dns::serve(udp, tcp, handler, stop))
            }
            None => tokio::spawn(dns::serve(
                udp,
                tcp,
                crate::server_dns::handler(&agent, &dns_config),
                stop,
            )),
        };
        servers_dns.push(serving);
    }
    tokio::spawn(agent::anti_entropy::run(Arc::clone(&agent)));
    tokio::spawn(agent::coordinates::run(Arc::clone(&agent)));
    tokio::spawn(stop_on_signal(Arc::clone(&agent)));
    let servers: Vec<_> = listeners
        .into_iter()
        .map(|listener| tokio::spawn(http_api::serve(listener, Arc::clone(&agent))))
        .collect();
    agent.stopping().await;
    tracing::info!("agent: shutting down");
    for server in servers {
        match tokio::time::timeout(Duration::from_secs(5), server).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(error))) => tracing::warn!(%error, "HTTP server stopped with an error"),
            Ok(Err(error)) => tracing::warn!(%error, "HTTP server task failed"),
            Err(_) => tracing::warn!("HTTP server did not drain in time"),
        }
    }
    for server in servers_dns {
        match tokio::time::timeout(Duration::from_secs(5), server).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(error))) => tracing::warn!(%error, "DNS server stopped with an error"),
            Ok(Err(error)) => tracing::warn!(%error, "DNS server task failed"),
            Err(_) => tracing::warn!("DNS server did not drain in time"),
        }
    }
    if let Some(cluster) = agent.cluster().filter(|_| agent.leaves_cluster()) {
        tracing::info!("agent: leaving the raft configuration");
        if let Err(error) = cluster.leave().await {
            tracing::warn!(%error, "could not leave the raft configuration");
        }
    }
    // A server leaves the WAN pool first, as Consul's do.
    if let Some(wan) = agent.wan() {
        if agent.leaves_cluster() {
            tracing::info!("agent: leaving the WAN pool");
            match tokio::time::timeout(LEAVE_TIMEOUT, wan.leave()).await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => tracing::warn!(%error, "could not leave the WAN pool"),
                Err(_) => tracing::warn!("the WAN pool leave timed out"),
            }
        }
        wan.shutdown().await;
    }
    if agent.leaves_cluster() {
        tracing::info!("agent: leaving the LAN pool");
        match tokio::time::timeout(LEAVE_TIMEOUT, lan.leave()).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::warn!(%error, "could not leave the LAN pool"),
            Err(_) => tracing::warn!("the LAN pool leave timed out"),
        }
    }
    lan.shutdown().await;
    let _ = close_server_port.send(());
    if let Some(cluster) = agent.cluster() {
        if let Some(task) = rpc_server {
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
        if let Err(error) = cluster.shutdown().await {
            tracing::warn!(%error, "raft did not stop cleanly");
        }
    }
    if let Some(path) = &pid_file {
        let _ = std::fs::remove_file(path);
    }
    tracing::info!("agent: shutdown complete");
    Ok(())
}

/// Joins the agents `-join` (`-join-wan`) names, failing the start if
/// none answers, then keeps trying `-retry-join` (`-retry-join-wan`) in
/// the background until one answers.
async fn join_pool(agent: &Arc<Agent>, pool: &Arc<SerfPool>) -> anyhow::Result<()> {
    let config = agent.config();
    let (start, retry, interval) = match pool.kind() {
        PoolKind::Lan => (
            &config.start_join,
            &config.retry_join,
            config.retry_interval,
        ),
        PoolKind::Wan => (
            &config.start_join_wan,
            &config.retry_join_wan,
            config.retry_interval_wan,
        ),
    };
    let label = pool.kind().label();
    let what = match pool.kind() {
        PoolKind::Lan => "join",
        PoolKind::Wan => "join WAN",
    };
    if !start.is_empty() {
        let joined = pool
            .join(start)
            .await
            .map_err(|error| anyhow::anyhow!("Error starting agent: Failed to {what}: {error}"))?;
        tracing::info!(nodes = joined, "agent: joined the {label} pool");
    }
    if !retry.is_empty() {
        let (pool, agent) = (Arc::clone(pool), Arc::clone(agent));
        let addrs = retry.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = pool.retry_join(addrs, interval) => {}
                _ = agent.stopping() => {}
            }
        });
    }
    Ok(())
}

/// Registers this node once a leader can take the write, retrying until
/// it does or the agent stops.
async fn register_when_led(agent: Arc<Agent>) {
    loop {
        match agent.register_self().await {
            Ok(()) => return,
            Err(error) => tracing::debug!(%error, "cannot register this node yet"),
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = agent.stopping() => return,
        }
    }
}

/// SIGINT and SIGTERM both stop the agent gracefully.
async fn stop_on_signal(agent: Arc<Agent>) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut interrupt), Ok(mut terminate)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        tracing::warn!("cannot install signal handlers");
        return;
    };
    // Consul's defaults: a client leaves the pool on either signal, a
    // server only stops (`skip_leave_on_interrupt`, `leave_on_terminate`).
    let config = agent.config();
    let graceful = tokio::select! {
        _ = interrupt.recv() => {
            tracing::info!("caught signal: interrupt");
            !config.server && !config.dev
        }
        _ = terminate.recv() => {
            tracing::info!("caught signal: terminated");
            config.leave_on_terminate
        }
        _ = agent.stopping() => return,
    };
    if graceful {
        agent.leave_cluster();
    } else {
        agent.leave();
    }
}

/// The DNS interface's settings from the agent's configuration.
fn dns_settings(config: &Config) -> anyhow::Result<dns::DnsConfig> {
    let mut recursors = Vec::with_capacity(config.recursors.len());
    for recursor in &config.recursors {
        let with_port = if recursor.parse::<std::net::IpAddr>().is_ok() {
            std::net::SocketAddr::new(recursor.parse()?, 53)
        } else {
            recursor.parse::<std::net::SocketAddr>().with_context(|| {
                format!("Error starting agent: invalid recursor address {recursor:?}")
            })?
        };
        recursors.push(with_port);
    }
    let d = &config.dns;
    Ok(dns::DnsConfig {
        domain: config.domain.clone(),
        alt_domain: config.alt_domain.clone(),
        datacenter: config.datacenter.clone(),
        node_ttl: d.node_ttl,
        service_ttl: d.service_ttl.clone(),
        only_passing: d.only_passing,
        udp_answer_limit: usize::from(d.udp_answer_limit),
        a_record_limit: usize::from(d.a_record_limit),
        enable_truncate: d.enable_truncate,
        recursors,
        recursor_timeout: d.recursor_timeout,
        allow_stale: d.allow_stale,
        max_stale: d.max_stale,
        node_meta_txt: d.enable_additional_node_meta_txt,
        soa: dns::SoaConfig {
            refresh: d.soa.refresh,
            retry: d.soa.retry,
            expire: d.soa.expire,
            min_ttl: d.soa.min_ttl,
        },
        node_name: config.node_name.clone(),
    })
}
