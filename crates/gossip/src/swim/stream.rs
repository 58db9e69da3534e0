//! Stream (TCP) exchanges: push-pull state sync, the fallback ping, and
//! stream user messages. The core sees whole frames: the shell reads until
//! [`frame_len`] says a frame is complete and hands the bytes over.
//!
//! A frame is an optional label header (sent by the dialing side only),
//! then either `[10][u32 len][sealed]` when encrypted or a plain message,
//! which may itself be an LZW `compress` wrapper around the real one.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::RngCore;

use super::membership::push_state_node;
use super::packet::{strip_label, MAX_DECOMPRESSED};
use super::{Event, Memberlist, StreamId, Transmit};
use crate::config::Config;
use crate::delegate::Delegate;
use crate::keyring::NONCE_SIZE;
use crate::message::{self, Ack, ErrResp, Message, PushPull};
use crate::msgpack::{Reader, Writer};
use crate::{CodecError, MessageType};

/// Largest stream frame we read (memberlist's push-state limit).
pub const MAX_FRAME: usize = 20 * 1024 * 1024;

/// Why a stream exchange failed, as the shell reports it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamError {
    #[error("connect: {0}")]
    Connect(String),
    #[error("i/o: {0}")]
    Io(String),
    #[error("timed out")]
    Timeout,
    #[error("malformed frame: {0}")]
    Malformed(String),
}

#[derive(Debug, Clone)]
enum Kind {
    PushPull { addr: SocketAddr, join: bool },
    Fallback { seq: u32 },
    User,
}

/// An outgoing exchange waiting for its reply.
#[derive(Debug, Clone)]
pub(crate) struct Pending {
    kind: Kind,
    pub(crate) deadline: Instant,
}

impl Pending {
    pub(super) fn user(now: Instant, config: &Config) -> Pending {
        Pending {
            kind: Kind::User,
            deadline: now + config.tcp_timeout,
        }
    }

    pub(super) fn fallback(seq: u32, deadline: Instant) -> Pending {
        Pending {
            kind: Kind::Fallback { seq },
            deadline,
        }
    }
}

/// How long after its deadline an unanswered exchange is given up by the
/// core itself, in case the shell never reports it.
pub(super) const GRACE: Duration = Duration::from_secs(1);

/// `[8]` + `{UserMsgLen}` + the message: a user message on a stream.
pub fn user_frame(msg: &[u8]) -> Vec<u8> {
    let mut w = Writer::new(vec![MessageType::User as u8]);
    w.map_len(1);
    w.key("UserMsgLen");
    w.int(msg.len() as i64);
    let mut out = w.into_inner();
    out.extend_from_slice(msg);
    out
}

/// How many bytes the frame at the start of `buf` takes: `Ok(None)` if more
/// are needed, an error if the bytes can never form a frame.
pub fn frame_len(buf: &[u8]) -> Result<Option<usize>, CodecError> {
    let (label, rest) = match strip_label(buf) {
        Ok(v) => v,
        Err(CodecError::Truncated) => return Ok(None),
        Err(e) => return Err(e),
    };
    let head = buf.len() - rest.len();
    let _ = label;
    let Some(&t) = rest.first() else {
        return Ok(None);
    };
    let body = match MessageType::try_from(t)? {
        MessageType::Encrypt => {
            let Some(len) = rest.get(1..5) else {
                return Ok(None);
            };
            let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
            if len > MAX_FRAME {
                return Err(CodecError::TooLarge);
            }
            Some(5 + len)
        }
        _ => match plain_len(rest) {
            Ok(n) => Some(n),
            Err(CodecError::Truncated) => None,
            Err(e) => return Err(e),
        },
    };
    match body {
        Some(n) if head + n <= buf.len() => Ok(Some(head + n)),
        Some(n) if head + n > MAX_FRAME => Err(CodecError::TooLarge),
        _ => Ok(None),
    }
}

/// Length of a plain (unencrypted) stream message, type byte included.
fn plain_len(buf: &[u8]) -> Result<usize, CodecError> {
    let (&t, body) = buf.split_first().ok_or(CodecError::Truncated)?;
    let mut r = Reader::new(body);
    let extra = match MessageType::try_from(t)? {
        MessageType::PushPull => {
            let (nodes, user) = header_counts(&mut r, b"Nodes", b"UserStateLen")?;
            for _ in 0..nodes {
                r.skip_value()?;
            }
            user
        }
        MessageType::User => header_counts(&mut r, b"", b"UserMsgLen")?.1,
        _ => {
            r.skip_value()?;
            0
        }
    };
    let n = 1 + r.position() + extra;
    if n > MAX_FRAME {
        return Err(CodecError::TooLarge);
    }
    if n > buf.len() {
        return Err(CodecError::Truncated);
    }
    Ok(n)
}

/// Reads a header map, returning the two named counts (0 if absent).
fn header_counts(r: &mut Reader<'_>, a: &[u8], b: &[u8]) -> Result<(usize, usize), CodecError> {
    let (mut x, mut y) = (0usize, 0usize);
    for _ in 0..r.map_len()? {
        let k = r.raw()?;
        if !a.is_empty() && k == a {
            x = r.uint_as()?;
        } else if k == b {
            y = r.uint_as()?;
        } else {
            r.skip_value()?;
        }
    }
    Ok((x, y))
}

/// A stream message after unwrapping.
enum StreamMsg {
    Message(Message),
    User(Vec<u8>),
}

impl Memberlist {
    /// Compresses (when enabled), encrypts (when configured) and, for the
    /// dialing side, labels a stream frame.
    fn wrap_stream(&mut self, frame: Vec<u8>, dialing: bool) -> Option<Vec<u8>> {
        let mut buf = frame;
        if self.config.enable_compression {
            let c = crate::compress::compress(&buf).ok()?;
            buf = message::encode(&Message::Compress(c)).ok()?;
        }
        if self.config.encrypts() {
            let mut nonce = [0u8; NONCE_SIZE];
            self.rng.fill_bytes(&mut nonce);
            let label = if dialing {
                self.config.label.as_str()
            } else {
                ""
            };
            let ring = self.config.keyring.as_ref()?;
            buf = ring.seal_stream_labelled(nonce, &buf, label).ok()?;
        }
        if dialing {
            buf = super::packet::add_label(&self.config.label, buf);
        }
        Some(buf)
    }

    /// Peels label, encryption and compression off a frame.
    fn unwrap_stream(&self, buf: &[u8], dialed: bool) -> Result<StreamMsg, String> {
        let (label, mut buf) = strip_label(buf).map_err(|e| e.to_string())?;
        let want = if dialed {
            ""
        } else {
            self.config.label.as_str()
        };
        if label != want {
            return Err(format!("unexpected stream label {label:?}"));
        }
        let plain;
        if buf.first() == Some(&(MessageType::Encrypt as u8)) {
            let Some(ring) = &self.config.keyring else {
                return Err("Remote state is encrypted and encryption is not configured".into());
            };
            plain = ring
                .open_stream_labelled(buf, label)
                .map_err(|e| e.to_string())?;
            buf = &plain;
        } else if self.config.keyring.is_some() && self.config.verify_incoming {
            return Err("Encryption is configured but remote state is not encrypted".into());
        }
        let inner;
        if buf.first() == Some(&(MessageType::Compress as u8)) {
            let Message::Compress(c) = message::decode(buf).map_err(|e| e.to_string())? else {
                return Err("bad compress frame".into());
            };
            inner = crate::compress::decompress(&c, MAX_DECOMPRESSED).map_err(|e| e.to_string())?;
            buf = &inner;
        }
        if buf.first() == Some(&(MessageType::User as u8)) {
            let mut r = Reader::new(&buf[1..]);
            let (_, len) = header_counts(&mut r, b"", b"UserMsgLen").map_err(|e| e.to_string())?;
            let start = 1 + r.position();
            let msg = buf
                .get(start..start + len)
                .ok_or("Failed to read full user message")?;
            return Ok(StreamMsg::User(msg.to_vec()));
        }
        message::decode(buf)
            .map(StreamMsg::Message)
            .map_err(|e| e.to_string())
    }

    /// Queues an outgoing exchange; `frame` is a plain message.
    pub(super) fn open_stream(
        &mut self,
        _now: Instant,
        to: SocketAddr,
        frame: Vec<u8>,
        expect_reply: bool,
        pending: Pending,
    ) {
        let Some(payload) = self.wrap_stream(frame, true) else {
            return;
        };
        self.next_stream += 1;
        let id = StreamId(self.next_stream);
        self.metrics.streams_out += 1;
        let deadline = pending.deadline;
        if expect_reply {
            self.streams.insert(id, pending);
        }
        self.transmits.push_back(Transmit::Stream {
            id,
            to,
            payload,
            expect_reply,
            deadline,
        });
    }

    fn push_pull_frame(&mut self, join: bool, d: &mut impl Delegate) -> Vec<u8> {
        let pp = PushPull {
            join,
            nodes: self.local_push_states(),
            user_state: d.local_state(join),
        };
        message::encode(&Message::PushPull(pp)).unwrap_or_default()
    }

    /// Starts a push-pull with `addr` (`join` for an explicit join).
    pub(super) fn start_push_pull(
        &mut self,
        now: Instant,
        addr: SocketAddr,
        join: bool,
        d: &mut impl Delegate,
    ) {
        let frame = self.push_pull_frame(join, d);
        let pending = Pending {
            kind: Kind::PushPull { addr, join },
            deadline: now + self.config.tcp_timeout,
        };
        self.open_stream(now, addr, frame, true, pending);
    }

    /// Serves one incoming stream frame from `from`; returns the bytes to
    /// write back, if any. Bad frames change nothing.
    pub fn handle_stream(
        &mut self,
        now: Instant,
        from: SocketAddr,
        request: &[u8],
        d: &mut impl Delegate,
    ) -> Option<Vec<u8>> {
        self.metrics.streams_in += 1;
        let _ = from;
        let msg = match self.unwrap_stream(request, false) {
            Ok(m) => m,
            Err(e) => {
                self.metrics.malformed += 1;
                let err = message::encode(&Message::Err(ErrResp { error: e })).ok()?;
                return self.wrap_stream(err, false);
            }
        };
        let reply = match msg {
            StreamMsg::User(m) => {
                d.notify_msg(&m);
                None
            }
            StreamMsg::Message(Message::PushPull(pp)) => {
                let frame = self.push_pull_frame(pp.join, d);
                let reply = self.wrap_stream(frame, false);
                // Merge failures are the peer's problem to report; we have
                // already answered as memberlist does.
                let _ = self.merge_remote(now, pp, d);
                reply
            }
            StreamMsg::Message(Message::Ping(p)) => {
                if !p.node.is_empty() && p.node != self.config.name {
                    None
                } else {
                    let ack = Message::Ack(Ack {
                        seq_no: p.seq_no,
                        payload: Vec::new(),
                    });
                    let frame = message::encode(&ack).ok()?;
                    self.wrap_stream(frame, false)
                }
            }
            StreamMsg::Message(_) => {
                self.metrics.malformed += 1;
                None
            }
        };
        self.report_finished_broadcasts();
        reply
    }

    fn merge_remote(
        &mut self,
        now: Instant,
        pp: PushPull,
        d: &mut impl Delegate,
    ) -> Result<(), String> {
        self.verify_protocol(&pp.nodes)?;
        if pp.join {
            let nodes: Vec<_> = pp.nodes.iter().filter_map(push_state_node).collect();
            d.notify_merge(&nodes)?;
        }
        let join = pp.join;
        let user = pp.user_state;
        self.merge_state(now, pp.nodes, d);
        if !user.is_empty() {
            d.merge_remote_state(&user, join);
        }
        Ok(())
    }

    /// The reply (or failure) of an exchange we opened.
    pub fn handle_stream_reply(
        &mut self,
        now: Instant,
        id: StreamId,
        reply: Result<Vec<u8>, StreamError>,
        d: &mut impl Delegate,
    ) {
        let Some(p) = self.streams.remove(&id) else {
            return;
        };
        let msg = reply
            .map_err(|e| e.to_string())
            .and_then(|b| self.unwrap_stream(&b, true));
        match p.kind {
            Kind::Fallback { seq } => {
                let ok = matches!(&msg, Ok(StreamMsg::Message(Message::Ack(a))) if a.seq_no == seq);
                self.fallback_result(seq, ok);
            }
            Kind::PushPull { addr, join } => {
                let result = match msg {
                    Ok(StreamMsg::Message(Message::PushPull(pp))) => self.merge_remote(now, pp, d),
                    Ok(StreamMsg::Message(Message::Err(e))) => {
                        Err(format!("remote error: {}", e.error))
                    }
                    Ok(_) => Err("received invalid msgType, expected pushPullMsg".into()),
                    Err(e) => Err(e),
                };
                if join {
                    self.events.push_back(match result {
                        Ok(()) => Event::Joined { addr },
                        Err(reason) => Event::JoinFailed { addr, reason },
                    });
                }
            }
            Kind::User => {}
        }
        self.report_finished_broadcasts();
    }

    /// Gives up exchanges whose reply is overdue.
    pub(super) fn expire_streams(&mut self, now: Instant, d: &mut impl Delegate) {
        let mut due: Vec<StreamId> = self
            .streams
            .iter()
            .filter(|(_, p)| p.deadline + GRACE <= now)
            .map(|(id, _)| *id)
            .collect();
        due.sort_unstable();
        for id in due {
            self.handle_stream_reply(now, id, Err(StreamError::Timeout), d);
        }
    }
}
