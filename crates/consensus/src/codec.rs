//! How openraft's entries and snapshot metadata become bytes, in a format of
//! our own: the log and the snapshot files must not change shape when
//! openraft's types do.
//!
//! # Entry payload (what the log stores after the record header)
//!
//! | byte 0 | rest |
//! |---|---|
//! | `1` blank (a new leader's first entry) | nothing |
//! | `2` command | a [`state::Command`] in MessagePack, fields by name |
//! | `3` membership | a membership in MessagePack, fields by name (below) |
//!
//! The entry's term and index are in the log record itself.
//!
//! A membership is `{configs: [[id, ...], ...], nodes: [{id, addr}, ...]}`:
//! one voter set, or two during a joint change, and every member (voters
//! and learners) with its server address.
//!
//! Fields by name cost a few bytes per entry and let a later version add a
//! field (with a default) without a format version bump.

use std::collections::{BTreeMap, BTreeSet};

use openraft::entry::RaftEntry as _;
use serde::{Deserialize, Serialize};

use crate::types::{
    from_raft_log_id, to_raft_log_id, EntryPayload, Membership, RaftEntry, Request, ServerNode,
    SnapshotMeta, StoredMembership,
};
use crate::wal::Entry;
use crate::LogId;

const BLANK: u8 = 1;
const COMMAND: u8 = 2;
const MEMBERSHIP: u8 = 3;

/// An entry or snapshot header that cannot be decoded: damage that passed
/// the checksum, or bytes from a newer version.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("entry {index}: empty payload")]
    Empty { index: u64 },
    #[error("entry {index}: unknown payload kind {kind}")]
    UnknownKind { index: u64, kind: u8 },
    #[error("entry {index}: {reason}")]
    Payload { index: u64, reason: String },
    #[error("cannot encode entry {index}: {reason}")]
    Encode { index: u64, reason: String },
    #[error("snapshot metadata: {0}")]
    SnapshotMeta(String),
}

#[derive(Serialize, Deserialize)]
struct MembershipRecord {
    configs: Vec<Vec<u64>>,
    nodes: Vec<NodeRecord>,
}

#[derive(Serialize, Deserialize)]
struct NodeRecord {
    id: u64,
    addr: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    uuid: String,
}

impl MembershipRecord {
    fn from_membership(membership: &Membership) -> MembershipRecord {
        MembershipRecord {
            configs: membership
                .get_joint_config()
                .iter()
                .map(|set| set.iter().copied().collect())
                .collect(),
            nodes: membership
                .nodes()
                .map(|(id, node)| NodeRecord {
                    id: *id,
                    addr: node.addr.clone(),
                    name: node.name.clone(),
                    uuid: node.uuid.clone(),
                })
                .collect(),
        }
    }

    fn into_membership(self) -> Result<Membership, String> {
        let configs: Vec<BTreeSet<u64>> = self
            .configs
            .into_iter()
            .map(|set| set.into_iter().collect())
            .collect();
        let nodes: BTreeMap<u64, ServerNode> = self
            .nodes
            .into_iter()
            .map(|n| {
                let node = ServerNode {
                    addr: n.addr,
                    name: n.name,
                    uuid: n.uuid,
                };
                (n.id, node)
            })
            .collect();
        Membership::new(configs, nodes).map_err(|e| e.to_string())
    }
}

/// Encodes an openraft entry as the log stores it.
pub(crate) fn encode_entry(entry: &RaftEntry) -> Result<Entry, CodecError> {
    let id = from_raft_log_id(&entry.log_id);
    let encode_error = |reason: String| CodecError::Encode {
        index: id.index,
        reason,
    };
    let mut payload = Vec::new();
    match &entry.payload {
        EntryPayload::Blank => payload.push(BLANK),
        EntryPayload::Normal(Request(command)) => {
            payload.push(COMMAND);
            rmp_serde::encode::write_named(&mut payload, command)
                .map_err(|e| encode_error(e.to_string()))?;
        }
        EntryPayload::Membership(membership) => {
            payload.push(MEMBERSHIP);
            let record = MembershipRecord::from_membership(membership);
            rmp_serde::encode::write_named(&mut payload, &record)
                .map_err(|e| encode_error(e.to_string()))?;
        }
    }
    Ok(Entry {
        index: id.index,
        term: id.term,
        payload,
    })
}

/// Decodes an entry the log returned.
pub(crate) fn decode_entry(entry: &Entry) -> Result<RaftEntry, CodecError> {
    let index = entry.index;
    let log_id = to_raft_log_id(entry.log_id());
    let (&kind, body) = entry
        .payload
        .split_first()
        .ok_or(CodecError::Empty { index })?;
    let payload_error = |reason: String| CodecError::Payload { index, reason };
    match kind {
        BLANK if body.is_empty() => Ok(RaftEntry::new_blank(log_id)),
        BLANK => Err(payload_error(format!(
            "blank entry carries {} bytes",
            body.len()
        ))),
        COMMAND => {
            let command = rmp_serde::from_slice(body).map_err(|e| payload_error(e.to_string()))?;
            Ok(RaftEntry::new_normal(log_id, Request(command)))
        }
        MEMBERSHIP => {
            let record: MembershipRecord =
                rmp_serde::from_slice(body).map_err(|e| payload_error(e.to_string()))?;
            let membership = record.into_membership().map_err(payload_error)?;
            Ok(RaftEntry::new_membership(log_id, membership))
        }
        kind => Err(CodecError::UnknownKind { index, kind }),
    }
}

#[derive(Serialize, Deserialize)]
struct SnapshotMetaRecord {
    last_log: Option<(u64, u64)>,
    membership_log: Option<(u64, u64)>,
    membership: MembershipRecord,
}

fn pair(id: &Option<crate::types::RaftLogId>) -> Option<(u64, u64)> {
    id.as_ref().map(|id| {
        let id = from_raft_log_id(id);
        (id.term, id.index)
    })
}

fn unpair(pair: Option<(u64, u64)>) -> Option<crate::types::RaftLogId> {
    pair.map(|(term, index)| to_raft_log_id(LogId { term, index }))
}

/// Encodes what a snapshot covers: its last log id and the membership in
/// force there.
pub(crate) fn encode_snapshot_meta(meta: &SnapshotMeta) -> Result<Vec<u8>, CodecError> {
    let record = SnapshotMetaRecord {
        last_log: pair(&meta.last_log_id),
        membership_log: pair(meta.last_membership.log_id()),
        membership: MembershipRecord::from_membership(meta.last_membership.membership()),
    };
    rmp_serde::to_vec_named(&record).map_err(|e| CodecError::SnapshotMeta(e.to_string()))
}

pub(crate) fn decode_snapshot_meta(bytes: &[u8]) -> Result<SnapshotMeta, CodecError> {
    let record: SnapshotMetaRecord =
        rmp_serde::from_slice(bytes).map_err(|e| CodecError::SnapshotMeta(e.to_string()))?;
    let membership = record
        .membership
        .into_membership()
        .map_err(CodecError::SnapshotMeta)?;
    Ok(SnapshotMeta {
        last_log_id: unpair(record.last_log),
        last_membership: StoredMembership::new(unpair(record.membership_log), membership),
    })
}

#[cfg(test)]
mod tests {
    use state::{KvOp, KvVerb};

    use super::*;

    fn log_id(term: u64, index: u64) -> crate::types::RaftLogId {
        to_raft_log_id(LogId { term, index })
    }

    fn two_voters_one_learner() -> Membership {
        let nodes: BTreeMap<u64, ServerNode> = [1, 2, 3]
            .into_iter()
            .map(|id| {
                let addr = format!("10.0.0.{id}:8300");
                let node = ServerNode {
                    addr,
                    name: format!("s{id}"),
                    uuid: format!("00000000-0000-0000-0000-00000000000{id}"),
                };
                (id, node)
            })
            .collect();
        Membership::new(vec![[1, 2].into_iter().collect()], nodes).unwrap()
    }

    #[test]
    fn every_payload_kind_round_trips() {
        let mut op = KvOp::new(KvVerb::Set, "a/b");
        op.value = b"\x00\xffvalue".to_vec();
        op.flags = 42;
        let entries = [
            RaftEntry::new_blank(log_id(1, 1)),
            RaftEntry::new_normal(log_id(1, 2), Request(state::Command::Kv(op))),
            RaftEntry::new_membership(log_id(3, 3), two_voters_one_learner()),
        ];
        for entry in entries {
            let stored = encode_entry(&entry).unwrap();
            assert_eq!(stored.log_id(), from_raft_log_id(&entry.log_id));
            assert_eq!(decode_entry(&stored).unwrap(), entry);
        }
    }

    #[test]
    fn damaged_payloads_are_refused() {
        let entry = |payload: Vec<u8>| Entry {
            index: 5,
            term: 1,
            payload,
        };
        assert!(matches!(
            decode_entry(&entry(vec![])),
            Err(CodecError::Empty { index: 5 })
        ));
        assert!(matches!(
            decode_entry(&entry(vec![0])),
            Err(CodecError::UnknownKind { kind: 0, .. })
        ));
        assert!(decode_entry(&entry(vec![BLANK, 0])).is_err());
        assert!(decode_entry(&entry(vec![COMMAND, 0xc1])).is_err());
        assert!(decode_entry(&entry(vec![MEMBERSHIP])).is_err());
        // A voter with no node entry is not a membership openraft accepts.
        let bad = MembershipRecord {
            configs: vec![vec![9]],
            nodes: vec![],
        };
        let mut payload = vec![MEMBERSHIP];
        rmp_serde::encode::write_named(&mut payload, &bad).unwrap();
        assert!(decode_entry(&entry(payload)).is_err());
    }

    #[test]
    fn snapshot_meta_round_trips() {
        let metas = [
            SnapshotMeta::default(),
            SnapshotMeta {
                last_log_id: Some(log_id(4, 90)),
                last_membership: StoredMembership::new(
                    Some(log_id(2, 7)),
                    two_voters_one_learner(),
                ),
            },
        ];
        for meta in metas {
            let bytes = encode_snapshot_meta(&meta).unwrap();
            assert_eq!(decode_snapshot_meta(&bytes).unwrap(), meta);
        }
        assert!(decode_snapshot_meta(b"\x93").is_err());
    }
}
