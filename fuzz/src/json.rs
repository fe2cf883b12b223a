//! Structured-but-hostile JSON: a small syntax tree whose strings can hold raw escapes
//! (lone surrogates, bad `\u` sequences), raw control characters and long runs, whose
//! numbers are written as text (`1e400`, `18446744073709551616`, `-0`, `01`), plus
//! nesting deeper than any parser's default limit and plain garbage. Rendering gives
//! the exact text, so a test knows what it sent.

use proptest::prelude::*;
use std::fmt::Write;

/// A piece of a JSON string's contents.
#[derive(Debug, Clone)]
pub enum Piece {
    /// Text, escaped as JSON requires.
    Text(String),
    /// Written verbatim between the quotes: `\ud800`, `\x41`, `\u12`, ...
    Escape(&'static str),
    /// A character written raw, unescaped (a control character is then invalid JSON).
    Raw(char),
    /// `n` copies of a character, escaped.
    Run(char, usize),
}

/// A JSON-ish value.
#[derive(Debug, Clone)]
pub enum J {
    Null,
    Bool(bool),
    /// A number as written.
    Num(String),
    Str(Vec<Piece>),
    Arr(Vec<J>),
    Obj(Vec<(Vec<Piece>, J)>),
    /// `depth` levels of `[` (or `{"a":`) around `inner`, closed unless `unclosed`.
    Deep {
        object: bool,
        depth: usize,
        inner: Box<J>,
        unclosed: bool,
    },
    /// Text that is probably not JSON.
    Garbage(String),
}

impl J {
    pub fn str(s: &str) -> J {
        J::Str(vec![Piece::Text(s.to_string())])
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        self.render_into(&mut out);
        out
    }

    pub fn render_into(&self, out: &mut String) {
        match self {
            J::Null => out.push_str("null"),
            J::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            J::Num(n) => out.push_str(n),
            J::Str(pieces) => render_str(pieces, out),
            J::Arr(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    item.render_into(out);
                }
                out.push(']');
            }
            J::Obj(fields) => {
                out.push('{');
                for (i, (k, v)) in fields.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    render_str(k, out);
                    out.push(':');
                    v.render_into(out);
                }
                out.push('}');
            }
            J::Deep { object, depth, inner, unclosed } => {
                let (open, close) = if *object { ("{\"a\":", "}") } else { ("[", "]") };
                out.push_str(&open.repeat(*depth));
                inner.render_into(out);
                if !unclosed {
                    out.push_str(&close.repeat(*depth));
                }
            }
            J::Garbage(g) => out.push_str(g),
        }
    }
}

pub fn render_str(pieces: &[Piece], out: &mut String) {
    out.push('"');
    for p in pieces {
        match p {
            Piece::Text(s) => escape_into(s, out),
            Piece::Escape(e) => out.push_str(e),
            Piece::Raw(c) => out.push(*c),
            Piece::Run(c, n) => {
                let mut one = String::new();
                escape_into(&c.to_string(), &mut one);
                out.push_str(&one.repeat(*n));
            }
        }
    }
    out.push('"');
}

fn escape_into(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
}

/// Escapes that are legal, illegal, or legal-but-hostile inside a JSON string.
pub const ESCAPES: &[&str] = &[
    "\\ud800",
    "\\udc00",
    "\\udbff\\udfff",
    "\\ud83d\\ude00",
    "\\ud800\\u0041",
    "\\u0000",
    "\\u001b[31m",
    "\\n",
    "\\r\\n",
    "\\t",
    "\\/",
    "\\\"",
    "\\\\",
    "\\b\\f",
    "\\u2028",
    "\\ufeff",
    "\\uFFFF",
    "\\x41",
    "\\u12",
    "\\uzzzz",
    "\\",
    "\\U0041",
    "\\a",
];

/// Numbers as a client might write them, many outside what a u64 / f64 / serde holds.
pub const NUMBERS: &[&str] = &[
    "0",
    "-0",
    "1",
    "3",
    "-1",
    "1.5",
    "-1.5",
    "0.0",
    "1e400",
    "-1e400",
    "1e-400",
    "1E2",
    "2.5e3",
    "18446744073709551615",
    "18446744073709551616",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775809",
    "123456789012345678901234567890",
    "1767225600000",
    "1767225600000.5",
    "99999999999999999999999",
    "4.9e-324",
    "1.7976931348623157e308",
    "01",
    "1.",
    ".5",
    "+1",
    "NaN",
    "Infinity",
    "-",
    "1e",
    "0x10",
];

/// Text with the characters that break naive handling: quotes, backslashes, control
/// characters, non-ASCII, non-BMP, bidi overrides, line separators.
pub fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => "[a-z0-9_:-]{0,12}",
        2 => proptest::collection::vec(
            prop_oneof![
                Just('"'), Just('\\'), Just('\n'), Just('\r'), Just('\0'), Just('\u{1b}'), Just('\u{7f}'),
                Just('é'), Just('😀'), Just('\u{2028}'), Just('\u{202e}'), Just('\u{feff}'), Just('\u{fffd}'),
                Just('{'), Just(':'), Just(' '), any::<char>(), proptest::char::range('a', 'z')
            ],
            0..16
        )
        .prop_map(|cs| cs.into_iter().collect::<String>()),
        1 => any::<String>(),
    ]
}

pub fn piece() -> impl Strategy<Value = Piece> {
    prop_oneof![
        10 => text().prop_map(Piece::Text),
        3 => proptest::sample::select(ESCAPES).prop_map(Piece::Escape),
        1 => prop_oneof![Just('\n'), Just('\t'), Just('\0'), Just('\u{1f}'), Just('\r')].prop_map(Piece::Raw),
        1 => (prop_oneof![Just('x'), Just('é'), Just('\\'), Just('"'), Just('\0')], run_length())
            .prop_map(|(c, n)| Piece::Run(c, n)),
    ]
}

/// Lengths for long runs: mostly around limits (255, 256, 257, 1 KiB, 1 MiB).
pub fn run_length() -> impl Strategy<Value = usize> {
    prop_oneof![
        60 => 0usize..300,
        20 => proptest::sample::select(vec![255usize, 256, 257, 1023, 1024, 1025, 4096, 65_536]),
        1 => 100_000usize..300_000,
        1 => Just(1 << 20),
    ]
}

/// A string: usually plain, sometimes hostile.
pub fn string() -> impl Strategy<Value = J> {
    prop_oneof![
        6 => text().prop_map(|s| J::str(&s)),
        2 => proptest::collection::vec(piece(), 0..5).prop_map(J::Str),
    ]
}

/// A clean string: always valid JSON that decodes to what was generated.
pub fn clean_string() -> impl Strategy<Value = String> {
    text()
}

/// Escapes that are valid JSON syntax (a raw-value parser accepts them), hostile or not.
pub const VALID_ESCAPES: &[&str] = &[
    "\\ud800",
    "\\udc00",
    "\\udbff\\udfff",
    "\\ud83d\\ude00",
    "\\ud800\\u0041",
    "\\u0000",
    "\\u001b[31m",
    "\\n",
    "\\r\\n",
    "\\/",
    "\\u2028",
    "\\ufeff",
    "\\uFFFF",
];

/// Numbers that are valid JSON syntax, whether or not a u64 / f64 holds them.
pub const VALID_NUMBERS: &[&str] = &[
    "0",
    "-0",
    "1",
    "-1",
    "1.5",
    "1e400",
    "-1e400",
    "1e-400",
    "1E2",
    "18446744073709551615",
    "18446744073709551616",
    "-9223372036854775809",
    "123456789012345678901234567890",
    "4.9e-324",
];

/// A value that is valid JSON syntax (what a client's JSON encoder could emit, lone
/// surrogates and out-of-range numbers included), nested a little.
pub fn syntactic_value() -> impl Strategy<Value = J> {
    let leaf = prop_oneof![
        1 => Just(J::Null),
        1 => any::<bool>().prop_map(J::Bool),
        2 => proptest::sample::select(VALID_NUMBERS).prop_map(|n| J::Num(n.to_string())),
        1 => any::<i64>().prop_map(|n| J::Num(n.to_string())),
        4 => text().prop_map(|s| J::str(&s)),
        1 => proptest::collection::vec(
            prop_oneof![3 => text().prop_map(Piece::Text), 1 => proptest::sample::select(VALID_ESCAPES).prop_map(Piece::Escape)],
            0..4
        )
        .prop_map(J::Str),
    ];
    leaf.prop_recursive(3, 24, 5, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..5).prop_map(J::Arr),
            proptest::collection::vec(("[a-z_]{0,8}", inner), 0..5)
                .prop_map(|kv| J::Obj(kv.into_iter().map(|(k, v)| (vec![Piece::Text(k)], v)).collect())),
        ]
    })
}

pub fn number() -> impl Strategy<Value = J> {
    prop_oneof![
        4 => proptest::sample::select(NUMBERS).prop_map(|n| J::Num(n.to_string())),
        2 => any::<u64>().prop_map(|n| J::Num(n.to_string())),
        1 => any::<i64>().prop_map(|n| J::Num(n.to_string())),
        1 => any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(|f| J::Num(format!("{f:e}"))),
        1 => (1usize..2000).prop_map(|n| J::Num("9".repeat(n))),
    ]
}

pub fn leaf() -> impl Strategy<Value = J> {
    prop_oneof![
        1 => Just(J::Null),
        1 => any::<bool>().prop_map(J::Bool),
        3 => number(),
        4 => string(),
    ]
}

/// Nesting past serde_json's limit of 128 and far beyond.
pub fn deep() -> impl Strategy<Value = J> {
    (
        any::<bool>(),
        prop_oneof![
            40 => proptest::sample::select(vec![127usize, 128, 129, 200, 1_000]),
            4 => Just(10_000usize),
            1 => proptest::sample::select(vec![100_000usize, 1_000_000]),
        ],
        leaf(),
        proptest::bool::weighted(0.1),
    )
        .prop_map(|(object, depth, inner, unclosed)| J::Deep { object, depth, inner: Box::new(inner), unclosed })
}

pub fn garbage() -> impl Strategy<Value = J> {
    prop_oneof![
        Just("".to_string()),
        Just("{".to_string()),
        Just("[1,".to_string()),
        Just("{\"a\" 1}".to_string()),
        Just("nul".to_string()),
        Just("undefined".to_string()),
        Just("'single'".to_string()),
        Just("{\"a\":1}{\"b\":2}".to_string()),
        Just("\u{feff}{}".to_string()),
        Just("/* comment */ 1".to_string()),
        "[ -~]{0,20}",
    ]
    .prop_map(J::Garbage)
}

/// Any value: nested arrays and objects of hostile leaves, deep nesting, garbage.
pub fn value() -> impl Strategy<Value = J> {
    let tree = leaf().prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(J::Arr),
            proptest::collection::vec((proptest::collection::vec(piece(), 0..3), inner), 0..6).prop_map(J::Obj),
        ]
    });
    prop_oneof![
        30 => tree,
        1 => deep(),
        2 => garbage(),
    ]
}
