//! `praetor kv get|put|delete|export|import`, with Consul's flags, messages
//! and exit codes (0 on success, 1 on any error).

use std::io::Read;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use hyper::{Method, StatusCode};
use serde::{Deserialize, Serialize};

use crate::cli::{HttpFlags, KvCommand, KvDelete, KvExport, KvGet, KvImport, KvPut};
use crate::client::{escape_key, ApiClient};

/// A failure already worded for the user.
struct Failure(String);

type Outcome = Result<(), Failure>;

fn fail<T>(message: impl Into<String>) -> Result<T, Failure> {
    Err(Failure(message.into()))
}

pub fn run(command: KvCommand) -> u8 {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("Error starting: {e}");
            return 1;
        }
    };
    let result = runtime.block_on(async {
        match command {
            KvCommand::Get(c) => get(c).await,
            KvCommand::Put(c) => put(c).await,
            KvCommand::Delete(c) => delete(c).await,
            KvCommand::Export(c) => export(c).await,
            KvCommand::Import(c) => import(c).await,
        }
    });
    match result {
        Ok(()) => 0,
        Err(Failure(message)) => {
            eprintln!("{message}");
            1
        }
    }
}

fn connect(flags: &HttpFlags) -> Result<ApiClient, Failure> {
    ApiClient::new(flags).map_err(|e| Failure(format!("Error connecting to Consul agent: {e}")))
}

fn one_key(args: &[String]) -> Result<String, Failure> {
    match args {
        [] => Ok(String::new()),
        [key] => Ok(key.trim_start_matches('/').to_owned()),
        more => fail(format!(
            "Too many arguments (expected 1, got {})",
            more.len()
        )),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Entry {
    key: String,
    flags: u64,
    value: Option<String>,
    #[serde(default)]
    session: Option<String>,
    lock_index: u64,
    create_index: u64,
    modify_index: u64,
}

impl Entry {
    fn value(&self) -> Vec<u8> {
        self.value
            .as_deref()
            .and_then(|v| BASE64.decode(v).ok())
            .unwrap_or_default()
    }

    fn shown(&self, base64: bool) -> String {
        if base64 {
            BASE64.encode(self.value())
        } else {
            String::from_utf8_lossy(&self.value()).into_owned()
        }
    }

    /// Consul's `-detailed` block: labels padded to one column.
    fn detailed(&self, base64: bool) -> String {
        let session = self
            .session
            .as_deref()
            .filter(|s| !s.is_empty())
            .unwrap_or("-");
        let rows = [
            ("CreateIndex", self.create_index.to_string()),
            ("Flags", self.flags.to_string()),
            ("Key", self.key.clone()),
            ("LockIndex", self.lock_index.to_string()),
            ("ModifyIndex", self.modify_index.to_string()),
            ("Session", session.to_owned()),
            ("Value", self.shown(base64)),
        ];
        rows.iter()
            .map(|(label, value)| format!("{label:<17}{value}"))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

async fn read_entries(client: &ApiClient, path: &str) -> Result<Vec<Entry>, Failure> {
    let answer = client
        .send(Method::GET, path, Vec::new())
        .await
        .map_err(|e| Failure(format!("Error querying Consul agent: {e}")))?;
    match answer.status {
        StatusCode::NOT_FOUND => Ok(Vec::new()),
        StatusCode::OK => serde_json::from_slice(&answer.body)
            .map_err(|e| Failure(format!("Error querying Consul agent: {e}"))),
        _ => fail(format!(
            "Error querying Consul agent: {}",
            answer.unexpected()
        )),
    }
}

async fn get(c: KvGet) -> Outcome {
    let key = one_key(&c.args)?;
    if key.is_empty() && !c.recurse && !c.keys {
        return fail("Error! Missing KEY argument");
    }
    let client = connect(&c.http)?;
    if c.keys && !c.recurse {
        let path = format!(
            "/v1/kv/{}?keys&separator={}",
            escape_key(&key),
            escape_key(&c.separator).replace('/', "%2F")
        );
        let answer = client
            .send(Method::GET, &path, Vec::new())
            .await
            .map_err(|e| Failure(format!("Error querying Consul agent: {e}")))?;
        match answer.status {
            StatusCode::NOT_FOUND => return Ok(()),
            StatusCode::OK => {}
            _ => {
                return fail(format!(
                    "Error querying Consul agent: {}",
                    answer.unexpected()
                ))
            }
        }
        let keys: Vec<String> = serde_json::from_slice(&answer.body)
            .map_err(|e| Failure(format!("Error querying Consul agent: {e}")))?;
        for key in keys {
            println!("{key}");
        }
        return Ok(());
    }
    if c.recurse {
        let entries =
            read_entries(&client, &format!("/v1/kv/{}?recurse", escape_key(&key))).await?;
        for (i, entry) in entries.iter().enumerate() {
            if c.keys {
                if c.detailed {
                    if i > 0 {
                        println!();
                    }
                    println!("{}", entry.detailed(c.base64));
                } else {
                    println!("{}", entry.key);
                }
            } else if c.detailed {
                if i > 0 {
                    println!();
                }
                println!("{}", entry.detailed(c.base64));
            } else {
                println!("{}:{}", entry.key, entry.shown(c.base64));
            }
        }
        return Ok(());
    }
    let entries = read_entries(&client, &format!("/v1/kv/{}", escape_key(&key))).await?;
    let Some(entry) = entries.first() else {
        return fail(format!("Error! No key exists at: {key}"));
    };
    if c.detailed {
        println!("{}", entry.detailed(c.base64));
    } else if c.base64 {
        println!("{}", entry.shown(true));
    } else {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(&entry.value());
        let _ = out.write_all(b"\n");
    }
    Ok(())
}

/// DATA as Consul reads it: `@file`, `-` for stdin, or the literal.
fn load_data(data: &str) -> Result<Vec<u8>, Failure> {
    if let Some(path) = data.strip_prefix('@') {
        return std::fs::read(path)
            .map_err(|e| Failure(format!("Error! Failed to read file: {e}")));
    }
    if data == "-" {
        let mut buffer = Vec::new();
        std::io::stdin()
            .read_to_end(&mut buffer)
            .map_err(|e| Failure(format!("Error! Failed to read stdin: {e}")))?;
        return Ok(buffer);
    }
    Ok(data.as_bytes().to_vec())
}

/// A KV write (`PUT` or `DELETE`), which answers `true` or `false`.
async fn write_bool(
    client: &ApiClient,
    method: Method,
    path: &str,
    body: Vec<u8>,
) -> Result<bool, String> {
    let answer = client.send(method, path, body).await?;
    if answer.status != StatusCode::OK {
        return Err(answer.unexpected());
    }
    serde_json::from_slice(&answer.body).map_err(|e| e.to_string())
}

async fn put(c: KvPut) -> Outcome {
    let (key, data) = match c.args.as_slice() {
        [] => return fail("Error! Missing KEY argument"),
        [key] => (key.clone(), String::new()),
        [key, data] => (key.clone(), data.clone()),
        more => {
            return fail(format!(
                "Error! Too many arguments (expected 1 or 2, got {})",
                more.len()
            ))
        }
    };
    let mut value = load_data(&data)?;
    if c.base64 {
        match BASE64.decode(&value) {
            Ok(decoded) => value = decoded,
            Err(e) => return fail(format!("Error! Cannot base 64 decode data: {e}")),
        }
    }
    if (c.acquire || c.release) && c.session.is_empty() {
        return fail("Error! Missing -session (required with -acquire and -release)");
    }
    let client = connect(&c.http)?;
    let invalid = key
        .starts_with('/')
        .then(|| format!("Invalid key. Key must not begin with a '/': {key}"));
    let mut path = format!("/v1/kv/{}", escape_key(&key));
    let mut query = Vec::new();
    if c.flags != 0 {
        query.push(format!("flags={}", c.flags));
    }
    if c.cas {
        query.push(format!("cas={}", c.modify_index));
    } else if c.acquire {
        query.push(format!("acquire={}", c.session));
    } else if c.release {
        query.push(format!("release={}", c.session));
    }
    if !query.is_empty() {
        path = format!("{path}?{}", query.join("&"));
    }
    let result = match invalid {
        Some(message) => Err(message),
        None => write_bool(&client, Method::PUT, &path, value).await,
    };
    if c.cas {
        return match result {
            Err(e) => fail(format!("Error! Did not write to {key}: {e}")),
            Ok(false) if c.modify_index == 0 => fail(format!(
                "Error! Did not write to {key}: CAS performed with index=0 and key already exists."
            )),
            Ok(false) => fail(format!("Error! Did not write to {key}: CAS failed")),
            Ok(true) => {
                println!("Success! Data written to: {key}");
                Ok(())
            }
        };
    }
    if c.acquire {
        return match result {
            Err(e) => fail(format!("Error! Failed writing data: {e}")),
            Ok(false) => fail("Error! Did not acquire lock"),
            Ok(true) => {
                println!("Success! Lock acquired on: {key}");
                Ok(())
            }
        };
    }
    if c.release {
        return match result {
            Err(_) => fail(format!("Error! Failed writing data: {key}")),
            Ok(false) => fail("Error! Did not release lock"),
            Ok(true) => {
                println!("Success! Lock released on: {key}");
                Ok(())
            }
        };
    }
    match result {
        Err(e) => fail(format!("Error! Failed writing data: {e}")),
        Ok(_) => {
            println!("Success! Data written to: {key}");
            Ok(())
        }
    }
}

async fn delete(c: KvDelete) -> Outcome {
    let key = one_key(&c.args)?;
    if key.is_empty() && !c.recurse {
        return fail("Error! Missing KEY argument");
    }
    if c.cas && c.modify_index == 0 {
        return fail(
            "Cannot delete a key that does not exist. Provide a -modify-index greater than than 0.",
        );
    }
    if c.modify_index != 0 && !c.cas {
        return fail("Cannot specify -modify-index without -cas!");
    }
    if c.cas && c.recurse {
        return fail("Cannot specify both -cas and -recurse!");
    }
    let client = connect(&c.http)?;
    let base = format!("/v1/kv/{}", escape_key(&key));
    if c.recurse {
        return match write_bool(
            &client,
            Method::DELETE,
            &format!("{base}?recurse"),
            Vec::new(),
        )
        .await
        {
            Err(e) => fail(format!("Error! Did not delete prefix {key}: {e}")),
            Ok(_) => {
                println!("Success! Deleted keys with prefix: {key}");
                Ok(())
            }
        };
    }
    if c.cas {
        return match write_bool(
            &client,
            Method::DELETE,
            &format!("{base}?cas={}", c.modify_index),
            Vec::new(),
        )
        .await
        {
            Err(e) => fail(format!("Error! Did not delete key {key}: {e}")),
            Ok(false) => fail(format!("Error! Did not delete key {key}: CAS failed")),
            Ok(true) => {
                println!("Success! Deleted key: {key}");
                Ok(())
            }
        };
    }
    match write_bool(&client, Method::DELETE, &base, Vec::new()).await {
        Err(e) => fail(format!("Error deleting key {key}: {e}")),
        Ok(_) => {
            println!("Success! Deleted key: {key}");
            Ok(())
        }
    }
}

/// One exported pair, in `consul kv export`'s shape.
#[derive(Serialize, Deserialize)]
struct Exported {
    key: String,
    flags: u64,
    value: String,
}

async fn export(c: KvExport) -> Outcome {
    let prefix = one_key(&c.args)?;
    let client = connect(&c.http)?;
    let entries = read_entries(&client, &format!("/v1/kv/{}?recurse", escape_key(&prefix))).await?;
    let exported: Vec<Exported> = entries
        .iter()
        .map(|e| Exported {
            key: e.key.clone(),
            flags: e.flags,
            value: BASE64.encode(e.value()),
        })
        .collect();
    let json =
        tab_indented(&exported).map_err(|e| Failure(format!("Error exporting KV data: {e}")))?;
    println!("{json}");
    Ok(())
}

fn tab_indented<T: Serialize>(value: &T) -> Result<String, serde_json::Error> {
    let mut out = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b"\t");
    let mut serializer = serde_json::Serializer::with_formatter(&mut out, formatter);
    value.serialize(&mut serializer)?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

async fn import(c: KvImport) -> Outcome {
    let data = match c.args.as_slice() {
        [] => return fail("Error! Missing DATA argument"),
        [data] if data.is_empty() => return fail("Error! Empty DATA argument"),
        [data] => load_data(data)?,
        more => {
            return fail(format!(
                "Error! Too many arguments (expected 1, got {})",
                more.len()
            ))
        }
    };
    let entries: Vec<Exported> = serde_json::from_slice(&data)
        .map_err(|e| Failure(format!("Cannot unmarshal data: {e}")))?;
    let client = connect(&c.http)?;
    for entry in entries {
        let mut key = entry.key.clone();
        if !c.prefix.is_empty() {
            let joined = format!(
                "{}/{}",
                c.prefix.trim_end_matches('/'),
                key.trim_start_matches('/')
            );
            key = if entry.key.ends_with('/') && !joined.ends_with('/') {
                format!("{joined}/")
            } else {
                joined
            };
        }
        let value = BASE64.decode(&entry.value).map_err(|e| {
            Failure(format!(
                "Error base 64 decoding value for key {}: {e}",
                entry.key
            ))
        })?;
        let mut path = format!("/v1/kv/{}", escape_key(&key));
        if entry.flags != 0 {
            path.push_str(&format!("?flags={}", entry.flags));
        }
        write_bool(&client, Method::PUT, &path, value)
            .await
            .map_err(|e| Failure(format!("Error! Failed writing data for key {key}: {e}")))?;
        println!("Imported: {key}");
    }
    Ok(())
}
