//! `praetor serf keys` and `praetor serf keygen`.

use std::collections::BTreeMap;
use std::io::Read;

use base64::Engine;
use serf_rpc::{ClientError, KeyOutcome};

use super::{connect, say, KeygenArgs, KeysArgs};
use crate::catalog_cmd::columnize;

const HELP: &str = "Usage: praetor serf keys [options]...

  Manages the key ring Serf encrypts gossip with. Every change is sent to
  all members and applied on each; repeating one changes nothing.

  Several keys may be installed at once so that keys can be rotated: all
  of them decrypt, only the primary key encrypts.

  Exits 0 when every member answered without error, 1 otherwise.

Options:

  -install=<key>            Installs a key on every member (decryption only
                            until it becomes the primary key).
  -use=<key>                Makes an installed key the primary key.
  -remove=<key>             Removes a key; the primary key cannot be removed.
  -list                     Lists the installed keys and how many members
                            hold each.
  -rpc-addr=127.0.0.1:7373  The agent's RPC address.
  -rpc-auth=\"\"              The agent's RPC token.";

/// serf's keys command prints progress with this prefix.
fn info(text: &str) {
    say(format!("==> {text}"));
}

/// Prints the members that failed and the error; exit 1.
fn failed(messages: &BTreeMap<String, String>, what: &str, error: &str) -> u8 {
    if !messages.is_empty() {
        let rows: Vec<Vec<String>> = messages
            .iter()
            .map(|(node, message)| vec!["failed:".to_owned(), node.clone(), message.clone()])
            .collect();
        say(columnize(&rows));
    }
    say("");
    say(format!("{what}: {error}"));
    1
}

pub async fn run(a: KeysArgs) -> u8 {
    let actions = [
        a.list,
        !a.install.is_empty(),
        !a.use_key.is_empty(),
        !a.remove.is_empty(),
    ];
    match actions.iter().filter(|on| **on).count() {
        0 => {
            say(HELP);
            return 1;
        }
        1 => {}
        _ => {
            say("Only one of -install, -use, -remove, or -list allowed");
            return 1;
        }
    }
    let client = match connect(&a.rpc).await {
        Ok(c) => c,
        Err(code) => return code,
    };
    let code = if a.list {
        info("Asking all members for installed keys...");
        match outcome(client.list_keys().await) {
            Ok(out) => {
                info("Keys gathered, listing cluster keys...");
                say("");
                let total = out.response.num_nodes;
                let rows: Vec<Vec<String>> = out
                    .response
                    .keys
                    .iter()
                    .map(|(key, n)| vec![key.clone(), format!("[{n}/{total}]")])
                    .collect();
                say(columnize(&rows));
                0
            }
            Err((messages, e)) => failed(&messages, "Failed to gather member keys", &e),
        }
    } else if !a.install.is_empty() {
        info("Installing key on all members...");
        change(
            outcome(client.install_key(&a.install).await),
            "Error installing key",
            "Successfully installed key!",
        )
    } else if !a.use_key.is_empty() {
        info("Changing primary key on all members...");
        change(
            outcome(client.use_key(&a.use_key).await),
            "Error changing primary key",
            "Successfully changed primary key!",
        )
    } else {
        info("Removing key on all members...");
        change(
            outcome(client.remove_key(&a.remove).await),
            "Error removing key",
            "Successfully removed key!",
        )
    };
    client.close().await;
    code
}

/// The outcome, or the failed members' messages and the error.
fn outcome(
    result: Result<KeyOutcome, ClientError>,
) -> Result<KeyOutcome, (BTreeMap<String, String>, String)> {
    match result {
        Ok(KeyOutcome {
            response,
            error: Some(error),
        }) => Err((response.messages, error)),
        Ok(out) => Ok(out),
        Err(e) => Err((BTreeMap::new(), e.to_string())),
    }
}

fn change(
    result: Result<KeyOutcome, (BTreeMap<String, String>, String)>,
    what: &str,
    success: &str,
) -> u8 {
    match result {
        Ok(_) => {
            info(success);
            0
        }
        Err((messages, e)) => failed(&messages, what, &e),
    }
}

/// 32 random bytes, base64: a key `serf agent -encrypt` accepts.
pub fn keygen(_: KeygenArgs) -> u8 {
    let mut key = [0u8; 32];
    let read = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut key));
    match read {
        Ok(()) => {
            say(base64::engine::general_purpose::STANDARD.encode(key));
            0
        }
        Err(e) => {
            say(format!("Error reading random data: {e}"));
            1
        }
    }
}
