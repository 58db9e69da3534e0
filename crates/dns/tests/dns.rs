//! The DNS interface end to end: a catalog in a real store, `serve` on
//! loopback sockets, and queries sent with hickory-proto over UDP and TCP.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use dns::{
    run_prepared_query, serve, snapshots_of, AddressOwners, CatalogDns, CatalogError,
    CatalogSource, DnsConfig, OtherDatacenters, RemoteError,
};
use hickory_proto::op::{Edns, Message, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use state::{
    CheckServiceNode, Command, Execution, HealthCheck, Node, PreparedQuery, QueryFailover,
    Registration, ServiceInstance, ServiceQuery, Store, Weights,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::timeout;

/// A guard against a server that never answers; never a wait for success.
const PATIENCE: Duration = Duration::from_secs(10);

struct Catalog {
    store: Arc<Store>,
    index: AtomicU64,
}

struct Instance<'a> {
    node: &'a str,
    node_address: &'a str,
    service: &'a str,
    service_address: &'a str,
    port: u16,
    tags: &'a [&'a str],
    /// Check statuses of the service.
    checks: &'a [&'a str],
}

impl Catalog {
    fn new() -> Catalog {
        Catalog {
            store: Arc::new(Store::new()),
            index: AtomicU64::new(0),
        }
    }

    fn apply(&self, registration: Registration) {
        let index = self.index.fetch_add(1, Ordering::SeqCst) + 1;
        self.store
            .apply(index, &Command::Register(Box::new(registration)))
            .expect("apply");
    }

    fn node(&self, name: &str, address: &str, meta: &[(&str, &str)]) {
        self.apply(Registration {
            node: Node {
                name: name.to_owned(),
                address: address.to_owned(),
                datacenter: "dc1".to_owned(),
                meta: meta
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect::<BTreeMap<_, _>>(),
                ..Node::default()
            },
            ..Registration::default()
        });
    }

    fn instance(&self, i: Instance<'_>) {
        let id = format!("{}-{}", i.service, i.port);
        self.apply(Registration {
            node: Node {
                name: i.node.to_owned(),
                address: i.node_address.to_owned(),
                datacenter: "dc1".to_owned(),
                ..Node::default()
            },
            skip_node_update: true,
            service: Some(ServiceInstance {
                id: id.clone(),
                service: i.service.to_owned(),
                address: i.service_address.to_owned(),
                port: i.port,
                tags: i.tags.iter().map(|t| t.to_string()).collect(),
                weights: Weights {
                    passing: 10,
                    warning: 1,
                },
                ..ServiceInstance::default()
            }),
            checks: i
                .checks
                .iter()
                .enumerate()
                .map(|(n, status)| HealthCheck {
                    check_id: format!("{id}-check-{n}"),
                    name: "check".to_owned(),
                    status: status.to_string(),
                    service_id: id.clone(),
                    ..HealthCheck::default()
                })
                .collect(),
        });
    }

    /// `count` healthy `web` instances, one per node, 10.0.0.1...
    fn web_farm(&self, count: u8) {
        for n in 1..=count {
            let name = format!("web{n}");
            let address = format!("10.0.0.{n}");
            self.node(&name, &address, &[]);
            self.instance(Instance {
                node: &name,
                node_address: &address,
                service: "web",
                service_address: "",
                port: 8080,
                tags: &[],
                checks: &["passing"],
            });
        }
    }
}

struct Running {
    udp: SocketAddr,
    tcp: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl Running {
    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            timeout(PATIENCE, task)
                .await
                .expect("server stops")
                .expect("join")
                .expect("serve");
        }
    }
}

async fn start(catalog: &Catalog, config: DnsConfig) -> Running {
    let source = snapshots_of(Arc::clone(&catalog.store));
    start_with(CatalogDns::new(source, config)).await
}

async fn start_with(handler: CatalogDns) -> Running {
    let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (udp_addr, tcp_addr) = (udp.local_addr().unwrap(), tcp.local_addr().unwrap());
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(serve(udp, tcp, handler, async move {
        let _ = stopped.await;
    }));
    Running {
        udp: udp_addr,
        tcp: tcp_addr,
        stop: Some(stop),
        task: Some(task),
    }
}

fn request(name: &str, qtype: RecordType, edns: Option<u16>) -> Message {
    let mut message = Message::query();
    message.metadata.id = rand::random();
    message.metadata.recursion_desired = true;
    message.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    if let Some(size) = edns {
        let mut opt = Edns::new();
        opt.set_max_payload(size);
        message.set_edns(opt);
    }
    message
}

async fn udp_exchange(server: SocketAddr, message: &Message) -> Message {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    socket
        .send_to(&message.to_vec().unwrap(), server)
        .await
        .unwrap();
    let mut buffer = vec![0u8; 65535];
    let (len, _) = timeout(PATIENCE, socket.recv_from(&mut buffer))
        .await
        .expect("a UDP answer")
        .unwrap();
    let response = Message::from_vec(&buffer[..len]).expect("a DNS message");
    assert_eq!(response.metadata.id, message.metadata.id);
    response
}

async fn tcp_exchange(server: SocketAddr, message: &Message) -> Message {
    let mut stream = TcpStream::connect(server).await.unwrap();
    let bytes = message.to_vec().unwrap();
    let mut framed = (bytes.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&bytes);
    stream.write_all(&framed).await.unwrap();
    let read = async {
        let len = stream.read_u16().await.unwrap();
        let mut buffer = vec![0u8; usize::from(len)];
        stream.read_exact(&mut buffer).await.unwrap();
        buffer
    };
    let buffer = timeout(PATIENCE, read).await.expect("a TCP answer");
    let response = Message::from_vec(&buffer).expect("a DNS message");
    assert_eq!(response.metadata.id, message.metadata.id);
    response
}

async fn udp(server: &Running, name: &str, qtype: RecordType) -> Message {
    udp_exchange(server.udp, &request(name, qtype, None)).await
}

fn a_records(records: &[Record]) -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = records
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            RData::AAAA(aaaa) => Some(IpAddr::V6(aaaa.0)),
            _ => None,
        })
        .collect();
    out.sort();
    out
}

fn ips(list: &[&str]) -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = list.iter().map(|s| s.parse().unwrap()).collect();
    out.sort();
    out
}

fn txts(records: &[Record]) -> Vec<String> {
    records
        .iter()
        .filter_map(|r| match &r.data {
            RData::TXT(txt) => Some(
                txt.txt_data
                    .iter()
                    .map(|d| String::from_utf8_lossy(d).into_owned())
                    .collect::<String>(),
            ),
            _ => None,
        })
        .collect()
}

/// (target, port, weight) of each SRV answer, sorted.
fn srvs(records: &[Record]) -> Vec<(String, u16, u16)> {
    let mut out: Vec<_> = records
        .iter()
        .filter_map(|r| match &r.data {
            RData::SRV(srv) => Some((srv.target.to_string(), srv.port, srv.weight)),
            _ => None,
        })
        .collect();
    out.sort();
    out
}

fn assert_soa(response: &Message, domain: &str) {
    let soa = response
        .authorities
        .iter()
        .find_map(|r| match &r.data {
            RData::SOA(soa) => Some((r.name.to_string(), soa.clone())),
            _ => None,
        })
        .expect("an SOA in the authority section");
    assert_eq!(soa.0, domain);
    assert_eq!(soa.1.mname.to_string(), format!("ns.{domain}"));
    assert_eq!(soa.1.rname.to_string(), format!("hostmaster.{domain}"));
    assert_eq!(
        (soa.1.refresh, soa.1.retry, soa.1.expire, soa.1.minimum),
        (3600, 600, 86400, 0)
    );
}

#[tokio::test]
async fn node_lookups_answer_address_and_meta() {
    let catalog = Catalog::new();
    catalog.node("foo", "10.1.2.3", &[("rack", "r1"), ("rfc1035-raw", "v=1")]);
    let config = DnsConfig {
        node_ttl: Duration::from_secs(30),
        ..DnsConfig::default()
    };
    let server = start(&catalog, config).await;

    let a = udp(&server, "foo.node.consul.", RecordType::A).await;
    assert_eq!(a.metadata.response_code, ResponseCode::NoError);
    assert!(a.metadata.authoritative);
    assert!(!a.metadata.recursion_available);
    assert_eq!(a_records(&a.answers), ips(&["10.1.2.3"]));
    assert_eq!(a.answers[0].name.to_string(), "foo.node.consul.");
    assert_eq!(a.answers[0].ttl, 30);
    // Node meta rides along in the additional section by default.
    let mut extra = txts(&a.additionals);
    extra.sort();
    assert_eq!(extra, vec!["rack=r1", "v=1"]);

    let with_dc = udp(&server, "foo.node.dc1.consul.", RecordType::A).await;
    assert_eq!(a_records(&with_dc.answers), ips(&["10.1.2.3"]));

    let txt = udp(&server, "foo.node.consul.", RecordType::TXT).await;
    let mut answers = txts(&txt.answers);
    answers.sort();
    assert_eq!(answers, vec!["rack=r1", "v=1"]);

    let any = udp(&server, "foo.node.consul.", RecordType::ANY).await;
    assert_eq!(a_records(&any.answers), ips(&["10.1.2.3"]));
    assert_eq!(txts(&any.answers).len(), 2);

    // An IPv4 node has no AAAA: no data, with the SOA.
    let aaaa = udp(&server, "foo.node.consul.", RecordType::AAAA).await;
    assert_eq!(aaaa.metadata.response_code, ResponseCode::NoError);
    assert!(aaaa.answers.is_empty());
    assert_soa(&aaaa, "consul.");

    server.stop().await;
}

#[tokio::test]
async fn service_lookups_answer_a_and_srv_with_additionals() {
    let catalog = Catalog::new();
    catalog.node("n1", "10.0.0.1", &[("zone", "a")]);
    catalog.node("n2", "10.0.0.2", &[]);
    catalog.instance(Instance {
        node: "n1",
        node_address: "10.0.0.1",
        service: "web",
        service_address: "",
        port: 8080,
        tags: &["v1"],
        checks: &["passing"],
    });
    catalog.instance(Instance {
        node: "n2",
        node_address: "10.0.0.2",
        service: "web",
        service_address: "10.0.1.2",
        port: 9090,
        tags: &["v2"],
        checks: &[],
    });
    let config = DnsConfig {
        service_ttl: BTreeMap::from([("*".to_owned(), Duration::from_secs(5))]),
        ..DnsConfig::default()
    };
    let server = start(&catalog, config).await;

    let a = udp(&server, "web.service.consul.", RecordType::A).await;
    assert_eq!(a_records(&a.answers), ips(&["10.0.0.1", "10.0.1.2"]));
    assert!(a.answers.iter().all(|r| r.ttl == 5));
    assert!(a
        .answers
        .iter()
        .all(|r| r.name.to_string() == "web.service.consul."));

    let srv = udp(&server, "web.service.consul.", RecordType::SRV).await;
    assert_eq!(
        srvs(&srv.answers),
        vec![
            ("0a000102.addr.dc1.consul.".to_owned(), 9090, 10),
            ("n1.node.dc1.consul.".to_owned(), 8080, 10),
        ]
    );
    let glue: Vec<(String, IpAddr)> = srv
        .additionals
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(A(ip)) => Some((r.name.to_string(), IpAddr::V4(*ip))),
            _ => None,
        })
        .collect();
    assert!(glue.contains(&("n1.node.dc1.consul.".to_owned(), ips(&["10.0.0.1"])[0])));
    assert!(glue.contains(&(
        "0a000102.addr.dc1.consul.".to_owned(),
        ips(&["10.0.1.2"])[0]
    )));
    assert_eq!(txts(&srv.additionals), vec!["zone=a"]);

    // RFC 2782 names: _tcp means any tag, otherwise the tag filters.
    let rfc = udp(&server, "_web._tcp.service.consul.", RecordType::SRV).await;
    assert_eq!(srvs(&rfc.answers).len(), 2);
    let tagged = udp(&server, "_web._v1.service.dc1.consul.", RecordType::SRV).await;
    assert_eq!(
        srvs(&tagged.answers),
        vec![("n1.node.dc1.consul.".to_owned(), 8080, 10)]
    );
    let tag_a = udp(&server, "v2.web.service.consul.", RecordType::A).await;
    assert_eq!(a_records(&tag_a.answers), ips(&["10.0.1.2"]));
    let no_tag = udp(&server, "v3.web.service.consul.", RecordType::A).await;
    assert_eq!(no_tag.metadata.response_code, ResponseCode::NXDomain);

    server.stop().await;
}

#[tokio::test]
async fn unhealthy_instances_are_left_out() {
    let catalog = Catalog::new();
    for (n, checks) in [
        (1u8, &["passing"][..]),
        (2, &["passing", "warning"][..]),
        (3, &["passing", "critical"][..]),
    ] {
        let node = format!("n{n}");
        let address = format!("10.0.0.{n}");
        catalog.node(&node, &address, &[]);
        catalog.instance(Instance {
            node: &node,
            node_address: &address,
            service: "db",
            service_address: "",
            port: 5432,
            tags: &[],
            checks,
        });
    }
    // A critical node-level check takes every instance on the node out.
    catalog.node("n4", "10.0.0.4", &[]);
    catalog.instance(Instance {
        node: "n4",
        node_address: "10.0.0.4",
        service: "db",
        service_address: "",
        port: 5432,
        tags: &[],
        checks: &[],
    });
    catalog.apply(Registration {
        node: Node {
            name: "n4".to_owned(),
            ..Node::default()
        },
        skip_node_update: true,
        checks: vec![HealthCheck {
            check_id: "serfHealth".to_owned(),
            status: "critical".to_owned(),
            ..HealthCheck::default()
        }],
        ..Registration::default()
    });

    let server = start(&catalog, DnsConfig::default()).await;
    let a = udp(&server, "db.service.consul.", RecordType::A).await;
    assert_eq!(a_records(&a.answers), ips(&["10.0.0.1", "10.0.0.2"]));
    let srv = udp(&server, "db.service.consul.", RecordType::SRV).await;
    assert_eq!(
        srvs(&srv.answers),
        vec![
            ("n1.node.dc1.consul.".to_owned(), 5432, 10),
            ("n2.node.dc1.consul.".to_owned(), 5432, 1),
        ]
    );
    server.stop().await;

    let only_passing = DnsConfig {
        only_passing: true,
        ..DnsConfig::default()
    };
    let server = start(&catalog, only_passing).await;
    let a = udp(&server, "db.service.consul.", RecordType::A).await;
    assert_eq!(a_records(&a.answers), ips(&["10.0.0.1"]));
    server.stop().await;
}

#[tokio::test]
async fn unknown_names_are_nxdomain_with_soa() {
    let catalog = Catalog::new();
    catalog.web_farm(1);
    let server = start(&catalog, DnsConfig::default()).await;
    for name in [
        "nope.service.consul.",
        "nope.node.consul.",
        "web.service.dc2.consul.",
        "web.consul.",
        "x.query.consul.",
    ] {
        let response = udp(&server, name, RecordType::A).await;
        assert_eq!(
            response.metadata.response_code,
            ResponseCode::NXDomain,
            "{name}"
        );
        assert!(response.metadata.authoritative);
        assert!(response.answers.is_empty());
        assert_soa(&response, "consul.");
    }

    let soa = udp(&server, "consul.", RecordType::SOA).await;
    assert_eq!(soa.metadata.response_code, ResponseCode::NoError);
    assert!(matches!(soa.answers[0].data, RData::SOA(_)));
    server.stop().await;
}

#[tokio::test]
async fn udp_answers_are_limited_without_edns() {
    let catalog = Catalog::new();
    catalog.web_farm(6);
    let server = start(&catalog, DnsConfig::default()).await;

    let a = udp(&server, "web.service.consul.", RecordType::A).await;
    assert_eq!(a.answers.len(), 3);
    assert!(!a.metadata.truncation, "TC only with enable_truncate");

    let srv = udp(&server, "web.service.consul.", RecordType::SRV).await;
    assert_eq!(srv.answers.len(), 3);
    // The additional section follows the answers that were kept.
    let targets: Vec<String> = srvs(&srv.answers).into_iter().map(|s| s.0).collect();
    let mut glue: Vec<String> = srv.additionals.iter().map(|r| r.name.to_string()).collect();
    glue.sort();
    assert_eq!(glue, targets);

    let edns = udp_exchange(
        server.udp,
        &request("web.service.consul.", RecordType::A, Some(4096)),
    )
    .await;
    assert_eq!(edns.answers.len(), 6);
    assert_eq!(edns.edns.as_ref().map(|e| e.max_payload()), Some(4096));

    // Over TCP there is no answer limit.
    let tcp = tcp_exchange(
        server.tcp,
        &request("web.service.consul.", RecordType::A, None),
    )
    .await;
    assert_eq!(tcp.answers.len(), 6);
    server.stop().await;

    let truncating = DnsConfig {
        enable_truncate: true,
        udp_answer_limit: 2,
        ..DnsConfig::default()
    };
    let server = start(&catalog, truncating).await;
    let a = udp(&server, "web.service.consul.", RecordType::A).await;
    assert_eq!(a.answers.len(), 2);
    assert!(a.metadata.truncation);
    server.stop().await;
}

#[tokio::test]
async fn large_answers_are_cut_to_the_udp_size() {
    let catalog = Catalog::new();
    catalog.web_farm(60);
    let server = start(&catalog, DnsConfig::default()).await;
    let message = request("web.service.consul.", RecordType::SRV, Some(1024));
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut buffer = vec![0u8; 65535];
    // Each answer comes in a new order, which compresses differently.
    for _ in 0..20 {
        socket
            .send_to(&message.to_vec().unwrap(), server.udp)
            .await
            .unwrap();
        let (len, _) = timeout(PATIENCE, socket.recv_from(&mut buffer))
            .await
            .unwrap()
            .unwrap();
        assert!(len <= 1024 - 8, "{len} bytes");
        let response = Message::from_vec(&buffer[..len]).unwrap();
        assert!(!response.answers.is_empty() && response.answers.len() < 60);
        assert_eq!(response.additionals.len(), response.answers.len());
        assert!(!response.metadata.truncation);
    }

    let tcp = tcp_exchange(server.tcp, &message).await;
    assert_eq!(tcp.answers.len(), 60);
    server.stop().await;
}

#[tokio::test]
async fn a_record_limit_caps_answers() {
    let catalog = Catalog::new();
    catalog.web_farm(5);
    let config = DnsConfig {
        a_record_limit: 2,
        ..DnsConfig::default()
    };
    let server = start(&catalog, config).await;
    let tcp = tcp_exchange(
        server.tcp,
        &request("web.service.consul.", RecordType::A, None),
    )
    .await;
    assert_eq!(tcp.answers.len(), 2);
    server.stop().await;
}

#[tokio::test]
async fn names_match_in_any_case_and_in_the_alt_domain() {
    let catalog = Catalog::new();
    catalog.web_farm(1);
    catalog.node("Mixed", "10.9.9.9", &[]);
    let config = DnsConfig {
        alt_domain: Some("alt.test".to_owned()),
        ..DnsConfig::default()
    };
    let server = start(&catalog, config).await;
    for name in [
        "WEB.Service.CONSUL.",
        "web.service.DC1.consul.",
        "web.service.alt.test.",
        "_Web._TCP.service.Alt.Test.",
    ] {
        let response = udp(&server, name, RecordType::A).await;
        assert_eq!(
            response.metadata.response_code,
            ResponseCode::NoError,
            "{name}"
        );
        assert_eq!(a_records(&response.answers), ips(&["10.0.0.1"]), "{name}");
    }
    let node = udp(&server, "mixed.NODE.consul.", RecordType::A).await;
    assert_eq!(a_records(&node.answers), ips(&["10.9.9.9"]));
    let missing = udp(&server, "nope.service.alt.test.", RecordType::A).await;
    assert_eq!(missing.metadata.response_code, ResponseCode::NXDomain);
    assert_soa(&missing, "alt.test.");
    server.stop().await;
}

#[tokio::test]
async fn addr_and_reverse_lookups() {
    let catalog = Catalog::new();
    catalog.web_farm(1);
    let server = start(&catalog, DnsConfig::default()).await;
    let addr = udp(&server, "0a000001.addr.dc1.consul.", RecordType::A).await;
    assert_eq!(a_records(&addr.answers), ips(&["10.0.0.1"]));
    let v6 = udp(
        &server,
        "20010db8000000000000000000000001.addr.consul.",
        RecordType::AAAA,
    )
    .await;
    assert_eq!(a_records(&v6.answers), ips(&["2001:db8::1"]));

    let ptr = udp(&server, "1.0.0.10.in-addr.arpa.", RecordType::PTR).await;
    let names: Vec<String> = ptr
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::PTR(ptr) => Some(ptr.0.to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(names, vec!["web1.node.dc1.consul."]);
    server.stop().await;
}

/// A one-shot fake upstream that answers every A question with 192.0.2.1
/// (and NXDOMAIN for `missing.example.`), over UDP and TCP.
async fn fake_upstream() -> (SocketAddr, JoinHandle<()>) {
    fn answer(request: &[u8]) -> Vec<u8> {
        let request = Message::from_vec(request).unwrap();
        let query = request.queries[0].clone();
        let mut response = Message::response(request.metadata.id, request.metadata.op_code);
        response.metadata.recursion_available = true;
        response.add_query(query.clone());
        if query.name().to_ascii() == "missing.example." {
            response.metadata.response_code = ResponseCode::NXDomain;
        } else {
            response.add_answer(Record::from_rdata(
                query.name().clone(),
                60,
                RData::A(A::new(192, 0, 2, 1)),
            ));
            response.add_additional(Record::from_rdata(
                query.name().clone(),
                60,
                RData::TXT(TXT::new(vec!["upstream".to_owned()])),
            ));
        }
        response.to_vec().unwrap()
    }
    // The UDP port's TCP twin may be taken by another process: try again.
    let (udp, tcp, addr) = loop {
        let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = udp.local_addr().unwrap();
        if let Ok(tcp) = TcpListener::bind(addr).await {
            break (udp, tcp, addr);
        }
    };
    let task = tokio::spawn(async move {
        let udp_loop = async {
            let mut buffer = vec![0u8; 65535];
            while let Ok((len, from)) = udp.recv_from(&mut buffer).await {
                let _ = udp.send_to(&answer(&buffer[..len]), from).await;
            }
        };
        let tcp_loop = async {
            while let Ok((mut stream, _)) = tcp.accept().await {
                let len = stream.read_u16().await.unwrap();
                let mut buffer = vec![0u8; usize::from(len)];
                stream.read_exact(&mut buffer).await.unwrap();
                let reply = answer(&buffer);
                let mut framed = (reply.len() as u16).to_be_bytes().to_vec();
                framed.extend_from_slice(&reply);
                stream.write_all(&framed).await.unwrap();
            }
        };
        tokio::join!(udp_loop, tcp_loop);
    });
    (addr, task)
}

#[tokio::test]
async fn names_outside_the_domain_go_to_the_recursors() {
    let catalog = Catalog::new();
    catalog.web_farm(1);
    let (upstream, upstream_task) = fake_upstream().await;
    // A recursor that never answers comes first: the next one is asked
    // once it times out.
    let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let config = DnsConfig {
        recursors: vec![silent.local_addr().unwrap(), upstream],
        recursor_timeout: Duration::from_millis(200),
        ..DnsConfig::default()
    };
    let server = start(&catalog, config).await;

    let forwarded = udp(&server, "www.example.", RecordType::A).await;
    assert_eq!(forwarded.metadata.response_code, ResponseCode::NoError);
    assert!(forwarded.metadata.recursion_available);
    assert_eq!(a_records(&forwarded.answers), ips(&["192.0.2.1"]));
    assert_eq!(txts(&forwarded.additionals), vec!["upstream"]);

    let over_tcp = tcp_exchange(server.tcp, &request("www.example.", RecordType::A, None)).await;
    assert_eq!(a_records(&over_tcp.answers), ips(&["192.0.2.1"]));

    let missing = udp(&server, "missing.example.", RecordType::A).await;
    assert_eq!(missing.metadata.response_code, ResponseCode::NXDomain);

    // The catalog's own names are still answered locally, with RA set.
    let local = udp(&server, "web.service.consul.", RecordType::A).await;
    assert_eq!(a_records(&local.answers), ips(&["10.0.0.1"]));
    assert!(local.metadata.recursion_available);
    server.stop().await;
    upstream_task.abort();
}

#[tokio::test]
async fn recursion_without_recursors_is_refused_and_failure_is_servfail() {
    let catalog = Catalog::new();
    let server = start(&catalog, DnsConfig::default()).await;
    let refused = udp(&server, "www.example.", RecordType::A).await;
    assert_eq!(refused.metadata.response_code, ResponseCode::Refused);
    server.stop().await;

    let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let config = DnsConfig {
        recursors: vec![silent.local_addr().unwrap()],
        recursor_timeout: Duration::from_millis(100),
        ..DnsConfig::default()
    };
    let server = start(&catalog, config).await;
    let failed = udp(&server, "www.example.", RecordType::A).await;
    assert_eq!(failed.metadata.response_code, ResponseCode::ServFail);
    assert!(failed.metadata.recursion_available);
    server.stop().await;
}

#[tokio::test]
async fn answers_follow_the_catalog_as_it_changes() {
    let catalog = Catalog::new();
    let server = start(&catalog, DnsConfig::default()).await;
    let before = udp(&server, "web.service.consul.", RecordType::A).await;
    assert_eq!(before.metadata.response_code, ResponseCode::NXDomain);
    catalog.web_farm(2);
    let after = udp(&server, "web.service.consul.", RecordType::A).await;
    assert_eq!(a_records(&after.answers), ips(&["10.0.0.1", "10.0.0.2"]));
    server.stop().await;
}

#[tokio::test]
async fn ns_and_soa_name_the_servers() {
    let catalog = Catalog::new();
    catalog.node("server1", "10.5.0.1", &[]);
    catalog.instance(Instance {
        node: "server1",
        node_address: "10.5.0.1",
        service: "consul",
        service_address: "",
        port: 8300,
        tags: &[],
        checks: &["passing"],
    });
    let server = start(&catalog, DnsConfig::default()).await;
    let ns = udp(&server, "consul.", RecordType::NS).await;
    let names: Vec<(String, String)> = ns
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::NS(ns) => Some((r.name.to_string(), ns.0.to_string())),
            _ => None,
        })
        .collect();
    assert_eq!(
        names,
        vec![("consul.".to_owned(), "server1.node.dc1.consul.".to_owned())]
    );
    assert_eq!(a_records(&ns.additionals), ips(&["10.5.0.1"]));

    let soa = udp(&server, "web.service.consul.", RecordType::SOA).await;
    assert!(matches!(soa.answers[0].data, RData::SOA(_)));
    assert!(soa
        .authorities
        .iter()
        .any(|r| matches!(r.data, RData::NS(_))));
    server.stop().await;
}

/// A second datacenter, `dc2`, whose catalog is a store of its own;
/// `broken` is a datacenter that fails every read, any other has no path.
struct Dc2 {
    store: Arc<Store>,
}

impl Dc2 {
    fn snapshot(&self, datacenter: &str) -> Result<Arc<state::Snapshot>, RemoteError> {
        match datacenter {
            "dc2" => Ok(self.store.snapshot()),
            "broken" => Err(RemoteError::Failed("rpc error: boom".to_owned())),
            _ => Err(RemoteError::NoPath),
        }
    }
}

#[async_trait::async_trait]
impl OtherDatacenters for Dc2 {
    async fn service_health(
        &self,
        datacenter: &str,
        service: &str,
    ) -> Result<Vec<CheckServiceNode>, RemoteError> {
        let snap = self.snapshot(datacenter)?;
        Ok(snap.service_health(service).unwrap_or_default().to_vec())
    }

    async fn node(&self, datacenter: &str, name: &str) -> Result<Option<Node>, RemoteError> {
        Ok(self.snapshot(datacenter)?.node(name).map(|n| (*n).clone()))
    }

    async fn execute_query(
        &self,
        datacenter: &str,
        id_or_name: &str,
    ) -> Result<Option<Execution>, RemoteError> {
        let snap = self.snapshot(datacenter)?;
        let query = snap
            .resolve_prepared_query(id_or_name)
            .map_err(RemoteError::Failed)?;
        Ok(query.map(|q| snap.execute_prepared_query_for_elsewhere(&q, datacenter, 0)))
    }
}

/// dc1's catalog as a server's: prepared queries that find nothing
/// healthy here fail over to the datacenters they list, through `dc2`.
struct FailingOver {
    local: Arc<state::Snapshot>,
    dc2: Arc<Dc2>,
}

impl FailingOver {
    fn fail_over(&self, query: &PreparedQuery, run: Execution) -> Execution {
        let mut tried = 0;
        for datacenter in &query.service.failover.datacenters {
            tried += 1;
            if let Ok(snap) = self.dc2.snapshot(datacenter) {
                let remote = snap.execute_prepared_query_for_elsewhere(query, datacenter, 0);
                if !remote.nodes.is_empty() {
                    return Execution {
                        failovers: tried,
                        ..remote
                    };
                }
            }
        }
        Execution {
            failovers: tried,
            ..run
        }
    }
}

#[async_trait::async_trait]
impl dns::Catalog for FailingOver {
    async fn node(&self, name: &str) -> Result<Option<Node>, CatalogError> {
        dns::Catalog::node(&*self.local, name).await
    }

    async fn service_health(&self, service: &str) -> Result<Vec<CheckServiceNode>, CatalogError> {
        dns::Catalog::service_health(&*self.local, service).await
    }

    async fn prepared_query(
        &self,
        name: &str,
        agent_node: &str,
        datacenter: &str,
    ) -> Result<Option<Execution>, CatalogError> {
        Ok(
            run_prepared_query(&self.local, name, agent_node, datacenter).map(|(query, run)| {
                if run.nodes.is_empty() {
                    self.fail_over(&query, run)
                } else {
                    run
                }
            }),
        )
    }

    async fn address_owners(&self, ip: std::net::IpAddr) -> Result<AddressOwners, CatalogError> {
        dns::Catalog::address_owners(&*self.local, ip).await
    }
}

fn prepared_query(store: &Store, index: u64, name: &str, service: &str, failover: &[&str]) {
    let query = PreparedQuery {
        id: format!("{index:08}-2222-4333-8444-555555555555"),
        name: name.to_owned(),
        service: ServiceQuery {
            service: service.to_owned(),
            failover: QueryFailover {
                datacenters: failover.iter().map(|d| d.to_string()).collect(),
                ..QueryFailover::default()
            },
            ..ServiceQuery::default()
        },
        ..PreparedQuery::default()
    };
    store
        .apply(index, &Command::PreparedQuerySet(Box::new(query)))
        .expect("apply");
}

/// Each of `names` is NXDOMAIN with the SOA of `consul.`.
async fn assert_not_found(server: &Running, names: &[&str]) {
    for name in names {
        let response = udp(server, name, RecordType::A).await;
        assert_eq!(
            response.metadata.response_code,
            ResponseCode::NXDomain,
            "{name}"
        );
        assert_soa(&response, "consul.");
    }
}

#[tokio::test]
async fn names_of_another_datacenter_are_answered_from_there() {
    let dc1 = Catalog::new();
    dc1.web_farm(1);
    let dc2 = Catalog::new();
    dc2.node("db1", "10.2.0.1", &[("rack", "r2")]);
    for (node, address, checks) in [
        ("db1", "10.2.0.1", &["passing"]),
        ("db2", "10.2.0.2", &["critical"]),
    ] {
        dc2.instance(Instance {
            node,
            node_address: address,
            service: "db",
            service_address: "",
            port: 5432,
            tags: &["primary"],
            checks,
        });
    }
    let remote = Arc::new(Dc2 {
        store: Arc::clone(&dc2.store),
    });
    let (local, dc2_way) = (Arc::clone(&dc1.store), Arc::clone(&remote));
    let catalogs: CatalogSource = Arc::new(move || -> Arc<dyn dns::Catalog> {
        Arc::new(FailingOver {
            local: local.snapshot(),
            dc2: Arc::clone(&dc2_way),
        })
    });
    let handler =
        CatalogDns::reading(catalogs, DnsConfig::default()).with_other_datacenters(remote);
    let server = start_with(handler).await;

    // Healthy instances only, by the asking agent's rules, in every form.
    for name in [
        "db.service.dc2.consul.",
        "primary.db.service.dc2.consul.",
        "_db._primary.service.dc2.consul.",
        "_db._tcp.service.dc2.consul.",
        "db.service.dc2.dc.consul.",
    ] {
        let response = udp(&server, name, RecordType::A).await;
        assert_eq!(
            response.metadata.response_code,
            ResponseCode::NoError,
            "{name}"
        );
        assert_eq!(a_records(&response.answers), ips(&["10.2.0.1"]), "{name}");
    }
    let srv = udp(&server, "_db._tcp.service.dc2.consul.", RecordType::SRV).await;
    assert_eq!(
        srvs(&srv.answers),
        [("db1.node.dc2.consul.".to_owned(), 5432, 10)]
    );
    assert!(srv
        .additionals
        .iter()
        .any(|r| r.name.to_ascii() == "db1.node.dc2.consul."));
    // A tag no instance has: NXDOMAIN, as for a local name.
    let none = udp(&server, "replica.db.service.dc2.consul.", RecordType::A).await;
    assert_eq!(none.metadata.response_code, ResponseCode::NXDomain);
    assert_soa(&none, "consul.");
    // Nodes of dc2, not of dc1.
    let node = udp(&server, "db1.node.dc2.consul.", RecordType::A).await;
    assert_eq!(a_records(&node.answers), ips(&["10.2.0.1"]));
    let missing = udp(&server, "web1.node.dc2.consul.", RecordType::A).await;
    assert_eq!(missing.metadata.response_code, ResponseCode::NXDomain);
    let local = udp(&server, "web1.node.dc1.consul.", RecordType::A).await;
    assert_eq!(a_records(&local.answers), ips(&["10.0.0.1"]));

    // A datacenter nobody knows: NXDOMAIN with the SOA; one that fails:
    // SERVFAIL.
    assert_not_found(
        &server,
        &[
            "db.service.dc9.consul.",
            "db1.node.dc9.consul.",
            "q.query.dc9.consul.",
        ],
    )
    .await;
    let failed = udp(&server, "db.service.broken.consul.", RecordType::A).await;
    assert_eq!(failed.metadata.response_code, ResponseCode::ServFail);

    // A prepared query of dc2, run there.
    prepared_query(&dc2.store, 100, "dbq", "db", &[]);
    let q = udp(&server, "dbq.query.dc2.consul.", RecordType::SRV).await;
    assert_eq!(
        srvs(&q.answers),
        [("db1.node.dc2.consul.".to_owned(), 5432, 10)]
    );
    let unknown = udp(&server, "nope.query.dc2.consul.", RecordType::A).await;
    assert_eq!(unknown.metadata.response_code, ResponseCode::NXDomain);

    // A query of dc1 whose service has no healthy instance here fails over
    // to dc2 (past a datacenter with no path), named as dc2's.
    prepared_query(&dc1.store, 100, "dbq", "db", &["dc9", "dc2"]);
    let q = udp(&server, "dbq.query.consul.", RecordType::SRV).await;
    assert_eq!(q.metadata.response_code, ResponseCode::NoError);
    assert_eq!(
        srvs(&q.answers),
        [("db1.node.dc2.consul.".to_owned(), 5432, 10)]
    );
    // Without failover targets it stays empty here.
    prepared_query(&dc1.store, 101, "stay", "db", &[]);
    let q = udp(&server, "stay.query.consul.", RecordType::A).await;
    assert_eq!(q.metadata.response_code, ResponseCode::NXDomain);
    server.stop().await;
}

#[tokio::test]
async fn without_a_way_to_other_datacenters_their_names_do_not_exist() {
    let dc1 = Catalog::new();
    dc1.web_farm(1);
    prepared_query(&dc1.store, 100, "dbq", "db", &["dc2"]);
    let server = start(&dc1, DnsConfig::default()).await;
    assert_not_found(
        &server,
        &[
            "web.service.dc2.consul.",
            "dbq.query.consul.",
            "x.query.dc2.consul.",
        ],
    )
    .await;
    server.stop().await;
}
