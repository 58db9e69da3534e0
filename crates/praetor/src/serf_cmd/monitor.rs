//! `praetor serf monitor`: the agent's log lines and events until Ctrl-C.

use serf_rpc::{EventRecord, Member};

use super::output::go_quote;
use super::{connect, say, MonitorArgs};

pub async fn run(a: MonitorArgs) -> u8 {
    let client = match connect(&a.rpc).await {
        Ok(c) => c,
        Err(code) => return code,
    };
    let mut events = match client.stream("*").await {
        Ok(s) => s,
        Err(e) => {
            say(format!("Error starting stream: {e}"));
            return 1;
        }
    };
    let mut logs = match client.monitor(&a.log_level).await {
        Ok(s) => s,
        Err(e) => {
            say(format!("Error starting monitor: {e}"));
            return 1;
        }
    };
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        tokio::select! {
            line = logs.recv() => match line {
                Some(line) => say(line),
                None => break,
            },
            event = events.recv() => match event {
                Some(event) => {
                    say("Event Info:");
                    for (key, value) in describe(&event) {
                        say(format!("\t{key}: {value}"));
                    }
                }
                None => break,
            },
            _ = &mut ctrl_c => {
                let _ = client.stop(logs.seq()).await;
                let _ = client.stop(events.seq()).await;
                client.close().await;
                return 0;
            }
        }
    }
    say("");
    say("Remote side ended the monitor! This usually means that the\nremote side has exited or crashed.");
    1
}

/// A record's fields as serf's monitor prints them (Go's `%#v` of what it
/// decoded): strings quoted, unsigned integers in hex, bytes as a list.
fn describe(event: &EventRecord) -> Vec<(&'static str, String)> {
    match event {
        EventRecord::User(e) => vec![
            ("Coalesce", e.coalesce.to_string()),
            ("Event", go_quote("user")),
            ("LTime", format!("{:#x}", e.ltime)),
            ("Name", go_quote(&e.name)),
            ("Payload", go_bytes(&e.payload)),
        ],
        EventRecord::Query {
            id,
            ltime,
            name,
            payload,
        } => vec![
            ("Event", go_quote("query")),
            ("ID", format!("{id:#x}")),
            ("LTime", format!("{ltime:#x}")),
            ("Name", go_quote(name)),
            ("Payload", go_bytes(payload)),
        ],
        EventRecord::Member { event, members } => vec![
            ("Event", go_quote(event)),
            (
                "Members",
                format!(
                    "[]interface {{}}{{{}}}",
                    members.iter().map(go_member).collect::<Vec<_>>().join(", ")
                ),
            ),
        ],
    }
}

fn go_bytes(b: &[u8]) -> String {
    if b.is_empty() {
        return "<nil>".to_owned();
    }
    let items: Vec<String> = b.iter().map(|x| format!("{x:#x}")).collect();
    format!("[]uint8{{{}}}", items.join(", "))
}

fn go_member(m: &Member) -> String {
    let tags: Vec<String> = m
        .tags
        .iter()
        .map(|(k, v)| format!("{}:{}", go_quote(k), go_quote(v)))
        .collect();
    let addr = match m.addr {
        std::net::IpAddr::V4(v4) => go_bytes(&v4.octets()),
        std::net::IpAddr::V6(v6) => go_bytes(&v6.octets()),
    };
    format!(
        "map[string]interface {{}}{{\"Addr\":{addr}, \"DelegateCur\":{:#x}, \"DelegateMax\":{:#x}, \"DelegateMin\":{:#x}, \"Name\":{}, \"Port\":{:#x}, \"ProtocolCur\":{:#x}, \"ProtocolMax\":{:#x}, \"ProtocolMin\":{:#x}, \"Status\":{}, \"Tags\":map[string]interface {{}}{{{}}}}}",
        m.delegate_cur,
        m.delegate_max,
        m.delegate_min,
        go_quote(&m.name),
        m.port,
        m.protocol_cur,
        m.protocol_max,
        m.protocol_min,
        go_quote(m.status.as_str()),
        tags.join(", ")
    )
}
