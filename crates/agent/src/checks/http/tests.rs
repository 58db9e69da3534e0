//! The HTTP runner against a hand-written HTTP/1.1 responder.

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::*;

/// A canned answer: status line text, extra headers, body.
#[derive(Clone)]
struct Canned {
    status: &'static str,
    headers: Vec<String>,
    body: String,
}

fn canned(status: &'static str, body: &str) -> Canned {
    Canned {
        status,
        headers: Vec::new(),
        body: body.to_owned(),
    }
}

/// Serves `route(path)` on every connection and records each request head.
async fn serve(
    route: impl Fn(&str) -> Canned + Send + Sync + 'static,
) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let recorded = seen.clone();
    let route = Arc::new(route);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let route = route.clone();
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut chunk = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&chunk[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&request).into_owned();
                let path = head.split(' ').nth(1).unwrap_or("/").to_owned();
                seen.lock().unwrap().push(head);
                let answer = route(&path);
                let mut response = format!(
                    "HTTP/1.1 {}\r\nContent-Length: {}\r\nConnection: close\r\n",
                    answer.status,
                    answer.body.len()
                );
                for header in &answer.headers {
                    response.push_str(header);
                    response.push_str("\r\n");
                }
                response.push_str("\r\n");
                response.push_str(&answer.body);
                let _ = stream.write_all(response.as_bytes()).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    (base, recorded)
}

pub(crate) fn http_check(url: String) -> HttpCheck {
    HttpCheck {
        url,
        method: "GET".into(),
        headers: BTreeMap::new(),
        body: String::new(),
        tls_skip_verify: false,
        tls_server_name: None,
        disable_redirects: false,
        interval: Duration::from_millis(50),
        timeout: Duration::from_secs(5),
        output_max_size: 4096,
    }
}

#[tokio::test]
async fn status_codes_map_like_consul() {
    let (base, _) = serve(|path| match path {
        "/ok" => canned("200 OK", "all good"),
        "/busy" => canned("429 Too Many Requests", "slow down"),
        "/custom" => canned("204 Nothing Here", ""),
        _ => canned("503 Service Unavailable", "down"),
    })
    .await;
    let cases = [
        ("/ok", CheckStatus::Passing, "200 OK Output: all good"),
        (
            "/busy",
            CheckStatus::Warning,
            "429 Too Many Requests Output: slow down",
        ),
        ("/custom", CheckStatus::Passing, "204 Nothing Here Output: "),
        (
            "/down",
            CheckStatus::Critical,
            "503 Service Unavailable Output: down",
        ),
    ];
    for (path, status, text) in cases {
        let url = format!("{base}{path}");
        let result = http_check(url.clone()).probe().await;
        assert_eq!(result.status, status, "{path}");
        assert_eq!(result.output, format!("HTTP GET {url}: {text}"));
    }
}

#[tokio::test]
async fn body_is_capped_keeping_the_tail() {
    let body = format!("{}TAIL", "x".repeat(5000));
    let (base, _) = serve(move |_| canned("200 OK", &body)).await;
    let url = format!("{base}/big");
    let result = http_check(url.clone()).probe().await;
    let kept = format!("{}TAIL", "x".repeat(4092));
    assert_eq!(
        result.output,
        format!("HTTP GET {url}: 200 OK Output: {kept}")
    );
}

#[tokio::test]
async fn sends_consul_headers_method_and_body() {
    let (base, seen) = serve(|_| canned("200 OK", "")).await;
    let mut check = http_check(format!("{base}/post"));
    check.method = "PUT".into();
    check.body = "{\"a\":1}".into();
    check
        .headers
        .insert("X-Token".into(), vec!["one".into(), "two".into()]);
    check
        .headers
        .insert("Host".into(), vec!["example.test".into()]);
    assert_eq!(check.probe().await.status, CheckStatus::Passing);
    let head = seen.lock().unwrap()[0].to_ascii_lowercase();
    assert!(head.starts_with("put /post http/1.1\r\n"), "{head}");
    for line in [
        "host: example.test",
        "user-agent: consul health check",
        "accept: text/plain, text/*, */*",
        "x-token: one",
        "x-token: two",
        "content-length: 7",
        "connection: close",
    ] {
        assert!(head.contains(line), "missing {line:?} in {head}");
    }
}

#[tokio::test]
async fn follows_redirects_unless_disabled() {
    let (base, _) = serve(|path| match path {
        "/old" => Canned {
            status: "302 Found",
            headers: vec!["Location: /new".into()],
            body: "moved".into(),
        },
        "/loop" => Canned {
            status: "301 Moved Permanently",
            headers: vec!["Location: loop".into()],
            body: String::new(),
        },
        _ => canned("200 OK", "new place"),
    })
    .await;
    let url = format!("{base}/old");
    let followed = http_check(url.clone()).probe().await;
    assert_eq!(followed.status, CheckStatus::Passing);
    assert_eq!(
        followed.output,
        format!("HTTP GET {url}: 200 OK Output: new place")
    );

    let mut check = http_check(url.clone());
    check.disable_redirects = true;
    let stopped = check.probe().await;
    assert_eq!(stopped.status, CheckStatus::Critical);
    assert_eq!(
        stopped.output,
        format!("HTTP GET {url}: 302 Found Output: moved")
    );

    let looping = http_check(format!("{base}/loop")).probe().await;
    assert_eq!(looping.status, CheckStatus::Critical);
    assert_eq!(
        looping.output,
        format!("Get \"{base}/loop\": stopped after 10 redirects")
    );
}

#[tokio::test]
async fn connection_errors_are_critical_with_go_text() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    drop(listener);
    let url = format!("http://{address}/health");
    let result = http_check(url.clone()).probe().await;
    assert_eq!(result.status, CheckStatus::Critical);
    assert_eq!(
        result.output,
        format!("Get \"{url}\": dial tcp {address}: connect: connection refused")
    );

    let mut post = http_check("ftp://example.test/".into());
    post.method = "POST".into();
    assert_eq!(
        post.probe().await.output,
        "Post \"ftp://example.test/\": unsupported protocol scheme \"ftp\""
    );
}

#[tokio::test]
async fn silent_server_times_out() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    let hold = tokio::spawn(async move {
        let accepted = listener.accept().await;
        tokio::time::sleep(Duration::from_secs(30)).await;
        drop(accepted);
    });
    let mut check = http_check(url.clone());
    check.timeout = Duration::from_millis(200);
    let result = check.probe().await;
    hold.abort();
    assert_eq!(result.status, CheckStatus::Critical);
    assert_eq!(
        result.output,
        format!(
            "Get \"{url}\": context deadline exceeded \
             (Client.Timeout exceeded while awaiting headers)"
        )
    );
}

#[test]
fn resolves_locations() {
    let target = Target::parse("http://h:8/a/b?q=1").unwrap();
    assert_eq!(target.resolve("/x"), "http://h:8/x");
    assert_eq!(target.resolve("c"), "http://h:8/a/c");
    assert_eq!(target.resolve("?z"), "http://h:8/a/b?z");
    assert_eq!(target.resolve("//o/p"), "http://o/p");
    assert_eq!(target.resolve("https://o/p"), "https://o/p");
    let bare = Target::parse("https://[::1]").unwrap();
    assert_eq!(bare.path_and_query, "/");
    assert_eq!(bare.dial_address(), "[::1]:443");
    assert_eq!(bare.host, "::1");
}
