//! `?near=`: sorting catalog and health answers by estimated round trip
//! from one node, as Consul's `sortNodesByDistanceFrom` does.

use agent::Agent;
use state::Snapshot;

use crate::params::Params;

/// The node `?near=` names, `_agent` being this agent's own.
pub fn source(agent: &Agent, params: &Params) -> Option<String> {
    match params.get("near")? {
        "" => None,
        "_agent" => Some(agent.config().node_name.clone()),
        node => Some(node.to_owned()),
    }
}

/// Orders `items` nearest first from `source`, by their nodes'
/// coordinates. Nodes without one count as infinitely far (last, in their
/// order). A source without a coordinate leaves the order alone, as
/// Consul does. Coordinates are read without watching, also as Consul:
/// a move does not wake a blocking query.
pub fn sort<T>(
    snap: &Snapshot,
    source: Option<&str>,
    items: &mut Vec<T>,
    node_of: impl Fn(&T) -> &str,
) {
    let Some(from) = source.and_then(|node| snap.coordinate(node, "")) else {
        return;
    };
    let mut keyed: Vec<(f64, T)> = items
        .drain(..)
        .map(|item| {
            let rtt = snap
                .coordinate(node_of(&item), "")
                .and_then(|to| agent::coordinates::estimated_rtt(&from.coord, &to.coord))
                .unwrap_or(f64::INFINITY);
            (rtt, item)
        })
        .collect();
    keyed.sort_by(|a, b| a.0.total_cmp(&b.0));
    items.extend(keyed.into_iter().map(|(_, item)| item));
}
