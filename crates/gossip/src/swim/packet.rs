//! Packets in and out. Outgoing: piggy-back broadcasts into a compound,
//! then compress (if smaller), CRC (for peers speaking protocol 5),
//! encrypt, and label. Incoming: the same layers peeled in reverse; any
//! layer that fails drops the packet and counts it, changing nothing.

use std::net::SocketAddr;
use std::time::Instant;

use rand::RngCore;

use super::{Memberlist, Transmit};
use crate::delegate::Delegate;
use crate::keyring::{NONCE_SIZE, TAG_SIZE, VERSION_SIZE};
use crate::message::{self, Message};
use crate::CodecError;

/// Bytes a compound header costs on top of its parts.
pub(super) const COMPOUND_HEADER_OVERHEAD: usize = 2;
/// Bytes each compound part costs on top of its body.
pub(super) const COMPOUND_OVERHEAD: usize = 2;
/// Bytes of encryption version, nonce and tag.
const ENCRYPT_OVERHEAD: usize = VERSION_SIZE + NONCE_SIZE + TAG_SIZE;
/// The type byte that starts a label header.
pub const LABEL_TAG: u8 = 244;
/// Largest decompressed message we accept.
pub(super) const MAX_DECOMPRESSED: usize = 20 * 1024 * 1024;

/// Prefixes `buf` with a label header when `label` is non-empty.
pub fn add_label(label: &str, buf: Vec<u8>) -> Vec<u8> {
    if label.is_empty() {
        return buf;
    }
    let mut out = Vec::with_capacity(2 + label.len() + buf.len());
    out.push(LABEL_TAG);
    out.push(label.len() as u8);
    out.extend_from_slice(label.as_bytes());
    out.extend_from_slice(&buf);
    out
}

/// Splits a label header off `buf`: `(label, rest)`; no header gives "".
pub fn strip_label(buf: &[u8]) -> Result<(&str, &[u8]), CodecError> {
    match buf.first() {
        Some(&LABEL_TAG) => {
            let len = *buf.get(1).ok_or(CodecError::Truncated)? as usize;
            if len == 0 {
                return Err(CodecError::Empty);
            }
            let label = buf.get(2..2 + len).ok_or(CodecError::Truncated)?;
            let label = std::str::from_utf8(label).map_err(|_| CodecError::InvalidUtf8)?;
            Ok((label, &buf[2 + len..]))
        }
        _ => Ok(("", buf)),
    }
}

impl Memberlist {
    /// Bytes left in a packet for broadcasts, after `reserved` bytes.
    pub(super) fn packet_budget(&self, reserved: usize) -> usize {
        let mut avail = self.config.udp_buffer_size.saturating_sub(reserved);
        if self.config.encrypts() {
            avail = avail.saturating_sub(ENCRYPT_OVERHEAD);
        }
        avail.saturating_sub(2 + self.config.label.len())
    }

    /// Our broadcasts first, then the delegate's (framed as user messages).
    pub(super) fn take_broadcasts(
        &mut self,
        overhead: usize,
        limit: usize,
        d: &mut impl Delegate,
    ) -> Vec<Vec<u8>> {
        let tl = self.retransmit_limit();
        let mut out = self.broadcasts.take(overhead, limit, tl);
        let used: usize = out.iter().map(|m| m.len() + overhead).sum();
        let avail = limit.saturating_sub(used);
        if avail > overhead + 1 {
            for m in d.broadcasts(overhead + 1, avail) {
                let mut b = Vec::with_capacity(m.len() + 1);
                b.push(crate::MessageType::User as u8);
                b.extend_from_slice(&m);
                out.push(b);
            }
        }
        out.truncate(crate::compound::MAX_PARTS - 1);
        out
    }

    /// Sends `msg` with as many broadcasts as fit piggy-backed on it;
    /// `pmax` is the peer's highest protocol version, if it is a member.
    pub(super) fn send_msg(
        &mut self,
        to: SocketAddr,
        pmax: Option<u8>,
        msg: &Message,
        d: &mut impl Delegate,
    ) {
        let Ok(buf) = message::encode(msg) else {
            return;
        };
        let avail = self.packet_budget(buf.len() + COMPOUND_HEADER_OVERHEAD);
        let extra = self.take_broadcasts(COMPOUND_OVERHEAD, avail, d);
        if extra.is_empty() {
            self.raw_send_packet(to, pmax, buf);
            return;
        }
        let mut parts = Vec::with_capacity(extra.len() + 1);
        parts.push(buf);
        parts.extend(extra);
        if let Ok(compound) = crate::compound::make(&parts) {
            self.raw_send_packet(to, pmax, compound);
        }
    }

    /// Compresses, CRCs (if the peer's highest protocol version `pmax`
    /// reads CRCs), encrypts and labels one packet and queues it.
    pub(super) fn raw_send_packet(&mut self, to: SocketAddr, pmax: Option<u8>, mut msg: Vec<u8>) {
        if self.config.enable_compression {
            if let Ok(c) = crate::compress::compress(&msg) {
                if let Ok(buf) = message::encode(&Message::Compress(c)) {
                    if buf.len() < msg.len() {
                        msg = buf;
                    }
                }
            }
        }
        if pmax.is_some_and(|p| p >= 5) {
            msg = crate::crc::wrap(&msg);
        }
        if self.config.encrypts() {
            let mut nonce = [0u8; NONCE_SIZE];
            self.rng.fill_bytes(&mut nonce);
            let Some(ring) = &self.config.keyring else {
                return;
            };
            match ring.seal_packet_aad(nonce, &msg, self.config.label.as_bytes()) {
                Ok(sealed) => msg = sealed,
                Err(_) => return,
            }
        }
        let payload = add_label(&self.config.label, msg);
        self.metrics.packets_out += 1;
        self.metrics.bytes_out += payload.len() as u64;
        self.transmits.push_back(Transmit::Packet { to, payload });
    }

    /// Reads one UDP datagram from `from`.
    pub fn handle_packet(
        &mut self,
        now: Instant,
        from: SocketAddr,
        buf: &[u8],
        d: &mut impl Delegate,
    ) {
        self.metrics.packets_in += 1;
        self.metrics.bytes_in += buf.len() as u64;
        if self.ingest(now, from, buf, d).is_err() {
            self.metrics.malformed += 1;
        }
        self.report_finished_broadcasts();
    }

    fn ingest(
        &mut self,
        now: Instant,
        from: SocketAddr,
        buf: &[u8],
        d: &mut impl Delegate,
    ) -> Result<(), CodecError> {
        let (label, buf) = strip_label(buf)?;
        if label != self.config.label {
            return Err(CodecError::UnknownType(LABEL_TAG));
        }
        let plain;
        let mut buf = buf;
        if let Some(ring) = &self.config.keyring {
            match ring.open_packet_aad(buf, label.as_bytes()) {
                Ok(p) => {
                    plain = p;
                    buf = &plain;
                }
                Err(e) if self.config.verify_incoming => return Err(e),
                Err(_) => {}
            }
        }
        if buf.first() == Some(&(crate::MessageType::HasCrc as u8)) {
            buf = crate::crc::unwrap(&buf[1..])?;
        }
        let msg = message::decode(buf)?;
        self.handle_message(now, from, msg, d, 0)
    }

    fn handle_message(
        &mut self,
        now: Instant,
        from: SocketAddr,
        msg: Message,
        d: &mut impl Delegate,
        depth: usize,
    ) -> Result<(), CodecError> {
        if depth > 4 {
            return Err(CodecError::TooDeep);
        }
        match msg {
            Message::Compound(c) => {
                for part in c.parts {
                    // A bad part is dropped; the others still count.
                    let _ = self.handle_message(now, from, part, d, depth + 1);
                }
            }
            Message::Compress(c) => {
                let inner = crate::compress::decompress(&c, MAX_DECOMPRESSED)?;
                let inner = message::decode(&inner)?;
                self.handle_message(now, from, inner, d, depth + 1)?;
            }
            Message::HasCrc(inner) => self.handle_message(now, from, *inner, d, depth + 1)?,
            Message::Ping(p) => self.handle_ping(now, from, p, d),
            Message::IndirectPing(p) => self.handle_indirect_ping(now, from, p, d),
            Message::Ack(a) => self.handle_ack(now, a, d),
            Message::Nack(n) => self.handle_nack(n),
            Message::Suspect(s) => self.suspect_node(now, s, d),
            Message::Alive(a) => {
                let mut a = a;
                if a.port == 0 {
                    a.port = self.config.advertise.port();
                }
                self.alive_node(now, a, false, d);
            }
            Message::Dead(dm) => self.dead_node(now, dm, d),
            Message::User(buf) => d.notify_msg(&buf),
            // Stream-only messages have no business in a packet.
            Message::PushPull(_) | Message::Encrypt(_) | Message::Err(_) => {
                return Err(CodecError::UnknownType(msg_type_byte(&msg)));
            }
        }
        Ok(())
    }
}

fn msg_type_byte(m: &Message) -> u8 {
    m.message_type() as u8
}
