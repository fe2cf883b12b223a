//! The policy stage: each tenant's Wasm component behind the WIT `event-policy`
//! contract, run in a sandbox with limits, failing closed.
//!
//! - [`engine`]: the one shared wasmtime `Engine` and its epoch ticker.
//! - [`sandbox`]: what a guest can reach (deny-all WASI, `log`) and its memory limiter.
//! - [`version`]: one compiled policy version and its reusable instances.
//! - [`fault`]: why a policy call failed, named by tenant, version and cause.
//! - [`decision`]: checking a guest's decision against the tenant's routes and limits.
//! - [`live`]: a tenant's active and previous versions and their statistics.
//! - [`source`], [`lifecycle`]: where a version comes from, its checks, the live swap.
//! - [`fixtures`]: `policy_tests` and `hostd policy test`.
//! - [`evict`]: freeing idle instances under the memory budget.
//! - [`run`]: calling policy code from async code.

pub mod decision;
pub mod engine;
pub mod evict;
pub mod fault;
pub mod fixtures;
pub mod lifecycle;
pub mod live;
pub mod run;
pub mod sandbox;
pub mod source;
pub mod version;

pub use crate::contract::{Decision, Delivery as GuestDelivery, Event as PolicyEvent};
pub use decision::{Outcome, ShapedDelivery};
pub use engine::PolicyEngine;
pub use fault::{PolicyError, PolicyFault};
pub use lifecycle::TenantPolicy;
pub use run::{evaluate_all, evaluate_timed, run_policy_code};
pub use source::{load_policy, PolicySource, SwapError};
pub use version::PolicyVersion;
