//! `praetor serf rtt`.

use super::output::go_quote;
use super::{connect, say, usage_error, RttArgs};

const HELP: &str = "Usage: praetor serf rtt [options] node1 [node2]

  Estimates the round trip time between two nodes from Serf's network
  coordinates. Without a second node, the agent's own node is used. The
  names are member names as `praetor serf members` shows them.

Options:

  -rpc-addr=127.0.0.1:7373  The agent's RPC address.
  -rpc-auth=\"\"              The agent's RPC token.";

pub async fn run(a: RttArgs) -> u8 {
    let client = match connect(&a.rpc).await {
        Ok(c) => c,
        Err(code) => return code,
    };
    let mut nodes = a.args.clone();
    if nodes.len() == 1 {
        match client.stats().await {
            Ok(stats) => {
                let own = stats
                    .get("agent")
                    .and_then(|agent| agent.get("name"))
                    .cloned()
                    .unwrap_or_default();
                nodes.push(own);
            }
            Err(e) => {
                say(format!("Error querying agent: {e}"));
                return 1;
            }
        }
    } else if nodes.len() != 2 {
        return usage_error("One or two node names must be specified", HELP);
    }
    let mut coords = Vec::with_capacity(2);
    for node in &nodes {
        match client.get_coordinate(node).await {
            Ok(Some(c)) => coords.push(c),
            Ok(None) => {
                say(format!(
                    "Could not find a coordinate for node {}",
                    go_quote(node)
                ));
                return 1;
            }
            Err(e) => {
                say(format!("Error getting coordinates: {e}"));
                return 1;
            }
        }
    }
    client.close().await;
    let Some(seconds) = coords[0].distance_to(&coords[1]) else {
        say("Error getting coordinates: coordinates have different dimensions");
        return 1;
    };
    say(format!(
        "Estimated {} <-> {} rtt: {}",
        nodes[0],
        nodes[1],
        millis(seconds)
    ));
    0
}

/// Go turns the distance into a `time.Duration` (whole nanoseconds,
/// truncated), then prints `Seconds()*1000` with three decimals.
fn millis(seconds: f64) -> String {
    let nanos = (seconds * 1.0e9) as i64;
    let secs = (nanos / 1_000_000_000) as f64 + (nanos % 1_000_000_000) as f64 / 1.0e9;
    format!("{:.3} ms", secs * 1000.0)
}

#[cfg(test)]
mod tests {
    use super::millis;

    #[test]
    fn go_rounding() {
        assert_eq!(millis(0.00052), "0.520 ms");
        assert_eq!(millis(0.0), "0.000 ms");
        assert_eq!(millis(1.2345678), "1234.568 ms");
    }
}
