//! `praetor event`: fires a user event, as `consul event` does.

use hyper::Method;
use serde::Deserialize;

use crate::catalog_cmd::{block_on, call, connect, fail, node_name, push_query, Failure};
use crate::cli::EventArgs;
use crate::client::escape_key;

const HELP: &str = "Usage: praetor event [options] [payload]

  Dispatches a custom user event across a datacenter. An event must provide
  a name, but a payload is optional. Events support filtering using
  regular expressions on node name, service, and tag definitions.";

pub fn run(c: EventArgs) -> u8 {
    block_on(event(c))
}

fn check_regex(kind: &str, pattern: &str) -> Result<(), Failure> {
    if pattern.is_empty() {
        return Ok(());
    }
    regex::Regex::new(pattern)
        .map(|_| ())
        .map_err(|e| Failure(format!("Failed to compile {kind} filter regexp: {e}")))
}

async fn event(c: EventArgs) -> Result<u8, Failure> {
    if c.name.is_empty() {
        return fail(format!("Event name must be specified\n\n{HELP}"));
    }
    check_regex("node", &c.node)?;
    check_regex("service", &c.service)?;
    check_regex("tag", &c.tag)?;
    if !c.tag.is_empty() && c.service.is_empty() {
        return fail("Cannot provide tag filter without service filter.");
    }
    let payload = match c.args.as_slice() {
        [] => Vec::new(),
        [payload] => payload.as_bytes().to_vec(),
        _ => return fail(format!("Too many command line arguments.\n\n{HELP}")),
    };
    let client = connect(&c.http)?;
    node_name(&client).await?;

    let mut query = String::new();
    for (name, value) in [("node", &c.node), ("service", &c.service), ("tag", &c.tag)] {
        if !value.is_empty() {
            push_query(&mut query, name, value);
        }
    }
    let path = format!(
        "/v1/event/fire/{}{query}",
        escape_key(&c.name).replace('/', "%2F")
    );
    let answer = call(&client, Method::PUT, &path, payload)
        .await
        .map_err(|e| Failure(format!("Error firing event: {e}")))?;
    #[derive(Deserialize)]
    struct Fired {
        #[serde(rename = "ID")]
        id: String,
    }
    let fired: Fired = serde_json::from_slice(&answer.body)
        .map_err(|e| Failure(format!("Error firing event: {e}")))?;
    println!("Event ID: {}", fired.id);
    Ok(0)
}
