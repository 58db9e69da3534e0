//! `/v1/catalog/*`: register, deregister and the catalog reads.

use std::collections::BTreeMap;
use std::sync::Arc;

use agent::Agent;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use state::{
    Command, Deregistration, HealthCheck, Node, Outcome, Registration, ServiceAddress,
    ServiceInstance, Weights,
};

use crate::blocking;
use crate::error::HttpError;
use crate::filter::{self, schema, Filter};
use crate::near;
use crate::params::{node_meta_filters, Params};
use crate::reply;
use crate::shapes::{NodeJson, NodeServiceJson, ServiceNodeJson};

/// The part of the path after `prefix`, percent-decoded.
pub fn tail(uri: &Uri, prefix: &str) -> String {
    let raw = uri.path().strip_prefix(prefix).unwrap_or("");
    percent_encoding::percent_decode_str(raw)
        .decode_utf8_lossy()
        .into_owned()
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct ServiceAddressBody {
    address: String,
    port: u16,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct WeightsBody {
    passing: u32,
    warning: u32,
}

impl Default for WeightsBody {
    fn default() -> Self {
        WeightsBody {
            passing: 1,
            warning: 1,
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct ServiceBody {
    pub kind: String,
    #[serde(rename = "ID")]
    pub id: String,
    pub service: String,
    pub tags: Option<Vec<String>>,
    pub address: String,
    pub tagged_addresses: Option<BTreeMap<String, ServiceAddressBody>>,
    pub meta: Option<BTreeMap<String, String>>,
    pub port: u16,
    pub socket_path: String,
    pub weights: Option<WeightsBody>,
    pub enable_tag_override: bool,
}

impl ServiceBody {
    pub fn into_instance(self) -> ServiceInstance {
        ServiceInstance {
            kind: self.kind,
            id: self.id,
            service: self.service,
            tags: self.tags.unwrap_or_default(),
            address: self.address,
            tagged_addresses: self
                .tagged_addresses
                .unwrap_or_default()
                .into_iter()
                .map(|(k, a)| {
                    (
                        k,
                        ServiceAddress {
                            address: a.address,
                            port: a.port,
                        },
                    )
                })
                .collect(),
            meta: self.meta.unwrap_or_default(),
            port: self.port,
            socket_path: self.socket_path,
            weights: self
                .weights
                .map(|w| Weights {
                    passing: w.passing,
                    warning: w.warning,
                })
                .unwrap_or_default(),
            enable_tag_override: self.enable_tag_override,
            ..ServiceInstance::default()
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct CheckBody {
    node: String,
    #[serde(rename = "CheckID")]
    check_id: String,
    name: String,
    status: String,
    notes: String,
    output: String,
    #[serde(rename = "ServiceID")]
    service_id: String,
    service_name: String,
    service_tags: Option<Vec<String>>,
    #[serde(rename = "Type")]
    check_type: String,
    interval: String,
    timeout: String,
    definition: Option<serde_json::Value>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct RegisterBody {
    datacenter: String,
    #[serde(rename = "ID")]
    id: String,
    node: String,
    address: String,
    tagged_addresses: Option<BTreeMap<String, String>>,
    node_meta: Option<BTreeMap<String, String>>,
    service: Option<ServiceBody>,
    check: Option<CheckBody>,
    checks: Option<Vec<CheckBody>>,
    skip_node_update: bool,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct DeregisterBody {
    datacenter: String,
    node: String,
    #[serde(rename = "ServiceID")]
    service_id: String,
    #[serde(rename = "CheckID")]
    check_id: String,
}

async fn body_bytes(agent: &Agent, body: Body) -> Result<bytes::Bytes, HttpError> {
    let limit = agent
        .config()
        .txn_max_req_len
        .max(agent.config().kv_max_value_size);
    crate::body::read(body, usize::try_from(limit).unwrap_or(usize::MAX)).await
}

fn is_unspecified(address: &str) -> bool {
    address
        .parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_unspecified())
}

/// Checks a registration as Consul's server does, in its order, and turns
/// it into the state's form.
fn registration(agent: &Agent, body: RegisterBody) -> Result<Registration, HttpError> {
    let fail = |m: String| Err(HttpError::internal(m));
    if !body.datacenter.is_empty()
        && !body
            .datacenter
            .eq_ignore_ascii_case(&agent.config().datacenter)
    {
        return fail("No path to datacenter".into());
    }
    if body.node.is_empty() {
        return fail("Must provide node".into());
    }
    if !body.id.is_empty() && !is_uuid(&body.id) {
        return fail(format!("Bad node ID: {}", uuid_error(&body.id)));
    }
    if body.address.is_empty() && !body.skip_node_update {
        return fail("Must provide address if SkipNodeUpdate is not set".into());
    }
    let service = match body.service {
        None => None,
        Some(s) => {
            if !s.id.is_empty() && s.service.is_empty() {
                return fail(
                    "Must provide service name (Service.Service) when service ID is provided"
                        .into(),
                );
            }
            if is_unspecified(&s.address) {
                return fail("Invalid service address".into());
            }
            Some(s.into_instance())
        }
    };
    let mut check_bodies: Vec<CheckBody> = body.check.into_iter().collect();
    check_bodies.extend(body.checks.unwrap_or_default());
    let mut checks = Vec::with_capacity(check_bodies.len());
    for c in check_bodies {
        let check_id = if c.check_id.is_empty() {
            c.name.clone()
        } else {
            c.check_id.clone()
        };
        if !c.node.is_empty() && !c.node.eq_ignore_ascii_case(&body.node) {
            return fail(format!(
                "Node '{}' for check '{check_id}' doesn't match register request node '{}'",
                c.node, body.node
            ));
        }
        if !c.service_id.is_empty() {
            let in_request = service.as_ref().is_some_and(|s| {
                s.id == c.service_id || (s.id.is_empty() && s.service == c.service_id)
            });
            let on_node = agent
                .store()
                .snapshot()
                .service_instance(&body.node, &c.service_id)
                .is_some();
            if !in_request && !on_node {
                return fail(format!(
                    "Unknown service ID '{}' for check ID '{check_id}'",
                    c.service_id
                ));
            }
        }
        let check_type = if c.check_type.is_empty() {
            c.definition
                .as_ref()
                .and_then(definition_type)
                .unwrap_or_default()
        } else {
            c.check_type
        };
        checks.push(HealthCheck {
            node: body.node.clone(),
            check_id,
            name: c.name,
            status: c.status,
            notes: c.notes,
            output: c.output,
            service_id: c.service_id,
            service_name: c.service_name,
            service_tags: c.service_tags.unwrap_or_default(),
            check_type,
            interval: c.interval,
            timeout: c.timeout,
            ..HealthCheck::default()
        });
    }
    Ok(Registration {
        node: Node {
            id: body.id.to_lowercase(),
            name: body.node,
            address: body.address,
            datacenter: agent.config().datacenter.clone(),
            tagged_addresses: body.tagged_addresses.unwrap_or_default(),
            meta: body.node_meta.unwrap_or_default(),
            ..Node::default()
        },
        skip_node_update: body.skip_node_update,
        service,
        checks,
    })
}

/// The check type a definition implies, as Consul derives it.
fn definition_type(definition: &serde_json::Value) -> Option<String> {
    let object = definition.as_object()?;
    let has = |k: &str| {
        object
            .iter()
            .any(|(key, v)| key.eq_ignore_ascii_case(k) && !v.is_null() && v != "" && v != 0)
    };
    ["HTTP", "TCP", "GRPC", "TTL", "ScriptArgs"]
        .into_iter()
        .find(|k| has(k))
        .map(|k| {
            if k == "ScriptArgs" {
                "script".to_owned()
            } else {
                k.to_lowercase()
            }
        })
}

pub fn is_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

fn uuid_error(s: &str) -> &'static str {
    if s.len() != 36 {
        "uuid string is wrong length"
    } else {
        "uuid is improperly formatted"
    }
}

async fn apply_catalog(
    agent: &Agent,
    command: Command,
    pretty: bool,
) -> Result<Response, HttpError> {
    match agent.apply(command).await {
        Ok((_, Outcome::Write(Ok(())))) => Ok(reply::json(StatusCode::OK, &true, pretty)),
        Ok((_, Outcome::Write(Err(error)))) => Err(HttpError::internal(error.0)),
        Ok((_, other)) => Err(HttpError::internal(format!(
            "unexpected outcome: {other:?}"
        ))),
        Err(error) => Err(HttpError::internal(error.to_string())),
    }
}

pub async fn register(
    State(agent): State<Arc<Agent>>,
    method: Method,
    uri: Uri,
    _headers: HeaderMap,
    body: Body,
) -> Response {
    if let Some(refused) = reply::refuse_method(&method, &["PUT"]) {
        return refused;
    }
    let params = Params::parse(uri.query());
    let result = async {
        let bytes = body_bytes(&agent, body).await?;
        let reg = registration(&agent, crate::body::decode(&bytes)?)?;
        apply_catalog(
            &agent,
            Command::Register(Box::new(reg)),
            reply::pretty(agent.config().dev, &params),
        )
        .await
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

pub async fn deregister(
    State(agent): State<Arc<Agent>>,
    method: Method,
    uri: Uri,
    body: Body,
) -> Response {
    if let Some(refused) = reply::refuse_method(&method, &["PUT"]) {
        return refused;
    }
    let params = Params::parse(uri.query());
    let result = async {
        let bytes = body_bytes(&agent, body).await?;
        let body: DeregisterBody = crate::body::decode(&bytes)?;
        if !body.datacenter.is_empty()
            && !body
                .datacenter
                .eq_ignore_ascii_case(&agent.config().datacenter)
        {
            return Err(HttpError::internal("No path to datacenter"));
        }
        if body.node.is_empty() {
            return Err(HttpError::internal("Must provide node"));
        }
        let command = Command::Deregister(Deregistration {
            node: body.node,
            service_id: Some(body.service_id).filter(|s| !s.is_empty()),
            check_id: Some(body.check_id).filter(|c| !c.is_empty()),
        });
        apply_catalog(&agent, command, reply::pretty(agent.config().dev, &params)).await
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

pub async fn datacenters(State(agent): State<Arc<Agent>>, method: Method, uri: Uri) -> Response {
    if let Some(refused) = reply::refuse_method(&method, &["GET"]) {
        return refused;
    }
    let params = Params::parse(uri.query());
    // A server lists every datacenter of the WAN pool, nearest first; a
    // client has sent this call to a server already.
    let datacenters = match agent.federation() {
        Some(federation) => federation.datacenters_by_distance(),
        None => vec![agent.config().datacenter.clone()],
    };
    reply::json(
        StatusCode::OK,
        &datacenters,
        reply::pretty(agent.config().dev, &params),
    )
}

fn meta_matches(meta: &BTreeMap<String, String>, filters: &[(String, String)]) -> bool {
    filters.iter().all(|(k, v)| meta.get(k) == Some(v))
}

pub async fn nodes(State(agent): State<Arc<Agent>>, method: Method, uri: Uri) -> Response {
    if let Some(refused) = reply::refuse_method(&method, &["GET"]) {
        return refused;
    }
    let params = Params::parse(uri.query());
    let result = async {
        let expr = filter::from_params(&params, &schema::NODE)?;
        let filters = node_meta_filters(&params);
        let near = near::source(&agent, &params);
        blocking::respond(
            &agent,
            &params,
            |snap, ws| {
                let (index, mut nodes) = snap.nodes(ws);
                near::sort(snap, near.as_deref(), &mut nodes, |n| &n.name);
                (index, nodes)
            },
            |nodes, pretty| {
                let json: Vec<NodeJson> = nodes
                    .iter()
                    .filter(|n| meta_matches(&n.meta, &filters))
                    .map(|n| NodeJson::from(&**n))
                    .filter(|j| filter::passes(expr.as_ref(), j))
                    .collect();
                reply::ok(&json, pretty)
            },
        )
        .await
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

pub async fn services(State(agent): State<Arc<Agent>>, method: Method, uri: Uri) -> Response {
    if let Some(refused) = reply::refuse_method(&method, &["GET"]) {
        return refused;
    }
    let params = Params::parse(uri.query());
    let result = async {
        let expr = filter::from_params(&params, &schema::SERVICE_NODE)?;
        let filters = node_meta_filters(&params);
        blocking::respond(
            &agent,
            &params,
            |snap, ws| {
                if let Some(expr) = &expr {
                    return filtered_services(snap, ws, expr, &filters);
                }
                if filters.is_empty() {
                    return snap.services(ws);
                }
                // With node-meta, only services on matching nodes count.
                let (index, _) = snap.services(ws);
                let (node_index, nodes) = snap.nodes(ws);
                let mut out: BTreeMap<String, std::collections::BTreeSet<String>> = BTreeMap::new();
                for node in nodes.iter().filter(|n| meta_matches(&n.meta, &filters)) {
                    if let (_, Some((_, services))) =
                        snap.node_services(&node.name, &mut state::WatchSet::new())
                    {
                        for s in services {
                            out.entry(s.service.clone())
                                .or_default()
                                .extend(s.tags.iter().cloned());
                        }
                    }
                }
                (index.max(node_index), out)
            },
            reply::ok,
        )
        .await
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

/// `/v1/catalog/services` with a filter: Consul filters the service
/// instances (`ServiceNode`s), then groups what is left by name. The index
/// is the unfiltered read's, as without a filter.
fn filtered_services(
    snap: &state::Snapshot,
    ws: &mut state::WatchSet,
    expr: &Filter,
    node_meta: &[(String, String)],
) -> (
    state::Index,
    BTreeMap<String, std::collections::BTreeSet<String>>,
) {
    let (index, names) = snap.services(ws);
    let (node_index, _) = snap.nodes(ws);
    let index = if node_meta.is_empty() {
        index
    } else {
        index.max(node_index)
    };
    let mut out: BTreeMap<String, std::collections::BTreeSet<String>> = BTreeMap::new();
    let mut seen = std::collections::BTreeSet::new();
    for name in names.keys() {
        if !seen.insert(name.to_lowercase()) {
            continue;
        }
        let (_, instances) = snap.service_nodes(name, &mut state::WatchSet::new());
        for (s, n) in &instances {
            if meta_matches(&n.meta, node_meta) && expr.keep(&ServiceNodeJson::new(s, n)) {
                out.entry(s.service.clone())
                    .or_default()
                    .extend(s.tags.iter().cloned());
            }
        }
    }
    (index, out)
}

/// Whether `tags` holds every wanted tag, ignoring case.
pub fn has_tags(tags: &[String], wanted: &[String]) -> bool {
    wanted
        .iter()
        .all(|w| tags.iter().any(|t| t.eq_ignore_ascii_case(w)))
}

pub async fn service(State(agent): State<Arc<Agent>>, method: Method, uri: Uri) -> Response {
    if let Some(refused) = reply::refuse_method(&method, &["GET"]) {
        return refused;
    }
    let params = Params::parse(uri.query());
    let name = tail(&uri, "/v1/catalog/service/");
    let result = async {
        if name.is_empty() {
            return Err(HttpError::bad_request("Missing service name"));
        }
        let expr = filter::from_params(&params, &schema::SERVICE_NODE)?;
        let filters = node_meta_filters(&params);
        let tags: Vec<String> = params.get_all("tag").map(str::to_owned).collect();
        let near = near::source(&agent, &params);
        blocking::respond(
            &agent,
            &params,
            |snap, ws| {
                let (index, mut instances) = snap.service_nodes(&name, ws);
                near::sort(snap, near.as_deref(), &mut instances, |(_, n)| &n.name);
                (index, instances)
            },
            |instances, pretty| {
                let json: Vec<ServiceNodeJson> = instances
                    .iter()
                    .filter(|(s, n)| has_tags(&s.tags, &tags) && meta_matches(&n.meta, &filters))
                    .map(|(s, n)| ServiceNodeJson::new(s, n))
                    .filter(|j| filter::passes(expr.as_ref(), j))
                    .collect();
                reply::ok(&json, pretty)
            },
        )
        .await
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

pub async fn node(State(agent): State<Arc<Agent>>, method: Method, uri: Uri) -> Response {
    if let Some(refused) = reply::refuse_method(&method, &["GET"]) {
        return refused;
    }
    let params = Params::parse(uri.query());
    let name = tail(&uri, "/v1/catalog/node/");
    let result = async {
        if name.is_empty() {
            return Err(HttpError::bad_request("Missing node name"));
        }
        blocking::respond(
            &agent,
            &params,
            |snap, ws| snap.node_services(&name, ws),
            |found, pretty| {
                let json = found.as_ref().map(|(node, services)| {
                    serde_json::json!({
                        "Node": NodeJson::from(&**node),
                        "Services": services
                            .iter()
                            .map(|s| (s.id.clone(), NodeServiceJson::from(&**s)))
                            .collect::<BTreeMap<_, _>>(),
                    })
                });
                reply::ok(&json, pretty)
            },
        )
        .await
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

pub async fn node_services(State(agent): State<Arc<Agent>>, method: Method, uri: Uri) -> Response {
    if let Some(refused) = reply::refuse_method(&method, &["GET"]) {
        return refused;
    }
    let params = Params::parse(uri.query());
    let name = tail(&uri, "/v1/catalog/node-services/");
    let result = async {
        if name.is_empty() {
            return Err(HttpError::bad_request("Missing node name"));
        }
        let expr = filter::from_params(&params, &schema::NODE_SERVICE)?;
        blocking::respond(
            &agent,
            &params,
            |snap, ws| snap.node_services(&name, ws),
            |found, pretty| {
                let json = match found {
                    Some((node, services)) => serde_json::json!({
                        "Node": NodeJson::from(&**node),
                        "Services": services
                            .iter()
                            .map(|s| NodeServiceJson::from(&**s))
                            .filter(|j| filter::passes(expr.as_ref(), j))
                            .collect::<Vec<_>>(),
                    }),
                    None => serde_json::json!({"Node": null, "Services": null}),
                };
                reply::ok(&json, pretty)
            },
        )
        .await
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}
