//! The `event-policy` contract: host bindings generated from `wit/event-policy.wit`.
//! At the bottom of the crate: the wire event is this contract's `event` record, and
//! the policy stage calls guests through it.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "event-policy",
});

pub use self::hostd::policy::log::Level;
pub use self::hostd::policy::types::Delivery;

#[cfg(test)]
impl hostd::policy::types::Event {
    /// An `on_tool_end` event of tenant `t` named `name` with `data` (JSON), for tests.
    pub fn sample(name: &str, data: &str) -> Self {
        hostd::policy::types::Event {
            tenant: "t".into(),
            kind: "on_tool_end".into(),
            name: name.into(),
            run_id: "r".into(),
            root_run_id: "r".into(),
            parent_run_id: None,
            step: 1,
            tags: vec![],
            metadata: "{}".into(),
            data: data.into(),
            timestamp_ms: 0,
        }
    }
}
