//! The tokio shell: sockets and timers around the sans-IO [`Memberlist`].
//!
//! One task owns the core and the delegate and loops over its inputs: UDP
//! datagrams, request frames read from accepted TCP connections, results of
//! the stream exchanges it opened, commands from the [`GossipHandle`], and
//! the core's next timer. After each input it drains the core's outputs:
//! datagrams go out on the bound UDP socket, each stream exchange gets a
//! short task of its own, and [`Event`]s settle waiting commands.
//!
//! UDP and TCP listen on the same address (memberlist's default port is
//! 7946). The core advertises `config.advertise`, which may differ from the
//! bind address (behind NAT, or when binding `0.0.0.0`).

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::{sleep_until, timeout, timeout_at, Instant};

use crate::config::{Config, ConfigError};
use crate::delegate::Delegate;
use crate::node::Node;
use crate::swim::stream::MAX_FRAME;
use crate::swim::Transmit;
use crate::swim::{frame_len, Event, Memberlist, Metrics, ProbeStats, StreamError, StreamId};

/// memberlist's default port, for UDP and TCP alike.
pub const DEFAULT_PORT: u16 = 7946;

/// Largest datagram we can receive (the IPv4 UDP maximum).
const MAX_DATAGRAM: usize = 65_536;

/// How many commands and internal results may queue before senders wait.
const CHANNEL_DEPTH: usize = 1024;

/// How often binding TCP and UDP on one ephemeral port is retried when the
/// port the kernel picked for TCP is taken for UDP.
const BIND_ATTEMPTS: usize = 10;

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

type CoreFn<D> = Box<dyn FnOnce(&mut Memberlist, &mut D, std::time::Instant) + Send>;

enum Command<D> {
    Join {
        addrs: Vec<SocketAddr>,
        reply: oneshot::Sender<JoinOutcome>,
    },
    Leave {
        reply: oneshot::Sender<()>,
    },
    Members {
        reply: oneshot::Sender<Vec<Node>>,
    },
    UpdateMeta {
        reply: oneshot::Sender<()>,
    },
    SendPacket {
        to: SocketAddr,
        msg: Vec<u8>,
    },
    SendStream {
        to: SocketAddr,
        msg: Vec<u8>,
    },
    Stats {
        reply: oneshot::Sender<Stats>,
    },
    /// Runs a closure on the core and the delegate inside the task.
    Run(CoreFn<D>),
    Shutdown,
}

/// What the connection tasks report to the core task.
enum Internal {
    /// A whole request frame read from an accepted connection; the core's
    /// answer (if any) goes back through `reply`.
    Inbound {
        from: SocketAddr,
        request: Vec<u8>,
        reply: oneshot::Sender<Option<Vec<u8>>>,
    },
    /// An exchange we opened finished.
    StreamDone {
        id: StreamId,
        result: Result<Vec<u8>, StreamError>,
    },
}

/// The way in to a running gossip node. Dropping it (or calling
/// [`shutdown`](Self::shutdown)) stops the node without a leave.
pub struct GossipHandle<D> {
    commands: mpsc::Sender<Command<D>>,
    local_addr: SocketAddr,
    advertise: SocketAddr,
    tcp_timeout: Duration,
    task: JoinHandle<D>,
}

impl<D> std::fmt::Debug for GossipHandle<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GossipHandle")
            .field("local_addr", &self.local_addr)
            .field("advertise", &self.advertise)
            .finish_non_exhaustive()
    }
}

impl<D> std::fmt::Debug for Command<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = match self {
            Command::Join { .. } => "Join",
            Command::Leave { .. } => "Leave",
            Command::Members { .. } => "Members",
            Command::UpdateMeta { .. } => "UpdateMeta",
            Command::SendPacket { .. } => "SendPacket",
            Command::SendStream { .. } => "SendStream",
            Command::Stats { .. } => "Stats",
            Command::Run(_) => "Run",
            Command::Shutdown => "Shutdown",
        };
        f.write_str(name)
    }
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
    if config.advertise.port() == 0 {
        config.advertise.set_port(local_addr.port());
    }
    if config.advertise.ip().is_unspecified() {
        if local_addr.ip().is_unspecified() {
            return Err(ShellError::NoAdvertiseAddr(local_addr));
        }
        config.advertise.set_ip(local_addr.ip());
    }
    let advertise = config.advertise;
    let tcp_timeout = config.tcp_timeout;
    let core = Memberlist::new(
        config,
        Instant::now().into_std(),
        rand::random(),
        &mut delegate,
    )?;
    let (commands, command_rx) = mpsc::channel(CHANNEL_DEPTH);
    let (internal_tx, internal_rx) = mpsc::channel(CHANNEL_DEPTH);
    let node = Driver {
        core,
        delegate,
        udp,
        listener,
        internal_tx,
        pending_joins: Vec::new(),
        leave_waiters: Vec::new(),
        leave_done: false,
        udp_send_errors: 0,
        tcp_accepted: 0,
        stream_failures: 0,
    };
    let task = tokio::spawn(node.run(command_rx, internal_rx));
    Ok(GossipHandle {
        commands,
        local_addr,
        advertise,
        tcp_timeout,
        task,
    })
}

/// Binds TCP first, then UDP on the same port. With port 0 the kernel's
/// TCP pick may be taken for UDP; then both are retried.
async fn bind_both(bind: SocketAddr) -> Result<(TcpListener, UdpSocket), ShellError> {
    let mut last = None;
    for _ in 0..BIND_ATTEMPTS {
        let listener = TcpListener::bind(bind)
            .await
            .map_err(|source| ShellError::Bind { addr: bind, source })?;
        let tcp_addr = listener
            .local_addr()
            .map_err(|source| ShellError::Bind { addr: bind, source })?;
        match UdpSocket::bind(tcp_addr).await {
            Ok(udp) => return Ok((listener, udp)),
            Err(source) if bind.port() == 0 => {
                last = Some(ShellError::Bind {
                    addr: tcp_addr,
                    source,
                });
            }
            Err(source) => {
                return Err(ShellError::Bind {
                    addr: tcp_addr,
                    source,
                })
            }
        }
    }
    Err(last.unwrap_or(ShellError::Bind {
        addr: bind,
        source: std::io::Error::other("no port free for both UDP and TCP"),
    }))
}

impl<D: Send + 'static> GossipHandle<D> {
    /// The address UDP and TCP are bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The address the node advertises to others.
    pub fn advertise_addr(&self) -> SocketAddr {
        self.advertise
    }

    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command<D>,
    ) -> Result<T, ShellError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(make(tx))
            .await
            .map_err(|_| ShellError::Stopped)?;
        rx.await.map_err(|_| ShellError::Stopped)
    }

    /// Joins a cluster through `addrs` (a push-pull with each) and waits for
    /// every exchange to finish.
    pub async fn join(&self, addrs: &[SocketAddr]) -> Result<JoinOutcome, ShellError> {
        let addrs = addrs.to_vec();
        // The core gives up on an exchange a grace second after its own
        // deadline; waiting a little longer than that cannot hang forever.
        let limit = self.tcp_timeout + Duration::from_secs(3);
        timeout(limit, self.ask(|reply| Command::Join { addrs, reply }))
            .await
            .map_err(|_| ShellError::JoinTimeout(limit))?
    }

    /// Announces a graceful leave and waits up to `wait` for it to be
    /// gossiped. The node keeps running (and answering) afterwards.
    pub async fn leave(&self, wait: Duration) -> Result<(), ShellError> {
        timeout(wait, self.ask(|reply| Command::Leave { reply }))
            .await
            .map_err(|_| ShellError::LeaveTimeout(wait))?
    }

    /// Every known member, self included.
    pub async fn members(&self) -> Result<Vec<Node>, ShellError> {
        self.ask(|reply| Command::Members { reply }).await
    }

    /// Re-reads our meta from the delegate and announces it.
    pub async fn update_meta(&self) -> Result<(), ShellError> {
        self.ask(|reply| Command::UpdateMeta { reply }).await
    }

    /// Sends a user message in one datagram (best effort).
    pub async fn send_user_packet(&self, to: SocketAddr, msg: Vec<u8>) -> Result<(), ShellError> {
        self.commands
            .send(Command::SendPacket { to, msg })
            .await
            .map_err(|_| ShellError::Stopped)
    }

    /// Sends a user message over a TCP connection.
    pub async fn send_user_stream(&self, to: SocketAddr, msg: Vec<u8>) -> Result<(), ShellError> {
        self.commands
            .send(Command::SendStream { to, msg })
            .await
            .map_err(|_| ShellError::Stopped)
    }

    /// Counters, probe round trips and health.
    pub async fn stats(&self) -> Result<Stats, ShellError> {
        self.ask(|reply| Command::Stats { reply }).await
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
        let (tx, rx) = oneshot::channel();
        let run: CoreFn<D> = Box::new(move |m, d, now| {
            let _ = tx.send(f(m, d, now));
        });
        self.commands
            .send(Command::Run(run))
            .await
            .map_err(|_| ShellError::Stopped)?;
        rx.await.map_err(|_| ShellError::Stopped)
    }

    /// Stops the node (no leave is announced) and hands back the delegate.
    pub async fn shutdown(self) -> Result<D, ShellError> {
        // If the task is already gone the send fails; joining tells why.
        let _ = self.commands.send(Command::Shutdown).await;
        self.task.await.map_err(|_| ShellError::Stopped)
    }
}

struct PendingJoin {
    remaining: Vec<SocketAddr>,
    outcome: JoinOutcome,
    reply: oneshot::Sender<JoinOutcome>,
}

/// The task's state: the core, its delegate and the sockets.
struct Driver<D> {
    core: Memberlist,
    delegate: D,
    udp: UdpSocket,
    listener: TcpListener,
    internal_tx: mpsc::Sender<Internal>,
    pending_joins: Vec<PendingJoin>,
    leave_waiters: Vec<oneshot::Sender<()>>,
    leave_done: bool,
    udp_send_errors: u64,
    tcp_accepted: u64,
    stream_failures: u64,
}

/// One thing that woke the task.
enum Input<D> {
    Datagram(std::io::Result<(usize, SocketAddr)>),
    Accepted(std::io::Result<(TcpStream, SocketAddr)>),
    Internal(Option<Internal>),
    Command(Option<Command<D>>),
    Timer,
}

impl<D: Delegate + Send + 'static> Driver<D> {
    async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command<D>>,
        mut internal: mpsc::Receiver<Internal>,
    ) -> D {
        let mut buf = vec![0u8; MAX_DATAGRAM];
        loop {
            let wake = Instant::from_std(self.core.poll_timeout());
            let input = tokio::select! {
                r = self.udp.recv_from(&mut buf) => Input::Datagram(r),
                r = self.listener.accept() => Input::Accepted(r),
                m = internal.recv() => Input::Internal(m),
                c = commands.recv() => Input::Command(c),
                () = sleep_until(wake) => Input::Timer,
            };
            let now = Instant::now().into_std();
            match input {
                Input::Datagram(Ok((n, from))) => {
                    let packet = buf.get(..n).unwrap_or_default();
                    self.core
                        .handle_packet(now, from, packet, &mut self.delegate);
                }
                Input::Datagram(Err(e)) => {
                    tracing::debug!(error = %e, "gossip: udp receive failed");
                }
                Input::Accepted(Ok((conn, from))) => {
                    self.tcp_accepted += 1;
                    let tx = self.internal_tx.clone();
                    let limit = self.core.config().tcp_timeout;
                    tokio::spawn(serve_connection(conn, from, limit, tx));
                }
                Input::Accepted(Err(e)) => {
                    // Running out of descriptors must not spin the loop.
                    tracing::warn!(error = %e, "gossip: tcp accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Input::Internal(Some(Internal::Inbound {
                    from,
                    request,
                    reply,
                })) => {
                    let answer = self
                        .core
                        .handle_stream(now, from, &request, &mut self.delegate);
                    let _ = reply.send(answer);
                }
                Input::Internal(Some(Internal::StreamDone { id, result })) => {
                    if let Err(e) = &result {
                        self.stream_failures += 1;
                        tracing::debug!(error = %e, "gossip: stream exchange failed");
                    }
                    self.core
                        .handle_stream_reply(now, id, result, &mut self.delegate);
                }
                // We hold a sender ourselves, so this cannot happen.
                Input::Internal(None) => {}
                Input::Command(None) | Input::Command(Some(Command::Shutdown)) => break,
                Input::Command(Some(cmd)) => self.command(now, cmd),
                Input::Timer => self.core.handle_timeout(now, &mut self.delegate),
            }
            self.drive().await;
        }
        self.delegate
    }

    fn command(&mut self, now: std::time::Instant, cmd: Command<D>) {
        match cmd {
            Command::Join { addrs, reply } => {
                if addrs.is_empty() {
                    let _ = reply.send(JoinOutcome::default());
                    return;
                }
                self.core.join(now, &addrs, &mut self.delegate);
                self.pending_joins.push(PendingJoin {
                    remaining: addrs,
                    outcome: JoinOutcome::default(),
                    reply,
                });
            }
            Command::Leave { reply } => {
                if self.leave_done {
                    let _ = reply.send(());
                    return;
                }
                self.leave_waiters.push(reply);
                self.core.leave(now, &mut self.delegate);
            }
            Command::Members { reply } => {
                let _ = reply.send(self.core.members().cloned().collect());
            }
            Command::UpdateMeta { reply } => {
                self.core.update_meta(now, &mut self.delegate);
                let _ = reply.send(());
            }
            Command::SendPacket { to, msg } => self.core.send_user_packet(to, &msg),
            Command::SendStream { to, msg } => self.core.send_user_stream(now, to, &msg),
            Command::Stats { reply } => {
                let _ = reply.send(Stats {
                    core: self.core.metrics().clone(),
                    probe: self.core.probe_stats().clone(),
                    health_score: self.core.health_score(),
                    num_alive: self.core.num_alive(),
                    udp_send_errors: self.udp_send_errors,
                    tcp_accepted: self.tcp_accepted,
                    stream_failures: self.stream_failures,
                });
            }
            Command::Run(f) => f(&mut self.core, &mut self.delegate, now),
            Command::Shutdown => {}
        }
    }

    /// Sends everything the core queued and settles commands its events end.
    async fn drive(&mut self) {
        while let Some(t) = self.core.poll_transmit() {
            match t {
                Transmit::Packet { to, payload } => {
                    if let Err(e) = self.udp.send_to(&payload, to).await {
                        self.udp_send_errors += 1;
                        tracing::debug!(%to, error = %e, "gossip: udp send failed");
                    }
                }
                Transmit::Stream {
                    id,
                    to,
                    payload,
                    expect_reply,
                    deadline,
                } => {
                    let tx = self.internal_tx.clone();
                    let deadline = Instant::from_std(deadline);
                    tokio::spawn(async move {
                        let result = match timeout_at(
                            deadline,
                            exchange(to, &payload, expect_reply),
                        )
                        .await
                        {
                            Ok(r) => r,
                            Err(_) => Err(StreamError::Timeout),
                        };
                        if expect_reply {
                            let _ = tx.send(Internal::StreamDone { id, result }).await;
                        } else if let Err(e) = result {
                            tracing::debug!(%to, error = %e, "gossip: stream send failed");
                        }
                    });
                }
            }
        }
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

/// Serves one accepted connection: one request frame in, the core's answer
/// (if any) out, then close. Everything must happen within `limit`.
async fn serve_connection(
    mut conn: TcpStream,
    from: SocketAddr,
    limit: Duration,
    core: mpsc::Sender<Internal>,
) {
    let request = match timeout(limit, read_frame(&mut conn)).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            tracing::debug!(%from, error = %e, "gossip: bad incoming stream");
            return;
        }
        Err(_) => {
            tracing::debug!(%from, "gossip: incoming stream timed out");
            return;
        }
    };
    let (reply, answer) = oneshot::channel();
    let msg = Internal::Inbound {
        from,
        request,
        reply,
    };
    if core.send(msg).await.is_err() {
        return;
    }
    let Ok(Some(answer)) = answer.await else {
        return;
    };
    let written = timeout(limit, async {
        conn.write_all(&answer).await?;
        conn.shutdown().await
    })
    .await;
    if !matches!(written, Ok(Ok(()))) {
        tracing::debug!(%from, "gossip: could not write stream reply");
    }
}

/// Dials `to`, writes `payload` and, if asked, reads one frame back.
async fn exchange(
    to: SocketAddr,
    payload: &[u8],
    expect_reply: bool,
) -> Result<Vec<u8>, StreamError> {
    let mut conn = TcpStream::connect(to)
        .await
        .map_err(|e| StreamError::Connect(e.to_string()))?;
    let _ = conn.set_nodelay(true);
    conn.write_all(payload)
        .await
        .map_err(|e| StreamError::Io(e.to_string()))?;
    if !expect_reply {
        let _ = conn.shutdown().await;
        return Ok(Vec::new());
    }
    read_frame(&mut conn).await
}

/// Reads until [`frame_len`] reports a whole frame; returns exactly it.
async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> Result<Vec<u8>, StreamError> {
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        let n = r
            .read(&mut chunk)
            .await
            .map_err(|e| StreamError::Io(e.to_string()))?;
        if n == 0 {
            return Err(StreamError::Io(format!(
                "connection closed after {} bytes, before a whole frame",
                buf.len()
            )));
        }
        buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
        match frame_len(&buf) {
            Ok(Some(len)) => {
                buf.truncate(len);
                return Ok(buf);
            }
            Ok(None) if buf.len() >= MAX_FRAME => {
                return Err(StreamError::Malformed("frame too large".into()))
            }
            Ok(None) => {}
            Err(e) => return Err(StreamError::Malformed(e.to_string())),
        }
    }
}

#[cfg(test)]
mod tests;
