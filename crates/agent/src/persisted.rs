//! Services and checks registered over the API, kept under the data
//! directory so that an agent restart brings them back (config-file
//! definitions come back from the files themselves).

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde_json::Value;

/// One JSON file per definition, named by the hex of its ID so any ID is a
/// safe file name.
#[derive(Debug, Clone)]
pub struct DefinitionStore {
    services: PathBuf,
    checks: PathBuf,
    check_states: PathBuf,
}

/// A kind of persisted definition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Definition {
    Service,
    Check,
}

fn file_name(id: &str) -> String {
    let hex: String = id.bytes().map(|b| format!("{b:02x}")).collect();
    format!("{hex}.json")
}

/// Writes `bytes` to `path` so that a crash leaves the old file or the new
/// one, never a torn mix: temp file, fsync, rename, fsync the directory.
fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = path.with_extension("tmp");
    let mut file = fs::File::create(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    fs::rename(&tmp, path)?;
    fs::File::open(dir)?.sync_all()
}

impl DefinitionStore {
    pub fn open(data_dir: &Path) -> io::Result<DefinitionStore> {
        let store = DefinitionStore {
            services: data_dir.join("services"),
            checks: data_dir.join("checks"),
            check_states: data_dir.join("checks").join("state"),
        };
        fs::create_dir_all(&store.services)?;
        fs::create_dir_all(&store.check_states)?;
        Ok(store)
    }

    fn dir(&self, kind: Definition) -> &Path {
        match kind {
            Definition::Service => &self.services,
            Definition::Check => &self.checks,
        }
    }

    pub fn save(&self, kind: Definition, id: &str, raw: &Value) -> io::Result<()> {
        let bytes = serde_json::to_vec(raw).map_err(io::Error::other)?;
        write_atomically(&self.dir(kind).join(file_name(id)), &bytes)
    }

    pub fn forget(&self, kind: Definition, id: &str) -> io::Result<()> {
        match fs::remove_file(self.dir(kind).join(file_name(id))) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }

    /// Saves the last status a TTL check was given, until `expires_ms`
    /// (unix milliseconds), so a restart does not reset it to critical.
    pub fn save_check_state(
        &self,
        id: &str,
        status: &str,
        output: &str,
        expires_ms: u128,
    ) -> io::Result<()> {
        let state = serde_json::json!({"Status": status, "Output": output, "Expires": expires_ms.to_string()});
        let bytes = serde_json::to_vec(&state).map_err(io::Error::other)?;
        write_atomically(&self.check_states.join(file_name(id)), &bytes)
    }

    /// The saved status and output of a TTL check, if still fresh at `now_ms`.
    pub fn load_check_state(&self, id: &str, now_ms: u128) -> Option<(String, String)> {
        let bytes = fs::read(self.check_states.join(file_name(id))).ok()?;
        let state: Value = serde_json::from_slice(&bytes).ok()?;
        let expires: u128 = state.get("Expires")?.as_str()?.parse().ok()?;
        (expires > now_ms).then(|| {
            (
                state
                    .get("Status")
                    .and_then(Value::as_str)
                    .unwrap_or("critical")
                    .to_owned(),
                state
                    .get("Output")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned(),
            )
        })
    }

    /// Every saved definition of `kind`. A file that does not parse is
    /// skipped with a warning rather than keeping the agent down.
    pub fn load(&self, kind: Definition) -> io::Result<Vec<Value>> {
        let mut paths: Vec<PathBuf> = fs::read_dir(self.dir(kind))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        paths.sort();
        let mut out = Vec::with_capacity(paths.len());
        for path in paths {
            match fs::read(&path).map(|b| serde_json::from_slice::<Value>(&b)) {
                Ok(Ok(value)) => out.push(value),
                Ok(Err(e)) => {
                    tracing::warn!(path = %path.display(), error = %e, "skipping a corrupt saved definition")
                }
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "cannot read a saved definition")
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saves_loads_and_forgets() {
        let dir = tempfile::tempdir().unwrap();
        let store = DefinitionStore::open(dir.path()).unwrap();
        let web = serde_json::json!({"Name": "web", "Port": 80});
        store.save(Definition::Service, "web/1", &web).unwrap();
        store
            .save(
                Definition::Service,
                "db",
                &serde_json::json!({"Name": "db"}),
            )
            .unwrap();
        fs::write(store.services.join("bad.json"), b"{not json").unwrap();
        let loaded = store.load(Definition::Service).unwrap();
        assert_eq!(loaded.len(), 2);
        assert!(loaded.contains(&web));
        store.forget(Definition::Service, "web/1").unwrap();
        store.forget(Definition::Service, "never-saved").unwrap();
        assert_eq!(store.load(Definition::Service).unwrap().len(), 1);
        assert!(store.load(Definition::Check).unwrap().is_empty());
    }
}
