//! The coordinates table: batch updates as Consul applies them, rows that
//! live and die with their node, and snapshots that carry them.

use state::{
    Command, Coord, Deregistration, Node, NodeCoordinate, Outcome, Registration, Store, Table,
    WatchSet,
};

fn register(store: &Store, index: u64, name: &str) {
    let reg = Registration {
        node: Node {
            name: name.into(),
            address: "10.0.0.1".into(),
            datacenter: "dc1".into(),
            ..Node::default()
        },
        ..Registration::default()
    };
    let outcome = store
        .apply(index, &Command::Register(Box::new(reg)))
        .unwrap();
    assert_eq!(outcome, Outcome::Write(Ok(())));
}

fn at(node: &str, x: f64) -> NodeCoordinate {
    NodeCoordinate {
        node: node.into(),
        segment: String::new(),
        coord: Coord {
            vec: vec![x, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
            error: 1.5,
            adjustment: 0.0,
            height: 1.0e-5,
        },
    }
}

fn update(store: &Store, index: u64, updates: Vec<NodeCoordinate>) {
    let outcome = store
        .apply(index, &Command::CoordinateBatchUpdate(updates))
        .unwrap();
    assert_eq!(outcome, Outcome::Write(Ok(())));
}

fn nodes_with_coordinates(store: &Store) -> Vec<String> {
    let (_, all) = store.snapshot().coordinates(&mut WatchSet::new());
    all.iter().map(|c| c.node.clone()).collect()
}

#[test]
fn a_batch_update_upserts_and_moves_the_table_index() {
    let store = Store::new();
    register(&store, 1, "b");
    register(&store, 2, "a");
    update(&store, 3, vec![at("b", 0.1), at("a", 0.2)]);
    update(&store, 4, vec![at("a", 0.3)]);
    let snap = store.snapshot();
    let (index, all) = snap.coordinates(&mut WatchSet::new());
    assert_eq!(index, 4);
    assert_eq!(nodes_with_coordinates(&store), ["a", "b"], "sorted by node");
    assert_eq!(all[0].coord.vec[0], 0.3, "the later update wins");
    let (index, of_b) = snap.node_coordinates("B", &mut WatchSet::new());
    assert_eq!((index, of_b.len()), (4, 1));
    assert_eq!(snap.coordinate("b", "").unwrap().coord.vec[0], 0.1);
}

#[test]
fn updates_for_unknown_nodes_or_with_bad_values_are_ignored() {
    let store = Store::new();
    register(&store, 1, "known");
    let mut bad = at("known", 0.0);
    bad.coord.vec[3] = f64::NAN;
    update(&store, 2, vec![at("stranger", 0.1), bad]);
    assert!(nodes_with_coordinates(&store).is_empty());
    assert_eq!(
        store.snapshot().table_index(Table::Coordinates),
        2,
        "Consul moves the index even when every update is skipped"
    );
}

#[test]
fn deregistering_a_node_deletes_its_coordinates_and_wakes_readers() {
    let store = Store::new();
    register(&store, 1, "n1");
    register(&store, 2, "n2");
    update(&store, 3, vec![at("n1", 0.1), at("n2", 0.2)]);
    let snap = store.snapshot();
    let mut ws = WatchSet::new();
    snap.node_coordinates("n1", &mut ws);
    let watch = store.watch(&ws, snap.index());
    let deregistration = Deregistration {
        node: "N1".into(),
        ..Deregistration::default()
    };
    store
        .apply(4, &Command::Deregister(deregistration))
        .unwrap();
    assert!(watch.has_fired());
    assert_eq!(nodes_with_coordinates(&store), ["n2"]);
    assert_eq!(store.snapshot().table_index(Table::Coordinates), 4);
}

#[test]
fn coordinates_survive_a_snapshot_round_trip() {
    let store = Store::new();
    register(&store, 1, "n1");
    update(&store, 2, vec![at("n1", 0.25)]);
    let copy = Store::new();
    copy.restore(&store.snapshot().to_bytes()).unwrap();
    let snap = copy.snapshot();
    assert_eq!(snap.table_index(Table::Coordinates), 2);
    assert_eq!(
        snap.coordinate("N1", "").map(|c| (*c).clone()),
        Some(at("n1", 0.25))
    );
    let (_, stats) = state::snapshot_stats(&store.snapshot().to_bytes()).unwrap();
    assert!(stats.iter().any(|r| r.name == "Coordinate" && r.count == 1));
}
