//! The scheduler end to end: real probes, real timers, updates polled from
//! the channel with a deadline (never a bare sleep).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

use super::*;
use crate::checks::http::tests::http_check;

const PATIENCE: Duration = Duration::from_secs(10);

async fn next_update(updates: &mut UnboundedReceiver<CheckUpdate>) -> CheckUpdate {
    match tokio::time::timeout(PATIENCE, updates.recv()).await {
        Ok(Some(update)) => update,
        Ok(None) => panic!("update channel closed"),
        Err(_) => panic!("no check update within {PATIENCE:?}"),
    }
}

/// An HTTP server answering 200, then 429, then 503 forever.
async fn degrading_server() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/health", listener.local_addr().unwrap());
    let served = Arc::new(AtomicUsize::new(0));
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let n = served.fetch_add(1, Ordering::SeqCst);
            let status = ["200 OK", "429 Too Many Requests"]
                .get(n)
                .copied()
                .unwrap_or("503 Service Unavailable");
            tokio::spawn(async move {
                let mut buf = [0u8; 2048];
                let _ = stream.read(&mut buf).await;
                let reply = format!(
                    "HTTP/1.1 {status}\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi"
                );
                let _ = stream.write_all(reply.as_bytes()).await;
            });
        }
    });
    url
}

#[tokio::test]
async fn http_check_reports_each_status_change() {
    let url = degrading_server().await;
    let (tx, mut updates) = unbounded_channel();
    let mut scheduler = CheckScheduler::new(tx);
    let kind = CheckKind::Http(http_check(url.clone()));
    scheduler.start("web".into(), kind, Thresholds::default());
    for (status, text) in [
        (CheckStatus::Passing, "200 OK"),
        (CheckStatus::Warning, "429 Too Many Requests"),
        (CheckStatus::Critical, "503 Service Unavailable"),
    ] {
        let update = next_update(&mut updates).await;
        assert_eq!(
            update,
            CheckUpdate {
                check_id: "web".into(),
                status,
                output: format!("HTTP GET {url}: {text} Output: hi"),
            }
        );
    }
    scheduler.stop("web");
    assert!(!scheduler.is_running("web"));
}

#[tokio::test]
async fn thresholds_hold_back_flapping_results() {
    // TCP against a closed port: the first failure is reported at once
    // (the counters start at their thresholds), and so is every further one.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    drop(listener);
    let (tx, mut updates) = unbounded_channel();
    let mut scheduler = CheckScheduler::new(tx);
    let kind = CheckKind::Tcp(TcpCheck {
        address: address.clone(),
        interval: Duration::from_millis(30),
        timeout: Duration::from_secs(1),
    });
    let thresholds = Thresholds {
        success_before_passing: 3,
        failures_before_warning: 0,
        failures_before_critical: 2,
    };
    scheduler.start("db".into(), kind, thresholds);
    let update = next_update(&mut updates).await;
    assert_eq!(update.status, CheckStatus::Critical);
    assert_eq!(
        update.output,
        format!("dial tcp {address}: connect: connection refused")
    );

    // Now the port opens: three successes are needed before "passing".
    let listener = TcpListener::bind(&address).await.unwrap();
    let accepting = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            drop(stream);
        }
    });
    let started = tokio::time::Instant::now();
    loop {
        let update = next_update(&mut updates).await;
        if update.status == CheckStatus::Passing {
            assert_eq!(update.output, format!("TCP connect {address}: Success"));
            break;
        }
        assert_eq!(update.status, CheckStatus::Critical, "{update:?}");
    }
    // Three runs at >= 30ms apart.
    assert!(started.elapsed() >= Duration::from_millis(60));
    accepting.abort();
}

#[tokio::test]
async fn ttl_expires_and_resets() {
    let (tx, mut updates) = unbounded_channel();
    let mut scheduler = CheckScheduler::new(tx);
    let ttl = CheckKind::Ttl {
        ttl: Duration::from_millis(100),
        output_max_size: 8,
    };
    scheduler.start("app".into(), ttl, Thresholds::default());

    let expired = next_update(&mut updates).await;
    assert_eq!(
        (expired.status, expired.output.as_str()),
        (CheckStatus::Critical, "TTL expired")
    );

    assert!(scheduler.ttl_update("app", CheckStatus::Passing, "all systems go".into()));
    let reported = next_update(&mut updates).await;
    assert_eq!(reported.status, CheckStatus::Passing);
    assert_eq!(reported.output, "all syst ... (captured 8 of 14 bytes)");

    let expired = next_update(&mut updates).await;
    assert_eq!(expired.status, CheckStatus::Critical);
    assert_eq!(
        expired.output,
        "TTL expired (last output before timeout follows): all syst ... (captured 8 of 14 bytes)"
    );

    assert!(!scheduler.ttl_update("nope", CheckStatus::Passing, String::new()));
    scheduler.stop("app");
    assert!(!scheduler.ttl_update("app", CheckStatus::Passing, String::new()));
}

#[tokio::test]
async fn ttl_update_refuses_interval_checks() {
    let (tx, _updates) = unbounded_channel();
    let mut scheduler = CheckScheduler::new(tx);
    let kind = CheckKind::Tcp(TcpCheck {
        address: "127.0.0.1:1".into(),
        interval: Duration::from_secs(60),
        timeout: Duration::from_secs(1),
    });
    scheduler.start("tcp".into(), kind, Thresholds::default());
    assert!(!scheduler.ttl_update("tcp", CheckStatus::Passing, String::new()));
}

#[tokio::test(start_paused = true)]
async fn replacing_and_stopping_silence_the_old_runner() {
    let (tx, mut updates) = unbounded_channel();
    let mut scheduler = CheckScheduler::new(tx);
    let ttl = |seconds| CheckKind::Ttl {
        ttl: Duration::from_secs(seconds),
        output_max_size: 4096,
    };
    scheduler.start("replaced".into(), ttl(1), Thresholds::default());
    scheduler.start("replaced".into(), ttl(3600), Thresholds::default());
    scheduler.start("stopped".into(), ttl(1), Thresholds::default());
    scheduler.stop("stopped");
    scheduler.start("kept".into(), ttl(2), Thresholds::default());
    // Virtual time: the first report is the 2s TTL; had the 1s runners
    // survived, they would have reported first.
    let first = next_update(&mut updates).await;
    assert_eq!(first.check_id, "kept");
    assert!(updates.try_recv().is_err());
}
