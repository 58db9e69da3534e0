use crate::Index;

/// Why the store refused an operation. None of these change the store.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StateError {
    /// A command arrived with an index at or below one already applied; the
    /// log only moves forward, so applying it would rewrite history.
    #[error("index {given} is not after the last applied index {applied}")]
    IndexNotIncreasing { given: Index, applied: Index },
    /// Snapshot bytes that are not a state snapshot of a version we read.
    #[error("invalid state snapshot: {0}")]
    InvalidSnapshot(String),
}
