//! Fuzzes the host-side check of a guest's decision (`policy::decision::check`) with
//! arbitrary decisions: many deliveries, huge strings, payloads that are not JSON (or
//! JSON that only a raw-value parser accepts), unknown and empty routes, long keys and
//! redaction lists, under random limits.
//!
//! Properties: no panic; a decision within every limit (count, payload bytes, routes,
//! valid JSON) is accepted unchanged, one outside any is refused with the fault that
//! names the first violation; accepted outcomes and fault messages keep guest strings
//! within bounds; `hostd policy test`'s rendering of an accepted outcome never panics.

use hostd::config::PolicyLimits;
use hostd::policy::decision::{check, RouteSet};
use hostd::policy::{Decision, GuestDelivery, Outcome, PolicyFault};
use hostd_fuzz::json::{self, J};
use hostd_fuzz::{cases, Target};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use serde_json::value::RawValue;
use std::collections::HashSet;
use std::time::Duration;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Most bytes of guest strings (other than payloads) an outcome or fault may keep:
/// what `max_output` allows, plus room for the host's own words.
const STRING_SLACK: u64 = 4096;

#[derive(Debug, Clone)]
struct Spec {
    decision: DecisionSpec,
    max_deliveries: usize,
    max_output: u64,
    any_route: bool,
}

#[derive(Debug, Clone)]
enum DecisionSpec {
    Drop(String),
    Deliver(Vec<DeliverySpec>),
    /// `n` copies of one delivery: thousands of deliveries cheaply.
    Many(DeliverySpec, usize),
}

#[derive(Debug, Clone)]
struct DeliverySpec {
    route: String,
    payload: J,
    key: Option<String>,
    redactions: Vec<String>,
}

impl DeliverySpec {
    fn build(&self) -> GuestDelivery {
        GuestDelivery {
            route: self.route.clone(),
            payload: self.payload.render(),
            key: self.key.clone(),
            redactions: self.redactions.clone(),
        }
    }
}

impl Spec {
    fn decision(&self) -> Decision {
        match &self.decision {
            DecisionSpec::Drop(r) => Decision::Drop(r.clone()),
            DecisionSpec::Deliver(ds) => Decision::Deliver(ds.iter().map(DeliverySpec::build).collect()),
            DecisionSpec::Many(d, n) => {
                // Copies are real memory here (a guest can alias; see tests/guest.rs):
                // keep the whole decision under ~8 MiB.
                let one = d.build();
                let size = one.payload.len()
                    + one.route.len()
                    + one.key.as_ref().map_or(0, String::len)
                    + one.redactions.iter().map(|r| r.len() + 24).sum::<usize>()
                    + 64;
                Decision::Deliver(vec![one; (*n).min((8 << 20) / size)])
            }
        }
    }
}

const ROUTES: [&str; 2] = ["default", "audit"];

fn big(max: usize) -> impl Strategy<Value = String> {
    prop_oneof![
        24 => json::text(),
        3 => proptest::sample::select(vec![255usize, 256, 1024, 65_536]).prop_map(|n| "r".repeat(n)),
        1 => (0usize..=max).prop_map(|n| "é".repeat(n / 2)),
    ]
}

/// Payload sizes: small, around the default 1 MiB cap, or anything up to 2 MiB.
fn payload_size() -> impl Strategy<Value = usize> {
    prop_oneof![
        8 => 0usize..4096,
        2 => proptest::sample::select(vec![(1 << 20) - 3, (1 << 20) - 2, (1 << 20) - 1, 1 << 20]),
        1 => 0usize..(2 << 20),
    ]
}

fn route() -> impl Strategy<Value = String> {
    prop_oneof![
        10 => proptest::sample::select(ROUTES.to_vec()).prop_map(str::to_string),
        1 => Just(String::new()),
        1 => Just("Default".to_string()),
        1 => Just("default\0".to_string()),
        1 => big(1 << 20),
    ]
}

fn payload() -> impl Strategy<Value = J> {
    prop_oneof![
        6 => json::value(),
        1 => payload_size().prop_map(|n| J::Str(vec![json::Piece::Run('x', n)])),
        1 => Just(J::Garbage("{not json".into())),
    ]
}

fn delivery() -> impl Strategy<Value = DeliverySpec> {
    (
        route(),
        payload(),
        proptest::option::weighted(0.3, big(1 << 20)),
        prop_oneof![
            12 => Just(vec![]),
            3 => proptest::collection::vec(big(4096), 0..4),
            1 => (0usize..10_000).prop_map(|n| vec!["/data/x".to_string(); n])
        ],
    )
        .prop_map(|(route, payload, key, redactions)| DeliverySpec { route, payload, key, redactions })
}

fn spec() -> impl Strategy<Value = Spec> {
    let decision = prop_oneof![
        2 => prop_oneof![
            12 => json::text(),
            1 => prop_oneof![10 => Just(65_536usize), 3 => Just((1 << 20) + 1), 1 => Just(20 << 20)].prop_map(|n| "d".repeat(n)),
        ]
        .prop_map(DecisionSpec::Drop),
        8 => proptest::collection::vec(delivery(), 0..6).prop_map(DecisionSpec::Deliver),
        2 => (delivery(), prop_oneof![6 => proptest::sample::select(vec![16usize, 17]), 6 => 0usize..40, 1 => proptest::sample::select(vec![1_000usize, 10_000])])
            .prop_map(|(d, n)| DecisionSpec::Many(d, n)),
    ];
    (
        decision,
        prop_oneof![3 => Just(16usize), 1 => 1usize..64],
        prop_oneof![3 => Just(1u64 << 20), 1 => 0u64..(2 << 20)],
        proptest::bool::weighted(0.2),
    )
        .prop_map(|(decision, max_deliveries, max_output, any_route)| Spec {
            decision,
            max_deliveries,
            max_output,
            any_route,
        })
}

/// The first limit a decision breaks, in the order the check is documented to test
/// them: the count, the payload bytes, then each delivery's route and JSON.
fn first_violation(d: &[GuestDelivery], spec: &Spec) -> Option<&'static str> {
    if d.len() > spec.max_deliveries {
        return Some("too_many_deliveries");
    }
    if d.iter().map(|x| x.payload.len() as u64).sum::<u64>() > spec.max_output {
        return Some("oversize_output");
    }
    use hostd::policy::decision::{KEY_MAX, REDACTIONS_PER_DELIVERY_MAX, REDACTION_MAX, ROUTE_NAME_MAX};
    let metadata: usize = d
        .iter()
        .map(|x| {
            x.route.len() + x.key.as_ref().map_or(0, String::len) + x.redactions.iter().map(String::len).sum::<usize>()
        })
        .sum();
    if metadata as u64 > spec.max_output {
        return Some("oversize_output");
    }
    for x in d {
        if x.route.len() > ROUTE_NAME_MAX || (!spec.any_route && !ROUTES.contains(&x.route.as_str())) {
            return Some("unknown_route");
        }
        if x.key.as_ref().is_some_and(|k| k.len() > KEY_MAX)
            || x.redactions.len() > REDACTIONS_PER_DELIVERY_MAX
            || x.redactions.iter().any(|r| r.len() > REDACTION_MAX)
        {
            return Some("oversize_field");
        }
        if hostd::json::depth_exceeds(&x.payload, hostd::json::MAX_DEPTH)
            || serde_json::from_str::<&RawValue>(&x.payload).is_err()
        {
            return Some("malformed_payload");
        }
    }
    None
}

fn strings_kept(outcome: &Outcome) -> u64 {
    match outcome {
        Outcome::Drop(r) => r.len() as u64,
        Outcome::Deliver(ds) => ds
            .iter()
            .map(|d| {
                (d.route.len()
                    + d.key.as_ref().map_or(0, String::len)
                    + d.redactions.iter().map(String::len).sum::<usize>()) as u64
            })
            .sum(),
    }
}

fn check_spec(target: &Target, spec: &Spec) -> Result<(), TestCaseError> {
    let limits = PolicyLimits {
        deadline: Duration::from_millis(20),
        memory: 32 << 20,
        max_deliveries: spec.max_deliveries,
        max_output: spec.max_output,
        ..PolicyLimits::default()
    };
    let routes = if spec.any_route {
        RouteSet::Any
    } else {
        RouteSet::Only(ROUTES.iter().map(|r| r.to_string()).collect::<HashSet<_>>())
    };
    let decision = spec.decision();
    let sent: Option<Vec<GuestDelivery>> = match &decision {
        Decision::Deliver(d) => Some(d.clone()),
        Decision::Drop(_) => None,
    };
    let drop_reason = match &decision {
        Decision::Drop(r) => Some(r.clone()),
        Decision::Deliver(_) => None,
    };
    let result = check(decision, &limits, &routes);
    let violation = sent.as_deref().and_then(|d| first_violation(d, spec));
    match &result {
        Ok(outcome) => {
            target.accepted();
            target.check("decision.accepts_only_within_limits", violation.is_none(), || {
                format!("accepted a decision that breaks {violation:?}")
            })?;
            match (outcome, &sent, &drop_reason) {
                (Outcome::Drop(r), None, Some(want)) => {
                    // Kept as guest text: cut to 1 KiB, control characters escaped.
                    let want = hostd::policy::fault::guest_text(want);
                    target.check("decision.drop_kept", *r == want, || "the drop reason changed".into())?;
                    target.count("accepted: drop");
                }
                (Outcome::Deliver(got), Some(want), _) => {
                    target.count("accepted: deliver");
                    let same = got.len() == want.len()
                        && got.iter().zip(want).all(|(g, w)| {
                            g.route == w.route
                                && g.payload.get() == w.payload
                                && g.key == w.key
                                && g.redactions == w.redactions
                        });
                    target.check("decision.delivered_unchanged", same, || "a delivery changed in the check".into())?;
                    let unparsable = got
                        .iter()
                        .filter(|d| serde_json::from_str::<serde_json::Value>(d.payload.get()).is_err())
                        .count();
                    if unparsable > 0 {
                        // Issue 9 #4: the webhook sink turns these into `null` today.
                        target
                            .count("accepted payloads serde_json::Value rejects (lone surrogates, depth > 128, 1e400)");
                    }
                }
                _ => return Err(TestCaseError::fail("the outcome is not the kind of decision sent")),
            }
            let kept = strings_kept(outcome);
            target.check("decision.strings_capped", kept <= spec.max_output + STRING_SLACK, || {
                format!("accepted an outcome holding {kept} bytes of guest strings (max_output {})", spec.max_output)
            })?;
            let shown = std::panic::catch_unwind(|| hostd::policy::fixtures::decision_json(Ok(outcome.clone())));
            target.check("decision.policy_test_json", shown.is_ok(), || {
                let p = match outcome {
                    Outcome::Deliver(d) => {
                        d.iter().map(|d| hostd_fuzz::clip(d.payload.get(), 200)).collect::<Vec<_>>().join(" | ")
                    }
                    Outcome::Drop(_) => String::new(),
                };
                format!("policy::fixtures::decision_json panicked on payloads {p}")
            })?;
        }
        Err(fault) => {
            target.rejected();
            target.count(&format!("fault: {}", fault.kind()));
            target.check("decision.refuses_with_first_violation", violation == Some(fault.kind()), || {
                format!(
                    "refused with {} ({}) but the first violation is {violation:?}",
                    fault.kind(),
                    hostd_fuzz::clip(&fault.to_string(), 200)
                )
            })?;
            let m = fault.to_string();
            target.check("decision.fault_message_bounded", m.len() as u64 <= STRING_SLACK, || {
                format!("a {}-byte fault message: {}", m.len(), hostd_fuzz::clip(&m, 200))
            })?;
            if let PolicyFault::UnknownRoute { index, .. } | PolicyFault::MalformedPayload { index, .. } = fault {
                target.check("decision.fault_names_delivery", m.starts_with(&format!("delivery {index}")), || {
                    m.clone()
                })?;
            }
        }
    }
    Ok(())
}

#[test]
fn arbitrary_decisions() {
    let target = Target::new("decision");
    target.run(cases("decision", 0.16), spec, |s| check_spec(&target, &s));
}
