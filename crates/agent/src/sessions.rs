//! The agent's side of sessions: validating a create request as Consul's
//! server does, the TTL timers that destroy expired sessions, and the lock
//! delays that keep a released key from being grabbed at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use state::{Behavior, Command, Outcome, ReleasedLock, Session, TxnError, TxnOp, TxnOutcome};

use crate::agent::{random_uuid, Agent};
use crate::go_duration::{format_go_duration, parse_go_duration};

/// Consul caps every lock delay at a minute, whatever the session asked.
pub const MAX_LOCK_DELAY: Duration = Duration::from_secs(60);
/// Consul's default lock delay.
pub const DEFAULT_LOCK_DELAY: Duration = Duration::from_secs(15);
/// The shortest and longest session TTLs Consul accepts.
pub const SESSION_TTL_MIN: Duration = Duration::from_secs(10);
pub const SESSION_TTL_MAX: Duration = Duration::from_secs(24 * 3600);
/// A session lives this many TTLs without renewal (Consul's grace).
pub const SESSION_TTL_MULTIPLIER: u32 = 2;

/// A session create request, before validation.
#[derive(Debug, Clone, Default)]
pub struct SessionRequest {
    pub name: String,
    /// Empty means this agent's node.
    pub node: String,
    /// `None` means Consul's default, `["serfHealth"]`.
    pub node_checks: Option<Vec<String>>,
    pub service_checks: Vec<String>,
    pub lock_delay: Option<Duration>,
    pub behavior: String,
    pub ttl: String,
}

/// A refused session request; the text is Consul's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SessionError(pub String);

/// When each TTL'd session expires unless renewed.
#[derive(Default)]
pub struct SessionTimers {
    deadlines: Mutex<HashMap<String, (Instant, Duration)>>,
    changed: tokio::sync::Notify,
}

impl SessionTimers {
    fn arm(&self, id: &str, ttl: Duration) {
        let grace = ttl * SESSION_TTL_MULTIPLIER;
        self.deadlines
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id.to_lowercase(), (Instant::now() + grace, ttl));
        self.changed.notify_one();
    }

    fn renew(&self, id: &str) -> bool {
        let mut deadlines = self
            .deadlines
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match deadlines.get_mut(&id.to_lowercase()) {
            Some((deadline, ttl)) => {
                *deadline = Instant::now() + *ttl * SESSION_TTL_MULTIPLIER;
                true
            }
            None => false,
        }
    }

    fn disarm(&self, id: &str) {
        self.deadlines
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&id.to_lowercase());
    }

    /// The sessions expired at `now`, and when the next one will.
    fn due(&self, now: Instant) -> (Vec<String>, Option<Instant>) {
        let deadlines = self
            .deadlines
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let expired = deadlines
            .iter()
            .filter(|(_, (at, _))| *at <= now)
            .map(|(id, _)| id.clone())
            .collect();
        let next = deadlines
            .values()
            .map(|(at, _)| *at)
            .filter(|at| *at > now)
            .min();
        (expired, next)
    }
}

/// Keys recently freed by a destroyed session, which no one may lock until
/// their delay passes.
#[derive(Default)]
pub struct LockDelays {
    until: Mutex<HashMap<String, Instant>>,
}

impl LockDelays {
    pub fn record(&self, released: &[ReleasedLock], now: Instant) {
        let mut until = self.until.lock().unwrap_or_else(PoisonError::into_inner);
        until.retain(|_, at| *at > now);
        for lock in released {
            let delay = Duration::from_nanos(lock.lock_delay_ns).min(MAX_LOCK_DELAY);
            if !delay.is_zero() {
                until.insert(lock.key.clone(), now + delay);
            }
        }
    }

    pub fn is_delayed(&self, key: &str, now: Instant) -> bool {
        self.until
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(key)
            .is_some_and(|at| *at > now)
    }

    /// What the leader answers instead of applying a lock on a delayed
    /// key, if `command` holds one.
    pub fn refusal(&self, command: &Command, now: Instant) -> Option<Outcome> {
        match command {
            Command::Kv(op) if op.verb == state::KvVerb::Lock && self.is_delayed(&op.key, now) => {
                Some(Outcome::Kv(false))
            }
            Command::Txn(ops) => {
                let errors: Vec<TxnError> = ops
                    .iter()
                    .enumerate()
                    .filter(|(_, TxnOp::Kv(op))| {
                        op.verb == state::KvVerb::Lock && self.is_delayed(&op.key, now)
                    })
                    .map(|(op_index, TxnOp::Kv(op))| TxnError {
                        op_index,
                        what: format!("failed to lock key {:?} due to lock delay", op.key),
                    })
                    .collect();
                (!errors.is_empty()).then_some(Outcome::Txn(TxnOutcome::Aborted(errors)))
            }
            _ => None,
        }
    }
}

fn parse_ttl(ttl: &str) -> Result<Duration, SessionError> {
    if ttl.is_empty() {
        return Ok(Duration::ZERO);
    }
    let nanos = parse_go_duration(ttl)
        .map_err(|e| SessionError(format!("Session TTL '{ttl}' invalid: {}", e.0)))?;
    let nanos = u64::try_from(nanos.max(0)).unwrap_or(u64::MAX);
    let duration = Duration::from_nanos(nanos);
    if !duration.is_zero() && (duration < SESSION_TTL_MIN || duration > SESSION_TTL_MAX) {
        return Err(SessionError(format!(
            "Invalid Session TTL '{}', must be between [{}={}]",
            duration.as_nanos(),
            format_go_duration(SESSION_TTL_MIN),
            format_go_duration(SESSION_TTL_MAX)
        )));
    }
    Ok(duration)
}

impl Agent {
    /// Creates a session; returns its ID.
    pub async fn create_session(&self, request: SessionRequest) -> Result<String, SessionError> {
        let behavior = match request.behavior.as_str() {
            "" | "release" => Behavior::Release,
            "delete" => Behavior::Delete,
            other => return Err(SessionError(format!("Invalid Behavior setting '{other}'"))),
        };
        let ttl = parse_ttl(&request.ttl)?;
        let node = if request.node.is_empty() {
            self.config().node_name.clone()
        } else {
            request.node
        };
        let id = random_uuid();
        let session = Session {
            id: id.clone(),
            name: request.name,
            node,
            node_checks: request
                .node_checks
                .unwrap_or_else(|| vec![crate::SERF_CHECK_ID.to_owned()]),
            service_checks: request.service_checks,
            lock_delay_ns: u64::try_from(
                request.lock_delay.unwrap_or(DEFAULT_LOCK_DELAY).as_nanos(),
            )
            .unwrap_or(u64::MAX),
            behavior,
            ttl: request.ttl,
            ..Session::default()
        };
        match self.apply(Command::SessionCreate(Box::new(session))).await {
            Ok((_, Outcome::Write(Ok(())))) => {
                if !ttl.is_zero() {
                    self.session_timers().arm(&id, ttl);
                }
                Ok(id)
            }
            Ok((_, Outcome::Write(Err(e)))) => Err(SessionError(e.0)),
            Ok((_, other)) => Err(SessionError(format!("unexpected outcome: {other:?}"))),
            Err(e) => Err(SessionError(e.to_string())),
        }
    }

    /// Destroys a session (unknown IDs succeed, as in Consul).
    pub async fn destroy_session(&self, id: &str) -> Result<(), SessionError> {
        self.session_timers().disarm(id);
        self.apply(Command::SessionDestroy { id: id.to_owned() })
            .await
            .map(|_| ())
            .map_err(|e| SessionError(e.to_string()))
    }

    /// Starts a full TTL for every TTL'd session in the store (after a
    /// snapshot restore brought in sessions this agent never created).
    pub(crate) fn arm_all_session_timers(&self) {
        let (_, sessions) = self
            .store()
            .snapshot()
            .sessions(None, &mut state::WatchSet::new());
        for session in sessions {
            if let Ok(ttl) = parse_ttl(&session.ttl) {
                if !ttl.is_zero() {
                    self.session_timers().arm(&session.id, ttl);
                }
            }
        }
    }

    /// Restarts a session's TTL; `None` if there is no such session.
    pub fn renew_session(&self, id: &str) -> Option<Arc<Session>> {
        let (_, session) = self
            .store()
            .snapshot()
            .session(id, &mut state::WatchSet::new());
        let session = session?;
        if !self.session_timers().renew(id) {
            if let Ok(ttl) = parse_ttl(&session.ttl) {
                if !ttl.is_zero() {
                    self.session_timers().arm(id, ttl);
                }
            }
        }
        Some(session)
    }

    /// Destroys sessions whose TTL ran out, until the agent stops.
    pub async fn run_session_timers(self: Arc<Self>) {
        loop {
            let (expired, next) = self.session_timers().due(Instant::now());
            for id in expired {
                tracing::info!(session = %id, "session TTL expired; destroying it");
                if let Err(error) = self.destroy_session(&id).await {
                    tracing::warn!(%error, "could not destroy an expired session");
                }
            }
            let sleep = match next {
                Some(at) => tokio::time::sleep_until(at.into()),
                None => tokio::time::sleep(Duration::from_secs(3600)),
            };
            tokio::select! {
                _ = sleep => {}
                _ = self.session_timers().changed.notified() => {}
                _ = self.stopping() => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_rules_read_like_consul() {
        assert_eq!(parse_ttl(""), Ok(Duration::ZERO));
        assert_eq!(parse_ttl("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_ttl("15s"), Ok(Duration::from_secs(15)));
        assert_eq!(
            parse_ttl("5s").unwrap_err().0,
            "Invalid Session TTL '5000000000', must be between [10s=24h0m0s]"
        );
        assert!(parse_ttl("abc")
            .unwrap_err()
            .0
            .starts_with("Session TTL 'abc' invalid: "));
    }

    #[test]
    fn lock_delays_expire_and_cap_at_a_minute() {
        let delays = LockDelays::default();
        let now = Instant::now();
        delays.record(
            &[
                ReleasedLock {
                    key: "a".into(),
                    lock_delay_ns: 1_000_000_000,
                },
                ReleasedLock {
                    key: "b".into(),
                    lock_delay_ns: 600_000_000_000,
                },
                ReleasedLock {
                    key: "c".into(),
                    lock_delay_ns: 0,
                },
            ],
            now,
        );
        assert!(delays.is_delayed("a", now));
        assert!(!delays.is_delayed("a", now + Duration::from_secs(2)));
        assert!(delays.is_delayed("b", now + Duration::from_secs(59)));
        assert!(!delays.is_delayed("b", now + Duration::from_secs(61)));
        assert!(!delays.is_delayed("c", now));
    }

    #[test]
    fn timers_report_what_expired_and_what_is_next() {
        let timers = SessionTimers::default();
        timers.arm("S1", Duration::from_secs(10));
        let now = Instant::now();
        let (expired, next) = timers.due(now);
        assert!(expired.is_empty());
        assert!(next.is_some());
        let (expired, _) = timers.due(now + Duration::from_secs(21));
        assert_eq!(expired, ["s1"]);
        assert!(timers.renew("s1"));
        timers.disarm("s1");
        assert!(!timers.renew("s1"));
    }
}
