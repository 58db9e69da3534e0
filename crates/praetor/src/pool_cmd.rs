//! `praetor join`, `praetor leave` and `praetor force-leave`: the LAN pool
//! verbs, with `consul`'s messages and exit codes.

use hyper::Method;

use crate::catalog_cmd::{block_on, call, connect, fail, Failure};
use crate::cli::{ForceLeaveArgs, JoinArgs, LeaveArgs};

const JOIN_HELP: &str = "Usage: praetor join [options] address ...

  Tells a running agent (with \"praetor agent\") to join the cluster
  by specifying at least one existing member.";

const LEAVE_HELP: &str = "Usage: praetor leave [options]

  Causes the agent to gracefully leave the cluster and shutdown.";

const FORCE_LEAVE_HELP: &str = "Usage: praetor force-leave [options] name

  Forces a member of the cluster to enter the \"left\" state. Note
  that if the member is still actually alive, it will eventually rejoin
  the cluster. This command is most useful for cleaning out \"failed\" nodes
  that are never coming back. If you do not force leave a failed node,
  the agents will attempt to reconnect to those failed nodes for some period
  of time before eventually reaping them.";

pub fn run_join(c: JoinArgs) -> u8 {
    block_on(join(c))
}

pub fn run_leave(c: LeaveArgs) -> u8 {
    block_on(leave(c))
}

pub fn run_force_leave(c: ForceLeaveArgs) -> u8 {
    block_on(force_leave(c))
}

/// One URL path segment, escaped as Go escapes a path (`:` and `@` stay as
/// they are), with `/` escaped too so that it stays one segment.
fn path_segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' => out.push(b as char),
            b'-' | b'_' | b'.' | b'~' | b':' | b'@' | b'$' | b'&' | b'+' | b',' | b';' | b'=' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

async fn join(c: JoinArgs) -> Result<u8, Failure> {
    if c.args.is_empty() {
        return fail(format!(
            "At least one address to join must be specified.\n\n{JOIN_HELP}"
        ));
    }
    let client = connect(&c.http)?;
    let mut joined = 0;
    for address in &c.args {
        let mut path = format!("/v1/agent/join/{}", path_segment(address));
        if c.wan {
            path.push_str("?wan=1");
        }
        match call(&client, Method::PUT, &path, Vec::new()).await {
            Ok(_) => joined += 1,
            Err(e) => eprintln!("Error joining address '{address}': {e}"),
        }
    }
    if joined == 0 {
        return fail("Failed to join any nodes.");
    }
    println!("Successfully joined cluster by contacting {joined} nodes.");
    Ok(0)
}

/// Go's `%v` of a string slice: `[a b c]`.
fn go_list(items: &[String]) -> String {
    format!("[{}]", items.join(" "))
}

async fn leave(c: LeaveArgs) -> Result<u8, Failure> {
    if !c.args.is_empty() {
        eprintln!("Error found unexpected args: {}", go_list(&c.args));
        println!("{LEAVE_HELP}");
        return Ok(1);
    }
    let client = connect(&c.http)?;
    call(&client, Method::PUT, "/v1/agent/leave", Vec::new())
        .await
        .map_err(|e| Failure(format!("Error leaving: {e}")))?;
    println!("Graceful leave complete");
    Ok(0)
}

async fn force_leave(c: ForceLeaveArgs) -> Result<u8, Failure> {
    let [node] = c.args.as_slice() else {
        return fail(format!(
            "A single node name must be specified to force leave.\n\n{FORCE_LEAVE_HELP}"
        ));
    };
    let client = connect(&c.http)?;
    let mut query = Vec::new();
    if c.prune {
        query.push("prune=1");
    }
    if c.wan {
        query.push("wan=1");
    }
    let mut path = format!("/v1/agent/force-leave/{}", path_segment(node));
    if !query.is_empty() {
        path.push('?');
        path.push_str(&query.join("&"));
    }
    call(&client, Method::PUT, &path, Vec::new())
        .await
        .map_err(|e| Failure(format!("Error force leaving: {e}")))?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_keep_their_colon_and_lose_their_slashes() {
        assert_eq!(path_segment("127.0.0.1:8301"), "127.0.0.1:8301");
        assert_eq!(path_segment("[::1]:8301"), "%5B::1%5D:8301");
        assert_eq!(path_segment("a/b"), "a%2Fb");
    }

    #[test]
    fn go_prints_string_slices_in_brackets() {
        assert_eq!(go_list(&["a".to_owned(), "b c".to_owned()]), "[a b c]");
    }
}
