//! What a question name asks for, by Consul's naming rules.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hickory_proto::rr::Name;

use crate::config::Settings;

/// Where a question name belongs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Route {
    /// Under the domain (or the alt domain): `domain` is the one it matched,
    /// `labels` the lowercased labels in front of it.
    Domain {
        domain: Vec<String>,
        labels: Vec<String>,
    },
    /// A reverse lookup (`*.in-addr.arpa.`, `*.ip6.arpa.`).
    Reverse(Option<IpAddr>),
    /// Anything else: for the recursors.
    Outside,
}

/// A lookup under the domain. `datacenter` is `None` for this agent's own
/// datacenter (named or not), else the other datacenter the name asks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Lookup {
    Node {
        name: String,
        datacenter: Option<String>,
    },
    Service {
        service: String,
        tag: Option<String>,
        datacenter: Option<String>,
    },
    Addr(IpAddr),
    /// `<name>.query[.<dc>].<domain>`: a prepared query by ID or name.
    Query {
        name: String,
        datacenter: Option<String>,
    },
    /// Well formed, but for something this agent cannot answer: Connect,
    /// ingress, virtual IPs.
    Unanswerable,
    /// Not a Consul name.
    Invalid,
}

fn labels_of(name: &Name) -> Vec<String> {
    name.iter()
        .map(|label| String::from_utf8_lossy(label).to_ascii_lowercase())
        .collect()
}

/// Routes `name`: the longest of the domains it ends with wins, as Consul
/// matches the name from its first label on.
pub(crate) fn route(name: &Name, settings: &Settings) -> Route {
    let labels = labels_of(name);
    for start in 0..labels.len() {
        let suffix = &labels[start..];
        if suffix == settings.domain.as_slice() {
            return Route::Domain {
                domain: settings.domain.clone(),
                labels: labels[..start].to_vec(),
            };
        }
        if let Some(alt) = &settings.alt_domain {
            if suffix == alt.as_slice() {
                return Route::Domain {
                    domain: alt.clone(),
                    labels: labels[..start].to_vec(),
                };
            }
        }
    }
    if labels.last().map(String::as_str) == Some("arpa") {
        let ip = name.parse_arpa_name().ok().and_then(|net| {
            let full = if net.addr().is_ipv4() { 32 } else { 128 };
            (net.prefix_len() == full).then(|| net.addr())
        });
        return Route::Reverse(ip);
    }
    Route::Outside
}

/// The kinds of Consul names, by the label that names the kind.
const KINDS: [&str; 7] = [
    "service", "node", "addr", "query", "connect", "ingress", "virtual",
];

/// Parses the labels in front of the domain.
pub(crate) fn lookup(labels: &[String], settings: &Settings) -> Lookup {
    let Some(kind_at) = labels.iter().rposition(|l| KINDS.contains(&l.as_str())) else {
        return Lookup::Invalid;
    };
    let parts = &labels[..kind_at];
    let datacenter = match &labels[kind_at + 1..] {
        [] => None,
        [dc] => Some(dc.as_str()),
        [dc, marker] if marker == "dc" => Some(dc.as_str()),
        _ => return Lookup::Invalid,
    };
    let kind = labels[kind_at].as_str();
    // An addr name carries its address whatever datacenter it names.
    if kind == "addr" {
        return match parts {
            [hex] => decode_hex_ip(hex).map_or(Lookup::Invalid, Lookup::Addr),
            _ => Lookup::Invalid,
        };
    }
    let datacenter = datacenter
        .filter(|dc| *dc != settings.datacenter)
        .map(str::to_owned);
    match kind {
        "node" if !parts.is_empty() => Lookup::Node {
            name: parts.join("."),
            datacenter,
        },
        "service" => service_lookup(parts, datacenter),
        "node" => Lookup::Invalid,
        "query" => match query_name(parts) {
            Some(name) => Lookup::Query { name, datacenter },
            None => Lookup::Invalid,
        },
        _ => Lookup::Unanswerable,
    }
}

/// A prepared query's name: the labels joined, or in RFC 2782 form
/// (`_<name>._<protocol>`) the name without its underscore and protocol.
fn query_name(parts: &[String]) -> Option<String> {
    let (first, last) = (parts.first()?, parts.last()?);
    if parts.len() >= 2 && first.starts_with('_') && last.starts_with('_') {
        // The leading underscore is one byte: cutting it keeps UTF-8 whole.
        let name = parts[..parts.len() - 1].join(".");
        return Some(name[1..].to_owned());
    }
    Some(parts.join("."))
}

fn service_lookup(parts: &[String], datacenter: Option<String>) -> Lookup {
    let (service, tag) = match parts {
        [] => return Lookup::Invalid,
        // RFC 2782: _<service>._<tag>, where the protocol `tcp` means no tag.
        [service, tag] if service.starts_with('_') && tag.starts_with('_') => {
            let tag = &tag[1..];
            (
                service[1..].to_owned(),
                (tag != "tcp").then(|| tag.to_owned()),
            )
        }
        // Consul's older form: the tag may itself hold dots.
        [tag @ .., service] => (service.clone(), (!tag.is_empty()).then(|| tag.join("."))),
    };
    Lookup::Service {
        service,
        tag,
        datacenter,
    }
}

/// `7f000001` is 127.0.0.1; 32 hex digits are an IPv6 address.
pub(crate) fn decode_hex_ip(hex: &str) -> Option<IpAddr> {
    let bytes = (0..hex.len())
        .step_by(2)
        .map(|at| u8::from_str_radix(hex.get(at..at + 2)?, 16).ok())
        .collect::<Option<Vec<u8>>>()?;
    match bytes.len() {
        4 => Some(IpAddr::V4(Ipv4Addr::new(
            bytes[0], bytes[1], bytes[2], bytes[3],
        ))),
        16 => {
            let octets: [u8; 16] = bytes.try_into().ok()?;
            Some(IpAddr::V6(Ipv6Addr::from(octets)))
        }
        _ => None,
    }
}

/// The inverse of [`decode_hex_ip`], in lowercase.
pub(crate) fn encode_hex_ip(ip: IpAddr) -> String {
    let bytes = match ip {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    };
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DnsConfig;

    fn settings() -> Settings {
        Settings::new(&DnsConfig {
            alt_domain: Some("Alt.Example".to_owned()),
            ..DnsConfig::default()
        })
    }

    fn parse(name: &str) -> (Route, Option<Lookup>) {
        let settings = settings();
        let route = route(&Name::from_ascii(name).unwrap(), &settings);
        let lookup = match &route {
            Route::Domain { labels, .. } => Some(lookup(labels, &settings)),
            _ => None,
        };
        (route, lookup)
    }

    fn service(service: &str, tag: Option<&str>) -> Option<Lookup> {
        service_in(service, tag, None)
    }

    fn service_in(service: &str, tag: Option<&str>, dc: Option<&str>) -> Option<Lookup> {
        Some(Lookup::Service {
            service: service.to_owned(),
            tag: tag.map(str::to_owned),
            datacenter: dc.map(str::to_owned),
        })
    }

    #[test]
    fn service_names() {
        assert_eq!(parse("web.service.consul.").1, service("web", None));
        assert_eq!(parse("WEB.Service.CONSUL.").1, service("web", None));
        assert_eq!(
            parse("v1.web.service.dc1.consul.").1,
            service("web", Some("v1"))
        );
        assert_eq!(
            parse("a.b.web.service.consul.").1,
            service("web", Some("a.b"))
        );
        assert_eq!(parse("_web._tcp.service.consul.").1, service("web", None));
        assert_eq!(
            parse("_web._v1.service.dc1.consul.").1,
            service("web", Some("v1"))
        );
        assert_eq!(parse("web.service.dc1.dc.consul.").1, service("web", None));
        assert_eq!(parse("web.service.alt.example.").1, service("web", None));
        assert_eq!(parse("service.consul.").1, Some(Lookup::Invalid));
        assert_eq!(
            parse("web.service.dc2.consul.").1,
            service_in("web", None, Some("dc2"))
        );
        assert_eq!(
            parse("v1.web.service.DC2.consul.").1,
            service_in("web", Some("v1"), Some("dc2"))
        );
        assert_eq!(
            parse("_web._v1.service.dc2.consul.").1,
            service_in("web", Some("v1"), Some("dc2"))
        );
        assert_eq!(
            parse("_web._tcp.service.dc2.dc.consul.").1,
            service_in("web", None, Some("dc2"))
        );
        assert_eq!(
            parse("web.connect.dc2.consul.").1,
            Some(Lookup::Unanswerable)
        );
        assert_eq!(parse("web.service.a.b.c.consul.").1, Some(Lookup::Invalid));
    }

    #[test]
    fn node_and_addr_names() {
        let node = |n: &str| {
            Some(Lookup::Node {
                name: n.to_owned(),
                datacenter: None,
            })
        };
        assert_eq!(parse("foo.node.consul.").1, node("foo"));
        assert_eq!(parse("foo.bar.node.dc1.consul.").1, node("foo.bar"));
        assert_eq!(parse("node.node.consul.").1, node("node"));
        assert_eq!(
            parse("7f000001.addr.dc9.consul.").1,
            Some(Lookup::Addr("127.0.0.1".parse().unwrap()))
        );
        assert_eq!(
            parse("20010db8000000000000000000000001.addr.consul.").1,
            Some(Lookup::Addr("2001:db8::1".parse().unwrap()))
        );
        assert_eq!(parse("7f00001.addr.consul.").1, Some(Lookup::Invalid));
        assert_eq!(
            parse("foo.node.dc2.consul.").1,
            Some(Lookup::Node {
                name: "foo".to_owned(),
                datacenter: Some("dc2".to_owned())
            })
        );
        let query = |n: &str, dc: Option<&str>| {
            Some(Lookup::Query {
                name: n.to_owned(),
                datacenter: dc.map(str::to_owned),
            })
        };
        assert_eq!(parse("x.query.consul.").1, query("x", None));
        assert_eq!(
            parse("geo-db.x.query.dc1.consul.").1,
            query("geo-db.x", None)
        );
        assert_eq!(parse("query.consul.").1, Some(Lookup::Invalid));
        assert_eq!(parse("x.query.dc9.consul.").1, query("x", Some("dc9")));
        // RFC 2782: the protocol label is dropped, the name may hold dots.
        assert_eq!(parse("_x._tcp.query.consul.").1, query("x", None));
        assert_eq!(
            parse("_a.b._tcp.query.dc2.consul.").1,
            query("a.b", Some("dc2"))
        );
        assert_eq!(parse("_x.query.consul.").1, query("_x", None));
        assert_eq!(parse("foo.consul.").1, Some(Lookup::Invalid));
    }

    #[test]
    fn routes() {
        assert_eq!(parse("example.com.").0, Route::Outside);
        assert_eq!(parse("consul.example.com.").0, Route::Outside);
        assert_eq!(
            parse("1.0.0.127.in-addr.arpa.").0,
            Route::Reverse(Some("127.0.0.1".parse().unwrap()))
        );
        assert_eq!(parse("0.127.in-addr.arpa.").0, Route::Reverse(None));
    }

    #[test]
    fn hex_round_trip() {
        for ip in ["10.1.2.3", "::1", "2001:db8::ff"] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(decode_hex_ip(&encode_hex_ip(ip)), Some(ip));
        }
        assert_eq!(encode_hex_ip("127.0.0.1".parse().unwrap()), "7f000001");
        assert_eq!(decode_hex_ip("zz000001"), None);
    }
}
