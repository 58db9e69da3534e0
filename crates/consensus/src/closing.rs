//! Knowing when storage is really closed.
//!
//! openraft's tasks let go of the log and the state machine some time after
//! `Raft::shutdown` returns (the state machine worker holds a log reader;
//! a snapshot build may still be writing). A server must not be reopened on
//! the same directory before then, so each store carries an [`OpenGuard`]
//! and the node waits on the matching [`Closed`].

use tokio::sync::oneshot;

/// Held by a store for as long as any handle on it exists.
pub(crate) struct OpenGuard {
    _sender: oneshot::Sender<()>,
}

/// Resolves once the matching [`OpenGuard`] is dropped.
pub(crate) struct Closed {
    receiver: oneshot::Receiver<()>,
}

pub(crate) fn guard() -> (OpenGuard, Closed) {
    let (sender, receiver) = oneshot::channel();
    (OpenGuard { _sender: sender }, Closed { receiver })
}

impl Closed {
    pub(crate) async fn wait(self) {
        // Nothing is ever sent: the error is the guard being dropped.
        let _ = self.receiver.await;
    }
}
