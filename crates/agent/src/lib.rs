//! The praetor agent: its configuration, the write path that turns requests
//! into state-store `Command`s, and its lifecycle.

mod agent;
pub mod config;
mod local_log;
mod tombstone_reaper;

pub use agent::{Agent, AgentError, CONSUL_COMPATIBLE_VERSION, PRAETOR_VERSION};
pub use local_log::LocalLog;
pub use tombstone_reaper::TombstoneReaper;
