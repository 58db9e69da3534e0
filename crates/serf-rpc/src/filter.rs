//! Event-stream filters (`member-join,user:deploy,query`) and the member
//! filter behind `members-filtered`.

use std::collections::BTreeMap;

use regex::Regex;

use crate::types::{Member, StreamEvent};

/// One comma-separated element of a stream's `Type`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventFilter {
    /// `*`, `member-join`, `member-leave`, `member-failed`, `member-update`,
    /// `member-reap`, `user` or `query`.
    pub event: String,
    /// For `user:NAME` and `query:NAME`: the name that must match exactly.
    pub name: String,
}

impl EventFilter {
    /// Splits a filter list; an empty list means everything.
    pub fn parse_list(text: &str) -> Vec<EventFilter> {
        let text = if text.is_empty() { "*" } else { text };
        text.split(',')
            .map(|part| {
                for prefix in ["user", "query"] {
                    if let Some(name) = part
                        .strip_prefix(prefix)
                        .and_then(|rest| rest.strip_prefix(':'))
                    {
                        return EventFilter {
                            event: prefix.to_owned(),
                            name: name.to_owned(),
                        };
                    }
                }
                EventFilter {
                    event: part.to_owned(),
                    name: String::new(),
                }
            })
            .collect()
    }

    pub fn is_valid(&self) -> bool {
        matches!(
            self.event.as_str(),
            "*" | "member-join"
                | "member-leave"
                | "member-failed"
                | "member-update"
                | "member-reap"
                | "user"
                | "query"
        )
    }

    pub fn matches(&self, event: &StreamEvent) -> bool {
        if self.event == "*" {
            return true;
        }
        if self.event != event.type_name() {
            return false;
        }
        if self.name.is_empty() {
            return true;
        }
        match event {
            StreamEvent::User(u) => u.name == self.name,
            StreamEvent::Query(q) => q.name == self.name,
            StreamEvent::Member { .. } => true,
        }
    }
}

/// A regular expression could not be compiled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Failed to compile regex: {0}")]
pub struct FilterError(pub String);

/// Compiles `expr` the way the Go agent does: wrapped as `^expr$`, without
/// a group, so an alternation binds loosely exactly as it does there.
fn anchored(expr: &str) -> Result<Regex, FilterError> {
    Regex::new(&format!("^{expr}$")).map_err(|e| FilterError(e.to_string()))
}

/// The members whose tags, status and name match. Every tag in `tags` must
/// match (a missing tag is the empty string); an empty `status` or `name`
/// does not filter.
pub fn filter_members(
    members: Vec<Member>,
    tags: &BTreeMap<String, String>,
    status: &str,
    name: &str,
) -> Result<Vec<Member>, FilterError> {
    let tag_res = tags
        .iter()
        .map(|(k, expr)| Ok((k.as_str(), anchored(expr)?)))
        .collect::<Result<Vec<_>, FilterError>>()?;
    let status_re = anchored(status)?;
    let name_re = anchored(name)?;
    Ok(members
        .into_iter()
        .filter(|m| {
            tag_res
                .iter()
                .all(|(k, re)| re.is_match(m.tags.get(*k).map(String::as_str).unwrap_or_default()))
        })
        .filter(|m| status.is_empty() || status_re.is_match(m.status.as_str()))
        .filter(|m| name.is_empty() || name_re.is_match(&m.name))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{MemberStatus, UserEvent};

    #[test]
    fn parses_filter_lists() {
        let f = EventFilter::parse_list("member-join,user:deploy,query");
        assert_eq!(f.len(), 3);
        assert_eq!(f[1].event, "user");
        assert_eq!(f[1].name, "deploy");
        assert!(f.iter().all(EventFilter::is_valid));
        assert_eq!(EventFilter::parse_list("")[0].event, "*");
        assert!(!EventFilter::parse_list("member-joins")[0].is_valid());
        // "username" is not "user:" with a name.
        assert_eq!(EventFilter::parse_list("username")[0].event, "username");
    }

    #[test]
    fn matches_events() {
        let ev = StreamEvent::User(UserEvent {
            ltime: 1,
            name: "deploy".into(),
            payload: vec![],
            coalesce: true,
        });
        let yes = EventFilter::parse_list("user:deploy");
        let no = EventFilter::parse_list("user:other,member-join");
        assert!(yes.iter().any(|f| f.matches(&ev)));
        assert!(!no.iter().any(|f| f.matches(&ev)));
        assert!(EventFilter::parse_list("*")[0].matches(&ev));
    }

    #[test]
    fn filters_members_like_go() {
        let mut a = Member::named("web-1");
        a.tags.insert("role".into(), "web".into());
        let mut b = Member::named("db-1");
        b.status = MemberStatus::Failed;
        let all = vec![a, b];
        let tags = BTreeMap::from([("role".to_owned(), "web".to_owned())]);
        let names = |v: Vec<Member>| v.into_iter().map(|m| m.name).collect::<Vec<_>>();
        let got = filter_members(all.clone(), &tags, "", "");
        assert_eq!(got.map(names), Ok(vec!["web-1".to_owned()]));
        let got = filter_members(all.clone(), &BTreeMap::new(), "failed", "");
        assert_eq!(got.map(names), Ok(vec!["db-1".to_owned()]));
        // Anchored: "web" does not match "web-1".
        let got = filter_members(all.clone(), &BTreeMap::new(), "", "web");
        assert_eq!(got.map(names), Ok(vec![]));
        // A missing tag is the empty string.
        let empty = BTreeMap::from([("role".to_owned(), "".to_owned())]);
        let got = filter_members(all.clone(), &empty, "", "");
        assert_eq!(got.map(names), Ok(vec!["db-1".to_owned()]));
        assert!(filter_members(all, &BTreeMap::new(), "(", "").is_err());
    }
}
