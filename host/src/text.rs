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

/// `s` with line breaks and other control characters written as `\n`, `\r`, `\t`,
/// `\u{1b}`…: one line that cannot pretend to be another.
pub fn escape_control(s: &str) -> Cow<'_, str> {
    if !s.chars().any(char::is_control) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.extend(c.escape_unicode()),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
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
    fn capped_says_how_long_it_was() {
        let long = format!("x\n{}", "y".repeat(5000));
        let kept = capped(&long, 10);
        assert!(kept.starts_with("x\\nyyyyyyyy…"), "{kept}");
        assert!(kept.ends_with("(5002 bytes in all)"), "{kept}");
        assert_eq!(capped("short", 10), "short");
    }
}
