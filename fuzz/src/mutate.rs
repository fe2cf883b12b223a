//! Raw byte mutations of a seed input, as a proptest strategy (so a failing mutation
//! list shrinks to the few edits that matter): bit flips, byte overwrites, deletions,
//! duplications, and insertions of tokens that tend to break parsers (bad UTF-8,
//! surrogate bytes, quotes, brackets, escapes, line breaks, huge numbers).

use proptest::prelude::*;

/// Byte strings worth inserting.
pub const TOKENS: &[&[u8]] = &[
    b"\xff",
    b"\xc0\x80",
    b"\xed\xa0\x80",
    b"\xf4\x90\x80\x80",
    b"\xe2\x80",
    b"\x00",
    b"\\ud800",
    b"\\u0000",
    b"\\",
    b"\"",
    b"{",
    b"}",
    b"[",
    b"]",
    b",",
    b":",
    b"\n",
    b"\r\n",
    b"\r",
    b"\xe2\x80\xa8",
    b"\xef\xbb\xbf",
    b" ",
    b"null",
    b"1e400",
    b"-1",
    b"18446744073709551616",
    b"\"event\":\"on_tool_end\",",
    b"\"run_id\":\"r\",",
    b"\"tenant\":\"globex\",",
    b"\"step\":",
    b"\"ts\":\"2026-13-01T00:00:00Z\",",
    b"\"idempotency_key\":\"",
    b"\"data\":",
    b"[[[[[[[[[[[[[[[[",
    b"{\"a\":{\"a\":{\"a\":",
];

/// One edit; positions are taken modulo the input's length at the time.
#[derive(Debug, Clone)]
pub enum Mutation {
    FlipBit { at: usize, bit: u8 },
    SetByte { at: usize, byte: u8 },
    Delete { at: usize, len: usize },
    Duplicate { at: usize, len: usize, times: usize },
    Insert { at: usize, token: usize },
    InsertBytes { at: usize, bytes: Vec<u8> },
    Truncate { at: usize },
}

pub fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        3 => (any::<usize>(), 0u8..8).prop_map(|(at, bit)| Mutation::FlipBit { at, bit }),
        2 => (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| Mutation::SetByte { at, byte }),
        2 => (any::<usize>(), 1usize..16).prop_map(|(at, len)| Mutation::Delete { at, len }),
        1 => (any::<usize>(), 1usize..64, 1usize..64).prop_map(|(at, len, times)| Mutation::Duplicate { at, len, times }),
        4 => (any::<usize>(), 0..TOKENS.len()).prop_map(|(at, token)| Mutation::Insert { at, token }),
        1 => (any::<usize>(), proptest::collection::vec(any::<u8>(), 1..8))
            .prop_map(|(at, bytes)| Mutation::InsertBytes { at, bytes }),
        1 => any::<usize>().prop_map(|at| Mutation::Truncate { at }),
    ]
}

/// Between one and `max` edits.
pub fn mutations(max: usize) -> impl Strategy<Value = Vec<Mutation>> {
    proptest::collection::vec(mutation(), 1..=max)
}

/// Applies the edits in order.
pub fn apply(seed: &[u8], edits: &[Mutation]) -> Vec<u8> {
    let mut b = seed.to_vec();
    for m in edits {
        let len = b.len();
        let pos = |at: usize| if len == 0 { 0 } else { at % (len + 1) };
        match m {
            Mutation::FlipBit { at, bit } if len > 0 => b[at % len] ^= 1u8 << *bit,
            Mutation::SetByte { at, byte } if len > 0 => b[at % len] = *byte,
            Mutation::Delete { at, len: n } if len > 0 => {
                let start = at % len;
                let end = (start + n).min(len);
                b.drain(start..end);
            }
            Mutation::Duplicate { at, len: n, times } if len > 0 => {
                let start = at % len;
                let end = (start + n).min(len);
                let chunk = b[start..end].to_vec();
                let tail = b.split_off(end);
                for _ in 0..*times {
                    b.extend_from_slice(&chunk);
                }
                b.extend_from_slice(&tail);
            }
            Mutation::Insert { at, token } => {
                let p = pos(*at);
                b.splice(p..p, TOKENS[*token].iter().copied());
            }
            Mutation::InsertBytes { at, bytes } => {
                let p = pos(*at);
                b.splice(p..p, bytes.iter().copied());
            }
            Mutation::Truncate { at } => b.truncate(pos(*at)),
            _ => {}
        }
    }
    b
}
