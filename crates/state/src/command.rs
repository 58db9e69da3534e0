//! `Command`s are the only way the store changes: each one is a log entry
//! that the FSM applies at the index the log gave it.

use serde::{Deserialize, Serialize};

use crate::catalog::{CatalogError, Deregistration, Registration};
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
}

/// What applying a command produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The `true`/`false` a KV write answers with (false: a CAS lost).
    Kv(bool),
    Txn(TxnOutcome),
    Reaped,
    /// A catalog write: done, or refused with Consul's reason.
    Catalog(Result<(), CatalogError>),
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
            _ => return None,
        })
    }

    /// Whether the verb only reads; a transaction of reads needs no log entry.
    pub fn is_read(self) -> bool {
        matches!(
            self,
            KvVerb::Get | KvVerb::GetTree | KvVerb::CheckIndex | KvVerb::CheckNotExists
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
        }
    }
}
