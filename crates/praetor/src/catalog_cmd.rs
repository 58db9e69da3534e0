//! `praetor catalog datacenters|nodes|services`, with Consul's tables and
//! messages; also the small helpers the other discovery verbs share
//! (failures worded for the user, a runtime, Go's columnize and query
//! escaping).

use std::collections::BTreeMap;
use std::future::Future;

use hyper::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::cli::{CatalogCommand, CatalogDatacenters, CatalogNodes, CatalogServices, HttpFlags};
use crate::client::{escape_key, Answer, ApiClient};

/// A failure already worded for the user; the command exits 1.
pub(crate) struct Failure(pub String);

pub(crate) fn fail<T>(message: impl Into<String>) -> Result<T, Failure> {
    Err(Failure(message.into()))
}

/// Runs a command's future on a fresh runtime: its exit code, or 1 after
/// printing its failure to stderr.
pub(crate) fn block_on(work: impl Future<Output = Result<u8, Failure>>) -> u8 {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("Error starting: {e}");
            return 1;
        }
    };
    match runtime.block_on(work) {
        Ok(code) => code,
        Err(Failure(message)) => {
            eprintln!("{message}");
            1
        }
    }
}

pub(crate) fn connect(flags: &HttpFlags) -> Result<ApiClient, Failure> {
    ApiClient::new(flags).map_err(|e| Failure(format!("Error connecting to Consul agent: {e}")))
}

/// Sends a request and expects a 200, as Consul's API client does: any
/// other status is `Unexpected response code: <code> (<body>)`.
pub(crate) async fn call(
    client: &ApiClient,
    method: Method,
    path: &str,
    body: Vec<u8>,
) -> Result<Answer, String> {
    let answer = client.send(method, path, body).await?;
    if answer.status != StatusCode::OK {
        return Err(answer.unexpected());
    }
    Ok(answer)
}

/// GETs `path` and decodes its JSON body; also the `X-Consul-Index`.
pub(crate) async fn get_json<T: DeserializeOwned>(
    client: &ApiClient,
    path: &str,
) -> Result<(T, Option<u64>), String> {
    let answer = call(client, Method::GET, path, Vec::new()).await?;
    let value = serde_json::from_slice(&answer.body).map_err(|e| e.to_string())?;
    Ok((value, answer.index))
}

/// The agent's node name, from `/v1/agent/self` (Consul's CLI asks for it
/// first to check that the agent answers).
pub(crate) async fn node_name(client: &ApiClient) -> Result<String, Failure> {
    #[derive(Deserialize)]
    struct SelfInfo {
        #[serde(rename = "Config")]
        config: SelfConfig,
    }
    #[derive(Deserialize)]
    struct SelfConfig {
        #[serde(rename = "NodeName")]
        node_name: String,
    }
    let (info, _): (SelfInfo, _) = get_json(client, "/v1/agent/self")
        .await
        .map_err(|e| Failure(format!("Error querying Consul agent: {e}")))?;
    Ok(info.config.node_name)
}

/// Go's `url.QueryEscape`.
pub(crate) fn query_escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Appends `name=value` to a query string being built.
pub(crate) fn push_query(query: &mut String, name: &str, value: &str) {
    query.push(if query.is_empty() { '?' } else { '&' });
    query.push_str(name);
    query.push('=');
    query.push_str(&query_escape(value));
}

/// Parses repeated `key=value` flags as Consul's `FlagMapValue` does (the
/// last value for a key wins).
pub(crate) fn parse_map(
    flag: &str,
    values: &[String],
) -> Result<BTreeMap<String, String>, Failure> {
    let mut map = BTreeMap::new();
    for value in values {
        let Some((k, v)) = value.split_once('=') else {
            return fail(format!(
                "invalid value \"{value}\" for flag -{flag}: Missing \"=\" value in argument: {value}"
            ));
        };
        map.insert(k.to_owned(), v.to_owned());
    }
    Ok(map)
}

/// `ryanuber/columnize` as Consul configures it: each column padded to its
/// widest cell, two spaces between columns, the last column unpadded,
/// cells trimmed.
pub(crate) fn columnize(rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = Vec::new();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            let width = cell.trim().chars().count();
            if i == widths.len() {
                widths.push(width);
            } else if widths[i] < width {
                widths[i] = width;
            }
        }
    }
    let mut lines = Vec::with_capacity(rows.len());
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            let cell = cell.trim();
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(cell);
                let pad = widths[i] - cell.chars().count();
                line.extend(std::iter::repeat_n(' ', pad + 2));
            }
        }
        lines.push(line);
    }
    lines.join("\n")
}

/// Refuses positional arguments, in Consul's words.
pub(crate) fn no_arguments(args: &[String]) -> Result<(), Failure> {
    if args.is_empty() {
        Ok(())
    } else {
        fail(format!(
            "Too many arguments (expected 0, got {})",
            args.len()
        ))
    }
}

fn node_meta_query(query: &mut String, meta: &BTreeMap<String, String>) {
    for (k, v) in meta {
        push_query(query, "node-meta", &format!("{k}:{v}"));
    }
}

pub fn run(command: CatalogCommand) -> u8 {
    block_on(async {
        match command {
            CatalogCommand::Datacenters(c) => datacenters(c).await,
            CatalogCommand::Nodes(c) => nodes(c).await,
            CatalogCommand::Services(c) => services(c).await,
        }
    })
}

async fn datacenters(c: CatalogDatacenters) -> Result<u8, Failure> {
    no_arguments(&c.args)?;
    let client = connect(&c.http)?;
    let (dcs, _): (Vec<String>, _) = get_json(&client, "/v1/catalog/datacenters")
        .await
        .map_err(|e| Failure(format!("Error listing datacenters: {e}")))?;
    for dc in dcs {
        println!("{dc}");
    }
    Ok(0)
}

/// A node as `/v1/catalog/nodes` and `/v1/catalog/service/:name` show it.
#[derive(Deserialize)]
struct NodeRow {
    #[serde(rename = "ID", default)]
    id: String,
    #[serde(rename = "Node", default)]
    node: String,
    #[serde(rename = "Address", default)]
    address: String,
    #[serde(rename = "Datacenter", default)]
    datacenter: String,
    #[serde(rename = "TaggedAddresses", default)]
    tagged_addresses: Option<BTreeMap<String, String>>,
    #[serde(rename = "Meta", alias = "NodeMeta", default)]
    meta: Option<BTreeMap<String, String>>,
}

/// Consul's `mapToKV`: `k=v` pairs sorted by key.
fn map_to_kv(map: &Option<BTreeMap<String, String>>, joiner: &str) -> String {
    map.iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(joiner)
}

async fn nodes(c: CatalogNodes) -> Result<u8, Failure> {
    let meta = parse_map("node-meta", &c.node_meta)?;
    no_arguments(&c.args)?;
    let client = connect(&c.http)?;
    let mut query = String::new();
    if !c.near.is_empty() {
        push_query(&mut query, "near", &c.near);
    }
    node_meta_query(&mut query, &meta);
    if !c.filter.is_empty() {
        push_query(&mut query, "filter", &c.filter);
    }
    let nodes: Vec<NodeRow> = if c.service.is_empty() {
        let (nodes, _): (Option<Vec<NodeRow>>, _) =
            get_json(&client, &format!("/v1/catalog/nodes{query}"))
                .await
                .map_err(|e| Failure(format!("Error listing nodes: {e}")))?;
        nodes.unwrap_or_default()
    } else {
        let path = format!(
            "/v1/catalog/service/{}{query}",
            escape_key(&c.service).replace('/', "%2F")
        );
        let (nodes, _): (Option<Vec<NodeRow>>, _) = get_json(&client, &path)
            .await
            .map_err(|e| Failure(format!("Error listing nodes for service: {e}")))?;
        nodes.unwrap_or_default()
    };
    if nodes.is_empty() {
        eprintln!("No nodes match the given query - try expanding your search.");
        return Ok(0);
    }
    let mut rows = Vec::with_capacity(nodes.len() + 1);
    if c.detailed {
        rows.push(
            ["Node", "ID", "Address", "DC", "TaggedAddresses", "Meta"]
                .map(str::to_owned)
                .to_vec(),
        );
    } else {
        rows.push(["Node", "ID", "Address", "DC"].map(str::to_owned).to_vec());
    }
    for node in nodes {
        if c.detailed {
            rows.push(vec![
                node.node,
                node.id,
                node.address,
                node.datacenter,
                map_to_kv(&node.tagged_addresses, ", "),
                map_to_kv(&node.meta, ", "),
            ]);
        } else {
            // Only the first group of the ID, as Consul shortens it.
            let id = match node.id.find('-') {
                Some(i) if i > 0 => node.id[..i].to_owned(),
                _ => node.id,
            };
            rows.push(vec![node.node, id, node.address, node.datacenter]);
        }
    }
    println!("{}", columnize(&rows));
    Ok(0)
}

#[derive(Deserialize)]
struct NodeServices {
    #[serde(rename = "Services", default)]
    services: Option<BTreeMap<String, NodeService>>,
}

#[derive(Deserialize)]
struct NodeService {
    #[serde(rename = "Service", default)]
    service: String,
    #[serde(rename = "Tags", default)]
    tags: Option<Vec<String>>,
}

/// `/v1/catalog/services`: each service's tags.
type ServiceTags = BTreeMap<String, Option<Vec<String>>>;

async fn services(c: CatalogServices) -> Result<u8, Failure> {
    let meta = parse_map("node-meta", &c.node_meta)?;
    no_arguments(&c.args)?;
    let client = connect(&c.http)?;
    let mut query = String::new();
    node_meta_query(&mut query, &meta);
    let services: BTreeMap<String, Vec<String>> = if c.node.is_empty() {
        let (services, _): (Option<ServiceTags>, _) =
            get_json(&client, &format!("/v1/catalog/services{query}"))
                .await
                .map_err(|e| Failure(format!("Error listing services: {e}")))?;
        services
            .unwrap_or_default()
            .into_iter()
            .map(|(name, tags)| (name, tags.unwrap_or_default()))
            .collect()
    } else {
        let path = format!(
            "/v1/catalog/node/{}{query}",
            escape_key(&c.node).replace('/', "%2F")
        );
        let (node, _): (Option<NodeServices>, _) = get_json(&client, &path)
            .await
            .map_err(|e| Failure(format!("Error listing services for node: {e}")))?;
        let mut services: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for s in node
            .and_then(|n| n.services)
            .unwrap_or_default()
            .into_values()
        {
            services
                .entry(s.service)
                .or_default()
                .extend(s.tags.unwrap_or_default());
        }
        services
    };
    if services.is_empty() {
        eprintln!("No services match the given query - try expanding your search.");
        return Ok(0);
    }
    if c.tags {
        // Go's tabwriter (padding 6) and a trim of the whole text.
        let width = services
            .keys()
            .map(|s| s.chars().count())
            .max()
            .unwrap_or(0)
            + 6;
        let mut text = String::new();
        for (name, mut tags) in services {
            tags.sort();
            let pad = width - name.chars().count();
            text.push_str(&name);
            text.extend(std::iter::repeat_n(' ', pad));
            text.push_str(&tags.join(","));
            text.push('\n');
        }
        println!("{}", text.trim());
    } else {
        for name in services.keys() {
            println!("{name}");
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(cells: &[&str]) -> Vec<String> {
        cells.iter().map(|c| (*c).to_owned()).collect()
    }

    #[test]
    fn columnize_pads_all_but_the_last_column() {
        let text = columnize(&[
            row(&["Node", "ID", "DC"]),
            row(&["a-long-name", "1", "dc1"]),
        ]);
        assert_eq!(text, "Node         ID  DC\na-long-name  1   dc1");
    }

    #[test]
    fn query_escape_is_gos() {
        assert_eq!(query_escape("a b:c/d"), "a+b%3Ac%2Fd");
    }

    #[test]
    fn map_flags_need_an_equals_sign() {
        assert!(parse_map("meta", &["a=b=c".to_owned()]).is_ok_and(|m| m["a"] == "b=c"));
        assert!(parse_map("meta", &["ab".to_owned()]).is_err());
    }
}
