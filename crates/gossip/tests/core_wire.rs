//! The SWIM core against real Serf 0.9.4 bytes, and against garbage.

use std::net::SocketAddr;
use std::time::Instant;

use gossip::message::Message;
use gossip::swim::frame_len;
use gossip::{Config, Memberlist, Recorder, State};
use proptest::prelude::*;

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn vector(i: usize) -> Vec<u8> {
    let v: serde_json::Value =
        serde_json::from_str(include_str!("data/serf-0.9.4-plain.json")).unwrap();
    hex(v["vectors"][i]["hex"].as_str().unwrap())
}

const ENC_KEY: &str = "06227217625e59dd5f3827d1d40ca554f924fde8081a1f112a57e5c79e30a9aa";
const ENC_TCP: &str = "0a000000f101fda92fbdf053ac6fb0f4abe47d114a44f9d45dbbc4c8f751bfc3965852de203c2e7c1d584860b4a3a5bd1a5e98fd795527fb635c0e102fad197870632a8d1579c6b45833237da23297896c64cf222b1804f3bff7ea46ce536ba224af275005e2e4eaba6224bc4164339d9b3945a851b8e7f68d7c168645c0e38554e28f3b177c7f492c1493cc1037d56424d2e247da1e78267a570a42830a53dd2be96ad6fbca9d7f3a035ee09953d0b72d3277abbf04deb7c70ead4e128ed167c10cd8dedc486469182ff226fb5296674689693fdcd8dc977f960baa3de0c8d5be4bbc7777fab568e233e94e822f41bfc651fa410634";

fn serf_like(name: &str) -> Config {
    let addr: SocketAddr = "127.0.0.1:7999".parse().unwrap();
    let mut c = Config::lan(name, addr);
    c.delegate_versions = [2, 5, 5];
    c
}

/// Every proper prefix of a frame asks for more; the whole frame is one.
fn assert_frame(buf: &[u8]) {
    assert_eq!(frame_len(buf).unwrap(), Some(buf.len()));
    for cut in 0..buf.len() {
        assert_eq!(
            frame_len(&buf[..cut]).unwrap(),
            None,
            "prefix of {cut} bytes"
        );
    }
    let mut longer = buf.to_vec();
    longer.extend_from_slice(&[0xc0; 7]);
    assert_eq!(frame_len(&longer).unwrap(), Some(buf.len()));
}

#[test]
fn frames_of_real_serf_streams() {
    for i in [7, 8] {
        let stream = vector(i);
        assert_frame(&stream);
        let Message::Compress(c) = gossip::decode(&stream).unwrap() else {
            panic!("vector {i} is a compressed stream")
        };
        let plain = gossip::compress::decompress(&c, 1 << 20).unwrap();
        assert_frame(&plain);
    }
    assert_frame(&hex(ENC_TCP));
    assert_frame(&gossip::swim::stream::user_frame(b"hello"));
}

#[test]
fn a_real_serf_join_is_merged_and_answered() {
    let now = Instant::now();
    let mut d = Recorder::default();
    let mut m = Memberlist::new(serf_like("praetor"), now, 1, &mut d).unwrap();
    let from: SocketAddr = "127.0.0.1:7947".parse().unwrap();
    let reply = m
        .handle_stream(now, from, &vector(7), &mut d)
        .expect("a reply");
    assert!(m
        .members()
        .any(|n| n.name != "praetor" && n.state == State::Alive));
    // The reply is our own push-pull, compressed, as serf expects.
    let Message::Compress(c) = gossip::decode(&reply).unwrap() else {
        panic!("reply is compressed")
    };
    let plain = gossip::compress::decompress(&c, 1 << 20).unwrap();
    let Message::PushPull(pp) = gossip::decode(&plain).unwrap() else {
        panic!("reply is a push-pull")
    };
    assert!(pp.join);
    assert!(pp.nodes.iter().any(|n| n.name == "praetor"));
    assert_eq!(m.metrics().malformed, 0);
}

#[test]
fn an_encrypted_serf_stream_is_merged_with_the_key() {
    use gossip::keyring::{Key, Keyring};
    let now = Instant::now();
    let mut d = Recorder::default();
    let mut c = serf_like("praetor");
    c.keyring = Some(Keyring::new(Key::new(&hex(ENC_KEY)).unwrap(), vec![]));
    let mut m = Memberlist::new(c, now, 1, &mut d).unwrap();
    let from: SocketAddr = "127.0.0.1:7947".parse().unwrap();
    let reply = m
        .handle_stream(now, from, &hex(ENC_TCP), &mut d)
        .expect("a reply");
    assert_eq!(reply[0], 10, "the reply is encrypted too");
    assert!(m.num_alive() > 1);

    // Without the key: an error reply, nothing merged.
    let mut d2 = Recorder::default();
    let mut plain = Memberlist::new(serf_like("p2"), now, 2, &mut d2).unwrap();
    let reply = plain
        .handle_stream(now, from, &hex(ENC_TCP), &mut d2)
        .unwrap();
    let Message::Compress(c) = gossip::decode(&reply).unwrap() else {
        panic!()
    };
    let err = gossip::decode(&gossip::compress::decompress(&c, 1 << 20).unwrap()).unwrap();
    assert!(matches!(err, Message::Err(e) if e.error.contains("not configured")));
    assert_eq!(plain.num_alive(), 1);
}

#[test]
fn real_serf_packets_are_accepted() {
    let now = Instant::now();
    let mut d = Recorder::default();
    let mut m = Memberlist::new(serf_like("praetor"), now, 1, &mut d).unwrap();
    let from: SocketAddr = "127.0.0.1:7947".parse().unwrap();
    // Vectors 0-6 are UDP packets (alives, ping, ack, compress, user, ...).
    for i in 0..7 {
        m.handle_packet(now, from, &vector(i), &mut d);
    }
    assert_eq!(m.metrics().malformed, 0);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn random_packets_never_panic_or_change_members(b in proptest::collection::vec(any::<u8>(), 0..600)) {
        let now = Instant::now();
        let mut d = Recorder::default();
        let mut m = Memberlist::new(serf_like("x"), now, 3, &mut d).unwrap();
        let from: SocketAddr = "127.0.0.1:1".parse().unwrap();
        m.handle_packet(now, from, &b, &mut d);
        let _ = m.handle_stream(now, from, &b, &mut d);
        let _ = frame_len(&b);
        // Random bytes essentially never form a valid alive with a 4- or
        // 16-byte address; if they did, membership may grow but never shrink.
        prop_assert!(m.member("x").is_some_and(|n| n.state == State::Alive));
    }

    #[test]
    fn mutated_real_streams_never_panic(i in 7usize..9, pos in 0usize..400, byte in any::<u8>()) {
        let mut s = vector(i);
        let p = pos % s.len();
        s[p] = byte;
        let _ = frame_len(&s);
        let now = Instant::now();
        let mut d = Recorder::default();
        let mut m = Memberlist::new(serf_like("y"), now, 4, &mut d).unwrap();
        let _ = m.handle_stream(now, "127.0.0.1:2".parse().unwrap(), &s, &mut d);
    }
}
