//! A lean HTTP/1.1 server for the API port, handing each request to the
//! axum router.
//!
//! Why not hyper's server: it keeps an 8 KiB read buffer and an 8 KiB write
//! buffer for the life of every connection, and Consul clients hold one
//! connection per blocking query, so 10,000 watchers cost over 160 MB in
//! idle buffers (measured in bench/RESULTS.md). Here a connection owns no
//! buffer while it waits: bytes are read into a buffer sized to the request
//! and released once it is parsed, and each response is written from one
//! allocation that is dropped when it is sent.
//!
//! Input is hostile: every size is bounded, malformed requests get a 400
//! and the connection is closed, and nothing here panics on what a client
//! sends.

use std::io::Write as _;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use agent::Agent;
use axum::body::Body;
use axum::Router;
use http::header::{CONNECTION, CONTENT_LENGTH, EXPECT, TRANSFER_ENCODING};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, Uri, Version};
use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_util::task::TaskTracker;

/// The largest request head accepted (Go's default, which Consul keeps).
const MAX_HEAD_BYTES: usize = 1 << 20;
/// The most header fields one request may carry.
const MAX_HEADERS: usize = 128;
/// The longest chunk-size or trailer line of a chunked body.
const MAX_LINE_BYTES: usize = 4096;
/// How much is read from the socket at a time.
const READ_CHUNK: usize = 4096;
/// How long a client may take to send a request once it has started one.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Serves `router` on `listener` until the agent stops, then waits for the
/// connections to finish what they are answering.
pub async fn serve(listener: TcpListener, router: Router, agent: Arc<Agent>, max_body: usize) {
    let connections = TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = agent.stopping() => break,
        };
        match accepted {
            Ok((stream, _peer)) => {
                let _ = stream.set_nodelay(true);
                let connection = Connection {
                    stream,
                    pending: Vec::new(),
                    router: router.clone(),
                    agent: Arc::clone(&agent),
                    max_body,
                };
                connections.spawn(connection.run());
            }
            Err(error) => {
                // Out of descriptors, most likely: back off instead of spinning.
                tracing::warn!(%error, "HTTP accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    connections.close();
    connections.wait().await;
}

/// Why a request was refused before it reached the router. The connection
/// is closed after the answer, as its remaining bytes cannot be trusted.
#[derive(Debug, PartialEq, Eq)]
enum Refusal {
    /// The peer closed or went silent; there is nobody to answer.
    Gone,
    BadRequest(&'static str),
    HeadTooLarge,
    BodyTooLarge,
}

impl Refusal {
    fn answer(&self) -> Option<Vec<u8>> {
        let (status, text) = match self {
            Refusal::Gone => return None,
            Refusal::BadRequest(why) => ("400 Bad Request", *why),
            Refusal::HeadTooLarge => (
                "431 Request Header Fields Too Large",
                "431 Request Header Fields Too Large",
            ),
            Refusal::BodyTooLarge => ("413 Request Entity Too Large", "Request body too large"),
        };
        Some(
            format!(
                "HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
                text.len()
            )
            .into_bytes(),
        )
    }
}

/// A parsed request head and what it says about framing.
struct Head {
    method: Method,
    uri: Uri,
    version: Version,
    headers: HeaderMap,
}

/// How the request body is delimited.
#[derive(Debug, PartialEq, Eq)]
enum Framing {
    Length(u64),
    Chunked,
}

struct Connection {
    stream: TcpStream,
    /// Bytes received and not yet consumed; empty (and unallocated) while
    /// the connection is idle or waiting on a handler.
    pending: Vec<u8>,
    router: Router,
    agent: Arc<Agent>,
    max_body: usize,
}

impl Connection {
    async fn run(mut self) {
        loop {
            let (request, mut keep_alive) = match self.read_request().await {
                Ok(Some(request)) => request,
                Ok(None) => return,
                Err(refusal) => {
                    if let Some(answer) = refusal.answer() {
                        let _ = self.stream.write_all(&answer).await;
                    }
                    return;
                }
            };
            let head_only = request.method() == Method::HEAD;
            let Some(response) = self.dispatch(request).await else {
                return;
            };
            keep_alive &= !self.agent.is_stopping();
            let bytes = encode_response(response, head_only, keep_alive).await;
            if self.stream.write_all(&bytes).await.is_err() || !keep_alive {
                let _ = self.stream.shutdown().await;
                return;
            }
            if self.pending.is_empty() {
                self.pending = Vec::new();
            }
        }
    }

    /// Reads one request. `Ok(None)`: the peer closed between requests, or
    /// the agent is stopping while the connection is idle.
    async fn read_request(&mut self) -> Result<Option<(Request<Body>, bool)>, Refusal> {
        if self.pending.is_empty() {
            // Idle: wait for the next request without holding a buffer.
            tokio::select! {
                ready = self.stream.readable() => ready.map_err(|_| Refusal::Gone)?,
                _ = self.agent.stopping() => return Ok(None),
            }
        }
        let deadline = Instant::now() + REQUEST_TIMEOUT;
        let (head, consumed) = loop {
            if let Some(parsed) = parse_head(&self.pending)? {
                break parsed;
            }
            if self.pending.len() > MAX_HEAD_BYTES {
                return Err(Refusal::HeadTooLarge);
            }
            if self.read_more(deadline).await? == 0 {
                return if self.pending.is_empty() {
                    Ok(None)
                } else {
                    Err(Refusal::Gone)
                };
            }
        };
        self.pending.drain(..consumed);
        let mut keep_alive = keeps_alive(&head);
        let framing = framing(&head.headers)?;
        // A snapshot restore is the one body allowed past the usual bound.
        let max_body = if head.uri.path() == "/v1/snapshot" {
            self.max_body.max(crate::snapshot::MAX_BODY)
        } else {
            self.max_body
        };
        let expects_continue = head
            .headers
            .get(EXPECT)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
        let body = match framing {
            None | Some(Framing::Length(0)) => Vec::new(),
            Some(Framing::Length(length)) if length > max_body as u64 => {
                // The handler refuses it by its Content-Length; the unread
                // body means the connection cannot be reused.
                keep_alive = false;
                Vec::new()
            }
            Some(framing) => {
                if expects_continue {
                    self.stream
                        .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
                        .await
                        .map_err(|_| Refusal::Gone)?;
                }
                match framing {
                    Framing::Length(length) => {
                        self.read_exact_body(length as usize, deadline).await?
                    }
                    Framing::Chunked => self.read_chunked_body(deadline, max_body).await?,
                }
            }
        };
        let mut request = Request::new(Body::from(body));
        *request.method_mut() = head.method;
        *request.uri_mut() = head.uri;
        *request.version_mut() = head.version;
        *request.headers_mut() = head.headers;
        Ok(Some((request, keep_alive)))
    }

    /// Reads what the socket has into `pending`; returns how much (0: EOF).
    async fn read_more(&mut self, deadline: Instant) -> Result<usize, Refusal> {
        self.pending.reserve(READ_CHUNK);
        match tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.pending)).await {
            Ok(Ok(n)) => Ok(n),
            Ok(Err(_)) | Err(_) => Err(Refusal::Gone),
        }
    }

    async fn fill(&mut self, at_least: usize, deadline: Instant) -> Result<(), Refusal> {
        while self.pending.len() < at_least {
            if self.read_more(deadline).await? == 0 {
                return Err(Refusal::Gone);
            }
        }
        Ok(())
    }

    async fn read_exact_body(
        &mut self,
        length: usize,
        deadline: Instant,
    ) -> Result<Vec<u8>, Refusal> {
        self.fill(length, deadline).await?;
        let rest = self.pending.split_off(length);
        Ok(std::mem::replace(&mut self.pending, rest))
    }

    async fn read_line(&mut self, deadline: Instant) -> Result<Vec<u8>, Refusal> {
        loop {
            if let Some(end) = self.pending.windows(2).position(|w| w == b"\r\n") {
                let line = self.pending[..end].to_vec();
                self.pending.drain(..end + 2);
                return Ok(line);
            }
            if self.pending.len() > MAX_LINE_BYTES {
                return Err(Refusal::BadRequest("chunk line too long"));
            }
            if self.read_more(deadline).await? == 0 {
                return Err(Refusal::Gone);
            }
        }
    }

    async fn read_chunked_body(
        &mut self,
        deadline: Instant,
        max_body: usize,
    ) -> Result<Vec<u8>, Refusal> {
        let mut body = Vec::new();
        loop {
            let line = self.read_line(deadline).await?;
            let size = chunk_size(&line)?;
            if size == 0 {
                // Trailers, ignored, up to the empty line.
                while !self.read_line(deadline).await?.is_empty() {}
                return Ok(body);
            }
            if body.len().saturating_add(size) > max_body {
                return Err(Refusal::BodyTooLarge);
            }
            self.fill(size + 2, deadline).await?;
            if &self.pending[size..size + 2] != b"\r\n" {
                return Err(Refusal::BadRequest("malformed chunked body"));
            }
            body.extend_from_slice(&self.pending[..size]);
            self.pending.drain(..size + 2);
        }
    }

    /// Runs the request through the router. Returns `None` if the client
    /// went away meanwhile: the handler (a blocking query, say) is dropped
    /// with everything it holds.
    async fn dispatch(&mut self, request: Request<Body>) -> Option<Response<Body>> {
        let mut router = self.router.clone();
        let answer = tower_service::Service::call(&mut router, request);
        tokio::pin!(answer);
        let mut watching = true;
        loop {
            tokio::select! {
                response = &mut answer => return Some(response.unwrap_or_else(|never| match never {})),
                ready = self.stream.readable(), if watching => {
                    ready.ok()?;
                    self.pending.reserve(READ_CHUNK);
                    match self.stream.try_read_buf(&mut self.pending) {
                        Ok(0) => return None,
                        // A pipelined request: keep it for later, within bounds.
                        Ok(_) => watching = self.pending.len() <= MAX_HEAD_BYTES,
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                        Err(_) => return None,
                    }
                }
            }
        }
    }
}

/// Parses a complete request head at the start of `bytes`, if there is one.
fn parse_head(bytes: &[u8]) -> Result<Option<(Head, usize)>, Refusal> {
    if bytes.is_empty() {
        return Ok(None);
    }
    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut fields);
    let consumed = match parsed.parse(bytes) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(Refusal::HeadTooLarge),
        Err(_) => return Err(Refusal::BadRequest("malformed HTTP request")),
    };
    let bad = |why| Refusal::BadRequest(why);
    let method = parsed
        .method
        .and_then(|m| Method::from_bytes(m.as_bytes()).ok())
        .ok_or(bad("invalid method"))?;
    let uri = parsed
        .path
        .and_then(|p| Uri::try_from(p).ok())
        .ok_or(bad("invalid request URI"))?;
    let version = match parsed.version {
        Some(0) => Version::HTTP_10,
        Some(1) => Version::HTTP_11,
        _ => return Err(bad("unsupported HTTP version")),
    };
    let mut headers = HeaderMap::with_capacity(parsed.headers.len());
    for field in parsed.headers.iter() {
        let name = HeaderName::from_bytes(field.name.as_bytes())
            .map_err(|_| bad("invalid header name"))?;
        let value =
            HeaderValue::from_bytes(field.value).map_err(|_| bad("invalid header value"))?;
        headers.append(name, value);
    }
    Ok(Some((
        Head {
            method,
            uri,
            version,
            headers,
        },
        consumed,
    )))
}

fn has_token(headers: &HeaderMap, name: HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|v| {
        v.to_str()
            .is_ok_and(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    })
}

/// HTTP/1.1 keeps the connection unless told to close; HTTP/1.0 closes it
/// unless told to keep it.
fn keeps_alive(head: &Head) -> bool {
    match head.version {
        Version::HTTP_10 => has_token(&head.headers, CONNECTION, "keep-alive"),
        _ => !has_token(&head.headers, CONNECTION, "close"),
    }
}

/// How the body is delimited. A request with both framings, or with
/// disagreeing lengths, is refused: reading it either way would let a
/// proxy in front of us and this server see different requests.
fn framing(headers: &HeaderMap) -> Result<Option<Framing>, Refusal> {
    let bad = Refusal::BadRequest;
    let chunked = headers.contains_key(TRANSFER_ENCODING);
    if chunked {
        if headers.contains_key(CONTENT_LENGTH) {
            return Err(bad("both Content-Length and Transfer-Encoding"));
        }
        let last = headers
            .get_all(TRANSFER_ENCODING)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .rfind(|t| !t.is_empty());
        return match last {
            Some(t) if t.eq_ignore_ascii_case("chunked") => Ok(Some(Framing::Chunked)),
            _ => Err(bad("unsupported transfer encoding")),
        };
    }
    let mut length = None;
    for value in headers.get_all(CONTENT_LENGTH) {
        let text = value.to_str().map_err(|_| bad("invalid Content-Length"))?;
        if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad("invalid Content-Length"));
        }
        let parsed: u64 = text.parse().map_err(|_| bad("invalid Content-Length"))?;
        if length.is_some_and(|l| l != parsed) {
            return Err(bad("conflicting Content-Length"));
        }
        length = Some(parsed);
    }
    Ok(length.map(Framing::Length))
}

fn chunk_size(line: &[u8]) -> Result<usize, Refusal> {
    let digits = line.split(|b| *b == b';').next().unwrap_or_default();
    let text = std::str::from_utf8(digits)
        .ok()
        .map(str::trim)
        .filter(|t| !t.is_empty() && t.len() <= 15)
        .ok_or(Refusal::BadRequest("invalid chunk size"))?;
    usize::from_str_radix(text, 16).map_err(|_| Refusal::BadRequest("invalid chunk size"))
}

/// Serializes a response: status line, headers in Go's canonical case, a
/// Content-Length, and the body (unless the request was HEAD).
async fn encode_response(response: Response<Body>, head_only: bool, keep_alive: bool) -> Vec<u8> {
    let (parts, body) = response.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let mut out = Vec::with_capacity(192 + parts.headers.len() * 48 + body.len());
    let status = parts.status;
    let _ = write!(
        out,
        "HTTP/1.1 {} {}\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    );
    for (name, value) in &parts.headers {
        if name == CONTENT_LENGTH || name == CONNECTION || name == TRANSFER_ENCODING {
            continue;
        }
        write_canonical(&mut out, name.as_str());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    let bodiless = status.is_informational() || status == 204 || status == 304;
    if !bodiless {
        let _ = write!(out, "Content-Length: {}\r\n", body.len());
    }
    let _ = write!(out, "Date: {}\r\n", http_date(SystemTime::now()));
    if !keep_alive {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    if !head_only && !bodiless {
        out.extend_from_slice(&body);
    }
    out
}

/// `x-consul-index` as Go writes it: `X-Consul-Index`.
fn write_canonical(out: &mut Vec<u8>, name: &str) {
    let mut upper = true;
    for b in name.bytes() {
        out.push(if upper { b.to_ascii_uppercase() } else { b });
        upper = b == b'-';
    }
}

/// An IMF-fixdate, as the `Date` header carries it.
fn http_date(now: SystemTime) -> String {
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let days = (secs / 86_400) as i64;
    let (h, m, s) = (secs % 86_400 / 3600, secs % 3600 / 60, secs % 60);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{}, {day:02} {} {year} {h:02}:{m:02}:{s:02} GMT",
        WEEKDAYS[days.rem_euclid(7) as usize],
        MONTHS[(month - 1) as usize]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(raw: &str) -> Head {
        parse_head(raw.as_bytes())
            .ok()
            .flatten()
            .map(|(h, _)| h)
            .unwrap_or_else(|| panic!("unparsed: {raw}"))
    }

    #[test]
    fn dates_are_imf_fixdate() {
        let t = UNIX_EPOCH + Duration::from_secs(784_111_777);
        assert_eq!(http_date(t), "Sun, 06 Nov 1994 08:49:37 GMT");
        let t = UNIX_EPOCH + Duration::from_secs(1_709_210_096);
        assert_eq!(http_date(t), "Thu, 29 Feb 2024 12:34:56 GMT");
    }

    #[test]
    fn partial_heads_wait_for_more() {
        assert!(matches!(
            parse_head(b"GET /v1/kv/a HTTP/1.1\r\nHost: x\r\n"),
            Ok(None)
        ));
        assert!(matches!(parse_head(b""), Ok(None)));
    }

    #[test]
    fn garbage_is_a_bad_request() {
        assert!(matches!(
            parse_head(b"\x00\x01\x02 nonsense\r\n\r\n"),
            Err(Refusal::BadRequest(_))
        ));
    }

    #[test]
    fn framing_rules() {
        let h = head("PUT / HTTP/1.1\r\nContent-Length: 5\r\n\r\n");
        assert_eq!(framing(&h.headers), Ok(Some(Framing::Length(5))));
        let h = head("PUT / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert_eq!(framing(&h.headers), Ok(Some(Framing::Chunked)));
        let h = head("PUT / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n");
        assert!(framing(&h.headers).is_err());
        let h = head("PUT / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert!(framing(&h.headers).is_err());
        let h = head("PUT / HTTP/1.1\r\nContent-Length: -1\r\n\r\n");
        assert!(framing(&h.headers).is_err());
        let h = head("GET / HTTP/1.1\r\n\r\n");
        assert_eq!(framing(&h.headers), Ok(None));
    }

    #[test]
    fn connection_reuse_follows_the_version() {
        assert!(keeps_alive(&head("GET / HTTP/1.1\r\n\r\n")));
        assert!(!keeps_alive(&head(
            "GET / HTTP/1.1\r\nConnection: close\r\n\r\n"
        )));
        assert!(!keeps_alive(&head("GET / HTTP/1.0\r\n\r\n")));
        assert!(keeps_alive(&head(
            "GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"
        )));
    }

    #[test]
    fn chunk_sizes() {
        assert_eq!(chunk_size(b"1a"), Ok(26));
        assert_eq!(chunk_size(b"0;ext=1"), Ok(0));
        assert!(chunk_size(b"zz").is_err());
        assert!(chunk_size(b"ffffffffffffffffff").is_err());
    }

    #[test]
    fn header_names_in_go_case() {
        let mut out = Vec::new();
        write_canonical(&mut out, "x-consul-knownleader");
        assert_eq!(out, b"X-Consul-Knownleader");
    }
}
