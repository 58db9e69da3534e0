//! The calling side of the server port: one HTTP/2 connection per peer
//! (multiplexed, reconnected on failure), MessagePack bodies, a deadline
//! on every call; and openraft's network over it.

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use openraft::errors::{
    NetworkError, RPCError, ReplicationClosed, StreamingError, Timeout, Unreachable,
};
use openraft::network::{RPCOption, RPCTypes, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, TransferLeaderRequest,
    TransferLeaderResponse, VoteRequest, VoteResponse,
};
use openraft::{OptionalSend, RaftNetworkV2};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::wire::{self, SnapshotHead, WireVote};
use super::{paths, CONTENT_TYPE, MAX_BODY};
use crate::types::{RaftSnapshot, RaftVote, ServerNode, SnapshotData, TypeConfig};

/// Why a call to another server failed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// No connection could be made: the request was never sent.
    #[error("cannot reach {addr}: {reason}")]
    Unreachable { addr: String, reason: String },
    /// The connection failed after the request may have been sent: it may
    /// or may not have been carried out.
    #[error("connection to {addr} failed: {reason}")]
    Broken { addr: String, reason: String },
    #[error("{addr} did not answer within {after:?}")]
    Timeout { addr: String, after: Duration },
    #[error("{addr} answered {status}: {body}")]
    Refused {
        addr: String,
        status: StatusCode,
        body: String,
    },
    #[error("bad answer from {addr}: {reason}")]
    BadAnswer { addr: String, reason: String },
}

/// A client of other servers' ports. Cheap to clone: clones share the
/// connections.
#[derive(Clone)]
pub struct RpcClient {
    http: Client<HttpConnector, Full<Bytes>>,
}

impl Default for RpcClient {
    fn default() -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(2)));
        let http = Client::builder(TokioExecutor::new())
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .http2_only(true)
            .http2_keep_alive_interval(Some(Duration::from_secs(10)))
            .http2_keep_alive_timeout(Duration::from_secs(5))
            .build(connector);
        RpcClient { http }
    }
}

impl RpcClient {
    /// Posts `body` (already encoded) to `path` on `addr` and returns the
    /// answer's bytes.
    pub(crate) async fn post_raw(
        &self,
        addr: &str,
        path: &str,
        body: Bytes,
        timeout: Duration,
        limit: usize,
    ) -> Result<Bytes, CallError> {
        let request = Request::builder()
            .method(Method::POST)
            .uri(format!("http://{addr}{path}"))
            .header(hyper::header::CONTENT_TYPE, CONTENT_TYPE)
            .body(Full::new(body))
            .map_err(|e| CallError::Unreachable {
                addr: addr.to_string(),
                reason: e.to_string(),
            })?;
        let exchange = async {
            let response = self.http.request(request).await.map_err(|e| {
                let reason = error_chain(&e);
                if e.is_connect() {
                    CallError::Unreachable {
                        addr: addr.to_string(),
                        reason,
                    }
                } else {
                    CallError::Broken {
                        addr: addr.to_string(),
                        reason,
                    }
                }
            })?;
            let status = response.status();
            let body = Limited::new(response.into_body(), limit)
                .collect()
                .await
                .map_err(|e| CallError::BadAnswer {
                    addr: addr.to_string(),
                    reason: e.to_string(),
                })?
                .to_bytes();
            if status != StatusCode::OK {
                return Err(CallError::Refused {
                    addr: addr.to_string(),
                    status,
                    body: String::from_utf8_lossy(&body).into_owned(),
                });
            }
            Ok(body)
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| CallError::Timeout {
                addr: addr.to_string(),
                after: timeout,
            })?
    }

    /// Calls `path` on `addr` with `request`, decoding the answer.
    pub async fn call<Q: Serialize, A: DeserializeOwned>(
        &self,
        addr: &str,
        path: &str,
        request: &Q,
        timeout: Duration,
    ) -> Result<A, CallError> {
        let body = rmp_serde::to_vec_named(request).map_err(|e| CallError::BadAnswer {
            addr: addr.to_string(),
            reason: format!("cannot encode the request: {e}"),
        })?;
        let answer = self
            .post_raw(addr, path, Bytes::from(body), timeout, MAX_BODY)
            .await?;
        rmp_serde::from_slice(&answer).map_err(|e| CallError::BadAnswer {
            addr: addr.to_string(),
            reason: e.to_string(),
        })
    }
}

/// An error with its causes, for logs and messages.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// openraft's view of the server port: a [`Peer`] per target server.
#[derive(Clone, Default)]
pub(crate) struct RaftTransport {
    client: RpcClient,
}

impl RaftTransport {
    pub(crate) fn new(client: RpcClient) -> RaftTransport {
        RaftTransport { client }
    }
}

impl RaftNetworkFactory<TypeConfig> for RaftTransport {
    type Network = Peer;

    async fn new_client(&mut self, target: u64, node: &ServerNode) -> Peer {
        Peer {
            target,
            addr: node.addr.clone(),
            client: self.client.clone(),
        }
    }
}

/// The connection to one other server.
pub(crate) struct Peer {
    target: u64,
    addr: String,
    client: RpcClient,
}

impl Peer {
    fn rpc_error(&self, action: RPCTypes, error: CallError) -> RPCError<TypeConfig> {
        match error {
            CallError::Timeout { after, .. } => RPCError::Timeout(Timeout {
                action,
                id: 0,
                target: self.target,
                timeout: after,
            }),
            CallError::Unreachable { .. } | CallError::Broken { .. } => {
                RPCError::Unreachable(Unreachable::from_string(error.to_string()))
            }
            other => RPCError::Network(NetworkError::new(&other)),
        }
    }

    async fn raft_call<Q: Serialize, A: DeserializeOwned>(
        &self,
        action: RPCTypes,
        path: &str,
        request: &Q,
        option: &RPCOption,
    ) -> Result<A, RPCError<TypeConfig>> {
        self.client
            .call(&self.addr, path, request, option.hard_ttl())
            .await
            .map_err(|e| self.rpc_error(action, e))
    }
}

impl Peer {
    /// A vote or pre-vote request (they differ only in the path).
    async fn ballot(
        &self,
        path: &str,
        rpc: &VoteRequest<TypeConfig>,
        option: &RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        let request = wire::VoteRequest::from_raft(rpc);
        let reply: wire::VoteReply = self
            .raft_call(RPCTypes::Vote, path, &request, option)
            .await?;
        Ok(reply.into_raft())
    }
}

/// The least time an append is given to be answered: far beyond any round
/// trip a Raft cluster is run over (Consul asks for under 50 ms between
/// servers), yet short enough that replication to a follower cut off
/// without a trace resumes soon after it comes back.
const MIN_APPEND_TIMEOUT: Duration = Duration::from_secs(2);

impl RaftNetworkV2<TypeConfig> for Peer {
    type SnapshotData = SnapshotData;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        let request = wire::AppendRequest::from_raft(&rpc)
            .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        // openraft offers one heartbeat interval per append (100 ms at
        // raft_multiplier 1); taken as the timeout, servers further apart
        // than that could never commit. Its heartbeat worker keeps its own
        // deadline, so only replication waits longer. A large entry (a
        // snapshot restore carries a whole state) needs longer still to
        // cross and be made durable: 100 ms more per MiB (at least 10 MB/s).
        let bytes: usize = request.entries.iter().map(|e| e.payload.len()).sum();
        let timeout = option.hard_ttl().max(MIN_APPEND_TIMEOUT)
            + Duration::from_millis((bytes as u64 >> 20) * 100);
        let reply: wire::AppendReply = self
            .client
            .call(&self.addr, paths::APPEND, &request, timeout)
            .await
            .map_err(|e| self.rpc_error(RPCTypes::AppendEntries, e))?;
        Ok(reply.into_raft())
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.ballot(paths::VOTE, &rpc, &option).await
    }

    async fn pre_vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.ballot(paths::PRE_VOTE, &rpc, &option).await
    }

    async fn full_snapshot(
        &mut self,
        vote: RaftVote,
        snapshot: RaftSnapshot,
        cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        _option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        let head = SnapshotHead::new(&vote, &snapshot.meta)
            .map_err(|e| StreamingError::Network(NetworkError::new(&e)))?;
        let body = super::snapshot_body(&head, &snapshot.snapshot)
            .map_err(|e| StreamingError::Network(NetworkError::new(&e)))?;
        // A whole state crosses here: give it time in proportion to its
        // size (at least 10 MB/s), never less than a minute.
        let timeout = Duration::from_secs(60 + (body.len() as u64 >> 20) / 10);
        let send = self
            .client
            .post_raw(&self.addr, paths::SNAPSHOT, body, timeout, MAX_BODY);
        let answer = tokio::select! {
            closed = cancel => return Err(StreamingError::Closed(closed)),
            answer = send => answer,
        };
        let answer = answer.map_err(|e| match e {
            CallError::Unreachable { .. } | CallError::Broken { .. } => {
                StreamingError::Unreachable(Unreachable::from_string(e.to_string()))
            }
            other => StreamingError::Network(NetworkError::new(&other)),
        })?;
        let vote: WireVote = rmp_serde::from_slice(&answer)
            .map_err(|e| StreamingError::Network(NetworkError::new(&e)))?;
        Ok(SnapshotResponse::new(vote.into_raft()))
    }

    async fn transfer_leader(
        &mut self,
        req: TransferLeaderRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<TransferLeaderResponse<TypeConfig>, RPCError<TypeConfig>> {
        let request = wire::TransferRequest {
            from: WireVote::from_raft(req.from_leader()),
            to: *req.to_node_id(),
            last: req.last_log_id().map(|id| {
                let id = crate::types::from_raft_log_id(id);
                (id.term, id.index)
            }),
        };
        let accepted: bool = self
            .raft_call(RPCTypes::TransferLeader, paths::TRANSFER, &request, &option)
            .await?;
        if accepted {
            Ok(Ok(()))
        } else {
            Err(RPCError::Network(NetworkError::new(
                &CallError::BadAnswer {
                    addr: self.addr.clone(),
                    reason: "transfer refused".to_string(),
                },
            )))
        }
    }
}
