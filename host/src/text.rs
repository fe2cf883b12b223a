//! Text from outside (a guest, a client, a receiver) made safe to keep: cut to a
//! length before it is copied further, with line breaks and control characters
//! escaped so it cannot forge a log line, a header or a DLQ field.

use std::borrow::Cow;

/// `s` cut to at most `max` bytes, at a character boundary.
pub fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Characters that could start a new line or hide text: control characters, the
/// Unicode line and paragraph separators, and the bidirectional overrides and isolates.
fn needs_escape(c: char) -> bool {
    c.is_control() || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

fn push_escaped(out: &mut String, c: char) {
    match c {
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        c if needs_escape(c) => out.extend(c.escape_unicode()),
        c => out.push(c),
    }
}

/// `s` with line breaks and other such characters written as `\n`, `\r`, `\t`,
/// `\u{1b}`, `\u{202e}`…: one line that cannot pretend to be another.
pub fn escape_control(s: &str) -> Cow<'_, str> {
    if !s.chars().any(needs_escape) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    s.chars().for_each(|c| push_escaped(&mut out, c));
    Cow::Owned(out)
}

/// Marks where [`log_safe`] cut.
const CUT: &str = "…";

/// Text from a receiver or a broker for one log line and one DLQ field: escaped as
/// [`escape_control`] does and cut so the result is at most `max_bytes` bytes (the cut
/// marked `…`). Stops reading `text` once past the bound.
pub fn log_safe(text: &str, max_bytes: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max_bytes) + 8);
    for c in text.chars() {
        if out.len() > max_bytes {
            break;
        }
        push_escaped(&mut out, c);
    }
    if out.len() <= max_bytes {
        return out;
    }
    let mut end = max_bytes.saturating_sub(CUT.len());
    while !out.is_char_boundary(end) {
        end -= 1;
    }
    out.truncate(end);
    out.push_str(CUT);
    out
}

/// Outside text as hostd keeps it: at most `max` bytes of it, control characters
/// escaped, and a note of its full length when it had to be cut.
pub fn capped(s: &str, max: usize) -> String {
    let cut = truncate(s, max);
    let mut out = escape_control(cut).into_owned();
    if cut.len() < s.len() {
        out.push_str(&format!("… ({} bytes in all)", s.len()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_at_a_character_boundary() {
        assert_eq!(truncate("héllo", 2), "h");
        assert_eq!(truncate("héllo", 3), "hé");
        assert_eq!(truncate("abc", 10), "abc");
    }

    #[test]
    fn escapes_what_could_forge_a_line() {
        assert_eq!(escape_control("a\nb\r\tc\u{1b}[31m"), "a\\nb\\r\\tc\\u{1b}[31m");
        assert!(matches!(escape_control("plain é"), Cow::Borrowed(_)));
    }

    #[test]
    fn log_safe_escapes_what_could_forge_a_log_line() {
        assert_eq!(log_safe("ok\nERROR fake\r\tx\u{1b}[31m\u{0}", 100), "ok\\nERROR fake\\r\\tx\\u{1b}[31m\\u{0}");
        assert_eq!(log_safe("a\u{2028}b\u{202e}c\u{85}", 100), "a\\u{2028}b\\u{202e}c\\u{85}");
        assert_eq!(log_safe("plain é 😀", 100), "plain é 😀");
    }

    #[test]
    fn log_safe_bounds_the_result_in_bytes() {
        assert_eq!(log_safe("abc", 3), "abc");
        assert_eq!(log_safe("abcd", 4), "abcd");
        assert_eq!(log_safe("abcdefgh", 6), "abc…");
        for text in ["\n".repeat(5000), "é".repeat(5000), "x".repeat(5000), "\u{1}".repeat(5000)] {
            let out = log_safe(&text, 2048);
            assert!(out.len() <= 2048 && out.ends_with('…'), "{} bytes", out.len());
        }
    }

    #[test]
    fn capped_says_how_long_it_was() {
        let long = format!("x\n{}", "y".repeat(5000));
        let kept = capped(&long, 10);
        assert!(kept.starts_with("x\\nyyyyyyyy…"), "{kept}");
        assert!(kept.ends_with("(5002 bytes in all)"), "{kept}");
        assert_eq!(capped("short", 10), "short");
    }
}
