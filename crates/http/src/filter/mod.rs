//! Consul's `?filter=` expressions (go-bexpr), evaluated on the JSON form
//! of each element a list endpoint returns: the JSON field names are
//! Consul's Go field names, so a selector's steps are object keys.
//!
//! Semantics follow the go-bexpr Consul vendors (v0.1.2): selectors are
//! checked against the element type when the filter is made (exact,
//! case-sensitive field names; any key of a map), as are the operator and
//! the value's type; a selector through a slice of structs matches when any
//! element matches; a missing map key makes `==`, `is not empty`, `in` and
//! `matches` false and their negations true.

mod parse;
pub mod schema;

use regex::Regex;
use serde::Serialize;
use serde_json::Value;

use crate::error::HttpError;
use crate::params::Params;
pub use parse::{Expr, Op};
use schema::Ty;

/// Why an expression was refused; its text is bexpr's.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct FilterError(pub String);

impl From<FilterError> for HttpError {
    fn from(e: FilterError) -> HttpError {
        HttpError::bad_request(format!(
            "Failed to create boolean expression evaluator: {}",
            e.0
        ))
    }
}

/// A parsed, checked filter expression.
#[derive(Debug)]
pub struct Filter {
    root: Node,
    schema: Option<&'static Ty>,
}

#[derive(Debug)]
enum Node {
    Not(Box<Node>),
    And(Box<Node>, Box<Node>),
    Or(Box<Node>, Box<Node>),
    Match(Match),
}

#[derive(Debug)]
struct Match {
    selector: Vec<String>,
    op: Op,
    value: String,
    regex: Option<Regex>,
}

impl Filter {
    /// Parses `expr` for elements of any shape: selectors are not checked
    /// and values compare by the JSON type they meet.
    pub fn parse(expr: &str) -> Result<Filter, FilterError> {
        Filter::build(expr, None)
    }

    /// Parses `expr` for elements of the Consul type `schema`, refusing
    /// selectors, operators and values that type does not allow.
    pub fn parse_for(expr: &str, schema: &'static Ty) -> Result<Filter, FilterError> {
        Filter::build(expr, Some(schema))
    }

    fn build(expr: &str, schema: Option<&'static Ty>) -> Result<Filter, FilterError> {
        let ast = parse::parse(expr).map_err(FilterError)?;
        Ok(Filter {
            root: check(ast, schema)?,
            schema,
        })
    }

    /// Whether `item` (an element's JSON) passes.
    pub fn matches(&self, item: &Value) -> bool {
        eval(&self.root, item, self.schema)
    }

    /// Whether `item` passes, judged on its JSON form.
    pub fn keep<T: Serialize>(&self, item: &T) -> bool {
        serde_json::to_value(item).is_ok_and(|v| self.matches(&v))
    }
}

/// The request's `?filter=` for elements of `schema`; `None` when absent or
/// empty. A bad expression is a 400 with Consul's text.
pub fn from_params(params: &Params, schema: &'static Ty) -> Result<Option<Filter>, HttpError> {
    match params.get("filter").filter(|f| !f.is_empty()) {
        None => Ok(None),
        Some(expr) => Ok(Some(Filter::parse_for(expr, schema)?)),
    }
}

/// Whether `item` passes `filter` (always, without one).
pub fn passes<T: Serialize>(filter: Option<&Filter>, item: &T) -> bool {
    filter.is_none_or(|f| f.keep(item))
}

/// Keeps the items that pass `filter` (all of them without one).
pub fn apply_filter<T: Serialize>(filter: Option<&Filter>, mut items: Vec<T>) -> Vec<T> {
    if let Some(f) = filter {
        items.retain(|item| f.keep(item));
    }
    items
}

/// Whether an operator on a field of type `ty` is one bexpr allows.
fn supports(ty: &Ty, op: Op) -> bool {
    use Op::*;
    match ty {
        Ty::Str => matches!(op, Equal | NotEqual | In | NotIn | Matches | NotMatches),
        Ty::Int | Ty::Uint | Ty::Float | Ty::Bool => matches!(op, Equal | NotEqual),
        Ty::List(elem) if elem.is_primitive() => matches!(op, In | NotIn | IsEmpty | IsNotEmpty),
        Ty::List(_) => matches!(op, IsEmpty | IsNotEmpty),
        Ty::Map(_) => matches!(op, IsEmpty | IsNotEmpty | In | NotIn),
        Ty::Struct(_) => false,
    }
}

/// The Go type a value is coerced to, with `strconv`'s complaint.
fn coerce(ty: &Ty, raw: &str) -> Result<(), String> {
    let syntax = |func: &str| format!("strconv.{func}: parsing {raw:?}: invalid syntax");
    match ty {
        Ty::Int => raw
            .parse::<i64>()
            .map(|_| ())
            .map_err(|_| syntax("ParseInt")),
        Ty::Uint => raw
            .parse::<u64>()
            .map(|_| ())
            .map_err(|_| syntax("ParseUint")),
        Ty::Float => raw
            .parse::<f64>()
            .map(|_| ())
            .map_err(|_| syntax("ParseFloat")),
        Ty::Bool => parse_bool(raw)
            .map(|_| ())
            .ok_or_else(|| syntax("ParseBool")),
        Ty::List(elem) if elem.is_primitive() => coerce(elem, raw),
        _ => Ok(()),
    }
}

/// Go's `strconv.ParseBool`.
fn parse_bool(raw: &str) -> Option<bool> {
    match raw {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// Checks an expression against the element type (when there is one) and
/// compiles its regular expressions, as bexpr's validation pass does.
fn check(ast: Expr, schema: Option<&'static Ty>) -> Result<Node, FilterError> {
    Ok(match ast {
        Expr::Not(e) => Node::Not(Box::new(check(*e, schema)?)),
        Expr::And(l, r) => {
            let l = check(*l, schema)?;
            Node::And(Box::new(l), Box::new(check(*r, schema)?))
        }
        Expr::Or(l, r) => {
            let l = check(*l, schema)?;
            Node::Or(Box::new(l), Box::new(check(*r, schema)?))
        }
        Expr::Match {
            selector,
            op,
            value,
        } => {
            let shown = selector.join(".");
            if let Some(root) = schema {
                let mut ty = root;
                for (i, step) in selector.iter().enumerate() {
                    ty = match ty {
                        Ty::Map(elem) => elem,
                        _ => ty.field(step).ok_or_else(|| {
                            FilterError(format!(
                                "Selector {:?} is not valid",
                                selector[..=i].join(".")
                            ))
                        })?,
                    };
                }
                if !supports(ty, op) {
                    return Err(FilterError(format!(
                        "Invalid match operator {:?} for selector {shown:?}",
                        op.name()
                    )));
                }
                if let Some(raw) = &value {
                    coerce(ty, raw).map_err(|e| {
                        FilterError(format!(
                            "Failed to coerce value {raw:?} for selector {shown:?}: {e}"
                        ))
                    })?;
                }
            }
            let value = value.unwrap_or_default();
            let regex = match op {
                Op::Matches | Op::NotMatches => Some(Regex::new(&value).map_err(|e| {
                    FilterError(format!(
                        "Failed to compile regular expression {value:?}: error parsing regexp: {}",
                        regex_reason(&e)
                    ))
                })?),
                _ => None,
            };
            Node::Match(Match {
                selector,
                op,
                value,
                regex,
            })
        }
    })
}

/// The last line of the regex crate's error: what is wrong.
fn regex_reason(e: &regex::Error) -> String {
    let text = e.to_string();
    let last = text.lines().rev().find(|l| !l.trim().is_empty());
    last.unwrap_or(&text)
        .trim()
        .trim_start_matches("error: ")
        .to_owned()
}

fn eval(node: &Node, item: &Value, schema: Option<&'static Ty>) -> bool {
    match node {
        Node::Not(e) => !eval(e, item, schema),
        Node::And(l, r) => eval(l, item, schema) && eval(r, item, schema),
        Node::Or(l, r) => eval(l, item, schema) || eval(r, item, schema),
        Node::Match(m) => walk(m, 0, item, schema),
    }
}

/// Follows the selector from step `depth` into `value` (of type `ty`, when
/// known) and applies the operator at its end.
fn walk(m: &Match, depth: usize, value: &Value, ty: Option<&'static Ty>) -> bool {
    let Some(step) = m.selector.get(depth) else {
        return apply(m, value).unwrap_or(false);
    };
    match (ty, value) {
        // Through a slice: any element.
        (Some(Ty::List(elem)), Value::Array(items)) => {
            items.iter().any(|v| walk(m, depth, v, Some(elem)))
        }
        (None, Value::Array(items)) => items.iter().any(|v| walk(m, depth, v, None)),
        // A struct field: absent or null reads as Go's zero value.
        (Some(Ty::Struct(_)), _) => {
            let Some(field) = ty.and_then(|t| t.field(step)) else {
                return false;
            };
            match value.get(step).filter(|v| !v.is_null()) {
                Some(v) => walk(m, depth + 1, v, Some(field)),
                None => walk(m, depth + 1, &field.zero(), Some(field)),
            }
        }
        // A map key; without a schema every object is read as a map.
        (Some(Ty::Map(_)) | None, Value::Object(map)) => {
            let elem = match ty {
                Some(Ty::Map(elem)) => Some(*elem),
                _ => None,
            };
            match map.get(step) {
                Some(v) => walk(m, depth + 1, v, elem),
                None => !matches!(m.op, Op::Equal | Op::IsNotEmpty | Op::In | Op::Matches),
            }
        }
        _ => false,
    }
}

/// The operator on the selected value; `None` where bexpr would fail.
fn apply(m: &Match, value: &Value) -> Option<bool> {
    let raw = m.value.as_str();
    Some(match m.op {
        Op::Equal => equals(value, raw),
        Op::NotEqual => !equals(value, raw),
        Op::In => contains(value, raw)?,
        Op::NotIn => !contains(value, raw)?,
        Op::IsEmpty => is_empty(value)?,
        Op::IsNotEmpty => !is_empty(value)?,
        Op::Matches => m.regex.as_ref()?.is_match(value.as_str()?),
        Op::NotMatches => !m.regex.as_ref()?.is_match(value.as_str()?),
    })
}

/// A value against the expression's text, read as the value's type.
fn equals(value: &Value, raw: &str) -> bool {
    match value {
        Value::String(s) => s == raw,
        Value::Bool(b) => parse_bool(raw) == Some(*b),
        Value::Number(n) => match (n.as_i64(), raw.parse::<i64>()) {
            (Some(i), Ok(r)) => i == r,
            _ => match (n.as_u64(), raw.parse::<u64>()) {
                (Some(u), Ok(r)) => u == r,
                _ => n
                    .as_f64()
                    .zip(raw.parse::<f64>().ok())
                    .is_some_and(|(a, b)| a == b),
            },
        },
        Value::Null => raw.is_empty(),
        Value::Array(_) | Value::Object(_) => false,
    }
}

/// `in` / `contains`: a substring, a slice element, or a map key.
fn contains(value: &Value, raw: &str) -> Option<bool> {
    match value {
        Value::String(s) => Some(s.contains(raw)),
        Value::Array(items) => Some(items.iter().any(|v| equals(v, raw))),
        Value::Object(map) => Some(map.contains_key(raw)),
        _ => None,
    }
}

fn is_empty(value: &Value) -> Option<bool> {
    match value {
        Value::String(s) => Some(s.is_empty()),
        Value::Array(items) => Some(items.is_empty()),
        Value::Object(map) => Some(map.is_empty()),
        Value::Null => Some(true),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::schema::{AGENT_SERVICE, CHECK_SERVICE_NODE, NODE, NODE_SERVICE};
    use super::*;
    use serde_json::json;

    fn node() -> Value {
        json!({
            "ID": "abc", "Node": "web-1", "Address": "10.0.0.1", "Datacenter": "dc1",
            "TaggedAddresses": {"lan": "10.0.0.1"},
            "Meta": {"rack": "r1", "env": "prod"},
            "CreateIndex": 5, "ModifyIndex": 6
        })
    }

    fn service() -> Value {
        json!({
            "ID": "api-1", "Service": "api", "Tags": ["blue", "v1"], "Address": "",
            "Meta": {}, "Port": 8080, "Weights": {"Passing": 1, "Warning": 1},
            "EnableTagOverride": false, "Proxy": {"Mode": "", "MeshGateway": {}, "Expose": {}},
            "Connect": {}, "CreateIndex": 1, "ModifyIndex": 1
        })
    }

    fn csn(statuses: &[&str]) -> Value {
        let checks: Vec<Value> = statuses
            .iter()
            .map(|s| json!({"Node": "web-1", "CheckID": format!("c-{s}"), "Status": s}))
            .collect();
        json!({"Node": node(), "Service": service(), "Checks": checks})
    }

    fn on(schema: &'static Ty, expr: &str, item: &Value) -> bool {
        Filter::parse_for(expr, schema)
            .unwrap_or_else(|e| panic!("{expr}: {e}"))
            .matches(item)
    }

    fn refused(schema: &'static Ty, expr: &str) -> String {
        Filter::parse_for(expr, schema).unwrap_err().0
    }

    #[test]
    fn equality_and_types() {
        let n = node();
        assert!(on(&NODE, "Node == \"web-1\"", &n));
        // A bare value is an identifier: no dashes.
        assert!(Filter::parse_for("Node == web-1", &NODE).is_err());
        assert!(on(&NODE, "Node == \"web-1\"", &n));
        assert!(on(&NODE, "Node == `web-1`", &n));
        assert!(!on(&NODE, "Node == `WEB-1`", &n));
        assert!(on(&NODE, "Node != `web-2`", &n));
        let s = service();
        assert!(on(&NODE_SERVICE, "Port == 8080", &s));
        assert!(on(&NODE_SERVICE, "Port == \"8080\"", &s));
        assert!(on(&NODE_SERVICE, "Port != 80", &s));
        assert!(on(&NODE_SERVICE, "EnableTagOverride == false", &s));
        assert!(on(&NODE_SERVICE, "Weights.Passing == 1", &s));
        // An omitted field reads as its zero value.
        assert!(on(&NODE_SERVICE, "Kind == \"\"", &s));
        assert!(on(&NODE_SERVICE, "SocketPath == \"\"", &s));
    }

    #[test]
    fn collections() {
        let s = service();
        assert!(on(&NODE_SERVICE, "blue in Tags", &s));
        assert!(on(&NODE_SERVICE, "Tags contains v1", &s));
        assert!(on(&NODE_SERVICE, "green not in Tags", &s));
        assert!(on(&NODE_SERVICE, "Tags not contains green", &s));
        assert!(on(&NODE_SERVICE, "Tags is not empty", &s));
        assert!(on(&NODE_SERVICE, "Meta is empty", &s));
        assert!(on(&NODE_SERVICE, "pi in Service", &s), "substring");
        let n = node();
        assert!(on(&NODE, "rack in Meta", &n));
        assert!(on(&NODE, "Meta contains env", &n));
        assert!(on(&NODE, "zone not in Meta", &n));
        assert!(on(&NODE, "Meta.rack == r1", &n));
        assert!(on(&NODE, "Meta[\"rack\"] == r1", &n));
        assert!(on(&NODE, "Meta is not empty", &n));
    }

    #[test]
    fn missing_map_keys() {
        let n = node();
        assert!(!on(&NODE, "Meta.zone == a", &n));
        assert!(on(&NODE, "Meta.zone != a", &n));
        assert!(!on(&NODE, "Meta.zone matches a", &n));
        assert!(on(&NODE, "Meta.zone not matches a", &n));
        assert!(!on(&NODE, "a in Meta.zone", &n));
        assert!(on(&NODE, "a not in Meta.zone", &n));
    }

    #[test]
    fn regex() {
        let n = node();
        assert!(on(&NODE, "Node matches \"^web-[0-9]+$\"", &n));
        assert!(on(&NODE, "Node matches web", &n), "unanchored");
        assert!(on(&NODE, "Node not matches \"^db\"", &n));
        assert!(on(&NODE, "Meta.rack matches `r\\d`", &n));
    }

    #[test]
    fn logic() {
        let n = node();
        assert!(on(&NODE, "Node == `web-1` and Meta.rack == r1", &n));
        assert!(!on(&NODE, "Node == `web-1` and Meta.rack == r2", &n));
        assert!(on(&NODE, "Node == x or Meta.rack == r1", &n));
        assert!(on(&NODE, "not Node == x", &n));
        assert!(!on(&NODE, "not (Node == `web-1` or Node == x)", &n));
        assert!(on(
            &NODE,
            "(Node == x or Node == `web-1`) and rack in Meta",
            &n
        ));
    }

    #[test]
    fn any_element_through_slices() {
        let mixed = csn(&["passing", "critical"]);
        assert!(on(&CHECK_SERVICE_NODE, "Checks.Status == passing", &mixed));
        assert!(on(&CHECK_SERVICE_NODE, "Checks.Status == critical", &mixed));
        assert!(on(&CHECK_SERVICE_NODE, "Checks.Status != passing", &mixed));
        assert!(!on(
            &CHECK_SERVICE_NODE,
            "not Checks.Status != passing",
            &mixed
        ));
        let healthy = csn(&["passing"]);
        assert!(on(
            &CHECK_SERVICE_NODE,
            "not Checks.Status != passing",
            &healthy
        ));
        let none = csn(&[]);
        assert!(!on(&CHECK_SERVICE_NODE, "Checks.Status == passing", &none));
        assert!(!on(&CHECK_SERVICE_NODE, "Checks.Status != passing", &none));
        assert!(on(&CHECK_SERVICE_NODE, "Checks is empty", &none));
        assert!(on(&CHECK_SERVICE_NODE, "Service.Service == api", &healthy));
        assert!(on(&CHECK_SERVICE_NODE, "Node.Meta.rack == r1", &healthy));
    }

    #[test]
    fn checked_against_the_type() {
        assert_eq!(
            refused(&NODE, "node == x"),
            "Selector \"node\" is not valid"
        );
        assert_eq!(
            refused(&NODE, "Meta.rack.x == y"),
            "Selector \"Meta.rack.x\" is not valid"
        );
        assert_eq!(
            refused(&NODE, "CreateIndex == 5"),
            "Selector \"CreateIndex\" is not valid"
        );
        assert_eq!(
            refused(&CHECK_SERVICE_NODE, "Checks.Bogus == x"),
            "Selector \"Checks.Bogus\" is not valid"
        );
        assert_eq!(
            refused(&NODE_SERVICE, "Tags == x"),
            "Invalid match operator \"Equal\" for selector \"Tags\""
        );
        assert_eq!(
            refused(&NODE_SERVICE, "Port is empty"),
            "Invalid match operator \"Is Empty\" for selector \"Port\""
        );
        assert_eq!(
            refused(&NODE_SERVICE, "Port == abc"),
            "Failed to coerce value \"abc\" for selector \"Port\": strconv.ParseInt: parsing \"abc\": invalid syntax"
        );
        assert_eq!(
            refused(&AGENT_SERVICE, "EnableTagOverride == yes"),
            "Failed to coerce value \"yes\" for selector \"EnableTagOverride\": strconv.ParseBool: parsing \"yes\": invalid syntax"
        );
        assert!(refused(&NODE, "Node matches \"(\"")
            .starts_with("Failed to compile regular expression \"(\": error parsing regexp: "));
    }

    #[test]
    fn without_a_schema() {
        let f = Filter::parse("Meta.rack == r1 and Port == 8080").unwrap();
        assert!(f.matches(&json!({"Meta": {"rack": "r1"}, "Port": 8080})));
        assert!(!f.matches(&json!({"Meta": {"rack": "r1"}, "Port": 80})));
        assert!(!f.matches(&json!({"Port": 8080})));
        let f = Filter::parse("Checks.Status == passing").unwrap();
        assert!(f.matches(&json!({"Checks": [{"Status": "critical"}, {"Status": "passing"}]})));
        assert!(!f.matches(&json!({"Checks": []})));
        assert!(Filter::parse("Name == ").is_err());
    }

    #[test]
    fn error_wrapper() {
        let e: HttpError = FilterError("x".into()).into();
        assert_eq!(e.status, axum::http::StatusCode::BAD_REQUEST);
        assert_eq!(
            e.message,
            "Failed to create boolean expression evaluator: x"
        );
    }
}
