//! The policy stage: each tenant's Wasm component behind the WIT `event-policy`
//! contract, run in a sandbox with limits, failing closed.
//!
//! - [`engine`]: the one shared wasmtime `Engine` and its epoch ticker.
//! - [`sandbox`]: what a guest can reach (deny-all WASI, `log`) and its memory limiter.
//! - [`pool`]: a compiled policy version and its reusable instances.
//! - [`fault`]: why a policy call failed, named by tenant, version and cause.
//! - [`decision`]: checking a guest's decision against the tenant's routes and limits.

pub mod decision;
pub mod engine;
pub mod fault;
pub mod live;
pub mod pool;
pub mod sandbox;

pub use crate::contract::{Decision, Delivery as GuestDelivery, Event as PolicyEvent};
pub use decision::{Outcome, ShapedDelivery};
pub use engine::PolicyEngine;
pub use fault::{PolicyError, PolicyFault};
pub use pool::PolicyInstancePool;
