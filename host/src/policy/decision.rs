//! Checks a guest's decision before anything leaves the host: at most
//! `max_deliveries`, at most `max_output` payload bytes, every route configured for the
//! tenant, every payload valid JSON. One bad delivery fails the whole decision, so an
//! event is never half-delivered.

use super::fault::{guest_text, PolicyFault};
use crate::config::PolicyLimits;
use crate::contract::Decision;
use arc_swap::ArcSwap;
use serde_json::value::RawValue;
use std::collections::HashSet;
use std::sync::Arc;

/// A delivery the policy asked for, checked and ready for a sink.
#[derive(Debug, Clone)]
pub struct ShapedDelivery {
    pub route: String,
    pub payload: Box<RawValue>,
    /// Ordering / partition key; `None` means the event's root run id.
    pub key: Option<String>,
    pub redactions: Vec<String>,
}

/// What the policy decided for one event.
#[derive(Debug, Clone)]
pub enum Outcome {
    Drop(String),
    Deliver(Vec<ShapedDelivery>),
}

/// The routes a policy may name: a tenant's configured set, or any (offline tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteSet {
    Only(HashSet<String>),
    Any,
}

impl RouteSet {
    fn allows(&self, route: &str) -> bool {
        match self {
            RouteSet::Only(set) => set.contains(route),
            RouteSet::Any => true,
        }
    }
}

/// A tenant's route set, shared by every version of its policy and swapped when its
/// routes change: each decision is checked against the set of that moment, so a
/// policy naming a removed route faults with `unknown_route` from then on.
#[derive(Clone)]
pub struct LiveRoutes(Arc<ArcSwap<RouteSet>>);

impl LiveRoutes {
    pub fn new(routes: RouteSet) -> Self {
        LiveRoutes(Arc::new(ArcSwap::from_pointee(routes)))
    }

    /// The set as of now.
    pub fn current(&self) -> Arc<RouteSet> {
        self.0.load_full()
    }

    /// Runs `f` on the set as of now, without cloning it (the hot path).
    pub fn with<R>(&self, f: impl FnOnce(&RouteSet) -> R) -> R {
        f(&self.0.load())
    }

    /// Replaces the set for every version sharing it.
    pub fn set(&self, routes: RouteSet) {
        self.0.store(Arc::new(routes));
    }

    /// Whether `other` is the same shared set (not merely equal).
    pub fn shares(&self, other: &LiveRoutes) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl From<RouteSet> for LiveRoutes {
    fn from(routes: RouteSet) -> Self {
        LiveRoutes::new(routes)
    }
}

/// Compares the sets as they are now.
impl PartialEq for LiveRoutes {
    fn eq(&self, other: &Self) -> bool {
        *self.0.load() == *other.0.load()
    }
}

impl std::fmt::Debug for LiveRoutes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.load().fmt(f)
    }
}

/// Longest route name a decision may carry (longer ones cannot be configured).
pub const ROUTE_NAME_MAX: usize = 128;
/// Longest ordering key, the same as an idempotency key.
pub const KEY_MAX: usize = 256;
/// Longest redaction pointer, and most pointers one delivery may list.
pub const REDACTION_MAX: usize = 1024;
pub const REDACTIONS_PER_DELIVERY_MAX: usize = 4096;
/// What the host may copy out of one `evaluate` (wasmtime's hostcall fuel): the
/// payload budget, as much again for routes, keys, redactions and error text, and
/// 64 KiB of slack. A guest that returns more is stopped while its result is lifted,
/// before the host allocates for it.
pub fn lift_budget(limits: &PolicyLimits) -> u64 {
    limits.max_output.saturating_mul(2).saturating_add(64 << 10)
}

pub fn check(decision: Decision, limits: &PolicyLimits, routes: &RouteSet) -> Result<Outcome, PolicyFault> {
    let deliveries = match decision {
        Decision::Drop(reason) => return Ok(Outcome::Drop(guest_text(&reason))),
        Decision::Deliver(d) => d,
    };
    if deliveries.len() > limits.max_deliveries {
        return Err(PolicyFault::TooManyDeliveries { count: deliveries.len(), max: limits.max_deliveries });
    }
    let bytes: u64 = deliveries.iter().map(|d| d.payload.len() as u64).sum();
    if bytes > limits.max_output {
        return Err(PolicyFault::OversizeOutput { bytes, max: limits.max_output });
    }
    // Every other guest string counts too, in a second budget of the same size.
    let metadata: u64 = deliveries
        .iter()
        .map(|d| {
            (d.route.len()
                + d.key.as_ref().map_or(0, String::len)
                + d.redactions.iter().map(String::len).sum::<usize>()) as u64
        })
        .sum();
    if metadata > limits.max_output {
        return Err(PolicyFault::OversizeMetadata { bytes: metadata, max: limits.max_output });
    }
    let mut shaped = Vec::with_capacity(deliveries.len());
    for (index, d) in deliveries.into_iter().enumerate() {
        if d.route.len() > ROUTE_NAME_MAX || !routes.allows(&d.route) {
            return Err(PolicyFault::UnknownRoute { index, route: crate::text::capped(&d.route, ROUTE_NAME_MAX) });
        }
        if let Some(key) = &d.key {
            if key.len() > KEY_MAX {
                return Err(PolicyFault::OversizeField { index, field: "key", bytes: key.len(), max: KEY_MAX });
            }
        }
        if d.redactions.len() > REDACTIONS_PER_DELIVERY_MAX {
            return Err(PolicyFault::OversizeField {
                index,
                field: "redactions",
                bytes: d.redactions.len(),
                max: REDACTIONS_PER_DELIVERY_MAX,
            });
        }
        if let Some(long) = d.redactions.iter().find(|r| r.len() > REDACTION_MAX) {
            return Err(PolicyFault::OversizeField {
                index,
                field: "redactions[]",
                bytes: long.len(),
                max: REDACTION_MAX,
            });
        }
        let malformed = |error: String| PolicyFault::MalformedPayload { index, route: d.route.clone(), error };
        crate::json::check_depth(&d.payload).map_err(malformed)?;
        let payload = RawValue::from_string(d.payload).map_err(|e| malformed(e.to_string()))?;
        shaped.push(ShapedDelivery { route: d.route, payload, key: d.key, redactions: d.redactions });
    }
    Ok(Outcome::Deliver(shaped))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::GuestDelivery;

    fn d(route: &str, payload: &str) -> GuestDelivery {
        GuestDelivery { route: route.into(), payload: payload.into(), key: None, redactions: vec![] }
    }

    fn routes() -> RouteSet {
        RouteSet::Only(["default".to_string()].into_iter().collect())
    }

    #[test]
    fn accepts_a_good_decision() {
        let out =
            check(Decision::Deliver(vec![d("default", "{\"a\":1}")]), &PolicyLimits::default(), &routes()).unwrap();
        assert!(matches!(out, Outcome::Deliver(v) if v.len() == 1 && v[0].payload.get() == "{\"a\":1}"));
    }

    #[test]
    fn names_each_violation() {
        let limits = PolicyLimits::default();
        let e = check(Decision::Deliver(vec![d("default", "{}"), d("nope", "{}")]), &limits, &routes()).unwrap_err();
        assert_eq!(e.to_string(), "delivery 1: route `nope` is not configured for this tenant");
        let e = check(Decision::Deliver(vec![d("default", "{x")]), &limits, &routes()).unwrap_err();
        assert_eq!(e.kind(), "malformed_payload");
        let e = check(Decision::Deliver(vec![d("default", "{}"); 17]), &limits, &routes()).unwrap_err();
        assert_eq!(e.kind(), "too_many_deliveries");
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        let e = check(Decision::Deliver(vec![d("default", &deep)]), &limits, &routes()).unwrap_err();
        assert_eq!(e.kind(), "malformed_payload", "nesting is bounded as at ingest: {e}");
        let big = format!("\"{}\"", "x".repeat(1 << 20));
        let e = check(Decision::Deliver(vec![d("default", &big)]), &limits, &routes()).unwrap_err();
        assert_eq!(e.kind(), "oversize_output");
        assert!(check(Decision::Deliver(vec![d("elsewhere", "1")]), &limits, &RouteSet::Any).is_ok());
    }

    #[test]
    fn guest_strings_are_capped() {
        let limits = PolicyLimits::default();
        let long_route = "r".repeat(10_000);
        let e = check(Decision::Deliver(vec![d(&long_route, "{}")]), &limits, &RouteSet::Any).unwrap_err();
        assert_eq!(e.kind(), "unknown_route");
        assert!(e.to_string().len() < 300, "the route is cut in the message: {}", e.to_string().len());
        let mut keyed = d("default", "{}");
        keyed.key = Some("k".repeat(KEY_MAX + 1));
        let e = check(Decision::Deliver(vec![keyed]), &limits, &routes()).unwrap_err();
        assert_eq!(e.to_string(), "delivery 0: `key` is 257 bytes, the limit is 256");
        let mut redacted = d("default", "{}");
        redacted.redactions = vec!["/a".into(); REDACTIONS_PER_DELIVERY_MAX + 1];
        assert_eq!(check(Decision::Deliver(vec![redacted]), &limits, &routes()).unwrap_err().kind(), "oversize_field");
        let mut redacted = d("default", "{}");
        redacted.redactions = vec!["/".repeat(REDACTION_MAX + 1)];
        assert_eq!(check(Decision::Deliver(vec![redacted]), &limits, &routes()).unwrap_err().kind(), "oversize_field");
        let reason = format!("line one\nFAKE LOG LINE{}", "x".repeat(1 << 20));
        let Outcome::Drop(kept) = check(Decision::Drop(reason), &limits, &routes()).unwrap() else { panic!() };
        assert!(kept.len() < 1100 && !kept.contains('\n'), "{}", &kept[..40]);
    }
}
