//! What the store is given for each accepted event, and what it answers.

use crate::record::Delivery;
use serde_json::value::RawValue;
use std::sync::Arc;

/// The id of a [`Delivery`] not stored yet: the store assigns the real one (ids start
/// at 1).
pub const UNASSIGNED_ID: i64 = 0;

/// What the policy made of one event.
#[derive(Debug, Clone)]
pub enum Shaped {
    /// The deliveries of this event, built by the caller with the event's tenant,
    /// idempotency key, kind and policy version. The store sets `id`, `attempts`
    /// (0), `next_attempt_ms` and `created_ms` (now); build them with
    /// [`UNASSIGNED_ID`] and zeros.
    Deliver(Vec<Delivery>),
    Dropped,
    /// The policy faulted; the event goes to the DLQ with the reason.
    Fault {
        reason: String,
        error: String,
    },
}

/// One accepted event on its way into the store.
#[derive(Debug, Clone)]
pub struct AcceptItem {
    pub idempotency_key: String,
    pub event_kind: String,
    pub policy_version: Arc<str>,
    /// The event as received, kept for the DLQ and replay through the policy; `None`
    /// for a tenant with `keep_original = false` (nothing unredacted is stored).
    pub event: Option<Box<RawValue>>,
    pub shaped: Shaped,
}

/// What the store did with one accepted event.
#[derive(Debug)]
pub struct Accepted {
    pub duplicate: bool,
    /// The stored deliveries, leased to the store's owner, ready for the delivery stage.
    pub deliveries: Vec<Delivery>,
}
