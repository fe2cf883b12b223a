//! Host bindings generated from `wit/event-policy.wit`.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "event-policy",
});

pub use self::hostd::policy::log::Level;
pub use self::hostd::policy::types::Delivery;
