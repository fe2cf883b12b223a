//! Text from outside (a receiver's answer, a broker's error) made safe for one log line
//! and one DLQ field: bounded, and with nothing that can start a new line or hide text.

/// Marks where [`log_safe`] cut.
const CUT: &str = "…";

/// `text` with line breaks, tabs and every other control character escaped (`\n`, `\r`,
/// `\t`, `\u{..}`; also U+2028/U+2029 and the bidirectional overrides and isolates), cut
/// at a character boundary so the result is at most `max_bytes` bytes (the cut marked
/// `…`). Stops reading `text` once past the bound.
pub fn log_safe(text: &str, max_bytes: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max_bytes) + 8);
    for c in text.chars() {
        if out.len() > max_bytes {
            break;
        }
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control()
                || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}') =>
            {
                out.extend(c.escape_unicode())
            }
            c => out.push(c),
        }
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

#[cfg(test)]
mod tests {
    use super::log_safe;

    #[test]
    fn escapes_what_could_forge_a_log_line() {
        assert_eq!(log_safe("ok\nERROR fake\r\tx\u{1b}[31m\u{0}", 100), "ok\\nERROR fake\\r\\tx\\u{1b}[31m\\u{0}");
        assert_eq!(log_safe("a\u{2028}b\u{202e}c\u{85}", 100), "a\\u{2028}b\\u{202e}c\\u{85}");
        assert_eq!(log_safe("plain é 😀", 100), "plain é 😀");
    }

    #[test]
    fn bounds_the_result_in_bytes() {
        assert_eq!(log_safe("abc", 3), "abc");
        assert_eq!(log_safe("abcd", 4), "abcd");
        let cut = log_safe("abcdefgh", 6);
        assert_eq!(cut, "abc…");
        for text in ["\n".repeat(5000), "é".repeat(5000), "x".repeat(5000), "\u{1}".repeat(5000)] {
            let out = log_safe(&text, 2048);
            assert!(out.len() <= 2048 && out.ends_with('…'), "{} bytes", out.len());
        }
    }
}
