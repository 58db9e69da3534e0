//! Answers from the catalog: Consul's names turned into records. This
//! datacenter's catalog is read through [`Catalog`]; names of another one
//! come back as a [`Fetch`] for the handler to go for. The rest is pure.

use std::collections::HashSet;
use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::rdata::{A, AAAA, CNAME, NS, PTR, SOA, SRV, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use rand::seq::SliceRandom;
use state::{CheckServiceNode, Execution};

use crate::catalog::{Catalog, CatalogError};
use crate::config::Settings;
use crate::name::{self, Lookup, Route};

/// What to do with a question.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// Answer it with this.
    Reply(Reply),
    /// Not ours: ask the recursors (REFUSED if there are none).
    Recurse,
    /// The answer needs what another datacenter holds: fetch it, then
    /// answer with [`answer_fetched`].
    Fetch(Fetch),
}

/// What an answer waits for, and the domain the question was asked in.
#[derive(Debug)]
pub(crate) struct Fetch {
    pub(crate) domain: Vec<String>,
    pub(crate) wanted: Wanted,
}

/// The data a question needs from elsewhere.
#[derive(Debug)]
pub(crate) enum Wanted {
    /// The instances of a service in another datacenter (filtered here,
    /// by this agent's health and tag rules).
    Service {
        datacenter: String,
        service: String,
        tag: Option<String>,
    },
    /// A node of another datacenter.
    Node { datacenter: String, name: String },
    /// A prepared query executed in another datacenter.
    Query { datacenter: String, name: String },
}

/// What came back for a [`Wanted`].
#[derive(Debug)]
pub(crate) enum Fetched {
    Instances(Vec<CheckServiceNode>),
    Node(Option<state::Node>),
    /// `None`: no such query there.
    Execution(Option<Execution>),
    /// No server of that datacenter is known: the name does not exist.
    NoPath,
    /// The datacenter could not answer.
    Failed,
}

/// The sections of a response and its code.
#[derive(Debug, Default)]
pub(crate) struct Reply {
    pub(crate) rcode: ResponseCode,
    pub(crate) answers: Vec<Record>,
    pub(crate) authorities: Vec<Record>,
    pub(crate) additionals: Vec<Record>,
}

/// The name of the service whose instances are the servers.
const CONSUL_SERVICE: &str = "consul";

/// Most name servers in an NS answer.
const MAX_NAME_SERVERS: usize = 3;

/// Answers `qtype` questions about `qname` from `catalog`.
pub(crate) async fn answer(
    catalog: &dyn Catalog,
    settings: &Settings,
    qname: &Name,
    qtype: RecordType,
) -> Outcome {
    let answerer = Answerer {
        catalog,
        records: Records {
            settings,
            datacenter: &settings.datacenter,
        },
    };
    match name::route(qname, settings) {
        Route::Outside => Outcome::Recurse,
        Route::Reverse(ip) => {
            let reply = match ip {
                Some(ip) => answerer.reverse(qname, ip).await,
                None => Ok(Reply::default()),
            };
            match reply {
                Ok(reply) if !reply.answers.is_empty() => Outcome::Reply(reply),
                Ok(_) if settings.can_recurse() => Outcome::Recurse,
                Ok(_) => Outcome::Reply(answerer.records.name_error(&settings.domain)),
                Err(error) => Outcome::Reply(server_failure(&error)),
            }
        }
        Route::Domain { domain, labels } => answerer.in_domain(qname, qtype, domain, &labels).await,
    }
}

/// SERVFAIL, as Consul answers when its catalog read fails.
fn server_failure(error: &CatalogError) -> Reply {
    tracing::warn!(%error, "DNS: cannot read the catalog");
    Reply {
        rcode: ResponseCode::ServFail,
        ..Reply::default()
    }
}

/// Answers a question whose data `fetch` went for and brought back as
/// `fetched`; names in the answer are those of the datacenter the data
/// came from.
pub(crate) fn answer_fetched(
    settings: &Settings,
    qname: &Name,
    qtype: RecordType,
    fetch: &Fetch,
    fetched: Fetched,
) -> Reply {
    let domain = &fetch.domain;
    let local = Records {
        settings,
        datacenter: &settings.datacenter,
    };
    let mut reply = match (&fetch.wanted, fetched) {
        (_, Fetched::NoPath) => local.name_error(domain),
        (_, Fetched::Failed) => Reply {
            rcode: ResponseCode::ServFail,
            ..Reply::default()
        },
        (
            Wanted::Service {
                datacenter,
                service,
                tag,
            },
            Fetched::Instances(view),
        ) => {
            let records = Records {
                settings,
                datacenter,
            };
            records.service(qname, qtype, service, &view, tag.as_deref(), domain)
        }
        (Wanted::Node { datacenter, .. }, Fetched::Node(node)) => {
            let records = Records {
                settings,
                datacenter,
            };
            match node {
                Some(node) => records.node(qname, qtype, &node),
                None => records.name_error(domain),
            }
        }
        (Wanted::Query { .. }, Fetched::Execution(Some(run))) => {
            let records = Records {
                settings,
                datacenter: &run.datacenter,
            };
            records.execution(qname, qtype, &run, domain)
        }
        (Wanted::Query { .. }, Fetched::Execution(None)) => local.name_error(domain),
        (wanted, fetched) => {
            tracing::warn!(
                ?wanted,
                ?fetched,
                "dns: an answer of the wrong kind came back"
            );
            Reply {
                rcode: ResponseCode::ServFail,
                ..Reply::default()
            }
        }
    };
    local.close(&mut reply, domain);
    reply
}

/// What a lookup of another datacenter needs from there (`Ok`); a lookup
/// of this one comes back as it is.
fn elsewhere(lookup: Lookup) -> Result<Wanted, Lookup> {
    match lookup {
        Lookup::Node {
            name,
            datacenter: Some(datacenter),
        } => Ok(Wanted::Node { datacenter, name }),
        Lookup::Service {
            service,
            tag,
            datacenter: Some(datacenter),
        } => Ok(Wanted::Service {
            datacenter,
            service,
            tag,
        }),
        Lookup::Query {
            name,
            datacenter: Some(datacenter),
        } => Ok(Wanted::Query { datacenter, name }),
        here => Err(here),
    }
}

/// Answers from this datacenter's catalog.
struct Answerer<'a> {
    catalog: &'a dyn Catalog,
    records: Records<'a>,
}

/// Turns catalog data into records, naming nodes and addresses as those of
/// `datacenter` (the one the data comes from).
struct Records<'a> {
    settings: &'a Settings,
    datacenter: &'a str,
}

/// `labels` joined into a fully qualified name, or `None` if they make no
/// valid name (a node named with a space, say).
fn fqdn<S: AsRef<str>>(labels: &[S]) -> Option<Name> {
    let mut text = String::new();
    for label in labels {
        text.push_str(label.as_ref());
        text.push('.');
    }
    Name::from_ascii(&text).ok()
}

fn ip_record(owner: Name, ttl: u32, ip: IpAddr) -> Record {
    let data = match ip {
        IpAddr::V4(v4) => RData::A(A(v4)),
        IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
    };
    Record::from_rdata(owner, ttl, data)
}

/// Whether a record of `ip`'s family answers a `qtype` question.
fn family_matches(ip: IpAddr, qtype: RecordType) -> bool {
    match qtype {
        RecordType::ANY => true,
        RecordType::A => ip.is_ipv4(),
        RecordType::AAAA => ip.is_ipv6(),
        _ => false,
    }
}

/// RFC 1464 `key=value`, escaping as Consul does: backquote, `=` and
/// leading/trailing spaces in the key, backquote in the value.
fn rfc1464(key: &str, value: &str) -> String {
    let escaped = key.replace('`', "``").replace('=', "`=");
    let body = escaped.trim_matches(' ');
    let leading = escaped.len() - escaped.trim_start_matches(' ').len();
    let trailing = if body.is_empty() {
        0
    } else {
        escaped.len() - escaped.trim_end_matches(' ').len()
    };
    format!(
        "{}{}{}={}",
        "` ".repeat(leading),
        body,
        "` ".repeat(trailing),
        value.replace('`', "``")
    )
}

/// One TXT character-string holds at most 255 bytes; longer text is split.
fn character_strings(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for c in text.chars() {
        if current.len() + c.len_utf8() > 255 {
            out.push(std::mem::take(&mut current));
        }
        current.push(c);
    }
    if !current.is_empty() || out.is_empty() {
        out.push(current);
    }
    out
}

/// The TXT records of a node's metadata: `key=value`, or the bare value for
/// keys starting with `rfc1035-`.
fn meta_txt(owner: &Name, ttl: u32, node: &state::Node) -> Vec<Record> {
    node.meta
        .iter()
        .map(|(key, value)| {
            let text = if key.to_ascii_lowercase().starts_with("rfc1035-") {
                value.clone()
            } else {
                rfc1464(key, value)
            };
            Record::from_rdata(
                owner.clone(),
                ttl,
                RData::TXT(TXT::new(character_strings(&text))),
            )
        })
        .collect()
}

/// Whether an instance passes Consul's DNS health filter: no critical
/// check, and with `only_passing` nothing but passing checks.
fn healthy(instance: &CheckServiceNode, only_passing: bool) -> bool {
    instance.checks.iter().all(|check| {
        if only_passing {
            check.status == "passing"
        } else {
            check.status != "critical"
        }
    })
}

/// The SRV weight: the warning weight if any check warns, else the
/// passing weight.
fn srv_weight(instance: &CheckServiceNode) -> u16 {
    let weights = instance.service.weights;
    let weight = if instance.checks.iter().any(|c| c.status == "warning") {
        weights.warning
    } else {
        weights.passing
    };
    u16::try_from(weight).unwrap_or(u16::MAX)
}

fn has_tag(instance: &CheckServiceNode, tag: &str) -> bool {
    instance
        .service
        .tags
        .iter()
        .any(|t| t.eq_ignore_ascii_case(tag))
}

impl Records<'_> {
    fn soa(&self, domain: &[String]) -> Option<Record> {
        let owner = fqdn(domain)?;
        let ns = owner.prepend_label("ns").ok()?;
        let mbox = owner.prepend_label("hostmaster").ok()?;
        let serial = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as u32);
        let soa = self.settings.soa;
        let clamp = |v: u32| i32::try_from(v).unwrap_or(i32::MAX);
        Some(Record::from_rdata(
            owner,
            soa.min_ttl,
            RData::SOA(SOA::new(
                ns,
                mbox,
                serial,
                clamp(soa.refresh),
                clamp(soa.retry),
                clamp(soa.expire),
                soa.min_ttl,
            )),
        ))
    }

    /// NXDOMAIN with the SOA in the authority section.
    fn name_error(&self, domain: &[String]) -> Reply {
        Reply {
            rcode: ResponseCode::NXDomain,
            authorities: self.soa(domain).into_iter().collect(),
            ..Reply::default()
        }
    }

    /// `<node>.node.<dc>.<domain>`, where SRV targets and NS names point.
    fn node_fqdn(&self, node: &str, domain: &[String]) -> Option<Name> {
        let mut labels = vec![node, "node", self.datacenter];
        labels.extend(domain.iter().map(String::as_str));
        fqdn(&labels)
    }

    /// `<hex-ip>.addr.<dc>.<domain>`, the SRV target of a service address.
    fn addr_fqdn(&self, ip: IpAddr, domain: &[String]) -> Option<Name> {
        let hex = name::encode_hex_ip(ip);
        let mut labels = vec![hex.as_str(), "addr", self.datacenter];
        labels.extend(domain.iter().map(String::as_str));
        fqdn(&labels)
    }

    /// Adds the SOA to an empty successful answer (a NODATA response).
    fn close(&self, reply: &mut Reply, domain: &[String]) {
        if reply.rcode == ResponseCode::NoError && reply.answers.is_empty() {
            reply.authorities.extend(self.soa(domain));
        }
    }

    /// Healthy instances of `service` (with `tag`, if given), shuffled.
    fn instances<'v>(
        &self,
        view: &'v [CheckServiceNode],
        tag: Option<&str>,
    ) -> Vec<&'v CheckServiceNode> {
        let mut picked: Vec<&CheckServiceNode> = view
            .iter()
            .filter(|instance| {
                healthy(instance, self.settings.only_passing)
                    && tag.is_none_or(|tag| has_tag(instance, tag))
            })
            .collect();
        picked.shuffle(&mut rand::rng());
        picked
    }

    /// The healthy instances in `view` (with `tag`, if given) as A/AAAA
    /// or SRV answers, or NXDOMAIN when there are none.
    fn service(
        &self,
        qname: &Name,
        qtype: RecordType,
        service: &str,
        view: &[CheckServiceNode],
        tag: Option<&str>,
        domain: &[String],
    ) -> Reply {
        let instances = self.instances(view, tag);
        if instances.is_empty() {
            return self.name_error(domain);
        }
        let ttl = self.settings.service_ttl.of(service);
        self.instance_records(qname, qtype, &instances, domain, ttl)
    }

    /// A prepared query's run, in its order, with the query's `DNS.TTL`
    /// if it has one; NXDOMAIN when it found nothing.
    fn execution(
        &self,
        qname: &Name,
        qtype: RecordType,
        run: &Execution,
        domain: &[String],
    ) -> Reply {
        if run.nodes.is_empty() {
            return self.name_error(domain);
        }
        let ttl = go_duration::parse_go_duration(&run.dns_ttl)
            .ok()
            .filter(|_| !run.dns_ttl.is_empty())
            .map_or(self.settings.service_ttl.of(&run.service), |nanos| {
                u32::try_from(nanos.max(0) / 1_000_000_000).unwrap_or(u32::MAX)
            });
        let instances: Vec<&CheckServiceNode> = run.nodes.iter().collect();
        self.instance_records(qname, qtype, &instances, domain, ttl)
    }

    /// SRV answers for an SRV question, A/AAAA (or CNAME) otherwise.
    fn instance_records(
        &self,
        qname: &Name,
        qtype: RecordType,
        instances: &[&CheckServiceNode],
        domain: &[String],
        ttl: u32,
    ) -> Reply {
        if qtype == RecordType::SRV {
            self.service_srv(qname, instances, domain, ttl)
        } else {
            self.service_addresses(qname, qtype, instances, ttl)
        }
    }

    /// A node's address (or the CNAME of its name) and its metadata.
    fn node(&self, qname: &Name, qtype: RecordType, node: &state::Node) -> Reply {
        let ttl = self.settings.node_ttl;
        let mut reply = Reply::default();
        match node.address.parse::<IpAddr>() {
            Ok(ip) if family_matches(ip, qtype) => {
                reply.answers.push(ip_record(qname.clone(), ttl, ip));
            }
            Ok(ip) if qtype == RecordType::TXT => {
                reply.additionals.push(ip_record(qname.clone(), ttl, ip));
            }
            Ok(_) => {}
            Err(_) => {
                if let Some(target) = fqdn(&[node.address.trim_end_matches('.')]) {
                    if !matches!(qtype, RecordType::TXT) {
                        reply.answers.push(Record::from_rdata(
                            qname.clone(),
                            ttl,
                            RData::CNAME(CNAME(target)),
                        ));
                    }
                }
            }
        }
        if matches!(qtype, RecordType::ANY | RecordType::TXT) {
            reply.answers.extend(meta_txt(qname, ttl, node));
        } else if self.settings.node_meta_txt {
            reply.additionals.extend(meta_txt(qname, ttl, node));
        }
        reply
    }

    /// The address an instance is reached at: its own, else its node's.
    fn instance_address(instance: &CheckServiceNode) -> &str {
        if instance.service.address.is_empty() {
            &instance.node.address
        } else {
            &instance.service.address
        }
    }

    fn service_addresses(
        &self,
        qname: &Name,
        qtype: RecordType,
        instances: &[&CheckServiceNode],
        ttl: u32,
    ) -> Reply {
        let limit = self.settings.a_record_limit;
        let mut reply = Reply::default();
        let mut seen: Vec<IpAddr> = Vec::with_capacity(instances.len());
        let mut cname = None;
        for instance in instances {
            let address = Self::instance_address(instance);
            match address.parse::<IpAddr>() {
                Ok(ip) if family_matches(ip, qtype) => {
                    if seen.contains(&ip) {
                        continue;
                    }
                    seen.push(ip);
                    reply.answers.push(ip_record(qname.clone(), ttl, ip));
                    if limit > 0 && reply.answers.len() == limit {
                        break;
                    }
                }
                Ok(ip) if qtype == RecordType::TXT => {
                    if !seen.contains(&ip) {
                        seen.push(ip);
                        reply.additionals.push(ip_record(qname.clone(), ttl, ip));
                    }
                }
                Ok(_) => {}
                Err(_) => {
                    if cname.is_none() && qtype != RecordType::TXT {
                        cname = fqdn(&[address.trim_end_matches('.')]).map(|target| {
                            Record::from_rdata(qname.clone(), ttl, RData::CNAME(CNAME(target)))
                        });
                    }
                }
            }
        }
        if reply.answers.is_empty() {
            reply.answers.extend(cname);
        }
        reply
    }

    fn service_srv(
        &self,
        qname: &Name,
        instances: &[&CheckServiceNode],
        domain: &[String],
        ttl: u32,
    ) -> Reply {
        let mut reply = Reply::default();
        // Few records each: a linear scan beats hashing them.
        let mut seen: Vec<(&str, &str, u16)> = Vec::with_capacity(instances.len());
        let push_extra = |reply: &mut Reply, record: Record| {
            if !reply.additionals.contains(&record) {
                reply.additionals.push(record);
            }
        };
        for instance in instances {
            let address = Self::instance_address(instance);
            let port = instance.service.port;
            let key = (instance.node.name.as_str(), address, port);
            if seen.contains(&key) {
                continue;
            }
            seen.push(key);
            let node_name = self.node_fqdn(&instance.node.name, domain);
            let (target, extra) = match address.parse::<IpAddr>() {
                Ok(ip) => {
                    let target = if address == instance.node.address {
                        node_name.clone()
                    } else {
                        self.addr_fqdn(ip, domain)
                    };
                    let extra = target.clone().map(|t| ip_record(t, ttl, ip));
                    (target, extra)
                }
                Err(_) => (fqdn(&[address.trim_end_matches('.')]), None),
            };
            let Some(target) = target else {
                continue;
            };
            reply.answers.push(Record::from_rdata(
                qname.clone(),
                ttl,
                RData::SRV(SRV::new(1, srv_weight(instance), port, target)),
            ));
            if let Some(extra) = extra {
                push_extra(&mut reply, extra);
            }
            if self.settings.node_meta_txt {
                if let Some(node_name) = &node_name {
                    for txt in meta_txt(node_name, ttl, &instance.node) {
                        push_extra(&mut reply, txt);
                    }
                }
            }
        }
        reply
    }
}

impl Answerer<'_> {
    async fn in_domain(
        &self,
        qname: &Name,
        qtype: RecordType,
        domain: Vec<String>,
        labels: &[String],
    ) -> Outcome {
        let records = &self.records;
        let read = match qtype {
            RecordType::SOA | RecordType::NS => self.servers(qtype, &domain).await,
            RecordType::AXFR | RecordType::IXFR => Ok(Reply {
                rcode: ResponseCode::NotImp,
                ..Reply::default()
            }),
            _ => match elsewhere(name::lookup(labels, records.settings)) {
                Ok(wanted) => return Outcome::Fetch(Fetch { domain, wanted }),
                Err(local) => self.here(qname, qtype, local, &domain).await,
            },
        };
        let mut reply = match read {
            Ok(reply) => reply,
            Err(error) => return Outcome::Reply(server_failure(&error)),
        };
        records.close(&mut reply, &domain);
        Outcome::Reply(reply)
    }

    /// Answers a lookup of this datacenter from the catalog (what
    /// [`elsewhere`] hands back).
    async fn here(
        &self,
        qname: &Name,
        qtype: RecordType,
        lookup: Lookup,
        domain: &[String],
    ) -> Result<Reply, CatalogError> {
        let records = &self.records;
        let settings = records.settings;
        Ok(match lookup {
            Lookup::Node { name, .. } => match self.catalog.node(&name).await? {
                Some(node) => records.node(qname, qtype, &node),
                None => records.name_error(domain),
            },
            Lookup::Service { service, tag, .. } => {
                let view = self.catalog.service_health(&service).await?;
                records.service(qname, qtype, &service, &view, tag.as_deref(), domain)
            }
            Lookup::Addr(ip) => self.addr(qname, qtype, ip),
            // The catalog runs the query as this agent's and fails it over
            // to other datacenters when it finds nothing healthy here.
            Lookup::Query { name, .. } => match self
                .catalog
                .prepared_query(&name, &settings.node_name, &settings.datacenter)
                .await?
            {
                Some(run) => Records {
                    settings,
                    datacenter: &run.datacenter,
                }
                .execution(qname, qtype, &run, domain),
                None => records.name_error(domain),
            },
            Lookup::Unanswerable | Lookup::Invalid => records.name_error(domain),
        })
    }

    /// SOA (with the servers as NS in the authority section) or NS
    /// questions; the servers are the healthy `consul` instances.
    async fn servers(&self, qtype: RecordType, domain: &[String]) -> Result<Reply, CatalogError> {
        let mut reply = Reply::default();
        let Some(owner) = fqdn(domain) else {
            return Ok(reply);
        };
        let ttl = self.records.settings.service_ttl.of(CONSUL_SERVICE);
        let mut seen = HashSet::new();
        let view = self.catalog.service_health(CONSUL_SERVICE).await?;
        for server in self.records.instances(&view, None) {
            if seen.len() == MAX_NAME_SERVERS {
                break;
            }
            let Some(target) = self.records.node_fqdn(&server.node.name, domain) else {
                continue;
            };
            if !seen.insert(target.clone()) {
                continue;
            }
            let ns = Record::from_rdata(owner.clone(), ttl, RData::NS(NS(target.clone())));
            if qtype == RecordType::NS {
                reply.answers.push(ns);
            } else {
                reply.authorities.push(ns);
            }
            if let Ok(ip) = server.node.address.parse::<IpAddr>() {
                reply.additionals.push(ip_record(target, ttl, ip));
            }
        }
        if qtype == RecordType::SOA {
            reply.answers.extend(self.records.soa(domain));
        }
        Ok(reply)
    }

    /// `<hex-ip>.addr...`: the address itself.
    fn addr(&self, qname: &Name, qtype: RecordType, ip: IpAddr) -> Reply {
        let record = ip_record(qname.clone(), self.records.settings.node_ttl, ip);
        let mut reply = Reply::default();
        if family_matches(ip, qtype) {
            reply.answers.push(record);
        } else {
            reply.additionals.push(record);
        }
        reply
    }

    /// PTR answers for an address: the nodes that have it, else the
    /// services registered with it.
    async fn reverse(&self, qname: &Name, ip: IpAddr) -> Result<Reply, CatalogError> {
        let settings = self.records.settings;
        let domain = &settings.domain;
        let ttl = settings.node_ttl;
        let owners = self.catalog.address_owners(ip).await?;
        let node_targets = owners
            .nodes
            .iter()
            .filter_map(|node| self.records.node_fqdn(node, domain));
        let service_targets = owners.services.iter().filter_map(|service| {
            let mut labels = vec![service.as_str(), "service", &settings.datacenter];
            labels.extend(domain.iter().map(String::as_str));
            fqdn(&labels)
        });
        let mut reply = Reply::default();
        for target in node_targets.chain(service_targets) {
            reply.answers.push(Record::from_rdata(
                qname.clone(),
                ttl,
                RData::PTR(PTR(target)),
            ));
        }
        Ok(reply)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::AddressOwners;
    use crate::config::DnsConfig;

    /// A client agent's catalog when no server answers.
    struct Unreachable;

    #[async_trait::async_trait]
    impl Catalog for Unreachable {
        async fn node(&self, _: &str) -> Result<Option<state::Node>, CatalogError> {
            Err(CatalogError("No known Consul servers".into()))
        }
        async fn service_health(&self, _: &str) -> Result<Vec<CheckServiceNode>, CatalogError> {
            Err(CatalogError("No known Consul servers".into()))
        }
        async fn prepared_query(
            &self,
            _: &str,
            _: &str,
            _: &str,
        ) -> Result<Option<Execution>, CatalogError> {
            Err(CatalogError("No known Consul servers".into()))
        }
        async fn address_owners(&self, _: IpAddr) -> Result<AddressOwners, CatalogError> {
            Err(CatalogError("No known Consul servers".into()))
        }
    }

    #[tokio::test]
    async fn a_failed_catalog_read_is_a_server_failure() {
        let settings = Settings::new(&DnsConfig::default());
        for (name, qtype) in [
            ("web.service.consul.", RecordType::A),
            ("n1.node.consul.", RecordType::A),
            ("q.query.consul.", RecordType::SRV),
            ("consul.", RecordType::NS),
            ("1.0.0.127.in-addr.arpa.", RecordType::PTR),
        ] {
            let qname = Name::from_ascii(name).unwrap();
            match answer(&Unreachable, &settings, &qname, qtype).await {
                Outcome::Reply(reply) => {
                    assert_eq!(reply.rcode, ResponseCode::ServFail, "{name}");
                    assert!(reply.answers.is_empty() && reply.authorities.is_empty());
                }
                other => panic!("{name}: {other:?}"),
            }
        }
        // What needs no read is still answered: an address, a bad name,
        // and a name for the recursors.
        let addr = Name::from_ascii("7f000001.addr.consul.").unwrap();
        assert!(matches!(
            answer(&Unreachable, &settings, &addr, RecordType::A).await,
            Outcome::Reply(reply) if reply.rcode == ResponseCode::NoError && reply.answers.len() == 1
        ));
        let bad = Name::from_ascii("nothing.consul.").unwrap();
        assert!(matches!(
            answer(&Unreachable, &settings, &bad, RecordType::A).await,
            Outcome::Reply(reply) if reply.rcode == ResponseCode::NXDomain
        ));
        let outside = Name::from_ascii("example.com.").unwrap();
        assert!(matches!(
            answer(&Unreachable, &settings, &outside, RecordType::A).await,
            Outcome::Recurse
        ));
    }

    #[test]
    fn rfc1464_escaping() {
        assert_eq!(rfc1464("key", "value"), "key=value");
        assert_eq!(rfc1464("a=b", "c"), "a`=b=c");
        assert_eq!(rfc1464("a`b", "c`d"), "a``b=c``d");
        assert_eq!(rfc1464("  key ", "v"), "` ` key` =v");
        assert_eq!(rfc1464("", "v"), "=v");
    }

    #[test]
    fn long_text_is_split() {
        let text = "x".repeat(600);
        let parts = character_strings(&text);
        assert_eq!(parts.len(), 3);
        assert!(parts.iter().all(|p| p.len() <= 255));
        assert_eq!(parts.concat(), text);
        assert_eq!(character_strings(""), vec![String::new()]);
    }
}
