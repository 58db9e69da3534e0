//! The way in to a running [`AgentNode`] for whoever drives it: the Serf
//! RPC port here, and the Consul agent's LAN pool. Commands go to the
//! node's task as closures; reads come from what it published.

use std::sync::Arc;

use gossip::shell::RunnerHandle;
use serf::Member;
use tokio::sync::oneshot;

use crate::backend::resolve_with_port;
use crate::node::{AgentNode, Published};

/// A running node: its runner and the state it publishes.
#[derive(Clone)]
pub struct NodeHandle {
    pub runner: Arc<RunnerHandle<AgentNode>>,
    pub published: Arc<Published>,
}

impl NodeHandle {
    /// Runs `f` on the node inside its task.
    pub async fn run<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut AgentNode, std::time::Instant) -> R + Send + 'static,
    ) -> Result<R, String> {
        self.runner
            .run(move |n, now, _| f(n, now))
            .await
            .map_err(|e| e.to_string())
    }

    /// Every member the node knows, as last published.
    pub fn members(&self) -> Vec<Member> {
        self.published
            .members
            .read()
            .map(|m| m.clone())
            .unwrap_or_default()
    }

    /// This node as a member.
    pub fn local_member(&self) -> Option<Member> {
        self.published.local.read().ok().and_then(|l| l.clone())
    }

    /// Joins the agents at `addrs` (`port` where an address names none).
    /// Succeeds when at least one was contacted; otherwise every reason.
    pub async fn join(&self, addrs: &[String], port: u16, replay: bool) -> Result<u32, String> {
        let addrs = addrs.to_vec();
        // Name resolution may block on the system resolver.
        let (resolved, mut errors) =
            tokio::task::spawn_blocking(move || resolve_with_port(&addrs, port))
                .await
                .map_err(|e| e.to_string())?;
        let (tx, rx) = oneshot::channel();
        self.run(move |n, now| n.join(now, &resolved, replay, tx))
            .await?;
        let (joined, errs) = rx.await.map_err(|_| "the agent stopped".to_string())?;
        errors.extend(errs);
        if joined == 0 && !errors.is_empty() {
            return Err(errors.join("; "));
        }
        Ok(joined as u32)
    }

    /// Leaves gracefully; returns once the leave has been gossiped.
    pub async fn leave(&self) -> Result<(), String> {
        let (tx, rx) = oneshot::channel();
        self.run(move |n, now| n.leave(now, tx)).await??;
        rx.await.map_err(|_| "the agent stopped".to_string())
    }

    /// Marks a failed member as left (and with `prune`, forgets it).
    pub async fn force_leave(&self, node: String, prune: bool) -> Result<(), String> {
        self.run(move |n, now| n.serf.force_leave(now, &node, prune))
            .await
    }

    /// Gossips a user event.
    pub async fn user_event(
        &self,
        name: String,
        payload: Vec<u8>,
        coalesce: bool,
    ) -> Result<(), String> {
        self.run(move |n, now| {
            n.serf
                .user_event(now, &name, &payload, coalesce)
                .map_err(|e| e.to_string())
        })
        .await?
    }
}
