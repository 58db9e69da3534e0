//! `praetor lock -n N` with N > 1: Consul's API semaphore
//! (`api/semaphore.go`). Each contender holds `<prefix>/<session>` with its
//! session (the session has the `delete` behaviour, so the key goes with
//! it); `<prefix>/.lock` holds `{"Limit": N, "Holders": {...}}`, changed
//! only by check-and-set. Holders whose session no longer holds any key
//! under the prefix are pruned whenever the coordination key is read.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use hyper::{Method, StatusCode};
use serde::{Deserialize, Serialize};

use super::{go_path_join, kv_write, NotAcquired, ReadError, Shutdown, MONITOR_RETRY_TIME};
use crate::catalog_cmd::call;
use crate::client::{escape_key, ApiClient};

/// Consul's `api.SemaphoreFlagValue`: marks keys used by a semaphore.
pub(super) const SEMAPHORE_FLAG_VALUE: u64 = 0xe0f69a2baa414de0;
/// `api.DefaultSemaphoreWaitTime`: one blocking wait on the prefix.
const SEMAPHORE_WAIT: Duration = Duration::from_secs(15);
/// `api.DefaultSemaphoreKey`: the coordination key within the prefix.
const SEMAPHORE_KEY: &str = ".lock";
/// `api.ErrSemaphoreConflict`.
const CONFLICT: &str = "Existing key does not match semaphore use";

/// One KV entry as read, its value already decoded.
#[derive(Clone, Default)]
struct Entry {
    key: String,
    flags: u64,
    session: String,
    modify_index: u64,
    /// `None` for a key without a value (Consul's `"Value": null`).
    value: Option<Vec<u8>>,
}

#[derive(Deserialize)]
struct WireEntry {
    #[serde(rename = "Key", default)]
    key: String,
    #[serde(rename = "Flags", default)]
    flags: u64,
    #[serde(rename = "Session", default)]
    session: Option<String>,
    #[serde(rename = "ModifyIndex", default)]
    modify_index: u64,
    #[serde(rename = "Value", default)]
    value: Option<String>,
}

impl WireEntry {
    fn decode(self) -> Result<Entry, String> {
        let value = match self.value {
            Some(text) => Some(BASE64.decode(text.as_bytes()).map_err(|e| e.to_string())?),
            None => None,
        };
        Ok(Entry {
            key: self.key,
            flags: self.flags,
            session: self.session.unwrap_or_default(),
            modify_index: self.modify_index,
            value,
        })
    }
}

/// The coordination record, Consul's `semaphoreLock`. Holders is a set of
/// session IDs; Go writes a nil map as `null`, hence the `Option`.
#[derive(Serialize, Deserialize)]
struct Coordination {
    #[serde(rename = "Limit", alias = "limit", default)]
    limit: i64,
    #[serde(rename = "Holders", alias = "holders", default)]
    holders: Option<BTreeMap<String, bool>>,
}

impl Coordination {
    fn holds(&self, session: &str) -> bool {
        self.holders
            .as_ref()
            .is_some_and(|set| set.contains_key(session))
    }

    fn count(&self) -> usize {
        self.holders.as_ref().map_or(0, BTreeMap::len)
    }

    /// `pruneDeadHolders`: a holder stays only while its session holds
    /// some key in the listing.
    fn prune(&mut self, entries: &[Entry]) {
        if let Some(set) = self.holders.as_mut() {
            set.retain(|holder, _| entries.iter().any(|e| e.session == *holder));
        }
    }
}

/// GET on `/v1/kv/<key><query>` (`query` is empty or starts with `?`):
/// the entries (none on a 404) and the index to block on.
async fn read(client: &ApiClient, key: &str, query: &str) -> Result<(Vec<Entry>, u64), ReadError> {
    let answer = client
        .send(
            Method::GET,
            &format!("/v1/kv/{}{query}", escape_key(key)),
            Vec::new(),
        )
        .await
        .map_err(|text| ReadError {
            text,
            retryable: true,
        })?;
    let index = answer.index.unwrap_or(0);
    let broken = |text: String| ReadError {
        text,
        retryable: false,
    };
    match answer.status {
        StatusCode::NOT_FOUND => Ok((Vec::new(), index)),
        StatusCode::OK => {
            let wire: Vec<WireEntry> =
                serde_json::from_slice(&answer.body).map_err(|e| broken(e.to_string()))?;
            let entries = wire
                .into_iter()
                .map(WireEntry::decode)
                .collect::<Result<Vec<_>, _>>()
                .map_err(broken)?;
            Ok((entries, index))
        }
        status => Err(ReadError {
            text: answer.unexpected(),
            retryable: status.is_server_error(),
        }),
    }
}

/// Every key under the prefix (Consul's `KV.List`), with extra query
/// parameters (each starting with `&`).
async fn list(
    client: &ApiClient,
    prefix: &str,
    extra: &str,
) -> Result<(Vec<Entry>, u64), ReadError> {
    read(client, prefix, &format!("?recurse{extra}")).await
}

pub(super) struct Semaphore<'a> {
    pub(super) client: &'a ApiClient,
    /// The prefix as given (listed with `?recurse`).
    pub(super) prefix: String,
    pub(super) limit: i64,
    pub(super) session: String,
}

impl Semaphore<'_> {
    fn lock_key(&self) -> String {
        go_path_join(&self.prefix, SEMAPHORE_KEY)
    }

    fn contender_key(&self) -> String {
        go_path_join(&self.prefix, &self.session)
    }

    /// `findLock`: the coordination entry, or a blank one carrying the
    /// semaphore flag when there is none yet.
    fn find_lock(&self, entries: &[Entry]) -> Entry {
        let key = self.lock_key();
        match entries.iter().find(|e| e.key == key) {
            Some(entry) => entry.clone(),
            None => Entry {
                flags: SEMAPHORE_FLAG_VALUE,
                ..Entry::default()
            },
        }
    }

    /// `decodeLock`: an entry without a value is a fresh record with our
    /// limit and no holders.
    fn decode(&self, entry: &Entry) -> Result<Coordination, String> {
        match &entry.value {
            None => Ok(Coordination {
                limit: self.limit,
                holders: Some(BTreeMap::new()),
            }),
            Some(bytes) => {
                serde_json::from_slice(bytes).map_err(|e| format!("lock decoding failed: {e}"))
            }
        }
    }

    /// A check-and-set write of the coordination record against
    /// `modify_index` (0: only if the key does not exist yet).
    async fn swap(&self, record: &Coordination, modify_index: u64) -> Result<bool, String> {
        let body = serde_json::to_vec(record).map_err(|e| format!("lock encoding failed: {e}"))?;
        let path = format!(
            "/v1/kv/{}?flags={SEMAPHORE_FLAG_VALUE}&cas={modify_index}",
            escape_key(&self.lock_key())
        );
        let answer = call(self.client, Method::PUT, &path, body)
            .await
            .map_err(|e| format!("failed to update lock: {e}"))?;
        Ok(String::from_utf8_lossy(&answer.body).trim() == "true")
    }

    /// Consul's `Semaphore.Acquire`: make the contender entry, then wait
    /// for a free slot and claim it in the coordination record.
    pub(super) async fn acquire(
        &self,
        timeout: Option<Duration>,
        shutdown: &mut Shutdown,
    ) -> Result<(), NotAcquired> {
        let path = format!(
            "/v1/kv/{}?acquire={}&flags={SEMAPHORE_FLAG_VALUE}",
            escape_key(&self.contender_key()),
            self.session
        );
        match kv_write(self.client, Method::PUT, &path).await {
            Ok(true) => {}
            // Go formats the nil error of a refused acquire as "<nil>".
            Ok(false) => {
                return Err(NotAcquired::Failed(
                    "failed to make contender entry: <nil>".to_owned(),
                ))
            }
            Err(e) => {
                return Err(NotAcquired::Failed(format!(
                    "failed to make contender entry: {e}"
                )))
            }
        }

        let start = Instant::now();
        let mut wait = timeout.unwrap_or(SEMAPHORE_WAIT);
        let mut index = 0u64;
        let mut attempts = 0u32;
        loop {
            if timeout.is_some() && attempts > 0 {
                // As semaphore.go does, the remaining wait is cut by the
                // whole elapsed time on every round, not recomputed from
                // the -timeout.
                let elapsed = start.elapsed();
                if elapsed > wait {
                    return Err(NotAcquired::Stopped);
                }
                wait -= elapsed;
            }
            attempts += 1;
            let query = if index > 0 {
                format!("&index={index}&wait={}ms", wait.as_millis().max(1))
            } else {
                String::new()
            };
            let read = tokio::select! {
                _ = shutdown.wait() => return Err(NotAcquired::Stopped),
                read = list(self.client, &self.prefix, &query) => read,
            };
            let (entries, at) = read
                .map_err(|e| NotAcquired::Failed(format!("failed to read prefix: {}", e.text)))?;
            let lock_entry = self.find_lock(&entries);
            if lock_entry.flags != SEMAPHORE_FLAG_VALUE {
                return Err(NotAcquired::Failed(CONFLICT.to_owned()));
            }
            let mut record = self.decode(&lock_entry).map_err(NotAcquired::Failed)?;
            if record.limit != self.limit {
                return Err(NotAcquired::Failed(format!(
                    "semaphore limit conflict (lock: {}, local: {})",
                    record.limit, self.limit
                )));
            }
            record.prune(&entries);
            if record.count() as i64 >= record.limit {
                index = at;
                continue;
            }
            record
                .holders
                .get_or_insert_with(BTreeMap::new)
                .insert(self.session.clone(), true);
            let swapped = self
                .swap(&record, lock_entry.modify_index)
                .await
                .map_err(NotAcquired::Failed)?;
            if swapped {
                return Ok(());
            }
            // Lost a race with another contender: look again.
        }
    }

    /// Consul's semaphore `monitorLock`: returns once we are no longer a
    /// live holder (or the agent stays unreachable beyond the retries).
    pub(super) async fn monitor(&self, retries: i64) {
        let mut index = 0u64;
        loop {
            let mut left = retries;
            let (entries, at) = loop {
                let query = if index > 0 {
                    format!("&consistent&index={index}")
                } else {
                    "&consistent".to_owned()
                };
                match list(self.client, &self.prefix, &query).await {
                    Ok(read) => break read,
                    Err(e) if left > 0 && e.retryable => {
                        tokio::time::sleep(MONITOR_RETRY_TIME).await;
                        left -= 1;
                        index = 0;
                    }
                    Err(_) => return,
                }
            };
            let lock_entry = self.find_lock(&entries);
            let Ok(mut record) = self.decode(&lock_entry) else {
                return;
            };
            record.prune(&entries);
            if !record.holds(&self.session) {
                return;
            }
            index = at;
        }
    }

    /// Consul's `Semaphore.Release`: leave the holders (retrying the
    /// check-and-set on races), then delete the contender entry.
    pub(super) async fn release(&self) -> Result<(), String> {
        let key = self.lock_key();
        loop {
            let (entries, _) = read(self.client, &key, "").await.map_err(|e| e.text)?;
            let entry = entries.into_iter().next().unwrap_or_default();
            let mut record = self.decode(&entry)?;
            let Some(set) = record.holders.as_mut() else {
                break;
            };
            if set.remove(&self.session).is_none() {
                break;
            }
            if self.swap(&record, entry.modify_index).await? {
                break;
            }
        }
        let path = format!("/v1/kv/{}", escape_key(&self.contender_key()));
        kv_write(self.client, Method::DELETE, &path)
            .await
            .map(|_| ())
    }

    /// Consul's `Semaphore.Destroy`: delete the coordination key unless a
    /// live holder remains. `Ok(false)` means it is in use.
    pub(super) async fn cleanup(&self) -> Result<bool, String> {
        let (entries, _) = list(self.client, &self.prefix, "")
            .await
            .map_err(|e| format!("failed to read prefix: {}", e.text))?;
        let lock_entry = self.find_lock(&entries);
        if lock_entry.modify_index == 0 {
            return Ok(true);
        }
        if lock_entry.flags != SEMAPHORE_FLAG_VALUE {
            return Err(CONFLICT.to_owned());
        }
        let mut record = self.decode(&lock_entry)?;
        record.prune(&entries);
        if record.count() > 0 {
            return Ok(false);
        }
        let path = format!(
            "/v1/kv/{}?cas={}",
            escape_key(&self.lock_key()),
            lock_entry.modify_index
        );
        kv_write(self.client, Method::DELETE, &path)
            .await
            .map_err(|e| format!("failed to remove semaphore: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holder(session: &str) -> Entry {
        Entry {
            key: format!("p/{session}"),
            session: session.to_owned(),
            ..Entry::default()
        }
    }

    #[test]
    fn record_encodes_like_go() {
        let mut set = BTreeMap::new();
        set.insert("b".to_owned(), true);
        set.insert("a".to_owned(), true);
        let record = Coordination {
            limit: 2,
            holders: Some(set),
        };
        assert_eq!(
            serde_json::to_string(&record).unwrap(),
            r#"{"Limit":2,"Holders":{"a":true,"b":true}}"#
        );
        let empty: Coordination = serde_json::from_str(r#"{"Limit":3,"Holders":null}"#).unwrap();
        assert_eq!(empty.limit, 3);
        assert_eq!(empty.count(), 0);
    }

    #[test]
    fn prune_keeps_live_sessions_only() {
        let mut set = BTreeMap::new();
        for s in ["alive", "dead"] {
            set.insert(s.to_owned(), true);
        }
        let mut record = Coordination {
            limit: 2,
            holders: Some(set),
        };
        record.prune(&[holder("alive"), Entry::default()]);
        assert!(record.holds("alive"));
        assert!(!record.holds("dead"));
        assert_eq!(record.count(), 1);
    }
}
