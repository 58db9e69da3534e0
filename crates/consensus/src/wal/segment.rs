//! One segment file: its in-memory index, creation, and the recovery scan.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::format::{
    encode_segment_header, parse_record, peek_header, Invalid, ALIGN, RECORD_HEADER_LEN,
    SEGMENT_HEADER_LEN,
};
use crate::error::{Result, StorageError};
use crate::meta::sync_dir;

/// File name suffix of segments.
const SUFFIX: &str = ".wal";
/// Digits of the zero-padded base index in a segment's name.
const NAME_DIGITS: usize = 20;

/// A segment as the log keeps it open.
#[derive(Debug)]
pub(crate) struct Segment {
    /// Index of the first record this segment holds (or would hold).
    pub base: u64,
    pub path: PathBuf,
    pub file: Arc<File>,
    /// `offsets[i]` is the file offset of the record with index `base + i`.
    pub offsets: Vec<u32>,
    /// Bytes of valid data: the header and every record in `offsets`.
    pub len: u64,
}

impl Segment {
    /// The name of the segment whose first index is `base`.
    pub fn file_name(base: u64) -> String {
        format!("{base:0width$}{SUFFIX}", width = NAME_DIGITS)
    }

    /// The base index a segment file name encodes, or `None` if `name` is not
    /// a segment's.
    pub fn parse_name(name: &str) -> Option<u64> {
        let digits = name.strip_suffix(SUFFIX)?;
        if digits.len() != NAME_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        digits.parse().ok()
    }

    /// Creates an empty segment starting at `base`: the header is written
    /// and synced, and so is the directory entry, before any record goes in.
    /// So a segment whose header is unreadable never held a durable record.
    ///
    /// With `prealloc_to`, the file's blocks up to that size are reserved
    /// (and read as zeros) before the sync.
    pub fn create(dir: &Path, base: u64, prealloc_to: Option<u64>) -> Result<Segment> {
        let path = dir.join(Segment::file_name(base));
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| StorageError::io("create", &path, e))?;
        file.write_all(&encode_segment_header(base))
            .map_err(|e| StorageError::io("write", &path, e))?;
        if let Some(target) = prealloc_to {
            preallocate(&file, &path, SEGMENT_HEADER_LEN as u64, target)?;
        }
        file.sync_data()
            .map_err(|e| StorageError::io("fdatasync", &path, e))?;
        sync_dir(dir)?;
        Ok(Segment {
            base,
            path,
            file: Arc::new(file),
            offsets: Vec::new(),
            len: SEGMENT_HEADER_LEN as u64,
        })
    }

    /// The index the next record in this segment would have.
    pub fn next_index(&self) -> u64 {
        self.base + self.offsets.len() as u64
    }

    /// File offset just past the record at position `i` of `offsets`.
    pub fn record_end(&self, i: usize) -> u64 {
        match self.offsets.get(i + 1) {
            Some(next) => u64::from(*next),
            None => self.len,
        }
    }
}

/// Reserves the blocks of `file` from `from` up to `to` (extending its size
/// to `to` if needed); the new space reads as zeros. A no-op where the file
/// system or the platform cannot do it.
pub(crate) fn preallocate(file: &File, path: &Path, from: u64, to: u64) -> Result<()> {
    if to <= from {
        return Ok(());
    }
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let (Ok(offset), Ok(len)) = (
            libc::off_t::try_from(from),
            libc::off_t::try_from(to - from),
        ) else {
            return Ok(());
        };
        // SAFETY: `file` owns the descriptor for the whole call, and
        // fallocate reads no memory of ours.
        let rc = unsafe { libc::fallocate(file.as_raw_fd(), 0, offset, len) };
        if rc != 0 {
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EOPNOTSUPP) {
                return Ok(());
            }
            return Err(StorageError::io("fallocate", path, err));
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (file, path);
    Ok(())
}

/// The terms of the log, kept as runs: Raft terms change rarely, so one pair
/// per term change instead of one term per entry.
#[derive(Debug, Default, Clone)]
pub(crate) struct Terms {
    /// `(first index, term)`, both strictly increasing.
    runs: Vec<(u64, u64)>,
}

impl Terms {
    pub fn last_term(&self) -> Option<u64> {
        self.runs.last().map(|r| r.1)
    }

    /// Records that `index` (the next index) has `term`; `term` must not be
    /// below the last one.
    pub fn push(&mut self, index: u64, term: u64) {
        if self.last_term() != Some(term) {
            self.runs.push((index, term));
        }
    }

    /// The term of `index`, which the caller knows is in the log.
    pub fn term_at(&self, index: u64) -> Option<u64> {
        let run = self.runs.partition_point(|r| r.0 <= index);
        run.checked_sub(1).map(|r| self.runs[r].1)
    }

    /// Forgets every index from `next` on.
    pub fn truncate_from(&mut self, next: u64) {
        let keep = self.runs.partition_point(|r| r.0 < next);
        self.runs.truncate(keep);
    }

    /// Forgets runs that end before `first`.
    pub fn purge_before(&mut self, first: u64) {
        let starts_at_or_before = self.runs.partition_point(|r| r.0 <= first);
        if starts_at_or_before > 1 {
            self.runs.drain(..starts_at_or_before - 1);
        }
    }
}

/// Where and why a scan stopped before the end of the file.
#[derive(Debug)]
pub(crate) enum Stop {
    /// The bytes at `offset` are not a record. At the tail of the last segment
    /// that may be a torn write.
    Invalid { offset: usize, why: Invalid },
    /// A record with a valid checksum that does not belong here: never a torn
    /// write.
    Inconsistent { offset: usize, reason: String },
}

/// What a scan of one segment found.
#[derive(Debug)]
pub(crate) struct Scan {
    pub offsets: Vec<u32>,
    /// End of the valid prefix.
    pub end: usize,
    pub stop: Option<Stop>,
}

/// Reads every record of a segment image `buf` (header included) whose base
/// index is `base`, checking checksums, index continuity, non-decreasing terms
/// (continuing from `terms`, which it extends) and the `durable` field.
pub(crate) fn scan(buf: &[u8], base: u64, terms: &mut Terms) -> Scan {
    let mut offsets = Vec::new();
    let mut pos = SEGMENT_HEADER_LEN;
    let mut next = base;
    let stop = loop {
        if pos == buf.len() {
            break None;
        }
        let (header, size) = match parse_record(&buf[pos..]) {
            Ok(found) => found,
            Err(why) => break Some(Stop::Invalid { offset: pos, why }),
        };
        let inconsistent = if header.index != next {
            Some(format!(
                "record holds index {}, expected {next}",
                header.index
            ))
        } else if terms.last_term().is_some_and(|t| header.term < t) {
            Some(format!(
                "record {} has term {}, below the term {} before it",
                header.index,
                header.term,
                terms.last_term().unwrap_or_default()
            ))
        } else if header.durable > header.index || header.durable < base {
            Some(format!(
                "record {} claims durability up to {}, outside {base}..={}",
                header.index, header.durable, header.index
            ))
        } else {
            None
        };
        if let Some(reason) = inconsistent {
            break Some(Stop::Inconsistent {
                offset: pos,
                reason,
            });
        }
        offsets.push(pos as u32);
        terms.push(header.index, header.term);
        pos += size;
        next += 1;
    };
    let end = match &stop {
        Some(Stop::Invalid { offset, .. } | Stop::Inconsistent { offset, .. }) => *offset,
        None => pos,
    };
    Scan { offsets, end, stop }
}

/// Looks past a damaged spot at `from` (where record `expected` should be)
/// for a valid record that was written after `expected` had been synced.
/// Finding one proves the damage is not a torn write: a crash only damages
/// what was not yet synced, and a record's `durable` field claims only what
/// had been synced when that record was written.
///
/// Returns that record's offset and index.
pub(crate) fn find_later_durable(buf: &[u8], from: usize, expected: u64) -> Option<(usize, u64)> {
    let mut pos = from + ALIGN;
    while pos + RECORD_HEADER_LEN <= buf.len() {
        let header = peek_header(&buf[pos..]);
        if header.durable > expected
            && header.durable <= header.index
            && parse_record(&buf[pos..]).is_ok()
        {
            return Some((pos, header.index));
        }
        pos += ALIGN;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_others_are_ignored() {
        assert_eq!(Segment::file_name(7), "00000000000000000007.wal");
        assert_eq!(
            Segment::parse_name(&Segment::file_name(u64::MAX)),
            Some(u64::MAX)
        );
        for other in [
            "vote",
            "purged",
            "7.wal",
            "0000000000000000000x.wal",
            "00000000000000000007.wal.tmp",
        ] {
            assert_eq!(Segment::parse_name(other), None, "{other}");
        }
    }

    #[test]
    fn term_runs() {
        let mut t = Terms::default();
        for (i, term) in [(5, 1), (6, 1), (7, 3), (8, 3), (9, 4)] {
            t.push(i, term);
        }
        assert_eq!(t.runs, vec![(5, 1), (7, 3), (9, 4)]);
        assert_eq!(t.term_at(4), None);
        assert_eq!(t.term_at(6), Some(1));
        assert_eq!(t.term_at(8), Some(3));
        assert_eq!(t.term_at(100), Some(4));
        t.purge_before(8);
        assert_eq!(t.runs, vec![(7, 3), (9, 4)]);
        t.truncate_from(9);
        assert_eq!(t.runs, vec![(7, 3)]);
        t.truncate_from(7);
        assert_eq!(t.last_term(), None);
    }
}
