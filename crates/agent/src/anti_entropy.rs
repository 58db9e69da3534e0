//! Anti-entropy: make the catalog's record of this node match the agent's
//! local state. It runs after every local change and periodically in full,
//! and it only ever writes through the agent's write path, so the same code
//! serves a dev agent (local log), a server (Raft) and, later, a client
//! (RPC to a server).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use state::{
    Command, Deregistration, HealthCheck, Outcome, Registration, ServiceInstance, WatchSet,
};

use crate::agent::{Agent, SERF_CHECK_ID};

/// How often a full sync runs on a cluster of up to 128 nodes (Consul's
/// `aeInterval`); larger clusters scale it up.
pub const FULL_SYNC_INTERVAL: Duration = Duration::from_secs(60);

/// Consul's scale-up of the full-sync interval: ×(1 + log2(n/128)) beyond
/// 128 nodes, so a big cluster does not hammer its servers.
pub fn full_sync_interval(nodes: usize) -> Duration {
    if nodes <= 128 {
        return FULL_SYNC_INTERVAL;
    }
    let factor = 1.0 + (nodes as f64 / 128.0).log2().ceil();
    FULL_SYNC_INTERVAL.mul_f64(factor)
}

/// Whether the catalog already holds `local` as this node's service (the
/// local copy names no node; the catalog's does).
fn same_service(local: &ServiceInstance, remote: &ServiceInstance) -> bool {
    ServiceInstance {
        node: remote.node.clone(),
        ..local.clone()
    }
    .same_content(remote)
}

/// What the catalog holds of this node: its services and checks by ID.
pub type CatalogView = (
    BTreeMap<String, Arc<ServiceInstance>>,
    BTreeMap<String, Arc<HealthCheck>>,
);

/// The catalog's services and checks of `node`: from this agent's store on
/// a server, from a server on a client.
async fn catalog_view(agent: &Agent, node: &str) -> Result<CatalogView, String> {
    if let Some(router) = agent.router() {
        let view = router.node_state(node).await.map_err(|e| e.to_string())?;
        return Ok((
            view.services
                .into_iter()
                .map(|s| (s.id.clone(), Arc::new(s)))
                .collect(),
            view.checks
                .into_iter()
                .map(|c| (c.check_id.clone(), Arc::new(c)))
                .collect(),
        ));
    }
    let snapshot = agent.store().snapshot();
    let services = snapshot
        .node_services(node, &mut WatchSet::new())
        .1
        .map(|(_, s)| s.into_iter().map(|s| (s.id.clone(), s)).collect())
        .unwrap_or_default();
    let checks = snapshot
        .node_checks(node, &mut WatchSet::new())
        .1
        .into_iter()
        .map(|c| (c.check_id.clone(), c))
        .collect();
    Ok((services, checks))
}

/// How soon a failed pass is tried again.
const SYNC_RETRY: Duration = Duration::from_secs(3);

/// One full pass: read the catalog, push every difference between local
/// state and it. Fails, changing nothing, when the catalog cannot be read.
pub async fn sync(agent: &Agent) -> Result<(), String> {
    sync_with(agent, None).await.map(|_| ())
}

/// One pass against `known`, what the last pass left in the catalog, or
/// (with `None`) against the catalog read afresh. Returns what the catalog
/// holds afterwards when every write took, `None` when one did not (the
/// next pass reads the catalog again) — Consul's in-sync tracking: a change
/// costs its writes only, and the periodic full pass catches anything done
/// to the catalog behind the agent's back.
async fn sync_with(
    agent: &Agent,
    known: Option<CatalogView>,
) -> Result<Option<CatalogView>, String> {
    let node = agent.config().node_name.clone();
    let (remote_services, remote_checks) = match known {
        Some(view) => view,
        None => catalog_view(agent, &node).await?,
    };
    // A service with `enable_tag_override` takes the tags someone set in
    // the catalog instead of pushing its own back.
    agent.update_local(|local| {
        let adopted: Vec<(String, Vec<String>)> = local
            .services()
            .iter()
            .filter(|(_, s)| s.instance.enable_tag_override)
            .filter_map(|(id, _)| Some((id.clone(), remote_services.get(id)?.tags.clone())))
            .collect();
        for (id, tags) in adopted {
            local.adopt_service_tags(&id, tags);
        }
    });
    let (services, checks) = {
        let local = agent.local_state();
        (local.services().clone(), local.checks().clone())
    };
    let mut all_took = true;

    for id in remote_services.keys() {
        let owned_by_server = agent.config().server && id == "consul";
        if !services.contains_key(id) && !owned_by_server {
            all_took &= write(agent, deregister(&node, Some(id.clone()), None)).await;
        }
    }
    for id in remote_checks.keys() {
        if !checks.contains_key(id) && id != SERF_CHECK_ID {
            all_took &= write(agent, deregister(&node, None, Some(id.clone()))).await;
        }
    }
    for (id, local) in &services {
        let in_sync = remote_services
            .get(id)
            .is_some_and(|remote| same_service(&local.instance, remote));
        let service_checks: Vec<HealthCheck> = checks
            .values()
            .filter(|c| c.check.service_id == *id)
            .map(|c| c.check.clone())
            .collect();
        let checks_in_sync = service_checks.iter().all(|c| {
            remote_checks
                .get(&c.check_id)
                .is_some_and(|r| c.same_content(r))
        });
        if !in_sync || !checks_in_sync {
            all_took &= write(
                agent,
                Command::Register(Box::new(Registration {
                    node: state::Node {
                        name: node.clone(),
                        ..state::Node::default()
                    },
                    skip_node_update: true,
                    service: Some(local.instance.clone()),
                    checks: service_checks,
                })),
            )
            .await;
        }
    }
    let node_checks: Vec<HealthCheck> = checks
        .values()
        .filter(|c| c.check.service_id.is_empty() || !services.contains_key(&c.check.service_id))
        .filter(|c| {
            !remote_checks
                .get(&c.check.check_id)
                .is_some_and(|r| c.check.same_content(r))
        })
        .map(|c| c.check.clone())
        .collect();
    if !node_checks.is_empty() {
        all_took &= write(
            agent,
            Command::Register(Box::new(Registration {
                node: state::Node {
                    name: node.clone(),
                    ..state::Node::default()
                },
                skip_node_update: true,
                service: None,
                checks: node_checks,
            })),
        )
        .await;
    }
    if !all_took {
        return Ok(None);
    }
    // The catalog now holds the local state, beside what the agent does
    // not own there (the server's `consul` service, `serfHealth`).
    let mut now_services: BTreeMap<String, Arc<ServiceInstance>> = remote_services
        .into_iter()
        .filter(|(id, _)| agent.config().server && id == "consul")
        .collect();
    now_services.extend(services.values().map(|s| {
        let instance = ServiceInstance {
            node: node.clone(),
            ..s.instance.clone()
        };
        (instance.id.clone(), Arc::new(instance))
    }));
    let mut now_checks: BTreeMap<String, Arc<HealthCheck>> = remote_checks
        .into_iter()
        .filter(|(id, _)| id == SERF_CHECK_ID)
        .collect();
    now_checks.extend(
        checks
            .values()
            .map(|c| (c.check.check_id.clone(), Arc::new(c.check.clone()))),
    );
    Ok(Some((now_services, now_checks)))
}

fn deregister(node: &str, service_id: Option<String>, check_id: Option<String>) -> Command {
    Command::Deregister(Deregistration {
        node: node.to_owned(),
        service_id,
        check_id,
    })
}

/// Applies one sync write; false when it did not take.
async fn write(agent: &Agent, command: Command) -> bool {
    match agent.apply(command).await {
        Ok((_, Outcome::Write(Err(error)))) => {
            tracing::warn!(%error, "anti-entropy: the catalog refused a sync");
            false
        }
        Err(error) => {
            tracing::warn!(%error, "anti-entropy: sync failed");
            false
        }
        Ok(_) => true,
    }
}

/// Runs until the agent stops: a sync after each local change, and a full
/// one every interval.
pub async fn run(agent: Arc<Agent>) {
    let mut synced_version = None;
    // What the last pass left in the catalog; `None` makes the next pass
    // a full one.
    let mut known: Option<CatalogView> = None;
    loop {
        let version = agent.local_state().version();
        let mut next = full_sync_interval(agent.lan().map_or(1, |lan| lan.members().len()));
        if synced_version != Some(version) {
            match sync_with(&agent, known.take()).await {
                Ok(after) => {
                    known = after;
                    synced_version = Some(version);
                }
                Err(error) => {
                    tracing::warn!(%error, "anti-entropy: cannot read the catalog, will retry");
                    next = SYNC_RETRY;
                }
            }
        }
        tokio::select! {
            _ = agent.local_changed() => {}
            _ = tokio::time::sleep(next) => {
                synced_version = None;
                known = None;
            }
            _ = agent.stopping() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::registrations::Source;
    use crate::service_definition::ServiceDefinition;

    /// A second pass over an unchanged agent writes nothing: local rows and
    /// catalog rows compare equal.
    #[tokio::test]
    async fn a_synced_agent_stays_synced() {
        let config = Config {
            node_name: "n1".into(),
            dev: true,
            ..Config::default()
        };
        let agent = Agent::new(config).unwrap();
        agent.register_self().await.unwrap();
        let definition: ServiceDefinition = crate::decode::from_value(serde_json::json!({
            "Name": "web", "Port": 80, "Tags": ["a"], "Address": "10.0.0.1",
            "Check": {"TTL": "30s"}
        }))
        .unwrap();
        agent.add_service(&definition, false, Source::Api).unwrap();
        sync(&agent).await.expect("a local catalog");
        let (_, found) = agent
            .store()
            .snapshot()
            .check_service_nodes("web", &mut WatchSet::new());
        assert_eq!(found.len(), 1);
        let index = agent.store().index();
        sync(&agent).await.expect("a local catalog");
        assert_eq!(
            agent.store().index(),
            index,
            "nothing to push the second time"
        );
    }

    /// Tags changed in the catalog stay there, and the agent adopts them,
    /// only for a service with `enable_tag_override`; others get their own
    /// tags pushed back.
    #[tokio::test]
    async fn tag_override_lets_the_catalog_tags_win() {
        let config = Config {
            node_name: "n1".into(),
            dev: true,
            ..Config::default()
        };
        let agent = Agent::new(config).unwrap();
        agent.register_self().await.unwrap();
        for (name, over) in [("web", true), ("db", false)] {
            let definition: ServiceDefinition = crate::decode::from_value(serde_json::json!({
                "Name": name, "Tags": ["mine"], "EnableTagOverride": over
            }))
            .unwrap();
            agent.add_service(&definition, false, Source::Api).unwrap();
        }
        sync(&agent).await.expect("a local catalog");
        for name in ["web", "db"] {
            let mut outside = (**agent
                .store()
                .snapshot()
                .node_services("n1", &mut WatchSet::new())
                .1
                .unwrap()
                .1
                .iter()
                .find(|s| s.id == name)
                .unwrap())
            .clone();
            outside.tags = vec!["theirs".into()];
            let registration = Registration {
                node: state::Node {
                    name: "n1".into(),
                    ..state::Node::default()
                },
                skip_node_update: true,
                service: Some(outside),
                checks: Vec::new(),
            };
            agent
                .apply(Command::Register(Box::new(registration)))
                .await
                .unwrap();
        }
        sync(&agent).await.expect("a local catalog");
        let tags_in_catalog = |name: &str| {
            agent
                .store()
                .snapshot()
                .node_services("n1", &mut WatchSet::new())
                .1
                .unwrap()
                .1
                .iter()
                .find(|s| s.id == name)
                .unwrap()
                .tags
                .clone()
        };
        assert_eq!(tags_in_catalog("web"), ["theirs"]);
        assert_eq!(
            agent.local_state().service("web").unwrap().instance.tags,
            ["theirs"]
        );
        assert_eq!(tags_in_catalog("db"), ["mine"]);
        assert_eq!(
            agent.local_state().service("db").unwrap().instance.tags,
            ["mine"]
        );
    }

    #[test]
    fn full_sync_interval_scales_past_128_nodes() {
        assert_eq!(full_sync_interval(10), Duration::from_secs(60));
        assert_eq!(full_sync_interval(128), Duration::from_secs(60));
        assert_eq!(full_sync_interval(256), Duration::from_secs(120));
        assert_eq!(full_sync_interval(1000), Duration::from_secs(240));
    }
}
