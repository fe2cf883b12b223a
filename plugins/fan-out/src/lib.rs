//! Forwards every event, as the standard envelope, to each route named in
//! `policy_config.routes` (e.g. `{"routes": ["webhook", "kafka", "redis"]}`). Each
//! delivery then retries and dead-letters on its own.

wit_bindgen::generate!({ path: "../../wit", world: "event-policy" });

use hostd::policy::types::Delivery;
use hostd_policy_sdk::event_view;
use std::cell::RefCell;

thread_local! {
    static ROUTES: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
}

struct Policy;

impl Guest for Policy {
    fn configure(config: String) -> Result<(), String> {
        let cfg: serde_json::Value =
            serde_json::from_str(&config).map_err(|e| format!("policy_config is not JSON: {e}"))?;
        let routes: Vec<String> = cfg
            .get("routes")
            .and_then(|r| r.as_array())
            .ok_or("policy_config.routes must be an array of route names")?
            .iter()
            .map(|r| r.as_str().map(str::to_string).ok_or("policy_config.routes must hold strings"))
            .collect::<Result<_, _>>()?;
        if routes.is_empty() {
            return Err("policy_config.routes is empty".into());
        }
        ROUTES.with(|r| *r.borrow_mut() = routes);
        Ok(())
    }

    fn evaluate(e: Event) -> Result<Decision, String> {
        let payload = event_view!(e).envelope_unchanged();
        let deliveries = ROUTES.with(|r| {
            r.borrow()
                .iter()
                .map(|route| Delivery { route: route.clone(), payload: payload.clone(), key: None, redactions: vec![] })
                .collect()
        });
        Ok(Decision::Deliver(deliveries))
    }
}

export!(Policy);
