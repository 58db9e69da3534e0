//! `/v1/query`: prepared queries. Create and list on `/v1/query`; read,
//! update and delete on `/v1/query/:id`; run on `/v1/query/:id_or_name/
//! execute`, and show what a name resolves to on `.../explain`.

use std::collections::BTreeMap;
use std::sync::Arc;

use agent::Agent;
use axum::body::Body;
use axum::extract::State;
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use state::{
    ExecuteOptions, FailoverTarget, PreparedQuery, QueryDns, QueryFailover, QueryTemplate,
    ServiceQuery, QUERY_NOT_FOUND,
};

use crate::blocking;
use crate::catalog::tail;
use crate::error::HttpError;
use crate::params::{Params, QueryOptions};
use crate::reply::{self, QueryMeta};
use crate::shapes::CheckServiceNodeJson;

/// A prepared query as Consul's JSON has it, both ways. Empty lists and
/// maps are `null`, as Go writes its nil slices.
#[derive(Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct QueryJson {
    #[serde(rename = "ID")]
    id: String,
    name: String,
    session: String,
    token: String,
    template: TemplateJson,
    service: ServiceJson,
    #[serde(rename = "DNS")]
    dns: DnsJson,
    create_index: u64,
    modify_index: u64,
}

#[derive(Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct TemplateJson {
    #[serde(rename = "Type")]
    kind: String,
    regexp: String,
    remove_empty_tags: bool,
}

#[derive(Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct ServiceJson {
    service: String,
    sameness_group: String,
    failover: FailoverJson,
    only_passing: bool,
    #[serde(rename = "IgnoreCheckIDs")]
    ignore_check_ids: Option<Vec<String>>,
    near: String,
    tags: Option<Vec<String>>,
    node_meta: Option<BTreeMap<String, String>>,
    service_meta: Option<BTreeMap<String, String>>,
    connect: bool,
    peer: String,
}

#[derive(Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct FailoverJson {
    nearest_n: i64,
    datacenters: Option<Vec<String>>,
    targets: Option<Vec<TargetJson>>,
}

#[derive(Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct TargetJson {
    peer: String,
    datacenter: String,
}

#[derive(Serialize, Deserialize, Default)]
#[serde(default)]
struct DnsJson {
    #[serde(rename = "TTL")]
    ttl: String,
}

fn non_empty<T>(items: &[T], f: impl Fn(&T) -> T) -> Option<Vec<T>> {
    (!items.is_empty()).then(|| items.iter().map(f).collect())
}

fn non_empty_map(map: &BTreeMap<String, String>) -> Option<BTreeMap<String, String>> {
    (!map.is_empty()).then(|| map.clone())
}

impl From<&PreparedQuery> for QueryJson {
    fn from(q: &PreparedQuery) -> Self {
        let s = &q.service;
        QueryJson {
            id: q.id.clone(),
            name: q.name.clone(),
            session: q.session.clone(),
            token: q.token.clone(),
            template: TemplateJson {
                kind: q.template.kind.clone(),
                regexp: q.template.regexp.clone(),
                remove_empty_tags: q.template.remove_empty_tags,
            },
            service: ServiceJson {
                service: s.service.clone(),
                sameness_group: s.sameness_group.clone(),
                failover: FailoverJson {
                    nearest_n: s.failover.nearest_n,
                    datacenters: non_empty(&s.failover.datacenters, Clone::clone),
                    targets: (!s.failover.targets.is_empty()).then(|| {
                        s.failover
                            .targets
                            .iter()
                            .map(|t| TargetJson {
                                peer: t.peer.clone(),
                                datacenter: t.datacenter.clone(),
                            })
                            .collect()
                    }),
                },
                only_passing: s.only_passing,
                ignore_check_ids: non_empty(&s.ignore_check_ids, Clone::clone),
                near: s.near.clone(),
                tags: non_empty(&s.tags, Clone::clone),
                node_meta: non_empty_map(&s.node_meta),
                service_meta: non_empty_map(&s.service_meta),
                connect: s.connect,
                peer: s.peer.clone(),
            },
            dns: DnsJson {
                ttl: q.dns.ttl.clone(),
            },
            create_index: q.create_index,
            modify_index: q.modify_index,
        }
    }
}

impl From<QueryJson> for PreparedQuery {
    fn from(j: QueryJson) -> Self {
        let s = j.service;
        PreparedQuery {
            id: j.id,
            name: j.name,
            session: j.session,
            token: j.token,
            template: QueryTemplate {
                kind: j.template.kind,
                regexp: j.template.regexp,
                remove_empty_tags: j.template.remove_empty_tags,
            },
            service: ServiceQuery {
                service: s.service,
                sameness_group: s.sameness_group,
                failover: QueryFailover {
                    nearest_n: s.failover.nearest_n,
                    datacenters: s.failover.datacenters.unwrap_or_default(),
                    targets: s
                        .failover
                        .targets
                        .unwrap_or_default()
                        .into_iter()
                        .map(|t| FailoverTarget {
                            peer: t.peer,
                            datacenter: t.datacenter,
                        })
                        .collect(),
                },
                only_passing: s.only_passing,
                ignore_check_ids: s.ignore_check_ids.unwrap_or_default(),
                near: s.near,
                tags: s.tags.unwrap_or_default(),
                node_meta: s.node_meta.unwrap_or_default(),
                service_meta: s.service_meta.unwrap_or_default(),
                connect: s.connect,
                peer: s.peer,
            },
            dns: QueryDns { ttl: j.dns.ttl },
            create_index: 0,
            modify_index: 0,
        }
    }
}

/// An execution's answer (Consul's `PreparedQueryExecuteResponse`).
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ExecuteJson<'a> {
    service: &'a str,
    nodes: Vec<CheckServiceNodeJson<'a>>,
    #[serde(rename = "DNS")]
    dns: DnsJson,
    datacenter: &'a str,
    failovers: u32,
}

fn queries_reply(queries: &[Arc<PreparedQuery>], pretty: bool) -> Response {
    let json: Vec<QueryJson> = queries.iter().map(|q| QueryJson::from(&**q)).collect();
    reply::ok(&json, pretty)
}

async fn read_query(body: Body, optional: bool) -> Result<PreparedQuery, HttpError> {
    let bytes = crate::body::read(body, crate::body::MAX_DEFINITION_BODY).await?;
    if optional && bytes.is_empty() {
        return Ok(PreparedQuery::default());
    }
    let json: QueryJson = crate::body::decode(&bytes)?;
    Ok(json.into())
}

/// `POST /v1/query` (create) and `GET /v1/query` (list, blocking).
pub async fn general(
    State(agent): State<Arc<Agent>>,
    method: Method,
    uri: Uri,
    body: Body,
) -> Response {
    if let Some(refused) = reply::refuse_method(&method, &["GET", "POST"]) {
        return refused;
    }
    let params = Params::parse(uri.query());
    let result = async {
        if method == Method::GET {
            return blocking::respond(
                &agent,
                &params,
                |snap, ws| snap.prepared_queries(ws),
                |q, pretty| queries_reply(q, pretty),
            )
            .await;
        }
        crate::params::check_datacenter(&agent, &params)?;
        let query = read_query(body, false).await?;
        let id = agent
            .create_prepared_query(query)
            .await
            .map_err(|e| HttpError::internal(e.0))?;
        Ok(reply::ok(
            &serde_json::json!({ "ID": id }),
            reply::pretty(agent.config().dev, &params),
        ))
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

/// `/v1/query/:id` and its `execute` and `explain` reads.
pub async fn specific(
    State(agent): State<Arc<Agent>>,
    method: Method,
    uri: Uri,
    body: Body,
) -> Response {
    let rest = tail(&uri, "/v1/query/");
    let params = Params::parse(uri.query());
    let result = if let Some(name) = rest.strip_suffix("/execute") {
        if let Some(refused) = reply::refuse_method(&method, &["GET"]) {
            return refused;
        }
        execute(&agent, name, &params).await
    } else if let Some(name) = rest.strip_suffix("/explain") {
        if let Some(refused) = reply::refuse_method(&method, &["GET"]) {
            return refused;
        }
        explain(&agent, name, &params).await
    } else {
        if let Some(refused) = reply::refuse_method(&method, &["GET", "PUT", "DELETE"]) {
            return refused;
        }
        match method.as_str() {
            "GET" => get(&agent, &rest, &params).await,
            "PUT" => update(&agent, rest, &params, body).await,
            _ => delete(&agent, &rest, &params).await,
        }
    };
    result.unwrap_or_else(IntoResponse::into_response)
}

fn not_found() -> HttpError {
    HttpError::new(StatusCode::NOT_FOUND, QUERY_NOT_FOUND)
}

async fn get(agent: &Agent, id: &str, params: &Params) -> Result<Response, HttpError> {
    let options = QueryOptions::parse(params)?;
    crate::params::check_datacenter(agent, params)?;
    let (index, found) =
        blocking::run(agent, &options, |snap, ws| snap.prepared_query(id, ws)).await?;
    let query = found.ok_or_else(not_found)?;
    let pretty = reply::pretty(agent.config().dev, params);
    let meta = QueryMeta::new(agent, index, options.consistency);
    Ok(meta.on(queries_reply(&[query], pretty)))
}

async fn update(
    agent: &Agent,
    id: String,
    params: &Params,
    body: Body,
) -> Result<Response, HttpError> {
    crate::params::check_datacenter(agent, params)?;
    let query = read_query(body, true).await?;
    agent
        .update_prepared_query(PreparedQuery { id, ..query })
        .await
        .map_err(|e| HttpError::internal(e.0))?;
    Ok(reply::empty_ok())
}

async fn delete(agent: &Agent, id: &str, params: &Params) -> Result<Response, HttpError> {
    crate::params::check_datacenter(agent, params)?;
    agent
        .delete_prepared_query(id)
        .await
        .map_err(|e| HttpError::internal(e.0))?;
    Ok(reply::empty_ok())
}

/// Resolves `name` on a barrier-checked snapshot, or answers 404.
async fn resolve(
    agent: &Agent,
    name: &str,
    options: &QueryOptions,
) -> Result<(Arc<state::Snapshot>, PreparedQuery), HttpError> {
    agent
        .read_barrier(options.read_consistency())
        .await
        .map_err(|e| HttpError::internal(e.to_string()))?;
    let snap = agent.store().snapshot();
    let query = snap
        .resolve_prepared_query(name)
        .map_err(|e| {
            if e == "Missing query ID" {
                not_found()
            } else {
                HttpError::internal(e)
            }
        })?
        .ok_or_else(not_found)?;
    Ok((snap, query))
}

/// `?limit` as Go's `strconv.Atoi` reads it, with Consul's message.
fn limit(params: &Params) -> Result<usize, HttpError> {
    match params.get("limit").filter(|l| !l.is_empty()) {
        None => Ok(0),
        Some(raw) => raw
            .parse::<i64>()
            .map(|n| usize::try_from(n).unwrap_or(0))
            .map_err(|_| {
                HttpError::internal(format!(
                    "Bad limit: strconv.Atoi: parsing {raw:?}: invalid syntax"
                ))
            }),
    }
}

async fn execute(agent: &Agent, name: &str, params: &Params) -> Result<Response, HttpError> {
    let options = QueryOptions::parse(params)?;
    crate::params::check_datacenter(agent, params)?;
    let limit = limit(params)?;
    // Connect results need Connect-capable services, which praetor does
    // not register yet; `?connect` is read for its errors and ignored.
    if let Some(raw) = params.get("connect").filter(|c| !c.is_empty()) {
        if !matches!(
            raw,
            "1" | "t"
                | "T"
                | "TRUE"
                | "true"
                | "True"
                | "0"
                | "f"
                | "F"
                | "FALSE"
                | "false"
                | "False"
        ) {
            return Err(HttpError::internal(format!(
                "Error parsing 'connect' value: strconv.ParseBool: parsing {raw:?}: invalid syntax"
            )));
        }
    }
    let (snap, query) = resolve(agent, name, &options).await?;
    let config = agent.config();
    let near = params.get("near");
    // Nothing healthy here: the query fails over to other datacenters.
    let run = agent
        .execute_prepared_query(
            &snap,
            &query,
            &ExecuteOptions {
                datacenter: &config.datacenter,
                agent_node: &config.node_name,
                near,
                limit,
            },
        )
        .await;
    let json = ExecuteJson {
        service: &run.service,
        nodes: run.nodes.iter().map(CheckServiceNodeJson::from).collect(),
        dns: DnsJson {
            ttl: run.dns_ttl.clone(),
        },
        datacenter: &run.datacenter,
        failovers: run.failovers,
    };
    let pretty = reply::pretty(config.dev, params);
    let meta = QueryMeta::new(agent, snap.index(), options.consistency);
    Ok(meta.on(reply::ok(&json, pretty)))
}

async fn explain(agent: &Agent, name: &str, params: &Params) -> Result<Response, HttpError> {
    let options = QueryOptions::parse(params)?;
    crate::params::check_datacenter(agent, params)?;
    limit(params)?;
    let (snap, query) = resolve(agent, name, &options).await?;
    let pretty = reply::pretty(agent.config().dev, params);
    let meta = QueryMeta::new(agent, snap.index(), options.consistency);
    Ok(meta.on(reply::ok(
        &serde_json::json!({ "Query": QueryJson::from(&query) }),
        pretty,
    )))
}
