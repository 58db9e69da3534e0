//! User events (`/v1/event/fire`, `/v1/event/list`): validated, gossiped
//! to every agent of the LAN pool as a serf user event, and kept by each
//! agent whose filters match in a ring of the latest ones. An agent
//! without a pool (unit tests) delivers to itself only.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};

use regex::Regex;
use serde::Serialize;
use tokio::sync::broadcast;

use crate::agent::{random_uuid, Agent};
use crate::event_wire::{self, serf_event_name, SERF_EVENT_PREFIX};

/// How many events an agent remembers (Consul keeps the last 256).
pub const EVENT_BUFFER_SIZE: usize = 256;
/// Serf's limit on a user event, name and encoded body together.
pub const USER_EVENT_SIZE_LIMIT: usize = 512;
/// The newest event version understood; later ones are kept, with a warning.
const USER_EVENT_MAX_VERSION: u8 = 1;
/// Consul's remote exec rides on user events of this name; Praetor, like
/// Consul by default, does not run them, and they are not listed.
const REMOTE_EXEC_NAME: &str = "_rexec";

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
    /// Keeps `event` unless one with its ID is already kept: the firing
    /// agent stores its event at once and then hears it again from serf.
    fn push(&self, event: UserEvent) {
        let mut events = self.events.lock().unwrap_or_else(PoisonError::into_inner);
        if events.iter().any(|e| e.id == event.id) {
            return;
        }
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
    /// Fires a user event; returns it as sent (its Lamport time left 0,
    /// as Consul answers).
    pub async fn fire_event(&self, request: FireRequest) -> Result<UserEvent, EventError> {
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
            version: USER_EVENT_MAX_VERSION,
            ltime: 0,
        };
        let body = event_wire::encode(&event).map_err(|e| EventError(e.to_string()))?;
        let serf_name = serf_event_name(&event.name);
        let Some(lan) = self.lan() else {
            if serf_name.len() + body.len() > USER_EVENT_SIZE_LIMIT {
                return Err(EventError(format!(
                    "user event exceeds configured limit of {USER_EVENT_SIZE_LIMIT} bytes before encoding"
                )));
            }
            self.deliver_event(event.clone());
            return Ok(event);
        };
        let ltime = lan.user_event(serf_name, body).await.map_err(EventError)?;
        // Stored now so that a list right after the fire shows it; the
        // copy serf hands back is then dropped as already kept.
        self.deliver_event(UserEvent {
            ltime,
            ..event.clone()
        });
        Ok(event)
    }

    /// Stores the user events `feed` (the LAN pool's) brings that target
    /// this agent, until the agent stops.
    pub async fn receive_gossiped_events(
        self: Arc<Self>,
        mut feed: broadcast::Receiver<serf::Event>,
    ) {
        loop {
            let received = tokio::select! {
                r = feed.recv() => r,
                _ = self.stopping() => return,
            };
            match received {
                Ok(serf::Event::User {
                    ltime,
                    name,
                    payload,
                    ..
                }) => self.receive_gossiped(ltime, &name, &payload),
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::warn!(
                        missed,
                        "agent: fell behind the LAN pool's events, some user events are lost"
                    );
                }
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    }

    /// One serf user event: Consul's if its name says so, then decoded
    /// and delivered; anything else is not ours or is dropped.
    fn receive_gossiped(&self, ltime: u64, serf_name: &str, body: &[u8]) {
        if !serf_name.starts_with(SERF_EVENT_PREFIX) {
            return;
        }
        let event = match event_wire::decode(body, ltime) {
            Ok(e) => e,
            Err(error) => {
                tracing::warn!(%error, serf_name, "agent: dropping a gossiped user event");
                return;
            }
        };
        if event.version > USER_EVENT_MAX_VERSION {
            tracing::warn!(
                version = event.version,
                name = %event.name,
                "agent: event version may have unsupported features"
            );
        }
        self.deliver_event(event);
    }

    /// Keeps an event if this agent is among those its filters name (a
    /// remote exec event is never kept).
    pub fn deliver_event(&self, event: UserEvent) {
        if !self.event_targets_me(&event) {
            return;
        }
        if event.name == REMOTE_EXEC_NAME {
            tracing::info!(id = %event.id, "agent: ignoring remote exec event, disabled");
            return;
        }
        tracing::debug!(name = %event.name, id = %event.id, "agent: new event");
        self.events().push(event);
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

    fn agent(node_name: &str) -> Arc<Agent> {
        let config = crate::config::Config {
            node_name: node_name.into(),
            ..crate::config::Config::default()
        };
        Agent::new(config).unwrap()
    }

    fn gossiped(e: &UserEvent, ltime: u64) -> serf::Event {
        serf::Event::User {
            ltime,
            name: serf_event_name(&e.name),
            payload: event_wire::encode(e).unwrap(),
            coalesce: false,
        }
    }

    /// Feeds `events` to a receiver and waits until it has taken them all.
    async fn receive(agent: &Arc<Agent>, events: Vec<serf::Event>) {
        let (tx, rx) = broadcast::channel(16);
        let task = tokio::spawn(Arc::clone(agent).receive_gossiped_events(rx));
        for e in events {
            tx.send(e).unwrap();
        }
        drop(tx);
        task.await.unwrap();
    }

    #[tokio::test]
    async fn gossiped_events_are_kept_once_with_serfs_time_if_they_target_us() {
        let agent = agent("web-1");
        let mut other_node = event("00000000-0000-0000-0000-000000000002");
        other_node.node_filter = "^db-".into();
        let mut mine = event("00000000-0000-0000-0000-000000000003");
        mine.node_filter = "^web-".into();
        let mut rexec = event("00000000-0000-0000-0000-000000000004");
        rexec.name = REMOTE_EXEC_NAME.into();
        let plain = event("00000000-0000-0000-0000-000000000001");
        receive(
            &agent,
            vec![
                gossiped(&plain, 7),
                gossiped(&plain, 7),
                gossiped(&other_node, 8),
                gossiped(&mine, 9),
                gossiped(&rexec, 10),
                serf::Event::User {
                    ltime: 11,
                    name: "deploy".into(),
                    payload: event_wire::encode(&event("not-consuls")).unwrap(),
                    coalesce: false,
                },
                serf::Event::User {
                    ltime: 12,
                    name: serf_event_name("junk"),
                    payload: vec![0xc1, 0xff],
                    coalesce: false,
                },
            ],
        )
        .await;
        let kept: Vec<(String, u64)> = agent
            .events()
            .list(None)
            .into_iter()
            .map(|e| (e.id, e.ltime))
            .collect();
        assert_eq!(
            kept,
            [(plain.id, 7), (mine.id, 9)],
            "dropped: a duplicate, another node's, remote exec, a non-Consul serf event, junk"
        );
    }

    #[tokio::test]
    async fn without_a_pool_a_fired_event_is_delivered_here_only_if_it_fits() {
        let agent = agent("web-1");
        let fired = agent
            .fire_event(FireRequest {
                name: "deploy".into(),
                payload: b"v1".to_vec(),
                ..FireRequest::default()
            })
            .await
            .unwrap();
        assert_eq!((fired.version, fired.ltime), (1, 0));
        assert_eq!(agent.events().list(None), [fired]);
        let too_big = agent
            .fire_event(FireRequest {
                name: "deploy".into(),
                payload: vec![b'x'; USER_EVENT_SIZE_LIMIT],
                ..FireRequest::default()
            })
            .await
            .unwrap_err();
        assert_eq!(
            too_big.0,
            "user event exceeds configured limit of 512 bytes before encoding"
        );
        assert_eq!(agent.events().list(None).len(), 1);
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
