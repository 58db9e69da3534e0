//! Linearizability testing of praetor's KV store (Consul's `/v1/kv`).
//!
//! [`run`] drives concurrent clients doing get/put/cas against one or more
//! agents and records a [`history::History`]; [`check`] checks it with
//! porcupine-rs against the [`model::KvRegisters`] model.

pub mod check;
pub mod history;
pub mod model;
pub mod run;
