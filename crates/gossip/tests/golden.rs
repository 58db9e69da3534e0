//! Golden packets captured from Serf 0.9.4 (memberlist 0.2.2), copied from
//! shared/vectors/memberlist/serf-0.9.4-plain.json.

use gossip::compress::{decompress, lzw_compress};
use gossip::message::{Alive, Compound, Message};
use gossip::{decode, encode};

const LIMIT: usize = 20 * 1024 * 1024;

fn vectors() -> Vec<(String, Vec<u8>)> {
    let v: serde_json::Value =
        serde_json::from_str(include_str!("data/serf-0.9.4-plain.json")).unwrap();
    v["vectors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let kind = p["kind"].as_str().unwrap().to_string();
            (kind, hex(p["hex"].as_str().unwrap()))
        })
        .collect()
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn packet(i: usize) -> Vec<u8> {
    vectors()[i].1.clone()
}

/// Decodes, and checks that encoding gives the captured bytes back.
fn decode_canonical(buf: &[u8]) -> Message {
    let m = decode(buf).unwrap();
    assert_eq!(encode(&m).unwrap(), buf, "re-encode of {m:?}");
    m
}

#[test]
fn every_vector_decodes() {
    let v = vectors();
    assert_eq!(v.len(), 9);
    for (kind, buf) in v {
        decode(&buf).unwrap_or_else(|e| panic!("{kind}: {e}"));
    }
}

#[test]
fn crc_compound_of_two_alives() {
    let Message::HasCrc(inner) = decode_canonical(&packet(0)) else {
        panic!("not hasCrc")
    };
    let Message::Compound(Compound { parts, truncated }) = *inner else {
        panic!("not compound")
    };
    assert_eq!(truncated, 0);
    assert_eq!(parts.len(), 2);
    let mut meta_a = vec![0xff, 0x82, 0xa2, b'd', b'c', 0xa1, b'x'];
    meta_a.extend_from_slice(b"\xa4role\xa3web");
    assert_eq!(
        parts[0],
        Message::Alive(Alive {
            incarnation: 1,
            node: "a".into(),
            addr: vec![127, 0, 0, 1],
            port: 7946,
            meta: meta_a,
            vsn: vec![1, 5, 2, 2, 5, 5],
        })
    );
    assert_eq!(
        parts[1],
        Message::Alive(Alive {
            incarnation: 1,
            node: "b".into(),
            addr: vec![127, 0, 0, 1],
            port: 7947,
            meta: vec![0xff, 0x80],
            vsn: vec![1, 5, 2, 2, 5, 5],
        })
    );
}

#[test]
fn crc_user_message() {
    let Message::HasCrc(inner) = decode_canonical(&packet(1)) else {
        panic!()
    };
    // Serf join intent: [1] + {LTime: 1, Node: "b"}.
    assert_eq!(
        *inner,
        Message::User(hex("0182a54c54696d6501a44e6f6465a162"))
    );
}

#[test]
fn ping_with_source() {
    let Message::Ping(p) = decode_canonical(&packet(2)) else {
        panic!()
    };
    assert_eq!(p.seq_no, 1);
    assert_eq!(p.node, "a");
    assert_eq!(p.source_addr, vec![127, 0, 0, 1]);
    assert_eq!(p.source_port, 7947);
    assert_eq!(p.source_node, "b");
}

#[test]
fn compressed_packet() {
    let Message::Compress(c) = decode_canonical(&packet(3)) else {
        panic!()
    };
    assert_eq!(c.algo, 0);
    let inner = decompress(&c, LIMIT).unwrap();
    let m = decode_canonical(&inner);
    assert!(
        matches!(
            m,
            Message::Ack(_) | Message::Compound(_) | Message::HasCrc(_)
        ),
        "{m:?}"
    );
    // weezl writes the same LZW bit stream as Go's compress/lzw.
    assert_eq!(lzw_compress(&inner).unwrap(), c.buf);
}

#[test]
fn ack_with_coordinate_payload() {
    let Message::Ack(a) = decode_canonical(&packet(4)) else {
        panic!()
    };
    assert_eq!(a.seq_no, 1);
    assert_eq!(a.payload.len(), 130);
    // Serf: [1] + msgpack Coordinate {Adjustment, Error, Height, Vec}.
    assert_eq!(&a.payload[..2], &[0x01, 0x84]);
}

#[test]
fn compound_ack_and_user_event() {
    let Message::Compound(c) = decode_canonical(&packet(5)) else {
        panic!()
    };
    assert_eq!(c.parts.len(), 2);
    let Message::Ack(a) = &c.parts[0] else {
        panic!()
    };
    assert_eq!(a.seq_no, 3);
    let Message::User(u) = &c.parts[1] else {
        panic!()
    };
    assert_eq!(u[0], 3, "serf userEvent");
}

#[test]
fn user_query_response() {
    let Message::User(u) = decode_canonical(&packet(6)) else {
        panic!()
    };
    assert_eq!(u[0], 5, "serf queryResponse");
}

#[test]
fn compressed_push_pull_streams() {
    for i in [7, 8] {
        let Message::Compress(c) = decode_canonical(&packet(i)) else {
            panic!()
        };
        let inner = decompress(&c, LIMIT).unwrap();
        assert_eq!(lzw_compress(&inner).unwrap(), c.buf);
        let Message::PushPull(pp) = decode_canonical(&inner) else {
            panic!("{inner:02x?}")
        };
        assert!(pp.join);
        assert!(!pp.nodes.is_empty());
        for n in &pp.nodes {
            assert_eq!(n.addr, vec![127, 0, 0, 1]);
            assert_eq!(n.vsn, vec![1, 5, 2, 2, 5, 5]);
            assert_eq!(n.state, gossip::message::node_state::ALIVE);
        }
        assert!(!pp.user_state.is_empty());
        eprintln!("{i}: {pp:?}");
    }
}

// From shared/vectors/memberlist/serf-0.9.4-encrypted.pcap (key in .key,
// base64 BiJyF2JeWd1fOCfR1AylVPkk/egIGh8RKlflx54wqao=).
const ENC_KEY: &str = "06227217625e59dd5f3827d1d40ca554f924fde8081a1f112a57e5c79e30a9aa";
const ENC_UDP: &str = "01de05b0b3f1c6ee2e5a3a717aecf78487e7ace8be9c21dc88f63c954b9d521049c8da0b952bb00eb57e4dd0152ed6141b53a78ad6dcb21fa4bf6eaad467d31b4558dc183d1e2831a9802288fd9564d64d330d4e2455ef4c5c7c24b40624bcb2c1fc8282901bfcf948808b9e1272362f5729770d4280903c39203866a554dc50db6a0df42a1b7cbde85f36786d712c1ab704988021a2889f0fcedab468d2be4d51aedc8919c9b37e11a8bb19e192fe1ec0b98e3a80c2db4a50fb366615b8b09b92";
const ENC_TCP: &str = "0a000000f101fda92fbdf053ac6fb0f4abe47d114a44f9d45dbbc4c8f751bfc3965852de203c2e7c1d584860b4a3a5bd1a5e98fd795527fb635c0e102fad197870632a8d1579c6b45833237da23297896c64cf222b1804f3bff7ea46ce536ba224af275005e2e4eaba6224bc4164339d9b3945a851b8e7f68d7c168645c0e38554e28f3b177c7f492c1493cc1037d56424d2e247da1e78267a570a42830a53dd2be96ad6fbca9d7f3a035ee09953d0b72d3277abbf04deb7c70ead4e128ed167c10cd8dedc486469182ff226fb5296674689693fdcd8dc977f960baa3de0c8d5be4bbc7777fab568e233e94e822f41bfc651fa410634";

fn enc_ring() -> gossip::keyring::Keyring {
    use gossip::keyring::{Key, Keyring};
    let other = Key::new(&[9; 16]).unwrap();
    Keyring::new(other, vec![Key::new(&hex(ENC_KEY)).unwrap()])
}

#[test]
fn encrypted_udp_packet_opens_and_decodes() {
    let plain = enc_ring().open_packet(&hex(ENC_UDP)).unwrap();
    // Serf 0.9.4 with encryption: hasCrc(compress(...)) inside the GCM box.
    let Message::HasCrc(inner) = decode(&plain).unwrap() else {
        panic!("not hasCrc")
    };
    let Message::Compress(c) = *inner else {
        panic!("not compress")
    };
    decode(&decompress(&c, LIMIT).unwrap()).unwrap();
    // Re-sealing with the captured nonce gives the captured bytes.
    let key = gossip::keyring::Key::new(&hex(ENC_KEY)).unwrap();
    let ring = gossip::keyring::Keyring::new(key, vec![]);
    let ct = hex(ENC_UDP);
    let mut nonce = [0u8; 12];
    nonce.copy_from_slice(&ct[1..13]);
    assert_eq!(ring.seal_packet(nonce, &plain).unwrap(), ct);
}

#[test]
fn encrypted_stream_opens_and_decodes() {
    let plain = enc_ring().open_stream(&hex(ENC_TCP)).unwrap();
    let m = decode(&plain).unwrap();
    let inner = match m {
        Message::Compress(c) => decompress(&c, LIMIT).unwrap(),
        _ => plain,
    };
    assert!(matches!(decode(&inner).unwrap(), Message::PushPull(_)));
}
