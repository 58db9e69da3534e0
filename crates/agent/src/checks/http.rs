//! HTTP checks: one request per interval, 2xx passing, 429 warning, anything
//! else critical, with Consul's `HTTP <method> <url>: <status> Output: <body>`.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderName, HeaderValue};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use tokio::time::Instant;

use super::dial::{open, TlsTarget};
use super::output::TailBuffer;
use super::scheduler::{AbortOnDrop, ProbeResult};
use super::tls::Alpn;
use super::{CheckStatus, USER_AGENT};

/// Go's `http.Client` gives up after this many redirects.
const MAX_REDIRECTS: usize = 10;

/// An HTTP check (`HTTP`, `Method`, `Header`, `Body`, `TLSSkipVerify`,
/// `TLSServerName`, `DisableRedirects`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpCheck {
    pub url: String,
    /// As given (Consul does not upper-case it); `GET` when the definition
    /// left it empty.
    pub method: String,
    /// Header name to values; a `Host` entry overrides the request's host.
    pub headers: BTreeMap<String, Vec<String>>,
    pub body: String,
    pub tls_skip_verify: bool,
    pub tls_server_name: Option<String>,
    pub disable_redirects: bool,
    pub interval: Duration,
    /// Covers the whole exchange, redirects included (Consul's default 10s).
    pub timeout: Duration,
    /// Only the last this-many bytes of the response body are reported.
    pub output_max_size: usize,
}

/// A response whose head has arrived; the connection task lives as long as
/// the body is being read.
struct Fetched {
    status: StatusCode,
    status_text: String,
    location: Option<String>,
    body: Incoming,
    _connection: AbortOnDrop,
}

impl HttpCheck {
    /// One probe, reported as Consul's `CheckHTTP.check` reports it.
    pub(crate) async fn probe(&self) -> ProbeResult {
        let deadline = Instant::now() + self.timeout;
        let fetched = match self.fetch(deadline).await {
            Ok(fetched) => fetched,
            Err(text) => {
                tracing::warn!(url = %self.url, error = %text, "check HTTP request failed");
                return ProbeResult::new(CheckStatus::Critical, text);
            }
        };
        let mut body = TailBuffer::new(self.output_max_size);
        read_body(fetched.body, &mut body, deadline).await;
        let output = format!(
            "HTTP {} {}: {} Output: {}",
            self.method,
            self.url,
            fetched.status_text,
            body.to_text()
        );
        let status = match fetched.status.as_u16() {
            200..=299 => CheckStatus::Passing,
            // 429 Too Many Requests: the service is up but shedding load.
            429 => CheckStatus::Warning,
            _ => CheckStatus::Critical,
        };
        ProbeResult::new(status, output)
    }

    /// Sends the request, following redirects unless `disable_redirects`.
    /// Errors are complete Go-style texts (`Get "<url>": <reason>`).
    async fn fetch(&self, deadline: Instant) -> Result<Fetched, String> {
        let op = go_url_op(&self.method);
        let mut method = Method::from_bytes(self.method.as_bytes())
            .map_err(|_| format!("net/http: invalid method {:?}", self.method))?;
        let mut url = self.url.clone();
        let mut target = Target::parse(&url).map_err(|e| match e {
            TargetError::Syntax(reason) => format!("parse {url:?}: {reason}"),
            TargetError::Unusable(reason) => format!("{op} {url:?}: {reason}"),
        })?;
        let mut body = Bytes::from(self.body.clone().into_bytes());
        let mut redirects = 0;
        loop {
            let exchange = self.exchange(&method, &target, body.clone(), deadline);
            let fetched = match tokio::time::timeout_at(deadline, exchange).await {
                Ok(Ok(fetched)) => fetched,
                Ok(Err(reason)) => return Err(format!("{op} {url:?}: {reason}")),
                Err(_) => {
                    return Err(format!(
                        "{op} {url:?}: context deadline exceeded \
                         (Client.Timeout exceeded while awaiting headers)"
                    ))
                }
            };
            let code = fetched.status.as_u16();
            if self.disable_redirects || !matches!(code, 301 | 302 | 303 | 307 | 308) {
                return Ok(fetched);
            }
            let Some(location) = fetched.location.clone().filter(|l| !l.is_empty()) else {
                return Ok(fetched);
            };
            let next = target.resolve(&location);
            if matches!(code, 301..=303) {
                // Go switches to GET and drops the body for these, like browsers.
                if method != Method::GET && method != Method::HEAD {
                    method = Method::GET;
                }
                body = Bytes::new();
            }
            redirects += 1;
            if redirects > MAX_REDIRECTS {
                return Err(format!(
                    "{op} {next:?}: stopped after {MAX_REDIRECTS} redirects"
                ));
            }
            target = Target::parse(&next).map_err(|e| match e {
                TargetError::Syntax(reason) => {
                    format!("{op} {url:?}: failed to parse Location header {location:?}: {reason}")
                }
                TargetError::Unusable(reason) => format!("{op} {next:?}: {reason}"),
            })?;
            url = next;
        }
    }

    /// One request on a fresh connection: Consul disables keep-alives so a
    /// stale pooled connection can never fail a check.
    async fn exchange(
        &self,
        method: &Method,
        target: &Target,
        body: Bytes,
        deadline: Instant,
    ) -> Result<Fetched, String> {
        let server_name = self.tls_server_name.as_deref().unwrap_or(&target.host);
        let tls = target.https.then_some(TlsTarget {
            server_name,
            skip_verify: self.tls_skip_verify,
            alpn: Alpn::None,
        });
        let io = open(&target.dial_address(), tls, deadline)
            .await
            .map_err(|e| e.to_string())?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io))
            .await
            .map_err(|e| e.to_string())?;
        let connection = AbortOnDrop::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "HTTP check connection ended with an error");
            }
        });
        let request = self.request(method, target, body)?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status();
        let reason = response
            .extensions()
            .get::<hyper::ext::ReasonPhrase>()
            .map(|reason| String::from_utf8_lossy(reason.as_bytes()).into_owned())
            .or_else(|| status.canonical_reason().map(str::to_owned))
            .unwrap_or_default();
        let location = response
            .headers()
            .get(hyper::header::LOCATION)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        Ok(Fetched {
            status,
            status_text: format!("{} {reason}", status.as_u16())
                .trim_end()
                .to_owned(),
            location,
            body: response.into_body(),
            _connection: connection,
        })
    }

    /// The request as Go's client writes it for Consul: the user's headers,
    /// then Consul's `User-Agent` and `Accept` unless the user set them.
    fn request(
        &self,
        method: &Method,
        target: &Target,
        body: Bytes,
    ) -> Result<Request<Full<Bytes>>, String> {
        let mut host = target.authority.clone();
        let mut request = Request::new(Full::new(Bytes::new()));
        let headers = request.headers_mut();
        for (name, values) in &self.headers {
            if name.eq_ignore_ascii_case("host") {
                if let Some(value) = values.first().filter(|v| !v.is_empty()) {
                    host = value.clone();
                }
                continue;
            }
            let header = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("net/http: invalid header field name {name:?}"))?;
            for value in values {
                let value = HeaderValue::from_str(value)
                    .map_err(|_| format!("net/http: invalid header field value for {name:?}"))?;
                headers.append(header.clone(), value);
            }
        }
        let host = HeaderValue::from_str(&host)
            .map_err(|_| format!("http: invalid Host header {host:?}"))?;
        headers.insert(hyper::header::HOST, host);
        if !headers.contains_key(hyper::header::USER_AGENT) {
            headers.insert(
                hyper::header::USER_AGENT,
                HeaderValue::from_static(USER_AGENT),
            );
        }
        if !headers.contains_key(hyper::header::ACCEPT) {
            headers.insert(
                hyper::header::ACCEPT,
                HeaderValue::from_static("text/plain, text/*, */*"),
            );
        }
        headers.insert(hyper::header::CONNECTION, HeaderValue::from_static("close"));
        // Go announces an empty body only for methods that normally carry one.
        if !body.is_empty() || matches!(*method, Method::POST | Method::PUT | Method::PATCH) {
            headers.insert(hyper::header::CONTENT_LENGTH, HeaderValue::from(body.len()));
        }
        *request.method_mut() = method.clone();
        *request.uri_mut() = target
            .path_and_query
            .parse::<Uri>()
            .map_err(|e| format!("parse {:?}: {e}", target.path_and_query))?;
        *request.body_mut() = Full::new(body);
        Ok(request)
    }
}

/// Reads the body into `into` until the end, an error or the deadline;
/// whatever arrived is still reported, as Consul logs and carries on.
async fn read_body(mut body: Incoming, into: &mut TailBuffer, deadline: Instant) {
    loop {
        match tokio::time::timeout_at(deadline, body.frame()).await {
            Ok(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    into.write(data);
                }
            }
            Ok(None) => return,
            Ok(Some(Err(error))) => {
                tracing::warn!(%error, "check error while reading body");
                return;
            }
            Err(_) => {
                tracing::warn!("check timed out while reading body");
                return;
            }
        }
    }
}

/// Go's `url.Error` operation: the method with only its first letter upper
/// case (`Get`, `Post`).
fn go_url_op(method: &str) -> String {
    let method = if method.is_empty() { "GET" } else { method };
    let mut chars = method.chars();
    match chars.next() {
        Some(first) => first
            .to_uppercase()
            .chain(chars.flat_map(char::to_lowercase))
            .collect(),
        None => String::new(),
    }
}

/// Why a URL cannot be requested; Go reports the two at different stages.
#[derive(Debug)]
enum TargetError {
    /// Not a URL at all (`http.NewRequest` fails: `parse "<url>": ...`).
    Syntax(String),
    /// A URL, but not one an HTTP client can send to (`Client.Do` fails:
    /// `Get "<url>": unsupported protocol scheme "ftp"`).
    Unusable(String),
}

/// The parts of an `http://` or `https://` URL a request needs.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Target {
    https: bool,
    /// `host[:port]` as written: the `Host` header.
    authority: String,
    /// The host without IPv6 brackets: the TLS server name.
    host: String,
    port: u16,
    path_and_query: String,
}

impl Target {
    fn parse(url: &str) -> Result<Target, TargetError> {
        let uri: Uri = url
            .parse()
            .map_err(|e: hyper::http::uri::InvalidUri| TargetError::Syntax(e.to_string()))?;
        let https = match uri.scheme_str() {
            Some(scheme) if scheme.eq_ignore_ascii_case("http") => false,
            Some(scheme) if scheme.eq_ignore_ascii_case("https") => true,
            other => {
                let scheme = other.unwrap_or_default();
                return Err(TargetError::Unusable(format!(
                    "unsupported protocol scheme {scheme:?}"
                )));
            }
        };
        let authority = uri
            .authority()
            .map(|a| a.as_str().rsplit('@').next().unwrap_or_default().to_owned())
            .filter(|a| !a.is_empty())
            .ok_or_else(|| TargetError::Unusable("http: no Host in request URL".to_owned()))?;
        let host = uri.host().unwrap_or_default();
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host)
            .to_owned();
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let path_and_query = match uri.path_and_query().map(|pq| pq.as_str()) {
            None | Some("") => "/".to_owned(),
            Some(query) if query.starts_with('?') => format!("/{query}"),
            Some(pq) => pq.to_owned(),
        };
        Ok(Target {
            https,
            authority,
            host,
            port,
            path_and_query,
        })
    }

    fn dial_address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// Resolves a `Location` header against this URL (absolute,
    /// scheme-relative, absolute-path, query-only or relative-path).
    fn resolve(&self, location: &str) -> String {
        let scheme = if self.https { "https" } else { "http" };
        let lower = location.to_ascii_lowercase();
        if lower.starts_with("http://") || lower.starts_with("https://") {
            return location.to_owned();
        }
        if location.starts_with("//") {
            return format!("{scheme}:{location}");
        }
        let origin = format!("{scheme}://{}", self.authority);
        if location.starts_with('/') {
            return format!("{origin}{location}");
        }
        let path = self
            .path_and_query
            .split_once('?')
            .map_or(self.path_and_query.as_str(), |(path, _)| path);
        if location.starts_with('?') {
            return format!("{origin}{path}{location}");
        }
        let directory = &path[..path.rfind('/').map_or(0, |at| at + 1)];
        let directory = if directory.is_empty() { "/" } else { directory };
        format!("{origin}{directory}{location}")
    }
}

#[cfg(test)]
pub(crate) mod tests;
