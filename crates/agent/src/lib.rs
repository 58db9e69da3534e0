//! The praetor agent: its configuration, the write path that turns requests
//! into state-store `Command`s, and its lifecycle.

pub mod config;
