//! The tokio shell: sockets and timers around the sans-IO [`Memberlist`].
//!
//! [`runner`] is the loop every gossip-speaking machine shares (UDP and TCP
//! on one address, one task owning the machine); this module puts the bare
//! memberlist core and its delegate on it and offers [`GossipHandle`].
//! Serf puts its own machine on the same runner.
//!
//! UDP and TCP listen on the same address (memberlist's default port is
//! 7946). The core advertises `config.advertise`, which may differ from the
//! bind address (behind NAT, or when binding `0.0.0.0`).

pub mod runner;

use std::net::SocketAddr;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::timeout;

use crate::config::{Config, ConfigError};
use crate::delegate::Delegate;
use crate::node::Node;
use crate::swim::Transmit;
use crate::swim::{Event, Memberlist, Metrics, ProbeStats, StreamError, StreamId};
#[cfg(test)]
use runner::read_frame;
pub use runner::{bind_both, IoCounters, Machine, RunnerHandle};

/// memberlist's default port, for UDP and TCP alike.
pub const DEFAULT_PORT: u16 = 7946;

/// Why the shell could not start or a command could not complete.
#[derive(Debug, thiserror::Error)]
pub enum ShellError {
    #[error("bind {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("invalid configuration: {0}")]
    Config(#[from] ConfigError),
    #[error("cannot advertise an unspecified address; set Config.advertise (bound to {0})")]
    NoAdvertiseAddr(SocketAddr),
    #[error("the gossip task has stopped")]
    Stopped,
    #[error("leave was not gossiped within {0:?}")]
    LeaveTimeout(Duration),
    #[error("join did not finish within {0:?}")]
    JoinTimeout(Duration),
}

/// What a join achieved: memberlist's `Join` returns the same count.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JoinOutcome {
    /// Addresses whose push-pull completed and was merged.
    pub joined: usize,
    /// Addresses that failed, with why.
    pub failed: Vec<(SocketAddr, String)>,
}

/// A snapshot of the node's counters and health.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stats {
    /// The core's counters: packets and bytes in and out, streams, probes.
    pub core: Metrics,
    pub probe: ProbeStats,
    /// Lifeguard's local health score; 0 is healthy.
    pub health_score: usize,
    /// Members alive or suspect, self included.
    pub num_alive: usize,
    /// Datagrams the socket refused to send.
    pub udp_send_errors: u64,
    /// TCP connections accepted.
    pub tcp_accepted: u64,
    /// Outgoing stream exchanges that failed (connect, i/o, timeout, garbage).
    pub stream_failures: u64,
}

impl Stats {
    /// Mean round trip of directly acked probes.
    pub fn probe_rtt_mean(&self) -> Option<Duration> {
        let n = u32::try_from(self.probe.acked_direct).ok()?;
        (n > 0).then(|| self.probe.rtt_total / n)
    }
}

struct PendingJoin {
    remaining: Vec<SocketAddr>,
    outcome: JoinOutcome,
    reply: oneshot::Sender<JoinOutcome>,
}

/// The bare memberlist core with its delegate, as a [`Machine`]: joins and
/// leaves settle their waiters from the core's events.
pub struct MemberlistMachine<D> {
    core: Memberlist,
    delegate: D,
    pending_joins: Vec<PendingJoin>,
    leave_waiters: Vec<oneshot::Sender<()>>,
    leave_done: bool,
}

impl<D: Delegate + Send + 'static> Machine for MemberlistMachine<D> {
    fn handle_packet(&mut self, now: std::time::Instant, from: SocketAddr, buf: &[u8]) {
        self.core.handle_packet(now, from, buf, &mut self.delegate);
    }

    fn handle_stream(
        &mut self,
        now: std::time::Instant,
        from: SocketAddr,
        request: &[u8],
    ) -> Option<Vec<u8>> {
        self.core
            .handle_stream(now, from, request, &mut self.delegate)
    }

    fn handle_stream_reply(
        &mut self,
        now: std::time::Instant,
        id: StreamId,
        result: Result<Vec<u8>, StreamError>,
    ) {
        self.core
            .handle_stream_reply(now, id, result, &mut self.delegate);
    }

    fn handle_timeout(&mut self, now: std::time::Instant) {
        self.core.handle_timeout(now, &mut self.delegate);
    }

    fn poll_transmit(&mut self) -> Option<Transmit> {
        self.core.poll_transmit()
    }

    fn poll_timeout(&self) -> std::time::Instant {
        self.core.poll_timeout()
    }

    fn tcp_timeout(&self) -> Duration {
        self.core.config().tcp_timeout
    }

    fn after_input(&mut self, _now: std::time::Instant) {
        while let Some(event) = self.core.poll_event() {
            match event {
                Event::Joined { addr } => self.settle_join(addr, None),
                Event::JoinFailed { addr, reason } => self.settle_join(addr, Some(reason)),
                Event::LeaveDone => {
                    self.leave_done = true;
                    for w in self.leave_waiters.drain(..) {
                        let _ = w.send(());
                    }
                }
            }
        }
    }
}

impl<D> MemberlistMachine<D> {
    /// Counts one finished join exchange against the first join waiting on
    /// `addr`; answers that join when it has heard from every address.
    fn settle_join(&mut self, addr: SocketAddr, failure: Option<String>) {
        let Some(i) = self
            .pending_joins
            .iter()
            .position(|p| p.remaining.contains(&addr))
        else {
            return;
        };
        let p = &mut self.pending_joins[i];
        if let Some(k) = p.remaining.iter().position(|a| *a == addr) {
            p.remaining.swap_remove(k);
        }
        match failure {
            None => p.outcome.joined += 1,
            Some(reason) => p.outcome.failed.push((addr, reason)),
        }
        if p.remaining.is_empty() {
            let done = self.pending_joins.swap_remove(i);
            let _ = done.reply.send(done.outcome);
        }
    }
}

/// The way in to a running gossip node. Dropping it (or calling
/// [`shutdown`](Self::shutdown)) stops the node without a leave.
pub struct GossipHandle<D> {
    runner: RunnerHandle<MemberlistMachine<D>>,
    advertise: SocketAddr,
    tcp_timeout: Duration,
}

impl<D> std::fmt::Debug for GossipHandle<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GossipHandle")
            .field("advertise", &self.advertise)
            .finish_non_exhaustive()
    }
}

/// Fills in an advertise address from the bound one: port 0 takes the
/// bound port, an unspecified IP the bound IP (which must be specified).
pub fn resolve_advertise(advertise: &mut SocketAddr, local: SocketAddr) -> Result<(), ShellError> {
    if advertise.port() == 0 {
        advertise.set_port(local.port());
    }
    if advertise.ip().is_unspecified() {
        if local.ip().is_unspecified() {
            return Err(ShellError::NoAdvertiseAddr(local));
        }
        advertise.set_ip(local.ip());
    }
    Ok(())
}

/// Binds `bind` (UDP and TCP, same port), starts the core seeded from the
/// OS's randomness, and runs it on a task of its own.
///
/// If `config.advertise` has port 0 it takes the bound port; if its IP is
/// unspecified it takes the bound IP (which then must be specified).
pub async fn spawn<D>(
    mut config: Config,
    bind: SocketAddr,
    mut delegate: D,
) -> Result<GossipHandle<D>, ShellError>
where
    D: Delegate + Send + 'static,
{
    let (listener, udp) = bind_both(bind).await?;
    let local_addr = listener
        .local_addr()
        .map_err(|source| ShellError::Bind { addr: bind, source })?;
    resolve_advertise(&mut config.advertise, local_addr)?;
    let advertise = config.advertise;
    let tcp_timeout = config.tcp_timeout;
    let core = Memberlist::new(
        config,
        tokio::time::Instant::now().into_std(),
        rand::random(),
        &mut delegate,
    )?;
    let machine = MemberlistMachine {
        core,
        delegate,
        pending_joins: Vec::new(),
        leave_waiters: Vec::new(),
        leave_done: false,
    };
    let runner = runner::start(machine, listener, udp)?;
    Ok(GossipHandle {
        runner,
        advertise,
        tcp_timeout,
    })
}

impl<D: Delegate + Send + 'static> GossipHandle<D> {
    /// The address UDP and TCP are bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.runner.local_addr()
    }

    /// The address the node advertises to others.
    pub fn advertise_addr(&self) -> SocketAddr {
        self.advertise
    }

    /// Joins a cluster through `addrs` (a push-pull with each) and waits for
    /// every exchange to finish.
    pub async fn join(&self, addrs: &[SocketAddr]) -> Result<JoinOutcome, ShellError> {
        if addrs.is_empty() {
            return Ok(JoinOutcome::default());
        }
        let addrs = addrs.to_vec();
        // The core gives up on an exchange a grace second after its own
        // deadline; waiting a little longer than that cannot hang forever.
        let limit = self.tcp_timeout + Duration::from_secs(3);
        let (tx, rx) = oneshot::channel();
        self.runner
            .run(move |m, now, _| {
                m.core.join(now, &addrs, &mut m.delegate);
                m.pending_joins.push(PendingJoin {
                    remaining: addrs,
                    outcome: JoinOutcome::default(),
                    reply: tx,
                });
            })
            .await?;
        timeout(limit, rx)
            .await
            .map_err(|_| ShellError::JoinTimeout(limit))?
            .map_err(|_| ShellError::Stopped)
    }

    /// Announces a graceful leave and waits up to `wait` for it to be
    /// gossiped. The node keeps running (and answering) afterwards.
    pub async fn leave(&self, wait: Duration) -> Result<(), ShellError> {
        let (tx, rx) = oneshot::channel();
        self.runner
            .run(move |m, now, _| {
                if m.leave_done {
                    let _ = tx.send(());
                    return;
                }
                m.leave_waiters.push(tx);
                m.core.leave(now, &mut m.delegate);
            })
            .await?;
        timeout(wait, rx)
            .await
            .map_err(|_| ShellError::LeaveTimeout(wait))?
            .map_err(|_| ShellError::Stopped)
    }

    /// Every known member, self included.
    pub async fn members(&self) -> Result<Vec<Node>, ShellError> {
        self.runner
            .run(|m, _, _| m.core.members().cloned().collect())
            .await
    }

    /// Re-reads our meta from the delegate and announces it.
    pub async fn update_meta(&self) -> Result<(), ShellError> {
        self.runner
            .run(|m, now, _| m.core.update_meta(now, &mut m.delegate))
            .await
    }

    /// Sends a user message in one datagram (best effort).
    pub async fn send_user_packet(&self, to: SocketAddr, msg: Vec<u8>) -> Result<(), ShellError> {
        self.runner
            .run(move |m, _, _| m.core.send_user_packet(to, &msg))
            .await
    }

    /// Sends a user message over a TCP connection.
    pub async fn send_user_stream(&self, to: SocketAddr, msg: Vec<u8>) -> Result<(), ShellError> {
        self.runner
            .run(move |m, now, _| m.core.send_user_stream(now, to, &msg))
            .await
    }

    /// Counters, probe round trips and health.
    pub async fn stats(&self) -> Result<Stats, ShellError> {
        self.runner
            .run(|m, _, io| Stats {
                core: m.core.metrics().clone(),
                probe: m.core.probe_stats().clone(),
                health_score: m.core.health_score(),
                num_alive: m.core.num_alive(),
                udp_send_errors: io.udp_send_errors,
                tcp_accepted: io.tcp_accepted,
                stream_failures: io.stream_failures,
            })
            .await
    }

    /// Runs `f` on the delegate inside the node's task and returns its result.
    pub async fn with_delegate<R, F>(&self, f: F) -> Result<R, ShellError>
    where
        R: Send + 'static,
        F: FnOnce(&mut D) -> R + Send + 'static,
    {
        self.with_core(move |_, d, _| f(d)).await
    }

    /// Runs `f` on the core and the delegate inside the node's task, with the
    /// current time; whatever it queues is sent right after.
    pub async fn with_core<R, F>(&self, f: F) -> Result<R, ShellError>
    where
        R: Send + 'static,
        F: FnOnce(&mut Memberlist, &mut D, std::time::Instant) -> R + Send + 'static,
    {
        self.runner
            .run(move |m, now, _| f(&mut m.core, &mut m.delegate, now))
            .await
    }

    /// Stops the node (no leave is announced) and hands back the delegate.
    pub async fn shutdown(self) -> Result<D, ShellError> {
        self.runner.shutdown().await.map(|m| m.delegate)
    }
}

#[cfg(test)]
mod tests;
