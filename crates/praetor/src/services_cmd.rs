//! `praetor services register|deregister`: services from flags or from
//! agent configuration files (JSON or HCL `service`/`services` blocks),
//! with Consul's messages.

use std::collections::BTreeMap;
use std::path::PathBuf;

use agent::config::AgentFlags;
use agent::service_definition::ServiceDefinition;
use hyper::Method;
use serde_json::{json, Map, Value};

use crate::catalog_cmd::{block_on, call, connect, fail, parse_map, Failure};
use crate::cli::{ServicesCommand, ServicesDeregister, ServicesRegister};
use crate::client::escape_key;

pub fn run(command: ServicesCommand) -> u8 {
    block_on(async {
        match command {
            ServicesCommand::Register(c) => register(c).await,
            ServicesCommand::Deregister(c) => deregister(c).await,
        }
    })
}

/// One service from a file: the block as written, and its decoded fields.
struct FileService {
    raw: Map<String, Value>,
    definition: ServiceDefinition,
}

/// Reads the service blocks of agent configuration files, as Consul's
/// `ServicesFromFiles` does (other agent keys are allowed and ignored).
fn services_from_files(files: &[String]) -> Result<Vec<FileService>, Failure> {
    let flags = AgentFlags {
        dev: true,
        node: Some("praetor-services".to_owned()),
        config_file: files.iter().map(PathBuf::from).collect(),
        ..AgentFlags::default()
    };
    let loaded = agent::config::load(&flags).map_err(|e| Failure(format!("Error: {e}")))?;
    let mut out = Vec::new();
    for block in loaded.config.services {
        let Value::Object(raw) = block else {
            return fail("Error: service definition must be an object");
        };
        let definition: ServiceDefinition = agent::decode::from_value(Value::Object(raw.clone()))
            .map_err(|e| Failure(format!("Error: {e}")))?;
        out.push(FileService { raw, definition });
    }
    Ok(out)
}

/// Two field names are the same to Consul's decoder if they agree ignoring
/// case and underscores.
fn same_field(a: &str, b: &str) -> bool {
    let norm = |s: &str| {
        s.chars()
            .filter(|c| *c != '_')
            .map(|c| c.to_ascii_lowercase())
            .collect::<String>()
    };
    norm(a) == norm(b)
}

/// Sets `field` in a definition block, replacing any spelling of it.
fn set_field(raw: &mut Map<String, Value>, field: &str, value: Value) {
    raw.retain(|k, _| !same_field(k, field));
    raw.insert(field.to_owned(), value);
}

/// A tagged address flag value, `address:port` or just an address.
fn service_address(value: &str) -> Value {
    if let Some((host, port)) = value.rsplit_once(':') {
        if let Ok(port) = port.parse::<u16>() {
            let host = host.trim_start_matches('[').trim_end_matches(']');
            return json!({"Address": host, "Port": port});
        }
    }
    json!({"Address": value, "Port": 0})
}

async fn register(c: ServicesRegister) -> Result<u8, Failure> {
    let port: u16 = c.port.parse().map_err(|_| {
        Failure(format!(
            "invalid value \"{}\" for flag -port: parse error",
            c.port
        ))
    })?;
    let meta = parse_map("meta", &c.meta)?;
    let tagged = parse_map("tagged-address", &c.tagged_address)?;
    let tagged: BTreeMap<String, Value> = tagged
        .into_iter()
        .map(|(k, v)| (k, service_address(&v)))
        .collect();

    if c.args.is_empty() && c.name.is_empty() {
        return fail("Service registration requires at least one argument or flags.");
    }
    if !c.args.is_empty() && !c.name.is_empty() {
        return fail("Service registration requires arguments or -id, not both.");
    }

    // (body, name shown) for each service to register.
    let mut registrations: Vec<(Value, String)> = Vec::new();
    if c.args.is_empty() {
        let mut body = Map::new();
        let strings = [
            ("Kind", &c.kind),
            ("ID", &c.id),
            ("Name", &c.name),
            ("Address", &c.address),
            ("SocketPath", &c.socket),
        ];
        for (field, value) in strings {
            if !value.is_empty() {
                body.insert(field.to_owned(), json!(value));
            }
        }
        if port != 0 {
            body.insert("Port".to_owned(), json!(port));
        }
        if !c.tag.is_empty() {
            body.insert("Tags".to_owned(), json!(c.tag));
        }
        if !meta.is_empty() {
            body.insert("Meta".to_owned(), json!(meta));
        }
        if !tagged.is_empty() {
            body.insert("TaggedAddresses".to_owned(), json!(tagged));
        }
        registrations.push((Value::Object(body), c.name.clone()));
    } else {
        for FileService {
            mut raw,
            definition: d,
        } in services_from_files(&c.args)?
        {
            // Consul's CombineArgs: a flag fills what the file left empty;
            // meta and tagged addresses merge, tags append.
            let mut name = d.name.clone();
            let fills = [
                ("ID", &c.id, d.id.is_empty()),
                ("Name", &c.name, d.name.is_empty()),
                ("Address", &c.address, d.address.is_empty()),
                ("Kind", &c.kind, d.kind.is_empty()),
                ("SocketPath", &c.socket, d.socket_path.is_empty()),
            ];
            for (field, value, empty) in fills {
                if !value.is_empty() && empty {
                    set_field(&mut raw, field, json!(value));
                    if field == "Name" {
                        name = value.clone();
                    }
                }
            }
            if port != 0 && d.port == 0 {
                set_field(&mut raw, "Port", json!(port));
            }
            if !meta.is_empty() {
                let mut merged: BTreeMap<String, Value> = d
                    .meta
                    .clone()
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k, json!(v)))
                    .collect();
                merged.extend(meta.iter().map(|(k, v)| (k.clone(), json!(v))));
                set_field(&mut raw, "Meta", json!(merged));
            }
            if !tagged.is_empty() {
                let mut merged: BTreeMap<String, Value> = d
                    .tagged_addresses
                    .clone()
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, a)| (k, json!({"Address": a.address, "Port": a.port})))
                    .collect();
                merged.extend(tagged.clone());
                set_field(&mut raw, "TaggedAddresses", json!(merged));
            }
            if !c.tag.is_empty() {
                let mut tags = d.tags.clone().unwrap_or_default();
                tags.extend(c.tag.iter().cloned());
                set_field(&mut raw, "Tags", json!(tags));
            }
            registrations.push((Value::Object(raw), name));
        }
    }

    let client = connect(&c.http)?;
    for (body, name) in registrations {
        let body = serde_json::to_vec(&body).map_err(|e| Failure(e.to_string()))?;
        call(&client, Method::PUT, "/v1/agent/service/register", body)
            .await
            .map_err(|e| Failure(format!("Error registering service \"{name}\": {e}")))?;
        println!("Registered service: {name}");
    }
    Ok(0)
}

async fn deregister(c: ServicesDeregister) -> Result<u8, Failure> {
    if c.args.is_empty() && c.id.is_empty() {
        return fail("Service deregistration requires at least one argument or -id.");
    }
    if !c.args.is_empty() && !c.id.is_empty() {
        return fail("Service deregistration requires arguments or -id, not both.");
    }
    // (ID, name) of each service.
    let services: Vec<(String, String)> = if c.args.is_empty() {
        vec![(c.id.clone(), String::new())]
    } else {
        services_from_files(&c.args)?
            .into_iter()
            .map(|s| (s.definition.id, s.definition.name))
            .collect()
    };
    let client = connect(&c.http)?;
    for (id, name) in services {
        let id = if id.is_empty() { name.clone() } else { id };
        if id.is_empty() {
            continue;
        }
        let path = format!(
            "/v1/agent/service/deregister/{}",
            escape_key(&id).replace('/', "%2F")
        );
        call(&client, Method::PUT, &path, Vec::new())
            .await
            .map_err(|e| Failure(format!("Error registering service \"{name}\": {e}")))?;
        println!("Deregistered service: {id}");
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_field_replaces_any_spelling() {
        let mut raw = Map::new();
        raw.insert("socket_path".into(), json!("a"));
        set_field(&mut raw, "SocketPath", json!("b"));
        assert_eq!(Value::Object(raw), json!({"SocketPath": "b"}));
    }

    #[test]
    fn tagged_addresses_split_the_port() {
        assert_eq!(
            service_address("10.0.0.1:80"),
            json!({"Address": "10.0.0.1", "Port": 80})
        );
        assert_eq!(
            service_address("example.com"),
            json!({"Address": "example.com", "Port": 0})
        );
    }
}
