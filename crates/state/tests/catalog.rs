//! The catalog tables through the public API: registration rules, Consul's
//! per-service indexes, and whom a change wakes.

use state::{
    Command, Deregistration, HealthCheck, Node, Outcome, Registration, ServiceInstance, Store,
    WatchSet, WriteError,
};

fn node(name: &str) -> Node {
    Node {
        name: name.into(),
        address: "10.0.0.1".into(),
        datacenter: "dc1".into(),
        ..Node::default()
    }
}

fn service(name: &str, id: &str) -> ServiceInstance {
    ServiceInstance {
        service: name.into(),
        id: id.into(),
        port: 8080,
        tags: vec!["v1".into()],
        ..ServiceInstance::default()
    }
}

fn check(id: &str, service_id: &str, status: &str) -> HealthCheck {
    HealthCheck {
        check_id: id.into(),
        name: id.into(),
        service_id: service_id.into(),
        status: status.into(),
        ..HealthCheck::default()
    }
}

fn register(store: &Store, index: u64, reg: Registration) -> Result<(), WriteError> {
    match store
        .apply(index, &Command::Register(Box::new(reg)))
        .unwrap()
    {
        Outcome::Write(result) => result,
        other => panic!("unexpected {other:?}"),
    }
}

fn web_on(node_name: &str) -> Registration {
    Registration {
        node: node(node_name),
        service: Some(service("web", &format!("web-{node_name}"))),
        checks: vec![check("web-alive", &format!("web-{node_name}"), "passing")],
        ..Registration::default()
    }
}

#[test]
fn register_creates_node_service_and_check() {
    let store = Store::new();
    register(&store, 5, web_on("n1")).unwrap();
    let snap = store.snapshot();
    let (index, instances) = snap.service_nodes("WEB", &mut WatchSet::new());
    assert_eq!(index, 5);
    assert_eq!(instances.len(), 1);
    assert_eq!(instances[0].1.name, "n1");
    let (_, csn) = snap.check_service_nodes("web", &mut WatchSet::new());
    assert_eq!(csn[0].checks[0].service_name, "web");
    assert_eq!(csn[0].checks[0].service_tags, ["v1"]);
}

#[test]
fn a_check_needs_its_service_and_a_failed_registration_changes_nothing() {
    let store = Store::new();
    let reg = Registration {
        node: node("n1"),
        checks: vec![check("orphan", "no-such-service", "passing")],
        ..Registration::default()
    };
    let err = register(&store, 1, reg).unwrap_err();
    assert_eq!(
        err.0,
        "failed inserting check on node \"n1\": Missing service registration"
    );
    assert!(
        store.snapshot().node("n1").is_none(),
        "the node write was rolled back"
    );
}

#[test]
fn checks_default_to_critical() {
    let store = Store::new();
    let reg = Registration {
        node: node("n1"),
        checks: vec![check("c", "", "")],
        ..Registration::default()
    };
    register(&store, 1, reg).unwrap();
    assert_eq!(
        store.snapshot().check("n1", "c").unwrap().status,
        "critical"
    );
}

#[test]
fn unchanged_registration_moves_no_index() {
    let store = Store::new();
    register(&store, 1, web_on("n1")).unwrap();
    register(&store, 2, web_on("n1")).unwrap();
    let (index, _) = store.snapshot().service_nodes("web", &mut WatchSet::new());
    assert_eq!(index, 1);
}

#[test]
fn service_index_falls_back_to_extinction_after_the_last_instance_goes() {
    let store = Store::new();
    register(&store, 1, web_on("n1")).unwrap();
    register(&store, 2, web_on("n2")).unwrap();
    let dereg = |n: &str| {
        Command::Deregister(Deregistration {
            node: n.into(),
            service_id: Some(format!("web-{n}")),
            check_id: None,
        })
    };
    store.apply(3, &dereg("n1")).unwrap();
    let (index, left) = store.snapshot().service_nodes("web", &mut WatchSet::new());
    assert_eq!((index, left.len()), (3, 1));
    store.apply(4, &dereg("n2")).unwrap();
    let snap = store.snapshot();
    let (index, left) = snap.service_nodes("web", &mut WatchSet::new());
    assert_eq!((index, left.len()), (4, 0));
    assert!(
        snap.check("n2", "web-alive").is_none(),
        "service checks go with it"
    );
    assert!(snap.node("n2").is_some(), "the node stays");
}

#[test]
fn deregistering_a_node_removes_everything_on_it() {
    let store = Store::new();
    register(&store, 1, web_on("n1")).unwrap();
    store
        .apply(
            2,
            &Command::Deregister(Deregistration {
                node: "N1".into(),
                ..Deregistration::default()
            }),
        )
        .unwrap();
    let snap = store.snapshot();
    assert!(snap.node("n1").is_none());
    assert!(snap.service_nodes("web", &mut WatchSet::new()).1.is_empty());
    assert!(snap
        .checks_in_state("any", &mut WatchSet::new())
        .1
        .is_empty());
    let (index, found) = snap.node_services("n1", &mut WatchSet::new());
    assert_eq!((index, found.is_none()), (2, true));
}

#[test]
fn a_check_change_wakes_its_service_watchers_only() {
    let store = Store::new();
    register(&store, 1, web_on("n1")).unwrap();
    let db = Registration {
        node: node("n1"),
        service: Some(service("db", "db1")),
        ..Registration::default()
    };
    register(&store, 2, db).unwrap();
    let snap = store.snapshot();
    let (mut web_ws, mut db_ws) = (WatchSet::new(), WatchSet::new());
    snap.check_service_nodes("web", &mut web_ws);
    snap.check_service_nodes("db", &mut db_ws);
    let web_watch = store.watch(&web_ws, snap.index());
    let db_watch = store.watch(&db_ws, snap.index());
    let failing = Registration {
        node: node("n1"),
        skip_node_update: true,
        checks: vec![check("web-alive", "web-n1", "critical")],
        ..Registration::default()
    };
    register(&store, 3, failing).unwrap();
    assert!(web_watch.has_fired());
    assert!(!db_watch.has_fired(), "db's health did not change");
    let (index, _) = store
        .snapshot()
        .check_service_nodes("web", &mut WatchSet::new());
    assert_eq!(index, 3);
}

#[test]
fn a_node_level_check_is_news_for_every_service_on_the_node() {
    let store = Store::new();
    register(&store, 1, web_on("n1")).unwrap();
    let snap = store.snapshot();
    let mut ws = WatchSet::new();
    snap.check_service_nodes("web", &mut ws);
    let watch = store.watch(&ws, snap.index());
    let node_check = Registration {
        node: node("n1"),
        skip_node_update: true,
        checks: vec![check("serfHealth", "", "critical")],
        ..Registration::default()
    };
    register(&store, 2, node_check).unwrap();
    assert!(watch.has_fired());
    let (_, csn) = store
        .snapshot()
        .check_service_nodes("web", &mut WatchSet::new());
    let ids: Vec<&str> = csn[0].checks.iter().map(|c| c.check_id.as_str()).collect();
    assert_eq!(ids, ["serfHealth", "web-alive"], "node checks come first");
}

#[test]
fn catalog_survives_snapshot_round_trip() {
    let store = Store::new();
    register(&store, 1, web_on("n1")).unwrap();
    let copy = Store::new();
    copy.restore(&store.snapshot().to_bytes()).unwrap();
    let snap = copy.snapshot();
    let (index, instances) = snap.service_nodes("web", &mut WatchSet::new());
    assert_eq!((index, instances.len()), (1, 1));
    assert_eq!(snap.services(&mut WatchSet::new()).1["web"].len(), 1);
}

mod sessions {
    use super::*;
    use state::{Behavior, KvOp, KvVerb, Session};

    fn session(id: &str, node: &str, behavior: Behavior) -> Session {
        Session {
            id: id.into(),
            node: node.into(),
            node_checks: vec!["serfHealth".into()],
            behavior,
            lock_delay_ns: 15_000_000_000,
            ..Session::default()
        }
    }

    fn with_node(store: &Store) {
        let reg = Registration {
            node: node("n1"),
            checks: vec![check("serfHealth", "", "passing")],
            ..Registration::default()
        };
        register(store, 1, reg).unwrap();
    }

    fn lock(key: &str, session: &str) -> Command {
        Command::Kv(KvOp {
            session: session.into(),
            value: b"held".to_vec(),
            ..KvOp::new(KvVerb::Lock, key)
        })
    }

    #[test]
    fn create_needs_the_node_and_healthy_checks() {
        let store = Store::new();
        let orphan = session("s1", "elsewhere", Behavior::Release);
        with_node(&store);
        let created = store.apply(2, &Command::SessionCreate(Box::new(orphan)));
        assert_eq!(
            created.unwrap(),
            Outcome::Write(Err(WriteError("Missing node registration".into())))
        );
        let mut bad = session("s2", "n1", Behavior::Release);
        bad.node_checks = vec!["nope".into()];
        let created = store
            .apply(3, &Command::SessionCreate(Box::new(bad)))
            .unwrap();
        assert_eq!(
            created,
            Outcome::Write(Err(WriteError("Missing check 'nope' registration".into())))
        );
    }

    #[test]
    fn locks_follow_consul_rules() {
        let store = Store::new();
        with_node(&store);
        assert!(
            matches!(store.apply(2, &lock("k", "s1")).unwrap(), Outcome::KvRefused(m) if m == "invalid session \"s1\"")
        );
        store
            .apply(
                3,
                &Command::SessionCreate(Box::new(session("s1", "n1", Behavior::Release))),
            )
            .unwrap();
        store
            .apply(
                4,
                &Command::SessionCreate(Box::new(session("s2", "n1", Behavior::Release))),
            )
            .unwrap();
        assert_eq!(store.apply(5, &lock("k", "s1")).unwrap(), Outcome::Kv(true));
        assert_eq!(
            store.apply(6, &lock("k", "s2")).unwrap(),
            Outcome::Kv(false),
            "held by s1"
        );
        assert_eq!(
            store.apply(7, &lock("k", "s1")).unwrap(),
            Outcome::Kv(true),
            "re-acquire"
        );
        let (_, entry) = store.snapshot().kv_get("k", &mut WatchSet::new());
        let entry = entry.unwrap();
        assert_eq!(
            (entry.lock_index, entry.session.as_deref()),
            (1, Some("s1"))
        );
        let unlock = Command::Kv(KvOp {
            session: "s1".into(),
            ..KvOp::new(KvVerb::Unlock, "k")
        });
        assert_eq!(store.apply(8, &unlock).unwrap(), Outcome::Kv(true));
        assert_eq!(store.apply(9, &lock("k", "s2")).unwrap(), Outcome::Kv(true));
        let (_, entry) = store.snapshot().kv_get("k", &mut WatchSet::new());
        assert_eq!(
            entry.unwrap().lock_index,
            2,
            "a new holder bumps the lock index"
        );
    }

    #[test]
    fn a_critical_check_destroys_the_session_and_releases_its_locks() {
        let store = Store::new();
        with_node(&store);
        store
            .apply(
                2,
                &Command::SessionCreate(Box::new(session("s1", "n1", Behavior::Release))),
            )
            .unwrap();
        store
            .apply(
                3,
                &Command::SessionCreate(Box::new(session("s2", "n1", Behavior::Delete))),
            )
            .unwrap();
        store.apply(4, &lock("kept", "s1")).unwrap();
        store.apply(5, &lock("gone", "s2")).unwrap();
        let failing = Registration {
            node: node("n1"),
            skip_node_update: true,
            checks: vec![check("serfHealth", "", "critical")],
            ..Registration::default()
        };
        let (_, released) = store
            .apply_with_effects(6, &Command::Register(Box::new(failing)))
            .unwrap();
        let mut keys: Vec<&str> = released.iter().map(|r| r.key.as_str()).collect();
        keys.sort();
        assert_eq!(keys, ["gone", "kept"]);
        let snap = store.snapshot();
        assert!(snap.sessions(None, &mut WatchSet::new()).1.is_empty());
        let (_, kept) = snap.kv_get("kept", &mut WatchSet::new());
        let kept = kept.unwrap();
        assert_eq!(
            (kept.session.as_deref(), kept.value.as_slice()),
            (None, &b"held"[..])
        );
        assert!(snap.kv_get("gone", &mut WatchSet::new()).1.is_none());
    }

    #[test]
    fn deregistering_the_node_destroys_its_sessions() {
        let store = Store::new();
        with_node(&store);
        store
            .apply(
                2,
                &Command::SessionCreate(Box::new(session("s1", "n1", Behavior::Release))),
            )
            .unwrap();
        store
            .apply(
                3,
                &Command::Deregister(Deregistration {
                    node: "n1".into(),
                    ..Deregistration::default()
                }),
            )
            .unwrap();
        let (_, found) = store.snapshot().session("S1", &mut WatchSet::new());
        assert!(found.is_none());
    }
}

mod views {
    use super::*;
    use proptest::prelude::*;

    /// (node, service ID, [(check ID, status)]) per instance.
    type Projected = (String, String, Vec<(String, String)>);

    fn projection(store: &Store, name: &str) -> Vec<Projected> {
        let (_, view) = store
            .snapshot()
            .check_service_nodes(name, &mut WatchSet::new());
        let mut out: Vec<_> = view
            .iter()
            .map(|i| {
                (
                    i.node.name.clone(),
                    i.service.id.clone(),
                    i.checks
                        .iter()
                        .map(|c| (c.check_id.clone(), c.status.clone()))
                        .collect(),
                )
            })
            .collect();
        out.sort();
        out
    }

    proptest! {
        /// The incrementally kept health views always equal views built
        /// from scratch (a restore rebuilds them), whatever the writes.
        #[test]
        fn views_match_a_rebuild(ops in proptest::collection::vec((0u8..5, 0u8..3, 0u8..3, 0u8..3), 1..40)) {
            let store = Store::new();
            for (i, (kind, n, s, st)) in ops.into_iter().enumerate() {
                let node_name = format!("n{n}");
                let sid = format!("s{s}");
                let status = ["passing", "warning", "critical"][st as usize];
                let command = match kind {
                    0 => Command::Register(Box::new(Registration {
                        node: node(&node_name),
                        service: Some(service(if s == 2 { "db" } else { "web" }, &sid)),
                        checks: vec![check(&format!("c-{sid}"), &sid, status)],
                        ..Registration::default()
                    })),
                    1 => Command::Register(Box::new(Registration {
                        node: node(&node_name),
                        checks: vec![check("serfHealth", "", status)],
                        ..Registration::default()
                    })),
                    2 => Command::Deregister(Deregistration {
                        node: node_name.clone(),
                        service_id: Some(sid),
                        check_id: None,
                    }),
                    3 => Command::Deregister(Deregistration {
                        node: node_name.clone(),
                        service_id: None,
                        check_id: Some("serfHealth".into()),
                    }),
                    _ => Command::Deregister(Deregistration {
                        node: node_name.clone(),
                        ..Deregistration::default()
                    }),
                };
                store.apply(i as u64 + 1, &command).unwrap();
            }
            let rebuilt = Store::new();
            rebuilt.restore(&store.snapshot().to_bytes()).unwrap();
            for name in ["web", "db"] {
                prop_assert_eq!(projection(&store, name), projection(&rebuilt, name));
            }
        }
    }
}
