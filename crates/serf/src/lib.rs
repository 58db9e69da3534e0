//! Serf on top of the gossip core: decentralised membership with tags,
//! join/leave intents ordered by Lamport clocks, user events and queries
//! de-duplicated in Lamport windows, network coordinates carried on acks,
//! internal queries for name conflicts and key rotation. Byte-compatible
//! with Serf 0.9.4.
//!
//! [`Serf`] is sans-IO like [`gossip::Memberlist`], which it wraps: feed it
//! packets, streams and timeouts; drain transmits and [`Event`]s.

pub mod clock;
pub mod coalesce;
pub mod config;
pub mod event;
mod internal;
pub mod member;
pub mod messages;
mod serf;
pub mod snapshot;
mod state;
pub mod tags;

pub use clock::{LamportClock, LamportTime};
pub use coalesce::Coalescer;
pub use config::{Config, ReconnectTimeoutOverride};
pub use event::{Event, IncomingQuery, MemberEventKind, QueryRecord};
pub use internal::{KeyOp, KeySummary};
pub use member::{Member, MemberStatus};
pub use serf::{QueryParams, Serf, SerfError};
pub use state::Lifecycle;
pub use tags::Tags;
