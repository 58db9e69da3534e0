//! What the core knows about each member.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Instant;

use crate::message::node_state;

/// A member's state as SWIM sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    Alive,
    Suspect,
    Dead,
    /// Announced its own departure.
    Left,
}

impl State {
    /// The `NodeStateType` written in push-pull.
    pub fn wire(self) -> u8 {
        match self {
            State::Alive => node_state::ALIVE,
            State::Suspect => node_state::SUSPECT,
            State::Dead => node_state::DEAD,
            State::Left => node_state::LEFT,
        }
    }

    /// Reads a `NodeStateType`; unknown values are `None` (the entry is skipped).
    pub fn from_wire(b: u8) -> Option<State> {
        Some(match b {
            node_state::ALIVE => State::Alive,
            node_state::SUSPECT => State::Suspect,
            node_state::DEAD => State::Dead,
            node_state::LEFT => State::Left,
            _ => return None,
        })
    }

    pub fn is_dead_or_left(self) -> bool {
        matches!(self, State::Dead | State::Left)
    }
}

/// A member as handed to delegates and reported by [`crate::Memberlist::members`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub name: String,
    pub addr: SocketAddr,
    pub meta: Vec<u8>,
    /// `[pmin, pmax, pcur, dmin, dmax, dcur]`.
    pub vsn: [u8; 6],
    pub state: State,
    pub incarnation: u32,
}

impl Node {
    pub fn pmax(&self) -> u8 {
        self.vsn[1]
    }
}

/// A member plus the bookkeeping only the core needs.
#[derive(Debug, Clone)]
pub(crate) struct Member {
    pub node: Node,
    /// When `node.state` last changed.
    pub state_change: Instant,
}

/// Go writes `net.IP` as 4 bytes for IPv4 (`To4()`) or 16 for IPv6.
pub fn ip_to_wire(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.octets().to_vec(),
            None => v6.octets().to_vec(),
        },
    }
}

/// Reads a `net.IP`: 4 or 16 bytes (an IPv4-mapped v6 address becomes v4).
pub fn ip_from_wire(b: &[u8]) -> Option<IpAddr> {
    match b.len() {
        4 => Some(IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]))),
        16 => {
            let mut a = [0u8; 16];
            a.copy_from_slice(b);
            let v6 = Ipv6Addr::from(a);
            Some(match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => IpAddr::V6(v6),
            })
        }
        _ => None,
    }
}

/// A `Vsn` field as received: shorter than six bytes means "not sent"
/// (Go's zero values).
pub fn vsn_from_wire(b: &[u8]) -> Option<[u8; 6]> {
    let v: [u8; 6] = b.get(..6)?.try_into().ok()?;
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_wire_forms() {
        let v4: IpAddr = "127.0.0.7".parse().unwrap();
        assert_eq!(ip_to_wire(v4), vec![127, 0, 0, 7]);
        assert_eq!(ip_from_wire(&[127, 0, 0, 7]), Some(v4));
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(ip_to_wire(mapped), vec![10, 0, 0, 1]);
        let v6: IpAddr = "fe80::1".parse().unwrap();
        assert_eq!(ip_from_wire(&ip_to_wire(v6)), Some(v6));
        assert_eq!(ip_from_wire(&[1, 2, 3]), None);
    }
}
