//! `praetor rtt`: the round trip between two nodes as their network
//! coordinates estimate it, worded as `consul rtt` words it.

use serde::Deserialize;

use crate::catalog_cmd::{block_on, connect, fail, get_json, node_name, Failure};
use crate::cli::RttArgs;
use crate::serf_cmd::output::go_quote;

const HELP: &str = "Usage: praetor rtt [options] node1 [node2]

  Estimates the round trip time between two nodes using Consul's network
  coordinate model of the cluster.

  At least one node name is required. If the second node name isn't given, it
  is set to the agent's node name. Note that these are node names as known to
  Consul as \"consul members\" would show, not IP addresses.

  By default, the two nodes are assumed to be nodes in the local datacenter
  and the LAN coordinates are used. If the -wan option is given, then the WAN
  coordinates are used, and the node names must be suffixed by a period and
  the datacenter (eg. \"myserver.dc1\").

  It is not possible to measure between LAN coordinates and WAN coordinates
  because they are maintained by independent Serf gossip areas, so they are
  not compatible.";

#[derive(Deserialize, Clone)]
#[serde(rename_all = "PascalCase")]
struct Coord {
    vec: Vec<f64>,
    adjustment: f64,
    height: f64,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Entry {
    node: String,
    #[serde(default)]
    segment: String,
    coord: Option<Coord>,
}

#[derive(Deserialize)]
struct DatacenterMap {
    #[serde(rename = "Datacenter")]
    datacenter: String,
    #[serde(rename = "AreaID")]
    area_id: String,
    #[serde(rename = "Coordinates")]
    coordinates: Vec<Entry>,
}

pub fn run(c: RttArgs) -> u8 {
    block_on(rtt(c))
}

async fn rtt(c: RttArgs) -> Result<u8, Failure> {
    let mut nodes = c.args.clone();
    if nodes.is_empty() || nodes.len() > 2 {
        return fail(format!("One or two node names must be specified\n\n{HELP}"));
    }
    let client = connect(&c.http)?;
    let (source, found) = if c.wan {
        if nodes.len() < 2 {
            let (name, dc) = agent_identity(&client).await?;
            nodes.push(format!("{name}.{dc}"));
        }
        ("WAN", wan_pair(&client, &nodes).await?)
    } else {
        if nodes.len() < 2 {
            let name = node_name(&client).await.map_err(|Failure(e)| {
                Failure(e.replace(
                    "Error querying Consul agent",
                    "Unable to look up agent info",
                ))
            })?;
            nodes.push(name);
        }
        ("LAN", lan_pair(&client, &nodes).await?)
    };
    let (a, b) = match found {
        (Some(a), Some(b)) => (a, b),
        (None, _) => {
            return fail(format!(
                "Could not find a coordinate for node {}",
                go_quote(&nodes[0])
            ))
        }
        (_, None) => {
            return fail(format!(
                "Could not find a coordinate for node {}",
                go_quote(&nodes[1])
            ))
        }
    };
    println!(
        "Estimated {} <-> {} rtt: {:.3} ms (using {source} coordinates)",
        nodes[0],
        nodes[1],
        millis(&a, &b)
    );
    Ok(0)
}

/// Serf's estimate in milliseconds, through a whole number of nanoseconds
/// as Go's `time.Duration` holds it.
fn millis(a: &Coord, b: &Coord) -> f64 {
    let squared: f64 = a
        .vec
        .iter()
        .zip(&b.vec)
        .map(|(x, y)| (x - y) * (x - y))
        .sum();
    let raw = squared.sqrt() + a.height + b.height;
    let adjusted = raw + a.adjustment + b.adjustment;
    let secs = if adjusted > 0.0 { adjusted } else { raw };
    let nanos = (secs * 1.0e9).trunc();
    nanos / 1.0e6
}

async fn agent_identity(client: &crate::client::ApiClient) -> Result<(String, String), Failure> {
    #[derive(Deserialize)]
    struct SelfInfo {
        #[serde(rename = "Config")]
        config: SelfConfig,
    }
    #[derive(Deserialize)]
    struct SelfConfig {
        #[serde(rename = "NodeName")]
        node_name: String,
        #[serde(rename = "Datacenter")]
        datacenter: String,
    }
    let (info, _): (SelfInfo, _) = get_json(client, "/v1/agent/self")
        .await
        .map_err(|e| Failure(format!("Unable to look up agent info: {e}")))?;
    Ok((info.config.node_name, info.config.datacenter))
}

type Pair = (Option<Coord>, Option<Coord>);

/// Both nodes' LAN coordinates, from one segment they share (the default
/// segment first).
async fn lan_pair(client: &crate::client::ApiClient, nodes: &[String]) -> Result<Pair, Failure> {
    let (entries, _): (Vec<Entry>, _) = get_json(client, "/v1/coordinate/nodes")
        .await
        .map_err(|e| Failure(format!("Error getting coordinates: {e}")))?;
    let of = |node: &str| -> Vec<(String, Coord)> {
        entries
            .iter()
            .filter(|e| e.node.eq_ignore_ascii_case(node))
            .filter_map(|e| Some((e.segment.clone(), e.coord.clone()?)))
            .collect()
    };
    let (first, second) = (of(&nodes[0]), of(&nodes[1]));
    let mut shared: Vec<(&String, &Coord, &Coord)> = first
        .iter()
        .filter_map(|(segment, a)| {
            let (_, b) = second.iter().find(|(s, _)| s == segment)?;
            Some((segment, a, b))
        })
        .collect();
    shared.sort_by_key(|(segment, _, _)| !segment.is_empty());
    Ok(match shared.first() {
        Some((_, a, b)) => (Some((*a).clone()), Some((*b).clone())),
        None => (
            first.first().map(|(_, c)| c.clone()),
            second.first().map(|(_, c)| c.clone()),
        ),
    })
}

/// Both servers' WAN coordinates, from the same area only.
async fn wan_pair(client: &crate::client::ApiClient, nodes: &[String]) -> Result<Pair, Failure> {
    let split = |name: &str| -> Option<(String, String)> {
        let parts: Vec<&str> = name.split('.').collect();
        match parts.as_slice() {
            [node, dc] => Some(((*node).to_owned(), (*dc).to_owned())),
            _ => None,
        }
    };
    let (Some((node1, dc1)), Some((node2, dc2))) = (split(&nodes[0]), split(&nodes[1])) else {
        return fail("Node names must be specified as <node name>.<datacenter> with -wan");
    };
    let (maps, _): (Vec<DatacenterMap>, _) =
        get_json(client, "/v1/coordinate/datacenters")
            .await
            .map_err(|e| Failure(format!("Error getting coordinates: {e}")))?;
    let (mut area1, mut area2) = (None::<&str>, None::<&str>);
    let (mut coord1, mut coord2) = (None, None);
    for map in &maps {
        for entry in &map.coordinates {
            if map.datacenter == dc1 && entry.node.eq_ignore_ascii_case(&node1) {
                area1 = Some(&map.area_id);
                coord1 = entry.coord.clone();
            }
            if map.datacenter == dc2 && entry.node.eq_ignore_ascii_case(&node2) {
                area2 = Some(&map.area_id);
                coord2 = entry.coord.clone();
            }
            if area1 == area2 && coord1.is_some() && coord2.is_some() {
                return Ok((coord1, coord2));
            }
        }
    }
    // Nothing shown across areas.
    Ok((None, None))
}
