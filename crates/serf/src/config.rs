//! Serf's tunables, with the Go library's defaults.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::member::Member;
use crate::tags::Tags;

/// Oldest Serf protocol we speak.
pub const PROTOCOL_MIN: u8 = 2;
/// Newest Serf protocol we speak.
pub const PROTOCOL_MAX: u8 = 5;
/// Largest user event Serf accepts no matter the configuration.
pub const USER_EVENT_SANE_LIMIT: usize = 9 * 1024;

#[derive(Debug, Clone)]
pub struct Config {
    /// The gossip layer's configuration; its `name` is our node name.
    pub memberlist: gossip::Config,
    pub tags: Tags,
    /// Serf protocol version (advertised as the delegate version).
    pub protocol_version: u8,
    /// How long to wait for a leave (or forced leave) to be gossiped.
    pub broadcast_timeout: Duration,
    /// Extra time after leaving for the news to spread.
    pub leave_propagate_delay: Duration,
    /// User events remembered for de-duplication (Lamport slots).
    pub event_buffer: usize,
    /// Queries remembered for de-duplication (Lamport slots).
    pub query_buffer: usize,
    pub reap_interval: Duration,
    /// Join/leave intents about unknown nodes are kept this long.
    pub recent_intent_timeout: Duration,
    pub reconnect_interval: Duration,
    /// Failed members are forgotten after this long.
    pub reconnect_timeout: Duration,
    /// Picks a member's own timeout in place of `reconnect_timeout` (for a
    /// failed member) or `tombstone_timeout` (for a left one), as Go Serf's
    /// `ReconnectTimeoutOverride` does; Consul uses it to honour the
    /// timeout a client advertises in its tags.
    pub reconnect_timeout_override: Option<ReconnectTimeoutOverride>,
    pub queue_check_interval: Duration,
    pub queue_depth_warning: usize,
    pub max_queue_depth: usize,
    /// When non-zero, the queue limit is `max(min_queue_depth, 2 * members)`.
    pub min_queue_depth: usize,
    /// Left members are forgotten after this long.
    pub tombstone_timeout: Duration,
    pub flap_timeout: Duration,
    /// Default query timeout = gossip interval × this × ceil(log10(n+1)).
    pub query_timeout_mult: u32,
    pub query_response_size_limit: usize,
    pub query_size_limit: usize,
    pub enable_name_conflict_resolution: bool,
    pub disable_coordinates: bool,
    pub user_event_size_limit: usize,
}

/// A member's reap timeout given the pool's: a pure function of the
/// member (its tags, usually), so reaping stays deterministic.
#[derive(Clone)]
pub struct ReconnectTimeoutOverride(Arc<MemberTimeout>);

/// A member and the pool's timeout in, the member's timeout out.
type MemberTimeout = dyn Fn(&Member, Duration) -> Duration + Send + Sync;

impl ReconnectTimeoutOverride {
    pub fn new(f: impl Fn(&Member, Duration) -> Duration + Send + Sync + 'static) -> Self {
        ReconnectTimeoutOverride(Arc::new(f))
    }

    /// The timeout for `member` when the pool's is `timeout`.
    pub fn timeout(&self, member: &Member, timeout: Duration) -> Duration {
        (self.0)(member, timeout)
    }
}

impl fmt::Debug for ReconnectTimeoutOverride {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ReconnectTimeoutOverride(..)")
    }
}

impl Config {
    /// Serf's defaults over the given gossip configuration.
    pub fn new(memberlist: gossip::Config) -> Config {
        Config {
            memberlist,
            tags: Tags::new(),
            protocol_version: 4,
            broadcast_timeout: Duration::from_secs(5),
            leave_propagate_delay: Duration::from_secs(1),
            event_buffer: 512,
            query_buffer: 512,
            reap_interval: Duration::from_secs(15),
            recent_intent_timeout: Duration::from_secs(5 * 60),
            reconnect_interval: Duration::from_secs(30),
            reconnect_timeout: Duration::from_secs(24 * 3600),
            reconnect_timeout_override: None,
            queue_check_interval: Duration::from_secs(30),
            queue_depth_warning: 128,
            max_queue_depth: 4096,
            min_queue_depth: 0,
            tombstone_timeout: Duration::from_secs(24 * 3600),
            flap_timeout: Duration::from_secs(60),
            query_timeout_mult: 16,
            query_response_size_limit: 1024,
            query_size_limit: 1024,
            enable_name_conflict_resolution: true,
            disable_coordinates: false,
            user_event_size_limit: 512,
        }
    }

    pub fn name(&self) -> &str {
        &self.memberlist.name
    }
}
