//! Tunables of the SWIM core, with memberlist's three profiles.

use std::net::SocketAddr;
use std::time::Duration;

use crate::keyring::Keyring;

/// Lowest memberlist protocol version we understand.
pub const PROTOCOL_MIN: u8 = 1;
/// Highest memberlist protocol version we understand (nack = 4, CRC = 5).
pub const PROTOCOL_MAX: u8 = 5;
/// The version we speak by default (memberlist's `ProtocolVersion2Compatible`).
pub const PROTOCOL_DEFAULT: u8 = 2;
/// Largest node meta memberlist carries.
pub const META_MAX_SIZE: usize = 512;
/// Largest label a packet or stream may carry.
pub const LABEL_MAX_SIZE: usize = 255;

/// Everything the core needs to know up front. Build one with [`Config::lan`],
/// [`Config::wan`] or [`Config::local`] and adjust fields.
#[derive(Debug, Clone)]
pub struct Config {
    /// This node's name; unique in the cluster.
    pub name: String,
    /// The address other nodes reach us at (advertised in alive messages).
    pub advertise: SocketAddr,
    /// memberlist protocol version spoken (`PROTOCOL_MIN..=PROTOCOL_MAX`).
    pub protocol_version: u8,
    /// The delegate's `[min, max, current]` protocol versions, advertised in
    /// `Vsn` and checked across the cluster on push-pull. Serf 0.9.4 sends
    /// `[2, 5, 5]`; a plain memberlist peer `[0, 0, 0]`.
    pub delegate_versions: [u8; 3],
    /// Timeout of one TCP exchange (push-pull, fallback ping, user message).
    pub tcp_timeout: Duration,
    /// Peers asked to probe a node that missed its direct ack.
    pub indirect_checks: usize,
    /// Broadcasts are sent `retransmit_mult * ceil(log10(n + 1))` times.
    pub retransmit_mult: usize,
    /// Suspicion lasts `suspicion_mult * max(1, log10(n)) * probe_interval` at
    /// least; Lifeguard expects `suspicion_mult - 2` confirmations.
    pub suspicion_mult: usize,
    /// Longest suspicion, as a multiple of the shortest (Lifeguard).
    pub suspicion_max_timeout_mult: usize,
    /// Full state exchange with one random peer this often (scaled up above
    /// 32 nodes). Zero turns it off.
    pub push_pull_interval: Duration,
    /// How long a direct ping waits for its ack.
    pub probe_timeout: Duration,
    /// One node is probed this often (scaled by the health score).
    pub probe_interval: Duration,
    /// Do not try the TCP fallback ping.
    pub disable_tcp_pings: bool,
    /// The probe interval grows up to this multiple when we are unhealthy
    /// (Lifeguard's local health awareness). 1 turns awareness off.
    pub awareness_max_multiplier: usize,
    /// Peers each gossip round sends broadcasts to.
    pub gossip_nodes: usize,
    /// How often queued broadcasts are gossiped.
    pub gossip_interval: Duration,
    /// Dead nodes keep receiving gossip (and stay in the member list) this long.
    pub gossip_to_the_dead_time: Duration,
    /// LZW-compress outgoing messages when that makes them smaller.
    pub enable_compression: bool,
    /// Largest UDP payload we build.
    pub udp_buffer_size: usize,
    /// Keys for AES-GCM; `None` means plaintext.
    pub keyring: Option<Keyring>,
    /// Reject messages that are not encrypted (when a keyring is set).
    pub verify_incoming: bool,
    /// Encrypt what we send (when a keyring is set).
    pub verify_outgoing: bool,
    /// Label prefixed to every packet and stream (memberlist ≥ 0.3); empty
    /// sends none and accepts only unlabelled traffic.
    pub label: String,
    /// Lifeguard switches, for experiments; all on by default.
    pub lifeguard: Lifeguard,
    /// A left or dead node may come back at a new address after this long
    /// (zero: only once it has left).
    pub dead_node_reclaim_time: Duration,
}

/// The three parts of Lifeguard. Turning all three off gives plain SWIM with
/// a fixed suspicion timeout, for comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifeguard {
    /// Local health awareness: missed nacks and refutations slow our probes.
    pub awareness: bool,
    /// Suspicion starts at the maximum and shrinks with confirmations.
    pub dynamic_suspicion: bool,
    /// A probe of a suspect node carries the suspicion so it can refute.
    pub buddy_system: bool,
}

impl Lifeguard {
    pub const ON: Lifeguard = Lifeguard {
        awareness: true,
        dynamic_suspicion: true,
        buddy_system: true,
    };
    pub const OFF: Lifeguard = Lifeguard {
        awareness: false,
        dynamic_suspicion: false,
        buddy_system: false,
    };
}

impl Config {
    /// memberlist's `DefaultLANConfig`.
    pub fn lan(name: impl Into<String>, advertise: SocketAddr) -> Config {
        Config {
            name: name.into(),
            advertise,
            protocol_version: PROTOCOL_DEFAULT,
            delegate_versions: [0, 0, 0],
            tcp_timeout: Duration::from_secs(10),
            indirect_checks: 3,
            retransmit_mult: 4,
            suspicion_mult: 4,
            suspicion_max_timeout_mult: 6,
            push_pull_interval: Duration::from_secs(30),
            probe_timeout: Duration::from_millis(500),
            probe_interval: Duration::from_secs(1),
            disable_tcp_pings: false,
            awareness_max_multiplier: 8,
            gossip_nodes: 3,
            gossip_interval: Duration::from_millis(200),
            gossip_to_the_dead_time: Duration::from_secs(30),
            enable_compression: true,
            udp_buffer_size: 1400,
            keyring: None,
            verify_incoming: true,
            verify_outgoing: true,
            label: String::new(),
            lifeguard: Lifeguard::ON,
            dead_node_reclaim_time: Duration::ZERO,
        }
    }

    /// memberlist's `DefaultWANConfig`.
    pub fn wan(name: impl Into<String>, advertise: SocketAddr) -> Config {
        Config {
            tcp_timeout: Duration::from_secs(30),
            suspicion_mult: 6,
            push_pull_interval: Duration::from_secs(60),
            probe_timeout: Duration::from_secs(3),
            probe_interval: Duration::from_secs(5),
            gossip_nodes: 4,
            gossip_interval: Duration::from_millis(500),
            gossip_to_the_dead_time: Duration::from_secs(60),
            ..Config::lan(name, advertise)
        }
    }

    /// memberlist's `DefaultLocalConfig`.
    pub fn local(name: impl Into<String>, advertise: SocketAddr) -> Config {
        Config {
            tcp_timeout: Duration::from_secs(1),
            indirect_checks: 1,
            retransmit_mult: 2,
            suspicion_mult: 3,
            push_pull_interval: Duration::from_secs(15),
            probe_timeout: Duration::from_millis(200),
            probe_interval: Duration::from_secs(1),
            gossip_interval: Duration::from_millis(100),
            gossip_to_the_dead_time: Duration::from_secs(15),
            ..Config::lan(name, advertise)
        }
    }

    /// The six-byte `Vsn` we advertise.
    pub fn vsn(&self) -> [u8; 6] {
        let [dmin, dmax, dcur] = self.delegate_versions;
        [
            PROTOCOL_MIN,
            PROTOCOL_MAX,
            self.protocol_version,
            dmin,
            dmax,
            dcur,
        ]
    }

    /// Whether packets are encrypted on the way out.
    pub(crate) fn encrypts(&self) -> bool {
        self.keyring.is_some() && self.verify_outgoing
    }

    /// Checks values that would make the core misbehave.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.name.is_empty() {
            return Err(ConfigError::EmptyName);
        }
        if !(PROTOCOL_MIN..=PROTOCOL_MAX).contains(&self.protocol_version) {
            return Err(ConfigError::ProtocolVersion(self.protocol_version));
        }
        if self.label.len() > LABEL_MAX_SIZE {
            return Err(ConfigError::LabelTooLong(self.label.len()));
        }
        if self.probe_interval.is_zero() || self.gossip_interval.is_zero() {
            return Err(ConfigError::ZeroInterval);
        }
        if self.probe_timeout > self.probe_interval {
            return Err(ConfigError::ProbeTimeout);
        }
        Ok(())
    }
}

/// A configuration the core refuses to run with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("node name must not be empty")]
    EmptyName,
    #[error("protocol version {0} is outside {PROTOCOL_MIN}..={PROTOCOL_MAX}")]
    ProtocolVersion(u8),
    #[error("label is {0} bytes; at most {LABEL_MAX_SIZE} are allowed")]
    LabelTooLong(usize),
    #[error("probe and gossip intervals must be positive")]
    ZeroInterval,
    #[error("probe timeout must not exceed the probe interval")]
    ProbeTimeout,
}
