//! The I/O loop shared by every gossip-speaking machine: the bare
//! [`Memberlist`](crate::Memberlist) with its delegate, or Serf built on it.
//!
//! One task owns the [`Machine`] and loops over its inputs: UDP datagrams,
//! request frames read from accepted TCP connections, results of the
//! stream exchanges it opened, closures sent through a [`RunnerHandle`],
//! and the machine's next timer. After each input it sends what the
//! machine queued (datagrams on the bound socket, one short task per
//! stream exchange) and calls [`Machine::after_input`].

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::{sleep_until, timeout, timeout_at, Instant};

use super::ShellError;
use crate::swim::stream::MAX_FRAME;
use crate::swim::{frame_len, StreamError, StreamId, Transmit};

/// Largest datagram we can receive (the IPv4 UDP maximum).
const MAX_DATAGRAM: usize = 65_536;
/// How many commands and internal results may queue before senders wait.
const CHANNEL_DEPTH: usize = 1024;
/// How often binding TCP and UDP on one ephemeral port is retried.
const BIND_ATTEMPTS: usize = 10;

/// A sans-IO protocol machine the runner can drive.
pub trait Machine: Send + 'static {
    fn handle_packet(&mut self, now: std::time::Instant, from: SocketAddr, buf: &[u8]);
    fn handle_stream(
        &mut self,
        now: std::time::Instant,
        from: SocketAddr,
        request: &[u8],
    ) -> Option<Vec<u8>>;
    fn handle_stream_reply(
        &mut self,
        now: std::time::Instant,
        id: StreamId,
        result: Result<Vec<u8>, StreamError>,
    );
    fn handle_timeout(&mut self, now: std::time::Instant);
    fn poll_transmit(&mut self) -> Option<Transmit>;
    fn poll_timeout(&self) -> std::time::Instant;
    /// How long an incoming stream may take to deliver its request.
    fn tcp_timeout(&self) -> Duration;
    /// Runs after every input, once its transmits are on their way:
    /// settle waiters, publish state, react to events.
    fn after_input(&mut self, _now: std::time::Instant) {}
    /// True when the machine wants the runner to stop.
    fn finished(&self) -> bool {
        false
    }
}

/// Counters only the runner sees.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IoCounters {
    /// Datagrams the socket refused to send.
    pub udp_send_errors: u64,
    /// TCP connections accepted.
    pub tcp_accepted: u64,
    /// Outgoing stream exchanges that failed (connect, i/o, timeout, garbage).
    pub stream_failures: u64,
}

type MachineFn<M> = Box<dyn FnOnce(&mut M, std::time::Instant, &IoCounters) + Send>;

enum Command<M> {
    Run(MachineFn<M>),
    Shutdown,
}

/// What the connection tasks report to the machine's task.
enum Internal {
    Inbound {
        from: SocketAddr,
        request: Vec<u8>,
        reply: oneshot::Sender<Option<Vec<u8>>>,
    },
    StreamDone {
        id: StreamId,
        result: Result<Vec<u8>, StreamError>,
    },
}

/// The way in to a running machine. Dropping it stops the machine.
pub struct RunnerHandle<M> {
    commands: mpsc::Sender<Command<M>>,
    local_addr: SocketAddr,
    task: JoinHandle<M>,
}

impl<M> std::fmt::Debug for RunnerHandle<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunnerHandle")
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

impl<M: Machine> RunnerHandle<M> {
    /// The address UDP and TCP are bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Runs `f` on the machine inside its task, with the current time;
    /// whatever it queues is sent right after.
    pub async fn run<R, F>(&self, f: F) -> Result<R, ShellError>
    where
        R: Send + 'static,
        F: FnOnce(&mut M, std::time::Instant, &IoCounters) -> R + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let run: MachineFn<M> = Box::new(move |m, now, io| {
            let _ = tx.send(f(m, now, io));
        });
        self.commands
            .send(Command::Run(run))
            .await
            .map_err(|_| ShellError::Stopped)?;
        rx.await.map_err(|_| ShellError::Stopped)
    }

    /// Like [`run`](Self::run), without waiting for the task to take it.
    pub fn try_run<F>(&self, f: F) -> Result<(), ShellError>
    where
        F: FnOnce(&mut M, std::time::Instant, &IoCounters) + Send + 'static,
    {
        self.commands
            .try_send(Command::Run(Box::new(f)))
            .map_err(|_| ShellError::Stopped)
    }

    /// True once the task has ended (shut down or finished).
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Stops the machine and hands it back.
    pub async fn shutdown(self) -> Result<M, ShellError> {
        let _ = self.commands.send(Command::Shutdown).await;
        self.task.await.map_err(|_| ShellError::Stopped)
    }

    /// Waits until the machine stops by itself (see [`Machine::finished`]).
    pub async fn wait(self) -> Result<M, ShellError> {
        let RunnerHandle { commands, task, .. } = self;
        let out = task.await.map_err(|_| ShellError::Stopped);
        drop(commands);
        out
    }
}

/// Starts `machine` on sockets already bound by [`bind_both`].
pub fn start<M: Machine>(
    machine: M,
    listener: TcpListener,
    udp: UdpSocket,
) -> Result<RunnerHandle<M>, ShellError> {
    let local_addr = listener.local_addr().map_err(|source| ShellError::Bind {
        addr: SocketAddr::from(([0, 0, 0, 0], 0)),
        source,
    })?;
    let (commands, command_rx) = mpsc::channel(CHANNEL_DEPTH);
    let (internal_tx, internal_rx) = mpsc::channel(CHANNEL_DEPTH);
    let runner = Runner {
        machine,
        udp,
        listener,
        internal_tx,
        io: IoCounters::default(),
    };
    let task = tokio::spawn(runner.run(command_rx, internal_rx));
    Ok(RunnerHandle {
        commands,
        local_addr,
        task,
    })
}

struct Runner<M> {
    machine: M,
    udp: UdpSocket,
    listener: TcpListener,
    internal_tx: mpsc::Sender<Internal>,
    io: IoCounters,
}

/// One thing that woke the task.
enum Input<M> {
    Datagram(std::io::Result<(usize, SocketAddr)>),
    Accepted(std::io::Result<(TcpStream, SocketAddr)>),
    Internal(Option<Internal>),
    Command(Option<Command<M>>),
    Timer,
}

impl<M: Machine> Runner<M> {
    async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command<M>>,
        mut internal: mpsc::Receiver<Internal>,
    ) -> M {
        let mut buf = vec![0u8; MAX_DATAGRAM];
        loop {
            let wake = Instant::from_std(self.machine.poll_timeout());
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
                    self.machine.handle_packet(now, from, packet);
                }
                Input::Datagram(Err(e)) => {
                    tracing::debug!(error = %e, "gossip: udp receive failed");
                }
                Input::Accepted(Ok((conn, from))) => {
                    self.io.tcp_accepted += 1;
                    let tx = self.internal_tx.clone();
                    let limit = self.machine.tcp_timeout();
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
                    let answer = self.machine.handle_stream(now, from, &request);
                    let _ = reply.send(answer);
                }
                Input::Internal(Some(Internal::StreamDone { id, result })) => {
                    if let Err(e) = &result {
                        self.io.stream_failures += 1;
                        tracing::debug!(error = %e, "gossip: stream exchange failed");
                    }
                    self.machine.handle_stream_reply(now, id, result);
                }
                // We hold a sender ourselves, so this cannot happen.
                Input::Internal(None) => {}
                Input::Command(None) | Input::Command(Some(Command::Shutdown)) => break,
                Input::Command(Some(Command::Run(f))) => f(&mut self.machine, now, &self.io),
                Input::Timer => self.machine.handle_timeout(now),
            }
            self.send_transmits().await;
            self.machine.after_input(now);
            // after_input may queue more (e.g. answers it decided on).
            self.send_transmits().await;
            if self.machine.finished() {
                break;
            }
        }
        self.machine
    }

    async fn send_transmits(&mut self) {
        while let Some(t) = self.machine.poll_transmit() {
            match t {
                Transmit::Packet { to, payload } => {
                    if let Err(e) = self.udp.send_to(&payload, to).await {
                        self.io.udp_send_errors += 1;
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
    }
}

/// Binds TCP first, then UDP on the same port. With port 0 the kernel's
/// TCP pick may be taken for UDP; then both are retried.
pub async fn bind_both(bind: SocketAddr) -> Result<(TcpListener, UdpSocket), ShellError> {
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

/// Serves one accepted connection: one request frame in, the machine's
/// answer (if any) out, then close. Everything must happen within `limit`.
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
pub(super) async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> Result<Vec<u8>, StreamError> {
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
