//! The `event-policy` contract: host bindings generated from `wit/event-policy.wit`.
//! At the bottom of the crate: the wire event is this contract's `event` record, and
//! the policy stage calls guests through it.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "event-policy",
});

pub use self::hostd::policy::log::Level;
pub use self::hostd::policy::types::Delivery;
