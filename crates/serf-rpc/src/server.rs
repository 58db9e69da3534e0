//! The agent side of the RPC: a TCP listener that answers Serf's CLI and
//! RPC clients from a [`Backend`].
//!
//! Each connection gets one task that reads requests and handles them one
//! at a time, and one writer task that owns the socket's write half. Every
//! frame (a response, or a record pushed by a stream, monitor or query)
//! goes through the writer's queue as one unit, so pushed records and
//! responses interleave without ever splitting a header from its body.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncWriteExt, BufWriter};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpStream, ToSocketAddrs};
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::task::{AbortHandle, JoinHandle, JoinSet};
use tracing::{debug, info, warn};

use crate::backend::{Backend, QueryStream};
use crate::filter::{filter_members, EventFilter};
use crate::msgpack::Value;
use crate::protocol::{self, errors, Command, ResponseHeader, ShapeError};
use crate::types::{KeyOp, LogLevel, LogLine, QueryParams, QueryResponder, StreamEvent};
use crate::wire::{frame, ReadError, ValueReader};

/// Frames waiting for the writer, per connection. When a client stops
/// reading, pushes wait here and then the event feed lags (and drops), as
/// Serf drops events for a slow client.
const OUTBOX_FRAMES: usize = 512;

/// How long a closing connection may take to flush what it still has.
const CLOSE_FLUSH: Duration = Duration::from_secs(2);

/// Server settings.
#[derive(Debug, Clone, Default)]
pub struct ServerConfig {
    /// When set (and not empty), clients must send `auth` with this token
    /// after the handshake (the agent's `-rpc-auth`).
    pub auth_key: Option<String>,
}

/// A running RPC server. Dropping it stops it too, without waiting.
pub struct Server {
    local_addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Server {
    /// Listens on `addr` and starts serving.
    pub async fn bind<B: Backend>(
        addr: impl ToSocketAddrs,
        backend: Arc<B>,
        config: ServerConfig,
    ) -> io::Result<Server> {
        let listener = TcpListener::bind(addr).await?;
        Server::serve(listener, backend, config)
    }

    /// Serves on a listener the caller bound.
    pub fn serve<B: Backend>(
        listener: TcpListener,
        backend: Arc<B>,
        config: ServerConfig,
    ) -> io::Result<Server> {
        let local_addr = listener.local_addr()?;
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(accept_loop(listener, backend, Arc::new(config), stopped));
        Ok(Server {
            local_addr,
            stop,
            task,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting, closes every connection (their streams end) and
    /// waits until all of it is done.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

async fn accept_loop<B: Backend>(
    listener: TcpListener,
    backend: Arc<B>,
    config: Arc<ServerConfig>,
    mut stopped: watch::Receiver<bool>,
) {
    let mut connections = JoinSet::new();
    let for_connections = stopped.clone();
    loop {
        tokio::select! {
            _ = until_stopped(&mut stopped) => break,
            accepted = listener.accept() => match accepted {
                Ok((socket, peer)) => {
                    info!(%peer, "serf rpc: accepted client");
                    connections.spawn(connection(
                        socket,
                        peer,
                        backend.clone(),
                        config.clone(),
                        for_connections.clone(),
                    ));
                }
                Err(e) => {
                    warn!(error = %e, "serf rpc: accept failed");
                    // Out of descriptors and the like: do not spin.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    while connections.join_next().await.is_some() {}
}

/// Resolves once the server is told to stop (or dropped).
async fn until_stopped(stopped: &mut watch::Receiver<bool>) {
    let _ = stopped.wait_for(|s| *s).await;
}

/// One frame for the writer task.
enum Frame {
    Bytes(Vec<u8>),
    /// Answered once everything before it is on the socket.
    Flushed(oneshot::Sender<()>),
}

/// The writer went away (the client disconnected or the socket failed).
#[derive(Debug)]
struct Gone;

#[derive(Clone)]
struct Outbox(mpsc::Sender<Frame>);

impl Outbox {
    async fn push(&self, header: ResponseHeader, body: Option<&Value>) -> Result<(), Gone> {
        let bytes = frame(&header.to_value(), body);
        self.0.send(Frame::Bytes(bytes)).await.map_err(|_| Gone)
    }

    async fn flushed(&self) -> Result<(), Gone> {
        let (tx, rx) = oneshot::channel();
        self.0.send(Frame::Flushed(tx)).await.map_err(|_| Gone)?;
        rx.await.map_err(|_| Gone)
    }
}

async fn write_loop(half: OwnedWriteHalf, mut frames: mpsc::Receiver<Frame>) {
    let mut out = BufWriter::new(half);
    while let Some(frame) = frames.recv().await {
        match frame {
            Frame::Bytes(bytes) => {
                if out.write_all(&bytes).await.is_err() {
                    return;
                }
                if frames.is_empty() && out.flush().await.is_err() {
                    return;
                }
            }
            Frame::Flushed(done) => {
                if out.flush().await.is_err() {
                    return;
                }
                let _ = done.send(());
            }
        }
    }
    let _ = out.flush().await;
    let _ = out.shutdown().await;
}

/// Why a connection ends.
#[derive(Debug, thiserror::Error)]
enum ConnError {
    #[error("reading request: {0}")]
    Read(#[from] ReadError),
    #[error("bad request header: {0}")]
    Header(ShapeError),
    #[error("client went away")]
    Gone,
    #[error("{0}")]
    Protocol(&'static str),
}

impl From<Gone> for ConnError {
    fn from(_: Gone) -> Self {
        ConnError::Gone
    }
}

enum Flow {
    Continue,
    Close,
}

async fn connection<B: Backend>(
    socket: TcpStream,
    peer: SocketAddr,
    backend: Arc<B>,
    config: Arc<ServerConfig>,
    mut stopped: watch::Receiver<bool>,
) {
    let _ = socket.set_nodelay(true);
    let (read_half, write_half) = socket.into_split();
    let (tx, rx) = mpsc::channel(OUTBOX_FRAMES);
    let mut writer = tokio::spawn(write_loop(write_half, rx));
    let mut conn = Conn {
        backend,
        config,
        outbox: Outbox(tx),
        version: 0,
        authed: false,
        streams: HashMap::new(),
        monitor: None,
        tasks: JoinSet::new(),
        pending: Arc::new(PendingQueries::default()),
    };
    let mut reader = ValueReader::new(read_half);
    loop {
        let flow = tokio::select! {
            _ = until_stopped(&mut stopped) => break,
            flow = conn.next_request(&mut reader) => flow,
        };
        match flow {
            Ok(Flow::Continue) => conn.reap(),
            Ok(Flow::Close) => break,
            Err(ConnError::Read(ReadError::Io(e))) => {
                debug!(%peer, error = %e, "serf rpc: client connection failed");
                break;
            }
            Err(e) => {
                warn!(%peer, error = %e, "serf rpc: closing client");
                break;
            }
        }
    }
    // Ends the streams (waiting until they are gone, so their feeds are
    // unsubscribed) and drops every sender, so the writer drains and closes.
    conn.tasks.shutdown().await;
    drop(conn);
    if tokio::time::timeout(CLOSE_FLUSH, &mut writer)
        .await
        .is_err()
    {
        writer.abort();
    }
    debug!(%peer, "serf rpc: client closed");
}

/// A query's deadline and the way to answer it.
type PendingQuery = (tokio::time::Instant, Arc<dyn QueryResponder>);

/// Queries delivered to this client's event streams that it may still
/// answer with `respond`, by the per-connection ID it was given.
#[derive(Default)]
struct PendingQueries {
    next_id: AtomicU64,
    open: Mutex<HashMap<u64, PendingQuery>>,
}

impl PendingQueries {
    fn register(&self, deadline: tokio::time::Instant, responder: Arc<dyn QueryResponder>) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let now = tokio::time::Instant::now();
        if deadline > now {
            if let Ok(mut open) = self.open.lock() {
                open.retain(|_, (d, _)| *d > now);
                open.insert(id, (deadline, responder));
            }
        }
        id
    }

    fn get(&self, id: u64) -> Option<Arc<dyn QueryResponder>> {
        let mut open = self.open.lock().ok()?;
        let (deadline, responder) = open.get(&id)?;
        if *deadline <= tokio::time::Instant::now() {
            open.remove(&id);
            return None;
        }
        Some(responder.clone())
    }
}

struct Conn<B> {
    backend: Arc<B>,
    config: Arc<ServerConfig>,
    outbox: Outbox,
    /// The handshake's version; 0 before it.
    version: i32,
    authed: bool,
    /// Event streams by the `Seq` that opened them.
    streams: HashMap<u64, AbortHandle>,
    monitor: Option<(u64, AbortHandle)>,
    /// Every task this connection started; dropping the set ends them.
    tasks: JoinSet<()>,
    pending: Arc<PendingQueries>,
}

impl<B: Backend> Conn<B> {
    /// Forgets tasks that have finished.
    fn reap(&mut self) {
        while self.tasks.try_join_next().is_some() {}
    }

    fn needs_auth(&self) -> bool {
        !self.authed
            && self
                .config
                .auth_key
                .as_deref()
                .is_some_and(|k| !k.is_empty())
    }

    async fn reply(&self, seq: u64, error: &str, body: Option<&Value>) -> Result<(), Gone> {
        self.outbox
            .push(ResponseHeader::error(seq, error), body)
            .await
    }

    async fn next_request<R>(&mut self, reader: &mut ValueReader<R>) -> Result<Flow, ConnError>
    where
        R: tokio::io::AsyncRead + Unpin,
    {
        let Some(header) = reader.next().await? else {
            return Ok(Flow::Close);
        };
        let header = protocol::RequestHeader::from_value(&header).map_err(ConnError::Header)?;
        let seq = header.seq;
        let command = Command::parse(&header.command);
        if self.version == 0 && command != Some(Command::Handshake) {
            self.reply(seq, errors::HANDSHAKE_REQUIRED, None).await?;
            return Ok(Flow::Close);
        }
        let body = match command {
            Some(c) if c.has_body() => reader
                .next()
                .await?
                .ok_or(ConnError::Read(ReadError::Truncated))?,
            _ => Value::Nil,
        };
        if self.needs_auth() && !matches!(command, Some(Command::Handshake | Command::Auth)) {
            warn!("serf rpc: client sent a command before authenticating");
            self.reply(seq, errors::AUTH_REQUIRED, None).await?;
            return Ok(Flow::Continue);
        }
        let Some(command) = command else {
            self.reply(seq, errors::UNSUPPORTED_COMMAND, None).await?;
            return Err(ConnError::Protocol("unsupported command"));
        };
        match self.dispatch(command, seq, &body).await {
            Err(Reject::Gone) => Err(ConnError::Gone),
            Err(Reject::Body(e)) => {
                // The stream is still in step (the body was one whole
                // value), so say what was wrong and go on. Commands that
                // answer with a body get an empty one, which clients wait
                // for.
                let empty = command.has_response_body().then(|| empty_response(command));
                self.reply(seq, &format!("Invalid request: {e}"), empty.as_ref())
                    .await?;
                Ok(Flow::Continue)
            }
            Ok(flow) => Ok(flow),
        }
    }

    async fn dispatch(&mut self, command: Command, seq: u64, body: &Value) -> Result<Flow, Reject> {
        use protocol::*;
        let backend = self.backend.clone();
        match command {
            Command::Handshake => {
                let req = HandshakeRequest::from_value(body)?;
                let error = if req.version != IPC_VERSION {
                    errors::UNSUPPORTED_IPC_VERSION
                } else if self.version != 0 {
                    errors::DUPLICATE_HANDSHAKE
                } else {
                    self.version = req.version;
                    ""
                };
                self.reply(seq, error, None).await?;
            }
            Command::Auth => {
                let req = AuthRequest::from_value(body)?;
                let expected = self.config.auth_key.as_deref().unwrap_or_default();
                let error = if req.auth_key == expected {
                    self.authed = true;
                    ""
                } else {
                    errors::INVALID_AUTH_TOKEN
                };
                self.reply(seq, error, None).await?;
            }
            Command::Event => {
                let req = EventRequest::from_value(body)?;
                let result = backend
                    .user_event(req.name, req.payload, req.coalesce)
                    .await;
                self.reply(seq, &error_text(result), None).await?;
            }
            Command::ForceLeave => {
                let req = ForceLeaveRequest::from_value(body)?;
                let result = backend.force_leave(req.node, req.prune).await;
                self.reply(seq, &error_text(result), None).await?;
            }
            Command::Join => {
                let req = JoinRequest::from_value(body)?;
                let (num, error) = match backend.join(req.existing, req.replay).await {
                    Ok(n) => (i32::try_from(n).unwrap_or(i32::MAX), String::new()),
                    Err(e) => (0, e),
                };
                let resp = JoinResponse { num }.to_value();
                self.reply(seq, &error, Some(&resp)).await?;
            }
            Command::Members => {
                let resp = members_response_to_value(&backend.members());
                self.reply(seq, "", Some(&resp)).await?;
            }
            Command::MembersFiltered => {
                let req = MembersFilteredRequest::from_value(body)?;
                match filter_members(backend.members(), &req.tags, &req.status, &req.name) {
                    Ok(members) => {
                        let resp = members_response_to_value(&members);
                        self.reply(seq, "", Some(&resp)).await?;
                    }
                    Err(e) => {
                        let resp = members_response_to_value(&[]);
                        self.reply(seq, &e.to_string(), Some(&resp)).await?;
                    }
                }
            }
            Command::Stream => {
                let req = StreamRequest::from_value(body)?;
                self.open_stream(seq, &req.filter).await?;
            }
            Command::Monitor => {
                let req = MonitorRequest::from_value(body)?;
                self.open_monitor(seq, &req.log_level).await?;
            }
            Command::Stop => {
                let req = StopRequest::from_value(body)?;
                if let Some((monitor_seq, handle)) = self.monitor.take() {
                    if monitor_seq == req.stop {
                        handle.abort();
                    } else {
                        self.monitor = Some((monitor_seq, handle));
                    }
                }
                if let Some(handle) = self.streams.remove(&req.stop) {
                    handle.abort();
                }
                self.reply(seq, "", None).await?;
            }
            Command::Leave => {
                info!("serf rpc: graceful leave requested");
                let result = backend.leave().await;
                if let Err(e) = &result {
                    warn!(error = %e, "serf rpc: leave failed");
                }
                self.reply(seq, &error_text(result), None).await?;
                let _ = self.outbox.flushed().await;
                backend.shutdown();
            }
            Command::InstallKey | Command::UseKey | Command::RemoveKey | Command::ListKeys => {
                let op = match command {
                    Command::ListKeys => KeyOp::List,
                    _ => {
                        let key = KeyRequest::from_value(body)?.key;
                        match command {
                            Command::InstallKey => KeyOp::Install(key),
                            Command::UseKey => KeyOp::Use(key),
                            _ => KeyOp::Remove(key),
                        }
                    }
                };
                let outcome = backend.key_op(op).await;
                let resp = key_response_to_value(&outcome.response, command == Command::ListKeys);
                let error = outcome.error.unwrap_or_default();
                self.reply(seq, &error, Some(&resp)).await?;
            }
            Command::Tags => {
                let req = TagsRequest::from_value(body)?;
                let result = backend.update_tags(req.tags, req.delete_tags).await;
                self.reply(seq, &error_text(result), None).await?;
            }
            Command::Query => {
                let req = QueryRequest::from_value(body)?;
                let params = QueryParams {
                    name: req.name,
                    payload: req.payload,
                    filter_nodes: req.filter_nodes,
                    filter_tags: req.filter_tags,
                    request_ack: req.request_ack,
                    relay_factor: req.relay_factor,
                    timeout: req.timeout,
                };
                match backend.query(params).await {
                    Ok(stream) => {
                        self.reply(seq, "", None).await?;
                        self.tasks
                            .spawn(query_records(seq, stream, self.outbox.clone()));
                    }
                    Err(e) => self.reply(seq, &e, None).await?,
                }
            }
            Command::Respond => {
                let req = RespondRequest::from_value(body)?;
                let error = match self.pending.get(req.id) {
                    Some(responder) => error_text(responder.respond(req.payload)),
                    None => errors::INVALID_QUERY_ID.to_owned(),
                };
                self.reply(seq, &error, None).await?;
            }
            Command::Stats => {
                let resp = stats_to_value(&backend.stats());
                self.reply(seq, "", Some(&resp)).await?;
            }
            Command::GetCoordinate => {
                let req = CoordinateRequest::from_value(body)?;
                let coord = backend.coordinate(&req.node);
                let resp = coordinate_response_to_value(coord.as_ref());
                self.reply(seq, "", Some(&resp)).await?;
            }
        }
        Ok(Flow::Continue)
    }

    async fn open_stream(&mut self, seq: u64, filter: &str) -> Result<(), Gone> {
        let filters = EventFilter::parse_list(filter);
        if !filters.iter().all(EventFilter::is_valid) {
            return self.reply(seq, errors::INVALID_FILTER, None).await;
        }
        if self.streams.contains_key(&seq) {
            return self.reply(seq, errors::STREAM_EXISTS, None).await;
        }
        // Subscribe before answering, start pushing after: the client sees
        // the answer first and misses nothing published after it.
        let feed = self.backend.subscribe_events();
        self.reply(seq, "", None).await?;
        let handle = self.tasks.spawn(event_stream(
            seq,
            filters,
            feed,
            self.outbox.clone(),
            self.pending.clone(),
        ));
        self.streams.insert(seq, handle);
        Ok(())
    }

    async fn open_monitor(&mut self, seq: u64, level: &str) -> Result<(), Gone> {
        let level = level.to_uppercase();
        let Some(min) = LogLevel::parse(&level) else {
            return self
                .reply(seq, &format!("Unknown log level: {level}"), None)
                .await;
        };
        if self.monitor.is_some() {
            return self.reply(seq, errors::MONITOR_EXISTS, None).await;
        }
        let feed = self.backend.subscribe_logs();
        self.reply(seq, "", None).await?;
        let handle = self
            .tasks
            .spawn(log_stream(seq, min, feed, self.outbox.clone()));
        self.monitor = Some((seq, handle));
        Ok(())
    }
}

/// Why a request got no normal answer.
enum Reject {
    Gone,
    Body(ShapeError),
}

impl From<Gone> for Reject {
    fn from(_: Gone) -> Self {
        Reject::Gone
    }
}

impl From<ShapeError> for Reject {
    fn from(e: ShapeError) -> Self {
        Reject::Body(e)
    }
}

fn error_text(result: Result<impl Sized, String>) -> String {
    result.err().unwrap_or_default()
}

/// The body sent with an error for commands whose clients always read one.
fn empty_response(command: Command) -> Value {
    use protocol::*;
    match command {
        Command::Join => JoinResponse { num: 0 }.to_value(),
        Command::Members | Command::MembersFiltered => members_response_to_value(&[]),
        Command::Stats => stats_to_value(&Default::default()),
        Command::GetCoordinate => coordinate_response_to_value(None),
        Command::ListKeys => key_response_to_value(&Default::default(), true),
        _ => key_response_to_value(&Default::default(), false),
    }
}

async fn event_stream(
    seq: u64,
    filters: Vec<EventFilter>,
    mut feed: broadcast::Receiver<StreamEvent>,
    outbox: Outbox,
    pending: Arc<PendingQueries>,
) {
    loop {
        let event = match feed.recv().await {
            Ok(event) => event,
            Err(broadcast::error::RecvError::Lagged(n)) => {
                warn!(
                    seq,
                    dropped = n,
                    "serf rpc: dropping events to a slow client"
                );
                continue;
            }
            Err(broadcast::error::RecvError::Closed) => return,
        };
        if !filters.iter().any(|f| f.matches(&event)) {
            continue;
        }
        let record = match &event {
            StreamEvent::Member { kind, members } => {
                protocol::member_event_to_value(kind.as_str(), members)
            }
            StreamEvent::User(user) => protocol::user_event_to_value(user),
            StreamEvent::Query(query) => {
                let id = pending.register(query.deadline, query.responder.clone());
                protocol::query_event_to_value(id, query.ltime, &query.name, &query.payload)
            }
        };
        if outbox
            .push(ResponseHeader::ok(seq), Some(&record))
            .await
            .is_err()
        {
            return;
        }
    }
}

async fn log_stream(
    seq: u64,
    min: LogLevel,
    mut feed: broadcast::Receiver<LogLine>,
    outbox: Outbox,
) {
    loop {
        let line = match feed.recv().await {
            Ok(line) => line,
            Err(broadcast::error::RecvError::Lagged(n)) => {
                debug!(
                    seq,
                    dropped = n,
                    "serf rpc: dropping log lines to a slow client"
                );
                continue;
            }
            Err(broadcast::error::RecvError::Closed) => return,
        };
        if line.level < min {
            continue;
        }
        let record = protocol::LogRecord { log: line.text }.to_value();
        if outbox
            .push(ResponseHeader::ok(seq), Some(&record))
            .await
            .is_err()
        {
            return;
        }
    }
}

async fn query_records(seq: u64, mut stream: QueryStream, outbox: Outbox) {
    let deadline = tokio::time::sleep_until(stream.deadline);
    tokio::pin!(deadline);
    // `done` goes out at the deadline even when the backend finished
    // earlier, as Serf's agent does: the Go CLI drains its ack and response
    // channels in a random order and would lose records that arrive just
    // before `done`.
    let mut open = true;
    loop {
        let record = tokio::select! {
            _ = &mut deadline => break,
            record = stream.records.recv(), if open => match record {
                Some(record) => record,
                None => {
                    open = false;
                    continue;
                }
            },
        };
        let body = protocol::query_record_to_value(Some(&record));
        if outbox
            .push(ResponseHeader::ok(seq), Some(&body))
            .await
            .is_err()
        {
            return;
        }
    }
    let done = protocol::query_record_to_value(None);
    let _ = outbox.push(ResponseHeader::ok(seq), Some(&done)).await;
}
