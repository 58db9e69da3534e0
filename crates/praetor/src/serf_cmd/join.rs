//! `praetor serf join`, `leave` and `force-leave`.

use super::{connect, say, usage_error, ForceLeaveArgs, JoinArgs, LeaveArgs};

const JOIN_HELP: &str = "Usage: praetor serf join [options] address ...

  Asks a running Serf agent to join a cluster through one or more of its
  existing members.

Options:

  -replay                   Also deliver user events from before the join.
  -rpc-addr=127.0.0.1:7373  The agent's RPC address.
  -rpc-auth=\"\"              The agent's RPC token.";

const FORCE_LEAVE_HELP: &str = "Usage: praetor serf force-leave [options] name

  Puts a member of the cluster into the \"left\" state. Meant for failed
  members that will not return: without it the agent keeps trying to
  reconnect to them for a while before reaping them. A member that is in
  fact alive rejoins on its own.

Options:

  -prune                    Remove the member from the list right away.
  -rpc-addr=127.0.0.1:7373  The agent's RPC address.
  -rpc-auth=\"\"              The agent's RPC token.";

pub async fn join(a: JoinArgs) -> u8 {
    if a.args.is_empty() {
        return usage_error("At least one address to join must be specified.", JOIN_HELP);
    }
    let client = match connect(&a.rpc).await {
        Ok(c) => c,
        Err(code) => return code,
    };
    let result = client.join(a.args, a.replay).await;
    client.close().await;
    match result {
        Ok(n) => {
            say(format!(
                "Successfully joined cluster by contacting {n} nodes."
            ));
            0
        }
        Err(e) => {
            say(format!("Error joining the cluster: {e}"));
            1
        }
    }
}

pub async fn leave(a: LeaveArgs) -> u8 {
    let client = match connect(&a.rpc).await {
        Ok(c) => c,
        Err(code) => return code,
    };
    let result = client.leave().await;
    client.close().await;
    match result {
        Ok(()) => {
            say("Graceful leave complete");
            0
        }
        Err(e) => {
            say(format!("Error leaving: {e}"));
            1
        }
    }
}

pub async fn force_leave(a: ForceLeaveArgs) -> u8 {
    let [node] = a.args.as_slice() else {
        return usage_error(
            "A node name must be specified to force leave.",
            FORCE_LEAVE_HELP,
        );
    };
    let client = match connect(&a.rpc).await {
        Ok(c) => c,
        Err(code) => return code,
    };
    let result = client.force_leave(node, a.prune).await;
    client.close().await;
    match result {
        Ok(()) => 0,
        Err(e) => {
            say(format!("Error force leaving: {e}"));
            1
        }
    }
}
