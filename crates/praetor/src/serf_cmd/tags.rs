//! `praetor serf tags`.

use super::{connect, parse_tags, say, TagsArgs};

const HELP: &str = "Usage: praetor serf tags [options] ...

  Changes the tags of a running Serf agent's node.

Options:

  -rpc-addr=127.0.0.1:7373  The agent's RPC address.
  -rpc-auth=\"\"              The agent's RPC token.
  -set key=value            Sets a tag (repeatable).
  -delete key               Deletes a tag if it is there (repeatable).";

pub async fn run(a: TagsArgs) -> u8 {
    if a.set.is_empty() && a.delete.is_empty() {
        say(HELP);
        return 1;
    }
    let client = match connect(&a.rpc).await {
        Ok(c) => c,
        Err(code) => return code,
    };
    let tags = match parse_tags(&a.set) {
        Ok(tags) => tags,
        Err(e) => {
            say(format!("Error: {e}"));
            return 1;
        }
    };
    let result = client.update_tags(tags, a.delete).await;
    client.close().await;
    match result {
        Ok(()) => {
            say("Successfully updated agent tags");
            0
        }
        Err(e) => {
            say(format!("Error setting tags: {e}"));
            1
        }
    }
}
