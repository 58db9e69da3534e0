//! Catalog rows in Consul's JSON shapes and field order.

use std::collections::BTreeMap;

use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};
use state::{CheckServiceNode, HealthCheck, Node, ServiceAddress, ServiceInstance, Weights};

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct NodeJson<'a> {
    #[serde(rename = "ID")]
    id: &'a str,
    node: &'a str,
    address: &'a str,
    datacenter: &'a str,
    tagged_addresses: &'a BTreeMap<String, String>,
    meta: &'a BTreeMap<String, String>,
    create_index: u64,
    modify_index: u64,
}

impl<'a> From<&'a Node> for NodeJson<'a> {
    fn from(n: &'a Node) -> Self {
        NodeJson {
            id: &n.id,
            node: &n.name,
            address: &n.address,
            datacenter: &n.datacenter,
            tagged_addresses: &n.tagged_addresses,
            meta: &n.meta,
            create_index: n.create_index,
            modify_index: n.modify_index,
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct AddressJson<'a> {
    address: &'a str,
    port: u16,
}

fn service_addresses<S: Serializer>(
    map: &BTreeMap<String, ServiceAddress>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    let mut out = serializer.serialize_map(Some(map.len()))?;
    for (tag, a) in map {
        out.serialize_entry(
            tag,
            &AddressJson {
                address: &a.address,
                port: a.port,
            },
        )?;
    }
    out.end()
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct WeightsJson {
    passing: u32,
    warning: u32,
}

impl From<Weights> for WeightsJson {
    fn from(w: Weights) -> Self {
        WeightsJson {
            passing: w.passing,
            warning: w.warning,
        }
    }
}

/// What Consul shows for a service without Connect settings.
fn plain_proxy() -> serde_json::Value {
    serde_json::json!({"Mode": "", "MeshGateway": {}, "Expose": {}})
}

fn plain_connect() -> serde_json::Value {
    serde_json::json!({})
}

/// One element of `/v1/catalog/service/:name`.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ServiceNodeJson<'a> {
    #[serde(rename = "ID")]
    id: &'a str,
    node: &'a str,
    address: &'a str,
    datacenter: &'a str,
    tagged_addresses: &'a BTreeMap<String, String>,
    node_meta: &'a BTreeMap<String, String>,
    service_kind: &'a str,
    #[serde(rename = "ServiceID")]
    service_id: &'a str,
    service_name: &'a str,
    service_tags: &'a [String],
    service_address: &'a str,
    #[serde(
        skip_serializing_if = "BTreeMap::is_empty",
        serialize_with = "service_addresses"
    )]
    service_tagged_addresses: &'a BTreeMap<String, ServiceAddress>,
    service_weights: WeightsJson,
    service_meta: &'a BTreeMap<String, String>,
    service_port: u16,
    service_socket_path: &'a str,
    service_enable_tag_override: bool,
    service_proxy: serde_json::Value,
    service_connect: serde_json::Value,
    create_index: u64,
    modify_index: u64,
}

impl<'a> ServiceNodeJson<'a> {
    pub fn new(s: &'a ServiceInstance, n: &'a Node) -> Self {
        ServiceNodeJson {
            id: &n.id,
            node: &n.name,
            address: &n.address,
            datacenter: &n.datacenter,
            tagged_addresses: &n.tagged_addresses,
            node_meta: &n.meta,
            service_kind: &s.kind,
            service_id: &s.id,
            service_name: &s.service,
            service_tags: &s.tags,
            service_address: &s.address,
            service_tagged_addresses: &s.tagged_addresses,
            service_weights: s.weights.into(),
            service_meta: &s.meta,
            service_port: s.port,
            service_socket_path: &s.socket_path,
            service_enable_tag_override: s.enable_tag_override,
            service_proxy: plain_proxy(),
            service_connect: plain_connect(),
            create_index: s.create_index,
            modify_index: s.modify_index,
        }
    }
}

fn is_zero(port: &u16) -> bool {
    *port == 0
}

/// A service as a node holds it (Consul's `NodeService`).
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct NodeServiceJson<'a> {
    #[serde(skip_serializing_if = "str::is_empty")]
    kind: &'a str,
    #[serde(rename = "ID")]
    id: &'a str,
    service: &'a str,
    tags: &'a [String],
    address: &'a str,
    #[serde(
        skip_serializing_if = "BTreeMap::is_empty",
        serialize_with = "service_addresses"
    )]
    tagged_addresses: &'a BTreeMap<String, ServiceAddress>,
    meta: &'a BTreeMap<String, String>,
    #[serde(skip_serializing_if = "is_zero")]
    port: u16,
    weights: WeightsJson,
    enable_tag_override: bool,
    proxy: serde_json::Value,
    connect: serde_json::Value,
    create_index: u64,
    modify_index: u64,
}

impl<'a> From<&'a ServiceInstance> for NodeServiceJson<'a> {
    fn from(s: &'a ServiceInstance) -> Self {
        NodeServiceJson {
            kind: &s.kind,
            id: &s.id,
            service: &s.service,
            tags: &s.tags,
            address: &s.address,
            tagged_addresses: &s.tagged_addresses,
            meta: &s.meta,
            port: s.port,
            weights: s.weights.into(),
            enable_tag_override: s.enable_tag_override,
            proxy: plain_proxy(),
            connect: plain_connect(),
            create_index: s.create_index,
            modify_index: s.modify_index,
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct HealthCheckJson<'a> {
    node: &'a str,
    #[serde(rename = "CheckID")]
    check_id: &'a str,
    name: &'a str,
    status: &'a str,
    notes: &'a str,
    output: &'a str,
    #[serde(rename = "ServiceID")]
    service_id: &'a str,
    service_name: &'a str,
    service_tags: &'a [String],
    #[serde(rename = "Type")]
    check_type: &'a str,
    interval: &'a str,
    timeout: &'a str,
    exposed_port: u16,
    definition: serde_json::Value,
    create_index: u64,
    modify_index: u64,
}

impl<'a> From<&'a HealthCheck> for HealthCheckJson<'a> {
    fn from(c: &'a HealthCheck) -> Self {
        HealthCheckJson {
            node: &c.node,
            check_id: &c.check_id,
            name: &c.name,
            status: &c.status,
            notes: &c.notes,
            output: &c.output,
            service_id: &c.service_id,
            service_name: &c.service_name,
            service_tags: &c.service_tags,
            check_type: &c.check_type,
            interval: &c.interval,
            timeout: &c.timeout,
            exposed_port: 0,
            definition: serde_json::json!({}),
            create_index: c.create_index,
            modify_index: c.modify_index,
        }
    }
}

/// One element of `/v1/health/service/:name`.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct CheckServiceNodeJson<'a> {
    node: NodeJson<'a>,
    service: NodeServiceJson<'a>,
    checks: Vec<HealthCheckJson<'a>>,
}

impl<'a> From<&'a CheckServiceNode> for CheckServiceNodeJson<'a> {
    fn from(c: &'a CheckServiceNode) -> Self {
        CheckServiceNodeJson {
            node: NodeJson::from(&*c.node),
            service: NodeServiceJson::from(&*c.service),
            checks: c
                .checks
                .iter()
                .map(|h| HealthCheckJson::from(&**h))
                .collect(),
        }
    }
}
