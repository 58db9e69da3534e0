//! Serf's agent RPC ("IPC") protocol: what the `serf` CLI speaks to
//! `serf agent` on `127.0.0.1:7373`, both sides.
//!
//! * [`msgpack`]: the MessagePack codec with go-msgpack's encoding rules.
//! * [`protocol`]: the commands, headers and bodies, byte-compatible with
//!   the Go agent and client.
//! * [`server`]: a TCP server generic over a [`Backend`] (the agent).
//! * [`client`]: an async client, used by `praetor serf <command>`.
//!
//! ```no_run
//! # async fn demo() -> Result<(), serf_rpc::client::ClientError> {
//! use serf_rpc::client::{Client, ClientConfig};
//! let client = Client::connect(ClientConfig::new("127.0.0.1:7373")).await?;
//! for member in client.members().await? {
//!     println!("{} {}", member.name, member.status);
//! }
//! # Ok(()) }
//! ```

pub mod backend;
pub mod client;
pub mod filter;
pub mod msgpack;
pub mod protocol;
pub mod server;
pub mod testing;
pub mod types;
pub mod wire;

pub use backend::{Backend, QueryStream};
pub use client::{Client, ClientConfig, ClientError, Subscription};
pub use server::{Server, ServerConfig};
pub use types::*;
