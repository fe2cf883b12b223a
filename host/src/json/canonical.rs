//! The canonical form webhooks sign: keys sorted in RFC 8785 order, whitespace
//! dropped, strings and numbers kept exactly as written.

use super::{Utf16Units, MAX_DEPTH};
use std::cmp::Ordering;

/// Why a text has no canonical form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{problem} at byte {offset}")]
pub struct NotCanonical {
    /// Byte offset in the text.
    pub offset: usize,
    pub problem: &'static str,
}

pub(super) const TOO_DEEP: &str = "arrays and objects nest deeper than 128 levels";

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
