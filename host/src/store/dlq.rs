//! The dead-letter queue as callers see it: entries, the filter every DLQ operation
//! takes, pages and what an as-is replay did. Entries keep tenant, route, idempotency
//! key, the original event (where the tenant keeps it), the last payload, attempts,
//! last status / error and timestamps. Ids are never reused, and every write names the
//! tenant in the statement that changes the row.

use crate::record::Delivery;
use serde::Serialize;
use serde_json::value::RawValue;

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DlqEntry {
    pub id: i64,
    pub tenant: String,
    /// `None` for a policy fault (nothing was shaped).
    pub route: Option<String>,
    pub idempotency_key: String,
    pub event_kind: String,
    pub key: Option<String>,
    pub policy_version: Option<String>,
    pub redactions: Vec<String>,
    /// The last payload the policy produced, if any.
    #[schema(value_type = Option<Object>)]
    pub payload: Option<Box<RawValue>>,
    /// The original event as received; `None` (JSON `null`) when the tenant had
    /// `keep_original = false`.
    #[schema(value_type = Option<Object>)]
    pub event: Option<Box<RawValue>>,
    pub attempts: u32,
    pub reason: String,
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
    pub created_ms: u64,
    pub dead_ms: u64,
}

/// Which entries an operation applies to; every set field must match.
#[derive(Debug, Clone, Default)]
pub struct DlqFilter {
    pub tenant: Option<String>,
    pub route: Option<String>,
    /// Dead-lettered at or after this time.
    pub since_ms: Option<u64>,
    pub ids: Option<Vec<i64>>,
    /// Ids above this one (the cursor of a paged listing).
    pub after: Option<i64>,
    /// Ids up to this one: a sweep over "all" entries stops at the entries that existed
    /// when it began, not at the new ones its own replays dead-letter.
    pub through: Option<i64>,
    pub limit: Option<usize>,
}

/// One page of a listing: `next` is the cursor (`after`) of the following page, `None`
/// on the last page.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DlqPage {
    pub entries: Vec<DlqEntry>,
    pub next: Option<i64>,
}

/// What an as-is replay did.
#[derive(Debug, Default)]
pub struct Requeued {
    /// The new deliveries, for the route queues.
    pub deliveries: Vec<Delivery>,
    /// Entries left in place: policy faults have no payload to resend.
    pub skipped: Vec<i64>,
    /// The highest id the replay looked at (the cursor of the next page), if any.
    pub last_id: Option<i64>,
}
