//! A small HTTP client for the CLI, addressed the way Consul's CLI is:
//! `-http-addr`, else `$CONSUL_HTTP_ADDR`, else 127.0.0.1:8500.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::cli::HttpFlags;

pub struct ApiClient {
    base: String,
    token: Option<String>,
    stale: bool,
    http: Client<HttpConnector, Full<Bytes>>,
}

/// An answer from the agent.
pub struct Answer {
    pub status: StatusCode,
    /// `X-Consul-Index`, for blocking queries.
    pub index: Option<u64>,
    pub body: Bytes,
}

impl ApiClient {
    pub fn new(flags: &HttpFlags) -> Result<ApiClient, String> {
        let addr = flags
            .http_addr
            .clone()
            .or_else(|| std::env::var("CONSUL_HTTP_ADDR").ok())
            .filter(|a| !a.is_empty())
            .unwrap_or_else(|| "127.0.0.1:8500".to_owned());
        let base = match addr.split_once("://") {
            None => format!("http://{addr}"),
            Some(("http", rest)) => format!("http://{rest}"),
            Some((scheme, _)) => return Err(format!("Unknown protocol scheme: {scheme}")),
        };
        let token = flags
            .token
            .clone()
            .or_else(|| std::env::var("CONSUL_HTTP_TOKEN").ok())
            .filter(|t| !t.is_empty());
        Ok(ApiClient {
            base: base.trim_end_matches('/').to_owned(),
            token,
            stale: flags.stale.unwrap_or(false),
            http: Client::builder(TokioExecutor::new()).build_http(),
        })
    }

    /// Sends one request; a read adds `stale` when asked for.
    pub async fn send(
        &self,
        method: Method,
        path_and_query: &str,
        body: Vec<u8>,
    ) -> Result<Answer, String> {
        let mut uri = format!("{}{path_and_query}", self.base);
        if self.stale && method == Method::GET {
            uri.push(if uri.contains('?') { '&' } else { '?' });
            uri.push_str("stale");
        }
        let mut request = Request::builder().method(method.clone()).uri(&uri);
        if let Some(token) = &self.token {
            request = request.header("X-Consul-Token", token);
        }
        let request = request
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        let response = self
            .http
            .request(request)
            .await
            .map_err(|e| format!("{method} \"{uri}\": {}", describe(&e)))?;
        let status = response.status();
        let index = response
            .headers()
            .get("X-Consul-Index")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok(Answer {
            status,
            index,
            body,
        })
    }
}

fn describe(error: &hyper_util::client::legacy::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(inner) = source {
        text = format!("{text}: {inner}");
        source = inner.source();
    }
    text
}

impl Answer {
    /// Consul's client text for a status it did not expect.
    pub fn unexpected(&self) -> String {
        format!(
            "Unexpected response code: {} ({})",
            self.status.as_u16(),
            String::from_utf8_lossy(&self.body)
        )
    }
}

/// Percent-encodes a key for a URL path, keeping `/` as the separator.
pub fn escape_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for b in key.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}
