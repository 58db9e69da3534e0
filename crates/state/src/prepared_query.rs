//! Prepared queries: a service lookup stored under an ID (and optionally a
//! name), run later by `/v1/query/:id/execute` or a `<name>.query.consul`
//! DNS question. A query bound to a session goes when the session goes.
//! A template (`Template.Type` = `name_prefix_match`) answers every name
//! its own name is the longest prefix of, with `${...}` placeholders in its
//! service fields filled in from the name it was asked by.

use std::collections::BTreeMap;
use std::sync::Arc;

use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use crate::catalog::{CheckServiceNode, WriteError};
use crate::coordinate::Coord;
use crate::snapshot::Snapshot;
use crate::table::Table;
use crate::template::CompiledTemplate;
use crate::txn::WriteTxn;
use crate::watch::WatchSet;
use crate::Index;

/// The only template type Consul knows.
pub const NAME_PREFIX_MATCH: &str = "name_prefix_match";

/// What resolving a name that matches nothing, or an empty one, answers.
pub const QUERY_NOT_FOUND: &str = "Query not found";

/// How far into the sorted answer the source node is looked for, to be
/// put first (Consul's cap: with a distance sort it is never further in).
const SOURCE_NODE_SEARCH_DEPTH: usize = 10;

/// A prepared query (Consul's `structs.PreparedQuery`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PreparedQuery {
    pub id: String,
    pub name: String,
    /// The session whose end deletes this query; empty for none.
    pub session: String,
    /// The ACL token the query runs with.
    pub token: String,
    pub template: QueryTemplate,
    pub service: ServiceQuery,
    pub dns: QueryDns,
    pub create_index: Index,
    pub modify_index: Index,
}

impl PreparedQuery {
    pub fn is_template(&self) -> bool {
        !self.template.kind.is_empty()
    }
}

/// Template settings; an empty `kind` means a plain query.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct QueryTemplate {
    pub kind: String,
    /// Matched against the whole name; `${match(N)}` is its Nth group.
    pub regexp: String,
    /// Drop tags that rendered empty.
    pub remove_empty_tags: bool,
}

/// What a query looks up and how it filters the instances.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ServiceQuery {
    pub service: String,
    pub sameness_group: String,
    pub failover: QueryFailover,
    /// Leave out instances with a warning check too, not only critical.
    pub only_passing: bool,
    /// Checks that do not count toward an instance's health.
    pub ignore_check_ids: Vec<String>,
    /// Sort nearest this node first (`_agent`: the asking agent's node).
    pub near: String,
    /// Required tags, and `!tag` for forbidden ones (any case).
    pub tags: Vec<String>,
    pub node_meta: BTreeMap<String, String>,
    pub service_meta: BTreeMap<String, String>,
    pub connect: bool,
    pub peer: String,
}

/// Where to look when the local datacenter has no healthy instance.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct QueryFailover {
    pub nearest_n: i64,
    pub datacenters: Vec<String>,
    pub targets: Vec<FailoverTarget>,
}

impl QueryFailover {
    /// Whether the query names no other datacenter to try.
    pub fn is_empty(&self) -> bool {
        self.nearest_n <= 0 && self.datacenters.is_empty() && self.targets.is_empty()
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct FailoverTarget {
    pub peer: String,
    pub datacenter: String,
}

/// How answers are served over DNS.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct QueryDns {
    /// A Go duration, or empty for the agent's default.
    pub ttl: String,
}

/// How to run a query: everything that comes from the asker, not the query.
#[derive(Clone, Debug, Default)]
pub struct ExecuteOptions<'a> {
    /// The datacenter answering (the results are stamped with it).
    pub datacenter: &'a str,
    /// The node of the agent that asked, what `_agent` stands for.
    pub agent_node: &'a str,
    /// The asker's `?near`, which wins over the query's own `Near`.
    pub near: Option<&'a str>,
    /// Keep at most this many instances; 0 for all.
    pub limit: usize,
}

/// A query's answer (Consul's `PreparedQueryExecuteResponse`); it travels
/// between datacenters when a query fails over.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Execution {
    pub service: String,
    pub nodes: Vec<CheckServiceNode>,
    pub dns_ttl: String,
    /// Where the nodes came from.
    pub datacenter: String,
    /// How many other datacenters were tried (set by the datacenter that
    /// failed over, not by the ones it asked).
    pub failovers: u32,
}

/// Whether `text` is shaped like a UUID (any case), as IDs are.
fn is_uuid(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.len() == 36
        && bytes.iter().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => *b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
}

impl WriteTxn {
    /// Creates or replaces the query with `query.id`, after Consul's
    /// integrity checks: a unique name (one template at most with an empty
    /// name), no name that is another query's ID, an existing session, and
    /// a template that compiles.
    pub(crate) fn prepared_query_set(&mut self, query: &PreparedQuery) -> Result<(), WriteError> {
        if query.id.is_empty() {
            return Err(WriteError("Missing query ID".into()));
        }
        let id = query.id.to_lowercase();
        let existing = self.tables.prepared_queries.get(&id).cloned();
        let other_owner = |other: &PreparedQuery| other.id.to_lowercase() != id;
        if !query.name.is_empty() {
            let name = query.name.to_lowercase();
            if self
                .tables
                .prepared_queries
                .values()
                .any(|q| q.name.to_lowercase() == name && other_owner(q))
            {
                return Err(WriteError(format!(
                    "name '{}' aliases an existing query name",
                    query.name
                )));
            }
        } else if query.is_template()
            && self
                .tables
                .prepared_queries
                .values()
                .any(|q| q.is_template() && q.name.is_empty() && other_owner(q))
        {
            return Err(WriteError(
                "a query template with an empty name already exists".into(),
            ));
        }
        if is_uuid(&query.name)
            && self
                .tables
                .prepared_queries
                .contains_key(&query.name.to_lowercase())
        {
            return Err(WriteError(format!(
                "name '{}' aliases an existing query ID",
                query.name
            )));
        }
        if !query.session.is_empty() && !self.session_exists(&query.session) {
            return Err(WriteError(format!("invalid session {:?}", query.session)));
        }
        if query.is_template() {
            CompiledTemplate::compile(query)
                .map_err(|e| WriteError(format!("failed compiling template: {e}")))?;
        }
        let row = PreparedQuery {
            create_index: existing.map_or(self.index, |old| old.create_index),
            modify_index: self.index,
            ..query.clone()
        };
        self.tables
            .prepared_queries
            .insert(id.clone(), Arc::new(row));
        self.touch(Table::PreparedQueries, &id);
        Ok(())
    }

    /// Deletes a query by ID; an unknown ID changes nothing.
    pub(crate) fn prepared_query_delete(&mut self, id: &str) {
        let id = id.to_lowercase();
        if self.tables.prepared_queries.remove(&id).is_some() {
            self.touch(Table::PreparedQueries, &id);
        }
    }

    /// Deletes the queries bound to a session that is going away.
    pub(crate) fn delete_session_queries(&mut self, session_id: &str) {
        let doomed: Vec<String> = self
            .tables
            .prepared_queries
            .iter()
            .filter(|(_, q)| q.session.eq_ignore_ascii_case(session_id))
            .map(|(id, _)| id.clone())
            .collect();
        for id in doomed {
            self.prepared_query_delete(&id);
        }
    }
}

impl Snapshot {
    /// One query by ID (any case). Index: the prepared-queries table.
    pub fn prepared_query(
        &self,
        id: &str,
        ws: &mut WatchSet,
    ) -> (Index, Option<Arc<PreparedQuery>>) {
        ws.add_table(Table::PreparedQueries);
        (
            self.table_index(Table::PreparedQueries),
            self.tables
                .prepared_queries
                .get(&id.to_lowercase())
                .cloned(),
        )
    }

    /// Every query, by ID. Index: the prepared-queries table.
    pub fn prepared_queries(&self, ws: &mut WatchSet) -> (Index, Vec<Arc<PreparedQuery>>) {
        ws.add_table(Table::PreparedQueries);
        (
            self.table_index(Table::PreparedQueries),
            self.tables.prepared_queries.values().cloned().collect(),
        )
    }

    /// The query `id_or_name` names, as Consul resolves it: by ID (a
    /// template may not be run by ID), else by exact name, else the
    /// template whose name is the longest prefix of it (any case). A
    /// template comes back rendered for `id_or_name`. `Ok(None)`: no match.
    pub fn resolve_prepared_query(
        &self,
        id_or_name: &str,
    ) -> Result<Option<PreparedQuery>, String> {
        if id_or_name.is_empty() {
            return Err("Missing query ID".into());
        }
        let queries = &self.tables.prepared_queries;
        if is_uuid(id_or_name) {
            if let Some(query) = queries.get(&id_or_name.to_lowercase()) {
                if query.is_template() {
                    return Err(
                        "prepared query templates can only be resolved up by name, not by ID"
                            .into(),
                    );
                }
                return Ok(Some((**query).clone()));
            }
        }
        let wanted = id_or_name.to_lowercase();
        let found = queries
            .values()
            .find(|q| !q.name.is_empty() && q.name.to_lowercase() == wanted)
            .or_else(|| {
                queries
                    .values()
                    .filter(|q| q.is_template() && wanted.starts_with(&q.name.to_lowercase()))
                    .max_by_key(|q| q.name.len())
            });
        let Some(query) = found else {
            return Ok(None);
        };
        if !query.is_template() {
            return Ok(Some((**query).clone()));
        }
        let compiled = CompiledTemplate::compile(query)?;
        compiled.render(id_or_name).map(Some)
    }

    /// The instances `query` admits in this version's catalog, shuffled:
    /// its service's instances minus the unhealthy ones (critical checks,
    /// or with `OnlyPassing` anything not passing, ignoring
    /// `IgnoreCheckIDs`), filtered by node and service meta and by tags.
    fn query_instances(&self, query: &PreparedQuery) -> Vec<CheckServiceNode> {
        let wanted = &query.service;
        let view = self.service_health(&wanted.service).unwrap_or_default();
        let tags = TagFilter::new(&wanted.tags);
        let mut nodes: Vec<CheckServiceNode> = view
            .iter()
            .filter(|i| healthy(i, wanted.only_passing, &wanted.ignore_check_ids))
            .filter(|i| meta_matches(&i.node.meta, &wanted.node_meta))
            .filter(|i| meta_matches(&i.service.meta, &wanted.service_meta))
            .filter(|i| tags.admits(&i.service.tags))
            .cloned()
            .collect();
        nodes.shuffle(&mut rand::rng());
        nodes
    }

    /// Runs `query` against this version's catalog: the instances it
    /// admits, shuffled, then sorted nearest first from the `?near` node
    /// or the query's `Near` when that node has a coordinate (`rtt`
    /// estimates the distance), with that node itself first, and cut to
    /// the limit. Failing over to other datacenters when nothing is found
    /// is the caller's (it needs the WAN).
    pub fn execute_prepared_query(
        &self,
        query: &PreparedQuery,
        options: &ExecuteOptions<'_>,
        rtt: &dyn Fn(&Coord, &Coord) -> Option<f64>,
    ) -> Execution {
        let mut nodes = self.query_instances(query);
        let source = match options.near.filter(|n| !n.is_empty()) {
            Some(near) => near,
            None => query.service.near.as_str(),
        };
        let source = match source {
            "_agent" => options.agent_node,
            // Consul finds `_ip`'s node by the DNS asker's address; the
            // asker's address is not passed down here, so no sort.
            "_ip" => "",
            node => node,
        };
        if !source.is_empty() {
            self.sort_by_distance(source, &mut nodes, rtt);
            let depth = nodes.len().min(SOURCE_NODE_SEARCH_DEPTH);
            if let Some(at) = nodes[..depth]
                .iter()
                .position(|i| i.node.name.eq_ignore_ascii_case(source))
            {
                nodes.swap(0, at);
            }
        }
        Self::stamped(query, nodes, options.datacenter, options.limit)
    }

    /// Runs `query` for an asker in another datacenter (Consul's
    /// `ExecuteRemote`, and `Execute` asked from elsewhere): the instances
    /// it admits, shuffled and cut to `limit`, never sorted by distance,
    /// since no node here is near the asker.
    pub fn execute_prepared_query_for_elsewhere(
        &self,
        query: &PreparedQuery,
        datacenter: &str,
        limit: usize,
    ) -> Execution {
        let nodes = self.query_instances(query);
        Self::stamped(query, nodes, datacenter, limit)
    }

    fn stamped(
        query: &PreparedQuery,
        mut nodes: Vec<CheckServiceNode>,
        datacenter: &str,
        limit: usize,
    ) -> Execution {
        if limit > 0 {
            nodes.truncate(limit);
        }
        Execution {
            service: query.service.service.clone(),
            nodes,
            dns_ttl: query.dns.ttl.clone(),
            datacenter: datacenter.to_owned(),
            failovers: 0,
        }
    }

    /// Orders `nodes` nearest first from `source`'s coordinate; those
    /// without a coordinate go last in their order. Without a source
    /// coordinate the order stays as it is.
    fn sort_by_distance(
        &self,
        source: &str,
        nodes: &mut Vec<CheckServiceNode>,
        rtt: &dyn Fn(&Coord, &Coord) -> Option<f64>,
    ) {
        let Some(from) = self.coordinate(source, "") else {
            return;
        };
        let mut keyed: Vec<(f64, CheckServiceNode)> = nodes
            .drain(..)
            .map(|instance| {
                let distance = self
                    .coordinate(&instance.node.name, "")
                    .and_then(|to| rtt(&from.coord, &to.coord))
                    .unwrap_or(f64::INFINITY);
                (distance, instance)
            })
            .collect();
        keyed.sort_by(|a, b| a.0.total_cmp(&b.0));
        nodes.extend(keyed.into_iter().map(|(_, instance)| instance));
    }
}

fn healthy(instance: &CheckServiceNode, only_passing: bool, ignored: &[String]) -> bool {
    instance
        .checks
        .iter()
        .filter(|c| !ignored.contains(&c.check_id))
        .all(|c| {
            if only_passing {
                c.status == "passing"
            } else {
                c.status != "critical"
            }
        })
}

fn meta_matches(meta: &BTreeMap<String, String>, wanted: &BTreeMap<String, String>) -> bool {
    wanted.iter().all(|(k, v)| meta.get(k) == Some(v))
}

/// Consul's tag filter: every plain tag present, no `!tag` present, in
/// any case.
struct TagFilter {
    must: Vec<String>,
    must_not: Vec<String>,
}

impl TagFilter {
    fn new(tags: &[String]) -> TagFilter {
        let mut filter = TagFilter {
            must: Vec::new(),
            must_not: Vec::new(),
        };
        for tag in tags {
            let tag = tag.to_lowercase();
            match tag.strip_prefix('!') {
                Some(forbidden) => filter.must_not.push(forbidden.to_owned()),
                None => filter.must.push(tag),
            }
        }
        filter
    }

    fn admits(&self, tags: &[String]) -> bool {
        let has = |wanted: &String| tags.iter().any(|t| t.to_lowercase() == *wanted);
        self.must.iter().all(has) && !self.must_not.iter().any(has)
    }
}
