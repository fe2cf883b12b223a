//! Raw JSON text, handled without a round trip through `serde_json::Value` (which
//! rejects lone surrogates like `"\ud800"` and numbers like `1e400`, rounds integers
//! above u64, and recurses): the nesting bound every stage applies, the canonical form
//! webhooks sign, and a string rewriter that keeps every other byte.

use sha2::{Digest, Sha256};
use std::cmp::Ordering;

/// Deepest nesting of arrays and objects accepted anywhere: in an event at ingest, in a
/// policy's payload, in the canonical form. Matches `serde_json`'s own recursion limit,
/// so anything accepted here can also be read by a `Value`-based consumer's parser.
pub const MAX_DEPTH: usize = 128;

/// How deeply `text` nests arrays and objects (0 for a scalar), counted outside strings
/// in one pass without allocating. Meant for text already known to be JSON (a
/// `RawValue`); on other text it still terminates, with a count of brackets.
pub fn nesting_depth(text: &str) -> usize {
    let (mut depth, mut max, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    for &b in text.as_bytes() {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                max = max.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

/// Whether `text` nests arrays and objects more than `max` levels deep.
pub fn depth_exceeds(text: &str, max: usize) -> bool {
    nesting_depth(text) > max
}

/// `Err` naming the depth when `text` nests deeper than [`MAX_DEPTH`].
pub fn check_depth(text: &str) -> Result<(), String> {
    let depth = nesting_depth(text);
    if depth > MAX_DEPTH {
        return Err(format!("arrays and objects nest {depth} levels deep; the limit is {MAX_DEPTH}"));
    }
    Ok(())
}

/// Why a text has no canonical form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{problem} at byte {offset}")]
pub struct NotCanonical {
    /// Byte offset in the text.
    pub offset: usize,
    pub problem: &'static str,
}

const TOO_DEEP: &str = "arrays and objects nest deeper than 128 levels";

/// The canonical form of the JSON text `text`, the bytes a webhook signs and sends:
/// - every object's members sorted by key, comparing keys by their UTF-16 code units
///   after unescaping (the order of RFC 8785); members with equal keys (duplicates) stay
///   in the order written, so first-wins and last-wins readers see the same value;
/// - strings (keys included) and numbers byte for byte as written: `"\ud800"`, `"\u00e9"`,
///   `1e400`, `123456789012345678901234567890` and `1.0` are not re-encoded;
/// - whitespace between tokens removed.
///
/// Nothing else changes, so a reader sees exactly what the policy produced. `Err` for
/// text that is not JSON (RFC 8259) or nests deeper than [`MAX_DEPTH`]; the recursion is
/// bounded by that depth.
pub fn canonicalize(text: &str) -> Result<String, NotCanonical> {
    let mut parser = Parser { text, pos: 0 };
    parser.skip_whitespace();
    let node = parser.value(0)?;
    parser.skip_whitespace();
    if parser.pos != text.len() {
        return Err(parser.error("trailing characters after the JSON value"));
    }
    let mut out = String::with_capacity(text.len());
    write_node(&node, &mut out);
    Ok(out)
}

/// One parsed value; scalars (strings with their quotes) are slices of the text.
enum Node<'a> {
    Scalar(&'a str),
    Array(Vec<Node<'a>>),
    /// (raw key with its quotes, value), already sorted.
    Object(Vec<(&'a str, Node<'a>)>),
}

fn write_node(node: &Node<'_>, out: &mut String) {
    match node {
        Node::Scalar(s) => out.push_str(s),
        Node::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_node(item, out);
            }
            out.push(']');
        }
        Node::Object(members) => {
            out.push('{');
            for (i, (key, value)) in members.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(key);
                out.push(':');
                write_node(value, out);
            }
            out.push('}');
        }
    }
}

struct Parser<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Parser<'a> {
    fn error(&self, problem: &'static str) -> NotCanonical {
        NotCanonical { offset: self.pos, problem }
    }

    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.pos).copied()
    }

    fn skip_whitespace(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn expect(&mut self, byte: u8, problem: &'static str) -> Result<(), NotCanonical> {
        if self.peek() != Some(byte) {
            return Err(self.error(problem));
        }
        self.pos += 1;
        Ok(())
    }

    /// A value inside `depth` enclosing arrays and objects.
    fn value(&mut self, depth: usize) -> Result<Node<'a>, NotCanonical> {
        match self.peek() {
            Some(b'{') => self.object(depth),
            Some(b'[') => self.array(depth),
            Some(b'"') => Ok(Node::Scalar(self.string()?)),
            Some(b'-' | b'0'..=b'9') => Ok(Node::Scalar(self.number()?)),
            Some(b't') => self.literal("true"),
            Some(b'f') => self.literal("false"),
            Some(b'n') => self.literal("null"),
            Some(_) => Err(self.error("expected a JSON value")),
            None => Err(self.error("unexpected end of the text")),
        }
    }

    fn literal(&mut self, word: &'static str) -> Result<Node<'a>, NotCanonical> {
        let start = self.pos;
        if !self.text[start..].starts_with(word) {
            return Err(self.error("expected a JSON value"));
        }
        self.pos += word.len();
        Ok(Node::Scalar(&self.text[start..self.pos]))
    }

    fn array(&mut self, depth: usize) -> Result<Node<'a>, NotCanonical> {
        if depth >= MAX_DEPTH {
            return Err(self.error(TOO_DEEP));
        }
        self.pos += 1;
        let mut items = Vec::new();
        self.skip_whitespace();
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(Node::Array(items));
        }
        loop {
            self.skip_whitespace();
            items.push(self.value(depth + 1)?);
            self.skip_whitespace();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    return Ok(Node::Array(items));
                }
                _ => return Err(self.error("expected `,` or `]` in an array")),
            }
        }
    }

    fn object(&mut self, depth: usize) -> Result<Node<'a>, NotCanonical> {
        if depth >= MAX_DEPTH {
            return Err(self.error(TOO_DEEP));
        }
        self.pos += 1;
        let mut members = Vec::new();
        self.skip_whitespace();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(Node::Object(members));
        }
        loop {
            self.skip_whitespace();
            if self.peek() != Some(b'"') {
                return Err(self.error("expected a string key in an object"));
            }
            let key = self.string()?;
            self.skip_whitespace();
            self.expect(b':', "expected `:` after an object key")?;
            self.skip_whitespace();
            let value = self.value(depth + 1)?;
            members.push((key, value));
            self.skip_whitespace();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    // Stable: duplicate keys keep their written order.
                    members.sort_by(|a, b| compare_keys(a.0, b.0));
                    return Ok(Node::Object(members));
                }
                _ => return Err(self.error("expected `,` or `}` in an object")),
            }
        }
    }

    /// A string token, quotes included, checked (escapes, no raw control characters)
    /// but not decoded.
    fn string(&mut self) -> Result<&'a str, NotCanonical> {
        let start = self.pos;
        self.pos += 1;
        let bytes = self.text.as_bytes();
        loop {
            match bytes.get(self.pos) {
                None => return Err(NotCanonical { offset: start, problem: "unterminated string" }),
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(&self.text[start..self.pos]);
                }
                Some(b'\\') => match bytes.get(self.pos + 1) {
                    Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => self.pos += 2,
                    Some(b'u') => {
                        let hex = bytes.get(self.pos + 2..self.pos + 6);
                        if !hex.is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) {
                            return Err(self.error("`\\u` must be followed by four hex digits"));
                        }
                        self.pos += 6;
                    }
                    _ => return Err(self.error("invalid escape in a string")),
                },
                Some(b) if *b < 0x20 => return Err(self.error("unescaped control character in a string")),
                Some(_) => self.pos += 1,
            }
        }
    }

    /// A number token as written, checked against the JSON grammar.
    fn number(&mut self) -> Result<&'a str, NotCanonical> {
        let start = self.pos;
        let bytes = self.text.as_bytes();
        let digits = |pos: &mut usize| {
            let from = *pos;
            while bytes.get(*pos).is_some_and(u8::is_ascii_digit) {
                *pos += 1;
            }
            *pos - from
        };
        let mut pos = self.pos;
        if bytes.get(pos) == Some(&b'-') {
            pos += 1;
        }
        match bytes.get(pos) {
            Some(b'0') => pos += 1,
            Some(b'1'..=b'9') => {
                digits(&mut pos);
            }
            _ => return Err(NotCanonical { offset: pos, problem: "invalid number" }),
        }
        if bytes.get(pos) == Some(&b'.') {
            pos += 1;
            if digits(&mut pos) == 0 {
                return Err(NotCanonical { offset: pos, problem: "a number needs digits after `.`" });
            }
        }
        if matches!(bytes.get(pos), Some(b'e' | b'E')) {
            pos += 1;
            if matches!(bytes.get(pos), Some(b'+' | b'-')) {
                pos += 1;
            }
            if digits(&mut pos) == 0 {
                return Err(NotCanonical { offset: pos, problem: "a number needs digits in its exponent" });
            }
        }
        self.pos = pos;
        Ok(&self.text[start..pos])
    }
}

/// Orders two raw string tokens (quotes included) by the UTF-16 code units they decode to.
fn compare_keys(a: &str, b: &str) -> Ordering {
    Utf16Units::new(a).cmp(Utf16Units::new(b))
}

/// The UTF-16 code units a checked string token decodes to; `\uXXXX` gives its unit as
/// is, so lone surrogates order like any other unit.
struct Utf16Units<'a> {
    chars: std::str::Chars<'a>,
    /// The low half of a character outside the BMP.
    pending: Option<u16>,
}

impl<'a> Utf16Units<'a> {
    fn new(token: &'a str) -> Self {
        let inner = token.strip_prefix('"').and_then(|t| t.strip_suffix('"')).unwrap_or(token);
        Utf16Units { chars: inner.chars(), pending: None }
    }
}

impl Iterator for Utf16Units<'_> {
    type Item = u16;

    fn next(&mut self) -> Option<u16> {
        if let Some(low) = self.pending.take() {
            return Some(low);
        }
        let c = self.chars.next()?;
        if c != '\\' {
            let mut units = [0u16; 2];
            let encoded = c.encode_utf16(&mut units);
            if encoded.len() == 2 {
                self.pending = Some(encoded[1]);
            }
            return Some(encoded[0]);
        }
        Some(match self.chars.next()? {
            'b' => 0x08,
            'f' => 0x0c,
            'n' => 0x0a,
            'r' => 0x0d,
            't' => 0x09,
            'u' => {
                let mut unit = 0u16;
                for _ in 0..4 {
                    unit = unit << 4 | self.chars.next()?.to_digit(16)? as u16;
                }
                unit
            }
            other => other as u16,
        })
    }
}

/// `text` (JSON, checked by the caller) with every string token, keys included, that
/// `rewrite` returns `Some` for replaced by that text as a JSON string; every other byte
/// (numbers, whitespace, untouched strings) is kept as written. `rewrite` sees each
/// string decoded, with lone surrogates as U+FFFD. One pass, no recursion.
pub fn rewrite_strings(text: &str, mut rewrite: impl FnMut(&str) -> Option<String>) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let (mut copied, mut pos) = (0, 0);
    while pos < bytes.len() {
        if bytes[pos] != b'"' {
            pos += 1;
            continue;
        }
        let start = pos;
        pos += 1;
        while pos < bytes.len() && bytes[pos] != b'"' {
            pos += if bytes[pos] == b'\\' { 2 } else { 1 };
        }
        pos = (pos + 1).min(bytes.len());
        let token = &text[start..pos];
        if let Some(new) = rewrite(&decode_lossy(token)) {
            out.push_str(&text[copied..start]);
            push_json_string(&mut out, &new);
            copied = pos;
        }
    }
    out.push_str(&text[copied..]);
    out
}

/// The byte offset of the first string token in `text` (JSON) that holds a lone
/// surrogate escape (`"\ud800"`), which no UTF-8 string can represent.
pub fn lone_surrogate(text: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut pos = 0;
    while pos < bytes.len() {
        if bytes[pos] != b'"' {
            pos += 1;
            continue;
        }
        let start = pos;
        pos += 1;
        let mut escaped = false;
        while pos < bytes.len() && bytes[pos] != b'"' {
            escaped |= bytes[pos] == b'\\';
            pos += if bytes[pos] == b'\\' { 2 } else { 1 };
        }
        pos = (pos + 1).min(bytes.len());
        if escaped && char::decode_utf16(Utf16Units::new(&text[start..pos])).any(|c| c.is_err()) {
            return Some(start);
        }
    }
    None
}

/// A string token (quotes included) decoded; lone surrogates become U+FFFD.
pub fn decode_lossy(token: &str) -> String {
    let units: Vec<u16> = Utf16Units::new(token).collect();
    String::from_utf16_lossy(&units)
}

/// Appends `s` as a JSON string literal.
pub fn push_json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// A sha256 over `parts`, each prefixed with its length (8 bytes, big-endian), after a
/// fixed `domain` tag: distinct part lists never give the same input, whatever bytes
/// the parts hold.
pub fn length_prefixed_sha256(domain: &str, parts: &[&str]) -> [u8; 32] {
    let mut hash = Sha256::new();
    hash.update(domain.as_bytes());
    for part in parts {
        hash.update((part.len() as u64).to_be_bytes());
        hash.update(part.as_bytes());
    }
    hash.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(text: &str) -> String {
        canonicalize(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn sorts_keys_and_drops_whitespace() {
        assert_eq!(
            canon(" {\"b\" : 1,\n \"a\":{\"d\":[{\"z\":1,\"y\":2}],\"c\":\"x\"}} "),
            r#"{"a":{"c":"x","d":[{"y":2,"z":1}]},"b":1}"#
        );
        assert_eq!(canon("[ ]"), "[]");
        assert_eq!(canon("{ }"), "{}");
        assert_eq!(canon(" \"s\" "), "\"s\"");
    }

    #[test]
    fn keeps_lone_surrogates_and_escapes_as_written() {
        let text = r#"{"s":"\ud800","pair":"\ud83d\ude00","e":"\u00e9 é","q":"\"\\\/\b\f\n\r\t"}"#;
        assert_eq!(canon(text), r#"{"e":"\u00e9 é","pair":"\ud83d\ude00","q":"\"\\\/\b\f\n\r\t","s":"\ud800"}"#);
        // serde_json's Value, which this replaces, cannot even read it.
        assert!(serde_json::from_str::<serde_json::Value>(r#"{"s":"\ud800"}"#).is_err());
    }

    #[test]
    fn keeps_numbers_as_written() {
        let text = r#"{"big":123456789012345678901234567890,"inf":1e400,"neg":-0.0,"f":1.0,"e":2E-7,"z":0}"#;
        assert_eq!(
            canon(text),
            r#"{"big":123456789012345678901234567890,"e":2E-7,"f":1.0,"inf":1e400,"neg":-0.0,"z":0}"#
        );
    }

    #[test]
    fn bounds_nesting() {
        let ok = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert_eq!(canon(&ok), ok);
        let deep = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
        assert_eq!(canonicalize(&deep).unwrap_err().problem, TOO_DEEP);
        // Far deeper than any stack: refused, not overflowed.
        let very = format!("{}1{}", "{\"a\":".repeat(1_000_000), "}".repeat(1_000_000));
        assert_eq!(canonicalize(&very).unwrap_err().offset, MAX_DEPTH * 5);
        assert_eq!(nesting_depth(&very), 1_000_000);
        assert!(depth_exceeds(&deep, MAX_DEPTH) && !depth_exceeds(&ok, MAX_DEPTH));
        assert!(check_depth(&deep).unwrap_err().contains("129 levels deep; the limit is 128"));
        // Brackets inside strings do not count.
        assert_eq!(nesting_depth(r#"{"a":"[[[{\"[","b":[1]}"#), 2);
    }

    #[test]
    fn duplicate_keys_keep_their_written_order() {
        assert_eq!(canon(r#"{"b":1,"a":2,"b":3,"a":4}"#), r#"{"a":2,"a":4,"b":1,"b":3}"#);
        // `\u0061` is `a`: an equal key, so it stays after the `a` written before it.
        assert_eq!(canon(r#"{"b":0,"a":1,"\u0061":2}"#), r#"{"a":1,"\u0061":2,"b":0}"#);
        assert_eq!(canon(r#"{"b":0,"\u0061":1,"a":2}"#), r#"{"\u0061":1,"a":2,"b":0}"#);
    }

    #[test]
    fn keys_order_by_utf16_code_units_after_unescaping() {
        // `\u0062` is `b`, between `a` and `c`; `\n` (0x0a) sorts before `A`.
        assert_eq!(canon(r#"{"c":3,"\u0062":2,"a":1,"\n":0}"#), r#"{"\n":0,"a":1,"\u0062":2,"c":3}"#);
        // RFC 8785's example: U+FB33 (one unit) sorts after U+1F600 (surrogates D83D DE00).
        assert_eq!(canon("{\"\u{fb33}\":1,\"\u{1f600}\":2}"), "{\"\u{1f600}\":2,\"\u{fb33}\":1}");
        // A lone surrogate key orders by its unit.
        assert_eq!(canon(r#"{"\ud800":1,"\uffff":2,"z":0}"#), r#"{"z":0,"\ud800":1,"\uffff":2}"#);
    }

    #[test]
    fn refuses_what_is_not_json_with_the_place() {
        for (text, problem) in [
            ("{\"a\":1,}", "expected a string key in an object"),
            ("[1 2]", "expected `,` or `]` in an array"),
            ("01", "trailing characters after the JSON value"),
            ("1.", "a number needs digits after `.`"),
            ("1e", "a number needs digits in its exponent"),
            ("\"\\x\"", "invalid escape in a string"),
            ("\"\\u12\"", "`\\u` must be followed by four hex digits"),
            ("\"a\nb\"", "unescaped control character in a string"),
            ("\"abc", "unterminated string"),
            ("nul", "expected a JSON value"),
            ("", "unexpected end of the text"),
            ("{\"a\" 1}", "expected `:` after an object key"),
        ] {
            assert_eq!(canonicalize(text).unwrap_err().problem, problem, "{text:?}");
        }
        assert_eq!(canonicalize("[1,x]").unwrap_err().to_string(), "expected a JSON value at byte 3");
    }

    #[test]
    fn rewrites_only_the_strings_asked_for() {
        let text = r#"{ "keep": "\ud800", "n": 1e400, "secret": "a\u0062c", "list": ["abc", "x\"abc"] }"#;
        let out = rewrite_strings(text, |s| s.contains("abc").then(|| s.replace("abc", "***")));
        assert_eq!(out, r#"{ "keep": "\ud800", "n": 1e400, "secret": "***", "list": ["***", "x\"***"] }"#);
        assert_eq!(decode_lossy(r#""\ud800\n\u00e9""#), "\u{fffd}\n\u{e9}");
        assert_eq!(lone_surrogate(r#"{"a":"\ud83d\ude00","b":"x\udc00"}"#), Some(24));
        assert_eq!(lone_surrogate(r#"{"a":"\ud83d\ude00","b":"\\ud800"}"#), None);
    }

    #[test]
    fn length_prefixes_keep_parts_apart() {
        let h = |parts: &[&str]| length_prefixed_sha256("t", parts);
        assert_ne!(h(&["ab", "c"]), h(&["a", "bc"]));
        assert_ne!(h(&["a", ""]), h(&["a"]));
        assert_eq!(h(&["a", "b"]), h(&["a", "b"]));
    }
}
