//! Human-friendly sizes and durations in the config: `"32MiB"`, `"20ms"`.

use serde::{de, Deserialize, Deserializer};
use std::time::Duration;

/// Parses `"1MiB"`, `"512KiB"`, `"2GB"`, `"1024"` (bytes) into a byte count.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("`{s}` is not a size like \"32MiB\""))?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        other => return Err(format!("unknown size unit `{other}` in `{s}` (use B, KiB, MiB, GiB, KB, MB, GB)")),
    };
    n.checked_mul(mult).ok_or_else(|| format!("size `{s}` is too large"))
}

/// Serde adapter: a size as a string with a unit, or a bare integer of bytes.
pub fn de_size<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        N(u64),
        S(String),
    }
    match Raw::deserialize(d)? {
        Raw::N(n) => Ok(n),
        Raw::S(s) => parse_size(&s).map_err(de::Error::custom),
    }
}

/// Serde adapter: a duration like `"20ms"`, `"5s"`, `"24h"`.
pub fn de_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    humantime::parse_duration(&s).map_err(|e| de::Error::custom(format!("`{s}` is not a duration like \"20ms\": {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("32MiB").unwrap(), 32 << 20);
        assert_eq!(parse_size("1024").unwrap(), 1024);
        assert_eq!(parse_size("2 KB").unwrap(), 2000);
        assert!(parse_size("3 parsecs").unwrap_err().contains("parsecs"));
        assert!(parse_size("MiB").is_err());
    }
}
