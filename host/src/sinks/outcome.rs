//! What a sink says about one attempt, and the receiver's `Retry-After`.

use std::time::Duration;

/// What one attempt came to. Each transport classifies its own errors into these.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendOutcome {
    Delivered,
    /// Worth another try (network error, timeout, 408, 429, 5xx, broker unavailable).
    Retry {
        status: Option<u16>,
        error: String,
        retry_after: Option<Duration>,
    },
    /// Retrying cannot help (4xx, message too large, unknown topic): dead-letter now.
    Fatal {
        status: Option<u16>,
        error: String,
    },
}

impl SendOutcome {
    /// Worth another try, after the route's retry schedule (or the receiver's
    /// `Retry-After`: [`SendOutcome::with_retry_after`]).
    pub fn retry(status: Option<u16>, error: impl Into<String>) -> Self {
        SendOutcome::Retry { status, error: error.into(), retry_after: None }
    }

    /// Retrying cannot help: dead-letter now.
    pub fn fatal(status: Option<u16>, error: impl Into<String>) -> Self {
        SendOutcome::Fatal { status, error: error.into() }
    }

    /// The receiver's `Retry-After` on a [`SendOutcome::Retry`]; other outcomes are
    /// returned as they are.
    pub fn with_retry_after(self, after: Option<Duration>) -> Self {
        match self {
            SendOutcome::Retry { status, error, .. } => SendOutcome::Retry { status, error, retry_after: after },
            other => other,
        }
    }
}

/// Parses a `Retry-After` header: delay-seconds or an HTTP date.
pub fn parse_retry_after(value: &str, now: std::time::SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_retry_after_forms() {
        let now = std::time::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        assert_eq!(parse_retry_after("2", now), Some(Duration::from_secs(2)));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(30));
        assert_eq!(parse_retry_after(&later, now), Some(Duration::from_secs(30)));
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn constructors() {
        let after = Some(Duration::from_secs(3));
        assert_eq!(
            SendOutcome::retry(Some(503), "HTTP 503").with_retry_after(after),
            SendOutcome::Retry { status: Some(503), error: "HTTP 503".into(), retry_after: after }
        );
        assert_eq!(
            SendOutcome::fatal(None, "too large").with_retry_after(after),
            SendOutcome::Fatal { status: None, error: "too large".into() }
        );
        assert_eq!(SendOutcome::Delivered.with_retry_after(after), SendOutcome::Delivered);
    }
}
