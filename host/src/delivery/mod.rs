//! The delivery stage: what a policy kept, on its way to a route's sink; and the
//! dead-letter record for what could not be delivered.

pub mod dead_letter;

pub use dead_letter::{DeadLetter, DeadLetterFile};

use serde::Serialize;
use serde_json::value::RawValue;
use std::sync::Arc;

/// One delivery to one route, as sinks receive it.
#[derive(Debug, Clone, Serialize)]
pub struct Delivery {
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
}

impl Delivery {
    /// The JSON line the `file` and `stdout` sinks write.
    pub fn to_json_line(&self) -> String {
        let mut line = serde_json::to_string(self).expect("a delivery always serializes");
        line.push('\n');
        line
    }
}
