//! Running the agent: configuration to sockets, Serf on the gossip runner,
//! the RPC port, event handlers, joins, signals and a graceful exit.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use gossip::shell::{bind_both, runner, DEFAULT_PORT};
use serf::snapshot::Snapshotter;
use serf::{Coalescer, Event, Serf};
use serf_rpc::{LogLine, Server, ServerConfig};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{broadcast, watch};

use crate::backend::{resolve, stream_event, AgentBackend};
use crate::config::{self, AgentConfig};
use crate::handle::NodeHandle;
use crate::handlers::{self, EventScript};
use crate::node::{AgentNode, NodeParts, Published};

/// How long a graceful leave may take when a signal asked for it.
const GRACEFUL_TIMEOUT: Duration = Duration::from_secs(3);
/// The agent coalesces member and user events over these windows.
const COALESCE_PERIOD: Duration = Duration::from_secs(3);
const QUIESCENT_PERIOD: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("{0}")]
    Config(#[from] config::ConfigError),
    #[error("Invalid bind address: {0}")]
    Bind(String),
    #[error("Invalid advertise address: {0}")]
    Advertise(String),
    #[error("Failed to start the Serf agent: {0}")]
    Start(String),
    #[error("Error starting RPC listener: {0}")]
    Rpc(std::io::Error),
}

/// `ip`, `ip:port`, `[v6]:port` -> socket address (port 7946 by default).
pub fn addr_parts(s: &str) -> Result<SocketAddr, String> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, DEFAULT_PORT));
    }
    let (resolved, errors) = resolve(&[s.to_string()]);
    resolved.first().copied().ok_or_else(|| errors.join("; "))
}

/// The address to advertise when bound to 0.0.0.0: the interface the
/// default route uses (no packet is sent), else loopback.
fn private_ip() -> IpAddr {
    let probe = std::net::UdpSocket::bind("0.0.0.0:0")
        .and_then(|s| s.connect("10.255.255.255:9").map(|_| s))
        .and_then(|s| s.local_addr());
    match probe {
        Ok(a) if !a.ip().is_unspecified() => a.ip(),
        _ => IpAddr::V4(Ipv4Addr::LOCALHOST),
    }
}

/// Runs the agent until a signal, an RPC `leave` or a lost name conflict.
/// Returns the process exit code.
pub async fn run(
    mut cfg: AgentConfig,
    logs: broadcast::Sender<LogLine>,
    out: &mut (dyn Write + Send),
) -> Result<i32, AgentError> {
    let mut ui = |prefix: &str, line: &str| {
        let _ = writeln!(out, "{prefix}{line}");
        let _ = out.flush();
    };
    let bind = addr_parts(&cfg.bind).map_err(AgentError::Bind)?;
    let mut advertise = if cfg.advertise.is_empty() {
        let ip = if bind.ip().is_unspecified() {
            private_ip()
        } else {
            bind.ip()
        };
        SocketAddr::new(ip, bind.port())
    } else {
        addr_parts(&cfg.advertise).map_err(AgentError::Advertise)?
    };
    let mut gcfg = match cfg.profile.as_str() {
        "wan" => gossip::Config::wan(cfg.node_name.clone(), advertise),
        "local" => gossip::Config::local(cfg.node_name.clone(), advertise),
        _ => gossip::Config::lan(cfg.node_name.clone(), advertise),
    };
    gcfg.enable_compression = cfg.enable_compression;

    // Keys: a keyring file, or the -encrypt key.
    let keyring_file = (!cfg.keyring_file.is_empty()).then(|| PathBuf::from(&cfg.keyring_file));
    let mut keys: Vec<Vec<u8>> = Vec::new();
    if let Some(path) = &keyring_file {
        if !cfg.encrypt_key.is_empty() {
            return Err(config::ConfigError::Invalid(
                "Encryption key not allowed while using a keyring".into(),
            )
            .into());
        }
        keys = config::load_keyring_file(path)?;
    } else if let Some(k) = cfg.encrypt_bytes()? {
        keys.push(k);
    }
    gcfg.keyring = config::keyring(&keys)?;

    // Tags: flags and files, or a tags file.
    let tags_file = (!cfg.tags_file.is_empty()).then(|| PathBuf::from(&cfg.tags_file));
    if let Some(path) = &tags_file {
        if !cfg.tags.is_empty() {
            return Err(config::ConfigError::Invalid(
                "Tags config not allowed while using tag files".into(),
            )
            .into());
        }
        cfg.tags = config::load_tags_file(path)?;
    }

    let mut scfg = serf::Config::new(gcfg);
    scfg.tags = cfg.tags.clone();
    scfg.protocol_version = cfg.protocol as u8;
    scfg.query_response_size_limit = cfg.query_response_size_limit;
    scfg.query_size_limit = cfg.query_size_limit;
    scfg.user_event_size_limit = cfg.user_event_size_limit;
    scfg.broadcast_timeout = cfg.broadcast_timeout;
    scfg.enable_name_conflict_resolution = !cfg.disable_name_resolution;
    scfg.disable_coordinates = cfg.disable_coordinates;
    if let Some(d) = cfg.reconnect_interval {
        scfg.reconnect_interval = d;
    }
    if let Some(d) = cfg.reconnect_timeout {
        scfg.reconnect_timeout = d;
    }
    if let Some(d) = cfg.tombstone_timeout {
        scfg.tombstone_timeout = d;
    }

    ui("==> ", "Starting Serf agent...");
    let (listener, udp) = bind_both(bind)
        .await
        .map_err(|e| AgentError::Start(e.to_string()))?;
    let local = listener
        .local_addr()
        .map_err(|e| AgentError::Start(e.to_string()))?;
    gossip::shell::resolve_advertise(&mut advertise, local)
        .map_err(|e| AgentError::Start(e.to_string()))?;
    scfg.memberlist.advertise = advertise;
    let now = std::time::Instant::now();
    let (snapshot, previous) = match cfg.snapshot_path.as_str() {
        "" => (None, None),
        p => {
            let (s, prev) = Snapshotter::open(std::path::Path::new(p), cfg.rejoin_after_leave, now)
                .map_err(|e| AgentError::Start(e.to_string()))?;
            (Some(s), Some(prev))
        }
    };
    let mut serf = Serf::new(scfg, now, rand_seed())
        .map_err(|e| AgentError::Start(format!("Error creating Serf: {e}")))?;
    if let Some(prev) = &previous {
        serf.restore(prev);
    }
    let published = Arc::new(Published::default());
    let (events_tx, _) = broadcast::channel::<Event>(4096);
    let parts = NodeParts {
        coalescer: Some(Coalescer::new(COALESCE_PERIOD, QUIESCENT_PERIOD)),
        snapshot,
        events: events_tx.clone(),
        keyring_file,
        tags_file,
        published: published.clone(),
    };
    let node = AgentNode::new(serf, parts, now);
    let runner =
        Arc::new(runner::start(node, listener, udp).map_err(|e| AgentError::Start(e.to_string()))?);
    tracing::info!("agent: Serf agent starting");

    // RPC.
    let (stream_tx, _) = broadcast::channel(4096);
    let (stop_tx, mut stop_rx) = watch::channel(false);
    let mut agent_stats = BTreeMap::new();
    agent_stats.insert("name".to_string(), cfg.node_name.clone());
    let backend = Arc::new(AgentBackend {
        node: NodeHandle {
            runner: runner.clone(),
            published: published.clone(),
        },
        events: stream_tx.clone(),
        logs,
        stop: stop_tx,
        agent_stats,
        event_handlers: cfg.event_handlers.clone(),
    });
    let auth = (!cfg.rpc_auth.is_empty()).then(|| cfg.rpc_auth.clone());
    let server = Server::bind(
        cfg.rpc_addr.as_str(),
        backend,
        ServerConfig { auth_key: auth },
    )
    .await
    .map_err(AgentError::Rpc)?;

    // Events: to RPC streams and to handler scripts.
    let scripts: Vec<EventScript> = cfg
        .event_handlers
        .iter()
        .flat_map(|h| handlers::parse_event_script(h))
        .collect();
    tokio::spawn(fan_out(
        events_tx.subscribe(),
        runner.clone(),
        published.clone(),
        stream_tx,
        scripts,
        cfg.query_response_size_limit,
    ));

    ui("==> ", "Starting Serf agent RPC...");
    ui("==> ", "Serf agent running!");
    ui(
        "    ",
        &format!("                  Node name: '{}'", cfg.node_name),
    );
    ui("    ", &format!("                  Bind addr: '{local}'"));
    if !cfg.advertise.is_empty() {
        ui("    ", &format!("Advertise addr: '{advertise}'"));
    }
    ui(
        "    ",
        &format!("                   RPC addr: '{}'", server.local_addr()),
    );
    ui(
        "    ",
        &format!("                  Encrypted: {}", !keys.is_empty()),
    );
    ui(
        "    ",
        &format!(
            "                   Snapshot: {}",
            !cfg.snapshot_path.is_empty()
        ),
    );
    ui(
        "    ",
        &format!("                    Profile: {}", cfg.profile),
    );
    ui(
        "    ",
        &format!("Message Compression Enabled: {}", cfg.enable_compression),
    );

    if !cfg.start_join.is_empty() {
        ui(
            "==> ",
            &format!("Joining cluster...(replay: {})", cfg.replay_on_join),
        );
        match join(&runner, &cfg.start_join, cfg.replay_on_join).await {
            Ok(n) => ui(
                "    ",
                &format!("Join completed. Synced with {n} initial agents"),
            ),
            Err(e) => {
                ui("==> ", &e);
                server.shutdown().await;
                return Ok(1);
            }
        }
    }
    ui("    ", "");
    ui("==> ", "Log data will now stream in as it occurs:\n");

    if let Some(prev) = previous {
        let me = cfg.node_name.clone();
        let addrs: Vec<String> = prev
            .alive
            .into_iter()
            .filter(|(n, _)| *n != me)
            .map(|(_, a)| a)
            .collect();
        let r = runner.clone();
        tokio::spawn(async move {
            for a in addrs {
                if join(&r, std::slice::from_ref(&a), false).await.is_ok() {
                    tracing::info!(addr = %a, "serf: Re-joined to previously known node");
                    return;
                }
            }
        });
    }
    let (retry_failed_tx, mut retry_failed) = watch::channel(false);
    if !cfg.retry_join.is_empty() {
        let r = runner.clone();
        let addrs = cfg.retry_join.clone();
        let (replay, max, interval) = (
            cfg.replay_on_join,
            cfg.retry_max_attempts,
            cfg.retry_interval,
        );
        tokio::spawn(async move {
            let mut attempt = 0u64;
            loop {
                tracing::info!("agent: Joining cluster...(replay: {replay})");
                match join(&r, &addrs, replay).await {
                    Ok(n) => {
                        tracing::info!("agent: Join completed. Synced with {n} initial agents");
                        return;
                    }
                    Err(e) => {
                        attempt += 1;
                        if max > 0 && attempt > max {
                            tracing::error!("agent: maximum retry join attempts made, exiting");
                            let _ = retry_failed_tx.send(true);
                            return;
                        }
                        tracing::warn!("agent: Join failed: {e}, retrying in {interval:?}");
                        tokio::time::sleep(interval).await;
                    }
                }
            }
        });
    }

    let mut sigint =
        signal(SignalKind::interrupt()).map_err(|e| AgentError::Start(e.to_string()))?;
    let mut sigterm =
        signal(SignalKind::terminate()).map_err(|e| AgentError::Start(e.to_string()))?;
    let mut sighup = signal(SignalKind::hangup()).map_err(|e| AgentError::Start(e.to_string()))?;
    let code = loop {
        let graceful = tokio::select! {
            _ = sigint.recv() => { ui("==> ", "Caught signal: interrupt"); !cfg.skip_leave_on_interrupt }
            _ = sigterm.recv() => { ui("==> ", "Caught signal: terminated"); cfg.leave_on_terminate }
            _ = sighup.recv() => { ui("==> ", "Caught signal: hangup"); continue; }
            _ = stop_rx.changed() => break 0,
            _ = retry_failed.changed() => break 1,
            _ = wait_finished(&runner) => break 0,
        };
        if !graceful {
            break 1;
        }
        ui("==> ", "Gracefully shutting down agent...");
        let (tx, rx) = tokio::sync::oneshot::channel();
        let started = runner.run(move |n, now, _| n.leave(now, tx)).await;
        let ok = match started {
            Ok(Ok(())) => tokio::select! {
                r = rx => r.is_ok(),
                _ = tokio::time::sleep(GRACEFUL_TIMEOUT) => false,
                _ = sigint.recv() => false,
            },
            Ok(Err(e)) => {
                ui("==> ", &format!("Error: {e}"));
                false
            }
            Err(_) => false,
        };
        break if ok { 0 } else { 1 };
    };
    server.shutdown().await;
    let _ = runner.run(|n, _, _| n.close()).await;
    if let Ok(r) = Arc::try_unwrap(runner) {
        let _ = r.shutdown().await;
    }
    Ok(code)
}

async fn wait_finished(r: &Arc<runner::RunnerHandle<AgentNode>>) {
    while !r.is_finished() {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn rand_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.finish()
}

/// Joins through `addrs`; errors read like Serf's.
pub async fn join(
    r: &Arc<runner::RunnerHandle<AgentNode>>,
    addrs: &[String],
    replay: bool,
) -> Result<usize, String> {
    let (resolved, mut errors) = resolve(addrs);
    let (tx, rx) = tokio::sync::oneshot::channel();
    r.run(move |n, now, _| n.join(now, &resolved, replay, tx))
        .await
        .map_err(|e| e.to_string())?;
    let (joined, errs) = rx.await.map_err(|_| "the agent stopped".to_string())?;
    errors.extend(errs);
    if joined == 0 {
        return Err(format!("Error joining the cluster: {}", errors.join("; ")));
    }
    Ok(joined)
}

/// Delivers events to RPC streams and runs matching handler scripts, one
/// event at a time (as Serf does: a slow script delays the next event).
async fn fan_out(
    mut events: broadcast::Receiver<Event>,
    runner: Arc<runner::RunnerHandle<AgentNode>>,
    published: Arc<Published>,
    stream_tx: broadcast::Sender<serf_rpc::StreamEvent>,
    scripts: Vec<EventScript>,
    response_limit: usize,
) {
    loop {
        let e = match events.recv().await {
            Ok(e) => e,
            Err(broadcast::error::RecvError::Lagged(n)) => {
                tracing::warn!("agent: event handlers fell behind; {n} events dropped");
                continue;
            }
            Err(broadcast::error::RecvError::Closed) => return,
        };
        if let Some(se) = stream_event(&runner, response_limit, &e) {
            let _ = stream_tx.send(se);
        }
        let me = published.local.read().ok().and_then(|l| l.clone());
        let Some(me) = me else { continue };
        for s in scripts.iter().filter(|s| s.filter.matches(&e)) {
            match handlers::invoke(&s.script, &me, &e).await {
                Ok(output) => {
                    if let Event::Query(q) = &e {
                        if !output.is_empty() {
                            let q = q.clone();
                            let _ = runner.try_run(move |n, now, _| {
                                if let Err(err) = n.serf.respond(now, &q, &output) {
                                    tracing::warn!(error = %err, "agent: Failed to respond to query '{}'", q.name);
                                }
                            });
                        }
                    }
                }
                Err(err) => tracing::error!("agent: Error invoking script '{}': {err}", s.script),
            }
        }
    }
}
