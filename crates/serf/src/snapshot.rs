//! The snapshot file: an append-only log of who was alive and of the three
//! Lamport clocks, so a restarted agent rejoins the nodes it knew and does
//! not replay old events or queries. Same line format as Serf
//! (`alive: NAME ADDR`, `not-alive: NAME`, `clock: N`, `event-clock: N`,
//! `query-clock: N`, `leave`), so a snapshot moves between the two.
//! Compacted by rewriting (fsync, rename) once it grows past twice its
//! estimated size.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::clock::LamportTime;
use crate::event::{Event, MemberEventKind};

/// Flush buffered lines at least this often.
const FLUSH_INTERVAL: Duration = Duration::from_millis(500);
/// Estimated bytes per alive node, for the compaction threshold.
const BYTES_PER_NODE: u64 = 128;
/// Compact when the file is this many times its estimate.
const COMPACTION_THRESHOLD: u64 = 2;
/// Never compact below this size.
const MIN_COMPACT_SIZE: u64 = 128 * 1024;

/// What a previous run left behind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Previous {
    /// Name -> "ip:port" of nodes alive when we stopped.
    pub alive: BTreeMap<String, String>,
    pub clock: LamportTime,
    pub event_clock: LamportTime,
    pub query_clock: LamportTime,
}

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("snapshot {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

pub struct Snapshotter {
    path: PathBuf,
    out: BufWriter<File>,
    offset: u64,
    state: Previous,
    rejoin_after_leave: bool,
    leaving: bool,
    last_flush: Instant,
}

impl std::fmt::Debug for Snapshotter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshotter")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> SnapshotError + '_ {
    move |source| SnapshotError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Reads a snapshot's lines into the state they describe. Unknown or
/// malformed lines are skipped, as Serf does.
pub fn replay(reader: impl BufRead, rejoin_after_leave: bool) -> Previous {
    let mut p = Previous::default();
    for line in reader.lines() {
        let Ok(line) = line else { break };
        let num = |s: &str| s.trim().parse::<LamportTime>().ok();
        if let Some(info) = line.strip_prefix("alive: ") {
            if let Some((name, addr)) = info.rsplit_once(' ') {
                p.alive.insert(name.to_string(), addr.to_string());
            }
        } else if let Some(name) = line.strip_prefix("not-alive: ") {
            p.alive.remove(name);
        } else if let Some(t) = line.strip_prefix("clock: ").and_then(num) {
            p.clock = t;
        } else if let Some(t) = line.strip_prefix("event-clock: ").and_then(num) {
            p.event_clock = t;
        } else if let Some(t) = line.strip_prefix("query-clock: ").and_then(num) {
            p.query_clock = t;
        } else if line == "leave" && !rejoin_after_leave {
            p = Previous::default();
        }
    }
    p
}

impl Snapshotter {
    /// Opens (creating) the snapshot at `path` and replays it.
    pub fn open(
        path: &Path,
        rejoin_after_leave: bool,
        now: Instant,
    ) -> Result<(Snapshotter, Previous), SnapshotError> {
        let file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(path)
            .map_err(io_err(path))?;
        let offset = file.metadata().map_err(io_err(path))?.len();
        let prev = replay(BufReader::new(&file), rejoin_after_leave);
        let s = Snapshotter {
            path: path.to_path_buf(),
            out: BufWriter::new(file),
            offset,
            state: prev.clone(),
            rejoin_after_leave,
            leaving: false,
            last_flush: now,
        };
        Ok((s, prev))
    }

    /// Records what an event means for a restart.
    pub fn record(
        &mut self,
        now: Instant,
        e: &Event,
        clock: LamportTime,
    ) -> Result<(), SnapshotError> {
        if self.leaving {
            return Ok(());
        }
        match e {
            Event::Member { kind, members } => {
                for m in members {
                    match kind {
                        MemberEventKind::Join => {
                            let addr = std::net::SocketAddr::new(m.addr, m.port).to_string();
                            self.state.alive.insert(m.name.clone(), addr.clone());
                            self.append(now, &format!("alive: {} {addr}\n", m.name))?;
                        }
                        MemberEventKind::Leave | MemberEventKind::Failed => {
                            self.state.alive.remove(&m.name);
                            self.append(now, &format!("not-alive: {}\n", m.name))?;
                        }
                        _ => {}
                    }
                }
                self.update_clock(now, clock)?;
            }
            Event::User { ltime, .. } if *ltime > self.state.event_clock => {
                self.state.event_clock = *ltime;
                self.append(now, &format!("event-clock: {ltime}\n"))?;
            }
            Event::Query(q) if q.ltime > self.state.query_clock => {
                self.state.query_clock = q.ltime;
                self.append(now, &format!("query-clock: {}\n", q.ltime))?;
            }
            _ => {}
        }
        Ok(())
    }

    /// Records the member clock (the last time seen is `clock - 1`).
    pub fn update_clock(&mut self, now: Instant, clock: LamportTime) -> Result<(), SnapshotError> {
        let seen = clock.saturating_sub(1);
        if seen > self.state.clock {
            self.state.clock = seen;
            self.append(now, &format!("clock: {seen}\n"))?;
        }
        Ok(())
    }

    /// Marks a graceful leave: a restart will not rejoin (unless
    /// `rejoin_after_leave`).
    pub fn leave(&mut self, now: Instant) -> Result<(), SnapshotError> {
        self.leaving = true;
        if !self.rejoin_after_leave {
            self.state.alive.clear();
        }
        self.append(now, "leave\n")?;
        self.sync()
    }

    /// Flushes and fsyncs.
    pub fn sync(&mut self) -> Result<(), SnapshotError> {
        let path = self.path.clone();
        self.out.flush().map_err(io_err(&path))?;
        self.out.get_ref().sync_all().map_err(io_err(&path))
    }

    /// Flushes if the flush interval has passed.
    pub fn tick(&mut self, now: Instant) -> Result<(), SnapshotError> {
        if now.saturating_duration_since(self.last_flush) >= FLUSH_INTERVAL {
            self.last_flush = now;
            let path = self.path.clone();
            self.out.flush().map_err(io_err(&path))?;
        }
        Ok(())
    }

    fn append(&mut self, now: Instant, line: &str) -> Result<(), SnapshotError> {
        let path = self.path.clone();
        self.out.write_all(line.as_bytes()).map_err(io_err(&path))?;
        self.offset += line.len() as u64;
        self.tick(now)?;
        let limit = (self.state.alive.len() as u64 * BYTES_PER_NODE * COMPACTION_THRESHOLD)
            .max(MIN_COMPACT_SIZE);
        if self.offset > limit {
            self.compact()?;
        }
        Ok(())
    }

    /// Rewrites the file with just the current state.
    pub fn compact(&mut self) -> Result<(), SnapshotError> {
        let tmp = self.path.with_extension("compact");
        let mut body = String::new();
        for (name, addr) in &self.state.alive {
            body.push_str(&format!("alive: {name} {addr}\n"));
        }
        body.push_str(&format!("clock: {}\n", self.state.clock));
        body.push_str(&format!("event-clock: {}\n", self.state.event_clock));
        body.push_str(&format!("query-clock: {}\n", self.state.query_clock));
        {
            let mut f = File::create(&tmp).map_err(io_err(&tmp))?;
            f.write_all(body.as_bytes()).map_err(io_err(&tmp))?;
            f.sync_all().map_err(io_err(&tmp))?;
        }
        let path = self.path.clone();
        self.out.flush().map_err(io_err(&path))?;
        fs::rename(&tmp, &path).map_err(io_err(&path))?;
        let file = OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(io_err(&path))?;
        self.out = BufWriter::new(file);
        self.offset = body.len() as u64;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::member::{Member, MemberStatus};

    fn member(name: &str, port: u16) -> Member {
        Member {
            name: name.into(),
            addr: "127.0.0.1".parse().unwrap(),
            port,
            tags: Default::default(),
            status: MemberStatus::Alive,
            vsn: [1, 5, 2, 2, 5, 4],
        }
    }

    #[test]
    fn replay_reads_serf_lines_and_skips_junk() {
        let text = "alive: a 127.0.0.1:7946\nalive: b c 10.0.0.1:1\n# comment\nnot-alive: a\nclock: 7\nevent-clock: x\nevent-clock: 3\nquery-clock: 2\ncoordinate: whatever\n";
        let p = replay(text.as_bytes(), false);
        assert_eq!(p.alive.len(), 1);
        assert_eq!(p.alive.get("b c").map(String::as_str), Some("10.0.0.1:1"));
        assert_eq!((p.clock, p.event_clock, p.query_clock), (7, 3, 2));
        let left = replay(format!("{text}leave\n").as_bytes(), false);
        assert_eq!(left, Previous::default());
        let rejoin = replay(format!("{text}leave\n").as_bytes(), true);
        assert_eq!(rejoin.alive.len(), 1);
    }

    #[test]
    fn records_survive_a_restart_and_compaction() {
        let dir = std::env::temp_dir().join(format!("serf-snap-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("snap");
        let _ = fs::remove_file(&path);
        let now = Instant::now();
        {
            let (mut s, prev) = Snapshotter::open(&path, false, now).unwrap();
            assert_eq!(prev, Previous::default());
            for i in 0..3000u16 {
                let e = Event::Member {
                    kind: MemberEventKind::Join,
                    members: vec![member(&format!("n{}", i % 5), 7000 + i)],
                };
                s.record(now, &e, 10 + u64::from(i)).unwrap();
            }
            let gone = Event::Member {
                kind: MemberEventKind::Failed,
                members: vec![member("n4", 1)],
            };
            s.record(now, &gone, 5000).unwrap();
            s.sync().unwrap();
            assert!(fs::metadata(&path).unwrap().len() < 200 * 1024, "compacted");
        }
        let (_, prev) = Snapshotter::open(&path, false, now).unwrap();
        assert_eq!(prev.alive.len(), 4);
        assert_eq!(prev.clock, 4999);
        fs::remove_dir_all(&dir).unwrap();
    }
}
