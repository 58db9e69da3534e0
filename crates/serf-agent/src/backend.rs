//! The RPC port's view of the agent: [`serf_rpc::Backend`] implemented by
//! sending closures to the agent's task (joins, events, queries, keys) or
//! reading what it published (members, stats, coordinates).

use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;

use gossip::shell::RunnerHandle;
use serf_rpc::{
    Backend, Coordinate, KeyOp, KeyOutcome, KeyResponse, LogLine, QueryEvent, QueryParams,
    QueryResponder, QueryStream, Stats, StreamEvent,
};
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use crate::handle::NodeHandle;
use crate::node::AgentNode;

/// Converts a core member to its RPC shape.
pub fn rpc_member(m: &serf::Member) -> serf_rpc::Member {
    serf_rpc::Member {
        name: m.name.clone(),
        addr: m.addr,
        port: m.port,
        tags: m.tags.clone(),
        status: serf_rpc::MemberStatus::parse(m.status.as_str()),
        protocol_min: m.vsn[0],
        protocol_max: m.vsn[1],
        protocol_cur: m.vsn[2],
        delegate_min: m.vsn[3],
        delegate_max: m.vsn[4],
        delegate_cur: m.vsn[5],
    }
}

/// Resolves join addresses the way Serf does: `host`, `host:port`, an IP
/// or `[v6]:port`; port 7946 when missing.
pub fn resolve(addrs: &[String]) -> (Vec<SocketAddr>, Vec<String>) {
    resolve_with_port(addrs, gossip::shell::DEFAULT_PORT)
}

/// [`resolve`] with `port` for addresses that name none.
pub fn resolve_with_port(addrs: &[String], port: u16) -> (Vec<SocketAddr>, Vec<String>) {
    let mut ok = Vec::new();
    let mut errors = Vec::new();
    for a in addrs {
        let target = if a.parse::<SocketAddr>().is_ok() {
            a.clone()
        } else if let Ok(ip) = a.parse::<std::net::IpAddr>() {
            SocketAddr::new(ip, port).to_string()
        } else {
            match a.rsplit_once(':') {
                Some((h, p)) if !h.contains(':') && p.parse::<u16>().is_ok() => a.clone(),
                _ => format!("{a}:{port}"),
            }
        };
        match target.to_socket_addrs().map(|mut it| it.next()) {
            Ok(Some(s)) => ok.push(s),
            Ok(None) => errors.push(format!("Failed to resolve {a}: no addresses")),
            Err(e) => errors.push(format!("Failed to resolve {a}: {e}")),
        }
    }
    (ok, errors)
}

/// Answers a query from an RPC client through the agent's task. The
/// checks Serf makes (deadline, size) happen here, so the answer never
/// waits on the agent's task.
struct Responder {
    runner: Arc<RunnerHandle<AgentNode>>,
    query: serf::IncomingQuery,
    limit: usize,
}

impl QueryResponder for Responder {
    fn respond(&self, payload: Vec<u8>) -> Result<(), String> {
        if std::time::Instant::now() > self.query.deadline {
            return Err("response is past the deadline".into());
        }
        let probe = serf::messages::Message::QueryResponse(serf::messages::QueryResponse {
            ltime: self.query.ltime,
            id: self.query.id,
            from: String::new(),
            flags: 0,
            payload: payload.clone(),
        });
        if serf::messages::encode(&probe).len() > self.limit {
            return Err(format!("response exceeds limit of {} bytes", self.limit));
        }
        let q = self.query.clone();
        self.runner
            .try_run(move |n, now, _| {
                if let Err(e) = n.serf.respond(now, &q, &payload) {
                    tracing::warn!(error = %e, query = %q.name, "serf: failed to respond to query");
                }
            })
            .map_err(|e| e.to_string())
    }
}

/// Turns core events into the RPC stream's events.
pub fn stream_event(
    runner: &Arc<RunnerHandle<AgentNode>>,
    response_limit: usize,
    e: &serf::Event,
) -> Option<StreamEvent> {
    Some(match e {
        serf::Event::Member { kind, members } => StreamEvent::Member {
            kind: serf_rpc::MemberEventKind::parse(kind.as_str())?,
            members: members.iter().map(rpc_member).collect(),
        },
        serf::Event::User {
            ltime,
            name,
            payload,
            coalesce,
        } => StreamEvent::User(serf_rpc::UserEvent {
            ltime: *ltime,
            name: name.clone(),
            payload: payload.clone(),
            coalesce: *coalesce,
        }),
        serf::Event::Query(q) => StreamEvent::Query(QueryEvent {
            ltime: q.ltime,
            name: q.name.clone(),
            payload: q.payload.clone(),
            deadline: tokio::time::Instant::from_std(q.deadline),
            responder: Arc::new(Responder {
                runner: runner.clone(),
                query: q.clone(),
                limit: response_limit,
            }),
        }),
        _ => return None,
    })
}

pub struct AgentBackend {
    pub node: NodeHandle,
    pub events: broadcast::Sender<StreamEvent>,
    pub logs: broadcast::Sender<LogLine>,
    /// Set when the agent should exit (after an RPC `leave`).
    pub stop: watch::Sender<bool>,
    pub agent_stats: BTreeMap<String, String>,
    pub event_handlers: Vec<String>,
}

impl Backend for AgentBackend {
    fn members(&self) -> Vec<serf_rpc::Member> {
        self.node.members().iter().map(rpc_member).collect()
    }

    async fn join(&self, addrs: Vec<String>, replay: bool) -> Result<u32, String> {
        self.node
            .join(&addrs, gossip::shell::DEFAULT_PORT, replay)
            .await
    }

    async fn leave(&self) -> Result<(), String> {
        self.node.leave().await
    }

    fn shutdown(&self) {
        let _ = self.stop.send(true);
    }

    async fn force_leave(&self, node: String, prune: bool) -> Result<(), String> {
        self.node.force_leave(node, prune).await
    }

    async fn user_event(
        &self,
        name: String,
        payload: Vec<u8>,
        coalesce: bool,
    ) -> Result<(), String> {
        self.node.user_event(name, payload, coalesce).await
    }

    async fn update_tags(
        &self,
        set: BTreeMap<String, String>,
        delete: Vec<String>,
    ) -> Result<(), String> {
        self.node
            .run(move |n, now| {
                let mut tags = n.serf.tags().clone();
                for k in &delete {
                    tags.remove(k);
                }
                tags.extend(set);
                n.set_tags(now, tags)
            })
            .await?
    }

    async fn query(&self, params: QueryParams) -> Result<QueryStream, String> {
        let (tx, rx) = mpsc::channel(4096);
        let qp = serf::QueryParams {
            filter_nodes: params.filter_nodes,
            filter_tags: params.filter_tags.into_iter().collect(),
            request_ack: params.request_ack,
            relay_factor: params.relay_factor,
            timeout: params.timeout,
        };
        let name = params.name;
        let payload = params.payload;
        let (tx2, rx2) = mpsc::channel(4096);
        let timeout = self
            .node
            .run(move |n, now| n.query(now, &name, &payload, &qp, tx2))
            .await??;
        // Translate the core's records into the RPC's.
        tokio::spawn(async move {
            let mut rx2 = rx2;
            while let Some(r) = rx2.recv().await {
                let rec = match r {
                    serf::QueryRecord::Ack { from } => serf_rpc::QueryRecord::Ack { from },
                    serf::QueryRecord::Response { from, payload } => {
                        serf_rpc::QueryRecord::Response { from, payload }
                    }
                    serf::QueryRecord::Done => break,
                };
                if tx.send(rec).await.is_err() {
                    break;
                }
            }
        });
        Ok(QueryStream {
            records: rx,
            deadline: tokio::time::Instant::now() + timeout,
        })
    }

    fn subscribe_events(&self) -> broadcast::Receiver<StreamEvent> {
        self.events.subscribe()
    }

    fn subscribe_logs(&self) -> broadcast::Receiver<LogLine> {
        self.logs.subscribe()
    }

    async fn key_op(&self, op: KeyOp) -> KeyOutcome {
        let (kop, key) = match op {
            KeyOp::Install(k) => (serf::KeyOp::Install, Some(k)),
            KeyOp::Use(k) => (serf::KeyOp::Use, Some(k)),
            KeyOp::Remove(k) => (serf::KeyOp::Remove, Some(k)),
            KeyOp::List => (serf::KeyOp::List, None),
        };
        let (tx, rx) = oneshot::channel();
        let started = self
            .node
            .run(move |n, now| n.key_query(now, kop, key.as_deref(), 0, tx))
            .await;
        let summary = match started {
            Ok(Ok(())) => rx.await.ok(),
            Ok(Err(e)) | Err(e) => {
                return KeyOutcome {
                    response: KeyResponse::default(),
                    error: Some(e),
                }
            }
        };
        let Some(s) = summary else {
            return KeyOutcome {
                response: KeyResponse::default(),
                error: Some("the agent stopped".into()),
            };
        };
        let count =
            |m: &BTreeMap<String, usize>| m.iter().map(|(k, v)| (k.clone(), *v as i64)).collect();
        KeyOutcome {
            error: s.error(),
            response: KeyResponse {
                messages: s.messages.clone(),
                keys: count(&s.keys),
                primary_keys: count(&s.primary_keys),
                num_nodes: s.num_nodes as i64,
                num_err: s.num_err as i64,
                num_resp: s.num_resp as i64,
            },
        }
    }

    fn stats(&self) -> Stats {
        let mut out = Stats::new();
        out.insert("agent".into(), self.agent_stats.clone());
        if let Ok(s) = self.node.published.stats.read() {
            out.insert("serf".into(), s.clone());
        }
        if let Ok(l) = self.node.published.local.read() {
            if let Some(m) = l.as_ref() {
                out.insert("tags".into(), m.tags.clone());
            }
        }
        // Serf lists each handler as "event:name" -> script.
        let handlers = self
            .event_handlers
            .iter()
            .flat_map(|h| crate::handlers::parse_event_script(h))
            .map(|s| (format!("{}:{}", s.filter.event, s.filter.name), s.script))
            .collect();
        out.insert("event_handlers".into(), handlers);
        let mut runtime = BTreeMap::new();
        runtime.insert("os".into(), std::env::consts::OS.into());
        // Go's names for the architectures.
        let arch = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            other => other,
        };
        runtime.insert("arch".into(), arch.into());
        runtime.insert("version".into(), env!("CARGO_PKG_VERSION").into());
        out.insert("runtime".into(), runtime);
        out
    }

    fn coordinate(&self, node: &str) -> Option<Coordinate> {
        self.node
            .published
            .coordinates
            .read()
            .ok()?
            .get(node)
            .cloned()
    }
}
