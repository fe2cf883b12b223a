//! The one delivery record: what the spool holds, the delivery stage schedules and
//! every sink receives. It sits at the bottom of the crate so that no stage has to
//! import another to name it.

use serde::Serialize;
use serde_json::value::RawValue;
use std::sync::Arc;

/// One delivery to one route, as sinks receive it.
#[derive(Debug, Clone, Serialize)]
pub struct Delivery {
    /// Its row in the spool.
    #[serde(skip)]
    pub id: i64,
    pub tenant: Arc<str>,
    pub route: String,
    pub idempotency_key: String,
    /// The event kind that produced it (`on_tool_end`, ...).
    pub event: String,
    /// Ordering / partition key: the policy's, or the event's root run id.
    pub key: String,
    /// The sha256 prefix of the policy component that shaped it.
    pub policy_version: Arc<str>,
    pub redactions: Vec<String>,
    /// The policy's JSON, embedded as JSON.
    pub payload: Box<RawValue>,
    /// Attempts made so far.
    #[serde(skip)]
    pub attempts: u32,
    /// When the next attempt is due (ms since the epoch).
    #[serde(skip)]
    pub next_attempt_ms: u64,
    /// When it was accepted (ms since the epoch), for end-to-end latency.
    #[serde(skip)]
    pub created_ms: u64,
}

impl Delivery {
    /// The JSON line the `file` and `stdout` sinks write.
    pub fn to_json_line(&self) -> String {
        let mut line = serde_json::to_string(self).expect("a delivery always serializes");
        line.push('\n');
        line
    }
}
