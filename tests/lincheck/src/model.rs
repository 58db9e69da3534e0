//! The sequential specification porcupine checks histories against: one
//! register per key, holding a value or nothing.
//!
//! Values are interned to small integers (0 = absent) so a model state is a
//! `u32`: cheap to clone, hash and compare in porcupine's cache.

use std::collections::BTreeMap;

use porcupine_rs::{Model, Operation};

/// An interned value; [`ABSENT`] is "no such key".
pub type ValueId = u32;
pub const ABSENT: ValueId = 0;

/// An interned key.
pub type KeyId = u32;

/// One operation with its observed output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KvOp {
    /// A read that returned `value`.
    Get { key: KeyId, value: ValueId },
    /// An unconditional write. A put always succeeds; one whose answer was
    /// lost is given a return time after every other operation, so it may be
    /// placed anywhere after its call, including "after everything" (which
    /// no read can tell from "never").
    Put { key: KeyId, value: ValueId },
    /// Compare-and-set: sets `value` iff the register holds `expected`.
    /// `ok` is the observed answer; `None` (unknown) accepts either, and the
    /// outcome is then the one the state at its linearization point implies.
    Cas {
        key: KeyId,
        expected: ValueId,
        value: ValueId,
        ok: Option<bool>,
    },
}

impl KvOp {
    pub fn key(&self) -> KeyId {
        match *self {
            KvOp::Get { key, .. } | KvOp::Put { key, .. } | KvOp::Cas { key, .. } => key,
        }
    }
}

/// A KV store seen as independent registers, one per key.
#[derive(Clone, Debug)]
pub struct KvRegisters;

impl Model for KvRegisters {
    type State = ValueId;
    type Op = KvOp;
    /// Index of the operation in the recorded history.
    type Metadata = usize;

    /// Keys are independent (P-compositionality): each key's sub-history is
    /// linearizable on its own iff the whole history is.
    fn partition_operations(history: &[Operation<Self>]) -> Vec<Vec<Operation<Self>>> {
        let mut by_key: BTreeMap<KeyId, Vec<Operation<Self>>> = BTreeMap::new();
        for op in history {
            by_key.entry(op.op.key()).or_default().push(op.clone());
        }
        by_key.into_values().collect()
    }

    fn init() -> ValueId {
        ABSENT
    }

    fn step(state: &ValueId, op: &KvOp) -> (bool, ValueId) {
        let current = *state;
        match *op {
            KvOp::Get { value, .. } => (value == current, current),
            KvOp::Put { value, .. } => (true, value),
            KvOp::Cas {
                expected,
                value,
                ok,
                ..
            } => {
                let applies = current == expected;
                match ok {
                    Some(true) => (applies, if applies { value } else { current }),
                    Some(false) => (!applies, current),
                    None => (true, if applies { value } else { current }),
                }
            }
        }
    }

    fn describe_operation(op: &KvOp) -> String {
        let v = |id: ValueId| {
            if id == ABSENT {
                "absent".to_string()
            } else {
                format!("v{id}")
            }
        };
        match *op {
            KvOp::Get { value, .. } => format!("get -> {}", v(value)),
            KvOp::Put { value, .. } => format!("put({})", v(value)),
            KvOp::Cas {
                expected,
                value,
                ok,
                ..
            } => {
                let out = match ok {
                    Some(true) => "ok",
                    Some(false) => "fail",
                    None => "?",
                };
                format!("cas({} -> {}) -> {out}", v(expected), v(value))
            }
        }
    }

    fn describe_state(state: &ValueId) -> String {
        if *state == ABSENT {
            "absent".to_string()
        } else {
            format!("v{state}")
        }
    }
}
