//! Prepared query templates: checking one when it is written, and rendering
//! it for the name it was asked by.
//!
//! Every string of a template's `Service` may hold HIL interpolations,
//! `${...}`, of the variables `name.full` (the name asked), `name.prefix`
//! (the template's own name), `name.suffix` (what follows the prefix) and
//! `agent.segment`, or of `match(N)`: group N of the template's `Regexp`
//! matched against the full name (empty when there is no such group or no
//! match). `$${` is a literal `${`. This is the subset of HIL Consul's
//! documentation describes; arithmetic and other functions are refused.

use crate::prepared_query::{PreparedQuery, ServiceQuery, NAME_PREFIX_MATCH};

/// A template checked and ready to render.
pub(crate) struct CompiledTemplate<'q> {
    query: &'q PreparedQuery,
    regexp: Option<regex::Regex>,
}

/// One piece of a parsed string.
#[derive(Debug, PartialEq)]
enum Piece {
    Text(String),
    Var(String),
    Match(i64),
}

/// What the `${...}` pieces are evaluated against.
struct Scope<'a> {
    full: &'a str,
    prefix: &'a str,
    groups: Vec<String>,
}

impl<'q> CompiledTemplate<'q> {
    /// Checks `query`'s template as Consul does: the type, every string's
    /// syntax, the regexp, and a trial render for the template's own name.
    pub(crate) fn compile(query: &'q PreparedQuery) -> Result<CompiledTemplate<'q>, String> {
        if query.template.kind != NAME_PREFIX_MATCH {
            return Err(format!("Bad Template.Type '{}'", query.template.kind));
        }
        let mut syntax = Ok(());
        let mut service = query.service.clone();
        visit_strings(&mut service, &mut |path, text| {
            if syntax.is_ok() {
                if let Err(e) = parse(text) {
                    syntax = Err(format!("Bad format '{text}' in Service{path}: {e}"));
                }
            }
        });
        syntax?;
        let regexp =
            if query.template.regexp.is_empty() {
                None
            } else {
                Some(regex::Regex::new(&query.template.regexp).map_err(|e| {
                    format!("Bad Regexp: {}", regexp_error(&query.template.regexp, &e))
                })?)
            };
        let compiled = CompiledTemplate { query, regexp };
        compiled.render(&query.name)?;
        Ok(compiled)
    }

    /// The template filled in for `name`.
    pub(crate) fn render(&self, name: &str) -> Result<PreparedQuery, String> {
        let groups = self
            .regexp
            .as_ref()
            .and_then(|re| re.captures(name))
            .map(|caps| {
                caps.iter()
                    .map(|g| g.map_or(String::new(), |m| m.as_str().to_owned()))
                    .collect()
            })
            .unwrap_or_default();
        let scope = Scope {
            full: name,
            prefix: &self.query.name,
            groups,
        };
        let mut rendered = self.query.clone();
        let mut failure = Ok(());
        visit_strings(&mut rendered.service, &mut |path, text| {
            if failure.is_err() {
                return;
            }
            match parse(text).and_then(|pieces| scope.evaluate(&pieces)) {
                Ok(value) => *text = value,
                Err(e) => {
                    failure = Err(format!("Bad evaluation for '{text}' in Service{path}: {e}"))
                }
            }
        });
        failure?;
        if self.query.template.remove_empty_tags {
            rendered.service.tags.retain(|t| !t.is_empty());
        }
        Ok(rendered)
    }
}

impl Scope<'_> {
    fn evaluate(&self, pieces: &[Piece]) -> Result<String, String> {
        let mut out = String::new();
        for piece in pieces {
            match piece {
                Piece::Text(text) => out.push_str(text),
                Piece::Var(var) => out.push_str(match var.as_str() {
                    "name.full" => self.full,
                    "name.prefix" => self.prefix,
                    "name.suffix" => self.full.strip_prefix(self.prefix).unwrap_or(self.full),
                    "agent.segment" => "",
                    other => return Err(format!("unknown variable accessed: {other}")),
                }),
                Piece::Match(group) => {
                    let found = usize::try_from(*group)
                        .ok()
                        .and_then(|g| self.groups.get(g));
                    out.push_str(found.map_or("", String::as_str));
                }
            }
        }
        Ok(out)
    }
}

/// Splits a string into text and `${...}` pieces.
fn parse(text: &str) -> Result<Vec<Piece>, String> {
    let mut pieces = Vec::new();
    let mut literal = String::new();
    let mut rest = text;
    while let Some(at) = rest.find("${") {
        if rest[..at].ends_with('$') {
            literal.push_str(&rest[..at - 1]);
            literal.push_str("${");
            rest = &rest[at + 2..];
            continue;
        }
        literal.push_str(&rest[..at]);
        let inner_start = at + 2;
        let Some(len) = rest[inner_start..].find('}') else {
            return Err("unterminated interpolation: expected '}'".into());
        };
        if !literal.is_empty() {
            pieces.push(Piece::Text(std::mem::take(&mut literal)));
        }
        pieces.push(expression(rest[inner_start..inner_start + len].trim())?);
        rest = &rest[inner_start + len + 1..];
    }
    literal.push_str(rest);
    if !literal.is_empty() {
        pieces.push(Piece::Text(literal));
    }
    Ok(pieces)
}

/// One `${...}` body: a variable or `match(N)`.
fn expression(body: &str) -> Result<Piece, String> {
    let is_ident = |s: &str| {
        let mut chars = s.chars();
        chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
    };
    if let Some(open) = body.find('(') {
        let function = body[..open].trim();
        let Some(args) = body[open + 1..].strip_suffix(')') else {
            return Err(format!("expected ')' in {body:?}"));
        };
        if function != "match" {
            return Err(format!("unknown function called: {function}"));
        }
        return args
            .trim()
            .parse::<i64>()
            .map(Piece::Match)
            .map_err(|_| format!("match: argument 1 should be int, got {:?}", args.trim()));
    }
    if is_ident(body) {
        return Ok(Piece::Var(body.to_owned()));
    }
    Err(format!("invalid expression {body:?}"))
}

/// Go's regexp error shape: `error parsing regexp: <what>: `<expr>``.
fn regexp_error(pattern: &str, error: &regex::Error) -> String {
    let text = error.to_string();
    let what = text
        .lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix("error: "))
        .unwrap_or(text.trim());
    format!("error parsing regexp: {what}: `{pattern}`")
}

/// Calls `f` with a path (`.Service`, `.Tags[0]`, `.NodeMeta[k]`, ...) and
/// each string field of a service query.
fn visit_strings(service: &mut ServiceQuery, f: &mut dyn FnMut(&str, &mut String)) {
    f(".Service", &mut service.service);
    f(".SamenessGroup", &mut service.sameness_group);
    for (i, dc) in service.failover.datacenters.iter_mut().enumerate() {
        f(&format!(".Failover.Datacenters[{i}]"), dc);
    }
    for (i, target) in service.failover.targets.iter_mut().enumerate() {
        f(&format!(".Failover.Targets[{i}].Peer"), &mut target.peer);
        f(
            &format!(".Failover.Targets[{i}].Datacenter"),
            &mut target.datacenter,
        );
    }
    for (i, check) in service.ignore_check_ids.iter_mut().enumerate() {
        f(&format!(".IgnoreCheckIDs[{i}]"), check);
    }
    f(".Near", &mut service.near);
    for (i, tag) in service.tags.iter_mut().enumerate() {
        f(&format!(".Tags[{i}]"), tag);
    }
    for (key, value) in service.node_meta.iter_mut() {
        f(&format!(".NodeMeta[{key}]"), value);
    }
    for (key, value) in service.service_meta.iter_mut() {
        f(&format!(".ServiceMeta[{key}]"), value);
    }
    f(".Peer", &mut service.peer);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(name: &str, regexp: &str, service: &str) -> PreparedQuery {
        PreparedQuery {
            name: name.into(),
            template: crate::QueryTemplate {
                kind: NAME_PREFIX_MATCH.into(),
                regexp: regexp.into(),
                remove_empty_tags: false,
            },
            service: ServiceQuery {
                service: service.into(),
                ..ServiceQuery::default()
            },
            ..PreparedQuery::default()
        }
    }

    #[test]
    fn renders_name_parts_and_groups() {
        let mut q = template("geo-db-", "^geo-db-(.*?)-([^\\-]+?)$", "mysql-${match(1)}");
        q.service.tags = vec![
            "${match(2)}".into(),
            "${name.suffix}".into(),
            "$${x}".into(),
        ];
        q.service.near = "${name.full}".into();
        let compiled = CompiledTemplate::compile(&q).unwrap();
        let r = compiled.render("geo-db-customer-primary").unwrap();
        assert_eq!(r.service.service, "mysql-customer");
        assert_eq!(r.service.tags, ["primary", "customer-primary", "${x}"]);
        assert_eq!(r.service.near, "geo-db-customer-primary");
    }

    #[test]
    fn missing_groups_render_empty_and_can_be_dropped() {
        let mut q = template("web", "^web-(a)?(b)?$", "web");
        q.service.tags = vec!["${match(1)}".into(), "${match(7)}".into(), "x".into()];
        q.template.remove_empty_tags = true;
        let r = CompiledTemplate::compile(&q)
            .unwrap()
            .render("web-a")
            .unwrap();
        assert_eq!(r.service.tags, ["a", "x"]);
    }

    #[test]
    fn refuses_bad_templates_with_consuls_words() {
        let mut q = template("x", "", "web");
        q.template.kind = "nope".into();
        assert_eq!(
            CompiledTemplate::compile(&q).err().unwrap(),
            "Bad Template.Type 'nope'"
        );
        let q = template("x", "(", "web");
        assert!(CompiledTemplate::compile(&q)
            .err()
            .unwrap()
            .starts_with("Bad Regexp: error parsing regexp: "));
        let q = template("x", "", "${name.full");
        assert!(CompiledTemplate::compile(&q)
            .err()
            .unwrap()
            .starts_with("Bad format '${name.full' in Service.Service: "));
        let q = template("x", "", "${nope}");
        assert_eq!(
            CompiledTemplate::compile(&q).err().unwrap(),
            "Bad evaluation for '${nope}' in Service.Service: unknown variable accessed: nope"
        );
    }
}
