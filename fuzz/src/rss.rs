//! This process's resident memory, from `/proc/self/status`.

/// A `kB` field of `/proc/self/status` (`VmRSS`, `VmHWM`), in bytes.
pub fn status_bytes(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field) && l[field.len()..].starts_with(':'))?;
    let kb: u64 = line[field.len() + 1..].trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kb * 1024)
}

/// Resident memory now.
pub fn rss() -> u64 {
    status_bytes("VmRSS").unwrap_or(0)
}

/// The most resident memory since start (or since [`reset_peak`]).
pub fn peak() -> u64 {
    status_bytes("VmHWM").unwrap_or(0)
}

/// Resets the peak to the current RSS (Linux: `5` into `/proc/self/clear_refs`).
pub fn reset_peak() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

pub fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1 << 20) as f64
}
