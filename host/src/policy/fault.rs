//! Why a policy call failed. Every fault names the tenant, the policy version and the
//! cause; the event is then dead-lettered (or dropped), never delivered unshaped.

use std::time::Duration;

/// Longest guest-provided text (an error, a drop reason, a trap message) kept in a
/// fault, a log line or a DLQ row; control characters are escaped.
pub const GUEST_TEXT_MAX: usize = 1024;

/// A guest's text as a fault keeps it: cut to [`GUEST_TEXT_MAX`], escaped.
pub fn guest_text(s: &str) -> String {
    crate::text::capped(s, GUEST_TEXT_MAX)
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("tenant `{tenant}`, policy {version}: {fault}")]
pub struct PolicyError {
    pub tenant: String,
    pub version: String,
    pub fault: PolicyFault,
    /// How long the failed call ran, as the host measured it.
    pub elapsed: Duration,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum PolicyFault {
    /// The call used its whole CPU budget (`cpu` ≥ `limit`), or ran past the
    /// wall-clock guard.
    #[error("evaluate exceeded its deadline of {limit:?} ({cpu:?} of CPU; stopped after {elapsed:?})")]
    Deadline { limit: Duration, elapsed: Duration, cpu: Duration },
    #[error("guest memory exceeded the cap of {0} bytes")]
    Memory(u64),
    #[error("guest trapped: {0}")]
    Trap(String),
    #[error("evaluate returned an error: {0}")]
    Guest(String),
    #[error("configure failed: {0}")]
    Configure(String),
    #[error("cannot instantiate the component: {0}")]
    Instantiate(String),
    #[error("delivery {index} to route `{route}`: payload is not valid JSON: {error}")]
    MalformedPayload { index: usize, route: String, error: String },
    #[error("delivery {index}: route `{route}` is not configured for this tenant")]
    UnknownRoute { index: usize, route: String },
    #[error("decision has {count} deliveries, the limit is {max}")]
    TooManyDeliveries { count: usize, max: usize },
    #[error("decision has {bytes} payload bytes, the limit is {max}")]
    OversizeOutput { bytes: u64, max: u64 },
    /// What the guest handed back (payloads, routes, keys, redactions, error text,
    /// log lines) was larger than the host copies out of one call; nothing past the
    /// budget was copied.
    #[error("the guest returned more than the {budget} bytes one call may hand the host")]
    OverBudget { budget: u64 },
    #[error("decision has {bytes} bytes of routes, keys and redaction pointers, the limit is {max}")]
    OversizeMetadata { bytes: u64, max: u64 },
    #[error("delivery {index}: `{field}` is {bytes} bytes, the limit is {max}")]
    OversizeField { index: usize, field: &'static str, bytes: usize, max: usize },
}

impl PolicyFault {
    /// A short, stable name for metrics and dead-letter reasons.
    pub fn kind(&self) -> &'static str {
        match self {
            PolicyFault::Deadline { .. } => "deadline",
            PolicyFault::Memory(_) => "memory",
            PolicyFault::Trap(_) => "trap",
            PolicyFault::Guest(_) => "guest_error",
            PolicyFault::Configure(_) => "configure",
            PolicyFault::Instantiate(_) => "instantiate",
            PolicyFault::MalformedPayload { .. } => "malformed_payload",
            PolicyFault::UnknownRoute { .. } => "unknown_route",
            PolicyFault::TooManyDeliveries { .. } => "too_many_deliveries",
            PolicyFault::OversizeOutput { .. }
            | PolicyFault::OverBudget { .. }
            | PolicyFault::OversizeMetadata { .. } => "oversize_output",
            PolicyFault::OversizeField { .. } => "oversize_field",
        }
    }

    /// Whether the instance that produced this fault must be thrown away. A guest
    /// that trapped or was interrupted may have left its memory in any state, and one
    /// whose result could not be lifted cannot be entered again.
    pub fn poisons_instance(&self) -> bool {
        matches!(
            self,
            PolicyFault::Deadline { .. }
                | PolicyFault::Memory(_)
                | PolicyFault::Trap(_)
                | PolicyFault::Configure(_)
                | PolicyFault::OverBudget { .. }
        )
    }
}
