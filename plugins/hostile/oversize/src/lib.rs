//! Exceeds the output caps: 17 deliveries for events named `many`, otherwise one
//! 2 MiB payload.
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
    fn evaluate(e: Event) -> Result<Decision, String> {
        if e.name == "many" {
            let one = Delivery { route: "default".into(), payload: "{}".into(), key: None, redactions: vec![] };
            return Ok(Decision::Deliver(vec![one; 17]));
        }
        Ok(deliver("default", format!("\"{}\"", "x".repeat(2 << 20))))
    }
}

export!(Policy);
