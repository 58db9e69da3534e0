//! Event handler scripts, as `serf agent -event-handler` runs them: a
//! filter (`member-join`, `user:deploy`, `query:uptime`, `*`, or a comma
//! list) and a shell command that receives the event on stdin and in
//! `SERF_*` environment variables. A query handler's output (its last
//! 8 KiB) becomes the node's response.

use std::process::Stdio;
use std::time::Duration;

use serf::{Event, Member};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

/// Output kept from a script (the tail, like Serf's circular buffer).
const MAX_OUTPUT: usize = 8 * 1024;
/// Scripts slower than this are logged.
const WARN_SLOW: Duration = Duration::from_secs(1);

/// Which events a script wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventFilter {
    /// `member-join` ... `member-reap`, `user`, `query` or `*`.
    pub event: String,
    /// For `user` and `query`: only this name (empty: any).
    pub name: String,
}

impl EventFilter {
    pub fn is_valid(&self) -> bool {
        matches!(
            self.event.as_str(),
            "member-join"
                | "member-leave"
                | "member-failed"
                | "member-update"
                | "member-reap"
                | "user"
                | "query"
                | "*"
        )
    }

    pub fn matches(&self, e: &Event) -> bool {
        if self.event == "*" {
            return true;
        }
        match e {
            Event::Member { kind, .. } => self.event == kind.as_str(),
            Event::User { name, .. } => {
                self.event == "user" && (self.name.is_empty() || &self.name == name)
            }
            Event::Query(q) => {
                self.event == "query" && (self.name.is_empty() || self.name == q.name)
            }
            _ => false,
        }
    }
}

/// One `-event-handler` entry expanded per filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventScript {
    pub filter: EventFilter,
    pub script: String,
}

impl std::fmt::Display for EventScript {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.filter.name.is_empty() {
            write!(
                f,
                "Event '{}' invoking '{}'",
                self.filter.event, self.script
            )
        } else {
            write!(
                f,
                "Event '{}:{}' invoking '{}'",
                self.filter.event, self.filter.name, self.script
            )
        }
    }
}

/// Parses `[filter=]script`.
pub fn parse_event_script(v: &str) -> Vec<EventScript> {
    let (filter, script) = match v.split_once('=') {
        Some((f, s)) => (f, s),
        None => ("", v),
    };
    parse_event_filter(filter)
        .into_iter()
        .map(|filter| EventScript {
            filter,
            script: script.to_string(),
        })
        .collect()
}

/// Parses a comma list of event filters (empty means `*`).
pub fn parse_event_filter(v: &str) -> Vec<EventFilter> {
    let v = if v.is_empty() { "*" } else { v };
    v.split(',')
        .map(|e| {
            if let Some(name) = e.strip_prefix("user:") {
                EventFilter {
                    event: "user".into(),
                    name: name.into(),
                }
            } else if let Some(name) = e.strip_prefix("query:") {
                EventFilter {
                    event: "query".into(),
                    name: name.into(),
                }
            } else {
                EventFilter {
                    event: e.into(),
                    name: String::new(),
                }
            }
        })
        .collect()
}

/// The event's name for `SERF_EVENT`.
pub fn event_type(e: &Event) -> &'static str {
    match e {
        Event::Member { kind, .. } => kind.as_str(),
        Event::User { .. } => "user",
        Event::Query(_) => "query",
        _ => "internal",
    }
}

/// `SERF_TAG_` + the upper-cased tag name with anything outside
/// `[A-Z0-9_]` replaced by `_`.
fn tag_env_name(tag: &str) -> String {
    let up: String = tag
        .to_uppercase()
        .chars()
        .map(|c| {
            if c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("SERF_TAG_{up}")
}

fn clean(v: &str) -> String {
    v.replace('\t', "\\t").replace('\n', "\\n")
}

/// What a member event writes on the script's stdin: one line per member,
/// `name\taddr\trole\ttag=value,...`.
pub fn member_lines(members: &[Member]) -> String {
    let mut out = String::new();
    for m in members {
        let tags: Vec<String> = m.tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let role = m.tags.get("role").map(String::as_str).unwrap_or("");
        out.push_str(&format!(
            "{}\t{}\t{}\t{}\n",
            clean(&m.name),
            m.addr,
            clean(role),
            clean(&tags.join(","))
        ));
    }
    out
}

/// Runs one script for one event; returns its output when it succeeded
/// (the caller sends it as the query response, if this was a query).
pub async fn invoke(script: &str, me: &Member, e: &Event) -> Result<Vec<u8>, String> {
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c").arg(script);
    cmd.env("SERF_EVENT", event_type(e));
    cmd.env("SERF_SELF_NAME", &me.name);
    cmd.env(
        "SERF_SELF_ROLE",
        me.tags.get("role").map(String::as_str).unwrap_or(""),
    );
    for (k, v) in &me.tags {
        cmd.env(tag_env_name(k), v);
    }
    let stdin = match e {
        Event::Member { members, .. } => member_lines(members).into_bytes(),
        Event::User {
            name,
            ltime,
            payload,
            ..
        } => {
            cmd.env("SERF_USER_EVENT", name);
            cmd.env("SERF_USER_LTIME", ltime.to_string());
            with_newline(payload)
        }
        Event::Query(q) => {
            cmd.env("SERF_QUERY_NAME", &q.name);
            cmd.env("SERF_QUERY_LTIME", q.ltime.to_string());
            with_newline(&q.payload)
        }
        _ => return Err(format!("Unknown event type: {}", event_type(e))),
    };
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd.kill_on_drop(true);
    let mut child = cmd.spawn().map_err(|e| e.to_string())?;
    if let Some(mut w) = child.stdin.take() {
        tokio::spawn(async move {
            let _ = w.write_all(&stdin).await;
        });
    }
    let mut out = child.stdout.take();
    let mut err = child.stderr.take();
    let read = async {
        let mut a = Vec::new();
        let mut b = Vec::new();
        let ra = async {
            if let Some(o) = out.as_mut() {
                let _ = o.read_to_end(&mut a).await;
            }
        };
        let rb = async {
            if let Some(o) = err.as_mut() {
                let _ = o.read_to_end(&mut b).await;
            }
        };
        tokio::join!(ra, rb);
        a.extend_from_slice(&b);
        a
    };
    let started = std::time::Instant::now();
    let (output, status) = tokio::join!(read, child.wait());
    if started.elapsed() > WARN_SLOW {
        tracing::warn!(
            script,
            "agent: Script slow, execution exceeding {WARN_SLOW:?}"
        );
    }
    let status = status.map_err(|e| e.to_string())?;
    let tail = output[output.len().saturating_sub(MAX_OUTPUT)..].to_vec();
    tracing::debug!(event = event_type(e), output = %String::from_utf8_lossy(&tail), "agent: script output");
    if !status.success() {
        return Err(format!("script '{script}' exited with {status}"));
    }
    Ok(tail)
}

fn with_newline(p: &[u8]) -> Vec<u8> {
    let mut v = p.to_vec();
    if v.last().is_some_and(|b| *b != b'\n') {
        v.push(b'\n');
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use serf::{MemberEventKind, MemberStatus};

    fn me() -> Member {
        let mut tags = serf::Tags::new();
        tags.insert("role".into(), "web".into());
        tags.insert("dc-name".into(), "east".into());
        Member {
            name: "a".into(),
            addr: "10.0.0.1".parse().unwrap(),
            port: 7946,
            tags,
            status: MemberStatus::Alive,
            vsn: [1, 5, 2, 2, 5, 5],
        }
    }

    #[test]
    fn filters_parse_like_serf() {
        let s = parse_event_script("member-join,user:deploy=handle.sh");
        assert_eq!(s.len(), 2);
        assert_eq!(
            s[1].filter,
            EventFilter {
                event: "user".into(),
                name: "deploy".into()
            }
        );
        assert_eq!(s[1].script, "handle.sh");
        assert_eq!(parse_event_script("all.sh")[0].filter.event, "*");
        assert!(!parse_event_filter("member-bogus")[0].is_valid());
        assert_eq!(s[1].to_string(), "Event 'user:deploy' invoking 'handle.sh'");
        let deploy = Event::User {
            ltime: 1,
            name: "deploy".into(),
            payload: vec![],
            coalesce: false,
        };
        let other = Event::User {
            ltime: 1,
            name: "x".into(),
            payload: vec![],
            coalesce: false,
        };
        assert!(s[1].filter.matches(&deploy));
        assert!(!s[1].filter.matches(&other));
        let join = Event::Member {
            kind: MemberEventKind::Join,
            members: vec![me()],
        };
        assert!(s[0].filter.matches(&join));
        assert_eq!(tag_env_name("dc-name"), "SERF_TAG_DC_NAME");
    }

    #[tokio::test]
    async fn scripts_get_serfs_environment_and_stdin() {
        let join = Event::Member {
            kind: MemberEventKind::Join,
            members: vec![me()],
        };
        let out = invoke(
            "echo $SERF_EVENT $SERF_SELF_NAME $SERF_SELF_ROLE $SERF_TAG_DC_NAME; cat",
            &me(),
            &join,
        )
        .await
        .unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "member-join a web east\na\t10.0.0.1\tweb\tdc-name=east,role=web\n"
        );
        let ev = Event::User {
            ltime: 7,
            name: "deploy".into(),
            payload: b"v2".to_vec(),
            coalesce: false,
        };
        let out = invoke("echo $SERF_USER_EVENT $SERF_USER_LTIME; cat", &me(), &ev)
            .await
            .unwrap();
        assert_eq!(out, b"deploy 7\nv2\n");
        assert!(invoke("exit 3", &me(), &ev).await.is_err());
        let big = invoke("head -c 20000 /dev/zero", &me(), &ev).await.unwrap();
        assert_eq!(big.len(), MAX_OUTPUT);
    }
}
