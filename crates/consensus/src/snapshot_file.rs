//! The Raft snapshot on disk: one file, replaced atomically.
//!
//! A snapshot is the state store at some applied log id, plus what Raft
//! needs to resume from it (that log id and the membership in force). A new
//! one is written to `snapshot.tmp`, synced, renamed over `snapshot`, and
//! the directory synced, so after a crash either the old or the new file is
//! there, whole.
//!
//! # File format (version 1)
//!
//! Little-endian; CRCs are CRC32C (Castagnoli).
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | magic `PRAETSNP` |
//! | 8 | 4 | format version, `1` |
//! | 12 | 4 | metadata length `m`, at most 16 MiB |
//! | 16 | 8 | state length `n` |
//! | 24 | m | metadata: last log id and membership ([`crate::codec`]) |
//! | 24+m | 4 | CRC32C of bytes `0..24+m` |
//! | 28+m | n | the state store's snapshot (`state::Snapshot::to_bytes`) |
//! | 28+m+n | 4 | CRC32C of the state bytes |
//!
//! The header has its own checksum so the metadata can be read at startup
//! without reading the state; the whole file is verified when it is loaded.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Write};
use std::path::Path;

use crate::codec::{decode_snapshot_meta, encode_snapshot_meta};
use crate::error::{Result, StorageError};
use crate::meta::sync_dir;
use crate::types::SnapshotMeta;

const MAGIC: [u8; 8] = *b"PRAETSNP";
const VERSION: u32 = 1;
const HEAD: usize = 24;
const MAX_META: usize = 16 << 20;
/// The current snapshot's file name.
pub(crate) const FILE: &str = "snapshot";
const TEMP: &str = "snapshot.tmp";

/// Replaces the snapshot in `dir` with `meta` and `state`; returns once the
/// new file is durable.
pub(crate) fn write(dir: &Path, meta: &SnapshotMeta, state: &[u8]) -> Result<()> {
    let meta_bytes = encode_snapshot_meta(meta)
        .map_err(|e| StorageError::io("encode snapshot metadata for", dir, io::Error::other(e)))?;
    let mut head = Vec::with_capacity(HEAD + meta_bytes.len() + 4);
    head.extend_from_slice(&MAGIC);
    head.extend_from_slice(&VERSION.to_le_bytes());
    head.extend_from_slice(&(meta_bytes.len() as u32).to_le_bytes());
    head.extend_from_slice(&(state.len() as u64).to_le_bytes());
    head.extend_from_slice(&meta_bytes);
    let head_crc = crc32c::crc32c(&head);
    head.extend_from_slice(&head_crc.to_le_bytes());

    let temp = dir.join(TEMP);
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&temp)
        .map_err(|e| StorageError::io("create", &temp, e))?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    let written = out
        .write_all(&head)
        .and_then(|()| out.write_all(state))
        .and_then(|()| out.write_all(&crc32c::crc32c(state).to_le_bytes()))
        .and_then(|()| out.flush());
    written.map_err(|e| StorageError::io("write", &temp, e))?;
    let file = out
        .into_inner()
        .map_err(|e| StorageError::io("write", &temp, e.into_error()))?;
    file.sync_all()
        .map_err(|e| StorageError::io("fsync", &temp, e))?;
    drop(file);
    let target = dir.join(FILE);
    fs::rename(&temp, &target).map_err(|e| StorageError::io("rename", &temp, e))?;
    sync_dir(dir)
}

/// Reads and verifies the whole snapshot in `dir`; `None` if there is none.
pub(crate) fn read(dir: &Path) -> Result<Option<(SnapshotMeta, Vec<u8>)>> {
    let path = dir.join(FILE);
    let mut file = match File::open(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(StorageError::io("open", &path, e)),
    };
    let (meta, state_len) = read_head(&path, &mut file)?;
    let corrupt = |reason: String| StorageError::CorruptSnapshot {
        path: path.clone(),
        reason,
    };
    let len = usize::try_from(state_len)
        .map_err(|_| corrupt(format!("state length {state_len} does not fit in memory")))?;
    let size = file
        .metadata()
        .map_err(|e| StorageError::io("stat", &path, e))?
        .len();
    // Checked before allocating, so a damaged length cannot ask for
    // terabytes.
    if state_len.saturating_add(4) > size {
        return Err(corrupt(format!(
            "state length {state_len} is past the end of a {size}-byte file"
        )));
    }
    let mut state = vec![0u8; len];
    let mut crc = [0u8; 4];
    file.read_exact(&mut state)
        .and_then(|()| file.read_exact(&mut crc))
        .map_err(|e| match e.kind() {
            io::ErrorKind::UnexpectedEof => corrupt("file ends inside the state".to_string()),
            _ => StorageError::io("read", &path, e),
        })?;
    if crc32c::crc32c(&state) != u32::from_le_bytes(crc) {
        return Err(corrupt("state checksum mismatch".to_string()));
    }
    let mut rest = [0u8; 1];
    match file.read(&mut rest) {
        Ok(0) => {}
        Ok(_) => return Err(corrupt("bytes after the state checksum".to_string())),
        Err(e) => return Err(StorageError::io("read", &path, e)),
    }
    Ok(Some((meta, state)))
}

/// Reads only the metadata of the snapshot in `dir` (verifying the header's
/// checksum, not the state's).
pub(crate) fn read_meta(dir: &Path) -> Result<Option<SnapshotMeta>> {
    let path = dir.join(FILE);
    let mut file = match File::open(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(StorageError::io("open", &path, e)),
    };
    read_head(&path, &mut file).map(|(meta, _)| Some(meta))
}

/// Deletes a temporary file left by a crash mid-write.
pub(crate) fn remove_stale_temp(dir: &Path) -> Result<()> {
    let temp = dir.join(TEMP);
    match fs::remove_file(&temp) {
        Ok(()) => sync_dir(dir),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(StorageError::io("remove", &temp, e)),
    }
}

/// Reads the header and metadata, leaving `file` at the first state byte.
fn read_head(path: &Path, file: &mut File) -> Result<(SnapshotMeta, u64)> {
    let corrupt = |reason: String| StorageError::CorruptSnapshot {
        path: path.to_path_buf(),
        reason,
    };
    let short = |e: io::Error| match e.kind() {
        io::ErrorKind::UnexpectedEof => corrupt("file ends inside the header".to_string()),
        _ => StorageError::io("read", path, e),
    };
    let mut head = vec![0u8; HEAD];
    file.read_exact(&mut head).map_err(short)?;
    if head[0..8] != MAGIC {
        return Err(corrupt("bad magic".to_string()));
    }
    let version = u32::from_le_bytes([head[8], head[9], head[10], head[11]]);
    if version != VERSION {
        return Err(corrupt(format!("unsupported format version {version}")));
    }
    let meta_len = u32::from_le_bytes([head[12], head[13], head[14], head[15]]) as usize;
    if meta_len > MAX_META {
        return Err(corrupt(format!("metadata length {meta_len} is too large")));
    }
    let mut len_bytes = [0u8; 8];
    len_bytes.copy_from_slice(&head[16..24]);
    let state_len = u64::from_le_bytes(len_bytes);
    head.resize(HEAD + meta_len + 4, 0);
    file.read_exact(&mut head[HEAD..]).map_err(short)?;
    let crc_at = HEAD + meta_len;
    let stored = u32::from_le_bytes([
        head[crc_at],
        head[crc_at + 1],
        head[crc_at + 2],
        head[crc_at + 3],
    ]);
    if crc32c::crc32c(&head[..crc_at]) != stored {
        return Err(corrupt("header checksum mismatch".to_string()));
    }
    let meta = decode_snapshot_meta(&head[HEAD..crc_at]).map_err(|e| corrupt(e.to_string()))?;
    Ok((meta, state_len))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{to_raft_log_id, StoredMembership};
    use crate::LogId;

    fn meta(index: u64) -> SnapshotMeta {
        SnapshotMeta {
            last_log_id: Some(to_raft_log_id(LogId { term: 2, index })),
            last_membership: StoredMembership::default(),
        }
    }

    #[test]
    fn write_read_replace() {
        let dir = tempfile::tempdir().unwrap();
        assert!(read(dir.path()).unwrap().is_none());
        assert!(read_meta(dir.path()).unwrap().is_none());
        write(dir.path(), &meta(5), b"state five").unwrap();
        write(dir.path(), &meta(9), b"state nine").unwrap();
        let (got, state) = read(dir.path()).unwrap().unwrap();
        assert_eq!(got, meta(9));
        assert_eq!(state, b"state nine");
        assert_eq!(read_meta(dir.path()).unwrap(), Some(meta(9)));
        assert!(!dir.path().join(TEMP).exists());
    }

    #[test]
    fn every_damaged_byte_and_every_cut_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), &meta(3), b"some state bytes").unwrap();
        let path = dir.path().join(FILE);
        let good = fs::read(&path).unwrap();
        for at in 0..good.len() {
            let mut bad = good.clone();
            bad[at] ^= 0x01;
            fs::write(&path, &bad).unwrap();
            assert!(read(dir.path()).is_err(), "flipped byte {at}");
        }
        for len in 0..good.len() {
            fs::write(&path, &good[..len]).unwrap();
            assert!(read(dir.path()).is_err(), "cut at {len}");
        }
        let mut longer = good.clone();
        longer.push(0);
        fs::write(&path, &longer).unwrap();
        assert!(read(dir.path()).is_err(), "trailing byte");
    }

    #[test]
    fn stale_temp_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), &meta(1), b"x").unwrap();
        fs::write(dir.path().join(TEMP), b"half").unwrap();
        remove_stale_temp(dir.path()).unwrap();
        assert!(!dir.path().join(TEMP).exists());
        assert_eq!(read(dir.path()).unwrap().unwrap().1, b"x");
    }
}
