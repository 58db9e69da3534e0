//! `praetor serf agent`: a Serf agent built on the sans-IO [`serf::Serf`]
//! core. Reads Serf's flags and JSON config files, runs event handler
//! scripts, keeps the snapshot and keyring files, and serves Serf's RPC
//! protocol so the `serf` CLI works against it unchanged.

pub mod agent;
pub mod backend;
pub mod config;
pub mod handle;
pub mod handlers;
pub mod logs;
pub mod node;

pub use agent::{run, AgentError};
pub use config::AgentConfig;
