//! Output in the shapes serf's Go code produces: `json.MarshalIndent` with
//! two spaces, `net.TCPAddr.String()`, `%q`.

use std::net::IpAddr;

/// A JSON value whose objects keep the order they were built in (Go writes
/// struct fields in declaration order, map keys sorted).
pub enum Json {
    Null,
    Number(String),
    Str(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

impl Json {
    pub fn str(s: impl Into<String>) -> Json {
        Json::Str(s.into())
    }

    pub fn num(n: impl ToString) -> Json {
        Json::Number(n.to_string())
    }

    /// Go's `json.MarshalIndent(v, "", "  ")`.
    pub fn indented(&self) -> String {
        let mut out = String::new();
        self.write(&mut out, 0);
        out
    }

    fn write(&self, out: &mut String, depth: usize) {
        let pad = |out: &mut String, depth: usize| {
            out.push('\n');
            for _ in 0..depth {
                out.push_str("  ");
            }
        };
        match self {
            Json::Null => out.push_str("null"),
            Json::Number(n) => out.push_str(n),
            Json::Str(s) => quote_json(s, out),
            Json::Array(items) if items.is_empty() => out.push_str("[]"),
            Json::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    pad(out, depth + 1);
                    item.write(out, depth + 1);
                }
                pad(out, depth);
                out.push(']');
            }
            Json::Object(fields) if fields.is_empty() => out.push_str("{}"),
            Json::Object(fields) => {
                out.push('{');
                for (i, (k, v)) in fields.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    pad(out, depth + 1);
                    quote_json(k, out);
                    out.push_str(": ");
                    v.write(out, depth + 1);
                }
                pad(out, depth);
                out.push('}');
            }
        }
    }
}

/// A JSON string as Go's encoder writes it: HTML-sensitive characters and
/// U+2028/U+2029 escaped, other control characters as `\u00XX`.
fn quote_json(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// `net.TCPAddr{IP, Port}.String()`: `1.2.3.4:7946`, `[::1]:7946`.
pub fn tcp_addr(ip: IpAddr, port: u16) -> String {
    match ip {
        IpAddr::V4(v4) => format!("{v4}:{port}"),
        IpAddr::V6(v6) => format!("[{v6}]:{port}"),
    }
}

/// Go's `%q` for a string.
pub fn go_quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\u{b}' => out.push_str("\\v"),
            c if c.is_control() => {
                let n = c as u32;
                if n < 0x100 {
                    out.push_str(&format!("\\x{n:02x}"));
                } else {
                    out.push_str(&format!("\\u{n:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marshal_indent_shape() {
        let v = Json::Object(vec![
            (
                "members".into(),
                Json::Array(vec![Json::Object(vec![
                    ("name".into(), Json::str("a<b>&")),
                    ("port".into(), Json::num(7946)),
                    ("tags".into(), Json::Object(vec![])),
                ])]),
            ),
            ("none".into(), Json::Array(vec![])),
            ("null".into(), Json::Null),
        ]);
        assert_eq!(
            v.indented(),
            "{\n  \"members\": [\n    {\n      \"name\": \"a\\u003cb\\u003e\\u0026\",\n      \"port\": 7946,\n      \"tags\": {}\n    }\n  ],\n  \"none\": [],\n  \"null\": null\n}"
        );
    }

    #[test]
    fn addresses_and_quotes() {
        assert_eq!(
            tcp_addr(
                "127.0.0.1".parse().unwrap_or(IpAddr::from([0, 0, 0, 0])),
                7946
            ),
            "127.0.0.1:7946"
        );
        assert_eq!(
            tcp_addr("::1".parse().unwrap_or(IpAddr::from([0, 0, 0, 0])), 1),
            "[::1]:1"
        );
        assert_eq!(go_quote("a\"b\n"), "\"a\\\"b\\n\"");
    }
}
