//! Queries Serf answers itself (`_serf_*`): ping, name conflicts, and the
//! key-management queries that rotate the gossip keyring cluster-wide.

use std::collections::BTreeMap;
use std::time::Instant;

use base64::Engine as _;

use crate::event::{Event, IncomingQuery, QueryRecord};
use crate::messages::{self, KeyResponse, Message, WireMember};
use crate::serf::Serf;
use crate::state::INTERNAL_QUERY_PREFIX;

/// The shortest base64 key; bounds how many keys fit in a response.
const MIN_ENCODED_KEY_LENGTH: usize = 25;

const NO_KEYRING: &str = "No keyring to modify (encryption not enabled)";

/// The key-management operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyOp {
    Install,
    Use,
    Remove,
    List,
}

impl KeyOp {
    pub fn query_name(self) -> String {
        let op = match self {
            KeyOp::Install => "install-key",
            KeyOp::Use => "use-key",
            KeyOp::Remove => "remove-key",
            KeyOp::List => "list-keys",
        };
        format!("{INTERNAL_QUERY_PREFIX}{op}")
    }

    fn from_query(name: &str) -> Option<KeyOp> {
        Some(match name.strip_prefix(INTERNAL_QUERY_PREFIX)? {
            "install-key" => KeyOp::Install,
            "use-key" => KeyOp::Use,
            "remove-key" => KeyOp::Remove,
            "list-keys" => KeyOp::List,
            _ => return None,
        })
    }
}

/// Answers one internal query addressed to us.
pub(crate) fn answer(serf: &mut Serf, now: Instant, q: &IncomingQuery) {
    let name = q.name.as_str();
    if name == format!("{INTERNAL_QUERY_PREFIX}ping") {
        return;
    }
    if name == format!("{INTERNAL_QUERY_PREFIX}conflict") {
        let node = String::from_utf8_lossy(&q.payload).into_owned();
        if node == serf.name() {
            return;
        }
        let Some(m) = serf.member(&node) else {
            return;
        };
        let wire = WireMember {
            name: m.name.clone(),
            addr: gossip::node::ip_to_wire(m.addr),
            port: m.port,
            tags: m.tags.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            status: m.status.wire(),
            vsn: m.vsn,
        };
        let buf = messages::encode(&Message::ConflictResponse(wire));
        let _ = serf.respond(now, q, &buf);
        return;
    }
    let Some(op) = KeyOp::from_query(name) else {
        return;
    };
    let mut resp = apply_key_op(serf, op, &q.payload);
    if op == KeyOp::List {
        // Trim the list until the response fits, saying so.
        let total = resp.keys.len();
        let max = serf_response_limit(serf) / MIN_ENCODED_KEY_LENGTH;
        let mut keep = total.min(max);
        loop {
            let buf = messages::encode(&Message::KeyResponse(resp.clone()));
            match serf.respond(now, q, &buf) {
                Err(crate::serf::SerfError::ResponseTooLarge(_)) if keep > 0 => {
                    keep -= 1;
                    resp.keys.truncate(keep);
                    resp.message = format!(
                        "truncated key list response, showing first {keep} of {total} keys"
                    );
                }
                _ => return,
            }
        }
    }
    let buf = messages::encode(&Message::KeyResponse(resp));
    let _ = serf.respond(now, q, &buf);
    if op != KeyOp::List {
        let keys = serf
            .memberlist()
            .keyring()
            .map(|r| r.keys().iter().map(|k| b64(k.bytes())).collect())
            .unwrap_or_default();
        serf.state_mut()
            .events
            .push_back(Event::KeyringChanged { keys });
    }
}

fn serf_response_limit(serf: &mut Serf) -> usize {
    serf.state_mut().config.query_response_size_limit
}

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

fn apply_key_op(serf: &mut Serf, op: KeyOp, payload: &[u8]) -> KeyResponse {
    let mut resp = KeyResponse::default();
    let Some(ring) = serf.memberlist_mut().keyring_mut() else {
        resp.message = if op == KeyOp::List {
            "Keyring is empty (encryption not enabled)".into()
        } else {
            NO_KEYRING.into()
        };
        return resp;
    };
    if op == KeyOp::List {
        resp.keys = ring.keys().iter().map(|k| b64(k.bytes())).collect();
        resp.primary_key = b64(ring.primary().bytes());
        resp.result = true;
        return resp;
    }
    let Ok(Message::KeyRequest(req)) = messages::decode(payload) else {
        return resp;
    };
    let key = match gossip::keyring::Key::new(&req.key) {
        Ok(k) => k,
        Err(_) => {
            resp.message = "key size must be 16, 24 or 32 bytes".into();
            return resp;
        }
    };
    let result = match op {
        KeyOp::Install => {
            ring.install(key);
            Ok(())
        }
        KeyOp::Use => ring.use_key(&key),
        KeyOp::Remove => ring.remove(&key),
        KeyOp::List => Ok(()),
    };
    match result {
        Ok(()) => resp.result = true,
        Err(e) => resp.message = e.to_string(),
    }
    resp
}

/// The cluster's answers to a key query, summed up as Serf's key manager
/// reports them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeySummary {
    pub num_nodes: usize,
    pub num_resp: usize,
    pub num_err: usize,
    pub messages: BTreeMap<String, String>,
    pub keys: BTreeMap<String, usize>,
    pub primary_keys: BTreeMap<String, usize>,
}

impl KeySummary {
    /// A summary expecting answers from `num_nodes` nodes.
    pub fn new(num_nodes: usize) -> Self {
        KeySummary {
            num_nodes,
            ..Default::default()
        }
    }

    /// Folds in one query record; true when every node has answered.
    pub fn add(&mut self, record: &QueryRecord) -> bool {
        let QueryRecord::Response { from, payload } = record else {
            return matches!(record, QueryRecord::Done);
        };
        self.num_resp += 1;
        match messages::decode(payload) {
            Ok(Message::KeyResponse(r)) => {
                if !r.result {
                    self.messages.insert(from.clone(), r.message.clone());
                    self.num_err += 1;
                } else if !r.message.is_empty() {
                    self.messages.insert(from.clone(), r.message.clone());
                }
                for k in r.keys {
                    *self.keys.entry(k).or_default() += 1;
                }
                // Only a list answer names a primary key; the others
                // leave it empty and are not counted.
                if !r.primary_key.is_empty() {
                    *self.primary_keys.entry(r.primary_key).or_default() += 1;
                }
            }
            _ => {
                self.messages.insert(
                    from.clone(),
                    format!("Invalid key query response type: {payload:?}"),
                );
                self.num_err += 1;
            }
        }
        self.num_resp >= self.num_nodes
    }

    /// Serf's verdict: an error unless every node answered with success.
    pub fn error(&self) -> Option<String> {
        if self.num_err != 0 {
            return Some(format!(
                "{}/{} nodes reported failure",
                self.num_err, self.num_nodes
            ));
        }
        if self.num_resp != self.num_nodes {
            return Some(format!(
                "{}/{} nodes reported success",
                self.num_resp, self.num_nodes
            ));
        }
        None
    }
}

impl Serf {
    /// Starts a key-management query; fold its records into a
    /// [`KeySummary`] of `self.num_nodes()` nodes.
    pub fn key_query(
        &mut self,
        now: Instant,
        op: KeyOp,
        key_b64: Option<&str>,
        relay_factor: u8,
    ) -> Result<crate::clock::LamportTime, String> {
        let raw = match key_b64 {
            Some(k) => base64::engine::general_purpose::STANDARD
                .decode(k)
                .map_err(|e| e.to_string())?,
            None => Vec::new(),
        };
        let payload = messages::encode(&Message::KeyRequest(messages::KeyRequest { key: raw }));
        let params = crate::serf::QueryParams {
            relay_factor,
            ..Default::default()
        };
        self.query(now, &op.query_name(), &payload, &params)
            .map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(from: &str, resp: KeyResponse) -> QueryRecord {
        QueryRecord::Response {
            from: from.to_owned(),
            payload: messages::encode(&Message::KeyResponse(resp)),
        }
    }

    #[test]
    fn summary_counts_keys_and_only_named_primary_keys() {
        let mut s = KeySummary::new(2);
        let listed = KeyResponse {
            result: true,
            keys: vec!["a".into(), "b".into()],
            primary_key: "a".into(),
            ..Default::default()
        };
        assert!(!s.add(&answer("n1", listed)));
        let installed = KeyResponse {
            result: true,
            ..Default::default()
        };
        assert!(s.add(&answer("n2", installed)));
        assert_eq!(s.keys, [("a".into(), 1), ("b".into(), 1)].into());
        assert_eq!(s.primary_keys, [("a".into(), 1)].into());
        assert_eq!(s.error(), None);
    }

    #[test]
    fn summary_reports_failures_with_each_nodes_message() {
        let mut s = KeySummary::new(3);
        let refused = KeyResponse {
            message: NO_KEYRING.into(),
            ..Default::default()
        };
        s.add(&answer("n1", refused.clone()));
        s.add(&answer("n2", refused));
        assert!(s.add(&QueryRecord::Done));
        assert_eq!(s.messages["n1"], NO_KEYRING);
        assert!(s.primary_keys.is_empty());
        assert_eq!(s.error().as_deref(), Some("2/3 nodes reported failure"));
        let mut quiet = KeySummary::new(2);
        quiet.add(&answer(
            "n1",
            KeyResponse {
                result: true,
                ..Default::default()
            },
        ));
        assert_eq!(quiet.error().as_deref(), Some("1/2 nodes reported success"));
    }
}
