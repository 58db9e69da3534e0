//! `praetor snapshot save|restore|inspect`, with Consul's messages and exit
//! codes (0 on success, 1 on any error).

use std::io::Write;
use std::path::{Path, PathBuf};

use agent::snapshot::{read_archive, Archive, MAX_INSPECT_STATE};
use clap::{Args, Subcommand};
use hyper::{Method, StatusCode};

use crate::cli::HttpFlags;
use crate::client::ApiClient;

#[derive(Subcommand)]
pub enum SnapshotCommand {
    /// Saves snapshot of the servers' state.
    Save(SnapshotFile),
    /// Restores snapshot of the servers' state.
    Restore(SnapshotFile),
    /// Displays information about a snapshot file.
    Inspect(InspectArgs),
}

#[derive(Args)]
pub struct SnapshotFile {
    #[command(flatten)]
    pub http: HttpFlags,
    #[arg(allow_hyphen_values = true)]
    pub args: Vec<String>,
}

#[derive(Args)]
pub struct InspectArgs {
    /// `pretty` or `json`.
    #[arg(long, default_value = "pretty")]
    pub format: String,
    #[arg(allow_hyphen_values = true)]
    pub args: Vec<String>,
}

pub fn run(command: SnapshotCommand) -> u8 {
    let result = match command {
        SnapshotCommand::Save(c) => with_runtime(save(c)),
        SnapshotCommand::Restore(c) => with_runtime(restore(c)),
        SnapshotCommand::Inspect(c) => inspect(c),
    };
    match result {
        Ok(()) => 0,
        Err(message) => {
            eprintln!("{message}");
            1
        }
    }
}

fn with_runtime(work: impl std::future::Future<Output = Result<(), String>>) -> Result<(), String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("Error starting: {e}"))?
        .block_on(work)
}

fn one_file(args: &[String]) -> Result<PathBuf, String> {
    match args {
        [] => Err("Missing FILE argument".to_string()),
        [file] => Ok(PathBuf::from(file)),
        more => Err(format!(
            "Too many arguments (expected 1, got {})",
            more.len()
        )),
    }
}

fn connect(flags: &HttpFlags) -> Result<ApiClient, String> {
    ApiClient::new(flags).map_err(|e| format!("Error connecting to Consul agent: {e}"))
}

async fn save(command: SnapshotFile) -> Result<(), String> {
    let file = one_file(&command.args)?;
    let client = connect(&command.http)?;
    let answer = client
        .send(Method::GET, "/v1/snapshot", Vec::new())
        .await
        .map_err(|e| format!("Error saving snapshot: {e}"))?;
    if answer.status != StatusCode::OK {
        return Err(format!("Error saving snapshot: {}", answer.unexpected()));
    }
    // Written beside the target, checked, then renamed into place: FILE is
    // either the old file or a whole verified snapshot.
    let mut unverified = file.clone().into_os_string();
    unverified.push(".unverified");
    let unverified = PathBuf::from(unverified);
    write_synced(&unverified, &answer.body)
        .map_err(|e| format!("Error writing unverified snapshot file: {e}"))?;
    let verified = std::fs::read(&unverified)
        .map_err(|e| format!("Error opening snapshot file for verify: {e}"))
        .and_then(|bytes| {
            read_archive(&bytes, MAX_INSPECT_STATE)
                .map_err(|e| format!("Error verifying snapshot file: {e}"))
        });
    if let Err(message) = verified {
        let _ = std::fs::remove_file(&unverified);
        return Err(message);
    }
    if let Err(e) = std::fs::rename(&unverified, &file) {
        let _ = std::fs::remove_file(&unverified);
        return Err(format!(
            "Error renaming {:?} to {:?}: {e}",
            unverified.display().to_string(),
            file.display().to_string()
        ));
    }
    sync_parent(&file);
    println!(
        "Saved and verified snapshot to index {}",
        answer.index.unwrap_or(0)
    );
    Ok(())
}

fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

fn sync_parent(path: &Path) {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if let Ok(dir) = std::fs::File::open(parent) {
        let _ = dir.sync_all();
    }
}

async fn restore(command: SnapshotFile) -> Result<(), String> {
    let file = one_file(&command.args)?;
    let client = connect(&command.http)?;
    let archive = std::fs::read(&file).map_err(|e| format!("Error opening snapshot file: {e}"))?;
    let answer = client
        .send(Method::PUT, "/v1/snapshot", archive)
        .await
        .map_err(|e| format!("Error restoring snapshot: {e}"))?;
    if answer.status != StatusCode::OK {
        return Err(format!("Error restoring snapshot: {}", answer.unexpected()));
    }
    println!("Restored snapshot");
    Ok(())
}

fn inspect(command: InspectArgs) -> Result<(), String> {
    let file = one_file(&command.args)?;
    if command.format != "pretty" && command.format != "json" {
        return Err(format!(
            "Error outputting enhanced snapshot data: Unknown format: {}",
            command.format
        ));
    }
    let bytes = std::fs::read(&file).map_err(|e| format!("Error opening snapshot file: {e}"))?;
    let Archive { meta, state } = read_archive(&bytes, MAX_INSPECT_STATE)
        .map_err(|e| format!("Error reading snapshot: {e}"))?;
    let (_, rows) = state::snapshot_stats(&state)
        .map_err(|e| format!("Error extracting snapshot data: {e}"))?;
    let total: usize = rows.iter().map(|r| r.size).sum();
    if command.format == "json" {
        let stats: Vec<serde_json::Value> = rows
            .iter()
            .map(|r| serde_json::json!({"Name": r.name, "Sum": r.size, "Count": r.count}))
            .collect();
        let out = serde_json::json!({
            "Meta": {
                "ID": meta.id,
                "Size": meta.size,
                "Index": meta.index,
                "Term": meta.term,
                "Version": meta.version,
            },
            "Stats": stats,
            "StatsKV": serde_json::Value::Null,
            "TotalSize": total,
            "TotalSizeKV": 0,
        });
        println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
        return Ok(());
    }
    let mut out = String::new();
    for (name, value) in [
        ("ID", meta.id.clone()),
        ("Size", meta.size.to_string()),
        ("Index", meta.index.to_string()),
        ("Term", meta.term.to_string()),
        ("Version", meta.version.to_string()),
    ] {
        out.push_str(&format!("{name:<13}{value}\n"));
    }
    out.push_str("\n\n");
    let row = |name: &str, count: &str, size: &str| format!(" {name:<28}{count:<11}{size:<11}\n");
    out.push_str(&row("Type", "Count", "Size"));
    out.push_str(&row("----", "----", "----"));
    for r in &rows {
        out.push_str(&row(r.name, &r.count.to_string(), &human_bytes(r.size)));
    }
    out.push_str(&row("----", "----", "----"));
    out.push_str(&format!(
        " {:<28}{:<11}{}\n",
        "Total",
        "",
        human_bytes(total)
    ));
    print!("{out}");
    Ok(())
}

/// Bytes as Consul's inspect prints them (`313B`, `1.6KB`, `4.7MB`).
fn human_bytes(bytes: usize) -> String {
    const UNITS: [&str; 5] = ["B", "KB", "MB", "GB", "TB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes}B")
    } else {
        let text = format!("{value:.1}");
        format!("{}{}", text.trim_end_matches(".0"), UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::human_bytes;

    #[test]
    fn sizes_print_like_consul() {
        assert_eq!(human_bytes(313), "313B");
        assert_eq!(human_bytes(1638), "1.6KB");
        assert_eq!(human_bytes(5 * 1024), "5KB");
    }
}
