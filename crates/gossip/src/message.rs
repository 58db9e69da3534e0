//! memberlist messages: a type byte followed by a msgpack map shaped like
//! the Go struct (keys are field names, sorted; omitempty fields dropped).

use crate::msgpack::{fields, Reader, Writer};
use crate::CodecError;

/// Deepest nesting of compound / hasCrc wrappers `decode` accepts.
const MAX_NESTING: usize = 8;

/// memberlist's message type byte (`messageType` in net.go).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum MessageType {
    /// `pingMsg`
    Ping = 0,
    /// `indirectPingMsg`
    IndirectPing = 1,
    /// `ackRespMsg`
    Ack = 2,
    /// `suspectMsg`
    Suspect = 3,
    /// `aliveMsg`
    Alive = 4,
    /// `deadMsg`
    Dead = 5,
    /// `pushPullMsg` (streams only)
    PushPull = 6,
    /// `compoundMsg`
    Compound = 7,
    /// `userMsg`
    User = 8,
    /// `compressMsg`
    Compress = 9,
    /// `encryptMsg` (streams only)
    Encrypt = 10,
    /// `nackRespMsg`
    Nack = 11,
    /// `hasCrcMsg`
    HasCrc = 12,
    /// `errMsg` (streams only)
    Err = 13,
}

impl TryFrom<u8> for MessageType {
    type Error = CodecError;

    fn try_from(b: u8) -> Result<Self, CodecError> {
        use MessageType::*;
        Ok(match b {
            0 => Ping,
            1 => IndirectPing,
            2 => Ack,
            3 => Suspect,
            4 => Alive,
            5 => Dead,
            6 => PushPull,
            7 => Compound,
            8 => User,
            9 => Compress,
            10 => Encrypt,
            11 => Nack,
            12 => HasCrc,
            13 => Err,
            other => return Result::Err(CodecError::UnknownType(other)),
        })
    }
}

/// `ping`: a direct probe.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ping {
    pub seq_no: u32,
    /// Name of the node being probed (checked by the receiver).
    pub node: String,
    /// omitempty; address to reply to.
    pub source_addr: Vec<u8>,
    /// omitempty.
    pub source_port: u16,
    /// omitempty.
    pub source_node: String,
}

/// `indirectPingReq`: ask a peer to probe `target` for us.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IndirectPing {
    pub seq_no: u32,
    pub target: Vec<u8>,
    pub port: u16,
    pub node: String,
    /// Whether the requester wants a nack back.
    pub nack: bool,
    /// omitempty.
    pub source_addr: Vec<u8>,
    /// omitempty.
    pub source_port: u16,
    /// omitempty.
    pub source_node: String,
}

/// `ackResp`. Serf puts a Vivaldi coordinate in `payload`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ack {
    pub seq_no: u32,
    /// Written as nil when empty.
    pub payload: Vec<u8>,
}

/// `nackResp`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Nack {
    pub seq_no: u32,
}

/// `errResp` (stream reply to a bad request).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ErrResp {
    pub error: String,
}

/// `suspect`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Suspect {
    pub incarnation: u32,
    pub node: String,
    pub from: String,
}

/// `dead` (also a graceful leave when `from == node`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dead {
    pub incarnation: u32,
    pub node: String,
    pub from: String,
}

/// `alive`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Alive {
    pub incarnation: u32,
    pub node: String,
    pub addr: Vec<u8>,
    pub port: u16,
    /// Written as nil when empty.
    pub meta: Vec<u8>,
    /// `[pmin, pmax, pcur, dmin, dmax, dcur]`, written as a 6-byte str.
    pub vsn: Vec<u8>,
}

/// `NodeStateType` values carried in push-pull.
pub mod node_state {
    pub const ALIVE: u8 = 0;
    pub const SUSPECT: u8 = 1;
    pub const DEAD: u8 = 2;
    pub const LEFT: u8 = 3;
}

/// `pushNodeState`: one member in a push-pull exchange.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PushNodeState {
    pub name: String,
    pub addr: Vec<u8>,
    pub port: u16,
    pub meta: Vec<u8>,
    pub incarnation: u32,
    /// See [`node_state`].
    pub state: u8,
    pub vsn: Vec<u8>,
}

/// A push-pull stream body: `pushPullHeader{Join, Nodes, UserStateLen}`, then
/// `Nodes` node states, then `UserStateLen` raw bytes of delegate state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PushPull {
    pub join: bool,
    pub nodes: Vec<PushNodeState>,
    pub user_state: Vec<u8>,
}

/// `compress`: `Algo` 0 is LZW (see [`crate::compress`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Compress {
    pub algo: u8,
    pub buf: Vec<u8>,
}

/// A compound message's parts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Compound {
    pub parts: Vec<Message>,
    /// Parts announced in the header but cut off by the end of the packet
    /// (memberlist processes the complete ones and logs the rest).
    pub truncated: usize,
}

/// One memberlist message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Ping(Ping),
    IndirectPing(IndirectPing),
    Ack(Ack),
    Suspect(Suspect),
    Alive(Alive),
    Dead(Dead),
    PushPull(PushPull),
    Compound(Compound),
    /// A packet user message: the raw bytes after the type byte.
    User(Vec<u8>),
    /// Still compressed; see [`crate::compress::decompress`].
    Compress(Compress),
    /// A stream encryption frame: the bytes after `[10][u32 BE len]`,
    /// i.e. `[vsn][nonce][ciphertext+tag]`; see [`crate::keyring`].
    Encrypt(Vec<u8>),
    Nack(Nack),
    /// A message wrapped with a CRC; the CRC is checked on decode and
    /// recomputed on encode.
    HasCrc(Box<Message>),
    Err(ErrResp),
}

impl Message {
    /// The type byte this message is written with.
    pub fn message_type(&self) -> MessageType {
        match self {
            Message::Ping(_) => MessageType::Ping,
            Message::IndirectPing(_) => MessageType::IndirectPing,
            Message::Ack(_) => MessageType::Ack,
            Message::Suspect(_) => MessageType::Suspect,
            Message::Alive(_) => MessageType::Alive,
            Message::Dead(_) => MessageType::Dead,
            Message::PushPull(_) => MessageType::PushPull,
            Message::Compound(_) => MessageType::Compound,
            Message::User(_) => MessageType::User,
            Message::Compress(_) => MessageType::Compress,
            Message::Encrypt(_) => MessageType::Encrypt,
            Message::Nack(_) => MessageType::Nack,
            Message::HasCrc(_) => MessageType::HasCrc,
            Message::Err(_) => MessageType::Err,
        }
    }
}

/// Writes `msg` as memberlist does: type byte, then the body.
///
/// Fails only for compound messages that cannot be framed (more than 255
/// parts, a part over 65535 bytes) and oversized encrypt frames.
pub fn encode(msg: &Message) -> Result<Vec<u8>, CodecError> {
    let mut out = vec![msg.message_type() as u8];
    match msg {
        Message::Ping(m) => encode_ping(&mut out, m),
        Message::IndirectPing(m) => encode_indirect_ping(&mut out, m),
        Message::Ack(m) => {
            let mut w = Writer::new(out);
            w.map_len(2);
            w.key("Payload");
            w.bytes(&m.payload);
            w.key("SeqNo");
            w.uint(m.seq_no.into());
            out = w.into_inner();
        }
        Message::Nack(m) => {
            let mut w = Writer::new(out);
            w.map_len(1);
            w.key("SeqNo");
            w.uint(m.seq_no.into());
            out = w.into_inner();
        }
        Message::Err(m) => {
            let mut w = Writer::new(out);
            w.map_len(1);
            w.key("Error");
            w.str(&m.error);
            out = w.into_inner();
        }
        Message::Suspect(m) => encode_suspect_like(&mut out, m.incarnation, &m.node, &m.from),
        Message::Dead(m) => encode_suspect_like(&mut out, m.incarnation, &m.node, &m.from),
        Message::Alive(m) => encode_alive(&mut out, m),
        Message::PushPull(m) => encode_push_pull(&mut out, m),
        Message::Compound(c) => {
            let parts = c.parts.iter().map(encode).collect::<Result<Vec<_>, _>>()?;
            return crate::compound::make_unchecked(&parts);
        }
        Message::User(b) => out.extend_from_slice(b),
        Message::Compress(c) => {
            let mut w = Writer::new(out);
            w.map_len(2);
            w.key("Algo");
            w.uint(c.algo.into());
            w.key("Buf");
            w.bytes(&c.buf);
            out = w.into_inner();
        }
        Message::Encrypt(b) => {
            let len = u32::try_from(b.len()).map_err(|_| CodecError::TooLarge)?;
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(b);
        }
        Message::HasCrc(inner) => return Ok(crate::crc::wrap(&encode(inner)?)),
    }
    Ok(out)
}

fn encode_ping(out: &mut Vec<u8>, m: &Ping) {
    let mut w = Writer::new(std::mem::take(out));
    let n = 2
        + u32::from(!m.source_addr.is_empty())
        + u32::from(!m.source_node.is_empty())
        + u32::from(m.source_port != 0);
    w.map_len(n);
    w.key("Node");
    w.str(&m.node);
    w.key("SeqNo");
    w.uint(m.seq_no.into());
    write_source(&mut w, &m.source_addr, &m.source_node, m.source_port);
    *out = w.into_inner();
}

/// The omitempty `SourceAddr`, `SourceNode`, `SourcePort` trio, sorted.
fn write_source(w: &mut Writer, addr: &[u8], node: &str, port: u16) {
    if !addr.is_empty() {
        w.key("SourceAddr");
        w.bytes(addr);
    }
    if !node.is_empty() {
        w.key("SourceNode");
        w.str(node);
    }
    if port != 0 {
        w.key("SourcePort");
        w.uint(port.into());
    }
}

fn encode_indirect_ping(out: &mut Vec<u8>, m: &IndirectPing) {
    let mut w = Writer::new(std::mem::take(out));
    let n = 5
        + u32::from(!m.source_addr.is_empty())
        + u32::from(!m.source_node.is_empty())
        + u32::from(m.source_port != 0);
    w.map_len(n);
    w.key("Nack");
    w.bool(m.nack);
    w.key("Node");
    w.str(&m.node);
    w.key("Port");
    w.uint(m.port.into());
    w.key("SeqNo");
    w.uint(m.seq_no.into());
    write_source(&mut w, &m.source_addr, &m.source_node, m.source_port);
    w.key("Target");
    w.bytes(&m.target);
    *out = w.into_inner();
}

fn encode_suspect_like(out: &mut Vec<u8>, incarnation: u32, node: &str, from: &str) {
    let mut w = Writer::new(std::mem::take(out));
    w.map_len(3);
    w.key("From");
    w.str(from);
    w.key("Incarnation");
    w.uint(incarnation.into());
    w.key("Node");
    w.str(node);
    *out = w.into_inner();
}

fn encode_alive(out: &mut Vec<u8>, m: &Alive) {
    let mut w = Writer::new(std::mem::take(out));
    w.map_len(6);
    w.key("Addr");
    w.bytes(&m.addr);
    w.key("Incarnation");
    w.uint(m.incarnation.into());
    w.key("Meta");
    w.bytes(&m.meta);
    w.key("Node");
    w.str(&m.node);
    w.key("Port");
    w.uint(m.port.into());
    w.key("Vsn");
    w.bytes(&m.vsn);
    *out = w.into_inner();
}

fn encode_push_pull(out: &mut Vec<u8>, m: &PushPull) {
    let mut w = Writer::new(std::mem::take(out));
    w.map_len(3);
    w.key("Join");
    w.bool(m.join);
    w.key("Nodes");
    w.int(i64::try_from(m.nodes.len()).unwrap_or(i64::MAX));
    w.key("UserStateLen");
    w.int(i64::try_from(m.user_state.len()).unwrap_or(i64::MAX));
    for n in &m.nodes {
        w.map_len(7);
        w.key("Addr");
        w.bytes(&n.addr);
        w.key("Incarnation");
        w.uint(n.incarnation.into());
        w.key("Meta");
        w.bytes(&n.meta);
        w.key("Name");
        w.str(&n.name);
        w.key("Port");
        w.uint(n.port.into());
        w.key("State");
        w.int(n.state.into());
        w.key("Vsn");
        w.bytes(&n.vsn);
    }
    let mut out2 = w.into_inner();
    out2.extend_from_slice(&m.user_state);
    *out = out2;
}

/// Reads one message. Unknown map keys are skipped, missing fields take
/// Go's zero value, bytes after the message body are ignored (as Go does).
pub fn decode(buf: &[u8]) -> Result<Message, CodecError> {
    decode_depth(buf, 0)
}

fn decode_depth(buf: &[u8], depth: usize) -> Result<Message, CodecError> {
    if depth > MAX_NESTING {
        return Err(CodecError::TooDeep);
    }
    let (&t, body) = buf.split_first().ok_or(CodecError::Empty)?;
    let t = MessageType::try_from(t)?;
    let mut r = Reader::new(body);
    Ok(match t {
        MessageType::Ping => Message::Ping(decode_ping(&mut r)?),
        MessageType::IndirectPing => Message::IndirectPing(decode_indirect_ping(&mut r)?),
        MessageType::Ack => {
            let mut m = Ack::default();
            fields(&mut r, |k, r| {
                match k {
                    b"SeqNo" => m.seq_no = r.uint_as()?,
                    b"Payload" => m.payload = r.bytes()?,
                    _ => r.skip_value()?,
                }
                Ok(())
            })?;
            Message::Ack(m)
        }
        MessageType::Nack => {
            let mut m = Nack::default();
            fields(&mut r, |k, r| {
                match k {
                    b"SeqNo" => m.seq_no = r.uint_as()?,
                    _ => r.skip_value()?,
                }
                Ok(())
            })?;
            Message::Nack(m)
        }
        MessageType::Err => {
            let mut m = ErrResp::default();
            fields(&mut r, |k, r| {
                match k {
                    b"Error" => m.error = r.str()?,
                    _ => r.skip_value()?,
                }
                Ok(())
            })?;
            Message::Err(m)
        }
        MessageType::Suspect => {
            let (incarnation, node, from) = decode_suspect_like(&mut r)?;
            Message::Suspect(Suspect {
                incarnation,
                node,
                from,
            })
        }
        MessageType::Dead => {
            let (incarnation, node, from) = decode_suspect_like(&mut r)?;
            Message::Dead(Dead {
                incarnation,
                node,
                from,
            })
        }
        MessageType::Alive => Message::Alive(decode_alive(&mut r)?),
        MessageType::PushPull => Message::PushPull(decode_push_pull(&mut r)?),
        MessageType::Compound => {
            let (parts, truncated) = crate::compound::split(body)?;
            let parts = parts
                .into_iter()
                .map(|p| decode_depth(p, depth + 1))
                .collect::<Result<Vec<_>, _>>()?;
            Message::Compound(Compound { parts, truncated })
        }
        MessageType::User => Message::User(body.to_vec()),
        MessageType::Compress => {
            let mut m = Compress::default();
            fields(&mut r, |k, r| {
                match k {
                    b"Algo" => m.algo = r.uint_as()?,
                    b"Buf" => m.buf = r.bytes()?,
                    _ => r.skip_value()?,
                }
                Ok(())
            })?;
            Message::Compress(m)
        }
        MessageType::Encrypt => {
            let len = body.get(..4).ok_or(CodecError::Truncated)?;
            let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
            let rest = &body[4..];
            let frame = rest.get(..len).ok_or(CodecError::Truncated)?;
            Message::Encrypt(frame.to_vec())
        }
        MessageType::HasCrc => {
            let inner = crate::crc::unwrap(body)?;
            Message::HasCrc(Box::new(decode_depth(inner, depth + 1)?))
        }
    })
}

fn decode_ping(r: &mut Reader<'_>) -> Result<Ping, CodecError> {
    let mut m = Ping::default();
    fields(r, |k, r| {
        match k {
            b"SeqNo" => m.seq_no = r.uint_as()?,
            b"Node" => m.node = r.str()?,
            b"SourceAddr" => m.source_addr = r.bytes()?,
            b"SourcePort" => m.source_port = r.uint_as()?,
            b"SourceNode" => m.source_node = r.str()?,
            _ => r.skip_value()?,
        }
        Ok(())
    })?;
    Ok(m)
}

fn decode_indirect_ping(r: &mut Reader<'_>) -> Result<IndirectPing, CodecError> {
    let mut m = IndirectPing::default();
    fields(r, |k, r| {
        match k {
            b"SeqNo" => m.seq_no = r.uint_as()?,
            b"Target" => m.target = r.bytes()?,
            b"Port" => m.port = r.uint_as()?,
            b"Node" => m.node = r.str()?,
            b"Nack" => m.nack = r.bool()?,
            b"SourceAddr" => m.source_addr = r.bytes()?,
            b"SourcePort" => m.source_port = r.uint_as()?,
            b"SourceNode" => m.source_node = r.str()?,
            _ => r.skip_value()?,
        }
        Ok(())
    })?;
    Ok(m)
}

fn decode_suspect_like(r: &mut Reader<'_>) -> Result<(u32, String, String), CodecError> {
    let (mut inc, mut node, mut from) = (0, String::new(), String::new());
    fields(r, |k, r| {
        match k {
            b"Incarnation" => inc = r.uint_as()?,
            b"Node" => node = r.str()?,
            b"From" => from = r.str()?,
            _ => r.skip_value()?,
        }
        Ok(())
    })?;
    Ok((inc, node, from))
}

fn decode_alive(r: &mut Reader<'_>) -> Result<Alive, CodecError> {
    let mut m = Alive::default();
    fields(r, |k, r| {
        match k {
            b"Incarnation" => m.incarnation = r.uint_as()?,
            b"Node" => m.node = r.str()?,
            b"Addr" => m.addr = r.bytes()?,
            b"Port" => m.port = r.uint_as()?,
            b"Meta" => m.meta = r.bytes()?,
            b"Vsn" => m.vsn = r.bytes()?,
            _ => r.skip_value()?,
        }
        Ok(())
    })?;
    Ok(m)
}

fn decode_push_pull(r: &mut Reader<'_>) -> Result<PushPull, CodecError> {
    let (mut join, mut nodes, mut user_len) = (false, 0usize, 0usize);
    fields(r, |k, r| {
        match k {
            b"Join" => join = r.bool()?,
            b"Nodes" => nodes = r.uint_as()?,
            b"UserStateLen" => user_len = r.uint_as()?,
            _ => r.skip_value()?,
        }
        Ok(())
    })?;
    // Each node state takes at least one byte: bound the allocation by input.
    let mut states = Vec::with_capacity(nodes.min(r.rest().len()));
    for _ in 0..nodes {
        let mut n = PushNodeState::default();
        fields(r, |k, r| {
            match k {
                b"Name" => n.name = r.str()?,
                b"Addr" => n.addr = r.bytes()?,
                b"Port" => n.port = r.uint_as()?,
                b"Meta" => n.meta = r.bytes()?,
                b"Incarnation" => n.incarnation = r.uint_as()?,
                b"State" => n.state = r.uint_as()?,
                b"Vsn" => n.vsn = r.bytes()?,
                _ => r.skip_value()?,
            }
            Ok(())
        })?;
        states.push(n);
    }
    let user_state = r.rest().get(..user_len).ok_or(CodecError::Truncated)?;
    Ok(PushPull {
        join,
        nodes: states,
        user_state: user_state.to_vec(),
    })
}
