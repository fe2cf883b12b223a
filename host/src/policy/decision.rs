//! Checks a guest's decision before anything leaves the host: at most
//! `max_deliveries`, at most `max_output` payload bytes, every route configured for the
//! tenant, every payload valid JSON. One bad delivery fails the whole decision, so an
//! event is never half-delivered.

use super::bindings::Decision;
use super::fault::PolicyFault;
use crate::config::PolicyLimits;
use serde_json::value::RawValue;
use std::collections::HashSet;

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

pub fn check(decision: Decision, limits: &PolicyLimits, routes: &RouteSet) -> Result<Outcome, PolicyFault> {
    let deliveries = match decision {
        Decision::Drop(reason) => return Ok(Outcome::Drop(reason)),
        Decision::Deliver(d) => d,
    };
    if deliveries.len() > limits.max_deliveries {
        return Err(PolicyFault::TooManyDeliveries { count: deliveries.len(), max: limits.max_deliveries });
    }
    let bytes: u64 = deliveries.iter().map(|d| d.payload.len() as u64).sum();
    if bytes > limits.max_output {
        return Err(PolicyFault::OversizeOutput { bytes, max: limits.max_output });
    }
    let mut shaped = Vec::with_capacity(deliveries.len());
    for (index, d) in deliveries.into_iter().enumerate() {
        if !routes.allows(&d.route) {
            return Err(PolicyFault::UnknownRoute { index, route: d.route });
        }
        let payload = RawValue::from_string(d.payload).map_err(|e| PolicyFault::MalformedPayload {
            index,
            route: d.route.clone(),
            error: e.to_string(),
        })?;
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
        let big = format!("\"{}\"", "x".repeat(1 << 20));
        let e = check(Decision::Deliver(vec![d("default", &big)]), &limits, &routes()).unwrap_err();
        assert_eq!(e.kind(), "oversize_output");
        assert!(check(Decision::Deliver(vec![d("elsewhere", "1")]), &limits, &RouteSet::Any).is_ok());
    }
}
