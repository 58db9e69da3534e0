//! The server with a fake backend on 127.0.0.1:0, driven by this crate's
//! client and by hand-written frames: every command, the handshake and auth
//! rules, streams, monitors and queries.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serf_rpc::msgpack::Value;
use serf_rpc::protocol::{self, errors};
use serf_rpc::testing::{demo_members, FakeBackend};
use serf_rpc::wire::{frame, ValueReader};
use serf_rpc::{
    Client, ClientConfig, ClientError, EventRecord, LogLevel, MemberEventKind, MemberStatus,
    QueryParams, QueryRecord, Server, ServerConfig,
};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

const DEADLINE: Duration = Duration::from_secs(10);

/// Awaits `f`, failing the test if it takes longer than the deadline.
async fn within<T>(what: &str, f: impl Future<Output = T>) -> T {
    match tokio::time::timeout(DEADLINE, f).await {
        Ok(v) => v,
        Err(_) => panic!("timed out: {what}"),
    }
}

fn ok<T, E: std::fmt::Debug>(r: Result<T, E>, what: &str) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("{what}: {e:?}"),
    }
}

fn remote<T: std::fmt::Debug>(r: Result<T, ClientError>) -> String {
    match r {
        Err(ClientError::Remote(e)) => e,
        other => panic!("expected an error from the agent, got {other:?}"),
    }
}

struct Harness {
    fake: Arc<FakeBackend>,
    server: Server,
}

impl Harness {
    async fn start(config: ServerConfig) -> Harness {
        let fake = Arc::new(FakeBackend::new(demo_members("local")));
        let server = ok(
            Server::bind("127.0.0.1:0", fake.clone(), config).await,
            "bind",
        );
        Harness { fake, server }
    }

    fn addr(&self) -> String {
        self.server.local_addr().to_string()
    }

    async fn client(&self) -> Client {
        within("connect", Client::connect(ClientConfig::new(self.addr())))
            .await
            .unwrap_or_else(|e| panic!("connect: {e}"))
    }

    /// Polls `cond` until it holds.
    async fn until(&self, what: &str, cond: impl Fn(&FakeBackend) -> bool) {
        within(what, async {
            while !cond(&self.fake) {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
    }
}

#[tokio::test]
async fn members_and_filters() {
    let h = Harness::start(ServerConfig::default()).await;
    let c = h.client().await;
    let all = ok(c.members().await, "members");
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].name, "local");
    assert_eq!(all[0].tags.get("role").map(String::as_str), Some("web"));
    assert_eq!(all[1].addr.to_string(), "127.0.0.2");
    assert_eq!(all[1].port, 7947);
    assert_eq!(all[1].delegate_cur, 4);

    let names = |ms: Vec<serf_rpc::Member>| ms.into_iter().map(|m| m.name).collect::<Vec<_>>();
    let web = BTreeMap::from([("role".to_owned(), "w.b".to_owned())]);
    assert_eq!(
        names(ok(c.members_filtered(web, "", "").await, "tags")),
        ["local"]
    );
    let none = ok(
        c.members_filtered(BTreeMap::new(), "failed", "").await,
        "status",
    );
    assert!(none.is_empty());
    let peer = ok(
        c.members_filtered(BTreeMap::new(), "alive", "pe.*").await,
        "name",
    );
    assert_eq!(names(peer), ["peer"]);
    let bad = remote(c.members_filtered(BTreeMap::new(), "", "(").await);
    assert!(bad.starts_with("Failed to compile regex"), "{bad}");
    // The connection is still usable after an error.
    assert_eq!(ok(c.members().await, "members again").len(), 2);
    c.close().await;
    h.server.shutdown().await;
}

#[tokio::test]
async fn join_leave_event_force_leave_and_tags() {
    let h = Harness::start(ServerConfig::default()).await;
    let c = h.client().await;

    let n = ok(
        c.join(vec!["10.0.0.1".into(), "10.0.0.2:7946".into()], true)
            .await,
        "join",
    );
    assert_eq!(n, 2);
    let err = remote(c.join(vec!["unreachable:1".into()], false).await);
    assert!(err.contains("Failed to join"), "{err}");

    ok(c.user_event("deploy", b"v1", false).await, "event");
    let err = remote(c.user_event("big", &[b'x'; 600], true).await);
    assert_eq!(err, "user event exceeds limit of 512 bytes");

    ok(c.force_leave("peer", false).await, "force-leave");
    assert_eq!(h.fake.state().members[1].status, MemberStatus::Left);
    ok(c.force_leave("peer", true).await, "prune");
    assert_eq!(h.fake.state().members.len(), 1);
    assert_eq!(
        remote(c.force_leave("ghost", false).await),
        "node ghost not found"
    );

    let set = BTreeMap::from([("dc".to_owned(), "east".to_owned())]);
    ok(c.update_tags(set, vec!["role".into()]).await, "tags");
    let stats = ok(c.stats().await, "stats");
    assert_eq!(
        stats.get("tags"),
        Some(&BTreeMap::from([("dc".to_owned(), "east".to_owned())]))
    );
    assert_eq!(stats["agent"]["name"], "local");

    let calls = h.fake.state().calls.clone();
    assert_eq!(calls[0], "join 10.0.0.1,10.0.0.2:7946 replay=true");
    assert!(calls.contains(&"event deploy v1 coalesce=false".to_owned()));
    assert!(calls.contains(&"force-leave peer prune=true".to_owned()));

    ok(c.leave().await, "leave");
    within("shutdown after leave", h.fake.wait_shutdown()).await;
    assert_eq!(h.fake.state().members[0].status, MemberStatus::Left);
    h.server.shutdown().await;
}

#[tokio::test]
async fn key_ring_and_coordinates() {
    let h = Harness::start(ServerConfig::default()).await;
    let c = h.client().await;
    let out = ok(c.install_key("k1").await, "install");
    assert_eq!(out.error, None);
    assert_eq!(out.response.num_nodes, 1);
    ok(c.install_key("k2").await, "install");
    ok(c.use_key("k2").await, "use");
    let list = ok(c.list_keys().await, "list");
    assert_eq!(list.error, None);
    assert_eq!(list.response.keys.len(), 2);
    assert_eq!(list.response.primary_keys.get("k2"), Some(&1));
    let refused = ok(c.remove_key("k2").await, "remove primary");
    assert_eq!(refused.error.as_deref(), Some("1/1 nodes reported failure"));
    assert_eq!(
        refused.response.messages.get("local").map(String::as_str),
        Some("Removing the primary key is not allowed")
    );
    assert_eq!(refused.response.num_err, 1);
    ok(c.remove_key("k1").await, "remove");

    let a = ok(c.get_coordinate("local").await, "coordinate");
    let b = ok(c.get_coordinate("peer").await, "coordinate");
    let (Some(a), Some(b)) = (a, b) else {
        panic!("both coordinates should be known")
    };
    assert_eq!(a.vec.len(), 8);
    let rtt = a.distance_to(&b).unwrap_or_default();
    assert!((rtt - 0.00052).abs() < 1e-9, "{rtt}");
    assert_eq!(ok(c.get_coordinate("ghost").await, "unknown"), None);
    h.server.shutdown().await;
}

#[tokio::test]
async fn event_streams_filter_and_stop() {
    let h = Harness::start(ServerConfig::default()).await;
    let c = h.client().await;
    let mut deploys = ok(c.stream("user:deploy,member-join").await, "stream");
    let mut everything = ok(c.stream("").await, "stream all");
    assert_eq!(h.fake.event_subscribers(), 2);

    ok(c.user_event("other", b"x", true).await, "event");
    ok(c.user_event("deploy", b"v2", true).await, "event");
    h.fake
        .publish_member_event(MemberEventKind::Join, &["peer"]);

    match within("deploy event", deploys.recv()).await {
        Some(EventRecord::User(e)) => {
            assert_eq!(e.name, "deploy");
            assert_eq!(e.payload, b"v2");
            assert!(e.coalesce);
            assert_eq!(e.ltime, 2);
        }
        other => panic!("expected the deploy event, got {other:?}"),
    }
    match within("member event", deploys.recv()).await {
        Some(EventRecord::Member { event, members }) => {
            assert_eq!(event, "member-join");
            assert_eq!(members.len(), 1);
            assert_eq!(members[0].name, "peer");
        }
        other => panic!("expected member-join, got {other:?}"),
    }
    let mut seen = Vec::new();
    for _ in 0..3 {
        match within("all events", everything.recv()).await {
            Some(EventRecord::User(e)) => seen.push(e.name),
            Some(EventRecord::Member { event, .. }) => seen.push(event),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(seen, ["other", "deploy", "member-join"]);

    ok(c.stop(deploys.seq()).await, "stop");
    assert_eq!(within("stopped stream ends", deploys.recv()).await, None);
    h.until("server drops the stopped stream", |f| {
        f.event_subscribers() == 1
    })
    .await;
    // The other stream is unaffected.
    ok(c.user_event("deploy", b"", true).await, "event");
    assert!(matches!(
        within("still streaming", everything.recv()).await,
        Some(EventRecord::User(_))
    ));

    assert_eq!(
        remote(c.stream("member-joined").await),
        errors::INVALID_FILTER
    );

    // Closing the connection ends its streams on the server.
    c.close().await;
    h.until("streams end with the connection", |f| {
        f.event_subscribers() == 0
    })
    .await;
    h.server.shutdown().await;
}

#[tokio::test]
async fn queries_acks_responses_and_respond() {
    let h = Harness::start(ServerConfig::default()).await;
    let responder = h.client().await;
    let mut queries = ok(responder.stream("query:ping").await, "stream");

    let asker = h.client().await;
    let mut results = ok(
        asker
            .query(QueryParams {
                name: "ping".into(),
                payload: b"hello".to_vec(),
                request_ack: true,
                timeout: Duration::from_secs(3),
                ..Default::default()
            })
            .await,
        "query",
    );

    // The agent's own node receives the query on the event stream.
    let id = match within("query event", queries.recv()).await {
        Some(EventRecord::Query {
            id, name, payload, ..
        }) => {
            assert_eq!(name, "ping");
            assert_eq!(payload, b"hello");
            id
        }
        other => panic!("expected a query, got {other:?}"),
    };
    ok(responder.respond(id, b"pong").await, "respond");
    assert_eq!(
        remote(responder.respond(id, b"again").await),
        "response already sent"
    );
    assert_eq!(
        remote(responder.respond(id + 100, b"x").await),
        errors::INVALID_QUERY_ID
    );

    let mut acks = Vec::new();
    let mut responses = BTreeMap::new();
    while let Some(record) = within("query records", results.recv()).await {
        match record {
            QueryRecord::Ack { from } => acks.push(from),
            QueryRecord::Response { from, payload } => {
                responses.insert(from, String::from_utf8_lossy(&payload).into_owned());
            }
        }
        if acks.len() == 2 && responses.len() == 2 {
            break;
        }
    }
    acks.sort();
    assert_eq!(acks, ["local", "peer"]);
    assert_eq!(responses["local"], "pong");
    assert_eq!(responses["peer"], "ping from peer");

    // A short query ends with `done` at its deadline.
    let mut short = ok(
        asker
            .query(QueryParams {
                name: "quick".into(),
                filter_nodes: vec!["peer".into()],
                timeout: Duration::from_millis(200),
                ..Default::default()
            })
            .await,
        "query",
    );
    assert!(matches!(
        within("response", short.recv()).await,
        Some(QueryRecord::Response { .. })
    ));
    assert_eq!(within("done", short.recv()).await, None);

    let err = remote(
        asker
            .query(QueryParams {
                name: "big".into(),
                payload: vec![0; 2000],
                ..Default::default()
            })
            .await,
    );
    assert_eq!(err, "query exceeds limit of 1024 bytes");
    h.server.shutdown().await;
}

#[tokio::test]
async fn monitor_filters_levels() {
    let h = Harness::start(ServerConfig::default()).await;
    let c = h.client().await;
    assert_eq!(remote(c.monitor("loud").await), "Unknown log level: LOUD");
    let mut logs = ok(c.monitor("info").await, "monitor");
    assert_eq!(remote(c.monitor("debug").await), errors::MONITOR_EXISTS);
    h.fake.log(LogLevel::Debug, "hidden");
    h.fake.log(LogLevel::Warn, "shown");
    assert_eq!(
        within("log", logs.recv()).await.as_deref(),
        Some("[WARN] shown")
    );
    ok(c.stop(logs.seq()).await, "stop");
    h.until("monitor ends", |f| f.log_subscribers() == 0).await;
    // Stopped: a new monitor may start.
    let mut again = ok(c.monitor("DEBUG").await, "monitor again");
    h.fake.log(LogLevel::Debug, "now shown");
    assert_eq!(
        within("log", again.recv()).await.as_deref(),
        Some("[DEBUG] now shown")
    );
    h.server.shutdown().await;
}

#[tokio::test]
async fn pushes_interleave_with_responses() {
    let h = Harness::start(ServerConfig::default()).await;
    let c = h.client().await;
    let mut all = ok(c.stream("*").await, "stream");
    let fake = h.fake.clone();
    let publisher = tokio::spawn(async move {
        for _ in 0..300 {
            fake.publish_member_event(MemberEventKind::Update, &["local", "peer"]);
            tokio::task::yield_now().await;
        }
    });
    for _ in 0..100 {
        assert_eq!(ok(c.members().await, "members").len(), 2);
    }
    ok(publisher.await, "publisher");
    for i in 0..300 {
        match within("pushed event", all.recv()).await {
            Some(EventRecord::Member { members, .. }) => assert_eq!(members.len(), 2),
            other => panic!("event {i}: {other:?}"),
        }
    }
    h.server.shutdown().await;
}

#[tokio::test]
async fn auth_is_required_when_configured() {
    let h = Harness::start(ServerConfig {
        auth_key: Some("s3cret".into()),
    })
    .await;
    let anonymous = h.client().await;
    assert_eq!(remote(anonymous.members().await), errors::AUTH_REQUIRED);
    assert_eq!(remote(anonymous.stats().await), errors::AUTH_REQUIRED);

    let mut wrong = ClientConfig::new(h.addr());
    wrong.auth_key = Some("nope".into());
    let err = within("connect", Client::connect(wrong)).await;
    assert_eq!(remote(err.map(drop)), errors::INVALID_AUTH_TOKEN);

    let mut right = ClientConfig::new(h.addr());
    right.auth_key = Some("s3cret".into());
    let c = ok(within("connect", Client::connect(right)).await, "auth");
    assert_eq!(ok(c.members().await, "members").len(), 2);
    h.server.shutdown().await;
}

/// A connection that speaks frames by hand.
struct Raw {
    write: tokio::net::tcp::OwnedWriteHalf,
    read: ValueReader<tokio::net::tcp::OwnedReadHalf>,
}

impl Raw {
    async fn connect(addr: &str) -> Raw {
        let stream = ok(within("dial", TcpStream::connect(addr)).await, "dial");
        let (read, write) = stream.into_split();
        Raw {
            write,
            read: ValueReader::new(read),
        }
    }

    async fn send(&mut self, command: &str, seq: u64, body: Option<Value>) {
        let header = protocol::RequestHeader {
            command: command.to_owned(),
            seq,
        };
        let bytes = frame(&header.to_value(), body.as_ref());
        ok(self.write.write_all(&bytes).await, "write");
    }

    /// Sends one byte at a time.
    async fn trickle(&mut self, command: &str, seq: u64, body: Option<Value>) {
        let header = protocol::RequestHeader {
            command: command.to_owned(),
            seq,
        };
        for b in frame(&header.to_value(), body.as_ref()) {
            ok(self.write.write_all(&[b]).await, "write");
            ok(self.write.flush().await, "flush");
        }
    }

    async fn value(&mut self) -> Option<Value> {
        ok(within("read", self.read.next()).await, "read")
    }

    async fn header(&mut self) -> protocol::ResponseHeader {
        match self.value().await {
            Some(v) => protocol::ResponseHeader::from_value(&v),
            None => panic!("connection closed, expected a header"),
        }
    }
}

fn handshake(version: i64) -> Option<Value> {
    Some(Value::go_struct(vec![("Version", Value::Int(version))]))
}

#[tokio::test]
async fn handshake_rules() {
    let h = Harness::start(ServerConfig::default()).await;

    // Anything before the handshake: refused, then the connection closes.
    let mut raw = Raw::connect(&h.addr()).await;
    raw.send("members", 7, None).await;
    let reply = raw.header().await;
    assert_eq!(
        (reply.seq, reply.error.as_str()),
        (7, errors::HANDSHAKE_REQUIRED)
    );
    assert_eq!(raw.value().await, None);

    let mut raw = Raw::connect(&h.addr()).await;
    raw.send("handshake", 1, handshake(2)).await;
    assert_eq!(raw.header().await.error, errors::UNSUPPORTED_IPC_VERSION);
    raw.send("handshake", 2, handshake(1)).await;
    assert_eq!(raw.header().await, protocol::ResponseHeader::ok(2));
    raw.send("handshake", 3, handshake(1)).await;
    assert_eq!(raw.header().await.error, errors::DUPLICATE_HANDSHAKE);

    // A body of the wrong shape: an error, and the connection goes on.
    let bad = Some(Value::go_struct(vec![(
        "Existing",
        Value::str("not a list"),
    )]));
    raw.send("join", 4, bad).await;
    let reply = raw.header().await;
    assert_eq!(reply.seq, 4);
    assert!(
        reply.error.starts_with("Invalid request"),
        "{}",
        reply.error
    );
    // join always answers with a body, even on error.
    assert!(raw.value().await.is_some_and(|b| b.get("Num").is_some()));

    // Requests split into single bytes still arrive whole.
    raw.trickle("members", 5, None).await;
    assert_eq!(raw.header().await, protocol::ResponseHeader::ok(5));
    let body = raw.value().await;
    let members = body.map(|b| protocol::members_response_from_value(&b));
    assert!(matches!(members, Some(Ok(m)) if m.len() == 2));

    // An unknown command: refused, then the connection closes (its body, if
    // any, cannot be told from the next request).
    raw.send("explode", 6, None).await;
    assert_eq!(raw.header().await.error, errors::UNSUPPORTED_COMMAND);
    assert_eq!(raw.value().await, None);
    h.server.shutdown().await;
}

#[tokio::test]
async fn shutdown_closes_clients() {
    let h = Harness::start(ServerConfig::default()).await;
    let c = h.client().await;
    let mut stream = ok(c.stream("*").await, "stream");
    let addr = h.addr();
    within("shutdown", h.server.shutdown()).await;
    assert_eq!(within("stream ends", stream.recv()).await, None);
    assert!(matches!(
        c.members().await,
        Err(ClientError::Closed | ClientError::Io(_))
    ));
    let refused = Client::connect(ClientConfig::new(addr)).await;
    assert!(matches!(refused, Err(ClientError::Dial { .. })));
    assert!(h.fake.event_subscribers() == 0);
}

#[tokio::test]
async fn garbage_closes_only_that_connection() {
    let h = Harness::start(ServerConfig::default()).await;
    let inputs: Vec<Vec<u8>> = vec![
        vec![0xc1],                               // reserved marker
        vec![0x93, 0x01, 0x02, 0x03],             // a header that is not a map
        vec![0xdf, 0xff, 0xff, 0xff, 0xff],       // a map that never ends, then EOF
        vec![0xc6, 0xff, 0xff, 0xff, 0xff, 0x00], // a 4 GiB bin
        (0..=255u8).rev().collect(),
    ];
    for bytes in inputs {
        let mut stream = ok(TcpStream::connect(h.addr()).await, "dial");
        ok(stream.write_all(&bytes).await, "write");
        ok(stream.shutdown().await, "shutdown write");
        let mut sink = Vec::new();
        // The server answers at most an error header and closes.
        let read = within(
            "server closes",
            tokio::io::AsyncReadExt::read_to_end(&mut stream, &mut sink),
        )
        .await;
        assert!(read.is_ok() || sink.is_empty());
    }
    // Everyone else is still served.
    let c = h.client().await;
    assert_eq!(ok(c.members().await, "members").len(), 2);
    h.server.shutdown().await;
}
