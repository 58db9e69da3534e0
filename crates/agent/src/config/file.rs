//! Finding configuration files and parsing JSON or HCL into one tree shape.

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::ConfigError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Json,
    Hcl,
}

fn format_of(path: &Path) -> Option<Format> {
    match path.extension()?.to_str()? {
        "json" => Some(Format::Json),
        "hcl" => Some(Format::Hcl),
        _ => None,
    }
}

/// The files a `-config-file` or `-config-dir` argument stands for, in the
/// order they are merged: a `.json` or `.hcl` file is itself, a directory is
/// its `.json` and `.hcl` files in lexical order (not recursing); other
/// files in a directory are skipped with a warning, as Consul does.
pub(crate) fn expand(path: &Path, warnings: &mut Vec<String>) -> Result<Vec<PathBuf>, ConfigError> {
    let read_err = |source| ConfigError::Read {
        path: path.to_owned(),
        source,
    };
    if !fs::metadata(path).map_err(read_err)?.is_dir() {
        return match format_of(path) {
            Some(_) => Ok(vec![path.to_owned()]),
            None => Err(ConfigError::UnknownExtension {
                path: path.to_owned(),
            }),
        };
    }
    let mut entries = fs::read_dir(path)
        .and_then(|dir| {
            dir.map(|e| e.map(|e| e.path()))
                .collect::<Result<Vec<_>, _>>()
        })
        .map_err(read_err)?;
    entries.sort();
    // `metadata` follows symlinks, so a link to a directory is skipped too.
    entries.retain(|p| fs::metadata(p).map(|m| !m.is_dir()).unwrap_or(true));
    entries.retain(|p| {
        let keep = format_of(p).is_some();
        if !keep {
            warnings.push(format!(
                "skipping file {}, extension must be .hcl or .json",
                p.display()
            ));
        }
        keep
    });
    Ok(entries)
}

/// Reads and parses one file. An empty file holds no settings.
pub(crate) fn read(path: &Path) -> Result<Map<String, Value>, ConfigError> {
    let text = fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse(path, &text)
}

fn parse(path: &Path, text: &str) -> Result<Map<String, Value>, ConfigError> {
    let syntax = |message: String| ConfigError::Syntax {
        path: path.to_owned(),
        message,
    };
    if text.trim().is_empty() {
        return Ok(Map::new());
    }
    let tree = match format_of(path) {
        Some(Format::Json) => serde_json::from_str(text).map_err(|e| syntax(e.to_string()))?,
        Some(Format::Hcl) => {
            let body = hcl::parse(text).map_err(|e| syntax(hcl_message(&e)))?;
            serde_json::to_value(hcl::Value::from(body)).map_err(|e| syntax(e.to_string()))?
        }
        None => return Err(syntax("extension must be .hcl or .json".to_owned())),
    };
    match tree {
        Value::Object(map) => Ok(map),
        _ => Err(syntax("the top level must be an object of keys".to_owned())),
    }
}

/// hcl-rs renders parse errors over several lines with a caret; keep it to one.
fn hcl_message(err: &hcl::Error) -> String {
    match err {
        hcl::Error::Parse(e) => format!(
            "line {}, column {}: {}",
            e.location().line(),
            e.location().column(),
            e.message().split_whitespace().collect::<Vec<_>>().join(" ")
        ),
        other => other
            .to_string()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" "),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn hcl_blocks_and_attributes_give_the_json_shape() {
        let hcl = r#"
            # comment
            datacenter = "east"
            ports { http = 8080 }
            addresses = { dns = "127.0.0.1" }
            service "web" { port = 80 }
        "#;
        let tree = parse(Path::new("a.hcl"), hcl).unwrap();
        assert_eq!(
            Value::Object(tree),
            json!({
                "datacenter": "east",
                "ports": {"http": 8080},
                "addresses": {"dns": "127.0.0.1"},
                "service": {"web": {"port": 80}},
            })
        );
    }

    #[test]
    fn syntax_errors_are_one_line() {
        for (name, text) in [("a.hcl", "ports {\n http = \n"), ("a.json", "{\"a\": }")] {
            let err = parse(Path::new(name), text).unwrap_err().to_string();
            assert!(err.starts_with(&format!("{name}: syntax error: ")), "{err}");
            assert!(!err.contains('\n'), "{err}");
        }
    }

    #[test]
    fn top_level_must_be_an_object() {
        let err = parse(Path::new("a.json"), "[1]").unwrap_err().to_string();
        assert!(err.contains("top level"), "{err}");
    }
}
