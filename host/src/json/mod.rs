//! Raw JSON text, handled without a round trip through `serde_json::Value` (which
//! rejects lone surrogates like `"\ud800"` and numbers like `1e400`, rounds integers
//! above u64, and recurses): the nesting bound every stage applies, the canonical form
//! webhooks sign, and a string rewriter that keeps every other byte.

use sha2::{Digest, Sha256};

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

mod canonical;
#[cfg(test)]
mod tests;

pub use canonical::{canonicalize, NotCanonical};

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

/// The UTF-16 code units a checked string token decodes to; `\uXXXX` gives its unit as
/// is, so lone surrogates order like any other unit.
pub(crate) struct Utf16Units<'a> {
    chars: std::str::Chars<'a>,
    /// The low half of a character outside the BMP.
    pending: Option<u16>,
}

impl<'a> Utf16Units<'a> {
    pub(crate) fn new(token: &'a str) -> Self {
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
