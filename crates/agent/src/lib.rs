//! The praetor agent: its configuration, the write path that turns requests
//! into state-store `Command`s, and its lifecycle.

mod agent;
pub mod anti_entropy;
pub mod checks;
pub mod config;
pub mod coordinates;
pub mod dc_reads;
pub mod decode;
pub mod event_wire;
pub mod events;
pub mod federation;
pub mod keyring;
pub mod lan;
pub mod leader;
/// Re-exported so the agent's users keep one path to it.
pub use go_duration;
mod local_log;
pub mod local_state;
pub mod persisted;
pub mod prepared_queries;
pub mod query_failover;
pub mod registrations;
pub mod router;
pub mod server;
pub mod service_definition;
pub mod sessions;
pub mod snapshot;
mod tombstone_reaper;

pub use agent::{
    random_uuid, Agent, AgentError, ReadConsistency, CONSUL_COMPATIBLE_VERSION, PRAETOR_VERSION,
    SERF_ALIVE_OUTPUT, SERF_CHECK_ID, SERF_CHECK_NAME,
};
pub use local_log::LocalLog;
pub use tombstone_reaper::TombstoneReaper;
