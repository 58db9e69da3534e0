//! The Raft log on disk: a segmented write-ahead log.
//!
//! Entries are appended to the newest *segment* file; when it reaches the
//! target size (64 MiB by default) the next entry starts a new one. Each
//! entry is one *record* with a CRC32C. An append writes the whole batch and
//! then calls `fdatasync` once (group commit); [`GroupCommit`] goes further
//! and lets many appends share one sync. Old entries go by deleting whole
//! segments ([`Wal::purge`]); a conflicting tail goes by truncating files
//! ([`Wal::truncate_after`]). Nothing is ever rewritten in place.
//!
//! # Guarantees
//!
//! - When [`Wal::append`] (or [`Wal::sync`] after [`Wal::write`]) returns
//!   `Ok`, the entries survive any later crash, power loss included.
//! - After a crash, [`Wal::open`] yields a prefix of what was written: every
//!   record up to some point, checksum-verified, with consecutive indexes and
//!   non-decreasing terms. Never a damaged or out-of-order record.
//! - Damage that a crash can explain (a torn tail of the last, unsynced
//!   batch) is cut off durably, with a warning. Damage that a crash cannot
//!   explain (a bad record with records after it that were written once it
//!   was durable, or a bad record in a sealed segment) makes `open` fail with
//!   [`StorageError::Corrupt`] naming the file and offset: the log refuses to
//!   drop acknowledged entries silently.
//!
//! # On-disk format (version 1)
//!
//! All integers are little-endian. CRCs are CRC32C (Castagnoli).
//!
//! The directory holds segment files named by their base index as 20 decimal
//! digits plus `.wal` (`00000000000000000001.wal`), and the `purged` metadata
//! file (format in [`crate::meta`]) with the last purged log id.
//!
//! A segment file is a 32-byte header followed by records:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | magic `PRAETWAL` |
//! | 8 | 4 | format version, `1` |
//! | 12 | 4 | reserved, zero |
//! | 16 | 8 | base index: the index of the segment's first record |
//! | 24 | 4 | reserved, zero |
//! | 28 | 4 | CRC32C of bytes `0..28` |
//!
//! A record is a 32-byte header, the payload, and zero padding to a multiple
//! of 8 bytes (so every record starts 8-aligned):
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | CRC32C of header bytes `4..32` followed by the payload (padding not covered) |
//! | 4 | 4 | payload length `n`, at most 64 MiB |
//! | 8 | 8 | Raft index |
//! | 16 | 8 | Raft term |
//! | 24 | 8 | `durable`: every record with a smaller index was synced before this one was written |
//! | 32 | n | payload: the encoded Raft entry, opaque here |
//! | 32+n | 0-7 | padding, zero |
//!
//! Within a segment, indexes are consecutive from the base index; the next
//! segment's base index is one past the previous segment's last record.
//! The current (last) segment may end in zeros (preallocated space, see
//! [`WalOptions::preallocate`]); a sealed segment ends with its last record.
//!
//! # Recovery
//!
//! [`Wal::open`] reads every segment in index order. Segments other than the
//! last are *sealed*: the log cut them to their last record and synced them
//! before creating the next one, so any invalid byte in them is corruption.
//! In the last segment the scan stops at the first record that is short, has
//! a bad length, a bad checksum or non-zero padding. If only zeros follow,
//! that is the end of the log. Otherwise: a crash can tear any record
//! written since the last sync (the page cache writes pages back in any
//! order, so later records may survive an earlier torn one), but cannot touch
//! anything synced. Each record's `durable` field says how much of the log
//! had been synced when it was written, so it settles the question: if a
//! valid record further on says the damaged index was already durable, the
//! damage is corruption and `open` fails; otherwise it is a torn tail and the
//! file is truncated at the damaged record (and synced). A last segment whose header is unreadable and
//! that holds nothing but zeros after it was torn while being created
//! (headers are synced before any record goes in) and is deleted.
//!
//! Damage to the last synced batch when nothing was written after it looks
//! exactly like a torn write and is truncated like one: no format can tell the
//! two apart without a second sync per batch.

mod format;
mod group;
mod segment;

use std::fs;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Result, StorageError};
use crate::meta::{self, Kind};
use crate::LogId;
use format::{encode_record, parse_record, payload, SEGMENT_HEADER_LEN};
use segment::{find_later_durable, preallocate, scan, Segment, Stop, Terms};

pub use format::MAX_PAYLOAD;
pub use group::GroupCommit;

/// The default target size of one segment file.
pub const DEFAULT_SEGMENT_SIZE: u64 = 64 << 20;
/// The largest target size allowed (record offsets are kept as `u32`).
pub const MAX_SEGMENT_SIZE: u64 = 1 << 30;
/// Buffered records are written out once they exceed this, so a huge batch
/// does not need a huge buffer.
const WRITE_CHUNK: usize = 1 << 20;

/// How a [`Wal`] lays out its files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalOptions {
    /// A new segment is started before the first record that would go in once
    /// the current one has reached this many bytes. Clamped to
    /// `1..=MAX_SEGMENT_SIZE`.
    pub segment_size: u64,
    /// Reserve each new segment's blocks up front (`fallocate`) so that an
    /// append's `fdatasync` need not also commit a new file size. Off by
    /// default: on this project's machines (ext4 on a virtual disk) it made
    /// no difference (`examples/wal_bench.rs`, medians of 9 interleaved
    /// rounds: 342 vs 321 syncs/s at batch 1, 22.4k vs 22.9k entries/s at
    /// batch 64), since ext4 still journals the conversion of the reserved
    /// blocks on first write. Ignored where the file system cannot do it.
    pub preallocate: bool,
}

impl Default for WalOptions {
    fn default() -> Self {
        WalOptions {
            segment_size: DEFAULT_SEGMENT_SIZE,
            preallocate: false,
        }
    }
}

/// One Raft log entry as the log stores it: its id and its encoded payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub index: u64,
    pub term: u64,
    pub payload: Vec<u8>,
}

impl Entry {
    pub fn log_id(&self) -> LogId {
        LogId {
            term: self.term,
            index: self.index,
        }
    }
}

/// What openraft's `get_log_state` reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LogState {
    /// The last purged log id, if any entry was ever purged.
    pub last_purged: Option<LogId>,
    /// The last entry's id; if the log holds no entry, the last purged id.
    pub last: Option<LogId>,
}

/// A shareable handle on the file a sync must cover, taken under the log's
/// lock and synced outside it (see [`GroupCommit`]).
#[derive(Debug)]
pub(crate) struct SyncTicket {
    file: Arc<fs::File>,
    path: PathBuf,
    /// Everything below this index is written to `file` (or earlier files).
    upto: u64,
    generation: u64,
}

impl SyncTicket {
    pub(crate) fn sync(&self) -> io::Result<()> {
        self.file.sync_data()
    }
}

/// The segmented write-ahead log of one Raft server.
///
/// One owner mutates it (`&mut self`); reads take `&self`. For appends from
/// a pipeline that should share syncs, wrap it in [`GroupCommit`].
#[derive(Debug)]
pub struct Wal {
    dir: PathBuf,
    segment_size: u64,
    preallocate: bool,
    /// In index order; the last is the one appended to.
    segments: Vec<Segment>,
    purged: Option<LogId>,
    terms: Terms,
    /// Every record with an index below this is on stable storage.
    durable_next: u64,
    /// Bumped by every roll and truncation, which sync by themselves, so a
    /// sync that was in flight across one does not claim newer records.
    generation: u64,
    failed: bool,
    buf: Vec<u8>,
}

impl Wal {
    /// Opens the log in `dir` (creating it if needed) and recovers it: see
    /// the module docs. Fails rather than lose an entry that was reported
    /// durable.
    pub fn open(dir: impl AsRef<Path>, options: WalOptions) -> Result<Wal> {
        let dir = dir.as_ref().to_path_buf();
        fs::create_dir_all(&dir).map_err(|e| StorageError::io("create dir", &dir, e))?;
        meta::remove_stale_temp(&dir, Kind::Purged)?;
        let purged =
            match meta::read_frame(&dir, Kind::Purged)? {
                Some(body) => Some(meta::decode_purged(&body).map_err(|reason| {
                    StorageError::CorruptMeta {
                        path: dir.join("purged"),
                        reason,
                    }
                })?),
                None => None,
            };

        let segment_size = options.segment_size.clamp(1, MAX_SEGMENT_SIZE);
        let prealloc_to = options.preallocate.then_some(segment_size);
        let mut found = list_segments(&dir)?;
        // A crash in the middle of a purge leaves segments that the purge
        // marker already covers; finish deleting them.
        if let Some(p) = purged {
            let first_kept = p.index.saturating_add(1);
            while found.len() >= 2 && found[1].0 <= first_kept {
                remove_segment_file(&dir, &found[0].1)?;
                found.remove(0);
            }
        }

        let mut segments: Vec<Segment> = Vec::with_capacity(found.len());
        let mut terms = Terms::default();
        let count = found.len();
        for (i, (base, path)) in found.into_iter().enumerate() {
            let last = i + 1 == count;
            let recovered = recover_segment(&dir, base, path, last, &segments, &mut terms)?;
            if let Some(segment) = recovered {
                segments.push(segment);
            }
        }

        if let Some(p) = purged {
            let first_kept = p.index.saturating_add(1);
            if segments.len() == 1 && segments[0].next_index() <= first_kept {
                // The whole log was purged (past its end) before the crash.
                let segment = segments.remove(0);
                remove_segment_file(&dir, &segment.path)?;
                terms = Terms::default();
            }
            if let Some(first) = segments.first() {
                if first.base > first_kept {
                    return Err(StorageError::Gap {
                        reason: format!(
                            "entries up to {} are purged but {} starts at {}",
                            p.index,
                            first.path.display(),
                            first.base
                        ),
                    });
                }
            }
            terms.purge_before(first_kept);
        }

        if let (Some(target), Some(segment)) = (prealloc_to, segments.last()) {
            preallocate(&segment.file, &segment.path, segment.len, target)?;
        }

        // Whatever survived is now the log; a process crash (not a machine
        // crash) can leave it written but unsynced, so sync it before
        // building on it.
        let mut durable_next = 0;
        if let Some(segment) = segments.last() {
            segment
                .file
                .sync_data()
                .map_err(|e| StorageError::io("fdatasync", &segment.path, e))?;
            durable_next = segment.next_index();
        }

        Ok(Wal {
            dir,
            segment_size,
            preallocate: options.preallocate,
            segments,
            purged,
            terms,
            durable_next,
            generation: 0,
            failed: false,
            buf: Vec::new(),
        })
    }

    /// The directory the log lives in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The last purged id and the last id, as openraft's `get_log_state`.
    pub fn log_state(&self) -> LogState {
        LogState {
            last_purged: self.purged,
            last: self.last_entry_id().or(self.purged),
        }
    }

    /// The last purged log id.
    pub fn last_purged(&self) -> Option<LogId> {
        self.purged
    }

    /// The index of the first entry that can be read, if any.
    pub fn first_index(&self) -> Option<u64> {
        let first = self.segments.first()?.base.max(self.first_unpurged());
        (first < self.segments.last()?.next_index()).then_some(first)
    }

    /// The index of the last entry that can be read, if any.
    pub fn last_index(&self) -> Option<u64> {
        self.last_entry_id().map(|id| id.index)
    }

    /// The index the next appended entry must have; `None` if the log is
    /// empty and was never purged, so any index may start it.
    pub fn next_index(&self) -> Option<u64> {
        match self.segments.last() {
            Some(segment) => Some(segment.next_index()),
            None => self.purged.map(|p| p.index.saturating_add(1)),
        }
    }

    /// The index below which every entry is on stable storage (after `open`,
    /// everything recovered is).
    pub fn durable_next(&self) -> u64 {
        self.durable_next
    }

    /// The term of the entry at `index`, also for the last purged id.
    pub fn term_at(&self, index: u64) -> Option<u64> {
        if self.purged.is_some_and(|p| p.index == index) {
            return self.purged.map(|p| p.term);
        }
        let first = self.first_index()?;
        let next = self.segments.last()?.next_index();
        if index < first || index >= next {
            return None;
        }
        self.terms.term_at(index)
    }

    /// The entry at `index`, if the log holds it.
    pub fn entry(&self, index: u64) -> Result<Option<Entry>> {
        Ok(self.entries(index..=index)?.pop())
    }

    /// The entries whose indexes are in `range` and in the log (purged and
    /// not-yet-written indexes are left out), in order, checksum-verified.
    pub fn entries(&self, range: impl RangeBounds<u64>) -> Result<Vec<Entry>> {
        let (Some(first), Some(last)) = (self.first_index(), self.last_index()) else {
            return Ok(Vec::new());
        };
        let lo = match range.start_bound() {
            Bound::Included(i) => *i,
            Bound::Excluded(i) => i.saturating_add(1),
            Bound::Unbounded => first,
        }
        .max(first);
        let hi = match range.end_bound() {
            Bound::Included(i) => *i,
            Bound::Excluded(i) => match i.checked_sub(1) {
                Some(i) => i,
                None => return Ok(Vec::new()),
            },
            Bound::Unbounded => last,
        }
        .min(last);
        if lo > hi {
            return Ok(Vec::new());
        }
        let mut out = Vec::with_capacity((hi - lo + 1).min(1 << 16) as usize);
        let mut seg_at = self.segments.partition_point(|s| s.base <= lo) - 1;
        let mut index = lo;
        while index <= hi {
            let segment = &self.segments[seg_at];
            let from = (index - segment.base) as usize;
            let to = (hi.min(segment.next_index() - 1) - segment.base) as usize;
            read_records(segment, from, to, &mut out)?;
            index = segment.base + to as u64 + 1;
            seg_at += 1;
        }
        Ok(out)
    }

    /// Appends `entries` and returns once they are on stable storage: one
    /// write per megabyte of records, one `fdatasync` for the whole slice.
    ///
    /// To ensure correctness:
    /// - the first entry's index must be [`Wal::next_index`] (any index when
    ///   that is `None`), indexes consecutive, terms never going down;
    ///   otherwise nothing is written and [`StorageError::OutOfOrder`] returns;
    /// - on `Ok`, the entries survive any crash;
    /// - on an IO error the log is [`StorageError::Failed`] until reopened;
    ///   the entries may or may not be there after reopening.
    pub fn append(&mut self, entries: &[Entry]) -> Result<()> {
        self.write(entries)?;
        self.sync()
    }

    /// Writes `entries` like [`Wal::append`] but does not sync: they are
    /// readable at once and durable after the next [`Wal::sync`] (or a
    /// segment roll, truncation or [`GroupCommit`] sync).
    pub fn write(&mut self, entries: &[Entry]) -> Result<()> {
        self.check_usable()?;
        self.check_order(entries)?;
        if entries.is_empty() {
            return Ok(());
        }
        let written = self.write_checked(entries);
        if written.is_err() {
            self.failed = true;
        } else {
            for entry in entries {
                self.terms.push(entry.index, entry.term);
            }
        }
        written
    }

    /// Makes everything written so far durable (one `fdatasync` of the
    /// current segment; earlier segments were synced when they were sealed).
    pub fn sync(&mut self) -> Result<()> {
        self.check_usable()?;
        let Some(segment) = self.segments.last() else {
            return Ok(());
        };
        if self.durable_next >= segment.next_index() {
            return Ok(());
        }
        if let Err(e) = segment.file.sync_data() {
            self.failed = true;
            return Err(StorageError::io("fdatasync", &segment.path, e));
        }
        self.durable_next = segment.next_index();
        Ok(())
    }

    /// Removes every entry after `last_kept` (every entry, for `None`) and
    /// returns once that is durable. Later segments are deleted newest
    /// first, so a crash in the middle leaves a prefix of the old log.
    ///
    /// To ensure correctness: `last_kept` must not be below the last purged
    /// index (purged entries are committed); otherwise nothing changes and
    /// [`StorageError::TruncatePurged`] returns.
    pub fn truncate_after(&mut self, last_kept: Option<u64>) -> Result<()> {
        self.check_usable()?;
        if let Some(p) = self.purged {
            if last_kept.is_none_or(|k| k < p.index) {
                return Err(StorageError::TruncatePurged {
                    requested: last_kept,
                    purged: p.index,
                });
            }
        }
        let next = match last_kept {
            None => 0,
            Some(k) => match k.checked_add(1) {
                Some(next) => next,
                None => return Ok(()),
            },
        };
        if self.next_index().is_none_or(|n| n <= next) {
            return Ok(());
        }
        let truncated = self.truncate_from(next);
        if truncated.is_err() {
            self.failed = true;
        }
        truncated
    }

    /// Forgets every entry up to and including `upto` (openraft calls this
    /// once a snapshot covers them; `upto` may lie past the last entry).
    /// The purged id is saved first (temp file, fsync, rename, fsync dir),
    /// then every segment holding only purged entries is deleted, oldest
    /// first. A segment that also holds later entries stays whole: purging
    /// never rewrites a file. A purge at or below the last one does nothing.
    pub fn purge(&mut self, upto: LogId) -> Result<()> {
        self.check_usable()?;
        if self.purged.is_some_and(|p| p.index >= upto.index) {
            return Ok(());
        }
        meta::write_frame(&self.dir, Kind::Purged, &meta::encode_purged(upto))?;
        self.purged = Some(upto);
        let first_kept = upto.index.saturating_add(1);
        while let Some(first) = self.segments.first() {
            let covered = match self.segments.get(1) {
                Some(second) => second.base <= first_kept,
                None => first.next_index() <= first_kept,
            };
            if !covered {
                break;
            }
            remove_segment_file(&self.dir, &first.path)?;
            self.segments.remove(0);
        }
        if self.segments.is_empty() {
            self.terms = Terms::default();
            self.durable_next = first_kept;
        } else {
            self.terms.purge_before(first_kept);
        }
        Ok(())
    }

    /// Takes what a sync outside the log's lock needs; `None` if everything
    /// written is already durable.
    pub(crate) fn sync_ticket(&self) -> Result<Option<SyncTicket>> {
        self.check_usable()?;
        Ok(self.segments.last().and_then(|segment| {
            (self.durable_next < segment.next_index()).then(|| SyncTicket {
                file: Arc::clone(&segment.file),
                path: segment.path.clone(),
                upto: segment.next_index(),
                generation: self.generation,
            })
        }))
    }

    /// Records the outcome of a sync taken with [`Wal::sync_ticket`].
    pub(crate) fn finish_sync(
        &mut self,
        ticket: &SyncTicket,
        outcome: io::Result<()>,
    ) -> Result<()> {
        if let Err(e) = outcome {
            self.failed = true;
            return Err(StorageError::io("fdatasync", &ticket.path, e));
        }
        if ticket.generation == self.generation {
            self.durable_next = self.durable_next.max(ticket.upto);
        }
        Ok(())
    }

    fn check_usable(&self) -> Result<()> {
        if self.failed {
            Err(StorageError::Failed)
        } else {
            Ok(())
        }
    }

    fn first_unpurged(&self) -> u64 {
        self.purged.map_or(0, |p| p.index.saturating_add(1))
    }

    fn last_entry_id(&self) -> Option<LogId> {
        let last = self.segments.last()?.next_index().checked_sub(1)?;
        if last < self.first_index()? {
            return None;
        }
        Some(LogId {
            term: self.terms.term_at(last)?,
            index: last,
        })
    }

    fn check_order(&self, entries: &[Entry]) -> Result<()> {
        let mut expected = self.next_index();
        let mut term = self.log_state().last.map(|id| id.term);
        for entry in entries {
            if let Some(expected) = expected {
                if entry.index != expected {
                    return Err(StorageError::OutOfOrder {
                        reason: format!("entry has index {}, expected {expected}", entry.index),
                    });
                }
            }
            if let Some(term) = term {
                if entry.term < term {
                    return Err(StorageError::OutOfOrder {
                        reason: format!(
                            "entry {} has term {}, below the previous term {term}",
                            entry.index, entry.term
                        ),
                    });
                }
            }
            if entry.payload.len() > MAX_PAYLOAD {
                return Err(StorageError::TooLarge {
                    index: entry.index,
                    len: entry.payload.len(),
                    max: MAX_PAYLOAD,
                });
            }
            expected =
                Some(
                    entry
                        .index
                        .checked_add(1)
                        .ok_or_else(|| StorageError::OutOfOrder {
                            reason: "index overflows u64".to_string(),
                        })?,
                );
            term = Some(entry.term);
        }
        Ok(())
    }

    fn write_checked(&mut self, entries: &[Entry]) -> Result<()> {
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        let mut pending: Vec<u32> = Vec::new();
        let outcome = (|| {
            for entry in entries {
                let roll = match self.segments.last() {
                    None => true,
                    Some(s) => {
                        s.len + buf.len() as u64 >= self.segment_size
                            && !(s.offsets.is_empty() && pending.is_empty())
                    }
                };
                if roll {
                    self.roll(entry.index, &mut buf, &mut pending)?;
                }
                let Some(segment) = self.segments.last() else {
                    unreachable!("roll always leaves a segment");
                };
                pending.push((segment.len + buf.len() as u64) as u32);
                encode_record(
                    &mut buf,
                    entry.index,
                    entry.term,
                    self.durable_next,
                    &entry.payload,
                );
                if buf.len() >= WRITE_CHUNK {
                    self.flush(&mut buf, &mut pending)?;
                }
            }
            self.flush(&mut buf, &mut pending)
        })();
        buf.clear();
        self.buf = buf;
        outcome
    }

    /// Seals the current segment (flush, cut the preallocated rest, sync)
    /// and starts one at `base`.
    fn roll(&mut self, base: u64, buf: &mut Vec<u8>, pending: &mut Vec<u32>) -> Result<()> {
        self.flush(buf, pending)?;
        if let Some(segment) = self.segments.last() {
            segment
                .file
                .set_len(segment.len)
                .map_err(|e| StorageError::io("truncate", &segment.path, e))?;
            segment
                .file
                .sync_data()
                .map_err(|e| StorageError::io("fdatasync", &segment.path, e))?;
        }
        let prealloc_to = self.preallocate.then_some(self.segment_size);
        let segment = Segment::create(&self.dir, base, prealloc_to)?;
        self.segments.push(segment);
        self.durable_next = base;
        self.generation += 1;
        Ok(())
    }

    fn flush(&mut self, buf: &mut Vec<u8>, pending: &mut Vec<u32>) -> Result<()> {
        if buf.is_empty() {
            return Ok(());
        }
        let Some(segment) = self.segments.last_mut() else {
            unreachable!("records are only buffered for an existing segment");
        };
        segment
            .file
            .write_all_at(buf, segment.len)
            .map_err(|e| StorageError::io("write", &segment.path, e))?;
        segment.len += buf.len() as u64;
        segment.offsets.append(pending);
        buf.clear();
        Ok(())
    }

    fn truncate_from(&mut self, next: u64) -> Result<()> {
        while let Some(last) = self.segments.last() {
            if last.base < next {
                break;
            }
            remove_segment_file(&self.dir, &last.path)?;
            self.segments.pop();
        }
        if let Some(segment) = self.segments.last_mut() {
            if segment.next_index() > next {
                let keep = (next - segment.base) as usize;
                let new_len = u64::from(segment.offsets[keep]);
                segment
                    .file
                    .set_len(new_len)
                    .map_err(|e| StorageError::io("truncate", &segment.path, e))?;
                segment
                    .file
                    .sync_data()
                    .map_err(|e| StorageError::io("fdatasync", &segment.path, e))?;
                segment.offsets.truncate(keep);
                segment.len = new_len;
            }
            if self.preallocate {
                preallocate(&segment.file, &segment.path, segment.len, self.segment_size)?;
            }
        }
        self.terms.truncate_from(next);
        self.durable_next = next;
        self.generation += 1;
        Ok(())
    }
}

/// Segment files in `dir`, by base index.
fn list_segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let mut found = Vec::new();
    let listing = fs::read_dir(dir).map_err(|e| StorageError::io("list", dir, e))?;
    for item in listing {
        let item = item.map_err(|e| StorageError::io("list", dir, e))?;
        let name = item.file_name();
        if let Some(base) = name.to_str().and_then(Segment::parse_name) {
            found.push((base, item.path()));
        }
    }
    found.sort_unstable_by_key(|(base, _)| *base);
    Ok(found)
}

fn remove_segment_file(dir: &Path, path: &Path) -> Result<()> {
    fs::remove_file(path).map_err(|e| StorageError::io("remove", path, e))?;
    meta::sync_dir(dir)
}

/// Opens, checks and (for the last segment) repairs one segment. Returns
/// `None` for a last segment torn while it was being created (deleted).
fn recover_segment(
    dir: &Path,
    base: u64,
    path: PathBuf,
    last: bool,
    before: &[Segment],
    terms: &mut Terms,
) -> Result<Option<Segment>> {
    let file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|e| StorageError::io("open", &path, e))?;
    let size = file
        .metadata()
        .map_err(|e| StorageError::io("stat", &path, e))?
        .len();
    let corrupt = |offset: u64, reason: String| StorageError::Corrupt {
        path: path.clone(),
        offset,
        reason,
    };
    if size > u64::from(u32::MAX) {
        return Err(corrupt(
            0,
            format!("segment is {size} bytes, larger than any segment this log writes"),
        ));
    }
    let mut bytes = vec![0u8; size as usize];
    file.read_exact_at(&mut bytes, 0)
        .map_err(|e| StorageError::io("read", &path, e))?;

    match format::decode_segment_header(&bytes) {
        Ok(found) if found == base => {}
        Ok(found) => {
            return Err(corrupt(
                0,
                format!("header says base index {found}, the file name says {base}"),
            ));
        }
        Err(reason) if last && is_zero(bytes.get(SEGMENT_HEADER_LEN..).unwrap_or_default()) => {
            tracing::warn!(path = %path.display(), %reason, "deleting a log segment torn while it was created");
            drop(file);
            remove_segment_file(dir, &path)?;
            return Ok(None);
        }
        Err(reason) => return Err(corrupt(0, reason)),
    }
    if let Some(prev) = before.last() {
        if prev.next_index() != base {
            return Err(StorageError::Gap {
                reason: format!(
                    "{} ends before index {} but {} starts at {base}",
                    prev.path.display(),
                    prev.next_index(),
                    path.display()
                ),
            });
        }
    }

    let found = scan(&bytes, base, terms);
    match found.stop {
        None => {}
        Some(Stop::Inconsistent { offset, reason }) => return Err(corrupt(offset as u64, reason)),
        Some(Stop::Invalid { offset, why }) if !last => {
            return Err(corrupt(
                offset as u64,
                format!(
                    "{} in a sealed segment (later segments exist)",
                    why.describe()
                ),
            ));
        }
        Some(Stop::Invalid { offset, .. }) if is_zero(&bytes[offset..]) => {
            // The clean end of a preallocated segment (or of a file whose
            // size reached the disk before its last records did).
        }
        Some(Stop::Invalid { offset, why }) => {
            let expected = base + found.offsets.len() as u64;
            if let Some((at, index)) = find_later_durable(&bytes, offset, expected) {
                return Err(corrupt(
                    offset as u64,
                    format!(
                        "{} where index {expected} should be, but the valid record of index {index} at offset {at} was written after index {expected} was synced",
                        why.describe()
                    ),
                ));
            }
            tracing::warn!(
                path = %path.display(),
                offset,
                dropped_bytes = bytes.len() - offset,
                reason = why.describe(),
                "truncating the torn tail of the log"
            );
            file.set_len(offset as u64)
                .map_err(|e| StorageError::io("truncate", &path, e))?;
            file.sync_data()
                .map_err(|e| StorageError::io("fdatasync", &path, e))?;
        }
    }
    Ok(Some(Segment {
        base,
        path,
        file: Arc::new(file),
        offsets: found.offsets,
        len: found.end as u64,
    }))
}

fn is_zero(bytes: &[u8]) -> bool {
    bytes.iter().all(|b| *b == 0)
}

/// Reads the records at positions `from..=to` of `segment` with one read and
/// verifies each.
fn read_records(segment: &Segment, from: usize, to: usize, out: &mut Vec<Entry>) -> Result<()> {
    let start = u64::from(segment.offsets[from]);
    let end = segment.record_end(to);
    let mut bytes = vec![0u8; (end - start) as usize];
    segment
        .file
        .read_exact_at(&mut bytes, start)
        .map_err(|e| StorageError::io("read", &segment.path, e))?;
    for i in from..=to {
        let at = (u64::from(segment.offsets[i]) - start) as usize;
        let until = (segment.record_end(i) - start) as usize;
        let expected = segment.base + i as u64;
        let corrupt = |reason: String| StorageError::Corrupt {
            path: segment.path.clone(),
            offset: start + at as u64,
            reason,
        };
        let (header, _) =
            parse_record(&bytes[at..until]).map_err(|why| corrupt(why.describe().to_string()))?;
        if header.index != expected {
            return Err(corrupt(format!(
                "record holds index {}, expected {expected}",
                header.index
            )));
        }
        out.push(Entry {
            index: header.index,
            term: header.term,
            payload: payload(&bytes[at..until], &header),
        });
    }
    Ok(())
}
