//! The leader's duty to the catalog: the LAN pool decides who is alive, and
//! the catalog must say the same. Every member has a node entry and a
//! `serfHealth` check, passing while gossip finds it alive and critical once
//! it fails (which destroys the sessions bound to it and frees their locks);
//! a member that leaves or is reaped loses its entry. Servers also carry the
//! `consul` service. Only the leader writes, on each member event and in a
//! periodic full pass that catches whatever an event missed (a leader change,
//! a lagging subscriber).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use consensus::Cluster;
use serf::{Event, Member, MemberEventKind, MemberStatus};
use state::{
    Command, Deregistration, HealthCheck, Node, Registration, ServiceInstance, Snapshot, WatchSet,
};
use tokio::sync::broadcast::error::RecvError;

use crate::agent::{Agent, SERF_ALIVE_OUTPUT, SERF_CHECK_ID, SERF_CHECK_NAME};
use crate::lan::{LanPool, ServerMeta};

/// What a failed member's `serfHealth` says.
pub const SERF_FAILED_OUTPUT: &str = "Agent not live or unreachable";
/// How often the leader compares the whole pool with the catalog.
const FULL_PASS_EVERY: Duration = Duration::from_secs(5);

/// The catalog entry a member should have: its node, `serfHealth` with
/// `status`, and for a server the `consul` service on its server port.
pub fn member_registration(
    node: Node,
    server_port: Option<u16>,
    status: &str,
    output: &str,
) -> Registration {
    let serf_health = HealthCheck {
        node: node.name.clone(),
        check_id: SERF_CHECK_ID.to_owned(),
        name: SERF_CHECK_NAME.to_owned(),
        status: status.to_owned(),
        output: output.to_owned(),
        ..HealthCheck::default()
    };
    let service = server_port.map(|port| ServiceInstance {
        id: "consul".to_owned(),
        service: "consul".to_owned(),
        port,
        ..ServiceInstance::default()
    });
    Registration {
        node,
        skip_node_update: false,
        service,
        checks: vec![serf_health],
    }
}

/// A member's node entry, with the tagged addresses Consul gives it.
pub fn member_node(name: &str, id: &str, address: &str, datacenter: &str) -> Node {
    let family = if address.contains(':') {
        "ipv6"
    } else {
        "ipv4"
    };
    Node {
        id: id.to_owned(),
        name: name.to_owned(),
        address: address.to_owned(),
        datacenter: datacenter.to_owned(),
        tagged_addresses: BTreeMap::from([
            ("lan".to_owned(), address.to_owned()),
            (format!("lan_{family}"), address.to_owned()),
            ("wan".to_owned(), address.to_owned()),
            (format!("wan_{family}"), address.to_owned()),
        ]),
        meta: BTreeMap::from([("consul-network-segment".to_owned(), String::new())]),
        ..Node::default()
    }
}

/// The write that brings the catalog in line with `member`, if any.
fn correction(snapshot: &Snapshot, member: &Member, datacenter: &str) -> Option<Command> {
    let status = match member.status {
        MemberStatus::Alive => "passing",
        MemberStatus::Failed => "critical",
        MemberStatus::Left => {
            return snapshot
                .node(&member.name)
                .map(|_| deregister(&member.name));
        }
        MemberStatus::Leaving | MemberStatus::None => return None,
    };
    let address = member.addr.to_string();
    let id = member.tags.get("id").cloned().unwrap_or_default();
    let server_port = ServerMeta::of(member).map(|s| s.addr.port());
    let mut ws = WatchSet::new();
    let current = snapshot.node(&member.name);
    let health = snapshot
        .node_checks(&member.name, &mut ws)
        .1
        .into_iter()
        .find(|c| c.check_id == SERF_CHECK_ID);
    let has_consul = server_port.is_none()
        || snapshot
            .node_services(&member.name, &mut ws)
            .1
            .is_some_and(|(_, services)| services.iter().any(|s| s.id == "consul"));
    let in_line = current.is_some_and(|n| n.address == address && n.id == id)
        && health.is_some_and(|h| h.status == status)
        && has_consul;
    if in_line {
        return None;
    }
    let output = if status == "passing" {
        SERF_ALIVE_OUTPUT
    } else {
        SERF_FAILED_OUTPUT
    };
    let node = member_node(&member.name, &id, &address, datacenter);
    Some(Command::Register(Box::new(member_registration(
        node,
        server_port,
        status,
        output,
    ))))
}

fn deregister(node: &str) -> Command {
    Command::Deregister(Deregistration {
        node: node.to_owned(),
        service_id: None,
        check_id: None,
    })
}

/// Nodes gossip once knew (they carry `serfHealth`) that the pool no
/// longer has: reaped while no leader was watching.
fn reaped(snapshot: &Snapshot, members: &BTreeSet<&str>) -> Vec<Command> {
    let mut ws = WatchSet::new();
    snapshot
        .nodes(&mut ws)
        .1
        .iter()
        .filter(|n| !members.contains(n.name.as_str()))
        .filter(|n| {
            snapshot
                .node_checks(&n.name, &mut ws)
                .1
                .iter()
                .any(|c| c.check_id == SERF_CHECK_ID)
        })
        .map(|n| deregister(&n.name))
        .collect()
}

async fn write(agent: &Agent, command: Command) {
    if let Err(error) = agent.apply(command).await {
        tracing::warn!(%error, "leader: could not reconcile a member into the catalog");
    }
}

/// Brings the catalog in line with `members`.
async fn reconcile(agent: &Agent, members: &[Member]) {
    let datacenter = agent.config().datacenter.clone();
    for member in members {
        let snapshot = agent.store().snapshot();
        if let Some(command) = correction(&snapshot, member, &datacenter) {
            write(agent, command).await;
        }
    }
}

/// Runs the leader's member reconciliation on this server until the pool
/// stops; it writes only while the server leads.
pub async fn reconcile_members(agent: Arc<Agent>, lan: Arc<LanPool>, cluster: Arc<Cluster>) {
    let mut events = lan.subscribe();
    let mut tick = tokio::time::interval(FULL_PASS_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            event = events.recv() => match event {
                Ok(Event::Member { kind, members }) if cluster.is_leader() => {
                    if kind == MemberEventKind::Reap {
                        for m in &members {
                            write(&agent, deregister(&m.name)).await;
                        }
                    } else {
                        reconcile(&agent, &members).await;
                    }
                }
                Ok(_) | Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => return,
            },
            _ = tick.tick() => {
                if !cluster.is_leader() {
                    continue;
                }
                let members = lan.members();
                reconcile(&agent, &members).await;
                let names: BTreeSet<&str> = members.iter().map(|m| m.name.as_str()).collect();
                let gone = reaped(&agent.store().snapshot(), &names);
                for command in gone {
                    write(&agent, command).await;
                }
            }
            _ = agent.stopping() => return,
        }
    }
}
