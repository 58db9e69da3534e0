//! Behaviour of the store through its public API: what readers see, what
//! indexes do, and whom a commit wakes.

use std::time::Duration;

use proptest::prelude::*;
use state::{Command, KvOp, KvVerb, Outcome, Store, Table, TxnOp, TxnOutcome, TxnResult, WatchSet};

fn set(key: &str, value: &str) -> Command {
    Command::Kv(KvOp {
        value: value.as_bytes().to_vec(),
        ..KvOp::new(KvVerb::Set, key)
    })
}

fn op(verb: KvVerb, key: &str, index: u64) -> KvOp {
    KvOp {
        index,
        ..KvOp::new(verb, key)
    }
}

fn value_of(store: &Store, key: &str) -> Option<String> {
    let (_, entry) = store.snapshot().kv_get(key, &mut WatchSet::new());
    entry.map(|e| String::from_utf8_lossy(&e.value).into_owned())
}

#[test]
fn set_records_create_and_modify_index() {
    let store = Store::new();
    store.apply(5, &set("a", "1")).unwrap();
    store.apply(9, &set("a", "2")).unwrap();
    let (index, entry) = store.snapshot().kv_get("a", &mut WatchSet::new());
    let entry = entry.unwrap();
    assert_eq!((entry.create_index, entry.modify_index), (5, 9));
    assert_eq!(index, 9);
}

#[test]
fn unchanged_set_keeps_modify_index() {
    let store = Store::new();
    store.apply(1, &set("a", "same")).unwrap();
    store.apply(2, &set("a", "same")).unwrap();
    let (_, entry) = store.snapshot().kv_get("a", &mut WatchSet::new());
    assert_eq!(entry.unwrap().modify_index, 1);
}

#[test]
fn index_must_increase() {
    let store = Store::new();
    store.apply(3, &set("a", "1")).unwrap();
    assert!(store.apply(3, &set("b", "1")).is_err());
    assert_eq!(value_of(&store, "b"), None);
}

#[test]
fn cas_semantics_match_consul() {
    let store = Store::new();
    let cas = |key: &str, index: u64| {
        Command::Kv(KvOp {
            value: index.to_string().into_bytes(),
            ..op(KvVerb::Cas, key, index)
        })
    };
    assert_eq!(store.apply(1, &cas("k", 7)).unwrap(), Outcome::Kv(false));
    assert_eq!(store.apply(2, &cas("k", 0)).unwrap(), Outcome::Kv(true));
    assert_eq!(store.apply(3, &cas("k", 0)).unwrap(), Outcome::Kv(false));
    assert_eq!(store.apply(4, &cas("k", 1)).unwrap(), Outcome::Kv(false));
    assert_eq!(store.apply(5, &cas("k", 2)).unwrap(), Outcome::Kv(true));
    let delete_cas = |index| Command::Kv(op(KvVerb::DeleteCas, "k", index));
    assert_eq!(store.apply(6, &delete_cas(2)).unwrap(), Outcome::Kv(false));
    assert_eq!(store.apply(7, &delete_cas(5)).unwrap(), Outcome::Kv(true));
    assert_eq!(value_of(&store, "k"), None);
    // Deleting what is not there succeeds, as in Consul.
    assert_eq!(store.apply(8, &delete_cas(5)).unwrap(), Outcome::Kv(true));
}

#[test]
fn snapshot_is_isolated_from_later_writes() {
    let store = Store::new();
    store.apply(1, &set("a", "old")).unwrap();
    let before = store.snapshot();
    store.apply(2, &set("a", "new")).unwrap();
    store.apply(3, &set("b", "x")).unwrap();
    store
        .apply(4, &Command::Kv(op(KvVerb::DeleteTree, "", 0)))
        .unwrap();
    let (index, entry) = before.kv_get("a", &mut WatchSet::new());
    assert_eq!(entry.unwrap().value, b"old");
    assert_eq!(index, 1);
    assert_eq!(before.kv_list("", &mut WatchSet::new()).1.len(), 1);
    assert_eq!(
        store.snapshot().kv_list("", &mut WatchSet::new()).1.len(),
        0
    );
}

#[test]
fn prefix_index_does_not_go_back_after_delete() {
    let store = Store::new();
    store.apply(1, &set("app/a", "1")).unwrap();
    store.apply(2, &set("app/b", "1")).unwrap();
    store.apply(3, &set("other", "1")).unwrap();
    let (before, _) = store.snapshot().kv_list("app/", &mut WatchSet::new());
    assert_eq!(before, 2);
    store
        .apply(4, &Command::Kv(op(KvVerb::Delete, "app/b", 0)))
        .unwrap();
    let (after, entries) = store.snapshot().kv_list("app/", &mut WatchSet::new());
    assert_eq!(entries.len(), 1);
    assert_eq!(after, 4);
    // Once the tombstone is reaped the prefix falls back to its entries.
    store
        .apply(5, &Command::ReapTombstones { up_to: 4 })
        .unwrap();
    let snap = store.snapshot();
    assert_eq!(snap.kv_counts(), (2, 0));
    assert_eq!(snap.table_index(Table::Tombstones), 5);
}

#[test]
fn keys_with_separator_list_directories_once() {
    let store = Store::new();
    for (i, key) in ["web/a", "web/conf/x", "web/conf/y", "web/z"]
        .iter()
        .enumerate()
    {
        store.apply(i as u64 + 1, &set(key, "")).unwrap();
    }
    let (_, keys) = store
        .snapshot()
        .kv_keys("web/", Some("/"), &mut WatchSet::new());
    assert_eq!(keys, ["web/a", "web/conf/", "web/z"]);
    let (_, all) = store.snapshot().kv_keys("web/", None, &mut WatchSet::new());
    assert_eq!(all.len(), 4);
}

#[test]
fn failed_txn_applies_nothing_and_reports_every_failure() {
    let store = Store::new();
    store.apply(1, &set("exists", "1")).unwrap();
    let ops = vec![
        TxnOp::Kv(KvOp {
            value: b"v".to_vec(),
            ..op(KvVerb::Set, "new", 0)
        }),
        TxnOp::Kv(op(KvVerb::CheckNotExists, "exists", 0)),
        TxnOp::Kv(op(KvVerb::Get, "missing", 0)),
    ];
    let Outcome::Txn(TxnOutcome::Aborted(errors)) = store.apply(2, &Command::Txn(ops)).unwrap()
    else {
        panic!("transaction should abort");
    };
    let what: Vec<(usize, &str)> = errors
        .iter()
        .map(|e| (e.op_index, e.what.as_str()))
        .collect();
    assert_eq!(
        what,
        [
            (1, "key \"exists\" exists"),
            (2, "key \"missing\" doesn't exist")
        ]
    );
    assert_eq!(value_of(&store, "new"), None);
}

#[test]
fn txn_results_omit_values_for_writes() {
    let store = Store::new();
    let ops = vec![
        TxnOp::Kv(KvOp {
            value: b"payload".to_vec(),
            ..op(KvVerb::Set, "k", 0)
        }),
        TxnOp::Kv(op(KvVerb::Get, "k", 0)),
    ];
    let Outcome::Txn(TxnOutcome::Committed(results)) = store.apply(1, &Command::Txn(ops)).unwrap()
    else {
        panic!("transaction should commit");
    };
    let values: Vec<&[u8]> = results
        .iter()
        .map(|TxnResult::Kv(e)| e.value.as_slice())
        .collect();
    assert_eq!(values, [&b""[..], &b"payload"[..]]);
}

#[test]
fn snapshot_bytes_round_trip() {
    let store = Store::new();
    store.apply(1, &set("a", "1")).unwrap();
    store.apply(2, &set("b", "2")).unwrap();
    store
        .apply(3, &Command::Kv(op(KvVerb::Delete, "a", 0)))
        .unwrap();
    let bytes = store.snapshot().to_bytes();
    let other = Store::new();
    other.restore(&bytes).unwrap();
    let snap = other.snapshot();
    assert_eq!(snap.index(), 3);
    assert_eq!(snap.kv_counts(), (1, 1));
    assert_eq!(value_of(&other, "b").as_deref(), Some("2"));
    assert!(other.restore(b"garbage").is_err());
    let mut truncated = bytes.clone();
    truncated.truncate(bytes.len() - 3);
    assert!(other.restore(&truncated).is_err());
    assert_eq!(other.index(), 3, "a failed restore changes nothing");
}

#[tokio::test]
async fn watch_fires_for_its_key_and_not_for_others() {
    let store = Store::new();
    store.apply(1, &set("watched", "1")).unwrap();
    let snap = store.snapshot();
    let mut ws = WatchSet::new();
    snap.kv_get("watched", &mut ws);
    let watch = store.watch(&ws, snap.index());
    assert!(!watch.has_fired());
    store.apply(2, &set("unrelated", "1")).unwrap();
    store.apply(3, &set("watchedx", "1")).unwrap();
    assert!(
        !watch.has_fired(),
        "unrelated writes must not wake the watch"
    );
    store.apply(4, &set("watched", "2")).unwrap();
    tokio::time::timeout(Duration::from_secs(1), watch.changed())
        .await
        .expect("watch should fire");
}

#[tokio::test]
async fn prefix_watch_fires_for_keys_below_it() {
    let store = Store::new();
    let snap = store.snapshot();
    let mut ws = WatchSet::new();
    snap.kv_list("svc/", &mut ws);
    let watch = store.watch(&ws, snap.index());
    store.apply(1, &set("svcx", "1")).unwrap();
    assert!(!watch.has_fired());
    store.apply(2, &set("svc/a/b", "1")).unwrap();
    assert!(watch.has_fired());
}

#[test]
fn watch_registered_after_a_newer_write_fires_at_once() {
    let store = Store::new();
    let snap = store.snapshot();
    let mut ws = WatchSet::new();
    snap.kv_get("k", &mut ws);
    store.apply(1, &set("k", "1")).unwrap();
    assert!(store.watch(&ws, snap.index()).has_fired());
}

#[test]
fn watch_set_falls_back_to_table_above_limit() {
    let store = Store::new();
    let snap = store.snapshot();
    let mut ws = WatchSet::with_limit(2);
    for key in ["a", "b", "c"] {
        snap.kv_get(key, &mut ws);
    }
    assert_eq!(ws.scopes(), [state::WatchScope::Table(Table::Kvs)]);
    let watch = store.watch(&ws, snap.index());
    store.apply(1, &set("zzz", "1")).unwrap();
    assert!(watch.has_fired(), "a table watch fires for any row");
}

#[test]
fn dropped_watch_unregisters() {
    let store = Store::new();
    let snap = store.snapshot();
    let mut ws = WatchSet::new();
    snap.kv_get("k", &mut ws);
    drop(store.watch(&ws, snap.index()));
    // Nothing to observe but the absence of a panic or leak on commit.
    store.apply(1, &set("k", "1")).unwrap();
}

proptest! {
    /// Whatever the sequence of writes, the KV table's index and every
    /// prefix's index only grow while tombstones are kept.
    #[test]
    fn indexes_only_grow(ops in proptest::collection::vec((0u8..4, 0u8..6), 1..60)) {
        let store = Store::new();
        let prefixes = ["", "k", "k1", "k2"];
        let mut last = vec![0u64; prefixes.len()];
        let mut last_table = 0;
        for (i, (kind, key)) in ops.into_iter().enumerate() {
            let key = format!("k{key}");
            let command = match kind {
                0 | 1 => set(&key, &format!("v{i}")),
                2 => Command::Kv(op(KvVerb::Delete, &key, 0)),
                _ => Command::Kv(op(KvVerb::DeleteTree, &key[..1], 0)),
            };
            store.apply(i as u64 + 1, &command).unwrap();
            let snap = store.snapshot();
            prop_assert!(snap.kvs_max_index() >= last_table);
            last_table = snap.kvs_max_index();
            for (p, prefix) in prefixes.iter().enumerate() {
                let (index, _) = snap.kv_list(prefix, &mut WatchSet::new());
                prop_assert!(index >= last[p], "prefix {prefix:?} went back");
                last[p] = index;
            }
        }
    }

    /// Snapshots survive the byte round trip exactly.
    #[test]
    fn restore_reproduces_reads(keys in proptest::collection::vec("[a-c]{1,3}", 1..20)) {
        let store = Store::new();
        for (i, key) in keys.iter().enumerate() {
            store.apply(i as u64 + 1, &set(key, key)).unwrap();
        }
        let copy = Store::new();
        copy.restore(&store.snapshot().to_bytes()).unwrap();
        let a = store.snapshot().kv_list("", &mut WatchSet::new());
        let b = copy.snapshot().kv_list("", &mut WatchSet::new());
        prop_assert_eq!(a, b);
    }
}

fn restore(bytes: Vec<u8>) -> Command {
    Command::Restore { state: bytes }
}

/// A store with keys a and b written at 100 and 120, saved as bytes.
fn saved_at_120() -> Vec<u8> {
    let source = Store::new();
    source.apply(100, &set("a", "old-a")).unwrap();
    source.apply(120, &set("b", "old-b")).unwrap();
    source.snapshot().to_bytes()
}

#[test]
fn restore_replaces_everything_and_keeps_row_indexes_below_the_entry() {
    let bytes = saved_at_120();
    let store = Store::new();
    store.apply(200, &set("a", "new-a")).unwrap();
    store.apply(210, &set("c", "new-c")).unwrap();
    let outcome = store.apply(220, &restore(bytes)).unwrap();
    assert_eq!(outcome, Outcome::Write(Ok(())));
    assert_eq!(store.index(), 220);
    assert_eq!(value_of(&store, "a").as_deref(), Some("old-a"));
    assert_eq!(value_of(&store, "b").as_deref(), Some("old-b"));
    assert_eq!(value_of(&store, "c"), None);
    let snap = store.snapshot();
    let (_, b) = snap.kv_get("b", &mut WatchSet::new());
    assert_eq!(b.unwrap().modify_index, 120, "rows keep their indexes");
    // Every read reports the restore's index, never an older one.
    assert_eq!(snap.kv_get("a", &mut WatchSet::new()).0, 220);
    assert_eq!(snap.kv_list("b", &mut WatchSet::new()).0, 220);
    assert_eq!(snap.kv_list("", &mut WatchSet::new()).0, 220);
    assert_eq!(snap.table_index(Table::Nodes), 220);
    // The log goes on after it.
    store.apply(221, &set("d", "after")).unwrap();
    assert_eq!(value_of(&store, "d").as_deref(), Some("after"));
}

#[test]
fn restore_into_a_younger_log_never_moves_an_index_back_or_past_the_entry() {
    let bytes = saved_at_120();
    let store = Store::new();
    store.apply(3, &set("x", "1")).unwrap();
    store.apply(5, &restore(bytes)).unwrap();
    assert_eq!(store.index(), 5);
    let snap = store.snapshot();
    let (index, a) = snap.kv_get("a", &mut WatchSet::new());
    let a = a.unwrap();
    assert_eq!(index, 5);
    assert!(a.modify_index <= 5 && a.create_index <= a.modify_index);
    assert_eq!(value_of(&store, "x"), None);
    // Later entries apply at their own indexes, above the restore's.
    store.apply(6, &set("a", "newer")).unwrap();
    let (index, a) = store.snapshot().kv_get("a", &mut WatchSet::new());
    assert_eq!((index, a.unwrap().modify_index), (6, 6));
    // And the restored state survives a Raft snapshot round trip.
    let copy = Store::new();
    copy.restore(&store.snapshot().to_bytes()).unwrap();
    assert_eq!(value_of(&copy, "b").as_deref(), Some("old-b"));
    assert_eq!(copy.index(), 6);
}

#[test]
fn restore_wakes_every_watcher() {
    let store = Store::new();
    store.apply(1, &set("watched", "v")).unwrap();
    let snap = store.snapshot();
    let mut on_key = WatchSet::new();
    snap.kv_get("unrelated-key", &mut on_key);
    let mut on_sessions = WatchSet::new();
    on_sessions.add_table(Table::Sessions);
    let key_watch = store.watch(&on_key, snap.index());
    let table_watch = store.watch(&on_sessions, snap.index());
    assert!(!key_watch.has_fired() && !table_watch.has_fired());
    store.apply(2, &restore(saved_at_120())).unwrap();
    assert!(key_watch.has_fired());
    assert!(table_watch.has_fired());
}

#[test]
fn restore_of_bad_bytes_changes_nothing_but_the_index() {
    let store = Store::new();
    store.apply(1, &set("a", "kept")).unwrap();
    let outcome = store
        .apply(2, &restore(b"not a snapshot".to_vec()))
        .unwrap();
    assert!(matches!(outcome, Outcome::Write(Err(_))), "{outcome:?}");
    assert_eq!(value_of(&store, "a").as_deref(), Some("kept"));
    assert_eq!(store.index(), 2);
    assert!(
        store.apply(2, &set("a", "again")).is_err(),
        "index must move on"
    );
}
