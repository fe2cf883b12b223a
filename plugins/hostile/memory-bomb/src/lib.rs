//! Allocates 1 MiB blocks until the host's memory cap refuses to grow memory.
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
        let mut blocks: Vec<Vec<u8>> = Vec::new();
        loop {
            blocks.push(std::hint::black_box(vec![7u8; 1 << 20]));
            if blocks.len() == usize::MAX {
                return Ok(deliver("default", "{}".into()));
            }
        }
    }
}

export!(Policy);
