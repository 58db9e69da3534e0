//! `Command`s are the only way the store changes: each one is a log entry
//! that the FSM applies at the index the log gave it.

use serde::{Deserialize, Serialize};

use crate::catalog::{Deregistration, Registration, WriteError};
use crate::coordinate::NodeCoordinate;
use crate::prepared_query::PreparedQuery;
use crate::session::Session;
use crate::txn::TxnOutcome;
use crate::Index;

/// A change to the store, as replicated by the log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// One KV write from `/v1/kv` (set, cas, delete, delete-cas, delete-tree).
    Kv(KvOp),
    /// All-or-nothing operations from `/v1/txn`.
    Txn(Vec<TxnOp>),
    /// Forget tombstones at or below `up_to` (issued by the tombstone reaper).
    ReapTombstones { up_to: Index },
    /// `/v1/catalog/register` and the agent's anti-entropy.
    Register(Box<Registration>),
    /// `/v1/catalog/deregister` and the agent's anti-entropy.
    Deregister(Deregistration),
    /// `/v1/session/create` (the ID is chosen before the command is logged).
    SessionCreate(Box<Session>),
    /// `/v1/session/destroy` and TTL expiry: releases (or deletes) every
    /// key the session holds.
    SessionDestroy { id: String },
    /// `PUT /v1/snapshot`: replaces the whole state with snapshot bytes
    /// made by [`crate::Snapshot::to_bytes`] (checked before they are
    /// logged; bytes that still fail to decode are refused and change
    /// nothing). See [`crate::Store::apply`] for the indexes it leaves.
    Restore {
        #[serde(with = "serde_bytes")]
        state: Vec<u8>,
    },
    /// Consul's `Coordinate.Update`, batched: nodes' network coordinates.
    /// Updates for nodes not in the catalog, or with non-finite values,
    /// are skipped.
    CoordinateBatchUpdate(Vec<NodeCoordinate>),
    /// `POST /v1/query` and `PUT /v1/query/:id`: creates or replaces the
    /// query with this ID (chosen before the command is logged).
    PreparedQuerySet(Box<PreparedQuery>),
    /// `DELETE /v1/query/:id`.
    PreparedQueryDelete { id: String },
}

/// What applying a command produced (sent back to a forwarding server
/// over the server RPC, hence serde).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// The `true`/`false` a KV write answers with (false: a CAS lost).
    Kv(bool),
    /// A KV write refused outright (a lock naming no or an unknown
    /// session): Consul answers these with an error, not `false`.
    KvRefused(String),
    Txn(TxnOutcome),
    Reaped,
    /// A catalog, session or restore write: done, or refused with the
    /// reason (Consul's text where it has one).
    Write(Result<(), WriteError>),
}

/// One operation of a transaction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxnOp {
    Kv(KvOp),
}

/// Consul's KV verbs, for `/v1/kv` writes and `/v1/txn` operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KvVerb {
    Set,
    Cas,
    Get,
    GetTree,
    CheckIndex,
    CheckNotExists,
    Delete,
    DeleteCas,
    DeleteTree,
    /// Acquire the key's lock for a session (`?acquire`).
    Lock,
    /// Release the key's lock held by a session (`?release`).
    Unlock,
    /// Fail the transaction unless the session holds the key.
    CheckSession,
}

impl KvVerb {
    /// The verb as it is spelled on the wire (`"delete-tree"`, ...).
    pub fn parse(verb: &str) -> Option<KvVerb> {
        Some(match verb {
            "set" => KvVerb::Set,
            "cas" => KvVerb::Cas,
            "get" => KvVerb::Get,
            "get-tree" => KvVerb::GetTree,
            "check-index" => KvVerb::CheckIndex,
            "check-not-exists" => KvVerb::CheckNotExists,
            "delete" => KvVerb::Delete,
            "delete-cas" => KvVerb::DeleteCas,
            "delete-tree" => KvVerb::DeleteTree,
            "lock" => KvVerb::Lock,
            "unlock" => KvVerb::Unlock,
            "check-session" => KvVerb::CheckSession,
            _ => return None,
        })
    }

    /// Whether the verb only reads; a transaction of reads needs no log entry.
    pub fn is_read(self) -> bool {
        matches!(
            self,
            KvVerb::Get
                | KvVerb::GetTree
                | KvVerb::CheckIndex
                | KvVerb::CheckNotExists
                | KvVerb::CheckSession
        )
    }
}

/// One KV operation: the verb and the fields of the entry it names.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvOp {
    pub verb: KvVerb,
    pub key: String,
    #[serde(with = "serde_bytes")]
    pub value: Vec<u8>,
    pub flags: u64,
    /// The `ModifyIndex` a CAS or check compares against.
    pub index: Index,
    /// The session of a lock, unlock or session check.
    #[serde(default)]
    pub session: String,
}

impl KvOp {
    /// An operation with no value, flags or index.
    pub fn new(verb: KvVerb, key: impl Into<String>) -> KvOp {
        KvOp {
            verb,
            key: key.into(),
            value: Vec::new(),
            flags: 0,
            index: 0,
            session: String::new(),
        }
    }
}
