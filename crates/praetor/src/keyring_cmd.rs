//! `praetor keygen` and `praetor keyring`: making gossip encryption keys
//! and rotating them across the pool through `/v1/operator/keyring`, with
//! `consul keyring`'s output and exit codes (0 only when every member
//! answered without error).

use std::collections::BTreeMap;

use clap::Args;
use hyper::Method;
use serde::Deserialize;

use crate::catalog_cmd::{block_on, call, connect, fail, Failure};
use crate::cli::HttpFlags;

const HELP: &str = "Usage: praetor keyring [options]

  Manages encryption keys used for gossip messages. Gossip encryption is
  optional. When enabled, this command may be used to examine active encryption
  keys in the cluster, add new keys, and remove old ones. When combined, this
  functionality provides the ability to perform key rotation cluster-wide,
  without disrupting the cluster.

  All variations of the keyring command return 0 if all nodes reply and there
  are no errors. If any node fails to reply or reports failure, the exit code
  will be 1.

Command Options:

  -install=<string>   Install a new encryption key. This will broadcast the
                      new key to all members in the cluster.
  -list               List all keys currently in use within the cluster.
  -list-primary       List all primary keys currently in use within the
                      cluster.
  -local-only         Only hit local servers; list queries only.
  -relay-factor=<int> Relay each answer through this many other members
                      (at most 5).
  -remove=<string>    Remove the given key from the cluster.
  -use=<string>       Change the primary encryption key. The key must already
                      be installed.";

#[derive(Args)]
pub struct KeygenArgs {
    #[arg(allow_hyphen_values = true)]
    pub args: Vec<String>,
}

#[derive(Args)]
pub struct KeyringArgs {
    #[command(flatten)]
    pub http: HttpFlags,
    #[arg(long, default_value = "")]
    pub install: String,
    #[arg(long = "use", default_value = "")]
    pub use_key: String,
    #[arg(long, default_value = "")]
    pub remove: String,
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false")]
    pub list: bool,
    #[arg(long = "list-primary", num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false")]
    pub list_primary: bool,
    #[arg(long = "relay-factor", default_value_t = 0)]
    pub relay_factor: i64,
    #[arg(long = "local-only", num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false")]
    pub local_only: bool,
    #[arg(allow_hyphen_values = true)]
    pub args: Vec<String>,
}

/// `keygen`: a fresh 32-byte key in base64.
pub fn keygen(_: KeygenArgs) -> u8 {
    println!("{}", agent::keyring::generate_key());
    0
}

pub fn run(c: KeyringArgs) -> u8 {
    block_on(keyring(c))
}

/// One pool's answer, as `/v1/operator/keyring` lists it.
#[derive(Deserialize, Debug)]
#[serde(rename_all = "PascalCase")]
struct Pool {
    #[serde(rename = "WAN", default)]
    wan: bool,
    #[serde(default)]
    datacenter: String,
    #[serde(default)]
    segment: String,
    #[serde(default)]
    messages: Option<BTreeMap<String, String>>,
    #[serde(default)]
    keys: Option<BTreeMap<String, u64>>,
    #[serde(default)]
    primary_keys: Option<BTreeMap<String, u64>>,
    #[serde(default)]
    num_nodes: u64,
}

/// `consul keyring`'s block for one pool: its name, each member's
/// message, then each key with how many members hold it.
fn format_pool(pool: &Pool, keys: Option<&BTreeMap<String, u64>>) -> String {
    let mut out = String::from("\n");
    out.push_str(&if pool.wan {
        "WAN".to_owned()
    } else {
        format!("{} (LAN)", pool.datacenter)
    });
    if !pool.segment.is_empty() {
        out.push_str(&format!(" [{}]", pool.segment));
    }
    out.push_str(":\n");
    for (from, message) in pool.messages.iter().flatten() {
        out.push_str(&format!("  ===> {from}: {message}\n"));
    }
    for (key, count) in keys.into_iter().flatten() {
        out.push_str(&format!("  {key} [{count}/{}]\n", pool.num_nodes));
    }
    out.trim_end_matches('\n').to_owned()
}

enum Action {
    List { primary: bool },
    Change { method: Method, key: String },
}

fn action(c: &KeyringArgs) -> Result<Action, Failure> {
    let mut actions = Vec::new();
    if c.list {
        actions.push(Action::List { primary: false });
    }
    if c.list_primary {
        actions.push(Action::List { primary: true });
    }
    for (method, key) in [
        (Method::POST, &c.install),
        (Method::PUT, &c.use_key),
        (Method::DELETE, &c.remove),
    ] {
        if !key.is_empty() {
            actions.push(Action::Change {
                method,
                key: key.clone(),
            });
        }
    }
    if actions.len() > 1 {
        return fail("Only a single action is allowed");
    }
    match actions.pop() {
        Some(a) => Ok(a),
        None => fail(HELP),
    }
}

async fn keyring(c: KeyringArgs) -> Result<u8, Failure> {
    let action = action(&c)?;
    if !(0..=5).contains(&c.relay_factor) {
        return fail("Error parsing relay factor: Relay factor must be in range: [0, 5]");
    }
    if c.local_only && !c.list {
        return fail("Error validating local-only: local-only can only be set for list requests");
    }
    let client = connect(&c.http)?;
    let mut query = Vec::new();
    if c.relay_factor != 0 {
        query.push(format!("relay-factor={}", c.relay_factor));
    }
    match action {
        Action::List { primary } => {
            if c.local_only {
                query.push("local-only=true".to_owned());
            }
            println!(
                "==> Gathering installed {}encryption keys...",
                if primary { "primary " } else { "" }
            );
            let answer = call(&client, Method::GET, &path(&query), Vec::new())
                .await
                .map_err(|e| Failure(format!("error: {e}")))?;
            let pools: Vec<Pool> =
                serde_json::from_slice(&answer.body).map_err(|e| Failure(format!("error: {e}")))?;
            for pool in &pools {
                let keys = if primary {
                    pool.primary_keys.as_ref()
                } else {
                    pool.keys.as_ref()
                };
                println!("{}", format_pool(pool, keys));
            }
        }
        Action::Change { method, key } => {
            println!(
                "==> {}",
                match method {
                    Method::POST => "Installing new gossip encryption key...",
                    Method::PUT => "Changing primary gossip encryption key...",
                    _ => "Removing gossip encryption key...",
                }
            );
            let body = serde_json::json!({ "Key": key }).to_string().into_bytes();
            call(&client, method, &path(&query), body)
                .await
                .map_err(|e| Failure(format!("error: {e}")))?;
        }
    }
    Ok(0)
}

fn path(query: &[String]) -> String {
    if query.is_empty() {
        "/v1/operator/keyring".to_owned()
    } else {
        format!("/v1/operator/keyring?{}", query.join("&"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pool_prints_as_consul_keyring_prints_it() {
        let pool: Pool = serde_json::from_str(
            r#"{"WAN":false,"Datacenter":"dc1","Segment":"","Keys":{"K1":3,"K2":2},
                "PrimaryKeys":{"K1":3},"NumNodes":3,"Messages":{"c1":"hi"}}"#,
        )
        .unwrap();
        assert_eq!(
            format_pool(&pool, pool.keys.as_ref()),
            "\ndc1 (LAN):\n  ===> c1: hi\n  K1 [3/3]\n  K2 [2/3]"
        );
        assert_eq!(
            format_pool(&pool, pool.primary_keys.as_ref()),
            "\ndc1 (LAN):\n  ===> c1: hi\n  K1 [3/3]"
        );
        let wan: Pool = serde_json::from_str(r#"{"WAN":true,"Keys":null,"NumNodes":1}"#).unwrap();
        assert_eq!(format_pool(&wan, wan.keys.as_ref()), "\nWAN:");
    }
}
