//! Crashes at every point of an append, simulated on the files: cut the
//! segment at every byte, flip every byte, lose whole sectors of the last
//! batch. Recovery must yield a prefix of what was written, keep every record
//! that was complete before the damage, and refuse (naming file and offset)
//! damage that a crash cannot explain.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::*;
use consensus::{Entry, StorageError, Wal};

/// Segment size for the single-segment logs here: big enough for all their
/// records, small enough that preallocating it at each of the thousands of
/// opens costs nothing.
const ONE_SEGMENT: u64 = 16 << 10;

/// One segment holding three synced batches: 1..=12, 13..=18, 19..=24.
struct Written {
    dir: tempfile::TempDir,
    entries: Vec<Entry>,
    /// File offset where each entry's record starts and ends.
    spans: Vec<(u64, u64)>,
    /// Index of the first entry of the last batch.
    last_batch: u64,
    segment: PathBuf,
    bytes: Vec<u8>,
}

fn written(batches: &[Vec<Entry>]) -> Written {
    let dir = scratch();
    let mut wal = open(dir.path(), ONE_SEGMENT);
    for batch in batches {
        wal.append(batch).unwrap();
    }
    drop(wal);
    let entries: Vec<Entry> = batches.concat();
    let mut spans = Vec::new();
    let mut at = SEGMENT_HEADER;
    for e in &entries {
        let end = at + record_size(e.payload.len());
        spans.push((at, end));
        at = end;
    }
    let segment = segment_files(dir.path()).pop().unwrap();
    let mut bytes = fs::read(&segment).unwrap();
    assert_eq!(data_end(&bytes), at, "the file is laid out as documented");
    assert!(
        bytes[at as usize..].iter().all(|b| *b == 0),
        "preallocated space is zero"
    );
    bytes.truncate(at as usize);
    Written {
        last_batch: batches.last().unwrap()[0].index,
        dir,
        entries,
        spans,
        segment,
        bytes,
    }
}

fn three_batches() -> Written {
    written(&[entries(1..=12, 1), entries(13..=18, 1), entries(19..=24, 2)])
}

/// Opens a copy of the log whose segment holds `bytes` instead.
fn reopen_with(w: &Written, bytes: &[u8]) -> (tempfile::TempDir, Result<Wal, StorageError>) {
    let dir = scratch();
    copy_dir(w.dir.path(), dir.path());
    let name = w.segment.file_name().unwrap();
    fs::write(dir.path().join(name), bytes).unwrap();
    let wal = Wal::open(dir.path(), options(ONE_SEGMENT));
    (dir, wal)
}

fn assert_prefix(w: &Written, wal: &Wal, kept: usize, what: &str) {
    assert_eq!(all(wal), w.entries[..kept], "{what}");
    let end = if kept == 0 {
        SEGMENT_HEADER
    } else {
        w.spans[kept - 1].1
    };
    let name = w.segment.file_name().unwrap();
    let on_disk = fs::read(wal.dir().join(name)).unwrap();
    assert!(on_disk.len() as u64 >= end, "{what}");
    assert_eq!(on_disk[..end as usize], w.bytes[..end as usize], "{what}");
    assert!(
        on_disk[end as usize..].iter().all(|b| *b == 0),
        "{what}: the torn tail is gone from the file"
    );
}

fn assert_corrupt_at(err: &StorageError, file: &Path, offset: u64, what: &str) {
    match err {
        StorageError::Corrupt {
            path, offset: at, ..
        } => {
            assert_eq!(path.file_name(), file.file_name(), "{what}: {err}");
            assert_eq!(*at, offset, "{what}: {err}");
            let message = err.to_string();
            let name = file.file_name().unwrap().to_str().unwrap();
            assert!(
                message.contains(name),
                "{what}: message names the file: {message}"
            );
        }
        other => panic!("{what}: expected Corrupt, got {other}"),
    }
}

#[test]
fn cut_at_every_byte_of_the_last_records_keeps_every_complete_record() {
    let w = three_batches();
    // From the start of the second batch to the end of the file.
    let from = w.spans[12].0;
    for (cut, preallocated) in (from..=w.bytes.len() as u64).flat_map(|c| [(c, false), (c, true)]) {
        // The lost part is either missing (the file size did not reach the
        // disk) or zeros (preallocated, or the size did but the data not).
        let mut image = w.bytes[..cut as usize].to_vec();
        if preallocated {
            image.resize(w.bytes.len() + 4096, 0);
        }
        let (_dir, wal) = reopen_with(&w, &image);
        let mut wal = wal.unwrap_or_else(|e| panic!("cut at {cut}: {e}"));
        // Zeros put back where zeros were (padding) restore the record.
        let survives = |&&(_, end): &&(u64, u64)| {
            end <= cut
                || (preallocated && w.bytes[cut as usize..end as usize].iter().all(|b| *b == 0))
        };
        let kept = w.spans.iter().take_while(|s| survives(s)).count();
        assert_prefix(
            &w,
            &wal,
            kept,
            &format!("cut at {cut}, preallocated {preallocated}"),
        );
        // The log goes on from there, and the repair holds across a reopen.
        let next = kept as u64 + 1;
        wal.append(&[entry(next, 3)]).unwrap();
        let dir = wal.dir().to_path_buf();
        drop(wal);
        let wal = open(&dir, ONE_SEGMENT);
        assert_eq!(wal.last_index(), Some(next), "cut at {cut}");
        assert_eq!(all(&wal).len(), kept + 1);
    }
}

#[test]
fn a_flipped_byte_is_a_torn_tail_only_in_the_last_batch() {
    let w = three_batches();
    for at in 0..w.bytes.len() {
        for flip in [0x01u8, 0x80] {
            let mut bad = w.bytes.clone();
            bad[at] ^= flip;
            let what = format!("byte {at} ^ {flip:#x}");
            let (_dir, wal) = reopen_with(&w, &bad);
            if (at as u64) < SEGMENT_HEADER {
                assert_corrupt_at(&wal.unwrap_err(), &w.segment, 0, &what);
                continue;
            }
            let damaged = w
                .spans
                .iter()
                .position(|(start, end)| (*start..*end).contains(&(at as u64)))
                .unwrap();
            let index = w.entries[damaged].index;
            if index >= w.last_batch {
                let wal = wal.unwrap_or_else(|e| panic!("{what}: {e}"));
                assert_prefix(&w, &wal, damaged, &what);
            } else {
                assert_corrupt_at(&wal.unwrap_err(), &w.segment, w.spans[damaged].0, &what);
            }
        }
    }
}

/// The page cache writes a batch back in any order: a crash can lose a
/// sector in the middle of the last batch while later sectors made it.
#[test]
fn lost_sectors_of_the_unsynced_batch_are_a_torn_tail() {
    let big = |range: std::ops::RangeInclusive<u64>, term| -> Vec<Entry> {
        range
            .map(|i| entry_sized(i, term, 90 + (i as usize % 13)))
            .collect()
    };
    let w = written(&[big(1..=10, 1), big(11..=40, 1)]);
    let batch_start = w.spans[10].0;
    let end = w.bytes.len() as u64;
    let first_sector = batch_start / 512 * 512;
    for sector in (first_sector..end).step_by(512) {
        // The part of the sector the batch wrote goes back to what was there
        // before (nothing: zeros), or to garbage.
        let lost = sector.max(batch_start)..(sector + 512).min(end);
        for garbage in [false, true] {
            let mut bad = w.bytes.clone();
            for (k, b) in bad[lost.start as usize..lost.end as usize]
                .iter_mut()
                .enumerate()
            {
                *b = if garbage { (k * 151 + 7) as u8 } else { 0 };
            }
            let what = format!("sector at {sector}, garbage {garbage}");
            let (_dir, wal) = reopen_with(&w, &bad);
            let wal = wal.unwrap_or_else(|e| panic!("{what}: {e}"));
            let kept = w.spans.iter().filter(|(_, e)| *e <= lost.start).count();
            assert_prefix(&w, &wal, kept, &what);
        }
    }
}

#[test]
fn a_lost_sector_of_a_synced_batch_is_refused() {
    let w = three_batches();
    // Zero part of the first batch; the later batches prove it was synced.
    let (start, _) = w.spans[3];
    let mut bad = w.bytes.clone();
    for b in &mut bad[start as usize..start as usize + 40] {
        *b = 0;
    }
    let (_dir, wal) = reopen_with(&w, &bad);
    let err = wal.unwrap_err();
    assert_corrupt_at(&err, &w.segment, start, "zeroed record 4");
    assert!(
        err.to_string()
            .contains("was written after index 4 was synced"),
        "{err}"
    );
}

/// Several segments of a few records each.
fn segmented() -> (tempfile::TempDir, Vec<Entry>) {
    let dir = scratch();
    let mut wal = open(dir.path(), 200);
    let mut all_entries = Vec::new();
    for batch in 0..8u64 {
        let batch: Vec<Entry> = entries(batch * 5 + 1..=batch * 5 + 5, 1 + batch / 3);
        wal.append(&batch).unwrap();
        all_entries.extend(batch);
    }
    assert!(
        segment_files(dir.path()).len() >= 4,
        "{:?}",
        segment_files(dir.path())
    );
    (dir, all_entries)
}

#[test]
fn damage_in_a_sealed_segment_is_refused() {
    let (dir, _) = segmented();
    let files = segment_files(dir.path());
    for sealed in &files[..files.len() - 1] {
        let pristine = fs::read(sealed).unwrap();
        // The last byte of the segment (payload or padding of its last
        // record), and a cut of that record.
        let mut bad = pristine.clone();
        let last = bad.len() - 1;
        bad[last] ^= 0x40;
        fs::write(sealed, &bad).unwrap();
        let err = Wal::open(dir.path(), options(200)).unwrap_err();
        assert!(
            matches!(err, StorageError::Corrupt { ref path, .. } if path == sealed),
            "{err}"
        );
        fs::write(sealed, &pristine[..pristine.len() - 3]).unwrap();
        let err = Wal::open(dir.path(), options(200)).unwrap_err();
        assert!(
            matches!(err, StorageError::Corrupt { ref path, .. } if path == sealed),
            "{err}"
        );
        fs::write(sealed, &pristine).unwrap();
    }
    Wal::open(dir.path(), options(200)).unwrap();
}

#[test]
fn a_missing_segment_is_a_gap() {
    let (dir, _) = segmented();
    let files = segment_files(dir.path());
    fs::remove_file(&files[1]).unwrap();
    let err = Wal::open(dir.path(), options(200)).unwrap_err();
    assert!(matches!(err, StorageError::Gap { .. }), "{err}");
}

#[test]
fn a_segment_torn_while_created_is_deleted() {
    let (dir, written) = segmented();
    let next = written.len() as u64 + 1;
    let header = {
        // A genuine header for the next segment, from a scratch log.
        let other = scratch();
        let mut wal = open(other.path(), ONE_SEGMENT);
        wal.append(&[entry(next, 9)]).unwrap();
        drop(wal);
        fs::read(segment_files(other.path()).pop().unwrap()).unwrap()[..32].to_vec()
    };
    // A roll seals the current segment (cuts its preallocated rest) before
    // it creates the next one.
    let current = segment_files(dir.path()).pop().unwrap();
    let seal = || {
        let image = fs::read(&current).unwrap();
        fs::write(&current, &image[..data_end(&image) as usize]).unwrap();
    };
    let torn = dir.path().join(format!("{next:020}.wal"));
    for len in 0..32 {
        seal();
        fs::write(&torn, &header[..len]).unwrap();
        let wal = open(dir.path(), 200);
        assert_eq!(all(&wal), written, "header cut at {len}");
        assert!(!torn.exists());
    }
    // Preallocated: the header did not reach the disk, the reserved zeros did.
    for len in [0, 10, 31] {
        let mut image = header[..len].to_vec();
        image.resize(4096, 0);
        seal();
        fs::write(&torn, &image).unwrap();
        let wal = open(dir.path(), 200);
        assert_eq!(all(&wal), written, "preallocated, header cut at {len}");
        assert!(!torn.exists());
    }
    // A bad header with data after it is not a torn creation.
    let mut bad = header.clone();
    bad[20] ^= 1;
    bad.extend_from_slice(&[0xab; 40]);
    seal();
    fs::write(&torn, &bad).unwrap();
    let err = Wal::open(dir.path(), options(200)).unwrap_err();
    assert!(
        matches!(err, StorageError::Corrupt { offset: 0, .. }),
        "{err}"
    );
}

#[test]
fn the_first_segment_torn_while_created_leaves_an_empty_log() {
    let dir = scratch();
    fs::write(dir.path().join(format!("{:020}.wal", 1)), b"PRAETW").unwrap();
    let mut wal = open(dir.path(), ONE_SEGMENT);
    assert_eq!(wal.log_state().last, None);
    assert!(segment_files(dir.path()).is_empty());
    wal.append(&entries(1..=3, 1)).unwrap();
}

#[test]
fn a_record_in_the_wrong_place_is_refused_even_with_a_good_checksum() {
    let w = three_batches();
    // Swap two whole, valid records of the last batch.
    let (a0, a1) = w.spans[20];
    let (b0, b1) = w.spans[21];
    let mut bad = w.bytes[..a0 as usize].to_vec();
    bad.extend_from_slice(&w.bytes[b0 as usize..b1 as usize]);
    bad.extend_from_slice(&w.bytes[a0 as usize..a1 as usize]);
    bad.extend_from_slice(&w.bytes[b1 as usize..]);
    let (_dir, wal) = reopen_with(&w, &bad);
    let err = wal.unwrap_err();
    assert_corrupt_at(&err, &w.segment, a0, "swapped records");
    assert!(err.to_string().contains("expected 21"), "{err}");
}
