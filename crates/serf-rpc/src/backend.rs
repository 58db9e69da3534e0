//! What the RPC server needs from the agent behind it.
//!
//! [`crate::server::Server`] speaks the protocol; everything it answers
//! comes from a [`Backend`]. The agent (`praetor serf agent`) implements
//! this trait over its Serf instance; tests implement it over fixed data.
//!
//! Rules every implementation keeps:
//!
//! * Errors are plain strings: they go to the client unchanged and the Go
//!   CLI prints them after its own prefix (`Error joining the cluster: ...`),
//!   so they should read like Serf's own messages.
//! * The async methods may take as long as the operation takes (a join
//!   dials peers, a key operation waits for the cluster's answers); the
//!   server handles one request per connection at a time, as Serf does, so
//!   a slow call delays only that client.
//! * Methods are called from many connection tasks at once: `&self` and
//!   interior synchronisation.

use std::collections::BTreeMap;
use std::future::Future;

use tokio::sync::{broadcast, mpsc};

use crate::types::{
    Coordinate, KeyOp, KeyOutcome, LogLine, Member, QueryParams, QueryRecord, Stats, StreamEvent,
};

/// A query started over RPC: its results, and when it ends.
pub struct QueryStream {
    /// Acks and responses as they arrive. The backend may drop the sender
    /// once no more can come; the server still tells the client `done`
    /// only at the deadline, as Serf does (the Go CLI relies on that), and
    /// ignores records after it.
    pub records: mpsc::Receiver<QueryRecord>,
    /// The query's deadline (Serf: the start plus the query's timeout).
    pub deadline: tokio::time::Instant,
}

/// The agent behind the RPC server.
pub trait Backend: Send + Sync + 'static {
    /// Every known member, in any order, including this node and members
    /// that left or failed and are not yet reaped (`members`,
    /// `members-filtered`; the server applies the filters).
    fn members(&self) -> Vec<Member>;

    /// Joins the cluster through `addrs` (`host`, `host:port`, `[v6]:port`);
    /// answers how many of them were contacted. With `replay`, user events
    /// from before the join are delivered too.
    fn join(
        &self,
        addrs: Vec<String>,
        replay: bool,
    ) -> impl Future<Output = Result<u32, String>> + Send;

    /// Leaves the cluster gracefully. The server answers the client and
    /// then calls [`Backend::shutdown`].
    fn leave(&self) -> impl Future<Output = Result<(), String>> + Send;

    /// Called once the answer to `leave` has been written: the agent should
    /// now stop (the Go agent exits after a `serf leave`).
    fn shutdown(&self);

    /// Marks a failed member as left; with `prune`, forgets it at once.
    fn force_leave(
        &self,
        node: String,
        prune: bool,
    ) -> impl Future<Output = Result<(), String>> + Send;

    /// Broadcasts a user event.
    fn user_event(
        &self,
        name: String,
        payload: Vec<u8>,
        coalesce: bool,
    ) -> impl Future<Output = Result<(), String>> + Send;

    /// Changes this node's tags: first removes the keys in `delete`, then
    /// sets every pair in `set` (so a key in both ends up set), then
    /// gossips the new tags. Atomic with respect to other calls.
    fn update_tags(
        &self,
        set: BTreeMap<String, String>,
        delete: Vec<String>,
    ) -> impl Future<Output = Result<(), String>> + Send;

    /// Starts a query. An error (bad filter, payload too large) is returned
    /// to the client before any record.
    fn query(
        &self,
        params: QueryParams,
    ) -> impl Future<Output = Result<QueryStream, String>> + Send;

    /// A feed of member events, user events and received queries, from now
    /// on. Each event stream subscribes once; a lagging subscriber loses
    /// events (the server logs it), as Serf drops them for slow clients.
    fn subscribe_events(&self) -> broadcast::Receiver<StreamEvent>;

    /// A feed of the agent's log lines, from now on, for `monitor`. The
    /// server filters by level.
    fn subscribe_logs(&self) -> broadcast::Receiver<LogLine>;

    /// Runs a key-ring operation across the cluster. The outcome carries
    /// the per-node answers even when it also carries an error.
    fn key_op(&self, op: KeyOp) -> impl Future<Output = KeyOutcome> + Send;

    /// `stats`: at least `agent.name` (the node's name, which `serf rtt`
    /// reads), and Serf's `runtime`, `serf`, `tags` and `event_handlers`
    /// sections where the agent has them.
    fn stats(&self) -> Stats;

    /// The cached network coordinate of `node`, `None` if there is none.
    fn coordinate(&self, node: &str) -> Option<Coordinate>;
}
