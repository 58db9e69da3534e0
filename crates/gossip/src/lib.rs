//! memberlist's protocol: SWIM with Lifeguard on memberlist's wire.
//!
//! The wire codec is byte-compatible with hashicorp/memberlist 0.2.x as
//! spoken by Serf 0.9.4: Go-shaped msgpack ([`msgpack`]), message types
//! ([`message`]), compound framing ([`compound`]), CRC wrapping ([`crc`]),
//! LZW compression ([`compress`]) and AES-GCM encryption ([`keyring`]).
//!
//! The protocol core [`Memberlist`] (in [`swim`]) is sans-IO: it never
//! touches a socket, a clock or the system's entropy, so one process can
//! run thousands of nodes on virtual time. Its parts have their own
//! modules: [`awareness`], [`suspicion`], [`broadcast`]. [`sim`] runs
//! thousands of cores in one process on virtual time, over a network with
//! latency, loss, partitions, crashes and starved nodes, replayable from a
//! seed.
//!
//! The tokio shell [`shell`] puts the core on real sockets and timers: one
//! task owns it, [`shell::GossipHandle`] talks to that task.

pub mod awareness;
pub mod broadcast;
pub mod compound;
pub mod compress;
pub mod config;
pub mod crc;
pub mod delegate;
pub mod keyring;
pub mod message;
pub mod msgpack;
pub mod node;
pub mod shell;
pub mod sim;
pub mod suspicion;
pub mod swim;

pub use config::{Config, ConfigError, Lifeguard};
pub use delegate::{Delegate, MemberEvent, NoDelegate, Recorder};
pub use node::{Node, State};
pub use shell::{spawn, GossipHandle, JoinOutcome, ShellError, Stats};
pub use swim::{Event, Memberlist, Metrics, StreamError, StreamId, Transmit};

pub use message::{decode, encode, Message, MessageType};

/// Why bytes could not be decoded (or a message could not be framed).
/// Decoding never changes any state; the caller drops the packet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("empty message")]
    Empty,
    #[error("unknown message type {0}")]
    UnknownType(u8),
    #[error("message is truncated")]
    Truncated,
    #[error("expected {expected}, found msgpack marker {found:#04x}")]
    UnexpectedType { expected: &'static str, found: u8 },
    #[error("integer out of range for its field")]
    IntOutOfRange,
    #[error("string is not UTF-8")]
    InvalidUtf8,
    #[error("nesting too deep")]
    TooDeep,
    #[error("crc mismatch: header says {want:#010x}, message hashes to {got:#010x}")]
    CrcMismatch { want: u32, got: u32 },
    #[error("compound message with {0} parts (at most 127 may be sent)")]
    TooManyParts(usize),
    #[error("message too large")]
    TooLarge,
    #[error("unknown compression algorithm {0}")]
    UnknownCompression(u8),
    #[error("lzw: {0}")]
    Lzw(String),
    #[error("key must be 16, 24 or 32 bytes, got {0}")]
    BadKeyLength(usize),
    #[error("unsupported encryption version {0}")]
    UnsupportedEncryptionVersion(u8),
    #[error("no installed key could decrypt the message")]
    NoKeyDecrypts,
    #[error("bad PKCS#7 padding")]
    BadPadding,
}
