//! The client side of the RPC, as the `serf` CLI uses it against
//! `serf agent -rpc-addr`.
//!
//! One task reads the connection and routes each response header by its
//! `Seq` to whoever waits for it; requests may be issued concurrently from
//! clones of `&Client`. Streams (`stream`, `monitor`, `query`) are
//! [`Subscription`]s that end when the agent ends them, when they are
//! stopped, or when the connection closes.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::warn;

use crate::msgpack::Value;
use crate::protocol::{
    self, errors, Command, QueryPush, RequestHeader, ResponseHeader, ShapeError,
};
use crate::types::{Coordinate, EventRecord, KeyOutcome, Member, QueryParams, QueryRecord, Stats};
use crate::wire::{frame, ReadError, ValueReader};

/// How long the Go client waits to connect and to write a request.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Records a subscription buffers before it drops new ones (the Go client
/// drops when its channel is full, too).
const SUBSCRIPTION_BUFFER: usize = 4096;

/// A client call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Could not connect. Displays like Go's dial error, which the CLI
    /// prints after "Error connecting to Serf agent: ".
    #[error("dial tcp {addr}: {reason}")]
    Dial { addr: String, reason: String },
    /// The agent answered with an error; displays as the agent's text.
    #[error("{0}")]
    Remote(String),
    /// The connection is closed (Go's "client closed").
    #[error("client closed")]
    Closed,
    /// A write did not finish within the timeout.
    #[error("i/o timeout")]
    Timeout,
    #[error(transparent)]
    Io(#[from] io::Error),
    #[error("unexpected answer: {0}")]
    Shape(#[from] ShapeError),
}

/// How to reach an agent.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// `host:port` of the agent's RPC listener.
    pub addr: String,
    /// The agent's RPC token, sent with `auth` after the handshake when set
    /// and not empty.
    pub auth_key: Option<String>,
    /// Connect and write timeout.
    pub timeout: Duration,
}

impl ClientConfig {
    pub fn new(addr: impl Into<String>) -> ClientConfig {
        ClientConfig {
            addr: addr.into(),
            auth_key: None,
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

/// A response header, and the body that followed it when one was expected.
#[derive(Debug)]
struct Reply {
    error: String,
    body: Value,
}

/// Someone waiting for what arrives under a `Seq`.
#[derive(Debug)]
enum Waiter {
    /// A plain request: one header, then a body if `body`.
    Reply {
        body: bool,
        done: oneshot::Sender<Reply>,
    },
    /// A stream: the first header answers the request, each later header is
    /// followed by a record.
    Stream {
        started: Option<oneshot::Sender<String>>,
        records: mpsc::Sender<Value>,
        /// A query: a `done` record ends it.
        query: bool,
    },
}

#[derive(Debug)]
struct Shared {
    seq: AtomicU64,
    writer: tokio::sync::Mutex<Option<OwnedWriteHalf>>,
    /// `None` once the connection is closed.
    waiters: Mutex<Option<HashMap<u64, Waiter>>>,
    timeout: Duration,
}

impl Shared {
    fn next_seq(&self) -> u64 {
        self.seq.fetch_add(1, Ordering::Relaxed) + 1
    }

    fn register(&self, seq: u64, waiter: Waiter) -> Result<(), ClientError> {
        let mut waiters = self.waiters.lock().map_err(|_| ClientError::Closed)?;
        let map = waiters.as_mut().ok_or(ClientError::Closed)?;
        map.insert(seq, waiter);
        Ok(())
    }

    fn deregister(&self, seq: u64) {
        if let Ok(mut waiters) = self.waiters.lock() {
            if let Some(map) = waiters.as_mut() {
                map.remove(&seq);
            }
        }
    }

    /// Ends every waiter: the connection is gone.
    fn close_all(&self) {
        if let Ok(mut waiters) = self.waiters.lock() {
            waiters.take();
        }
    }

    async fn send(&self, header: &RequestHeader, body: Option<&Value>) -> Result<(), ClientError> {
        let bytes = frame(&header.to_value(), body);
        let mut writer = self.writer.lock().await;
        let half = writer.as_mut().ok_or(ClientError::Closed)?;
        match tokio::time::timeout(self.timeout, half.write_all(&bytes)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.into()),
            Err(_) => Err(ClientError::Timeout),
        }
    }
}

/// A connection to an agent's RPC listener.
#[derive(Debug)]
pub struct Client {
    shared: Arc<Shared>,
    reader: JoinHandle<()>,
}

impl Drop for Client {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// Go's wording for a failed dial.
fn dial_error(addr: &str, e: &io::Error) -> ClientError {
    let reason = match e.kind() {
        io::ErrorKind::ConnectionRefused => "connect: connection refused".to_owned(),
        io::ErrorKind::TimedOut => "i/o timeout".to_owned(),
        _ => {
            let text = e.to_string();
            let text = match text.find(" (os error") {
                Some(i) => text[..i].to_owned(),
                None => text,
            };
            let mut chars = text.chars();
            match chars.next() {
                Some(first) => first.to_lowercase().chain(chars).collect(),
                None => text,
            }
        }
    };
    ClientError::Dial {
        addr: addr.to_owned(),
        reason,
    }
}

impl Client {
    /// Connects, performs the handshake and, with a token, authenticates.
    pub async fn connect(config: ClientConfig) -> Result<Client, ClientError> {
        let stream =
            match tokio::time::timeout(config.timeout, TcpStream::connect(&config.addr)).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(e)) => return Err(dial_error(&config.addr, &e)),
                Err(_) => {
                    return Err(ClientError::Dial {
                        addr: config.addr.clone(),
                        reason: "i/o timeout".to_owned(),
                    })
                }
            };
        let _ = stream.set_nodelay(true);
        let (read_half, write_half) = stream.into_split();
        let shared = Arc::new(Shared {
            seq: AtomicU64::new(0),
            writer: tokio::sync::Mutex::new(Some(write_half)),
            waiters: Mutex::new(Some(HashMap::new())),
            timeout: config.timeout,
        });
        let reader = tokio::spawn(read_loop(read_half, shared.clone()));
        let client = Client { shared, reader };
        client
            .call(
                Command::Handshake,
                Some(
                    protocol::HandshakeRequest {
                        version: protocol::IPC_VERSION,
                    }
                    .to_value(),
                ),
            )
            .await?;
        if let Some(key) = config.auth_key.filter(|k| !k.is_empty()) {
            client
                .call(
                    Command::Auth,
                    Some(protocol::AuthRequest { auth_key: key }.to_value()),
                )
                .await?;
        }
        Ok(client)
    }

    /// Closes the connection; streams end.
    pub async fn close(self) {
        if let Some(mut half) = self.shared.writer.lock().await.take() {
            let _ = half.shutdown().await;
        }
        self.shared.close_all();
    }

    /// Sends a request and waits for its answer; the body, if the command
    /// has one, even when the answer is an error.
    async fn exchange(&self, command: Command, body: Option<Value>) -> Result<Reply, ClientError> {
        let seq = self.shared.next_seq();
        let (done, answer) = oneshot::channel();
        self.shared.register(
            seq,
            Waiter::Reply {
                body: command.has_response_body(),
                done,
            },
        )?;
        let header = RequestHeader {
            command: command.name().to_owned(),
            seq,
        };
        if let Err(e) = self.shared.send(&header, body.as_ref()).await {
            self.shared.deregister(seq);
            return Err(e);
        }
        answer.await.map_err(|_| ClientError::Closed)
    }

    /// [`Client::exchange`], with the agent's error as `Err`.
    async fn call(&self, command: Command, body: Option<Value>) -> Result<Value, ClientError> {
        let reply = self.exchange(command, body).await?;
        if reply.error.is_empty() {
            Ok(reply.body)
        } else {
            Err(ClientError::Remote(reply.error))
        }
    }

    async fn subscribe(
        &self,
        command: Command,
        body: Value,
        query: bool,
    ) -> Result<(u64, mpsc::Receiver<Value>), ClientError> {
        let seq = self.shared.next_seq();
        let (started_tx, started) = oneshot::channel();
        let (records_tx, records) = mpsc::channel(SUBSCRIPTION_BUFFER);
        self.shared.register(
            seq,
            Waiter::Stream {
                started: Some(started_tx),
                records: records_tx,
                query,
            },
        )?;
        let header = RequestHeader {
            command: command.name().to_owned(),
            seq,
        };
        if let Err(e) = self.shared.send(&header, Some(&body)).await {
            self.shared.deregister(seq);
            return Err(e);
        }
        let error = started.await.map_err(|_| ClientError::Closed)?;
        if error.is_empty() {
            Ok((seq, records))
        } else {
            Err(ClientError::Remote(error))
        }
    }

    pub async fn members(&self) -> Result<Vec<Member>, ClientError> {
        let body = self.call(Command::Members, None).await?;
        Ok(protocol::members_response_from_value(&body)?)
    }

    /// Members whose tags, status and name match the anchored regular
    /// expressions (an empty status or name matches all).
    pub async fn members_filtered(
        &self,
        tags: BTreeMap<String, String>,
        status: &str,
        name: &str,
    ) -> Result<Vec<Member>, ClientError> {
        let req = protocol::MembersFilteredRequest {
            tags,
            status: status.to_owned(),
            name: name.to_owned(),
        };
        let body = self
            .call(Command::MembersFiltered, Some(req.to_value()))
            .await?;
        Ok(protocol::members_response_from_value(&body)?)
    }

    /// Joins through `addrs`; how many were contacted.
    pub async fn join(&self, addrs: Vec<String>, replay: bool) -> Result<u32, ClientError> {
        let req = protocol::JoinRequest {
            existing: addrs,
            replay,
        };
        let body = self.call(Command::Join, Some(req.to_value())).await?;
        let resp = protocol::JoinResponse::from_value(&body)?;
        Ok(u32::try_from(resp.num).unwrap_or(0))
    }

    /// Asks the agent to leave gracefully and shut down.
    pub async fn leave(&self) -> Result<(), ClientError> {
        self.call(Command::Leave, None).await.map(drop)
    }

    pub async fn force_leave(&self, node: &str, prune: bool) -> Result<(), ClientError> {
        let req = protocol::ForceLeaveRequest {
            node: node.to_owned(),
            prune,
        };
        self.call(Command::ForceLeave, Some(req.to_value()))
            .await
            .map(drop)
    }

    pub async fn user_event(
        &self,
        name: &str,
        payload: &[u8],
        coalesce: bool,
    ) -> Result<(), ClientError> {
        let req = protocol::EventRequest {
            name: name.to_owned(),
            payload: payload.to_vec(),
            coalesce,
        };
        self.call(Command::Event, Some(req.to_value()))
            .await
            .map(drop)
    }

    /// Sets and deletes tags of the agent's node.
    pub async fn update_tags(
        &self,
        set: BTreeMap<String, String>,
        delete: Vec<String>,
    ) -> Result<(), ClientError> {
        let req = protocol::TagsRequest {
            tags: set,
            delete_tags: delete,
        };
        self.call(Command::Tags, Some(req.to_value()))
            .await
            .map(drop)
    }

    /// Answers a query received on an event stream.
    pub async fn respond(&self, id: u64, payload: &[u8]) -> Result<(), ClientError> {
        let req = protocol::RespondRequest {
            id,
            payload: payload.to_vec(),
        };
        self.call(Command::Respond, Some(req.to_value()))
            .await
            .map(drop)
    }

    async fn key_call(
        &self,
        command: Command,
        key: Option<&str>,
    ) -> Result<KeyOutcome, ClientError> {
        let body = key.map(|key| {
            protocol::KeyRequest {
                key: key.to_owned(),
            }
            .to_value()
        });
        let reply = self.exchange(command, body).await?;
        if reply.error == errors::AUTH_REQUIRED {
            return Err(ClientError::Remote(reply.error));
        }
        Ok(KeyOutcome {
            response: protocol::key_response_from_value(&reply.body)?,
            error: Some(reply.error).filter(|e| !e.is_empty()),
        })
    }

    pub async fn install_key(&self, key: &str) -> Result<KeyOutcome, ClientError> {
        self.key_call(Command::InstallKey, Some(key)).await
    }

    pub async fn use_key(&self, key: &str) -> Result<KeyOutcome, ClientError> {
        self.key_call(Command::UseKey, Some(key)).await
    }

    pub async fn remove_key(&self, key: &str) -> Result<KeyOutcome, ClientError> {
        self.key_call(Command::RemoveKey, Some(key)).await
    }

    pub async fn list_keys(&self) -> Result<KeyOutcome, ClientError> {
        self.key_call(Command::ListKeys, None).await
    }

    pub async fn stats(&self) -> Result<Stats, ClientError> {
        let body = self.call(Command::Stats, None).await?;
        Ok(protocol::stats_from_value(&body)?)
    }

    /// The agent's cached coordinate for `node`, `None` if it has none.
    pub async fn get_coordinate(&self, node: &str) -> Result<Option<Coordinate>, ClientError> {
        let req = protocol::CoordinateRequest {
            node: node.to_owned(),
        };
        let body = self
            .call(Command::GetCoordinate, Some(req.to_value()))
            .await?;
        Ok(protocol::coordinate_response_from_value(&body)?)
    }

    /// Subscribes to events matching `filter` (`""` or `*`: all;
    /// `member-join,user:deploy,query`, ...).
    pub async fn stream(&self, filter: &str) -> Result<Subscription<EventRecord>, ClientError> {
        let req = protocol::StreamRequest {
            filter: filter.to_owned(),
        };
        let (seq, records) = self
            .subscribe(Command::Stream, req.to_value(), false)
            .await?;
        Ok(Subscription {
            seq,
            records,
            parse: |v| protocol::event_record_from_value(&v).ok().flatten(),
        })
    }

    /// Subscribes to the agent's log lines at `level` (TRACE, DEBUG, INFO,
    /// WARN, ERR) and above.
    pub async fn monitor(&self, level: &str) -> Result<Subscription<String>, ClientError> {
        let req = protocol::MonitorRequest {
            log_level: level.to_owned(),
        };
        let (seq, records) = self
            .subscribe(Command::Monitor, req.to_value(), false)
            .await?;
        Ok(Subscription {
            seq,
            records,
            parse: |v| protocol::LogRecord::from_value(&v).ok().map(|r| r.log),
        })
    }

    /// Ends a stream or monitor. Records already on their way are dropped.
    pub async fn stop(&self, seq: u64) -> Result<(), ClientError> {
        self.shared.deregister(seq);
        let req = protocol::StopRequest { stop: seq };
        self.call(Command::Stop, Some(req.to_value()))
            .await
            .map(drop)
    }

    /// Starts a query; the subscription yields acks and responses and ends
    /// when the query is done.
    pub async fn query(
        &self,
        params: QueryParams,
    ) -> Result<Subscription<QueryRecord>, ClientError> {
        let req = protocol::QueryRequest {
            filter_nodes: params.filter_nodes,
            filter_tags: params.filter_tags,
            request_ack: params.request_ack,
            relay_factor: params.relay_factor,
            timeout: params.timeout,
            name: params.name,
            payload: params.payload,
        };
        let (seq, records) = self.subscribe(Command::Query, req.to_value(), true).await?;
        Ok(Subscription {
            seq,
            records,
            parse: query_record,
        })
    }
}

/// An ack or response pushed by a query stream; `None` for the `done`
/// record, for what cannot be read, and for records from no node. Serf's
/// agent streams from channels its query closes at the deadline, and its
/// stream loop can read them closed before its own deadline timer fires:
/// under load it pushes acks and responses with an empty `From` (and no
/// payload). No member has an empty name, so those are dropped here.
fn query_record(v: Value) -> Option<QueryRecord> {
    match protocol::query_record_from_value(&v) {
        Ok(QueryPush::Record(QueryRecord::Ack { from })) if !from.is_empty() => {
            Some(QueryRecord::Ack { from })
        }
        Ok(QueryPush::Record(QueryRecord::Response { from, payload })) if !from.is_empty() => {
            Some(QueryRecord::Response { from, payload })
        }
        _ => None,
    }
}

/// Records pushed under one `Seq`.
pub struct Subscription<T> {
    seq: u64,
    records: mpsc::Receiver<Value>,
    parse: fn(Value) -> Option<T>,
}

impl<T> std::fmt::Debug for Subscription<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("seq", &self.seq)
            .finish()
    }
}

impl<T> Subscription<T> {
    /// The `Seq` to pass to [`Client::stop`].
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The next record; `None` once the subscription has ended. Records
    /// this side cannot read are skipped.
    pub async fn recv(&mut self) -> Option<T> {
        loop {
            let raw = self.records.recv().await?;
            if let Some(record) = (self.parse)(raw) {
                return Some(record);
            }
        }
    }
}

async fn read_loop(half: OwnedReadHalf, shared: Arc<Shared>) {
    let mut reader = ValueReader::new(half);
    if let Err(e) = route(&mut reader, &shared).await {
        if !matches!(e, ReadError::Io(_)) {
            warn!(error = %e, "serf rpc client: reading answers failed");
        }
    }
    shared.close_all();
}

/// What to do with a header, decided under the lock.
enum Route {
    Ignore,
    Reply {
        body: bool,
        done: oneshot::Sender<Reply>,
    },
    Started(oneshot::Sender<String>),
    Record {
        records: mpsc::Sender<Value>,
        query: bool,
    },
}

async fn route(reader: &mut ValueReader<OwnedReadHalf>, shared: &Shared) -> Result<(), ReadError> {
    while let Some(value) = reader.next().await? {
        let header = ResponseHeader::from_value(&value);
        let route = {
            let Ok(mut waiters) = shared.waiters.lock() else {
                return Ok(());
            };
            let Some(map) = waiters.as_mut() else {
                return Ok(());
            };
            match map.get_mut(&header.seq) {
                None => Route::Ignore,
                Some(Waiter::Reply { .. }) => match map.remove(&header.seq) {
                    Some(Waiter::Reply { body, done }) => Route::Reply { body, done },
                    _ => Route::Ignore,
                },
                Some(Waiter::Stream {
                    started,
                    records,
                    query,
                }) => match started.take() {
                    Some(started) => {
                        if !header.error.is_empty() {
                            map.remove(&header.seq);
                        }
                        Route::Started(started)
                    }
                    None => Route::Record {
                        records: records.clone(),
                        query: *query,
                    },
                },
            }
        };
        // An unknown Seq (a stream stopped a moment ago) is skipped; its
        // record, if any, then reads as a header of Seq 0 and is skipped
        // too, as the Go client does.
        match route {
            Route::Ignore => {}
            Route::Reply { body, done } => {
                let body = if body && header.error != errors::AUTH_REQUIRED {
                    reader.next().await?.ok_or(ReadError::Truncated)?
                } else {
                    Value::Nil
                };
                let _ = done.send(Reply {
                    error: header.error,
                    body,
                });
            }
            Route::Started(started) => {
                let _ = started.send(header.error);
            }
            Route::Record { records, query } => {
                let record = reader.next().await?.ok_or(ReadError::Truncated)?;
                let done = query
                    && matches!(
                        protocol::query_record_from_value(&record),
                        Ok(QueryPush::Done)
                    );
                if done {
                    shared.deregister(header.seq);
                } else {
                    match records.try_send(record) {
                        Ok(()) => {}
                        Err(mpsc::error::TrySendError::Full(_)) => {
                            warn!(
                                seq = header.seq,
                                "serf rpc client: subscriber is behind, dropping a record"
                            );
                        }
                        // The subscription was dropped: stop routing to it.
                        Err(mpsc::error::TrySendError::Closed(_)) => shared.deregister(header.seq),
                    }
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod query_record_tests {
    use super::*;

    fn pushed(record: QueryRecord) -> Value {
        protocol::query_record_to_value(Some(&record))
    }

    #[test]
    fn records_from_a_node_are_kept() {
        let ack = QueryRecord::Ack { from: "a".into() };
        assert_eq!(query_record(pushed(ack.clone())), Some(ack));
        let response = QueryRecord::Response {
            from: "b".into(),
            payload: b"pong".to_vec(),
        };
        assert_eq!(query_record(pushed(response.clone())), Some(response));
        assert_eq!(query_record(protocol::query_record_to_value(None)), None);
    }

    #[test]
    fn records_from_no_node_are_dropped() {
        // What serf's agent pushes after reading its closed channels.
        let ack = QueryRecord::Ack {
            from: String::new(),
        };
        assert_eq!(query_record(pushed(ack)), None);
        let response = QueryRecord::Response {
            from: String::new(),
            payload: Vec::new(),
        };
        assert_eq!(query_record(pushed(response)), None);
    }
}
