//! Host bindings generated from `wit/event-policy.wit`.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "event-policy",
});

pub use hostd::policy::log::Level;
pub use hostd::policy::types::Delivery;
