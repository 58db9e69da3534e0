//! User events (`/v1/event/fire`, `/v1/event/list`): validated, delivered
//! to this agent if its filters match, and kept in a ring of the latest
//! ones. Gossip carries them to other agents once the serf layer lands;
//! until then delivery is local.

use std::collections::VecDeque;
use std::sync::{Mutex, PoisonError};

use regex::Regex;
use serde::Serialize;

use crate::agent::{random_uuid, Agent};

/// How many events an agent remembers (Consul keeps the last 256).
pub const EVENT_BUFFER_SIZE: usize = 256;
/// Serf's limit on a user event, name and encoded body together.
pub const USER_EVENT_SIZE_LIMIT: usize = 512;
/// The serf event name Consul sends user events under.
const SERF_EVENT_PREFIX: &str = "consul:event:";

/// A user event as Consul shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct UserEvent {
    pub id: String,
    pub name: String,
    pub payload: Vec<u8>,
    pub node_filter: String,
    pub service_filter: String,
    pub tag_filter: String,
    pub version: u8,
    pub ltime: u64,
}

/// The body serf would carry, measured for the size limit.
#[derive(Serialize)]
struct Encoded<'a> {
    #[serde(rename = "ID")]
    id: &'a str,
    #[serde(rename = "Name")]
    name: &'a str,
    #[serde(rename = "Payload", with = "serde_bytes")]
    payload: &'a [u8],
    #[serde(rename = "NodeFilter")]
    node_filter: &'a str,
    #[serde(rename = "ServiceFilter")]
    service_filter: &'a str,
    #[serde(rename = "TagFilter")]
    tag_filter: &'a str,
    #[serde(rename = "Version")]
    version: u8,
}

/// A refused event; the text is Consul's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct EventError(pub String);

/// What a fire request asks for.
#[derive(Debug, Clone, Default)]
pub struct FireRequest {
    pub name: String,
    pub payload: Vec<u8>,
    pub node_filter: String,
    pub service_filter: String,
    pub tag_filter: String,
}

fn compile(kind: &str, pattern: &str) -> Result<Option<Regex>, EventError> {
    if pattern.is_empty() {
        return Ok(None);
    }
    Regex::new(pattern)
        .map(Some)
        .map_err(|e| EventError(format!("Invalid {kind} filter: {e}")))
}

/// The remembered events and a counter that moves when one arrives.
pub struct EventBuffer {
    events: Mutex<VecDeque<UserEvent>>,
    arrived: tokio::sync::watch::Sender<u64>,
}

impl Default for EventBuffer {
    fn default() -> Self {
        EventBuffer {
            events: Mutex::new(VecDeque::with_capacity(EVENT_BUFFER_SIZE)),
            arrived: tokio::sync::watch::Sender::new(0),
        }
    }
}

impl EventBuffer {
    fn push(&self, event: UserEvent) {
        let mut events = self.events.lock().unwrap_or_else(PoisonError::into_inner);
        if events.len() == EVENT_BUFFER_SIZE {
            events.pop_front();
        }
        events.push_back(event);
        drop(events);
        self.arrived.send_modify(|n| *n += 1);
    }

    /// The remembered events, oldest first, optionally only those named
    /// `name`.
    pub fn list(&self, name: Option<&str>) -> Vec<UserEvent> {
        self.events
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter(|e| name.is_none_or(|n| e.name == n))
            .cloned()
            .collect()
    }

    /// Something to await for the next arrival.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.arrived.subscribe()
    }
}

/// Consul's index for an event list: the two halves of the last event's
/// UUID, XORed (so it changes whenever a new event arrives).
pub fn event_index(events: &[UserEvent]) -> u64 {
    let Some(last) = events.last() else {
        return 1;
    };
    let hex: String = last.id.chars().filter(|c| *c != '-').collect();
    if hex.len() != 32 {
        return 1;
    }
    let lower = u64::from_str_radix(&hex[..16], 16).unwrap_or(0);
    let upper = u64::from_str_radix(&hex[16..], 16).unwrap_or(0);
    lower ^ upper
}

impl Agent {
    /// Fires a user event; returns it as sent.
    pub fn fire_event(&self, request: FireRequest) -> Result<UserEvent, EventError> {
        if request.name.is_empty() {
            return Err(EventError("User event missing name".into()));
        }
        if !request.tag_filter.is_empty() && request.service_filter.is_empty() {
            return Err(EventError(
                "Cannot provide tag filter without service filter".into(),
            ));
        }
        compile("node", &request.node_filter)?;
        compile("service", &request.service_filter)?;
        compile("tag", &request.tag_filter)?;
        let event = UserEvent {
            id: random_uuid(),
            name: request.name,
            payload: request.payload,
            node_filter: request.node_filter,
            service_filter: request.service_filter,
            tag_filter: request.tag_filter,
            version: 1,
            ltime: 0,
        };
        let encoded = rmp_serde::to_vec_named(&Encoded {
            id: &event.id,
            name: &event.name,
            payload: &event.payload,
            node_filter: &event.node_filter,
            service_filter: &event.service_filter,
            tag_filter: &event.tag_filter,
            version: event.version,
        })
        .map_err(|e| EventError(e.to_string()))?;
        if SERF_EVENT_PREFIX.len() + event.name.len() + encoded.len() > USER_EVENT_SIZE_LIMIT {
            return Err(EventError(format!(
                "user event exceeds configured limit of {USER_EVENT_SIZE_LIMIT} bytes before encoding"
            )));
        }
        self.deliver_event(event.clone());
        Ok(event)
    }

    /// Keeps an event if this agent is among those its filters name.
    pub fn deliver_event(&self, event: UserEvent) {
        if self.event_targets_me(&event) {
            self.events().push(event);
        }
    }

    fn event_targets_me(&self, event: &UserEvent) -> bool {
        let matches = |pattern: &str, text: &str| match compile("", pattern) {
            Ok(None) => true,
            Ok(Some(re)) => re.is_match(text),
            Err(_) => false,
        };
        if !matches(&event.node_filter, &self.config().node_name) {
            return false;
        }
        if event.service_filter.is_empty() {
            return true;
        }
        let local = self.local_state();
        local.services().values().any(|s| {
            matches(&event.service_filter, &s.instance.service)
                && (event.tag_filter.is_empty()
                    || s.instance
                        .tags
                        .iter()
                        .any(|t| matches(&event.tag_filter, t)))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: &str) -> UserEvent {
        UserEvent {
            id: id.into(),
            name: "deploy".into(),
            payload: Vec::new(),
            node_filter: String::new(),
            service_filter: String::new(),
            tag_filter: String::new(),
            version: 1,
            ltime: 0,
        }
    }

    #[test]
    fn index_is_the_xor_of_the_uuid_halves() {
        assert_eq!(event_index(&[]), 1);
        let e = event("00000000-0000-0001-0000-000000000003");
        assert_eq!(event_index(&[e]), 1 ^ 3);
    }

    #[test]
    fn the_buffer_keeps_the_latest() {
        let buffer = EventBuffer::default();
        for i in 0..EVENT_BUFFER_SIZE + 3 {
            buffer.push(event(&format!("{i}")));
        }
        let all = buffer.list(None);
        assert_eq!(all.len(), EVENT_BUFFER_SIZE);
        assert_eq!(all[0].id, "3");
        assert!(buffer.list(Some("other")).is_empty());
    }
}
