//! End to end: `lincheck run` against one `praetor agent -dev` records a
//! linearizable history (exit 0), `lincheck check` agrees on the saved file,
//! and the same file with one read rewound fails (exit 1).
//!
//! The agent binary is `$PRAETOR_BIN`, else `target/debug/praetor` of this
//! workspace (`cargo build -p praetor`). Without it the test is skipped with
//! a message, except under `CI=true`, where that is a failure.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use lincheck::history::{Action, History, ReadMode};

/// Kills the agent when the test ends, however it ends.
struct AgentGuard(Child);

impl Drop for AgentGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn praetor_bin() -> Option<PathBuf> {
    let path = match std::env::var_os("PRAETOR_BIN") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/debug/praetor"),
    };
    if path.is_file() {
        return Some(path);
    }
    let reason = format!(
        "praetor binary not found at {} (cargo build -p praetor, or set PRAETOR_BIN)",
        path.display()
    );
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{reason}");
    }
    eprintln!("SKIPPED: {reason}");
    None
}

/// `n` distinct ports that were free a moment ago.
fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().expect("local addr").port())
        .collect()
}

/// A plain HTTP/1.0 GET; the body, or None on any error.
fn http_get(port: u16, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then(|| body.to_string())
}

fn lincheck(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_lincheck"))
        .args(args)
        .stderr(Stdio::inherit())
        .output()
        .expect("run lincheck");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    print!("{stdout}");
    (out.status.code().unwrap_or(-1), stdout)
}

#[test]
fn a_dev_agent_history_is_linearizable_and_a_rewound_read_is_not() {
    let Some(bin) = praetor_bin() else { return };
    let ports = free_ports(5);
    let (http, server, serf_lan, serf_wan, dns) =
        (ports[0], ports[1], ports[2], ports[3], ports[4]);
    let child = Command::new(&bin)
        .args([
            "agent",
            "-dev",
            "-client=127.0.0.1",
            &format!("-http-port={http}"),
            &format!("-server-port={server}"),
            &format!("-serf-lan-port={serf_lan}"),
            &format!("-serf-wan-port={serf_wan}"),
            &format!("-dns-port={dns}"),
            "-grpc-port=-1",
            "-log-level=warn",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start praetor agent -dev");
    let _agent = AgentGuard(child);

    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(body) = http_get(http, "/v1/status/leader") {
            if body.trim().len() > 2 {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the dev agent elected no leader in 30 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    let dir = std::env::temp_dir().join(format!("lincheck-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let history_path = dir.join("history.json");
    let history_arg = history_path.to_str().expect("utf-8 temp path");
    let endpoint = format!("http://127.0.0.1:{http}");

    let (code, out) = lincheck(&[
        "run",
        "--endpoints",
        &endpoint,
        "--clients",
        "5",
        "--keys",
        "3",
        "--duration",
        "4s",
        "--read-mode",
        "mixed",
        "--history",
        history_arg,
    ]);
    assert_eq!(code, 0, "lincheck run: {out}");
    assert!(out.contains("PASS"), "{out}");

    let (code, out) = lincheck(&["check", "--history", history_arg]);
    assert_eq!(code, 0, "lincheck check: {out}");

    // Rewind one default/consistent read to the first value its key held,
    // once later writes had been acknowledged: no longer linearizable.
    let mut history = History::load(&history_path).expect("load history");
    assert!(history.records.len() > 100, "too few operations recorded");
    let first_put = history
        .records
        .iter()
        .position(|r| matches!(r.action, Action::Put { .. }) && r.ret.is_some())
        .expect("an acknowledged put");
    let key = history.records[first_put].key.clone();
    let first_value = history.records[first_put]
        .action
        .written_value()
        .expect("put value")
        .to_string();
    let first_ret = history.records[first_put].ret.expect("acknowledged");
    let later_ack = history
        .records
        .iter()
        .filter(|r| r.key == key && r.call > first_ret && r.ret.is_some())
        .filter(|r| match &r.action {
            Action::Put { .. } => true,
            Action::Cas { ok, .. } => *ok == Some(true),
            Action::Get { .. } => false,
        })
        .filter_map(|r| r.ret)
        .next()
        .expect("a later acknowledged write");
    let victim = history
        .records
        .iter_mut()
        .find(|r| {
            r.key == key
                && r.call > later_ack
                && matches!(
                    r.action,
                    Action::Get {
                        mode: ReadMode::Default | ReadMode::Consistent,
                        ..
                    }
                )
        })
        .expect("a later linearizable read");
    victim.action = match &victim.action {
        Action::Get { mode, .. } => Action::Get {
            mode: *mode,
            value: Some(first_value),
        },
        other => other.clone(),
    };
    let bad_path = dir.join("rewound.json");
    history.save(&bad_path).expect("save");
    let (code, out) = lincheck(&["check", "--history", bad_path.to_str().expect("utf-8")]);
    assert_eq!(code, 1, "a rewound read must fail: {out}");
    assert!(
        out.contains(&format!("NOT LINEARIZABLE: key {key}")),
        "{out}"
    );

    let _ = std::fs::remove_dir_all(&dir);
}
