//! The one delivery record: what the spool holds, the delivery stage schedules and
//! every sink receives. It sits at the bottom of the crate so that no stage has to
//! import another to name it.

use serde::Serialize;
use serde_json::value::RawValue;
use std::sync::Arc;

/// A tenant's id: cheap to clone (an `Arc<str>`), compared and hashed as its text.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct TenantId(Arc<str>);

impl TenantId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::ops::Deref for TenantId {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl std::borrow::Borrow<str> for TenantId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for TenantId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for TenantId {
    fn from(id: &str) -> Self {
        TenantId(Arc::from(id))
    }
}

impl From<String> for TenantId {
    fn from(id: String) -> Self {
        TenantId(Arc::from(id))
    }
}

impl PartialEq<str> for TenantId {
    fn eq(&self, other: &str) -> bool {
        &*self.0 == other
    }
}

/// One delivery to one route, as sinks receive it.
#[derive(Debug, Clone, Serialize)]
pub struct Delivery {
    /// Its row in the spool.
    #[serde(skip)]
    pub id: i64,
    pub tenant: TenantId,
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
