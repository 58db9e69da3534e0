//! `lincheck run` records a history of concurrent KV get/put/cas against
//! praetor (or Consul) agents and checks it for linearizability;
//! `lincheck check` re-checks a saved history.
//!
//! Exit status: 0 linearizable, 1 not linearizable (or a stale read of a
//! value never written), 2 usage or IO error or nothing tested (no write
//! was acknowledged), 3 the check did not finish in `--check-timeout`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use lincheck::check::{self, describe_record, Report, Verdict};
use lincheck::history::History;
use lincheck::run::{self, Endpoint, ReadChoice, RunConfig};

const USAGE: &str = "\
usage:
  lincheck run --endpoints http://127.0.0.1:8500[,http://...] [--clients 5] [--keys 3]
               [--duration 30s] [--read-mode default|consistent|stale|mixed]
               [--history out.json] [--timeout 2s] [--seed N] [--prefix lin]
               [--check-timeout 300s] [--visualize failure.html] [--report report.json]
  lincheck check --history out.json [--check-timeout 300s] [--visualize failure.html]
               [--report report.json]

exit status: 0 linearizable; 1 not linearizable or a stale read of a value
never written; 2 usage/IO error or no write acknowledged; 3 check timed out";

enum Fail {
    Usage(String),
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match real_main(&args) {
        Ok(code) => code,
        Err(Fail::Usage(msg)) => {
            eprintln!("lincheck: {msg}\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

fn real_main(args: &[String]) -> Result<ExitCode, Fail> {
    let (command, rest) = match args.split_first() {
        Some((c, rest)) => (c.as_str(), rest),
        None => return Err(Fail::Usage("missing command".into())),
    };
    if matches!(command, "-h" | "--help" | "help") {
        println!("{USAGE}");
        return Ok(ExitCode::SUCCESS);
    }
    let flags = Flags::parse(rest)?;
    let check_timeout = flags.duration("check-timeout", Duration::from_secs(300))?;
    let visualize = flags.get("visualize").map(PathBuf::from);
    let report_path = flags.get("report").map(PathBuf::from);
    match command {
        "run" => {
            flags.only(&[
                "endpoints",
                "clients",
                "keys",
                "duration",
                "read-mode",
                "history",
                "timeout",
                "seed",
                "prefix",
                "check-timeout",
                "visualize",
                "report",
            ])?;
            let endpoints = flags
                .get("endpoints")
                .ok_or_else(|| Fail::Usage("--endpoints is required".into()))?
                .split(',')
                .filter(|s| !s.trim().is_empty())
                .map(Endpoint::parse)
                .collect::<Result<Vec<_>, _>>()
                .map_err(Fail::Usage)?;
            if endpoints.is_empty() {
                return Err(Fail::Usage("--endpoints is empty".into()));
            }
            let read_mode = flags.get("read-mode").unwrap_or("default");
            let read_choice = ReadChoice::parse(read_mode)
                .ok_or_else(|| Fail::Usage(format!("unknown --read-mode {read_mode}")))?;
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default();
            let run_id = format!(
                "{:x}{:x}",
                now.as_secs() & 0xffff_ffff,
                std::process::id() & 0xffff
            );
            let cfg = RunConfig {
                endpoints,
                clients: flags.number("clients", 5)?.max(1) as u32,
                keys: flags.number("keys", 3)?.max(1) as u32,
                duration: flags.duration("duration", Duration::from_secs(30))?,
                read_choice,
                request_timeout: flags.duration("timeout", Duration::from_secs(2))?,
                seed: flags.number("seed", now.as_nanos() as u64)?,
                prefix: flags.get("prefix").unwrap_or("lin").to_string(),
                run_id,
            };
            println!(
                "lincheck: run {}/{}: {} clients, {} keys, {:?}, read mode {}, seed {}, endpoints {}",
                cfg.prefix,
                cfg.run_id,
                cfg.clients,
                cfg.keys,
                cfg.duration,
                read_choice.name(),
                cfg.seed,
                cfg.endpoints
                    .iter()
                    .map(|e| e.authority.as_str())
                    .collect::<Vec<_>>()
                    .join(",")
            );
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| Fail::Usage(format!("tokio runtime: {e}")))?;
            let history = runtime.block_on(run::run(&cfg));
            drop(runtime);
            if let Some(path) = flags.get("history") {
                if let Err(e) = history.save(std::path::Path::new(path)) {
                    eprintln!("lincheck: writing history: {e}");
                    return Ok(ExitCode::from(2));
                }
                println!("lincheck: history written to {path}");
            }
            Ok(check_and_report(
                &history,
                check_timeout,
                visualize,
                report_path,
            ))
        }
        "check" => {
            flags.only(&["history", "check-timeout", "visualize", "report"])?;
            let path = flags
                .get("history")
                .ok_or_else(|| Fail::Usage("--history is required".into()))?;
            let history = match History::load(std::path::Path::new(path)) {
                Ok(h) => h,
                Err(e) => {
                    eprintln!("lincheck: reading history: {e}");
                    return Ok(ExitCode::from(2));
                }
            };
            Ok(check_and_report(
                &history,
                check_timeout,
                visualize,
                report_path,
            ))
        }
        other => Err(Fail::Usage(format!("unknown command {other}"))),
    }
}

fn check_and_report(
    history: &History,
    timeout: Duration,
    visualize: Option<PathBuf>,
    report_path: Option<PathBuf>,
) -> ExitCode {
    let started = Instant::now();
    let report = match check::check(&history.records, timeout, visualize.as_deref()) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("lincheck: malformed history: {e}");
            return ExitCode::from(2);
        }
    };
    let elapsed = started.elapsed();
    print_report(history, &report, elapsed);
    let code: u8 =
        if report.verdict == Verdict::NotLinearizable || !report.stale_violations.is_empty() {
            1
        } else if report.verdict == Verdict::Unknown {
            3
        } else if report.counts.acknowledged_writes() == 0 {
            println!("lincheck: FAIL: no write was acknowledged, nothing was tested");
            2
        } else {
            0
        };
    if report.verdict == Verdict::NotLinearizable {
        if let Some(path) = &visualize {
            println!("lincheck: visualization written to {}", path.display());
        }
    }
    if let Some(path) = report_path {
        let summary = serde_json::json!({
            "run_id": history.run_id,
            "read_mode": history.read_mode,
            "exit_code": code,
            "passed": code == 0,
            "verdict": match report.verdict {
                Verdict::Linearizable => "linearizable",
                Verdict::NotLinearizable => "not_linearizable",
                Verdict::Unknown => "unknown",
            },
            "counts": report.counts,
            "acknowledged_writes": report.counts.acknowledged_writes(),
            "failed_reads": history.failed_reads,
            "unsent_writes": history.unsent_writes,
            "model_ops": report.model_ops,
            "pruned_indeterminate": report.pruned_indeterminate,
            "stale_checked": report.stale_checked,
            "stale_violations": report.stale_violations.iter().map(|v| &v.reason).collect::<Vec<_>>(),
            "failing_keys": report.failures.iter().map(|f| &f.key).collect::<Vec<_>>(),
            "check_time_s": elapsed.as_secs_f64(),
        });
        if let Err(e) = std::fs::write(&path, summary.to_string()) {
            eprintln!("lincheck: writing {}: {e}", path.display());
            return ExitCode::from(2);
        }
    }
    ExitCode::from(code)
}

fn print_report(history: &History, report: &Report, elapsed: Duration) {
    println!("lincheck: ops: {}", report.counts);
    println!(
        "lincheck: failed reads (not recorded): {}; writes never sent: {}",
        history.failed_reads, history.unsent_writes
    );
    let verdict = match report.verdict {
        Verdict::Linearizable => "linearizable",
        Verdict::NotLinearizable => "NOT LINEARIZABLE",
        Verdict::Unknown => "UNKNOWN (check timed out)",
    };
    println!(
        "lincheck: porcupine: {verdict}: {} operations on {} keys \
         ({} unobserved indeterminate writes left out); \
         stale reads checked for never-written values: {} ({} violations); check time {:.3} s",
        report.model_ops,
        report.keys,
        report.pruned_indeterminate,
        report.stale_checked,
        report.stale_violations.len(),
        elapsed.as_secs_f64()
    );
    for f in &report.failures {
        println!("lincheck: NOT LINEARIZABLE: key {}", f.key);
        print!("{}", f.window);
    }
    for v in report.stale_violations.iter().take(10) {
        println!("lincheck: STALE READ VIOLATION: {}", v.reason);
        println!("    {}", describe_record(&history.records[v.record]));
    }
    if report.stale_violations.len() > 10 {
        println!(
            "lincheck: ... and {} more stale read violations",
            report.stale_violations.len() - 10
        );
    }
    let result = if report.passed() { "PASS" } else { "FAIL" };
    println!("lincheck: {result}");
}

/// `--name value` and `--name=value` pairs.
struct Flags(Vec<(String, String)>);

impl Flags {
    fn parse(args: &[String]) -> Result<Flags, Fail> {
        let mut out = Vec::new();
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            let Some(name) = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-')) else {
                return Err(Fail::Usage(format!("unexpected argument {arg}")));
            };
            let (name, value) = match name.split_once('=') {
                Some((n, v)) => (n.to_string(), v.to_string()),
                None => {
                    let v = it
                        .next()
                        .ok_or_else(|| Fail::Usage(format!("--{name} needs a value")))?;
                    (name.to_string(), v.clone())
                }
            };
            out.push((name, value));
        }
        Ok(Flags(out))
    }

    fn only(&self, allowed: &[&str]) -> Result<(), Fail> {
        match self.0.iter().find(|(n, _)| !allowed.contains(&n.as_str())) {
            Some((n, _)) => Err(Fail::Usage(format!("unknown flag --{n}"))),
            None => Ok(()),
        }
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn number(&self, name: &str, default: u64) -> Result<u64, Fail> {
        match self.get(name) {
            None => Ok(default),
            Some(v) => v
                .parse()
                .map_err(|_| Fail::Usage(format!("--{name} {v}: not a number"))),
        }
    }

    fn duration(&self, name: &str, default: Duration) -> Result<Duration, Fail> {
        match self.get(name) {
            None => Ok(default),
            Some(v) => {
                humantime::parse_duration(v).map_err(|e| Fail::Usage(format!("--{name} {v}: {e}")))
            }
        }
    }
}
