//! `praetor serf members`.

use serf_rpc::Member;

use super::output::{tcp_addr, Json};
use super::{connect, parse_tags, say, MembersArgs};
use crate::catalog_cmd::columnize;

pub async fn run(a: MembersArgs) -> u8 {
    let mut tag_flags = a.tag.clone();
    if !a.role.is_empty() {
        say("Deprecation warning: 'Role' has been replaced with 'Tags'");
        tag_flags.push(format!("role={}", a.role));
    }
    let tags = match parse_tags(&tag_flags) {
        Ok(tags) => tags,
        Err(e) => {
            say(format!("Error: {e}"));
            return 1;
        }
    };
    let client = match connect(&a.rpc).await {
        Ok(c) => c,
        Err(code) => return code,
    };
    let members = match client.members_filtered(tags, &a.status, &a.name).await {
        Ok(m) => m,
        Err(e) => {
            say(format!("Error retrieving members: {e}"));
            return 1;
        }
    };
    client.close().await;
    match render(&members, &a.format, a.detailed) {
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

/// `name=value` pairs joined with commas (sorted; Go's order is random).
fn tag_list(m: &Member) -> String {
    m.tags
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// The members as serf prints them, in `format`.
pub fn render(members: &[Member], format: &str, detailed: bool) -> Result<String, String> {
    match format {
        "text" => {
            let rows: Vec<Vec<String>> = members
                .iter()
                .map(|m| {
                    let mut row = vec![
                        m.name.clone(),
                        tcp_addr(m.addr, m.port),
                        m.status.to_string(),
                        tag_list(m),
                    ];
                    if detailed {
                        row.push(format!("Protocol Version: {}", m.delegate_cur));
                        row.push(format!(
                            "Available Protocol Range: [{}, {}]",
                            m.delegate_min, m.delegate_max
                        ));
                    }
                    row
                })
                .collect();
            Ok(columnize(&rows).trim().to_owned())
        }
        "json" => {
            let list = members
                .iter()
                .map(|m| {
                    Json::Object(vec![
                        ("name".into(), Json::str(m.name.as_str())),
                        ("addr".into(), Json::str(tcp_addr(m.addr, m.port))),
                        ("port".into(), Json::num(m.port)),
                        (
                            "tags".into(),
                            Json::Object(
                                m.tags
                                    .iter()
                                    .map(|(k, v)| (k.clone(), Json::str(v.as_str())))
                                    .collect(),
                            ),
                        ),
                        ("status".into(), Json::str(m.status.as_str())),
                        (
                            "protocol".into(),
                            Json::Object(vec![
                                ("max".into(), Json::num(m.delegate_max)),
                                ("min".into(), Json::num(m.delegate_min)),
                                ("version".into(), Json::num(m.delegate_cur)),
                            ]),
                        ),
                    ])
                })
                .collect::<Vec<_>>();
            let list = if list.is_empty() {
                Json::Null
            } else {
                Json::Array(list)
            };
            Ok(Json::Object(vec![("members".into(), list)]).indented())
        }
        other => Err(format!("Invalid output format \"{other}\"")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serf_rpc::testing::demo_members;

    #[test]
    fn text_columns() {
        let members = demo_members("local");
        assert_eq!(
            render(&members, "text", false).as_deref(),
            Ok("local  127.0.0.1:7946  alive  role=web\npeer   127.0.0.2:7947  alive  role=db")
        );
        assert_eq!(
            render(&members[..1], "text", true).as_deref(),
            Ok("local  127.0.0.1:7946  alive  role=web  Protocol Version: 4  Available Protocol Range: [2, 5]")
        );
        assert_eq!(render(&[], "text", false).as_deref(), Ok(""));
        assert_eq!(
            render(&members, "xml", false),
            Err("Invalid output format \"xml\"".to_owned())
        );
    }

    #[test]
    fn json_shape() {
        let members = demo_members("local");
        let text = render(&members[..1], "json", false).unwrap_or_default();
        assert_eq!(
            text,
            "{\n  \"members\": [\n    {\n      \"name\": \"local\",\n      \"addr\": \"127.0.0.1:7946\",\n      \"port\": 7946,\n      \"tags\": {\n        \"role\": \"web\"\n      },\n      \"status\": \"alive\",\n      \"protocol\": {\n        \"max\": 5,\n        \"min\": 2,\n        \"version\": 4\n      }\n    }\n  ]\n}"
        );
        assert_eq!(
            render(&[], "json", false).as_deref(),
            Ok("{\n  \"members\": null\n}")
        );
    }
}
