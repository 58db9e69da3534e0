//! Small metadata files replaced atomically: the Raft vote, the committed log
//! id, and (for the log) the last purged log id.
//!
//! Raft's vote is about *when* (which term this server is in and whom it voted
//! for); the log is about *what*. A vote must never go backwards across a
//! crash, or a server could vote twice in one term. So a new value is never
//! written over the old one in place:
//!
//! 1. write the whole file to `NAME.tmp` and `fsync` it;
//! 2. `rename` it over `NAME` (atomic on POSIX file systems);
//! 3. `fsync` the directory, so the rename itself is durable.
//!
//! After a crash either the old or the new file is there, never a mix; a
//! leftover `NAME.tmp` is deleted on open.
//!
//! # File format
//!
//! Every metadata file is one frame, little-endian:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | magic `PRMT` |
//! | 4 | 2 | format version, `1` |
//! | 6 | 2 | kind: `1` vote, `2` committed, `3` purged |
//! | 8 | 4 | body length `n` |
//! | 12 | n | body |
//! | 12+n | 4 | CRC32C (Castagnoli) of bytes `0..12+n` |
//!
//! Bodies:
//!
//! - vote (17 bytes): term `u64`; flags `u8` (bit 0: `voted_for` present,
//!   bit 1: committed; other bits zero); voted_for `u64` (zero when absent).
//! - committed (17 bytes): flags `u8` (bit 0: present); term `u64`; index `u64`.
//! - purged (16 bytes): term `u64`; index `u64`.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::error::{Result, StorageError};
use crate::LogId;

const MAGIC: [u8; 4] = *b"PRMT";
const VERSION: u16 = 1;
const FRAME_HEAD: usize = 12;
const FRAME_TAIL: usize = 4;
/// No metadata body is anywhere near this; a larger length is damage.
const MAX_BODY: usize = 4096;

/// Which metadata file a frame belongs to (its `kind` field).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Vote = 1,
    Committed = 2,
    Purged = 3,
}

impl Kind {
    fn file_name(self) -> &'static str {
        match self {
            Kind::Vote => "vote",
            Kind::Committed => "committed",
            Kind::Purged => "purged",
        }
    }

    fn temp_name(self) -> &'static str {
        match self {
            Kind::Vote => "vote.tmp",
            Kind::Committed => "committed.tmp",
            Kind::Purged => "purged.tmp",
        }
    }
}

/// A Raft vote: the term this server is in, whom it voted for in that term,
/// and whether that leader was granted by a quorum (openraft's "committed"
/// vote).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Vote {
    pub term: u64,
    pub voted_for: Option<u64>,
    pub committed: bool,
}

/// The vote and the committed log id of one Raft server, kept in one
/// directory.
#[derive(Debug)]
pub struct Meta {
    dir: PathBuf,
    vote: Option<Vote>,
    committed: Option<LogId>,
}

impl Meta {
    /// Opens (creating if needed) the metadata in `dir`, deletes temporary
    /// files left by a crash mid-update, and reads the current values.
    pub fn open(dir: impl AsRef<Path>) -> Result<Meta> {
        let dir = dir.as_ref().to_path_buf();
        fs::create_dir_all(&dir).map_err(|e| StorageError::io("create dir", &dir, e))?;
        remove_stale_temp(&dir, Kind::Vote)?;
        remove_stale_temp(&dir, Kind::Committed)?;
        let vote = match read_frame(&dir, Kind::Vote)? {
            Some(body) => Some(
                decode_vote(&body).map_err(|reason| StorageError::CorruptMeta {
                    path: dir.join(Kind::Vote.file_name()),
                    reason,
                })?,
            ),
            None => None,
        };
        let committed = match read_frame(&dir, Kind::Committed)? {
            Some(body) => decode_committed(&body).map_err(|reason| StorageError::CorruptMeta {
                path: dir.join(Kind::Committed.file_name()),
                reason,
            })?,
            None => None,
        };
        Ok(Meta {
            dir,
            vote,
            committed,
        })
    }

    /// The last saved vote, if any was ever saved.
    pub fn vote(&self) -> Option<Vote> {
        self.vote
    }

    /// Saves `vote` durably; returns after the rename is on disk.
    ///
    /// To ensure correctness: when this returns `Ok`, a crash at any later
    /// instant reopens with exactly this vote. When it returns `Err`, the file
    /// holds either the previous vote or this one, and [`Meta::vote`] still
    /// reports the previous one.
    pub fn save_vote(&mut self, vote: &Vote) -> Result<()> {
        write_frame(&self.dir, Kind::Vote, &encode_vote(vote))?;
        self.vote = Some(*vote);
        Ok(())
    }

    /// The last saved committed log id.
    pub fn committed(&self) -> Option<LogId> {
        self.committed
    }

    /// Saves the committed log id durably (openraft may call this to restart
    /// with a known commit index; it is an optimisation, not needed for
    /// safety).
    pub fn save_committed(&mut self, committed: Option<LogId>) -> Result<()> {
        write_frame(&self.dir, Kind::Committed, &encode_committed(committed))?;
        self.committed = committed;
        Ok(())
    }
}

fn encode_vote(vote: &Vote) -> [u8; 17] {
    let mut body = [0u8; 17];
    body[0..8].copy_from_slice(&vote.term.to_le_bytes());
    let mut flags = 0u8;
    if vote.voted_for.is_some() {
        flags |= 1;
    }
    if vote.committed {
        flags |= 2;
    }
    body[8] = flags;
    body[9..17].copy_from_slice(&vote.voted_for.unwrap_or(0).to_le_bytes());
    body
}

fn decode_vote(body: &[u8]) -> Result<Vote, String> {
    if body.len() != 17 {
        return Err(format!("vote body is {} bytes, expected 17", body.len()));
    }
    let flags = body[8];
    if flags & !3 != 0 {
        return Err(format!("unknown vote flags {flags:#04x}"));
    }
    let voted_for = u64_at(body, 9);
    if flags & 1 == 0 && voted_for != 0 {
        return Err("voted_for is set but flagged absent".to_string());
    }
    Ok(Vote {
        term: u64_at(body, 0),
        voted_for: (flags & 1 != 0).then_some(voted_for),
        committed: flags & 2 != 0,
    })
}

fn encode_committed(committed: Option<LogId>) -> [u8; 17] {
    let mut body = [0u8; 17];
    if let Some(id) = committed {
        body[0] = 1;
        body[1..9].copy_from_slice(&id.term.to_le_bytes());
        body[9..17].copy_from_slice(&id.index.to_le_bytes());
    }
    body
}

fn decode_committed(body: &[u8]) -> Result<Option<LogId>, String> {
    if body.len() != 17 {
        return Err(format!(
            "committed body is {} bytes, expected 17",
            body.len()
        ));
    }
    match body[0] {
        0 if body[1..].iter().all(|b| *b == 0) => Ok(None),
        0 => Err("committed log id flagged absent but not zero".to_string()),
        1 => Ok(Some(LogId {
            term: u64_at(body, 1),
            index: u64_at(body, 9),
        })),
        other => Err(format!("unknown committed flags {other:#04x}")),
    }
}

pub(crate) fn encode_purged(id: LogId) -> [u8; 16] {
    let mut body = [0u8; 16];
    body[0..8].copy_from_slice(&id.term.to_le_bytes());
    body[8..16].copy_from_slice(&id.index.to_le_bytes());
    body
}

pub(crate) fn decode_purged(body: &[u8]) -> Result<LogId, String> {
    if body.len() != 16 {
        return Err(format!("purged body is {} bytes, expected 16", body.len()));
    }
    Ok(LogId {
        term: u64_at(body, 0),
        index: u64_at(body, 8),
    })
}

fn u64_at(buf: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&buf[at..at + 8]);
    u64::from_le_bytes(b)
}

/// Replaces the file of `kind` in `dir` with a frame holding `body`:
/// temp file, fsync, rename, fsync of the directory.
pub(crate) fn write_frame(dir: &Path, kind: Kind, body: &[u8]) -> Result<()> {
    let mut frame = Vec::with_capacity(FRAME_HEAD + body.len() + FRAME_TAIL);
    frame.extend_from_slice(&MAGIC);
    frame.extend_from_slice(&VERSION.to_le_bytes());
    frame.extend_from_slice(&(kind as u16).to_le_bytes());
    frame.extend_from_slice(&(body.len() as u32).to_le_bytes());
    frame.extend_from_slice(body);
    let crc = crc32c::crc32c(&frame);
    frame.extend_from_slice(&crc.to_le_bytes());

    let temp = dir.join(kind.temp_name());
    let target = dir.join(kind.file_name());
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&temp)
        .map_err(|e| StorageError::io("create", &temp, e))?;
    file.write_all(&frame)
        .map_err(|e| StorageError::io("write", &temp, e))?;
    file.sync_all()
        .map_err(|e| StorageError::io("fsync", &temp, e))?;
    drop(file);
    fs::rename(&temp, &target).map_err(|e| StorageError::io("rename", &temp, e))?;
    sync_dir(dir)
}

/// Reads and checks the file of `kind` in `dir`; `None` if it does not exist.
pub(crate) fn read_frame(dir: &Path, kind: Kind) -> Result<Option<Vec<u8>>> {
    let path = dir.join(kind.file_name());
    let bytes = match fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(StorageError::io("read", &path, e)),
    };
    let corrupt = |reason: String| StorageError::CorruptMeta {
        path: path.clone(),
        reason,
    };
    if bytes.len() < FRAME_HEAD + FRAME_TAIL {
        return Err(corrupt(format!("file is {} bytes, too short", bytes.len())));
    }
    if bytes[0..4] != MAGIC {
        return Err(corrupt("bad magic".to_string()));
    }
    let version = u16::from_le_bytes([bytes[4], bytes[5]]);
    if version != VERSION {
        return Err(corrupt(format!("unsupported format version {version}")));
    }
    let found_kind = u16::from_le_bytes([bytes[6], bytes[7]]);
    if found_kind != kind as u16 {
        return Err(corrupt(format!(
            "file holds kind {found_kind}, expected {}",
            kind as u16
        )));
    }
    let len = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize;
    if len > MAX_BODY || bytes.len() != FRAME_HEAD + len + FRAME_TAIL {
        return Err(corrupt(format!(
            "body length {len} does not match file length {}",
            bytes.len()
        )));
    }
    let crc_at = FRAME_HEAD + len;
    let stored = u32::from_le_bytes([
        bytes[crc_at],
        bytes[crc_at + 1],
        bytes[crc_at + 2],
        bytes[crc_at + 3],
    ]);
    if crc32c::crc32c(&bytes[..crc_at]) != stored {
        return Err(corrupt("checksum mismatch".to_string()));
    }
    Ok(Some(bytes[FRAME_HEAD..crc_at].to_vec()))
}

/// Deletes the temporary file of `kind` that a crash mid-update may have left.
pub(crate) fn remove_stale_temp(dir: &Path, kind: Kind) -> Result<()> {
    let temp = dir.join(kind.temp_name());
    match fs::remove_file(&temp) {
        Ok(()) => sync_dir(dir),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(StorageError::io("remove", &temp, e)),
    }
}

/// Makes creations, renames and deletions in `dir` durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    let handle = File::open(dir).map_err(|e| StorageError::io("open dir", dir, e))?;
    handle
        .sync_all()
        .map_err(|e| StorageError::io("fsync dir", dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vote_round_trips_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut meta = Meta::open(dir.path()).unwrap();
        assert_eq!(meta.vote(), None);
        assert_eq!(meta.committed(), None);
        let votes = [
            Vote {
                term: 1,
                voted_for: None,
                committed: false,
            },
            Vote {
                term: 7,
                voted_for: Some(0),
                committed: false,
            },
            Vote {
                term: u64::MAX,
                voted_for: Some(u64::MAX),
                committed: true,
            },
        ];
        for vote in votes {
            meta.save_vote(&vote).unwrap();
            assert_eq!(meta.vote(), Some(vote));
            assert_eq!(Meta::open(dir.path()).unwrap().vote(), Some(vote));
        }
        let id = LogId { term: 3, index: 99 };
        meta.save_committed(Some(id)).unwrap();
        assert_eq!(Meta::open(dir.path()).unwrap().committed(), Some(id));
        meta.save_committed(None).unwrap();
        assert_eq!(Meta::open(dir.path()).unwrap().committed(), None);
    }

    #[test]
    fn stale_temp_file_is_ignored_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let vote = Vote {
            term: 4,
            voted_for: Some(2),
            committed: false,
        };
        Meta::open(dir.path()).unwrap().save_vote(&vote).unwrap();
        // A crash after writing the temp file but before the rename.
        fs::write(dir.path().join("vote.tmp"), b"half a vo").unwrap();
        let meta = Meta::open(dir.path()).unwrap();
        assert_eq!(meta.vote(), Some(vote));
        assert!(!dir.path().join("vote.tmp").exists());
    }

    #[test]
    fn every_damaged_byte_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let vote = Vote {
            term: 9,
            voted_for: Some(3),
            committed: true,
        };
        Meta::open(dir.path()).unwrap().save_vote(&vote).unwrap();
        let path = dir.path().join("vote");
        let good = fs::read(&path).unwrap();
        for at in 0..good.len() {
            let mut bad = good.clone();
            bad[at] ^= 0x10;
            fs::write(&path, &bad).unwrap();
            let err = Meta::open(dir.path()).unwrap_err();
            assert!(
                matches!(err, StorageError::CorruptMeta { .. }),
                "byte {at}: {err}"
            );
        }
        for len in 0..good.len() {
            fs::write(&path, &good[..len]).unwrap();
            assert!(Meta::open(dir.path()).is_err(), "cut at {len}");
        }
    }
}
