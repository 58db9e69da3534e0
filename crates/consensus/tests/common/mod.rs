//! Helpers shared by the log's integration tests.
#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};

use consensus::{Entry, Wal, WalOptions};

/// A scratch directory, in memory when the machine has /dev/shm: these tests
/// check what is in the files, not the disk, and sync thousands of times.
pub fn scratch() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    let builder = {
        let mut b = tempfile::Builder::new();
        b.prefix("praetor-wal-");
        b
    };
    if shm.is_dir() {
        if let Ok(dir) = builder.tempdir_in(shm) {
            return dir;
        }
    }
    builder.tempdir().expect("create a temporary directory")
}

/// Payload length of the entry at `index`: varied, zero included.
pub fn payload_len(index: u64) -> usize {
    ((index * 7) % 41) as usize
}

pub fn entry(index: u64, term: u64) -> Entry {
    entry_sized(index, term, payload_len(index))
}

pub fn entry_sized(index: u64, term: u64, len: usize) -> Entry {
    Entry {
        index,
        term,
        payload: (0..len)
            .map(|i| (index as usize * 31 + i * 7 + term as usize) as u8)
            .collect(),
    }
}

pub fn entries(indexes: std::ops::RangeInclusive<u64>, term: u64) -> Vec<Entry> {
    indexes.map(|i| entry(i, term)).collect()
}

/// Bytes one record takes on disk (the documented format).
pub fn record_size(payload: usize) -> u64 {
    32 + payload.next_multiple_of(8) as u64
}

pub const SEGMENT_HEADER: u64 = 32;

pub fn options(segment_size: u64) -> WalOptions {
    WalOptions {
        segment_size,
        preallocate: true, // the harder case: zeros after the end
    }
}

/// End of the records in a segment image, found by walking the documented
/// format (a valid record header is never all zeros: its CRC covers it).
pub fn data_end(bytes: &[u8]) -> u64 {
    let mut pos = SEGMENT_HEADER as usize;
    while pos + 32 <= bytes.len() && bytes[pos..pos + 32].iter().any(|b| *b != 0) {
        let len = u32::from_le_bytes(bytes[pos + 4..pos + 8].try_into().unwrap()) as usize;
        pos += record_size(len) as usize;
    }
    pos.min(bytes.len()) as u64
}

pub fn open(dir: &Path, segment_size: u64) -> Wal {
    Wal::open(dir, options(segment_size)).expect("open the log")
}

pub fn all(wal: &Wal) -> Vec<Entry> {
    wal.entries(..).expect("read the log")
}

/// Segment files in `dir`, in index order.
pub fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .expect("list")
        .map(|e| e.expect("list").path())
        .filter(|p| p.extension().is_some_and(|x| x == "wal"))
        .collect();
    files.sort();
    files
}

pub fn copy_dir(from: &Path, to: &Path) {
    for item in fs::read_dir(from).expect("list") {
        let item = item.expect("list");
        fs::copy(item.path(), to.join(item.file_name())).expect("copy");
    }
}
