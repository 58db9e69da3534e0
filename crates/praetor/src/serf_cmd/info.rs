//! `praetor serf info`.

use serf_rpc::Stats;

use super::output::Json;
use super::{connect, say, InfoArgs};

pub async fn run(a: InfoArgs) -> u8 {
    let client = match connect(&a.rpc).await {
        Ok(c) => c,
        Err(code) => return code,
    };
    let stats = match client.stats().await {
        Ok(s) => s,
        Err(e) => {
            say(format!("Error querying agent: {e}"));
            return 1;
        }
    };
    client.close().await;
    match render(&stats, &a.format) {
        Ok(text) => {
            say(text);
            0
        }
        Err(e) => {
            say(format!("Encoding error: {e}"));
            1
        }
    }
}

/// Sections in name order, each followed by its `\tkey = value` lines.
pub fn render(stats: &Stats, format: &str) -> Result<String, String> {
    match format {
        "text" => {
            let mut out = String::new();
            for (section, values) in stats {
                out.push_str(section);
                out.push_str(":\n");
                for (k, v) in values {
                    out.push_str(&format!("\t{k} = {v}\n"));
                }
            }
            Ok(out.trim().to_owned())
        }
        "json" => Ok(Json::Object(
            stats
                .iter()
                .map(|(section, values)| {
                    let inner = values
                        .iter()
                        .map(|(k, v)| (k.clone(), Json::str(v.as_str())))
                        .collect();
                    (section.clone(), Json::Object(inner))
                })
                .collect(),
        )
        .indented()),
        other => Err(format!("Invalid output format \"{other}\"")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn text_and_json() {
        let mut stats = Stats::new();
        stats.insert(
            "agent".into(),
            BTreeMap::from([("name".to_owned(), "a".to_owned())]),
        );
        stats.insert("tags".into(), BTreeMap::new());
        assert_eq!(
            render(&stats, "text").as_deref(),
            Ok("agent:\n\tname = a\ntags:")
        );
        assert_eq!(
            render(&stats, "json").as_deref(),
            Ok("{\n  \"agent\": {\n    \"name\": \"a\"\n  },\n  \"tags\": {}\n}")
        );
    }
}
