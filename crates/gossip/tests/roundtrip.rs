//! Every message type survives encode -> decode; decode never panics.

use gossip::compress::{compress, decompress};
use gossip::message::*;
use gossip::{decode, encode, CodecError};
use proptest::prelude::*;

fn samples() -> Vec<Message> {
    vec![
        Message::Ping(Ping {
            seq_no: 7,
            node: "n1".into(),
            ..Ping::default()
        }),
        Message::Ping(Ping {
            seq_no: u32::MAX,
            node: "n1".into(),
            source_addr: vec![10, 0, 0, 1],
            source_port: 7946,
            source_node: "n2".into(),
        }),
        Message::IndirectPing(IndirectPing {
            seq_no: 9,
            target: vec![10, 0, 0, 2],
            port: 7946,
            node: "t".into(),
            nack: true,
            source_addr: vec![10, 0, 0, 3],
            source_port: 1,
            source_node: "s".into(),
        }),
        Message::IndirectPing(IndirectPing::default()),
        Message::Ack(Ack {
            seq_no: 1,
            payload: vec![1; 300],
        }),
        Message::Ack(Ack::default()),
        Message::Nack(Nack { seq_no: 70_000 }),
        Message::Err(ErrResp {
            error: "bad".into(),
        }),
        Message::Suspect(Suspect {
            incarnation: 3,
            node: "a".into(),
            from: "b".into(),
        }),
        Message::Dead(Dead {
            incarnation: 4,
            node: "a".into(),
            from: "a".into(),
        }),
        Message::Alive(Alive {
            incarnation: 5,
            node: "x".repeat(40),
            addr: vec![0; 16],
            port: 65535,
            meta: vec![0xff, 0x80],
            vsn: vec![1, 5, 2, 2, 5, 5],
        }),
        Message::PushPull(PushPull {
            join: false,
            nodes: (0..20)
                .map(|i| PushNodeState {
                    name: format!("node-{i}"),
                    addr: vec![127, 0, 0, i],
                    port: 7946,
                    meta: vec![],
                    incarnation: u32::from(i),
                    state: i % 4,
                    vsn: vec![1, 5, 2, 2, 5, 5],
                })
                .collect(),
            user_state: vec![2, 3, 4],
        }),
        Message::User(b"\x03event".to_vec()),
        Message::Compress(Compress {
            algo: 0,
            buf: vec![1, 2, 3],
        }),
        Message::Encrypt(vec![1; 45]),
    ]
}

#[test]
fn every_type_round_trips() {
    for m in samples() {
        let b = encode(&m).unwrap();
        assert_eq!(b[0], m.message_type() as u8);
        assert_eq!(decode(&b).unwrap(), m, "{b:02x?}");
    }
}

#[test]
fn wrappers_round_trip() {
    let parts = samples();
    let compound = Message::Compound(Compound {
        parts: parts.clone(),
        truncated: 0,
    });
    let crc = Message::HasCrc(Box::new(compound.clone()));
    let b = encode(&crc).unwrap();
    assert_eq!(decode(&b).unwrap(), crc);
    let c = compress(&b).unwrap();
    let cb = encode(&Message::Compress(c.clone())).unwrap();
    let Message::Compress(back) = decode(&cb).unwrap() else {
        panic!()
    };
    assert_eq!(decode(&decompress(&back, 1 << 20).unwrap()).unwrap(), crc);
}

#[test]
fn unknown_keys_are_skipped_and_str8_accepted() {
    // {"X": [1, {"y": 2.5}], "SeqNo": 5, "Node": str8 "ab"}
    let mut b = vec![0u8, 0x83, 0xa1, b'X', 0x92, 0x01, 0x81, 0xa1, b'y', 0xcb];
    b.extend_from_slice(&2.5f64.to_be_bytes());
    b.extend_from_slice(&[0xa5, b'S', b'e', b'q', b'N', b'o', 0x05]);
    b.extend_from_slice(&[0xa4, b'N', b'o', b'd', b'e', 0xd9, 2, b'a', b'b']);
    assert_eq!(
        decode(&b).unwrap(),
        Message::Ping(Ping {
            seq_no: 5,
            node: "ab".into(),
            ..Ping::default()
        })
    );
}

#[test]
fn typed_errors() {
    assert_eq!(decode(&[]), Err(CodecError::Empty));
    assert_eq!(decode(&[99]), Err(CodecError::UnknownType(99)));
    assert_eq!(decode(&[0]), Err(CodecError::Truncated));
    // SeqNo does not fit u32.
    let b = [
        2u8, 0x81, 0xa5, b'S', b'e', b'q', b'N', b'o', 0xcf, 1, 0, 0, 0, 0, 0, 0, 0,
    ];
    assert_eq!(decode(&b), Err(CodecError::IntOutOfRange));
    assert!(matches!(
        decode(&[12, 0, 0, 0, 0, 8]),
        Err(CodecError::CrcMismatch { .. })
    ));
    // Nested hasCrc beyond the limit.
    let mut m = Message::User(vec![]);
    for _ in 0..12 {
        m = Message::HasCrc(Box::new(m));
    }
    assert_eq!(decode(&encode(&m).unwrap()), Err(CodecError::TooDeep));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(5000))]

    #[test]
    fn decode_random_bytes_never_panics(b in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode(&b);
    }

    #[test]
    fn decode_after_valid_type_byte_never_panics(
        t in 0u8..14,
        b in proptest::collection::vec(any::<u8>(), 0..256),
    ) {
        let mut buf = vec![t];
        buf.extend_from_slice(&b);
        if let Ok(m) = decode(&buf) {
            // Whatever decodes re-encodes without panicking.
            let _ = encode(&m);
        }
    }

    #[test]
    fn lzw_random_never_panics(b in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = decompress(&Compress { algo: 0, buf: b }, 1 << 16);
    }
}
