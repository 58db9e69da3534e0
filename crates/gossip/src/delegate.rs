//! The hooks a layer above (Serf) plugs into the core. Every method has a
//! do-nothing default, so a bare membership node implements none.
//!
//! The delegate is passed by `&mut` into each `handle_*` call rather than
//! owned by the core: the layer above keeps its own state beside the core
//! and lends it for the duration of one input.

use std::time::Duration;

use crate::node::Node;

pub trait Delegate {
    /// Meta to advertise in our alive messages (at most `limit` bytes).
    fn node_meta(&mut self, _limit: usize) -> Vec<u8> {
        Vec::new()
    }
    /// A user message arrived (packet or stream).
    fn notify_msg(&mut self, _msg: &[u8]) {}
    /// Messages of the layer above to piggy-back on outgoing packets: each
    /// at most `limit` bytes plus `overhead` per message in total.
    fn broadcasts(&mut self, _overhead: usize, _limit: usize) -> Vec<Vec<u8>> {
        Vec::new()
    }
    /// Our user state for a push-pull exchange.
    fn local_state(&mut self, _join: bool) -> Vec<u8> {
        Vec::new()
    }
    /// A peer's user state from a push-pull exchange.
    fn merge_remote_state(&mut self, _buf: &[u8], _join: bool) {}
    /// Payload we put in acks (Serf: our coordinate).
    fn ack_payload(&mut self) -> Vec<u8> {
        Vec::new()
    }
    /// A probe of `node` was acked after `rtt` with `payload`.
    fn notify_ping_complete(&mut self, _node: &Node, _rtt: Duration, _payload: &[u8]) {}
    /// A node became alive (was unknown, dead or left).
    fn notify_join(&mut self, _node: &Node) {}
    /// A node is dead or left (see `node.state`).
    fn notify_leave(&mut self, _node: &Node) {}
    /// A live node's meta changed.
    fn notify_update(&mut self, _node: &Node) {}
    /// Someone else claims our name (or a known name) from another address.
    fn notify_conflict(&mut self, _existing: &Node, _other: &Node) {}
    /// Veto an alive message before it is applied.
    fn notify_alive(&mut self, _node: &Node) -> Result<(), String> {
        Ok(())
    }
    /// Veto a join's remote state before it is merged.
    fn notify_merge(&mut self, _nodes: &[Node]) -> Result<(), String> {
        Ok(())
    }
}

/// A delegate that hooks nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoDelegate;

impl Delegate for NoDelegate {}

/// A membership change, as [`Recorder`] keeps them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemberEvent {
    Join(Node),
    Leave(Node),
    Update(Node),
}

/// A delegate that records membership events and user messages and answers
/// nothing else: the simplest shell's delegate and the simulator's.
#[derive(Debug, Default, Clone)]
pub struct Recorder {
    pub events: Vec<MemberEvent>,
    pub messages: Vec<Vec<u8>>,
    /// Meta to advertise.
    pub meta: Vec<u8>,
}

impl Delegate for Recorder {
    fn node_meta(&mut self, limit: usize) -> Vec<u8> {
        let mut m = self.meta.clone();
        m.truncate(limit);
        m
    }
    fn notify_msg(&mut self, msg: &[u8]) {
        self.messages.push(msg.to_vec());
    }
    fn notify_join(&mut self, node: &Node) {
        self.events.push(MemberEvent::Join(node.clone()));
    }
    fn notify_leave(&mut self, node: &Node) {
        self.events.push(MemberEvent::Leave(node.clone()));
    }
    fn notify_update(&mut self, node: &Node) {
        self.events.push(MemberEvent::Update(node.clone()));
    }
}
