//! Why a policy call failed. Every fault names the tenant, the policy version and the
//! cause; the event is then dead-lettered (or dropped), never delivered unshaped.

use std::time::Duration;

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
    #[error("evaluate exceeded its deadline of {limit:?} (stopped after {elapsed:?})")]
    Deadline { limit: Duration, elapsed: Duration },
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
            PolicyFault::OversizeOutput { .. } => "oversize_output",
        }
    }

    /// Whether the instance that produced this fault must be thrown away. A guest
    /// that trapped or was interrupted may have left its memory in any state.
    pub fn poisons_instance(&self) -> bool {
        matches!(
            self,
            PolicyFault::Deadline { .. } | PolicyFault::Memory(_) | PolicyFault::Trap(_) | PolicyFault::Configure(_)
        )
    }
}
