//! A [`Backend`] over a small in-memory cluster, for protocol tests and
//! the `fake_agent` example (which lets the real `serf` CLI talk to this
//! crate's server). It behaves like a Serf agent where that is cheap to
//! imitate: the agent sees its own user events and queries, tags change the
//! local member, key operations keep a key ring.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{broadcast, mpsc, Notify};

use crate::backend::{Backend, QueryStream};
use crate::types::{
    Coordinate, KeyOp, KeyOutcome, KeyResponse, LogLevel, LogLine, Member, MemberEventKind,
    MemberStatus, QueryEvent, QueryParams, QueryRecord, QueryResponder, Stats, StreamEvent,
    UserEvent,
};

/// Serf's query timeout for a small cluster, used when a query gives none.
pub const DEFAULT_QUERY_TIMEOUT: Duration = Duration::from_millis(500);

/// The fake cluster's state; tests may read and change it.
#[derive(Debug, Clone)]
pub struct FakeState {
    /// `members[0]` is this agent's node.
    pub members: Vec<Member>,
    pub coordinates: HashMap<String, Coordinate>,
    /// Installed keys; `primary` is one of them or empty.
    pub keys: Vec<String>,
    pub primary: String,
    /// Every call, as `command arg...`, for tests to check.
    pub calls: Vec<String>,
}

/// A fake agent.
pub struct FakeBackend {
    state: Mutex<FakeState>,
    events: broadcast::Sender<StreamEvent>,
    logs: broadcast::Sender<LogLine>,
    ltime: AtomicU64,
    shut_down: AtomicBool,
    shutdown_signal: Notify,
}

/// A two-node cluster: `local` (this agent, tagged `role=web`) and `peer`
/// (`role=db`), both alive, with coordinates 1 ms apart.
pub fn demo_members(local: &str) -> Vec<Member> {
    let member = |name: &str, last: u8, port: u16, role: &str| Member {
        name: name.to_owned(),
        addr: IpAddr::V4(Ipv4Addr::new(127, 0, 0, last)),
        port,
        tags: BTreeMap::from([("role".to_owned(), role.to_owned())]),
        status: MemberStatus::Alive,
        protocol_min: 1,
        protocol_max: 5,
        protocol_cur: 2,
        delegate_min: 2,
        delegate_max: 5,
        delegate_cur: 4,
    };
    vec![member(local, 1, 7946, "web"), member("peer", 2, 7947, "db")]
}

impl FakeBackend {
    pub fn new(members: Vec<Member>) -> FakeBackend {
        let (events, _) = broadcast::channel(1024);
        let (logs, _) = broadcast::channel(1024);
        let coordinates = members
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let c = Coordinate {
                    vec: vec![0.0005 * i as f64, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
                    error: 1.5,
                    adjustment: 0.0,
                    height: 1.0e-5,
                };
                (m.name.clone(), c)
            })
            .collect();
        FakeBackend {
            state: Mutex::new(FakeState {
                members,
                coordinates,
                keys: Vec::new(),
                primary: String::new(),
                calls: Vec::new(),
            }),
            events,
            logs,
            ltime: AtomicU64::new(0),
            shut_down: AtomicBool::new(false),
            shutdown_signal: Notify::new(),
        }
    }

    /// The state, locked (a poisoned lock is taken over: this is test code
    /// and the data stays usable).
    pub fn state(&self) -> MutexGuard<'_, FakeState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn local_name(&self) -> String {
        self.state()
            .members
            .first()
            .map(|m| m.name.clone())
            .unwrap_or_default()
    }

    fn record(&self, call: String) {
        self.state().calls.push(call);
    }

    /// Delivers an event to every event stream.
    pub fn publish(&self, event: StreamEvent) {
        let _ = self.events.send(event);
    }

    /// Publishes a member event for the named members.
    pub fn publish_member_event(&self, kind: MemberEventKind, names: &[&str]) {
        let members = self
            .state()
            .members
            .iter()
            .filter(|m| names.contains(&m.name.as_str()))
            .cloned()
            .collect();
        self.publish(StreamEvent::Member { kind, members });
    }

    /// Writes a log line to every monitor.
    pub fn log(&self, level: LogLevel, message: &str) {
        let _ = self.logs.send(LogLine {
            level,
            text: format!("[{}] {message}", level.as_str()),
        });
    }

    /// How many event streams are subscribed right now.
    pub fn event_subscribers(&self) -> usize {
        self.events.receiver_count()
    }

    pub fn log_subscribers(&self) -> usize {
        self.logs.receiver_count()
    }

    pub fn is_shut_down(&self) -> bool {
        self.shut_down.load(Ordering::SeqCst)
    }

    /// Resolves once `shutdown` was called (after a `leave`).
    pub async fn wait_shutdown(&self) {
        let notified = self.shutdown_signal.notified();
        if self.is_shut_down() {
            return;
        }
        notified.await;
    }

    fn key_outcome(&self, op: &KeyOp) -> KeyOutcome {
        let mut state = self.state();
        let local = state
            .members
            .first()
            .map(|m| m.name.clone())
            .unwrap_or_default();
        let mut response = KeyResponse {
            num_nodes: 1,
            num_resp: 1,
            ..Default::default()
        };
        let failure = match op {
            KeyOp::Install(key) => {
                if !state.keys.contains(key) {
                    state.keys.push(key.clone());
                }
                None
            }
            KeyOp::Use(key) => {
                if state.keys.contains(key) {
                    state.primary = key.clone();
                    None
                } else {
                    Some("Requested key is not in the keyring")
                }
            }
            KeyOp::Remove(key) => {
                if *key == state.primary {
                    Some("Removing the primary key is not allowed")
                } else {
                    state.keys.retain(|k| k != key);
                    None
                }
            }
            KeyOp::List => {
                for k in &state.keys {
                    response.keys.insert(k.clone(), 1);
                }
                if !state.primary.is_empty() {
                    response.primary_keys.insert(state.primary.clone(), 1);
                }
                None
            }
        };
        match failure {
            Some(message) => {
                response.num_err = 1;
                response.messages.insert(local, message.to_owned());
                KeyOutcome {
                    response,
                    error: Some("1/1 nodes reported failure".to_owned()),
                }
            }
            None => KeyOutcome {
                response,
                error: None,
            },
        }
    }
}

/// Responds on behalf of the fake's local node to a query it started.
struct LocalResponder {
    from: String,
    records: mpsc::Sender<QueryRecord>,
    responded: AtomicBool,
}

impl QueryResponder for LocalResponder {
    fn respond(&self, payload: Vec<u8>) -> Result<(), String> {
        if self.responded.swap(true, Ordering::SeqCst) {
            return Err("response already sent".to_owned());
        }
        self.records
            .try_send(QueryRecord::Response {
                from: self.from.clone(),
                payload,
            })
            .map_err(|_| "query is no longer running".to_owned())
    }
}

impl Backend for FakeBackend {
    fn members(&self) -> Vec<Member> {
        self.state().members.clone()
    }

    async fn join(&self, addrs: Vec<String>, replay: bool) -> Result<u32, String> {
        self.record(format!("join {} replay={replay}", addrs.join(",")));
        if addrs.iter().any(|a| a.starts_with("unreachable")) {
            return Err(format!(
                "1 error occurred:\n\t* Failed to join {}: dial tcp: i/o timeout\n\n",
                addrs.join(",")
            ));
        }
        u32::try_from(addrs.len()).map_err(|e| e.to_string())
    }

    async fn leave(&self) -> Result<(), String> {
        self.record("leave".to_owned());
        let mut state = self.state();
        if let Some(me) = state.members.first_mut() {
            me.status = MemberStatus::Left;
        }
        Ok(())
    }

    fn shutdown(&self) {
        self.shut_down.store(true, Ordering::SeqCst);
        self.shutdown_signal.notify_waiters();
    }

    async fn force_leave(&self, node: String, prune: bool) -> Result<(), String> {
        self.record(format!("force-leave {node} prune={prune}"));
        let mut state = self.state();
        let Some(i) = state.members.iter().position(|m| m.name == node) else {
            return Err(format!("node {node} not found"));
        };
        if prune {
            state.members.remove(i);
        } else {
            state.members[i].status = MemberStatus::Left;
        }
        Ok(())
    }

    async fn user_event(
        &self,
        name: String,
        payload: Vec<u8>,
        coalesce: bool,
    ) -> Result<(), String> {
        self.record(format!(
            "event {name} {} coalesce={coalesce}",
            String::from_utf8_lossy(&payload)
        ));
        if payload.len() > 512 {
            return Err("user event exceeds limit of 512 bytes".to_owned());
        }
        let ltime = self.ltime.fetch_add(1, Ordering::SeqCst) + 1;
        self.publish(StreamEvent::User(UserEvent {
            ltime,
            name,
            payload,
            coalesce,
        }));
        Ok(())
    }

    async fn update_tags(
        &self,
        set: BTreeMap<String, String>,
        delete: Vec<String>,
    ) -> Result<(), String> {
        self.record(format!("tags set={set:?} delete={delete:?}"));
        let updated = {
            let mut state = self.state();
            let Some(me) = state.members.first_mut() else {
                return Err("no local member".to_owned());
            };
            for key in &delete {
                me.tags.remove(key);
            }
            me.tags.extend(set);
            me.clone()
        };
        self.publish(StreamEvent::Member {
            kind: MemberEventKind::Update,
            members: vec![updated],
        });
        Ok(())
    }

    async fn query(&self, params: QueryParams) -> Result<QueryStream, String> {
        self.record(format!("query {}", params.name));
        if params.payload.len() > 1024 {
            return Err("query exceeds limit of 1024 bytes".to_owned());
        }
        let timeout = if params.timeout.is_zero() {
            DEFAULT_QUERY_TIMEOUT
        } else {
            params.timeout
        };
        let deadline = tokio::time::Instant::now() + timeout;
        let (tx, rx) = mpsc::channel(64);
        let local = self.local_name();
        let targets: Vec<Member> = self
            .members()
            .into_iter()
            .filter(|m| m.status == MemberStatus::Alive)
            .filter(|m| params.filter_nodes.is_empty() || params.filter_nodes.contains(&m.name))
            .filter(|m| {
                params
                    .filter_tags
                    .iter()
                    .all(|(k, v)| m.tags.get(k).is_some_and(|t| t == v))
            })
            .collect();
        for m in &targets {
            if params.request_ack {
                let _ = tx.try_send(QueryRecord::Ack {
                    from: m.name.clone(),
                });
            }
            if m.name != local {
                let _ = tx.try_send(QueryRecord::Response {
                    from: m.name.clone(),
                    payload: format!("{} from {}", params.name, m.name).into_bytes(),
                });
            }
        }
        if targets.iter().any(|m| m.name == local) {
            let ltime = self.ltime.fetch_add(1, Ordering::SeqCst) + 1;
            self.publish(StreamEvent::Query(QueryEvent {
                ltime,
                name: params.name.clone(),
                payload: params.payload.clone(),
                deadline,
                responder: Arc::new(LocalResponder {
                    from: local,
                    records: tx,
                    responded: AtomicBool::new(false),
                }),
            }));
        }
        Ok(QueryStream {
            records: rx,
            deadline,
        })
    }

    fn subscribe_events(&self) -> broadcast::Receiver<StreamEvent> {
        self.events.subscribe()
    }

    fn subscribe_logs(&self) -> broadcast::Receiver<LogLine> {
        self.logs.subscribe()
    }

    async fn key_op(&self, op: KeyOp) -> KeyOutcome {
        self.record(format!("key {op:?}"));
        self.key_outcome(&op)
    }

    fn stats(&self) -> Stats {
        let state = self.state();
        let mut stats = Stats::new();
        let local = state.members.first();
        stats.insert(
            "agent".to_owned(),
            BTreeMap::from([(
                "name".to_owned(),
                local.map(|m| m.name.clone()).unwrap_or_default(),
            )]),
        );
        stats.insert(
            "tags".to_owned(),
            local.map(|m| m.tags.clone()).unwrap_or_default(),
        );
        stats.insert(
            "serf".to_owned(),
            BTreeMap::from([
                ("members".to_owned(), state.members.len().to_string()),
                ("encrypted".to_owned(), (!state.keys.is_empty()).to_string()),
            ]),
        );
        stats.insert("event_handlers".to_owned(), BTreeMap::new());
        stats
    }

    fn coordinate(&self, node: &str) -> Option<Coordinate> {
        self.state().coordinates.get(node).cloned()
    }
}
