//! How Raft messages reach other servers.
//!
//! There is no transport yet: [`NoTransport`] reports every peer
//! unreachable, which is all a single-server cluster (and the dev agent)
//! ever needs. The server RPC transport (`:8300`) will be another
//! `RaftNetworkFactory` beside it, with its own wire messages built from
//! [`crate::codec`], so openraft's types never reach the wire.

use std::future::Future;

use openraft::errors::{RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::{RPCOption, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse,
};
use openraft::{OptionalSend, RaftNetworkV2};

use crate::types::{RaftSnapshot, RaftVote, ServerNode, SnapshotData, TypeConfig};

/// A network with no peers on it.
pub(crate) struct NoTransport;

/// A connection to a peer that cannot be reached.
pub(crate) struct NoPeer {
    target: u64,
}

impl NoPeer {
    fn unreachable(&self) -> Unreachable<TypeConfig> {
        Unreachable::from_string(format!(
            "no Raft transport: server {} cannot be reached",
            self.target
        ))
    }
}

impl RaftNetworkFactory<TypeConfig> for NoTransport {
    type Network = NoPeer;

    async fn new_client(&mut self, target: u64, _node: &ServerNode) -> NoPeer {
        NoPeer { target }
    }
}

impl RaftNetworkV2<TypeConfig> for NoPeer {
    type SnapshotData = SnapshotData;

    async fn append_entries(
        &mut self,
        _rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        Err(RPCError::Unreachable(self.unreachable()))
    }

    async fn vote(
        &mut self,
        _rpc: VoteRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        Err(RPCError::Unreachable(self.unreachable()))
    }

    async fn full_snapshot(
        &mut self,
        _vote: RaftVote,
        _snapshot: RaftSnapshot,
        _cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        _option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        Err(StreamingError::Unreachable(self.unreachable()))
    }
}
