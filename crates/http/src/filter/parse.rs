//! The parser for go-bexpr's grammar (`grammar.peg` in hashicorp/go-bexpr),
//! written as the PEG it is: ordered choice with backtracking, and the
//! farthest failure remembered with what was expected there, so that a bad
//! expression is reported the way the generated Go parser reports it
//! (`1:7 (6): no match found, expected: ...`, or `rule <name>: <message>`).

use std::collections::BTreeSet;

/// What a match expression does with its selector.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Equal,
    NotEqual,
    In,
    NotIn,
    IsEmpty,
    IsNotEmpty,
    Matches,
    NotMatches,
}

impl Op {
    /// The operator's name in bexpr's messages.
    pub fn name(self) -> &'static str {
        match self {
            Op::Equal => "Equal",
            Op::NotEqual => "Not Equal",
            Op::In => "In",
            Op::NotIn => "Not In",
            Op::IsEmpty => "Is Empty",
            Op::IsNotEmpty => "Is Not Empty",
            Op::Matches => "Matches",
            Op::NotMatches => "Not Matches",
        }
    }
}

/// The parsed expression.
#[derive(Clone, Debug, PartialEq)]
pub enum Expr {
    Not(Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Match {
        selector: Vec<String>,
        op: Op,
        /// The value as written (quotes removed); `None` for the
        /// emptiness checks.
        value: Option<String>,
    },
}

/// Parses `input`, or returns the error text bexpr would give.
pub fn parse(input: &str) -> Result<Expr, String> {
    let mut p = Parser {
        s: input,
        pos: 0,
        max_fail: 0,
        expected: BTreeSet::new(),
        invert: false,
        errors: Vec::new(),
    };
    let parsed = p.input();
    if !p.errors.is_empty() {
        let mut seen = BTreeSet::new();
        let errors: Vec<String> = p
            .errors
            .iter()
            .filter(|e| seen.insert(e.as_str()))
            .cloned()
            .collect();
        return Err(errors.join("\n"));
    }
    match parsed {
        Some(expr) => Ok(expr),
        None => {
            let eof = p.expected.remove("!.");
            let mut expected: Vec<String> = p.expected.into_iter().collect();
            if eof {
                expected.push("EOF".to_owned());
            }
            Err(format!(
                "{}: no match found, expected: {}",
                position(input, p.max_fail),
                list_join(&expected)
            ))
        }
    }
}

/// `line:col (offset)`, columns counted in characters from 1.
fn position(s: &str, offset: usize) -> String {
    let before = &s[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let col = before[line_start..].chars().count() + 1;
    format!("{line}:{col} ({offset})")
}

fn list_join(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

/// Go's `strconv.Quote` for the grammar's literals.
fn go_quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

const WS: &str = "[ \\t\\r\\n]";

struct Parser<'a> {
    s: &'a str,
    pos: usize,
    max_fail: usize,
    expected: BTreeSet<String>,
    invert: bool,
    errors: Vec<String>,
}

impl Parser<'_> {
    fn fail_at(&mut self, matched: bool, pos: usize, want: &str) {
        if matched != self.invert || pos < self.max_fail {
            return;
        }
        if pos > self.max_fail {
            self.max_fail = pos;
            self.expected.clear();
        }
        let want = if self.invert {
            format!("!{want}")
        } else {
            want.to_owned()
        };
        self.expected.insert(want);
    }

    fn add_err(&mut self, pos: usize, rule: &str, message: &str) {
        self.errors
            .push(format!("{}: rule {rule}: {message}", position(self.s, pos)));
    }

    fn lit(&mut self, literal: &str) -> bool {
        let want = go_quote(literal);
        let matched = self.s[self.pos..].starts_with(literal);
        self.fail_at(matched, self.pos, &want);
        if matched {
            self.pos += literal.len();
        }
        matched
    }

    fn class(&mut self, want: &str, test: impl Fn(char) -> bool) -> bool {
        let matched = self.s[self.pos..].chars().next().filter(|c| test(*c));
        self.fail_at(matched.is_some(), self.pos, want);
        if let Some(c) = matched {
            self.pos += c.len_utf8();
        }
        matched.is_some()
    }

    fn any(&mut self) -> bool {
        match self.s[self.pos..].chars().next() {
            Some(c) => {
                self.fail_at(true, self.pos, ".");
                self.pos += c.len_utf8();
                true
            }
            None => {
                self.fail_at(false, self.pos, ".");
                false
            }
        }
    }

    /// `!expr`: succeeds, consuming nothing, where `expr` fails.
    fn not(&mut self, expr: impl FnOnce(&mut Self) -> bool) -> bool {
        let start = self.pos;
        self.invert = !self.invert;
        let matched = expr(self);
        self.invert = !self.invert;
        self.pos = start;
        !matched
    }

    /// `&expr`: succeeds, consuming nothing, where `expr` succeeds.
    fn and(&mut self, expr: impl FnOnce(&mut Self) -> bool) -> bool {
        let start = self.pos;
        let matched = expr(self);
        self.pos = start;
        matched
    }

    /// A sequence: all of `expr` or nothing consumed.
    fn seq(&mut self, expr: impl FnOnce(&mut Self) -> bool) -> bool {
        let start = self.pos;
        let matched = expr(self);
        if !matched {
            self.pos = start;
        }
        matched
    }

    /// `_`: one or more blanks.
    fn ws(&mut self) -> bool {
        let is_ws = |c: char| matches!(c, ' ' | '\t' | '\r' | '\n');
        if !self.class(WS, is_ws) {
            return false;
        }
        while self.class(WS, is_ws) {}
        true
    }

    fn eof(&mut self) -> bool {
        self.not(|p| p.any())
    }

    fn input(&mut self) -> Option<Expr> {
        let start = self.pos;
        self.ws();
        if self.lit("(") {
            self.ws();
            if let Some(e) = self.or_expr() {
                self.ws();
                if self.lit(")") {
                    self.ws();
                    if self.eof() {
                        return Some(e);
                    }
                }
            }
        }
        self.pos = start;
        self.ws();
        if let Some(e) = self.or_expr() {
            self.ws();
            if self.eof() {
                return Some(e);
            }
        }
        self.pos = start;
        None
    }

    fn or_expr(&mut self) -> Option<Expr> {
        let left = self.and_expr()?;
        let after_left = self.pos;
        if self.seq(|p| p.ws() && p.lit("or") && p.ws()) {
            if let Some(right) = self.or_expr() {
                return Some(Expr::Or(Box::new(left), Box::new(right)));
            }
        }
        self.pos = after_left;
        Some(left)
    }

    fn and_expr(&mut self) -> Option<Expr> {
        let left = self.not_expr()?;
        let after_left = self.pos;
        if self.seq(|p| p.ws() && p.lit("and") && p.ws()) {
            if let Some(right) = self.and_expr() {
                return Some(Expr::And(Box::new(left), Box::new(right)));
            }
        }
        self.pos = after_left;
        Some(left)
    }

    fn not_expr(&mut self) -> Option<Expr> {
        let start = self.pos;
        if self.lit("not") && self.ws() {
            if let Some(e) = self.not_expr() {
                return Some(match e {
                    Expr::Not(inner) => *inner,
                    other => Expr::Not(Box::new(other)),
                });
            }
        }
        self.pos = start;
        self.paren_expr()
    }

    fn paren_expr(&mut self) -> Option<Expr> {
        let start = self.pos;
        // "(" _? OrExpression _? then ")" (a group) or not (unmatched);
        // the common prefix is parsed once.
        let mut unmatched_at = None;
        if self.lit("(") {
            self.ws();
            if let Some(e) = self.or_expr() {
                self.ws();
                if self.lit(")") {
                    return Some(e);
                }
                unmatched_at = Some(self.pos);
            }
        }
        self.pos = start;
        if let Some(m) = self.match_expr() {
            return Some(m);
        }
        if let Some(at) = unmatched_at {
            self.pos = at;
            if self.not(|p| p.lit(")")) {
                self.add_err(at, "grouping", "Unmatched parentheses");
            }
        }
        self.pos = start;
        None
    }

    fn match_expr(&mut self) -> Option<Expr> {
        let start = self.pos;
        if let Some(selector) = self.selector() {
            let after_selector = self.pos;
            if let Some(op) = self.selector_value_op() {
                if let Some(value) = self.value() {
                    return Some(Expr::Match {
                        selector,
                        op,
                        value: Some(value),
                    });
                }
            }
            self.pos = after_selector;
            let op = if self.seq(|p| p.ws() && p.lit("is") && p.ws() && p.lit("empty")) {
                Some(Op::IsEmpty)
            } else if self.seq(|p| {
                p.ws() && p.lit("is") && p.ws() && p.lit("not") && p.ws() && p.lit("empty")
            }) {
                Some(Op::IsNotEmpty)
            } else {
                None
            };
            if let Some(op) = op {
                return Some(Expr::Match {
                    selector,
                    op,
                    value: None,
                });
            }
        }
        self.pos = start;
        if let Some(value) = self.value() {
            let op = if self.seq(|p| p.ws() && p.lit("in") && p.ws()) {
                Some(Op::In)
            } else if self.seq(|p| p.ws() && p.lit("not") && p.ws() && p.lit("in") && p.ws()) {
                Some(Op::NotIn)
            } else {
                None
            };
            if let Some(op) = op {
                let before_selector = self.pos;
                if let Some(selector) = self.selector() {
                    return Some(Expr::Match {
                        selector,
                        op,
                        value: Some(value),
                    });
                }
                self.pos = before_selector;
                if self.not(|p| p.selector().is_some()) {
                    self.add_err(before_selector, "match", "Invalid selector");
                }
            }
        }
        self.pos = start;
        None
    }

    fn selector_value_op(&mut self) -> Option<Op> {
        if self.seq(|p| {
            p.ws();
            p.lit("==") && {
                p.ws();
                true
            }
        }) {
            return Some(Op::Equal);
        }
        if self.seq(|p| {
            p.ws();
            p.lit("!=") && {
                p.ws();
                true
            }
        }) {
            return Some(Op::NotEqual);
        }
        let words: [(&[&str], Op); 4] = [
            (&["contains"], Op::In),
            (&["not", "contains"], Op::NotIn),
            (&["matches"], Op::Matches),
            (&["not", "matches"], Op::NotMatches),
        ];
        for (keywords, op) in words {
            if self.seq(|p| keywords.iter().all(|k| p.ws() && p.lit(k)) && p.ws()) {
                return Some(op);
            }
        }
        None
    }

    fn identifier(&mut self) -> Option<String> {
        let start = self.pos;
        if !self.class("[a-zA-Z]", |c| c.is_ascii_alphabetic()) {
            return None;
        }
        while self.class("[a-zA-Z0-9_]", |c| c.is_ascii_alphanumeric() || c == '_') {}
        Some(self.s[start..self.pos].to_owned())
    }

    fn selector(&mut self) -> Option<Vec<String>> {
        let mut path = vec![self.identifier()?];
        loop {
            let start = self.pos;
            if self.lit(".") {
                if let Some(ident) = self.identifier() {
                    path.push(ident);
                    continue;
                }
            }
            self.pos = start;
            match self.index_expr() {
                Some(key) => path.push(key),
                None => break,
            }
        }
        Some(path)
    }

    fn index_expr(&mut self) -> Option<String> {
        let start = self.pos;
        if !self.lit("[") {
            return None;
        }
        self.ws();
        let literal_at = self.pos;
        if let Some(key) = self.string_lit() {
            self.ws();
            if self.lit("]") {
                return Some(key);
            }
            let unclosed_at = self.pos;
            // "[" _? !StringLiteral fails here; then the unclosed case.
            self.pos = literal_at;
            let _ = self.not(|p| p.string_lit().is_some());
            self.pos = unclosed_at;
            if self.not(|p| p.lit("]")) {
                self.add_err(unclosed_at, "index", "Unclosed index expression");
            }
        } else {
            self.pos = literal_at;
            if self.not(|p| p.string_lit().is_some()) {
                self.add_err(literal_at, "index", "Invalid index");
            }
        }
        self.pos = start;
        None
    }

    fn value(&mut self) -> Option<String> {
        if let Some(selector) = self.selector() {
            return Some(selector.join("."));
        }
        if let Some(number) = self.number_lit() {
            return Some(number);
        }
        self.string_lit()
    }

    fn number_lit(&mut self) -> Option<String> {
        let start = self.pos;
        self.lit("-");
        if self.integer_or_float() {
            let end = self.pos;
            if self.and(|p| p.ws() || p.eof() || p.lit(")")) {
                return Some(self.s[start..end].to_owned());
            }
            if self.not(|p| p.and(|p| p.ws() || p.eof() || p.lit(")"))) {
                self.add_err(end, "number", "Invalid number literal");
            }
        }
        self.pos = start;
        None
    }

    fn integer_or_float(&mut self) -> bool {
        self.seq(|p| {
            let whole = p.lit("0")
                || (p.class("[1-9]", |c| matches!(c, '1'..='9')) && {
                    while p.class("[0-9]", |c| c.is_ascii_digit()) {}
                    true
                });
            if !whole {
                return false;
            }
            p.seq(|p| {
                p.lit(".") && p.class("[0-9]", |c| c.is_ascii_digit()) && {
                    while p.class("[0-9]", |c| c.is_ascii_digit()) {}
                    true
                }
            });
            true
        })
    }

    fn string_lit(&mut self) -> Option<String> {
        let start = self.pos;
        for quote in ["`", "\""] {
            if self.lit(quote) {
                while self.seq(|p| p.not(|p| p.lit(quote)) && p.any()) {}
                if self.lit(quote) {
                    let text = &self.s[start..self.pos];
                    return Some(match go_unquote(text) {
                        Some(s) => s,
                        None => {
                            self.add_err(start, "string", "invalid syntax");
                            String::new()
                        }
                    });
                }
            }
            self.pos = start;
        }
        for quote in ["`", "\""] {
            if self.lit(quote) {
                while self.seq(|p| p.not(|p| p.lit(quote)) && p.any()) {}
                if self.eof() {
                    self.add_err(self.pos, "string", "Unterminated string literal");
                }
            }
            self.pos = start;
        }
        None
    }
}

/// Go's `strconv.Unquote` for a backquoted or double-quoted literal.
fn go_unquote(text: &str) -> Option<String> {
    if let Some(raw) = text.strip_prefix('`').and_then(|t| t.strip_suffix('`')) {
        return Some(raw.replace('\r', ""));
    }
    let body = text.strip_prefix('"')?.strip_suffix('"')?;
    if body.contains('\n') {
        return None;
    }
    let mut out = String::new();
    let mut chars = body.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        let escaped = chars.next()?;
        let code = |chars: &mut std::str::Chars, n: usize, radix: u32| -> Option<u32> {
            let digits: String = chars.by_ref().take(n).collect();
            if digits.chars().count() != n {
                return None;
            }
            u32::from_str_radix(&digits, radix).ok()
        };
        match escaped {
            'a' => out.push('\u{7}'),
            'b' => out.push('\u{8}'),
            'f' => out.push('\u{c}'),
            'n' => out.push('\n'),
            'r' => out.push('\r'),
            't' => out.push('\t'),
            'v' => out.push('\u{b}'),
            '\\' => out.push('\\'),
            '"' => out.push('"'),
            'x' => out.push(char::from_u32(code(&mut chars, 2, 16)?)?),
            'u' => out.push(char::from_u32(code(&mut chars, 4, 16)?)?),
            'U' => out.push(char::from_u32(code(&mut chars, 8, 16)?)?),
            '0'..='7' => {
                let rest = code(&mut chars, 2, 8)?;
                let value = escaped.to_digit(8)? * 64 + rest;
                if value > 255 {
                    return None;
                }
                out.push(char::from_u32(value)?);
            }
            _ => return None,
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(selector: &str, op: Op, value: Option<&str>) -> Expr {
        Expr::Match {
            selector: selector.split('.').map(str::to_owned).collect(),
            op,
            value: value.map(str::to_owned),
        }
    }

    #[test]
    fn match_forms() {
        assert_eq!(
            parse("Service.Tags contains foo"),
            Ok(m("Service.Tags", Op::In, Some("foo")))
        );
        assert_eq!(parse("foo in Tags"), Ok(m("Tags", Op::In, Some("foo"))));
        assert_eq!(
            parse("\"a b\" not in Tags"),
            Ok(m("Tags", Op::NotIn, Some("a b")))
        );
        assert_eq!(parse("Port==80"), Ok(m("Port", Op::Equal, Some("80"))));
        assert_eq!(
            parse("Port != -1.5"),
            Ok(m("Port", Op::NotEqual, Some("-1.5")))
        );
        assert_eq!(parse("Meta is empty"), Ok(m("Meta", Op::IsEmpty, None)));
        assert_eq!(
            parse("Meta is not empty"),
            Ok(m("Meta", Op::IsNotEmpty, None))
        );
        assert_eq!(
            parse("Name matches `^a.*\\d$`"),
            Ok(m("Name", Op::Matches, Some("^a.*\\d$")))
        );
        assert_eq!(
            parse("Name not matches \"x\\ty\""),
            Ok(m("Name", Op::NotMatches, Some("x\ty")))
        );
        assert_eq!(
            parse("Name not contains x"),
            Ok(m("Name", Op::NotIn, Some("x")))
        );
        assert_eq!(
            parse("Node.Meta[\"rack id\"] == r1"),
            Ok(Expr::Match {
                selector: vec!["Node".into(), "Meta".into(), "rack id".into()],
                op: Op::Equal,
                value: Some("r1".into())
            })
        );
        // A bare value is read as a selector and kept as written.
        assert_eq!(
            parse("Address == foo.bar"),
            Ok(m("Address", Op::Equal, Some("foo.bar")))
        );
    }

    #[test]
    fn precedence_and_grouping() {
        let a = || Box::new(m("a", Op::Equal, Some("1")));
        let b = || Box::new(m("b", Op::Equal, Some("2")));
        let c = || Box::new(m("c", Op::Equal, Some("3")));
        assert_eq!(
            parse("a == 1 or b == 2 and c == 3"),
            Ok(Expr::Or(a(), Box::new(Expr::And(b(), c()))))
        );
        assert_eq!(
            parse("(a == 1 or b == 2) and c == 3"),
            Ok(Expr::And(Box::new(Expr::Or(a(), b())), c()))
        );
        assert_eq!(
            parse("not a == 1 and b == 2"),
            Ok(Expr::And(Box::new(Expr::Not(a())), b()))
        );
        assert_eq!(
            parse("not (a == 1 and b == 2)"),
            Ok(Expr::Not(Box::new(Expr::And(a(), b()))))
        );
        assert_eq!(parse("not not a == 1"), Ok(*a()));
        assert_eq!(parse("  ( a == 1 )  "), Ok(*a()));
        // Keywords need blanks around them; `notify` is a selector.
        assert_eq!(parse("notify == x"), Ok(m("notify", Op::Equal, Some("x"))));
    }

    #[test]
    fn errors_read_like_pigeon() {
        assert_eq!(
            parse("").unwrap_err(),
            "1:1 (0): no match found, expected: \"(\", \"-\", \"0\", \"\\\"\", \"`\", \"not\", [ \\t\\r\\n], [1-9] or [a-zA-Z]"
        );
        assert_eq!(
            parse("Name ==").unwrap_err(),
            "1:8 (7): no match found, expected: \"-\", \"0\", \"\\\"\", \"`\", [ \\t\\r\\n], [1-9] or [a-zA-Z]"
        );
        let e = parse("Name = x").unwrap_err();
        assert!(e == "1:6 (5): no match found, expected: \"!=\", \"==\", \"contains\", \"in\", \"is\", \"matches\", \"not\" or [ \\t\\r\\n]", "{e}");
        assert_eq!(
            parse("(Name == x").unwrap_err(),
            "1:11 (10): rule grouping: Unmatched parentheses"
        );
        assert_eq!(
            parse("Name == \"abc").unwrap_err(),
            "1:13 (12): rule string: Unterminated string literal"
        );
        assert_eq!(
            parse("Meta[foo] == x").unwrap_err(),
            "1:6 (5): rule index: Invalid index"
        );
        assert_eq!(
            parse("Meta[\"foo\" == x").unwrap_err(),
            "1:12 (11): rule index: Unclosed index expression"
        );
        assert_eq!(
            parse("Port == 12x").unwrap_err(),
            "1:11 (10): rule number: Invalid number literal"
        );
        assert_eq!(
            parse("x in \"y\"").unwrap_err(),
            "1:6 (5): rule match: Invalid selector"
        );
        assert_eq!(
            parse("a == 1 and").unwrap_err(),
            "1:11 (10): no match found, expected: [ \\t\\r\\n]"
        );
        assert_eq!(
            parse("Name == web-1").unwrap_err(),
            "1:12 (11): no match found, expected: \".\", \"[\", [ \\t\\r\\n], [a-zA-Z0-9_] or EOF"
        );
        assert_eq!(
            parse("Name == \"a\\q\"").unwrap_err(),
            "1:9 (8): rule string: invalid syntax"
        );
    }
}
