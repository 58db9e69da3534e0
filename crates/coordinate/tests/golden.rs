//! A coordinate as Serf 0.9.4 sent it in an ack payload, captured on the
//! wire (shared/vectors/memberlist/serf-0.9.4-plain.json, vector 4).

const ACK_PAYLOAD: &str = "0184aa41646a7573746d656e74cb3ee91aaf75fd46e3a54572726f72cb3ff6edf283fb7113a6486569676874cb3ee4f8b588e368f1a356656398cbbefac479f3bde76ccb3ef965a1db76a4ffcb3f017b9d6a27e4b3cb3ef4c2852f66fdaccbbef72503d25bedfdcbbef81b114d314a5ecb3efb8649430cb374cb3eeff3c6cc9bae6f";

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn serf_ack_coordinate_decodes_and_reencodes_byte_for_byte() {
    let buf = hex(ACK_PAYLOAD);
    assert_eq!(buf[0], 1, "ping-payload version byte");
    let (c, used) = coordinate::wire::decode(&buf[1..]).unwrap();
    assert_eq!(used, buf.len() - 1);
    assert_eq!(c.vec.len(), 8);
    assert!(c.is_valid());
    let mut again = vec![1];
    coordinate::wire::encode(&c, &mut again);
    assert_eq!(again, buf);
}
