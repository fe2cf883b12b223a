//! Delivers to a route no tenant configures.
wit_bindgen::generate!({ path: "../../../wit", world: "event-policy" });

use hostd::policy::types::Delivery;

struct Policy;

fn deliver(route: &str, payload: String) -> Decision {
    Decision::Deliver(vec![Delivery { route: route.into(), payload, key: None, redactions: vec![] }])
}

impl Guest for Policy {
    fn configure(_: String) -> Result<(), String> {
        Ok(())
    }
    fn evaluate(_: Event) -> Result<Decision, String> {
        Ok(deliver("nowhere", "{}".into()))
    }
}

export!(Policy);
