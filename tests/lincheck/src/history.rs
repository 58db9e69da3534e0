//! The recorded history: one [`Record`] per KV operation a client invoked,
//! with its invoke and return times on one monotonic clock (nanoseconds since
//! the run started), and the JSON file it is saved to.

use serde::{Deserialize, Serialize};

/// Which consistency mode a read asked for (Consul's query parameters).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum ReadMode {
    /// No parameter: the leader answers (Consul's default mode).
    Default,
    /// `?consistent`: the leader confirms its leadership first.
    Consistent,
    /// `?stale`: any server answers from its own state; may be stale.
    Stale,
}

impl ReadMode {
    /// The query string a GET carries for this mode.
    pub fn query(self) -> &'static str {
        match self {
            ReadMode::Default => "",
            ReadMode::Consistent => "?consistent",
            ReadMode::Stale => "?stale",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ReadMode::Default => "default",
            ReadMode::Consistent => "consistent",
            ReadMode::Stale => "stale",
        }
    }
}

/// What an operation did and what it observed.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum Action {
    /// `GET /v1/kv/<key>`: `value` is `None` for 404 (absent).
    Get {
        mode: ReadMode,
        value: Option<String>,
    },
    /// `PUT /v1/kv/<key>` with a value no other operation writes.
    Put { value: String },
    /// `PUT /v1/kv/<key>?cas=<ModifyIndex>`: since every written value is
    /// unique, the index read together with `expected` names the write of
    /// `expected`, so this is compare-and-set on the value (`None`: cas=0,
    /// create only if absent). `ok` is the answer, `None` when unknown.
    Cas {
        expected: Option<String>,
        value: String,
        ok: Option<bool>,
    },
}

impl Action {
    /// The value this operation tried to write, if it is a write.
    pub fn written_value(&self) -> Option<&str> {
        match self {
            Action::Get { .. } => None,
            Action::Put { value } | Action::Cas { value, .. } => Some(value),
        }
    }
}

/// One operation as a client saw it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// The client (one task, one connection at a time) that issued it.
    pub client: u32,
    /// Index into [`History::endpoints`] of the agent it was sent to.
    #[serde(default)]
    pub endpoint: usize,
    pub key: String,
    /// Invoke time, ns since the start of the run.
    pub call: i64,
    /// Return time, ns since the start of the run; `None` when the outcome
    /// is unknown (error, timeout, 5xx on a write): such a write may take
    /// effect at any time after `call`, or never.
    pub ret: Option<i64>,
    #[serde(flatten)]
    pub action: Action,
    /// Why the outcome is unknown, for indeterminate operations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl Record {
    pub fn is_indeterminate(&self) -> bool {
        self.ret.is_none()
    }
}

/// A whole run, as written by `lincheck run --history` and read by
/// `lincheck check --history`. Only `records` is needed for the check.
#[derive(Serialize, Deserialize, Clone, Debug, Default)]
pub struct History {
    #[serde(default)]
    pub run_id: String,
    #[serde(default)]
    pub read_mode: String,
    #[serde(default)]
    pub endpoints: Vec<String>,
    #[serde(default)]
    pub clients: u32,
    #[serde(default)]
    pub keys: Vec<String>,
    #[serde(default)]
    pub duration_ms: u64,
    /// Reads that failed (error, timeout, non-200/404): not in `records`.
    #[serde(default)]
    pub failed_reads: u64,
    /// Writes whose request never left the client (no connection): they
    /// cannot have taken effect, so they are not in `records`.
    #[serde(default)]
    pub unsent_writes: u64,
    pub records: Vec<Record>,
}

impl History {
    pub fn load(path: &std::path::Path) -> Result<History, String> {
        let text = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        serde_json::from_slice(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn save(&self, path: &std::path::Path) -> Result<(), String> {
        let text = serde_json::to_vec(self).map_err(|e| e.to_string())?;
        std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
    }
}
