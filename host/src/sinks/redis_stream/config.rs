//! `type = "redis-stream"`: the server, the stream, its cap and the dedupe window.

use super::RedisStreamSink;
use crate::sinks::{default_timeout, Sink, SinkContext, TransportConfig};
use crate::units::de_duration;
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisStreamConfig {
    /// `redis://[:password@]host:port/db` (or `rediss://`). Use `url_env` when it holds a password.
    pub url: Option<String>,
    /// Env var holding the URL.
    pub url_env: Option<String>,
    /// Stream name; `{tenant}` and `{route}` are replaced ([`SinkContext::expand`]).
    #[serde(default = "default_stream")]
    pub stream: String,
    /// Approximate cap on the stream's length (`MAXLEN ~`).
    #[serde(default = "default_maxlen")]
    pub maxlen: u64,
    /// Append each idempotency key at most once per `dedupe_window` (atomically, by a
    /// Lua script doing `SET NX EX` and `XADD`), so a retry never appends twice.
    #[serde(default)]
    pub dedupe: bool,
    /// By default the same as `server.dedupe_window`.
    #[serde(default = "default_dedupe_window", deserialize_with = "de_duration")]
    pub dedupe_window: Duration,
    /// Per-command timeout.
    #[serde(default = "default_timeout", deserialize_with = "de_duration")]
    pub timeout: Duration,
}

fn default_stream() -> String {
    "hostd:{tenant}:{route}".to_string()
}
fn default_maxlen() -> u64 {
    100_000
}
fn default_dedupe_window() -> Duration {
    Duration::from_secs(24 * 3600)
}

/// `hostd check` builds the sink: that reads `url_env` and parses the URL; the
/// connection is lazy, so Redis need not be up.
impl TransportConfig for RedisStreamConfig {
    fn build(&self, ctx: &SinkContext) -> crate::Result<Arc<dyn Sink>> {
        Ok(Arc::new(RedisStreamSink::new(ctx, self)?))
    }
}
