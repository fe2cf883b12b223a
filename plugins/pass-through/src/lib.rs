//! The minimal policy: every event goes to route `default` as the standard envelope.
//! Copy this folder to start a new Rust policy.

wit_bindgen::generate!({ path: "../../wit", world: "event-policy" });

use hostd::policy::types::Delivery;
use hostd_policy_sdk::event_view;

struct Policy;

impl Guest for Policy {
    fn configure(_config: String) -> Result<(), String> {
        Ok(())
    }

    fn evaluate(e: Event) -> Result<Decision, String> {
        let view = event_view!(e);
        Ok(Decision::Deliver(vec![Delivery {
            route: "default".into(),
            payload: view.envelope_unchanged(),
            key: None,
            redactions: vec![],
        }]))
    }
}

export!(Policy);
