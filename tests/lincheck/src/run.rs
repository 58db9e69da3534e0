//! The load generator: concurrent clients doing random get/put/cas on a
//! few keys, each over its own keep-alive HTTP/1.1 connection, recording
//! every operation's invoke and return time on one monotonic clock.

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

use crate::history::{Action, History, ReadMode, Record};

/// Which read modes the clients use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadChoice {
    One(ReadMode),
    /// Each read picks default, consistent or stale at random.
    Mixed,
}

impl ReadChoice {
    pub fn parse(s: &str) -> Option<ReadChoice> {
        Some(match s {
            "default" => ReadChoice::One(ReadMode::Default),
            "consistent" => ReadChoice::One(ReadMode::Consistent),
            "stale" => ReadChoice::One(ReadMode::Stale),
            "mixed" => ReadChoice::Mixed,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            ReadChoice::One(m) => m.name(),
            ReadChoice::Mixed => "mixed",
        }
    }
}

/// An agent's HTTP address: `host:port`, from `http://host:port`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub authority: String,
}

impl Endpoint {
    pub fn parse(s: &str) -> Result<Endpoint, String> {
        let rest = s.trim();
        if rest.starts_with("https://") {
            return Err(format!("{s}: https is not supported"));
        }
        let rest = rest.strip_prefix("http://").unwrap_or(rest);
        let authority = rest.split('/').next().unwrap_or("");
        if authority.is_empty() {
            return Err(format!("{s}: no host"));
        }
        let has_port = match authority.rsplit_once(':') {
            Some((_, port)) => !port.contains(']'),
            None => false,
        };
        let authority = if has_port {
            authority.to_string()
        } else {
            format!("{authority}:8500")
        };
        Ok(Endpoint { authority })
    }
}

#[derive(Clone, Debug)]
pub struct RunConfig {
    pub endpoints: Vec<Endpoint>,
    pub clients: u32,
    pub keys: u32,
    pub duration: Duration,
    pub read_choice: ReadChoice,
    /// Per request, including reading the body.
    pub request_timeout: Duration,
    pub seed: u64,
    /// Keys are `<prefix>/<run_id>/k<i>`.
    pub prefix: String,
    pub run_id: String,
}

impl RunConfig {
    pub fn key_names(&self) -> Vec<String> {
        (0..self.keys)
            .map(|i| format!("{}/{}/k{i}", self.prefix, self.run_id))
            .collect()
    }
}

/// Runs the clients for `cfg.duration` and returns what they recorded,
/// sorted by invoke time.
pub async fn run(cfg: &RunConfig) -> History {
    let start = Instant::now();
    let keys = Arc::new(cfg.key_names());
    let endpoints = Arc::new(cfg.endpoints.clone());
    let mut tasks = Vec::new();
    for id in 0..cfg.clients {
        let mut client = Client {
            id,
            endpoints: endpoints.clone(),
            endpoint: id as usize % endpoints.len(),
            conn: None,
            request_timeout: cfg.request_timeout,
            start,
            rng: Rng::new(cfg.seed ^ (u64::from(id) + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15)),
            read_choice: cfg.read_choice,
            keys: keys.clone(),
            seq: 0,
            records: Vec::new(),
            failed_reads: 0,
            unsent_writes: 0,
        };
        let deadline = start + cfg.duration;
        tasks.push(tokio::spawn(async move {
            client.run_until(deadline).await;
            client
        }));
    }

    let mut history = History {
        run_id: cfg.run_id.clone(),
        read_mode: cfg.read_choice.name().to_string(),
        endpoints: cfg
            .endpoints
            .iter()
            .map(|e| format!("http://{}", e.authority))
            .collect(),
        clients: cfg.clients,
        keys: keys.as_ref().clone(),
        duration_ms: cfg.duration.as_millis() as u64,
        ..History::default()
    };
    for task in tasks {
        match task.await {
            Ok(client) => {
                history.records.extend(client.records);
                history.failed_reads += client.failed_reads;
                history.unsent_writes += client.unsent_writes;
            }
            Err(e) => eprintln!("lincheck: a client task failed: {e}"),
        }
    }
    history.records.sort_by_key(|r| (r.call, r.client));
    history
}

struct Conn {
    sender: SendRequest<Full<Bytes>>,
    task: JoinHandle<()>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What came back for a request that was sent.
enum Reply {
    Answer {
        status: u16,
        body: Bytes,
    },
    /// Error or timeout after the request may have reached the server.
    Unknown(String),
}

struct Exchange {
    call: i64,
    ret: i64,
    reply: Reply,
}

#[derive(Deserialize)]
struct KvEntry {
    #[serde(rename = "Value")]
    value: Option<String>,
    #[serde(rename = "ModifyIndex")]
    modify_index: u64,
}

/// A value read together with its ModifyIndex (0 when absent).
struct Read {
    value: Option<String>,
    modify_index: u64,
}

struct Client {
    id: u32,
    endpoints: Arc<Vec<Endpoint>>,
    endpoint: usize,
    conn: Option<Conn>,
    request_timeout: Duration,
    start: Instant,
    rng: Rng,
    read_choice: ReadChoice,
    keys: Arc<Vec<String>>,
    seq: u64,
    records: Vec<Record>,
    failed_reads: u64,
    unsent_writes: u64,
}

impl Client {
    async fn run_until(&mut self, deadline: Instant) {
        while Instant::now() < deadline {
            let key = self.rng.below(self.keys.len() as u64) as usize;
            let roll = self.rng.below(100);
            let answered = if roll < 40 {
                self.get(key).await.is_some()
            } else if roll < 70 {
                self.put(key).await
            } else {
                self.cas(key).await
            };
            if !answered {
                // Back off a little so a dead or leaderless agent is not
                // hammered, with jitter so clients do not move in step.
                let ms = 20 + self.rng.below(80);
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
        }
    }

    fn next_value(&mut self) -> String {
        self.seq += 1;
        format!("c{}-{}", self.id, self.seq)
    }

    fn read_mode(&mut self) -> ReadMode {
        match self.read_choice {
            ReadChoice::One(m) => m,
            ReadChoice::Mixed => match self.rng.below(3) {
                0 => ReadMode::Default,
                1 => ReadMode::Consistent,
                _ => ReadMode::Stale,
            },
        }
    }

    fn record(
        &mut self,
        key: usize,
        call: i64,
        ret: Option<i64>,
        action: Action,
        note: Option<String>,
    ) {
        self.records.push(Record {
            client: self.id,
            endpoint: self.endpoint,
            key: self.keys[key].clone(),
            call,
            ret,
            action,
            note,
        });
    }

    /// A recorded read; `None` when it failed (and is not recorded).
    async fn get(&mut self, key: usize) -> Option<Read> {
        let mode = self.read_mode();
        let path = format!("/v1/kv/{}{}", self.keys[key], mode.query());
        let Some(ex) = self.exchange(Method::GET, &path, Bytes::new()).await else {
            self.failed_reads += 1;
            return None;
        };
        let read = match ex.reply {
            Reply::Answer { status: 404, .. } => Read {
                value: None,
                modify_index: 0,
            },
            Reply::Answer { status: 200, body } => match parse_entry(&body) {
                Ok(read) => read,
                Err(e) => {
                    eprintln!("lincheck: client {}: bad GET answer: {e}", self.id);
                    self.failed_reads += 1;
                    return None;
                }
            },
            _ => {
                self.failed_reads += 1;
                return None;
            }
        };
        self.record(
            key,
            ex.call,
            Some(ex.ret),
            Action::Get {
                mode,
                value: read.value.clone(),
            },
            None,
        );
        Some(read)
    }

    /// A recorded put; false when it got no definite answer.
    async fn put(&mut self, key: usize) -> bool {
        let value = self.next_value();
        let path = format!("/v1/kv/{}", self.keys[key]);
        let body = Bytes::from(value.clone().into_bytes());
        let Some(ex) = self.exchange(Method::PUT, &path, body).await else {
            self.unsent_writes += 1;
            return false;
        };
        let (ret, note) = match write_answer(&ex.reply) {
            Ok(true) => (Some(ex.ret), None),
            Ok(false) => (None, Some("put answered false".to_string())),
            Err(note) => (None, Some(note)),
        };
        let answered = ret.is_some();
        self.record(key, ex.call, ret, Action::Put { value }, note);
        answered
    }

    /// A read, then a recorded cas on the ModifyIndex it returned; false
    /// when either got no definite answer.
    async fn cas(&mut self, key: usize) -> bool {
        let Some(read) = self.get(key).await else {
            return false;
        };
        let value = self.next_value();
        let path = format!("/v1/kv/{}?cas={}", self.keys[key], read.modify_index);
        let body = Bytes::from(value.clone().into_bytes());
        let Some(ex) = self.exchange(Method::PUT, &path, body).await else {
            self.unsent_writes += 1;
            return false;
        };
        let (ret, ok, note) = match write_answer(&ex.reply) {
            Ok(ok) => (Some(ex.ret), Some(ok), None),
            Err(note) => (None, None, Some(note)),
        };
        self.record(
            key,
            ex.call,
            ret,
            Action::Cas {
                expected: read.value,
                value,
                ok,
            },
            note,
        );
        ok.is_some()
    }

    /// Sends one request on this client's connection, connecting first if
    /// needed. `None` when the request was certainly not sent (no
    /// connection); the invoke time is taken only once it is about to go.
    async fn exchange(&mut self, method: Method, path: &str, body: Bytes) -> Option<Exchange> {
        let authority = self.endpoints[self.endpoint].authority.clone();
        let start = self.start;
        let now = move || start.elapsed().as_nanos() as i64;
        if self.conn.is_none() {
            match tokio::time::timeout(self.request_timeout, connect(&authority)).await {
                Ok(Ok(conn)) => self.conn = Some(conn),
                _ => {
                    // Dead or unreachable: try the next agent next time.
                    self.endpoint = (self.endpoint + 1) % self.endpoints.len();
                    return None;
                }
            }
        }
        let conn = self.conn.as_mut()?;
        if conn.sender.is_closed()
            || !matches!(
                tokio::time::timeout(self.request_timeout, conn.sender.ready()).await,
                Ok(Ok(()))
            )
        {
            self.conn = None;
            return None;
        }
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, authority)
            .body(Full::new(body));
        let request = match request {
            Ok(r) => r,
            Err(e) => {
                eprintln!("lincheck: bad request {path}: {e}");
                return None;
            }
        };
        let call = now();
        let sending = conn.sender.send_request(request);
        let outcome = tokio::time::timeout(self.request_timeout, async {
            let response = sending.await.map_err(|e| e.to_string())?;
            let status = response.status().as_u16();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| e.to_string())?
                .to_bytes();
            Ok::<_, String>((status, body))
        })
        .await;
        let ret = now();
        let reply = match outcome {
            Ok(Ok((status, body))) => Reply::Answer { status, body },
            Ok(Err(e)) => {
                self.conn = None;
                Reply::Unknown(e)
            }
            Err(_) => {
                // The connection is mid-response: it cannot be reused.
                self.conn = None;
                Reply::Unknown(format!("timeout after {:?}", self.request_timeout))
            }
        };
        Some(Exchange { call, ret, reply })
    }
}

async fn connect(authority: &str) -> Result<Conn, String> {
    let stream = TcpStream::connect(authority)
        .await
        .map_err(|e| e.to_string())?;
    let _ = stream.set_nodelay(true);
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    let task = tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(Conn { sender, task })
}

fn parse_entry(body: &[u8]) -> Result<Read, String> {
    let entries: Vec<KvEntry> = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let entry = entries.into_iter().next().ok_or("empty array")?;
    let value = match entry.value {
        None => Some(String::new()),
        Some(b64) => {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b64.as_bytes())
                .map_err(|e| e.to_string())?;
            Some(String::from_utf8_lossy(&bytes).into_owned())
        }
    };
    Ok(Read {
        value,
        modify_index: entry.modify_index,
    })
}

/// `Ok(answer)` for a 200 `true`/`false`; `Err(why)` when the outcome is
/// unknown (any other status, error or timeout: the write may have been
/// committed even so).
fn write_answer(reply: &Reply) -> Result<bool, String> {
    match reply {
        Reply::Answer { status: 200, body } => match body.trim_ascii() {
            b"true" => Ok(true),
            b"false" => Ok(false),
            other => Err(format!(
                "HTTP 200 with body {:?}",
                String::from_utf8_lossy(&other[..other.len().min(80)])
            )),
        },
        Reply::Answer { status, body } => Err(format!(
            "HTTP {status}: {}",
            String::from_utf8_lossy(&body[..body.len().min(80)]).trim()
        )),
        Reply::Unknown(e) => Err(e.clone()),
    }
}

/// xorshift64*: enough randomness to pick keys and operations.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse() {
        assert_eq!(
            Endpoint::parse("http://127.0.0.2:8500").unwrap().authority,
            "127.0.0.2:8500"
        );
        assert_eq!(
            Endpoint::parse("http://10.0.0.1/").unwrap().authority,
            "10.0.0.1:8500"
        );
        assert_eq!(
            Endpoint::parse("localhost:18500").unwrap().authority,
            "localhost:18500"
        );
        assert!(Endpoint::parse("https://x:1").is_err());
        assert!(Endpoint::parse("http://").is_err());
    }

    #[test]
    fn get_answer_parses() {
        let body = br#"[{"Key":"k","Value":"YzEtMQ==","ModifyIndex":17,"CreateIndex":3,"Flags":0,"LockIndex":0}]"#;
        let read = parse_entry(body).unwrap();
        assert_eq!(read.value.as_deref(), Some("c1-1"));
        assert_eq!(read.modify_index, 17);
    }

    #[test]
    fn write_answers() {
        let ok = |s: u16, b: &'static str| Reply::Answer {
            status: s,
            body: Bytes::from_static(b.as_bytes()),
        };
        assert_eq!(write_answer(&ok(200, "true\n")), Ok(true));
        assert_eq!(write_answer(&ok(200, "false")), Ok(false));
        assert!(write_answer(&ok(500, "No cluster leader")).is_err());
        assert!(write_answer(&Reply::Unknown("reset".into())).is_err());
    }
}
