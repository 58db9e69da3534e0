//! The server port (Consul's `:8300`): HTTP/2 without TLS, MessagePack
//! bodies, one `POST` path per message.
//!
//! | path | body | answer |
//! |---|---|---|
//! | `/raft/append` | [`wire::AppendRequest`] | [`wire::AppendReply`] |
//! | `/raft/vote`, `/raft/pre-vote` | [`wire::VoteRequest`] | [`wire::VoteReply`] |
//! | `/raft/snapshot` | snapshot head + state (below) | [`wire::WireVote`] |
//! | `/raft/transfer` | [`wire::TransferRequest`] | `bool` |
//! | `/rpc/write` | [`wire::WriteRequest`] | [`wire::WriteReply`] |
//! | `/rpc/read-index` | [`wire::ReadMode`] | [`wire::ReadIndexReply`] |
//! | `/rpc/hello` | [`wire::ServerInfo`] | [`wire::HelloReply`] |
//! | `/rpc/membership` | [`wire::MembershipRequest`] | [`wire::MembershipReply`] |
//! | `/rpc/configuration` | `()` | [`wire::ConfigurationReply`] |
//! | `/rpc/client-write` | [`wire::WriteRequest`] | [`wire::WriteReply`] |
//! | `/rpc/api` | [`wire::ApiRequest`] | [`wire::ApiReply`] |
//! | `/rpc/node-state` | node name | [`wire::NodeStateReply`] |
//! | `/rpc/dc-read` | [`wire::DcRead`] | [`wire::DcReadReply`] |
//! | `/rpc/dns-read` | [`wire::DnsRead`] | [`wire::DnsRows`] |
//!
//! `/rpc/write` is one server's write to the leader; `/rpc/client-write`
//! is a client agent's write to any server, which finds the leader itself.
//! `/rpc/api` carries a client agent's HTTP API calls and `/rpc/dns-read`
//! the catalog reads of its DNS interface to a server's
//! [`server::ForwardedCalls`]; `/rpc/dc-read` is a server of another
//! datacenter reading this one's catalog.
//!
//! A snapshot install's body is a 4-byte big-endian length, that many
//! bytes of [`wire::SnapshotHead`], then the state store's snapshot bytes;
//! HTTP/2 carries it as a stream of DATA frames under flow control, so a
//! large state moves in chunks without blocking the connection's other
//! streams (heartbeats keep flowing beside it).
//!
//! Every request is answered `200` with a MessagePack body, `400` with a
//! text reason for a body that does not decode, or `404`.

pub(crate) mod client;
pub mod server;
pub mod wire;

use bytes::Bytes;

pub use client::{CallError, RpcClient};
use wire::{SnapshotHead, WireError};

const CONTENT_TYPE: &str = "application/msgpack";
/// The largest request or answer other than a snapshot.
const MAX_BODY: usize = 256 << 20;
/// The largest snapshot install accepted.
const MAX_SNAPSHOT: usize = 8 << 30;

pub mod paths {
    pub const APPEND: &str = "/raft/append";
    pub const VOTE: &str = "/raft/vote";
    pub const PRE_VOTE: &str = "/raft/pre-vote";
    pub const SNAPSHOT: &str = "/raft/snapshot";
    pub const TRANSFER: &str = "/raft/transfer";
    pub const WRITE: &str = "/rpc/write";
    pub const READ_INDEX: &str = "/rpc/read-index";
    pub const HELLO: &str = "/rpc/hello";
    pub const MEMBERSHIP: &str = "/rpc/membership";
    pub const CONFIGURATION: &str = "/rpc/configuration";
    pub const CLIENT_WRITE: &str = "/rpc/client-write";
    pub const API: &str = "/rpc/api";
    pub const NODE_STATE: &str = "/rpc/node-state";
    pub const DC_READ: &str = "/rpc/dc-read";
    pub const DNS_READ: &str = "/rpc/dns-read";
}

fn snapshot_body(head: &SnapshotHead, state: &[u8]) -> Result<Bytes, WireError> {
    let head = rmp_serde::to_vec_named(head).map_err(|e| WireError(e.to_string()))?;
    let len = u32::try_from(head.len()).map_err(|_| WireError("snapshot head too big".into()))?;
    let mut body = Vec::with_capacity(4 + head.len() + state.len());
    body.extend_from_slice(&len.to_be_bytes());
    body.extend_from_slice(&head);
    body.extend_from_slice(state);
    Ok(Bytes::from(body))
}

fn split_snapshot_body(body: &[u8]) -> Result<(SnapshotHead, &[u8]), WireError> {
    let (len, rest) = body
        .split_first_chunk::<4>()
        .ok_or_else(|| WireError("snapshot body shorter than its length".into()))?;
    let len = u32::from_be_bytes(*len) as usize;
    if rest.len() < len {
        return Err(WireError(format!(
            "snapshot head of {len} bytes in a body of {}",
            rest.len()
        )));
    }
    let (head, state) = rest.split_at(len);
    let head = rmp_serde::from_slice(head).map_err(|e| WireError(e.to_string()))?;
    Ok((head, state))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_bodies_split_back_and_truncation_is_an_error() {
        let head = SnapshotHead {
            vote: wire::WireVote {
                term: 2,
                node: 1,
                committed: true,
            },
            meta: vec![1, 2, 3],
        };
        let body = snapshot_body(&head, b"state").unwrap();
        let (back, state) = split_snapshot_body(&body).unwrap();
        assert_eq!(back.vote, head.vote);
        assert_eq!(back.meta, head.meta);
        assert_eq!(state, b"state");
        for cut in 0..body.len() - 5 {
            assert!(split_snapshot_body(&body[..cut]).is_err(), "cut at {cut}");
        }
    }
}
