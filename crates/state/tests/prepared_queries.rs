//! Prepared queries through the public API: Consul's integrity checks,
//! resolution by ID, name and template prefix, execution filters and
//! ordering, session invalidation, and snapshots.

use state::{
    Command, Coord, ExecuteOptions, HealthCheck, Node, NodeCoordinate, Outcome, PreparedQuery,
    QueryTemplate, Registration, ServiceInstance, ServiceQuery, Session, Snapshot, Store, Table,
    WatchSet, WriteError, NAME_PREFIX_MATCH,
};

const ID1: &str = "11111111-2222-4333-8444-555555555555";
const ID2: &str = "21111111-2222-4333-8444-555555555555";
const ID3: &str = "31111111-2222-4333-8444-555555555555";
const SESSION: &str = "a1111111-2222-4333-8444-555555555555";

fn apply(store: &Store, index: u64, command: Command) -> Result<(), WriteError> {
    match store.apply(index, &command).unwrap() {
        Outcome::Write(result) => result,
        other => panic!("unexpected {other:?}"),
    }
}

fn query(id: &str, name: &str, service: &str) -> PreparedQuery {
    PreparedQuery {
        id: id.into(),
        name: name.into(),
        service: ServiceQuery {
            service: service.into(),
            ..ServiceQuery::default()
        },
        ..PreparedQuery::default()
    }
}

fn template(id: &str, name: &str, regexp: &str, service: &str) -> PreparedQuery {
    PreparedQuery {
        template: QueryTemplate {
            kind: NAME_PREFIX_MATCH.into(),
            regexp: regexp.into(),
            remove_empty_tags: false,
        },
        ..query(id, name, service)
    }
}

fn set(store: &Store, index: u64, q: PreparedQuery) -> Result<(), WriteError> {
    apply(store, index, Command::PreparedQuerySet(Box::new(q)))
}

/// Registers `service` on `node` with one service check in `status`.
fn register(store: &Store, index: u64, node: &str, service: &str, tags: &[&str], status: &str) {
    let id = format!("{service}-{node}");
    let reg = Registration {
        node: Node {
            name: node.into(),
            address: format!("10.0.0.{}", index % 250),
            datacenter: "dc1".into(),
            meta: [("rack".to_owned(), node.to_owned())].into(),
            ..Node::default()
        },
        service: Some(ServiceInstance {
            service: service.into(),
            id: id.clone(),
            port: 80,
            tags: tags.iter().map(|t| t.to_string()).collect(),
            ..ServiceInstance::default()
        }),
        checks: vec![HealthCheck {
            check_id: format!("check-{id}"),
            name: "alive".into(),
            service_id: id,
            status: status.into(),
            ..HealthCheck::default()
        }],
        ..Registration::default()
    };
    apply(store, index, Command::Register(Box::new(reg))).unwrap();
}

fn no_rtt(_: &Coord, _: &Coord) -> Option<f64> {
    None
}

fn names(snap: &Snapshot, q: &PreparedQuery, options: &ExecuteOptions<'_>) -> Vec<String> {
    let mut out: Vec<String> = snap
        .execute_prepared_query(q, options, &no_rtt)
        .nodes
        .iter()
        .map(|i| i.node.name.clone())
        .collect();
    out.sort();
    out
}

#[test]
fn create_update_delete_keep_indexes() {
    let store = Store::new();
    set(&store, 3, query(ID1, "web", "web")).unwrap();
    let snap = store.snapshot();
    let (index, found) = snap.prepared_query(&ID1.to_uppercase(), &mut WatchSet::new());
    assert_eq!(index, 3);
    let found = found.unwrap();
    assert_eq!((found.create_index, found.modify_index), (3, 3));

    set(&store, 5, query(ID1, "web2", "web")).unwrap();
    let (_, found) = store.snapshot().prepared_query(ID1, &mut WatchSet::new());
    let found = found.unwrap();
    assert_eq!(
        (found.name.as_str(), found.create_index, found.modify_index),
        ("web2", 3, 5)
    );

    apply(&store, 6, Command::PreparedQueryDelete { id: ID1.into() }).unwrap();
    let snap = store.snapshot();
    assert!(snap.prepared_query(ID1, &mut WatchSet::new()).1.is_none());
    assert_eq!(snap.table_index(Table::PreparedQueries), 6);
    // Deleting what is not there changes nothing.
    apply(&store, 7, Command::PreparedQueryDelete { id: ID1.into() }).unwrap();
    assert_eq!(store.snapshot().table_index(Table::PreparedQueries), 6);
}

#[test]
fn integrity_checks_use_consuls_words() {
    let store = Store::new();
    set(&store, 1, query(ID1, "web", "web")).unwrap();
    assert_eq!(
        set(&store, 2, query(ID2, "WEB", "web")).unwrap_err().0,
        "name 'WEB' aliases an existing query name"
    );
    assert_eq!(
        set(&store, 3, query(ID2, ID1, "web")).unwrap_err().0,
        format!("name '{ID1}' aliases an existing query ID")
    );
    let bound = PreparedQuery {
        session: SESSION.into(),
        ..query(ID2, "", "web")
    };
    assert_eq!(
        set(&store, 4, bound).unwrap_err().0,
        format!("invalid session \"{SESSION}\"")
    );
    set(&store, 5, template(ID2, "", "", "web")).unwrap();
    assert_eq!(
        set(&store, 6, template(ID3, "", "", "web")).unwrap_err().0,
        "a query template with an empty name already exists"
    );
    let mut bad = template(ID3, "t", "", "web");
    bad.template.kind = "glob".into();
    assert_eq!(
        set(&store, 7, bad).unwrap_err().0,
        "failed compiling template: Bad Template.Type 'glob'"
    );
    let err = set(&store, 8, template(ID3, "t", "([a-z", "web"))
        .unwrap_err()
        .0;
    assert!(
        err.starts_with("failed compiling template: Bad Regexp: "),
        "{err}"
    );
    // Refused writes leave nothing behind.
    let (_, all) = store.snapshot().prepared_queries(&mut WatchSet::new());
    assert_eq!(all.len(), 2);
}

#[test]
fn resolves_by_id_then_name_then_longest_template_prefix() {
    let store = Store::new();
    set(&store, 1, query(ID1, "geo-db-exact", "exact")).unwrap();
    set(&store, 2, template(ID2, "geo-", "", "short-${name.suffix}")).unwrap();
    set(
        &store,
        3,
        template(ID3, "geo-db-", "^geo-db-(.*?)-([^-]+)$", "db-${match(1)}"),
    )
    .unwrap();
    let snap = store.snapshot();
    let by_id = snap.resolve_prepared_query(ID1).unwrap().unwrap();
    assert_eq!(by_id.service.service, "exact");
    let by_name = snap
        .resolve_prepared_query("GEO-DB-EXACT")
        .unwrap()
        .unwrap();
    assert_eq!(by_name.id, ID1);
    let longest = snap
        .resolve_prepared_query("geo-db-customer-primary")
        .unwrap()
        .unwrap();
    assert_eq!(longest.id, ID3);
    assert_eq!(longest.service.service, "db-customer");
    let shorter = snap.resolve_prepared_query("geo-web").unwrap().unwrap();
    assert_eq!(shorter.service.service, "short-web");
    assert!(snap.resolve_prepared_query("nothing").unwrap().is_none());
    assert_eq!(
        snap.resolve_prepared_query(ID2).unwrap_err(),
        "prepared query templates can only be resolved up by name, not by ID"
    );
}

#[test]
fn destroying_a_session_deletes_its_queries() {
    let store = Store::new();
    register(&store, 1, "n1", "web", &[], "passing");
    let session = Session {
        id: SESSION.into(),
        node: "n1".into(),
        ..Session::default()
    };
    apply(&store, 2, Command::SessionCreate(Box::new(session))).unwrap();
    let bound = PreparedQuery {
        session: SESSION.into(),
        ..query(ID1, "", "web")
    };
    set(&store, 3, bound).unwrap();
    set(&store, 4, query(ID2, "free", "web")).unwrap();
    apply(&store, 5, Command::SessionDestroy { id: SESSION.into() }).unwrap();
    let (index, left) = store.snapshot().prepared_queries(&mut WatchSet::new());
    assert_eq!(index, 5);
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].id, ID2);
}

#[test]
fn snapshots_carry_queries() {
    let store = Store::new();
    set(
        &store,
        4,
        template(ID1, "geo-", "^geo-(.*)$", "${match(1)}"),
    )
    .unwrap();
    let bytes = store.snapshot().to_bytes();
    let restored = Snapshot::from_bytes(&bytes).unwrap();
    let (index, all) = restored.prepared_queries(&mut WatchSet::new());
    assert_eq!(index, 4);
    assert_eq!(all.len(), 1);
    assert_eq!(
        restored
            .resolve_prepared_query("geo-web")
            .unwrap()
            .unwrap()
            .service
            .service,
        "web"
    );
}

#[test]
fn execution_filters_health_tags_and_meta() {
    let store = Store::new();
    register(&store, 1, "n1", "web", &["primary", "v1"], "passing");
    register(&store, 2, "n2", "web", &["Primary", "canary"], "passing");
    register(&store, 3, "n3", "web", &["primary"], "warning");
    register(&store, 4, "n4", "web", &["primary"], "critical");
    let snap = store.snapshot();
    let options = ExecuteOptions {
        datacenter: "dc1",
        ..ExecuteOptions::default()
    };
    let mut q = query(ID1, "web", "web");
    assert_eq!(names(&snap, &q, &options), ["n1", "n2", "n3"]);
    q.service.only_passing = true;
    assert_eq!(names(&snap, &q, &options), ["n1", "n2"]);
    q.service.only_passing = false;
    q.service.ignore_check_ids = vec!["check-web-n4".into()];
    assert_eq!(names(&snap, &q, &options), ["n1", "n2", "n3", "n4"]);
    q.service.ignore_check_ids.clear();
    q.service.tags = vec!["PRIMARY".into(), "!canary".into()];
    assert_eq!(names(&snap, &q, &options), ["n1", "n3"]);
    q.service.tags.clear();
    q.service.node_meta = [("rack".to_owned(), "n2".to_owned())].into();
    assert_eq!(names(&snap, &q, &options), ["n2"]);
    q.service.node_meta.clear();
    let limited = ExecuteOptions {
        limit: 2,
        ..options.clone()
    };
    let run = snap.execute_prepared_query(&q, &limited, &no_rtt);
    assert_eq!(run.nodes.len(), 2);
    assert_eq!(
        (run.service.as_str(), run.datacenter.as_str(), run.failovers),
        ("web", "dc1", 0)
    );
}

/// One-dimensional coordinates: node `n` at `x`.
fn place_on_a_line(store: &Store, nodes: &[(&str, f64)]) {
    let coordinates = nodes
        .iter()
        .map(|(node, x)| NodeCoordinate {
            node: (*node).into(),
            segment: String::new(),
            coord: Coord {
                vec: vec![*x],
                ..Coord::default()
            },
        })
        .collect();
    store
        .apply(10, &Command::CoordinateBatchUpdate(coordinates))
        .unwrap();
}

#[test]
fn execution_sorts_nearest_first_with_the_source_node_leading() {
    let store = Store::new();
    for (i, node) in ["n1", "n2", "n3", "n4"].iter().enumerate() {
        register(&store, i as u64 + 1, node, "web", &[], "passing");
    }
    place_on_a_line(&store, &[("n1", 0.0), ("n2", 3.0), ("n3", 1.0)]);
    let snap = store.snapshot();
    let line = |a: &Coord, b: &Coord| Some((a.vec[0] - b.vec[0]).abs());
    let options = ExecuteOptions {
        datacenter: "dc1",
        agent_node: "n1",
        near: Some("_agent"),
        limit: 0,
    };
    let q = query(ID1, "web", "web");
    for _ in 0..10 {
        let order: Vec<String> = snap
            .execute_prepared_query(&q, &options, &line)
            .nodes
            .iter()
            .map(|i| i.node.name.clone())
            .collect();
        assert_eq!(order, ["n1", "n3", "n2", "n4"]);
    }
    // The query's own Near applies when the asker gives none.
    let near_n2 = PreparedQuery {
        service: ServiceQuery {
            near: "n2".into(),
            ..q.service.clone()
        },
        ..q.clone()
    };
    let no_near = ExecuteOptions {
        near: None,
        ..options.clone()
    };
    let order: Vec<String> = snap
        .execute_prepared_query(&near_n2, &no_near, &line)
        .nodes
        .iter()
        .map(|i| i.node.name.clone())
        .collect();
    assert_eq!(order, ["n2", "n3", "n1", "n4"]);
}

#[test]
fn execution_for_another_datacenter_filters_but_never_sorts() {
    let store = Store::new();
    for (i, node) in ["n1", "n2", "n3"].iter().enumerate() {
        register(&store, i as u64 + 1, node, "web", &["v1"], "passing");
    }
    register(&store, 4, "n4", "web", &["v1"], "critical");
    place_on_a_line(&store, &[("n1", 0.0), ("n2", 3.0), ("n3", 1.0)]);
    let snap = store.snapshot();
    // Near a node that would lead a local execution: ignored here.
    let mut q = query(ID1, "web", "web");
    q.service.near = "n2".into();
    q.dns.ttl = "7s".into();
    let mut leaders = std::collections::BTreeSet::new();
    for _ in 0..60 {
        let run = snap.execute_prepared_query_for_elsewhere(&q, "dc2", 0);
        assert_eq!(
            (run.datacenter.as_str(), run.dns_ttl.as_str()),
            ("dc2", "7s")
        );
        let mut names: Vec<String> = run.nodes.iter().map(|i| i.node.name.clone()).collect();
        leaders.insert(names[0].clone());
        names.sort();
        assert_eq!(names, ["n1", "n2", "n3"]);
    }
    assert!(leaders.len() > 1, "shuffled, not sorted: {leaders:?}");
    assert_eq!(
        snap.execute_prepared_query_for_elsewhere(&q, "dc2", 2)
            .nodes
            .len(),
        2
    );
    q.service.tags = vec!["!v1".into()];
    assert!(snap
        .execute_prepared_query_for_elsewhere(&q, "dc2", 0)
        .nodes
        .is_empty());
}

#[test]
fn failover_is_empty_only_without_targets() {
    let mut failover = state::QueryFailover::default();
    assert!(failover.is_empty());
    failover.nearest_n = 2;
    assert!(!failover.is_empty());
    failover.nearest_n = 0;
    failover.datacenters = vec!["dc2".into()];
    assert!(!failover.is_empty());
    failover.datacenters.clear();
    failover.targets = vec![state::FailoverTarget {
        peer: String::new(),
        datacenter: "dc3".into(),
    }];
    assert!(!failover.is_empty());
}
