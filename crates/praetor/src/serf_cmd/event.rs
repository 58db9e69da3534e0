//! `praetor serf event`.

use super::{connect, say, usage_error, EventArgs};

const HELP: &str = "Usage: praetor serf event [options] name payload

  Fires a user event with an optional payload through the Serf cluster.

Options:

  -coalesce=true/false      Whether the agents may deliver only the last of
                            several events of this name that arrive close
                            together. Defaults to true.
  -rpc-addr=127.0.0.1:7373  The agent's RPC address.
  -rpc-auth=\"\"              The agent's RPC token.";

pub async fn run(a: EventArgs) -> u8 {
    let (name, payload) = match a.args.as_slice() {
        [] => return usage_error("An event name must be specified.", HELP),
        [name] => (name, &[][..]),
        [name, payload] => (name, payload.as_bytes()),
        _ => {
            return usage_error(
                "Too many command line arguments. Only a name and payload must be specified.",
                HELP,
            )
        }
    };
    let client = match connect(&a.rpc).await {
        Ok(c) => c,
        Err(code) => return code,
    };
    let result = client.user_event(name, payload, a.coalesce).await;
    client.close().await;
    match result {
        Ok(()) => {
            say(format!(
                "Event '{name}' dispatched! Coalescing enabled: {}",
                a.coalesce
            ));
            0
        }
        Err(e) => {
            say(format!("Error sending event: {e}"));
            1
        }
    }
}
