use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

/// The DNS interface's settings: Consul's `domain`, `alt_domain`,
/// `recursors` and `dns_config` keys, with Consul's defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsConfig {
    /// The domain answered from the catalog (`consul.`); any case, with or
    /// without the final dot.
    pub domain: String,
    /// A second domain answered the same way (`alt_domain`).
    pub alt_domain: Option<String>,
    /// This agent's datacenter; names for any other one are NXDOMAIN.
    pub datacenter: String,
    /// TTL of node answers (`dns_config.node_ttl`).
    pub node_ttl: Duration,
    /// TTLs of service answers by service name (`dns_config.service_ttl`):
    /// a key ending in `*` covers every service starting with the rest of
    /// it, so `*` alone is the default; a service no key covers gets 0.
    pub service_ttl: BTreeMap<String, Duration>,
    /// Leave out instances with a warning check too, not only critical ones.
    pub only_passing: bool,
    /// Most answers in a UDP response to a query without EDNS (never more
    /// than 8, as in Consul).
    pub udp_answer_limit: usize,
    /// Most A/AAAA answers for a service; 0 for no limit.
    pub a_record_limit: usize,
    /// Set the TC bit when a response was cut down.
    pub enable_truncate: bool,
    /// Servers that names outside the domain are forwarded to, in order.
    pub recursors: Vec<SocketAddr>,
    /// How long to wait for each recursor.
    pub recursor_timeout: Duration,
    /// Accepted for compatibility: every query reads the local store.
    pub allow_stale: bool,
    /// Accepted for compatibility: every query reads the local store.
    pub max_stale: Duration,
    /// Add a node's metadata as TXT records to the additional section of
    /// node and SRV answers (`dns_config.enable_additional_node_meta_txt`).
    pub node_meta_txt: bool,
    /// The timers of the SOA record (`dns_config.soa`).
    pub soa: SoaConfig,
    /// This agent's node: what a prepared query's `Near: "_agent"` means.
    pub node_name: String,
}

/// SOA timers, in seconds (Consul's `dns_config.soa`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SoaConfig {
    pub refresh: u32,
    pub retry: u32,
    pub expire: u32,
    /// Also the TTL of the SOA record itself.
    pub min_ttl: u32,
}

impl Default for SoaConfig {
    fn default() -> Self {
        SoaConfig {
            refresh: 3600,
            retry: 600,
            expire: 86400,
            min_ttl: 0,
        }
    }
}

impl Default for DnsConfig {
    fn default() -> Self {
        DnsConfig {
            domain: "consul.".to_owned(),
            alt_domain: None,
            datacenter: "dc1".to_owned(),
            node_ttl: Duration::ZERO,
            service_ttl: BTreeMap::new(),
            only_passing: false,
            udp_answer_limit: 3,
            a_record_limit: 0,
            enable_truncate: false,
            recursors: Vec::new(),
            recursor_timeout: Duration::from_secs(2),
            allow_stale: true,
            max_stale: Duration::from_secs(87600 * 3600),
            node_meta_txt: true,
            soa: SoaConfig::default(),
            node_name: String::new(),
        }
    }
}

/// Consul caps the UDP answer limit whatever the configuration says.
pub(crate) const MAX_UDP_ANSWER_LIMIT: usize = 8;

/// The configuration in the form the answering code uses: domains as
/// lowercase labels, TTLs in seconds.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    pub(crate) domain: Vec<String>,
    pub(crate) alt_domain: Option<Vec<String>>,
    pub(crate) datacenter: String,
    pub(crate) node_ttl: u32,
    pub(crate) service_ttl: ServiceTtl,
    pub(crate) only_passing: bool,
    pub(crate) udp_answer_limit: usize,
    pub(crate) a_record_limit: usize,
    pub(crate) enable_truncate: bool,
    pub(crate) recursors: Vec<SocketAddr>,
    pub(crate) recursor_timeout: Duration,
    pub(crate) node_meta_txt: bool,
    pub(crate) soa: SoaConfig,
    pub(crate) node_name: String,
}

/// `"Consul."` and `"consul"` both become `["consul"]`.
pub(crate) fn domain_labels(domain: &str) -> Vec<String> {
    domain
        .trim_end_matches('.')
        .split('.')
        .filter(|label| !label.is_empty())
        .map(str::to_ascii_lowercase)
        .collect()
}

fn seconds(ttl: Duration) -> u32 {
    u32::try_from(ttl.as_secs()).unwrap_or(u32::MAX)
}

impl Settings {
    pub(crate) fn new(config: &DnsConfig) -> Settings {
        let domain = domain_labels(&config.domain);
        let domain = if domain.is_empty() {
            vec!["consul".to_owned()]
        } else {
            domain
        };
        let alt_domain = config
            .alt_domain
            .as_deref()
            .map(domain_labels)
            .filter(|labels| !labels.is_empty() && *labels != domain);
        Settings {
            domain,
            alt_domain,
            datacenter: config.datacenter.to_ascii_lowercase(),
            node_ttl: seconds(config.node_ttl),
            service_ttl: ServiceTtl::new(&config.service_ttl),
            only_passing: config.only_passing,
            udp_answer_limit: config.udp_answer_limit.min(MAX_UDP_ANSWER_LIMIT),
            a_record_limit: config.a_record_limit,
            enable_truncate: config.enable_truncate,
            recursors: config.recursors.clone(),
            recursor_timeout: config.recursor_timeout,
            node_meta_txt: config.node_meta_txt,
            soa: config.soa,
            node_name: config.node_name.clone(),
        }
    }

    pub(crate) fn can_recurse(&self) -> bool {
        !self.recursors.is_empty()
    }
}

/// `dns_config.service_ttl` in the form lookups use, in seconds.
#[derive(Clone, Debug, Default)]
pub(crate) struct ServiceTtl {
    /// Keys without a `*`: the service of exactly that name.
    exact: BTreeMap<String, u32>,
    /// Keys ending in `*`, without it: longest first, so the first prefix
    /// a name starts with is the longest one, as Consul's radix tree finds.
    prefixes: Vec<(String, u32)>,
}

impl ServiceTtl {
    fn new(config: &BTreeMap<String, Duration>) -> ServiceTtl {
        let mut ttl = ServiceTtl::default();
        for (key, duration) in config {
            match key.strip_suffix('*') {
                Some(prefix) => ttl.prefixes.push((prefix.to_owned(), seconds(*duration))),
                None => {
                    ttl.exact.insert(key.clone(), seconds(*duration));
                }
            }
        }
        ttl.prefixes
            .sort_by(|a, b| b.0.len().cmp(&a.0.len()).then_with(|| a.0.cmp(&b.0)));
        ttl
    }

    /// The TTL of `service`'s answers: its own key, else the longest
    /// prefix key it starts with, else 0.
    pub(crate) fn of(&self, service: &str) -> u32 {
        if let Some(ttl) = self.exact.get(service) {
            return *ttl;
        }
        self.prefixes
            .iter()
            .find(|(prefix, _)| service.starts_with(prefix.as_str()))
            .map_or(0, |(_, ttl)| *ttl)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_ttl_exact_then_longest_prefix_then_zero() {
        let secs = Duration::from_secs;
        let ttl = ServiceTtl::new(&BTreeMap::from([
            ("*".to_owned(), secs(5)),
            ("db*".to_owned(), secs(10)),
            ("db-primary*".to_owned(), secs(20)),
            ("db".to_owned(), secs(1)),
        ]));
        assert_eq!(ttl.of("web"), 5);
        assert_eq!(ttl.of("db"), 1);
        assert_eq!(ttl.of("dbx"), 10);
        assert_eq!(ttl.of("db-primary-east"), 20);
        let none = ServiceTtl::new(&BTreeMap::from([("api".to_owned(), secs(3))]));
        assert_eq!(none.of("api"), 3);
        assert_eq!(none.of("web"), 0);
    }
}
