//! The agent's machine: Serf plus what the agent adds around it: event
//! coalescing, the snapshot file, the keyring file, and the waiters of
//! commands issued through the RPC port. It runs on the gossip runner;
//! everything here happens on that one task.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use gossip::shell::Machine;
use gossip::swim::{StreamError, StreamId, Transmit};
use serf::snapshot::Snapshotter;
use serf::{Coalescer, Event, KeySummary, LamportTime, Member, QueryRecord, Serf};
use tokio::sync::{broadcast, mpsc, oneshot};

/// State the RPC port reads without waiting for the agent's task.
#[derive(Debug, Default)]
pub struct Published {
    pub members: RwLock<Vec<Member>>,
    pub stats: RwLock<std::collections::BTreeMap<String, String>>,
    pub coordinates: RwLock<HashMap<String, coordinate::Coordinate>>,
    pub local: RwLock<Option<Member>>,
}

/// Where a query's records go.
enum QueryWaiter {
    Stream(mpsc::Sender<QueryRecord>),
    Keys(KeySummary, Option<oneshot::Sender<KeySummary>>),
}

/// What the agent puts around Serf.
pub struct NodeParts {
    pub coalescer: Option<Coalescer>,
    pub snapshot: Option<Snapshotter>,
    /// Events after coalescing go here.
    pub events: broadcast::Sender<Event>,
    pub keyring_file: Option<PathBuf>,
    pub tags_file: Option<PathBuf>,
    pub published: Arc<Published>,
}

pub struct AgentNode {
    pub serf: Serf,
    coalescer: Option<Coalescer>,
    snapshot: Option<Snapshotter>,
    /// Events after coalescing, for handlers and RPC streams.
    events: broadcast::Sender<Event>,
    join_waiters: HashMap<u64, oneshot::Sender<(usize, Vec<String>)>>,
    queries: HashMap<LamportTime, QueryWaiter>,
    leave_waiters: Vec<oneshot::Sender<()>>,
    keyring_file: Option<PathBuf>,
    tags_file: Option<PathBuf>,
    published: Arc<Published>,
    members_dirty: bool,
    next_publish: Instant,
    stop: bool,
}

/// How often stats and coordinates are republished.
const PUBLISH_EVERY: Duration = Duration::from_millis(250);

impl AgentNode {
    pub fn new(serf: Serf, parts: NodeParts, now: Instant) -> AgentNode {
        let mut n = AgentNode {
            serf,
            coalescer: parts.coalescer,
            snapshot: parts.snapshot,
            events: parts.events,
            join_waiters: HashMap::new(),
            queries: HashMap::new(),
            leave_waiters: Vec::new(),
            keyring_file: parts.keyring_file,
            tags_file: parts.tags_file,
            published: parts.published,
            members_dirty: true,
            next_publish: now,
            stop: false,
        };
        n.publish(now);
        n
    }

    /// Starts a join; the waiter gets (contacted, errors).
    pub fn join(
        &mut self,
        now: Instant,
        addrs: &[SocketAddr],
        replay: bool,
        reply: oneshot::Sender<(usize, Vec<String>)>,
    ) {
        if addrs.is_empty() {
            let _ = reply.send((0, Vec::new()));
            return;
        }
        match self.serf.join(now, addrs, !replay) {
            Ok(id) => {
                self.join_waiters.insert(id, reply);
            }
            Err(e) => {
                let _ = reply.send((0, vec![e.to_string()]));
            }
        }
    }

    /// Starts a graceful leave; the waiter hears when it is complete.
    pub fn leave(&mut self, now: Instant, reply: oneshot::Sender<()>) -> Result<(), String> {
        if let Some(s) = self.snapshot.as_mut() {
            if let Err(e) = s.leave(now) {
                tracing::error!(error = %e, "serf: failed to record leave in snapshot");
            }
        }
        match self.serf.leave(now) {
            Ok(()) if self.serf.lifecycle() == serf::Lifecycle::Left => {
                let _ = reply.send(());
                Ok(())
            }
            Ok(()) => {
                self.leave_waiters.push(reply);
                Ok(())
            }
            Err(e) => Err(e.to_string()),
        }
    }

    /// Starts a query whose records go to `tx` (closed when it is done).
    pub fn query(
        &mut self,
        now: Instant,
        name: &str,
        payload: &[u8],
        params: &serf::QueryParams,
        tx: mpsc::Sender<QueryRecord>,
    ) -> Result<Duration, String> {
        let t = self
            .serf
            .query(now, name, payload, params)
            .map_err(|e| e.to_string())?;
        self.queries.insert(t, QueryWaiter::Stream(tx));
        Ok(if params.timeout.is_zero() {
            self.serf.default_query_timeout()
        } else {
            params.timeout
        })
    }

    /// Starts a key query whose summary goes to `reply` once every node
    /// answered or the query timed out; each answer is relayed through
    /// `relay_factor` other members.
    pub fn key_query(
        &mut self,
        now: Instant,
        op: serf::KeyOp,
        key: Option<&str>,
        relay_factor: u8,
        reply: oneshot::Sender<KeySummary>,
    ) -> Result<(), String> {
        let n = self.serf.num_nodes();
        let t = self.serf.key_query(now, op, key, relay_factor)?;
        self.queries
            .insert(t, QueryWaiter::Keys(KeySummary::new(n), Some(reply)));
        Ok(())
    }

    /// Replaces our tags: written to the tags file first (if any), then
    /// gossiped.
    pub fn set_tags(&mut self, now: Instant, tags: serf::Tags) -> Result<(), String> {
        if let Some(path) = &self.tags_file {
            crate::config::write_tags_file(path, &tags)
                .map_err(|e| format!("Failed to write tags file: {e}"))?;
        }
        self.serf.set_tags(now, tags).map_err(|e| e.to_string())?;
        self.members_dirty = true;
        Ok(())
    }

    /// Asks the runner to stop after this input.
    pub fn request_stop(&mut self) {
        self.stop = true;
    }

    fn dispatch(&mut self, now: Instant, e: Event) {
        match e {
            Event::Member { .. } | Event::User { .. } | Event::Query(_) => {
                if matches!(e, Event::Member { .. }) {
                    self.members_dirty = true;
                }
                if let Some(s) = self.snapshot.as_mut() {
                    let (clock, _, _) = self.serf.clocks();
                    if let Err(err) = s.record(now, &e, clock) {
                        tracing::error!(error = %err, "serf: snapshot write failed");
                    }
                }
                let e = match self.coalescer.as_mut() {
                    Some(c) => c.push(now, e),
                    None => Some(e),
                };
                if let Some(e) = e {
                    let _ = self.events.send(e);
                }
            }
            Event::QueryResult { ltime, record } => {
                let done = record == QueryRecord::Done;
                match self.queries.get_mut(&ltime) {
                    Some(QueryWaiter::Stream(tx)) if !done => {
                        let _ = tx.try_send(record);
                    }
                    Some(QueryWaiter::Keys(summary, reply)) => {
                        let complete = summary.add(&record) || done;
                        match reply.take() {
                            Some(r) if complete => {
                                let _ = r.send(summary.clone());
                            }
                            other => *reply = other,
                        }
                    }
                    _ => {}
                }
                if done {
                    self.queries.remove(&ltime);
                }
            }
            Event::JoinResult { id, joined, errors } => {
                if let Some(w) = self.join_waiters.remove(&id) {
                    let _ = w.send((joined, errors));
                }
            }
            Event::LeaveComplete { .. } => {
                for w in self.leave_waiters.drain(..) {
                    let _ = w.send(());
                }
            }
            Event::KeyringChanged { keys } => {
                if let Some(path) = &self.keyring_file {
                    if let Err(err) = crate::config::write_keyring_file(path, &keys) {
                        tracing::error!(error = %err, path = %path.display(), "serf: failed to write keyring file");
                    }
                }
            }
            Event::ConflictLost => {
                tracing::error!("serf: a majority of the cluster says another node owns our name; shutting down");
                self.stop = true;
            }
        }
    }

    fn publish(&mut self, now: Instant) {
        if self.members_dirty {
            self.members_dirty = false;
            if let Ok(mut m) = self.published.members.write() {
                *m = self.serf.members();
            }
            if let Ok(mut l) = self.published.local.write() {
                *l = self.serf.local_member().cloned();
            }
        }
        if now >= self.next_publish {
            self.next_publish = now + PUBLISH_EVERY;
            if let Ok(mut s) = self.published.stats.write() {
                *s = self.serf.stats();
            }
            if let Ok(mut c) = self.published.coordinates.write() {
                c.clear();
                for m in self.serf.members() {
                    if let Some(co) = self.serf.cached_coordinate(&m.name) {
                        c.insert(m.name.clone(), co.clone());
                    }
                }
            }
            if let Some(s) = self.snapshot.as_mut() {
                let (clock, _, _) = self.serf.clocks();
                let _ = s.update_clock(now, clock);
                let _ = s.tick(now);
            }
        }
    }

    /// Final flush (coalesced events, snapshot) before the process exits.
    pub fn close(&mut self) {
        if let Some(c) = self.coalescer.as_mut() {
            for e in c.flush_all() {
                let _ = self.events.send(e);
            }
        }
        if let Some(s) = self.snapshot.as_mut() {
            let _ = s.sync();
        }
    }
}

impl Machine for AgentNode {
    fn handle_packet(&mut self, now: Instant, from: SocketAddr, buf: &[u8]) {
        self.serf.handle_packet(now, from, buf);
    }

    fn handle_stream(&mut self, now: Instant, from: SocketAddr, request: &[u8]) -> Option<Vec<u8>> {
        self.serf.handle_stream(now, from, request)
    }

    fn handle_stream_reply(
        &mut self,
        now: Instant,
        id: StreamId,
        result: Result<Vec<u8>, StreamError>,
    ) {
        self.serf.handle_stream_reply(now, id, result);
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.serf.handle_timeout(now);
        if let Some(c) = self.coalescer.as_mut() {
            for e in c.flush_due(now) {
                let _ = self.events.send(e);
            }
        }
    }

    fn poll_transmit(&mut self) -> Option<Transmit> {
        self.serf.poll_transmit()
    }

    fn poll_timeout(&self) -> Instant {
        let mut t = self.serf.poll_timeout().min(self.next_publish);
        if let Some(c) = self.coalescer.as_ref().and_then(|c| c.poll_timeout()) {
            t = t.min(c);
        }
        t
    }

    fn tcp_timeout(&self) -> Duration {
        self.serf.memberlist().config().tcp_timeout
    }

    fn after_input(&mut self, now: Instant) {
        while let Some(e) = self.serf.poll_event() {
            self.dispatch(now, e);
        }
        self.publish(now);
    }

    fn finished(&self) -> bool {
        self.stop
    }
}
