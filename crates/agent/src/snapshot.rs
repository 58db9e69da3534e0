//! `/v1/snapshot` archives, in Consul's format: a gzip'd tar of
//!
//! - `meta.json`: Raft's snapshot metadata as Consul writes it (`Version`,
//!   `ID` = `<term>-<index>-<unix ms>`, `Index`, `Term`, `Peers`,
//!   `Configuration`, `ConfigurationIndex`, `Size`),
//! - `state.bin`: the state store's snapshot bytes
//!   ([`state::Snapshot::to_bytes`]),
//! - `SHA256SUMS`: the SHA-256 of the two, in `sha256sum`'s format.
//!
//! Reading checks everything before handing anything back: the gzip stream
//! and its checksum, the tar framing, that only those three files are there,
//! every size against a bound (so a small archive cannot inflate without
//! limit), and both sums. The error texts are Consul's.
//!
//! Saving and restoring are [`Agent::snapshot_save`] and
//! [`Agent::snapshot_restore`]: a restore is one replicated
//! [`Command::Restore`], so every server's log carries it and every server
//! (and every restart replaying the log) replaces its state with it.

use std::io::Read;
use std::time::{SystemTime, UNIX_EPOCH};

use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use flate2::Compression;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use state::{Command, Index, Outcome};

use crate::agent::{Agent, AgentError, ReadConsistency};

/// The snapshot format version in `meta.json` (Raft's, which Consul reports).
pub const SNAPSHOT_VERSION: u64 = 1;

/// The largest `state.bin` a restore accepts: a restore is one log entry,
/// and a log record carries at most [`consensus::wal::MAX_PAYLOAD`] bytes
/// (the margin covers the entry's own framing).
pub const MAX_RESTORE_STATE: usize = consensus::wal::MAX_PAYLOAD - (1 << 20);

/// The largest archive `PUT /v1/snapshot` reads: a restorable state that
/// did not compress at all, plus gzip's and tar's framing.
pub const MAX_RESTORE_ARCHIVE: usize = MAX_RESTORE_STATE + (1 << 20);

/// The largest `state.bin` read when only inspecting or verifying a file
/// (the size of a Raft snapshot a server accepts).
pub const MAX_INSPECT_STATE: usize = 8 << 30;

const META: &str = "meta.json";
const STATE: &str = "state.bin";
const SUMS: &str = "SHA256SUMS";
const MAX_META: u64 = 1 << 20;
const MAX_SUMS: u64 = 64 << 10;

/// `meta.json`: hashicorp/raft's `SnapshotMeta`, field for field.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SnapshotMeta {
    pub version: u64,
    #[serde(rename = "ID")]
    pub id: String,
    pub index: Index,
    pub term: u64,
    /// Raft's legacy peer list (bytes, base64 in JSON); `null` here.
    #[serde(default)]
    pub peers: Option<String>,
    #[serde(default)]
    pub configuration: RaftConfiguration,
    #[serde(default)]
    pub configuration_index: Index,
    pub size: u64,
}

/// The Raft configuration recorded with a snapshot.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RaftConfiguration {
    #[serde(default)]
    pub servers: Option<Vec<RaftServer>>,
}

/// One server of that configuration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RaftServer {
    /// 0 voter, 1 non-voter (Raft's `ServerSuffrage`).
    pub suffrage: u8,
    #[serde(rename = "ID")]
    pub id: String,
    pub address: String,
}

/// Why an archive was refused. The texts are Consul's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArchiveError {
    /// Not gzip at all.
    #[error("failed to decompress snapshot: {0}")]
    Decompress(String),
    /// Gzip, but what is inside is not a whole, intact snapshot.
    #[error("failed to read snapshot file: {0}")]
    Read(String),
    /// The state is larger than the caller accepts.
    #[error("snapshot state of {size} bytes is larger than the {max} bytes allowed")]
    TooLarge { size: u64, max: usize },
}

/// An archive's contents, verified.
#[derive(Debug)]
pub struct Archive {
    pub meta: SnapshotMeta,
    pub state: Vec<u8>,
}

/// Writes an archive of `state` as the snapshot of `meta` (whose `Size`
/// is set here).
pub fn write_archive(mut meta: SnapshotMeta, state: &[u8]) -> Vec<u8> {
    meta.size = state.len() as u64;
    // Like Go's json.Encoder, a newline ends the document.
    let mut meta_json = serde_json::to_vec(&meta).unwrap_or_default();
    meta_json.push(b'\n');
    let sums = format!(
        "{}  {META}\n{}  {STATE}\n",
        hex_sha256(&meta_json),
        hex_sha256(state)
    );
    let mtime = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut tar = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::default()));
    // Writing into memory cannot fail.
    let _ = append(&mut tar, META, &meta_json, mtime);
    let _ = append(&mut tar, STATE, state, mtime);
    let _ = append(&mut tar, SUMS, sums.as_bytes(), mtime);
    tar.into_inner()
        .and_then(GzEncoder::finish)
        .unwrap_or_default()
}

fn append(
    tar: &mut tar::Builder<GzEncoder<Vec<u8>>>,
    name: &str,
    bytes: &[u8],
    mtime: u64,
) -> std::io::Result<()> {
    let mut header = tar::Header::new_ustar();
    header.set_path(name)?;
    header.set_size(bytes.len() as u64);
    header.set_mode(0o600);
    header.set_mtime(mtime);
    header.set_entry_type(tar::EntryType::Regular);
    header.set_cksum();
    tar.append(&header, bytes)
}

fn hex_sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Reads and verifies an archive, refusing a `state.bin` over `max_state`.
pub fn read_archive(archive: &[u8], max_state: usize) -> Result<Archive, ArchiveError> {
    let gzip = GzDecoder::new(archive);
    if gzip.header().is_none() {
        return Err(ArchiveError::Decompress("gzip: invalid header".to_string()));
    }
    let mut tar = tar::Archive::new(gzip);
    let mut meta_json: Option<Vec<u8>> = None;
    let mut state: Option<Vec<u8>> = None;
    let mut sums: Option<Vec<u8>> = None;
    let entries = tar
        .entries()
        .map_err(|e| read_failed(format!("failed reading snapshot: {e}")))?;
    for entry in entries {
        let entry = entry.map_err(|e| read_failed(format!("failed reading snapshot: {e}")))?;
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let size = entry.header().size().unwrap_or(u64::MAX);
        let (slot, max) = match name.as_str() {
            META => (&mut meta_json, MAX_META),
            STATE => {
                if size > max_state as u64 {
                    return Err(ArchiveError::TooLarge {
                        size,
                        max: max_state,
                    });
                }
                (&mut state, max_state as u64)
            }
            SUMS => (&mut sums, MAX_SUMS),
            other => {
                return Err(read_failed(format!(
                    "unexpected file {other:?} in snapshot"
                )))
            }
        };
        if size > max {
            return Err(read_failed(format!("{name} is {size} bytes, over {max}")));
        }
        let mut bytes = Vec::with_capacity(size as usize);
        entry
            .take(max)
            .read_to_end(&mut bytes)
            .map_err(|e| read_failed(format!("failed reading snapshot: {e}")))?;
        *slot = Some(bytes);
    }
    // The rest of the gzip stream: tar's end-of-archive zeros, then the
    // gzip trailer, whose CRC covers everything read above.
    let mut rest = Vec::new();
    tar.into_inner()
        .take(1 << 20)
        .read_to_end(&mut rest)
        .map_err(|e| read_failed(format!("failed reading snapshot: {e}")))?;
    let unread = rest.iter().filter(|&&b| b != 0).count();
    if unread != 0 {
        return Err(read_failed(format!(
            "{} unread uncompressed bytes remain",
            rest.len()
        )));
    }
    let meta_json = meta_json.unwrap_or_default();
    let state = state.unwrap_or_default();
    verify_sums(&sums.unwrap_or_default(), &meta_json, &state)
        .map_err(|e| read_failed(format!("failed checking integrity of snapshot: {e}")))?;
    let meta: SnapshotMeta = serde_json::from_slice(&meta_json)
        .map_err(|e| read_failed(format!("failed to decode snapshot metadata: {e}")))?;
    Ok(Archive { meta, state })
}

fn read_failed(reason: String) -> ArchiveError {
    ArchiveError::Read(reason)
}

/// Consul's check: every line names a file it knows with the right sum, and
/// both files are listed.
fn verify_sums(sums: &[u8], meta_json: &[u8], state: &[u8]) -> Result<(), String> {
    let expected = [(META, hex_sha256(meta_json)), (STATE, hex_sha256(state))];
    let mut seen = [false; 2];
    let text = String::from_utf8_lossy(sums);
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let Some((sum, file)) = line.split_once("  ") else {
            return Err(format!("malformed line {line:?}"));
        };
        let Some(at) = expected.iter().position(|(name, _)| *name == file) else {
            return Err(format!("list missing hash for {file:?}"));
        };
        if !sum.eq_ignore_ascii_case(&expected[at].1) {
            return Err(format!("hash check failed for {file:?}"));
        }
        seen[at] = true;
    }
    for (at, (name, _)) in expected.iter().enumerate() {
        if !seen[at] {
            return Err(format!("file missing for {name:?}"));
        }
    }
    Ok(())
}

/// A snapshot taken by [`Agent::snapshot_save`].
pub struct SavedSnapshot {
    /// The index of the state it holds (`X-Consul-Index`).
    pub index: Index,
    /// The gzip'd tar.
    pub archive: Vec<u8>,
}

/// Why a restore did not happen. Nothing was changed in any case.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    /// The state does not decode as a snapshot of the store.
    #[error("failed to read snapshot file: {0}")]
    State(String),
    #[error(transparent)]
    Agent(#[from] AgentError),
    /// The servers refused the restore entry.
    #[error("{0}")]
    Refused(String),
}

impl Agent {
    /// Takes a snapshot of the state, confirmed as `consistency` asks, and
    /// packs it as an archive.
    pub async fn snapshot_save(
        &self,
        consistency: ReadConsistency,
    ) -> Result<SavedSnapshot, AgentError> {
        self.read_barrier(consistency).await?;
        let snapshot = self.store().snapshot();
        let index = snapshot.index();
        let (term, servers) = match self.cluster() {
            Some(cluster) => {
                let node = cluster.node();
                let servers = node
                    .members()
                    .into_iter()
                    .map(|m| RaftServer {
                        suffrage: if m.voter { 0 } else { 1 },
                        id: m.node.uuid,
                        address: m.node.addr,
                    })
                    .collect();
                (node.status().term, Some(servers))
            }
            None => (1, None),
        };
        let unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let meta = SnapshotMeta {
            version: SNAPSHOT_VERSION,
            id: format!("{term}-{index}-{unix_ms}"),
            index,
            term,
            peers: None,
            configuration: RaftConfiguration { servers },
            configuration_index: 0,
            size: 0,
        };
        // Encoding and compressing a large state takes a while: off the
        // async workers.
        let archive =
            tokio::task::spawn_blocking(move || write_archive(meta, &snapshot.to_bytes()))
                .await
                .unwrap_or_default();
        Ok(SavedSnapshot { index, archive })
    }

    /// Verifies `archive` and replaces the state of every server with it,
    /// through one replicated [`Command::Restore`]. Returns the index the
    /// restore was applied at.
    pub async fn snapshot_restore(&self, archive: Vec<u8>) -> Result<Index, RestoreError> {
        let state = tokio::task::spawn_blocking(move || {
            let read = read_archive(&archive, MAX_RESTORE_STATE)?;
            // Decode it here too: bytes that reach the log must restore.
            state::Snapshot::from_bytes(&read.state)
                .map_err(|e| RestoreError::State(e.to_string()))?;
            Ok::<_, RestoreError>(read.state)
        })
        .await
        .map_err(|e| RestoreError::Refused(e.to_string()))??;
        match self.apply(Command::Restore { state }).await? {
            (index, Outcome::Write(Ok(()))) => {
                self.arm_all_session_timers();
                Ok(index)
            }
            (_, Outcome::Write(Err(e))) => Err(RestoreError::Refused(e.0)),
            (_, other) => Err(RestoreError::Refused(format!(
                "unexpected outcome of a restore: {other:?}"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> SnapshotMeta {
        SnapshotMeta {
            version: SNAPSHOT_VERSION,
            id: "2-13-1700000000000".to_string(),
            index: 13,
            term: 2,
            peers: None,
            configuration: RaftConfiguration::default(),
            configuration_index: 0,
            size: 0,
        }
    }

    /// The files of an archive, in order, as (name, bytes).
    fn files(archive: &[u8]) -> Vec<(String, Vec<u8>)> {
        let mut tar = tar::Archive::new(GzDecoder::new(archive));
        tar.entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                let name = String::from_utf8_lossy(&e.path_bytes()).into_owned();
                let mut bytes = Vec::new();
                e.read_to_end(&mut bytes).unwrap();
                (name, bytes)
            })
            .collect()
    }

    /// An archive of exactly these files, sums and all as given.
    fn pack(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut tar = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::default()));
        for (name, bytes) in files {
            append(&mut tar, name, bytes, 0).unwrap();
        }
        tar.into_inner().unwrap().finish().unwrap()
    }

    #[test]
    fn archive_round_trips_with_consul_meta() {
        let state = b"PRSTATE3 some state".to_vec();
        let archive = write_archive(meta(), &state);
        assert_eq!(&archive[..2], &[0x1f, 0x8b], "gzip magic");
        let read = read_archive(&archive, 1 << 20).unwrap();
        assert_eq!(read.state, state);
        assert_eq!(read.meta.size, state.len() as u64);
        assert_eq!(read.meta.index, 13);
        let names: Vec<String> = files(&archive).into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["meta.json", "state.bin", "SHA256SUMS"]);
        let meta_json: serde_json::Value = serde_json::from_slice(&files(&archive)[0].1).unwrap();
        for field in ["Version", "ID", "Index", "Term", "Size", "Configuration"] {
            assert!(meta_json.get(field).is_some(), "meta.json lacks {field}");
        }
        let sums = String::from_utf8(files(&archive)[2].1.clone()).unwrap();
        assert!(sums.contains(&format!("{}  state.bin\n", hex_sha256(&state))));
    }

    #[test]
    fn not_gzip_is_refused() {
        let error = read_archive(b"plain text, not an archive", 1 << 20).unwrap_err();
        assert!(matches!(error, ArchiveError::Decompress(_)), "{error}");
        assert!(error
            .to_string()
            .starts_with("failed to decompress snapshot"));
    }

    #[test]
    fn corrupted_gzip_is_refused() {
        let mut archive = write_archive(meta(), &[7u8; 4096]);
        let middle = archive.len() / 2;
        archive[middle] ^= 0xff;
        assert!(read_archive(&archive, 1 << 20).is_err());
        let truncated = write_archive(meta(), &[7u8; 4096]);
        assert!(read_archive(&truncated[..truncated.len() - 6], 1 << 20).is_err());
    }

    #[test]
    fn bad_checksum_is_refused() {
        let archive = write_archive(meta(), b"state");
        let f = files(&archive);
        let forged = pack(&[(META, &f[0].1), (STATE, b"other state"), (SUMS, &f[2].1)]);
        let error = read_archive(&forged, 1 << 20).unwrap_err().to_string();
        assert_eq!(
            error,
            "failed to read snapshot file: failed checking integrity of snapshot: hash check failed for \"state.bin\""
        );
    }

    #[test]
    fn missing_files_are_refused() {
        let archive = write_archive(meta(), b"state");
        let f = files(&archive);
        let no_sums = pack(&[(META, &f[0].1), (STATE, &f[1].1)]);
        assert!(read_archive(&no_sums, 1 << 20)
            .unwrap_err()
            .to_string()
            .contains("file missing for \"meta.json\""));
        let no_state = pack(&[(META, &f[0].1), (SUMS, &f[2].1)]);
        assert!(read_archive(&no_state, 1 << 20)
            .unwrap_err()
            .to_string()
            .contains("hash check failed for \"state.bin\""));
        let extra = pack(&[(META, &f[0].1), ("evil", b"x"), (STATE, &f[1].1)]);
        assert!(read_archive(&extra, 1 << 20)
            .unwrap_err()
            .to_string()
            .contains("unexpected file \"evil\" in snapshot"));
    }

    #[test]
    fn oversized_state_is_refused_before_it_is_read() {
        let archive = write_archive(meta(), &[0u8; 10_000]);
        assert_eq!(
            read_archive(&archive, 9_999).unwrap_err(),
            ArchiveError::TooLarge {
                size: 10_000,
                max: 9_999
            }
        );
    }
}
