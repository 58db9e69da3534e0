//! Serves the RPC over a fake two-node cluster, so that the real `serf`
//! CLI (or `praetor serf`) can be pointed at this crate's server:
//!
//! ```text
//! cargo run -p serf-rpc --example fake_agent -- -rpc-addr 127.0.0.1:7373 [-rpc-auth TOKEN] [-node NAME]
//! ```
//!
//! Prints `listening on ADDR` once it accepts connections (`-rpc-addr` may
//! use port 0), writes an INFO log line every 200 ms for `monitor`, and runs
//! until SIGINT/SIGTERM or a `leave`.

use std::sync::Arc;
use std::time::Duration;

use serf_rpc::testing::{demo_members, FakeBackend};
use serf_rpc::{LogLevel, Server, ServerConfig};

fn flag(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let addr = flag(&args, "-rpc-addr").unwrap_or_else(|| "127.0.0.1:7373".to_owned());
    let node = flag(&args, "-node").unwrap_or_else(|| "fake".to_owned());
    let config = ServerConfig {
        auth_key: flag(&args, "-rpc-auth"),
    };
    let fake = Arc::new(FakeBackend::new(demo_members(&node)));
    let server = Server::bind(addr.as_str(), fake.clone(), config).await?;
    println!("listening on {}", server.local_addr());

    let ticker = fake.clone();
    tokio::spawn(async move {
        for n in 1u64.. {
            tokio::time::sleep(Duration::from_millis(200)).await;
            ticker.log(LogLevel::Info, &format!("fake: tick {n}"));
            ticker.log(LogLevel::Debug, &format!("fake: debug tick {n}"));
        }
    });

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
        _ = fake.wait_shutdown() => {}
    }
    server.shutdown().await;
    Ok(())
}
