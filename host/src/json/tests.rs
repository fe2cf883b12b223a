use super::canonical::TOO_DEEP;
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
    assert_eq!(canon(text), r#"{"big":123456789012345678901234567890,"e":2E-7,"f":1.0,"inf":1e400,"neg":-0.0,"z":0}"#);
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
