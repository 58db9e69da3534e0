//! A user event as it travels in a serf user event's payload: msgpack of
//! Consul's `agent.UserEvent`, keyed by its codec tags (`ID`, `n`, `p`,
//! `nf`, `sf`, `tf`, `v`). The Lamport time is not in the body; the
//! receiver takes it from serf.
//!
//! Payloads come from the network: decoding never panics, and a body
//! that is not such a map is an error for the caller to log and drop.

use serde::{Deserialize, Serialize};

use crate::events::UserEvent;

/// The serf event name Consul sends user events under, before the
/// event's own name.
pub const SERF_EVENT_PREFIX: &str = "consul:event:";

/// The serf event name for the user event `name`.
pub fn serf_event_name(name: &str) -> String {
    format!("{SERF_EVENT_PREFIX}{name}")
}

/// Why a gossiped body is not a user event.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("Failed to decode event: {0}")]
    Msgpack(#[from] rmp_serde::decode::Error),
    /// Consul always sends an ID; the event list's index is made of it.
    #[error("Failed to decode event: no ID")]
    NoId,
}

/// Why an event could not be encoded (it cannot happen for the plain
/// strings and bytes an event holds, but the encoder says it may).
#[derive(Debug, thiserror::Error)]
#[error("UserEvent encoding failed: {0}")]
pub struct EncodeError(#[from] rmp_serde::encode::Error);

fn is_empty(s: &str) -> bool {
    s.is_empty()
}

/// What is sent; empty filters and payload are left out, as Go's
/// `omitempty` leaves them out.
#[derive(Serialize)]
struct Outgoing<'a> {
    #[serde(rename = "ID")]
    id: &'a str,
    #[serde(rename = "n")]
    name: &'a str,
    #[serde(
        rename = "p",
        with = "serde_bytes",
        skip_serializing_if = "<[u8]>::is_empty"
    )]
    payload: &'a [u8],
    #[serde(rename = "nf", skip_serializing_if = "is_empty")]
    node_filter: &'a str,
    #[serde(rename = "sf", skip_serializing_if = "is_empty")]
    service_filter: &'a str,
    #[serde(rename = "tf", skip_serializing_if = "is_empty")]
    tag_filter: &'a str,
    #[serde(rename = "v")]
    version: u8,
}

/// What is accepted: any field may be missing, unknown ones are ignored,
/// and the payload may be msgpack bin or (as older Go encoders wrote
/// `[]byte`) raw string.
#[derive(Deserialize, Default)]
#[serde(default)]
struct Incoming {
    #[serde(rename = "ID")]
    id: String,
    #[serde(rename = "n")]
    name: String,
    #[serde(rename = "p", with = "serde_bytes")]
    payload: Vec<u8>,
    #[serde(rename = "nf")]
    node_filter: String,
    #[serde(rename = "sf")]
    service_filter: String,
    #[serde(rename = "tf")]
    tag_filter: String,
    #[serde(rename = "v")]
    version: i64,
}

/// The body Consul gossips for `event`.
pub fn encode(event: &UserEvent) -> Result<Vec<u8>, EncodeError> {
    Ok(rmp_serde::to_vec_named(&Outgoing {
        id: &event.id,
        name: &event.name,
        payload: &event.payload,
        node_filter: &event.node_filter,
        service_filter: &event.service_filter,
        tag_filter: &event.tag_filter,
        version: event.version,
    })?)
}

/// Reads a gossiped body; `ltime` is the serf event's Lamport time. A
/// version beyond a byte is clamped: it is only shown, never acted on.
pub fn decode(body: &[u8], ltime: u64) -> Result<UserEvent, DecodeError> {
    let m: Incoming = rmp_serde::from_slice(body)?;
    if m.id.is_empty() {
        return Err(DecodeError::NoId);
    }
    Ok(UserEvent {
        id: m.id,
        name: m.name,
        payload: m.payload,
        node_filter: m.node_filter,
        service_filter: m.service_filter,
        tag_filter: m.tag_filter,
        version: m.version.clamp(0, i64::from(u8::MAX)) as u8,
        ltime,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> UserEvent {
        UserEvent {
            id: "5f1c6a4e-2b1d-4c3e-9a8f-0123456789ab".into(),
            name: "deploy".into(),
            payload: b"\x00\xffv1".to_vec(),
            node_filter: "^web".into(),
            service_filter: "api".into(),
            tag_filter: "prim".into(),
            version: 1,
            ltime: 0,
        }
    }

    /// Appends a msgpack fixstr (under 32 bytes).
    fn fixstr(out: &mut Vec<u8>, s: &str) {
        out.push(0xa0 | s.len() as u8);
        out.extend_from_slice(s.as_bytes());
    }

    #[test]
    fn an_event_survives_the_round_trip_and_takes_serfs_time() {
        let sent = event();
        let got = decode(&encode(&sent).unwrap(), 42).unwrap();
        assert_eq!(got, UserEvent { ltime: 42, ..sent });
    }

    #[test]
    fn empty_fields_are_left_out_as_go_omits_them() {
        let bare = UserEvent {
            payload: Vec::new(),
            node_filter: String::new(),
            service_filter: String::new(),
            tag_filter: String::new(),
            ..event()
        };
        let body = encode(&bare).unwrap();
        let map: std::collections::BTreeMap<String, serde::de::IgnoredAny> =
            rmp_serde::from_slice(&body).unwrap();
        let keys: Vec<&str> = map.keys().map(String::as_str).collect();
        assert_eq!(keys, ["ID", "n", "v"]);
        assert_eq!(decode(&body, 1).unwrap().payload, b"");
    }

    #[test]
    fn a_payload_written_as_a_raw_string_is_read() {
        // Old Go msgpack handles write []byte as a raw string.
        let mut body = vec![0x83];
        for (k, v) in [("ID", "x"), ("n", "deploy"), ("p", "hi")] {
            fixstr(&mut body, k);
            fixstr(&mut body, v);
        }
        let got = decode(&body, 3).unwrap();
        assert_eq!(
            (got.name.as_str(), got.payload.as_slice()),
            ("deploy", &b"hi"[..])
        );
        assert_eq!(got.version, 0);
    }

    #[test]
    fn hostile_bodies_are_errors_not_panics() {
        let full = encode(&event()).unwrap();
        let mut bodies: Vec<Vec<u8>> = vec![
            Vec::new(),
            vec![0xc1],
            vec![0x90],
            vec![0xdf, 0xff, 0xff, 0xff, 0xff],
            // "n" is a map, not a string.
            vec![0x81, 0xa1, b'n', 0x80],
            // Well formed, but without the ID Consul always sends.
            vec![0x81, 0xa1, b'n', 0xa1, b'x'],
        ];
        bodies.extend((0..full.len()).map(|n| full[..n].to_vec()));
        for body in bodies {
            assert!(decode(&body, 0).is_err(), "{body:?} decoded");
        }
        let mut huge_version = vec![0x82];
        fixstr(&mut huge_version, "ID");
        fixstr(&mut huge_version, "x");
        fixstr(&mut huge_version, "v");
        huge_version.push(0xd3); // int64
        huge_version.extend_from_slice(&i64::MAX.to_be_bytes());
        assert_eq!(decode(&huge_version, 0).unwrap().version, u8::MAX);
    }
}
