//! A bare memberlist node that a Serf 0.9.4 cluster accepts, for interop
//! tests against the real `serf` binary.
//!
//! ```text
//! gossip_node -node NAME -bind IP:PORT [-advertise IP:PORT] [-join IP:PORT ...]
//!             [-encrypt BASE64KEY] [-profile lan|wan|local]
//! ```
//!
//! It advertises Serf's versions (protocol 2, delegate `[2, 5, 5]`) and tags
//! `{"role": "praetor"}` in Serf's meta encoding. Stdout gets one JSON line
//! per membership event: `{"event":"join"|"leave"|"update","node":..,
//! "state":..}`. Stdin takes commands, one per line:
//!
//! - `members`: one JSON line listing every member with its state and tags;
//! - `stats`: one JSON line with packet and byte counters, probe round
//!   trips and the local health score;
//! - `leave`: tell Serf we intend to leave, leave gracefully (waiting up to
//!   5 s for the leave to be gossiped), print `{"event":"left"}`, exit 0.
//!
//! SIGTERM, or the end of stdin, stops the node without a leave. If `-join`
//! reaches none of its addresses the node exits with status 1.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use base64::Engine;
use gossip::keyring::{Key, Keyring};
use gossip::msgpack::{Reader, Writer};
use gossip::{Config, Delegate, Node, State};
use serde_json::json;
use tokio::sync::mpsc;

/// Serf's first meta byte when the rest is a msgpack map of tags.
const TAG_MAGIC: u8 = 0xFF;
/// Serf's message types (the first byte of a Serf user message).
const SERF_LEAVE: u8 = 0;
const SERF_PUSH_PULL: u8 = 2;
/// How long `leave` waits for our leave to be gossiped.
const LEAVE_WAIT: Duration = Duration::from_secs(5);

#[derive(Debug)]
struct Args {
    node: String,
    bind: SocketAddr,
    advertise: Option<SocketAddr>,
    join: Vec<SocketAddr>,
    encrypt: Option<Vec<u8>>,
    profile: String,
}

fn usage() -> String {
    "usage: gossip_node -node NAME -bind IP:PORT [-advertise IP:PORT] [-join IP:PORT ...] \
     [-encrypt BASE64KEY] [-profile lan|wan|local]"
        .to_string()
}

fn parse_args(mut it: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut node = None;
    let mut bind = None;
    let mut advertise = None;
    let mut join = Vec::new();
    let mut encrypt = None;
    let mut profile = "lan".to_string();
    while let Some(flag) = it.next() {
        let flag = flag.trim_start_matches('-').to_string();
        if flag == "h" || flag == "help" {
            return Err(usage());
        }
        let value = it
            .next()
            .ok_or_else(|| format!("flag -{flag} needs a value\n{}", usage()))?;
        let addr = |v: &str| -> Result<SocketAddr, String> {
            v.parse()
                .map_err(|e| format!("-{flag} {v}: not an IP:PORT ({e})"))
        };
        match flag.as_str() {
            "node" => node = Some(value),
            "bind" => bind = Some(addr(&value)?),
            "advertise" => advertise = Some(addr(&value)?),
            "join" => join.push(addr(&value)?),
            "encrypt" => {
                let key = base64::engine::general_purpose::STANDARD
                    .decode(value.trim())
                    .map_err(|e| format!("-encrypt: not base64 ({e})"))?;
                encrypt = Some(key);
            }
            "profile" => profile = value,
            other => return Err(format!("unknown flag -{other}\n{}", usage())),
        }
    }
    Ok(Args {
        node: node.ok_or_else(|| format!("-node is required\n{}", usage()))?,
        bind: bind.ok_or_else(|| format!("-bind is required\n{}", usage()))?,
        advertise,
        join,
        encrypt,
        profile,
    })
}

fn config(args: &Args) -> Result<Config, String> {
    let advertise = args.advertise.unwrap_or(args.bind);
    let mut c = match args.profile.as_str() {
        "lan" => Config::lan(&args.node, advertise),
        "wan" => Config::wan(&args.node, advertise),
        "local" => Config::local(&args.node, advertise),
        p => return Err(format!("unknown profile {p:?} (lan, wan or local)")),
    };
    // What Serf 0.9.4 advertises, so its memberlist accepts us.
    c.protocol_version = 2;
    c.delegate_versions = [2, 5, 5];
    if let Some(key) = &args.encrypt {
        let key = Key::new(key).map_err(|e| format!("-encrypt: {e}"))?;
        c.keyring = Some(Keyring::new(key, Vec::new()));
    }
    Ok(c)
}

/// Tags as Serf encodes them in node meta: the magic byte, then a map.
fn encode_tags(tags: &BTreeMap<String, String>) -> Vec<u8> {
    let mut w = Writer::new(vec![TAG_MAGIC]);
    w.map_len(tags.len() as u32);
    for (k, v) in tags {
        w.str(k);
        w.str(v);
    }
    w.into_inner()
}

/// Serf's tags from node meta; a meta without the magic byte is a role.
fn decode_tags(meta: &[u8]) -> BTreeMap<String, String> {
    let mut tags = BTreeMap::new();
    match meta.split_first() {
        Some((&TAG_MAGIC, rest)) => {
            let mut r = Reader::new(rest);
            let Ok(n) = r.map_len() else {
                return tags;
            };
            for _ in 0..n {
                match (r.str(), r.str()) {
                    (Ok(k), Ok(v)) => {
                        tags.insert(k, v);
                    }
                    _ => break,
                }
            }
        }
        Some(_) => {
            tags.insert("role".into(), String::from_utf8_lossy(meta).into_owned());
        }
        None => {}
    }
    tags
}

fn state_name(s: State) -> &'static str {
    match s {
        State::Alive => "alive",
        State::Suspect => "suspect",
        State::Dead => "dead",
        State::Left => "left",
    }
}

fn print_line(v: serde_json::Value) {
    // println! flushes at the newline: stdout is line-buffered.
    println!("{v}");
}

/// Prints membership events; advertises our tags; hands Serf a minimal
/// push-pull state so it has nothing to complain about.
struct Printer {
    meta: Vec<u8>,
}

impl Printer {
    fn event(&self, kind: &str, node: &Node) {
        print_line(json!({
            "event": kind,
            "node": node.name,
            "state": state_name(node.state),
            "addr": node.addr.to_string(),
            "tags": decode_tags(&node.meta),
        }));
    }
}

impl Delegate for Printer {
    fn node_meta(&mut self, limit: usize) -> Vec<u8> {
        let mut m = self.meta.clone();
        m.truncate(limit);
        m
    }
    fn local_state(&mut self, _join: bool) -> Vec<u8> {
        // Serf's messagePushPull with zero clocks and nothing to tell.
        let mut w = Writer::new(vec![SERF_PUSH_PULL]);
        w.map_len(6);
        w.key("LTime");
        w.uint(0);
        w.key("StatusLTimes");
        w.map_len(0);
        w.key("LeftMembers");
        w.array_len(0);
        w.key("EventLTime");
        w.uint(0);
        w.key("Events");
        w.array_len(0);
        w.key("QueryLTime");
        w.uint(0);
        w.into_inner()
    }
    fn notify_join(&mut self, node: &Node) {
        self.event("join", node);
    }
    fn notify_leave(&mut self, node: &Node) {
        self.event("leave", node);
    }
    fn notify_update(&mut self, node: &Node) {
        self.event("update", node);
    }
}

/// Serf's leave intent: without it Serf calls a graceful leave "failed".
fn serf_leave_intent(node: &str, ltime: u64) -> Vec<u8> {
    let mut w = Writer::new(vec![SERF_LEAVE]);
    w.map_len(3);
    w.key("LTime");
    w.uint(ltime);
    w.key("Node");
    w.str(node);
    w.key("Prune");
    w.bool(false);
    w.into_inner()
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let config = match config(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args, config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gossip_node: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args, config: Config) -> Result<(), String> {
    let tags = BTreeMap::from([("role".to_string(), "praetor".to_string())]);
    let printer = Printer {
        meta: encode_tags(&tags),
    };
    let name = config.name.clone();
    let node = gossip::spawn(config, args.bind, printer)
        .await
        .map_err(|e| e.to_string())?;
    print_line(json!({
        "event": "ready",
        "node": name,
        "addr": node.advertise_addr().to_string(),
    }));
    if !args.join.is_empty() {
        let outcome = node.join(&args.join).await.map_err(|e| e.to_string())?;
        let failed: Vec<String> = outcome
            .failed
            .iter()
            .map(|(a, why)| format!("{a}: {why}"))
            .collect();
        print_line(json!({"event": "joined", "count": outcome.joined, "failed": failed}));
        if outcome.joined == 0 {
            // As `serf agent -join`: a node that reached nobody gives up.
            let _ = node.shutdown().await;
            return Err(format!(
                "could not join any of {:?}: {}",
                args.join,
                failed.join("; ")
            ));
        }
    }

    // Stdin is read on a thread of its own; lines come in over a channel.
    let (lines_tx, mut lines) = mpsc::channel::<String>(16);
    std::thread::spawn(move || {
        for line in std::io::stdin().lines() {
            let Ok(line) = line else { break };
            if lines_tx.blocking_send(line).is_err() {
                break;
            }
        }
    });

    while let Some(line) = lines.recv().await {
        match line.trim() {
            "" => {}
            "members" => {
                let members = node.members().await.map_err(|e| e.to_string())?;
                let list: Vec<_> = members
                    .iter()
                    .map(|m| {
                        json!({
                            "node": m.name,
                            "state": state_name(m.state),
                            "addr": m.addr.to_string(),
                            "tags": decode_tags(&m.meta),
                        })
                    })
                    .collect();
                print_line(json!({"event": "members", "members": list}));
            }
            "stats" => {
                let s = node.stats().await.map_err(|e| e.to_string())?;
                print_line(json!({
                    "event": "stats",
                    "packets_in": s.core.packets_in,
                    "packets_out": s.core.packets_out,
                    "bytes_in": s.core.bytes_in,
                    "bytes_out": s.core.bytes_out,
                    "malformed": s.core.malformed,
                    "streams_in": s.core.streams_in,
                    "streams_out": s.core.streams_out,
                    "stream_failures": s.stream_failures,
                    "probes": s.core.probes,
                    "probe_failures": s.core.probe_failures,
                    "probes_acked": s.probe.acked,
                    "probe_rtt_mean_us": s.probe_rtt_mean().map(|d| d.as_micros() as u64),
                    "health_score": s.health_score,
                    "num_alive": s.num_alive,
                }));
            }
            "leave" => {
                let members = node.members().await.map_err(|e| e.to_string())?;
                let intent = serf_leave_intent(&name, 1);
                for m in members.iter().filter(|m| m.name != name) {
                    if !m.state.is_dead_or_left() {
                        node.send_user_packet(m.addr, intent.clone())
                            .await
                            .map_err(|e| e.to_string())?;
                    }
                }
                let result = node.leave(LEAVE_WAIT).await;
                if let Err(e) = &result {
                    eprintln!("gossip_node: {e}");
                }
                print_line(json!({"event": "left", "gossiped": result.is_ok()}));
                let _ = node.shutdown().await;
                return Ok(());
            }
            other => eprintln!("gossip_node: unknown command {other:?} (members, stats, leave)"),
        }
    }
    // Stdin closed: stop without a leave, like SIGTERM.
    let _ = node.shutdown().await;
    Ok(())
}
