//! Traps (panics) on an event named `boom`; otherwise delivers how many events this
//! instance has served, which shows whether the host recycled the instance.
wit_bindgen::generate!({ path: "../../../wit", world: "event-policy" });

use hostd::policy::types::Delivery;

struct Policy;

fn deliver(route: &str, payload: String) -> Decision {
    Decision::Deliver(vec![Delivery { route: route.into(), payload, key: None, redactions: vec![] }])
}

use std::sync::atomic::{AtomicU64, Ordering};

static SERVED: AtomicU64 = AtomicU64::new(0);

impl Guest for Policy {
    fn configure(_: String) -> Result<(), String> {
        Ok(())
    }
    fn evaluate(e: Event) -> Result<Decision, String> {
        if e.name == "boom" {
            panic!("boom requested");
        }
        let served = SERVED.fetch_add(1, Ordering::Relaxed) + 1;
        Ok(deliver("default", format!("{{\"run_id\":\"{}\",\"served_by_instance\":{served}}}", e.run_id)))
    }
}

export!(Policy);
