//! Spins forever inside evaluate: the host's epoch deadline must stop it.
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
        let mut n: u64 = 0;
        loop {
            n = std::hint::black_box(n.wrapping_add(e.step));
            if n == u64::MAX {
                return Ok(deliver("default", "{}".into()));
            }
        }
    }
}

export!(Policy);
