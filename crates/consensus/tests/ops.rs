//! Purge, truncate and reopen sequences; group commit; and a property test of
//! random operation sequences (crashes included) against an in-memory model.

mod common;

use std::fs;
use std::sync::{Arc, Mutex};

use common::*;
use consensus::{GroupCommit, LogId, LogState, StorageError, Wal, WalOptions};

const SMALL: u64 = 256;

fn id(term: u64, index: u64) -> LogId {
    LogId { term, index }
}

#[test]
fn reads_clamp_to_the_log() {
    let dir = scratch();
    let mut wal = open(dir.path(), SMALL);
    assert_eq!(wal.next_index(), None);
    assert_eq!(wal.log_state(), LogState::default());
    wal.append(&entries(5..=30, 2)).unwrap();
    assert_eq!(wal.first_index(), Some(5));
    assert_eq!(wal.last_index(), Some(30));
    assert_eq!(wal.entries(..).unwrap(), entries(5..=30, 2));
    assert_eq!(wal.entries(0..7).unwrap(), entries(5..=6, 2));
    assert_eq!(wal.entries(29..100).unwrap(), entries(29..=30, 2));
    assert_eq!(wal.entries(10..10).unwrap(), vec![]);
    assert_eq!(wal.entries(31..).unwrap(), vec![]);
    assert_eq!(wal.entry(17).unwrap(), Some(entry(17, 2)));
    assert_eq!(wal.entry(4).unwrap(), None);
    assert_eq!(wal.term_at(30), Some(2));
    assert_eq!(wal.term_at(31), None);
}

#[test]
fn appends_must_continue_the_log() {
    let dir = scratch();
    let mut wal = open(dir.path(), SMALL);
    wal.append(&entries(1..=3, 2)).unwrap();
    for bad in [
        vec![entry(5, 2)],
        vec![entry(3, 2)],
        vec![entry(4, 1)],
        vec![entry(4, 2), entry(6, 2)],
        vec![entry(4, 3), entry(5, 2)],
    ] {
        let err = wal.append(&bad).unwrap_err();
        assert!(matches!(err, StorageError::OutOfOrder { .. }), "{err}");
    }
    let huge = entry_sized(4, 2, consensus::wal::MAX_PAYLOAD + 1);
    assert!(matches!(
        wal.append(&[huge]),
        Err(StorageError::TooLarge { .. })
    ));
    assert_eq!(all(&wal), entries(1..=3, 2));
    wal.append(&entries(4..=4, 2)).unwrap();
}

#[test]
fn purge_deletes_only_whole_segments_and_survives_reopen() {
    let dir = scratch();
    let mut wal = open(dir.path(), SMALL);
    wal.append(&entries(1..=100, 1)).unwrap();
    let before = segment_files(dir.path()).len();
    assert!(before > 10);

    wal.purge(id(1, 40)).unwrap();
    assert_eq!(wal.first_index(), Some(41));
    assert_eq!(wal.entries(..).unwrap(), entries(41..=100, 1));
    assert_eq!(wal.term_at(40), Some(1));
    assert_eq!(wal.term_at(39), None);
    let files = segment_files(dir.path());
    assert!(files.len() < before);
    // The first remaining segment holds index 41 (and maybe a few before).
    let first_base: u64 = files[0]
        .file_stem()
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(first_base <= 41);
    let second_base: u64 = files[1]
        .file_stem()
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(second_base > 41);

    drop(wal);
    let mut wal = open(dir.path(), SMALL);
    assert_eq!(wal.log_state().last_purged, Some(id(1, 40)));
    assert_eq!(wal.entries(..).unwrap(), entries(41..=100, 1));
    // Purging again below is a no-op; truncating into purged entries is refused.
    wal.purge(id(1, 30)).unwrap();
    assert_eq!(wal.first_index(), Some(41));
    assert!(matches!(
        wal.truncate_after(Some(39)),
        Err(StorageError::TruncatePurged { .. })
    ));
    assert!(matches!(
        wal.truncate_after(None),
        Err(StorageError::TruncatePurged { .. })
    ));
    wal.truncate_after(Some(40)).unwrap();
    assert_eq!(
        wal.log_state(),
        LogState {
            last_purged: Some(id(1, 40)),
            last: Some(id(1, 40))
        }
    );
    assert_eq!(wal.next_index(), Some(41));
    wal.append(&entries(41..=45, 2)).unwrap();
    drop(wal);
    let wal = open(dir.path(), SMALL);
    assert_eq!(all(&wal), entries(41..=45, 2));
}

#[test]
fn purge_past_the_end_empties_the_log() {
    let dir = scratch();
    let mut wal = open(dir.path(), SMALL);
    wal.append(&entries(1..=20, 1)).unwrap();
    wal.purge(id(3, 50)).unwrap();
    assert!(segment_files(dir.path()).is_empty());
    assert_eq!(
        wal.log_state(),
        LogState {
            last_purged: Some(id(3, 50)),
            last: Some(id(3, 50))
        }
    );
    assert_eq!(wal.next_index(), Some(51));
    assert!(matches!(
        wal.append(&[entry(51, 2)]),
        Err(StorageError::OutOfOrder { .. })
    ));
    drop(wal);
    let mut wal = open(dir.path(), SMALL);
    assert_eq!(wal.next_index(), Some(51));
    assert_eq!(wal.first_index(), None);
    wal.append(&entries(51..=60, 3)).unwrap();
    drop(wal);
    let wal = open(dir.path(), SMALL);
    assert_eq!(all(&wal), entries(51..=60, 3));
}

#[test]
fn truncate_across_segments_then_reopen() {
    let dir = scratch();
    let mut wal = open(dir.path(), SMALL);
    wal.append(&entries(1..=100, 1)).unwrap();
    wal.truncate_after(Some(45)).unwrap();
    assert_eq!(wal.last_index(), Some(45));
    assert_eq!(wal.entries(40..).unwrap(), entries(40..=45, 1));
    // No file holds anything past 45.
    let last_file = segment_files(dir.path()).pop().unwrap();
    let base: u64 = last_file
        .file_stem()
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(base <= 45);
    wal.append(&entries(46..=60, 4)).unwrap();
    drop(wal);
    let mut wal = open(dir.path(), SMALL);
    let mut expected = entries(1..=45, 1);
    expected.extend(entries(46..=60, 4));
    assert_eq!(all(&wal), expected);
    assert_eq!(wal.term_at(45), Some(1));
    assert_eq!(wal.term_at(46), Some(4));
    wal.truncate_after(None).unwrap();
    assert_eq!(wal.log_state().last, None);
    assert!(segment_files(dir.path()).is_empty());
    wal.append(&entries(7..=9, 5)).unwrap();
}

/// A crash after the purge id is saved but before the segments are deleted:
/// opening finishes the purge.
#[test]
fn crash_in_the_middle_of_a_purge() {
    let dir = scratch();
    let mut wal = open(dir.path(), SMALL);
    wal.append(&entries(1..=60, 1)).unwrap();
    drop(wal);
    let saved = scratch();
    copy_dir(dir.path(), saved.path());
    let mut wal = open(dir.path(), SMALL);
    wal.purge(id(1, 30)).unwrap();
    let after = segment_files(dir.path());
    drop(wal);
    // Put the deleted segments back.
    copy_dir(saved.path(), dir.path());
    let wal = open(dir.path(), SMALL);
    assert_eq!(segment_files(dir.path()), after);
    assert_eq!(all(&wal), entries(31..=60, 1));

    // The same for a purge past the end.
    let mut wal = wal;
    wal.purge(id(1, 80)).unwrap();
    drop(wal);
    copy_dir(saved.path(), dir.path());
    let wal = open(dir.path(), SMALL);
    assert!(segment_files(dir.path()).is_empty());
    assert_eq!(wal.next_index(), Some(81));
}

/// A crash after some later segments are deleted but before the one holding
/// the new last entry is cut: a prefix of the old log remains.
#[test]
fn crash_in_the_middle_of_a_truncation() {
    let dir = scratch();
    let mut wal = open(dir.path(), SMALL);
    wal.append(&entries(1..=60, 1)).unwrap();
    drop(wal);
    let files = segment_files(dir.path());
    let kept = files.len() - 2;
    for f in &files[kept..] {
        fs::remove_file(f).unwrap();
    }
    let wal = open(dir.path(), SMALL);
    let last = wal.last_index().unwrap();
    assert!(last < 60);
    assert_eq!(all(&wal), entries(1..=last, 1));
}

#[test]
fn group_commit_shares_syncs_and_reads_at_once() {
    let dir = scratch();
    let wal = open(dir.path(), 4096);
    let group = GroupCommit::new(wal).unwrap();
    let done = Arc::new(Mutex::new(Vec::new()));
    for i in 1..=500u64 {
        let done = Arc::clone(&done);
        group
            .append_async(&[entry(i, 1)], move |outcome| {
                done.lock().unwrap().push((i, outcome.is_ok()));
            })
            .unwrap();
        // Readable before it is durable.
        assert_eq!(
            group.read(|w| w.entry(i)).unwrap().unwrap(),
            Some(entry(i, 1))
        );
    }
    group.flush().unwrap();
    let done = done.lock().unwrap().clone();
    assert_eq!(done, (1..=500).map(|i| (i, true)).collect::<Vec<_>>());
    assert_eq!(group.read(|w| w.durable_next()).unwrap(), 501);

    // Out of order: refused at once, callback never called.
    let err = group
        .append_async(&[entry(9, 1)], |_| panic!("not queued"))
        .unwrap_err();
    assert!(matches!(err, StorageError::OutOfOrder { .. }));

    group.truncate_after(Some(400)).unwrap();
    group.append(&entries(401..=410, 2)).unwrap();
    group.purge(id(1, 100)).unwrap();
    assert_eq!(
        group.log_state().unwrap(),
        LogState {
            last_purged: Some(id(1, 100)),
            last: Some(id(2, 410))
        }
    );
    let wal = group.into_inner().unwrap();
    drop(wal);
    let wal = open(dir.path(), 4096);
    let mut expected = entries(101..=400, 1);
    expected.extend(entries(401..=410, 2));
    assert_eq!(all(&wal), expected);
}

#[test]
fn group_commit_with_a_concurrent_reader() {
    let dir = scratch();
    let group = Arc::new(GroupCommit::new(open(dir.path(), 2048)).unwrap());
    let reader = {
        let group = Arc::clone(&group);
        std::thread::spawn(move || {
            let mut seen = 0;
            while seen < 300 {
                let got = group.read(|w| w.entries(..)).unwrap().unwrap();
                assert_eq!(got, entries(1..=got.len() as u64, 1));
                seen = got.len();
            }
        })
    };
    for i in (1..=300u64).step_by(3) {
        group
            .append_async(&entries(i..=i + 2, 1), |r| r.unwrap())
            .unwrap();
    }
    group.flush().unwrap();
    reader.join().unwrap();
}

mod model {
    use super::*;
    use consensus::Entry;
    use proptest::prelude::*;

    const SEGMENT: u64 = 300;

    #[derive(Debug, Clone)]
    enum Op {
        Append {
            count: u64,
            bump_term: bool,
        },
        /// Write without syncing, crash, and lose the file's tail from a point
        /// at or after the last sync.
        WriteAndCrash {
            count: u64,
            keep_per_mille: u64,
        },
        Truncate {
            back: u64,
        },
        Purge {
            ahead: u64,
        },
        Reopen,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0..12u64, any::<bool>()).prop_map(|(count, bump_term)| Op::Append { count, bump_term }),
            2 => (1..8u64, 0..=1000u64).prop_map(|(count, keep_per_mille)| Op::WriteAndCrash { count, keep_per_mille }),
            2 => (0..20u64).prop_map(|back| Op::Truncate { back }),
            1 => (0..30u64).prop_map(|ahead| Op::Purge { ahead }),
            1 => Just(Op::Reopen),
        ]
    }

    #[derive(Debug, Default)]
    struct Model {
        entries: Vec<Entry>,
        purged: Option<LogId>,
        term: u64,
    }

    impl Model {
        fn next(&self) -> u64 {
            match (self.entries.last(), self.purged) {
                (Some(e), _) => e.index + 1,
                (None, Some(p)) => p.index + 1,
                (None, None) => 1,
            }
        }

        fn new_entries(&mut self, count: u64, bump_term: bool) -> Vec<Entry> {
            if bump_term || self.term == 0 {
                self.term += 1;
            }
            let next = self.next();
            (next..next + count).map(|i| entry(i, self.term)).collect()
        }

        fn check(&self, wal: &Wal) {
            assert_eq!(all(wal), self.entries);
            let last = self.entries.last().map(|e| e.log_id()).or(self.purged);
            assert_eq!(
                wal.log_state(),
                LogState {
                    last_purged: self.purged,
                    last
                }
            );
            if let Some(first) = self.entries.first() {
                assert_eq!(wal.first_index(), Some(first.index));
                assert_eq!(wal.term_at(first.index), Some(first.term));
            }
            if wal.next_index().is_some() || self.purged.is_some() {
                assert_eq!(wal.next_index(), Some(self.next()));
            }
        }
    }

    fn run(ops: Vec<Op>, preallocate: bool) {
        let options = WalOptions {
            segment_size: SEGMENT,
            preallocate,
        };
        let dir = scratch();
        let mut wal = Wal::open(dir.path(), options).unwrap();
        let mut model = Model::default();
        for op in ops {
            match op {
                Op::Append { count, bump_term } => {
                    let new = model.new_entries(count, bump_term);
                    wal.append(&new).unwrap();
                    model.entries.extend(new);
                }
                Op::WriteAndCrash {
                    count,
                    keep_per_mille,
                } => {
                    let new = model.new_entries(count, false);
                    let before = segment_files(dir.path()).pop();
                    let before_end = before.as_ref().map(|f| data_end(&fs::read(f).unwrap()));
                    wal.write(&new).unwrap();
                    drop(wal);
                    let after = segment_files(dir.path()).pop();
                    let mut survivors = new.len();
                    if let (Some(b), Some(start)) = (&before, before_end) {
                        if Some(b) == after.as_ref() {
                            let image = fs::read(b).unwrap();
                            let full = data_end(&image);
                            let cut = start + (full - start) * keep_per_mille / 1000;
                            let zero_fill = keep_per_mille % 2 == 1;
                            if zero_fill {
                                let mut lost = image.clone();
                                lost[cut as usize..full as usize].fill(0);
                                fs::write(b, &lost).unwrap();
                            } else {
                                let file = fs::OpenOptions::new().write(true).open(b).unwrap();
                                file.set_len(cut).unwrap();
                            }
                            // A record survives if it ends before the cut, or
                            // if only zeros (its padding) were zeroed.
                            let mut end = start;
                            survivors = 0;
                            for e in &new {
                                end += record_size(e.payload.len());
                                let intact = end <= cut
                                    || (zero_fill
                                        && image[cut as usize..end as usize]
                                            .iter()
                                            .all(|b| *b == 0));
                                if !intact {
                                    break;
                                }
                                survivors += 1;
                            }
                        }
                    }
                    wal = Wal::open(dir.path(), options).unwrap();
                    model.entries.extend(new.into_iter().take(survivors));
                }
                Op::Truncate { back } => {
                    let last = model.next() - 1;
                    let keep = last.saturating_sub(back);
                    let purged = model.purged.map(|p| p.index);
                    let result = wal.truncate_after(Some(keep));
                    if purged.is_some_and(|p| keep < p) {
                        assert!(matches!(result, Err(StorageError::TruncatePurged { .. })));
                        continue;
                    }
                    result.unwrap();
                    model.entries.retain(|e| e.index <= keep);
                }
                Op::Purge { ahead } => {
                    let from = model.purged.map_or(1, |p| p.index + 1);
                    let upto = from + ahead;
                    let term = match model.entries.iter().find(|e| e.index == upto) {
                        Some(e) => e.term,
                        None if upto >= model.next() => model.term.max(1),
                        None => continue,
                    };
                    wal.purge(id(term, upto)).unwrap();
                    model.entries.retain(|e| e.index > upto);
                    model.purged = Some(id(term, upto));
                    model.term = model.term.max(term);
                }
                Op::Reopen => {
                    drop(wal);
                    wal = Wal::open(dir.path(), options).unwrap();
                }
            }
            model.check(&wal);
        }
        drop(wal);
        let wal = Wal::open(dir.path(), options).unwrap();
        model.check(&wal);
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        #[test]
        fn random_operations_match_the_model(
            ops in proptest::collection::vec(op(), 1..30),
            preallocate in any::<bool>(),
        ) {
            run(ops, preallocate);
        }
    }
}
