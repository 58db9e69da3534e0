//! `praetor maint`: node and service maintenance mode, with Consul's
//! messages.

use std::collections::BTreeMap;

use hyper::Method;
use serde::Deserialize;

use crate::catalog_cmd::{block_on, call, connect, fail, get_json, node_name, push_query, Failure};
use crate::cli::MaintArgs;
use crate::client::escape_key;

pub fn run(c: MaintArgs) -> u8 {
    block_on(maint(c))
}

#[derive(Deserialize)]
struct Check {
    #[serde(rename = "CheckID", default)]
    check_id: String,
    #[serde(rename = "ServiceID", default)]
    service_id: String,
    #[serde(rename = "Notes", default)]
    notes: String,
}

async fn maint(c: MaintArgs) -> Result<u8, Failure> {
    if c.enable && c.disable {
        return fail("Only one of -enable or -disable may be provided");
    }
    if !c.enable && !c.reason.is_empty() {
        return fail("Reason may only be provided with -enable");
    }
    if !c.enable && !c.disable && !c.service.is_empty() {
        return fail("Service requires either -enable or -disable");
    }
    let client = connect(&c.http)?;
    let node = node_name(&client).await?;

    if !c.enable && !c.disable {
        let (checks, _): (Option<BTreeMap<String, Check>>, _) =
            get_json(&client, "/v1/agent/checks")
                .await
                .map_err(|e| Failure(format!("Error getting checks: {e}")))?;
        for check in checks.unwrap_or_default().into_values() {
            if check.check_id == "_node_maintenance" {
                println!("Node:");
                println!("  Name:   {node}");
                println!("  Reason: {}", check.notes);
                println!();
            } else if check.check_id.starts_with("_service_maintenance:") {
                println!("Service:");
                println!("  ID:     {}", check.service_id);
                println!("  Reason: {}", check.notes);
                println!();
            }
        }
        return Ok(0);
    }

    let mut query = String::new();
    push_query(
        &mut query,
        "enable",
        if c.enable { "true" } else { "false" },
    );
    if c.enable {
        push_query(&mut query, "reason", &c.reason);
    }
    let verb = if c.enable { "enabl" } else { "disabl" };
    if c.service.is_empty() {
        call(
            &client,
            Method::PUT,
            &format!("/v1/agent/maintenance{query}"),
            Vec::new(),
        )
        .await
        .map_err(|e| Failure(format!("Error {verb}ing node maintenance: {e}")))?;
        println!("Node maintenance is now {verb}ed");
    } else {
        let path = format!(
            "/v1/agent/service/maintenance/{}{query}",
            escape_key(&c.service).replace('/', "%2F")
        );
        call(&client, Method::PUT, &path, Vec::new())
            .await
            .map_err(|e| Failure(format!("Error {verb}ing service maintenance: {e}")))?;
        println!(
            "Service maintenance is now {verb}ed for \"{}\"",
            c.service.escape_default()
        );
    }
    Ok(0)
}
