//! `praetor members`: the LAN pool's members in Consul's table (an agent
//! without `/v1/agent/members` shows its own member from `/v1/agent/self`).

use std::collections::BTreeMap;

use hyper::StatusCode;
use serde::Deserialize;

use crate::catalog_cmd::{block_on, columnize, connect, push_query, Failure};
use crate::cli::MembersArgs;

pub fn run(c: MembersArgs) -> u8 {
    block_on(members(c))
}

#[derive(Deserialize, Clone)]
struct Member {
    #[serde(rename = "Name", default)]
    name: String,
    #[serde(rename = "Addr", default)]
    addr: String,
    #[serde(rename = "Port", default)]
    port: u16,
    #[serde(rename = "Tags", default)]
    tags: Option<BTreeMap<String, String>>,
    #[serde(rename = "Status", default)]
    status: i64,
}

#[derive(Deserialize)]
struct SelfInfo {
    #[serde(rename = "Member")]
    member: Member,
}

/// serf's `MemberStatus` names.
fn status_name(status: i64) -> String {
    match status {
        0 => "none".to_owned(),
        1 => "alive".to_owned(),
        2 => "leaving".to_owned(),
        3 => "left".to_owned(),
        4 => "failed".to_owned(),
        n => format!("unknown MemberStatus({n})"),
    }
}

/// Go's `net.TCPAddr.String()`.
fn tcp_addr(ip: &str, port: u16) -> String {
    match ip.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V6(v6)) => format!("[{v6}]:{port}"),
        Ok(ip) => format!("{ip}:{port}"),
        Err(_) => format!(":{port}"),
    }
}

async fn fetch(c: &MembersArgs) -> Result<Vec<Member>, String> {
    let client = crate::catalog_cmd::connect(&c.http).map_err(|f| f.0)?;
    let mut query = String::new();
    if !c.segment.is_empty() {
        push_query(&mut query, "segment", &c.segment);
    }
    if c.wan {
        push_query(&mut query, "wan", "1");
    }
    if !c.filter.is_empty() {
        push_query(&mut query, "filter", &c.filter);
    }
    let answer = client
        .send(
            hyper::Method::GET,
            &format!("/v1/agent/members{query}"),
            Vec::new(),
        )
        .await?;
    if answer.status == StatusCode::OK {
        // `null` from an agent in no WAN pool: no members.
        let members: Option<Vec<Member>> =
            serde_json::from_slice(&answer.body).map_err(|e| e.to_string())?;
        return Ok(members.unwrap_or_default());
    }
    if answer.status != StatusCode::NOT_FOUND || c.wan {
        return Err(answer.unexpected());
    }
    let (info, _): (SelfInfo, _) = crate::catalog_cmd::get_json(&client, "/v1/agent/self").await?;
    Ok(vec![info.member])
}

fn is_default(partition: &str) -> bool {
    partition.is_empty() || partition == "default"
}

async fn members(c: MembersArgs) -> Result<u8, Failure> {
    let status_re = regex::Regex::new(&c.status)
        .map_err(|e| Failure(format!("Failed to compile status regexp: {e}")))?;
    connect(&c.http)?;
    let all = fetch(&c)
        .await
        .map_err(|e| Failure(format!("Error retrieving members: {e}")))?;
    let mut members = Vec::new();
    for mut member in all {
        let tags = member.tags.get_or_insert_with(BTreeMap::new);
        if tags.get("ap").is_none_or(|p| p.is_empty()) {
            tags.insert("ap".to_owned(), "default".to_owned());
        }
        if is_default(&tags["ap"]) {
            if c.segment == "_all" && tags.get("role").is_some_and(|r| r == "consul") {
                tags.insert("segment".to_owned(), "<all>".to_owned());
            } else if tags.get("segment").is_none_or(|s| s.is_empty()) {
                tags.insert("segment".to_owned(), "<default>".to_owned());
            }
        } else {
            tags.insert("segment".to_owned(), String::new());
        }
        if status_re.is_match(&status_name(member.status)) {
            members.push(member);
        }
    }
    if members.is_empty() {
        return Ok(2);
    }
    let tag = |m: &Member, k: &str| -> String {
        m.tags
            .as_ref()
            .and_then(|t| t.get(k))
            .cloned()
            .unwrap_or_default()
    };
    members.sort_by(|a, b| {
        let server = |m: &Member| tag(m, "role") != "consul";
        let default = |m: &Member| !is_default(&tag(m, "ap"));
        server(a)
            .cmp(&server(b))
            .then(default(a).cmp(&default(b)))
            .then(tag(a, "segment").cmp(&tag(b, "segment")))
            .then(tag(a, "ap").cmp(&tag(b, "ap")))
            .then(a.name.cmp(&b.name))
    });

    let mut rows: Vec<Vec<String>> = Vec::with_capacity(members.len() + 1);
    if c.detailed {
        rows.push(
            ["Node", "Address", "Status", "Tags"]
                .map(str::to_owned)
                .to_vec(),
        );
        for m in &members {
            let tags = m
                .tags
                .iter()
                .flatten()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(",");
            rows.push(vec![
                m.name.clone(),
                tcp_addr(&m.addr, m.port),
                status_name(m.status),
                tags,
            ]);
        }
    } else {
        rows.push(
            [
                "Node",
                "Address",
                "Status",
                "Type",
                "Build",
                "Protocol",
                "DC",
                "Partition",
                "Segment",
            ]
            .map(str::to_owned)
            .to_vec(),
        );
        for m in &members {
            let mut build = tag(m, "build");
            if build.is_empty() {
                build = "< 0.3".to_owned();
            } else if let Some(i) = build.find(':') {
                build.truncate(i);
            }
            let kind = match tag(m, "role").as_str() {
                "node" => "client",
                "consul" => "server",
                _ => "unknown",
            };
            let mut row = vec![
                m.name.clone(),
                tcp_addr(&m.addr, m.port),
                status_name(m.status),
            ];
            if kind == "unknown" {
                row.extend(["unknown", "", "", "", "", ""].map(str::to_owned));
            } else {
                row.extend([
                    kind.to_owned(),
                    build,
                    tag(m, "vsn"),
                    tag(m, "dc"),
                    tag(m, "ap"),
                    tag(m, "segment"),
                ]);
            }
            rows.push(row);
        }
    }
    println!("{}", columnize(&rows));
    Ok(0)
}
