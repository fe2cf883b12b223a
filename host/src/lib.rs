//! hostd: takes the events LangChain / LangGraph agents emit, runs each through the
//! tenant's sandboxed Wasm policy, and delivers what the policy keeps.
//!
//! Data moves forward only: [`ingest`] → [`policy`] → [`store`] → [`delivery`] →
//! [`sinks`]. The modules are layered, and a module imports only from its own layer or
//! below (the `layering` unit test keeps it so), top to bottom: the process ([`app`],
//! [`server`], [`swap`], [`mod@check`]); [`admin`]; [`ingest`]; [`tenants`]; [`delivery`];
//! [`sinks`]; [`policy`]; [`store`]; [`config`]; shared records ([`event`], [`record`]);
//! helpers ([`json`], [`text`], [`units`], [`clock`], [`contract`], [`telemetry`],
//! [`signing`], [`egress`], [`api_error`], [`secret_key`]). `main.rs` only parses the command line.
// One `unsafe` in the crate: loading compiled components from hostd's own cache
// (policy/engine.rs); everything else is safe Rust.
#![deny(unsafe_code)]

pub mod admin;
pub mod api_error;
pub mod app;
pub mod check;
pub mod clock;
pub mod config;
pub mod contract;
pub mod delivery;
pub mod egress;
pub mod event;
pub mod host_guard;
pub mod ingest;
pub mod json;
#[cfg(test)]
mod layering;
pub mod policy;
pub mod record;
pub mod secret_key;
pub mod server;
pub mod signing;
pub mod sinks;
pub mod store;
pub mod swap;
pub mod telemetry;
pub mod tenants;
pub mod text;
pub mod units;

pub use app::App;
pub use check::check;
pub use config::Config;
pub use server::serve;

/// Errors at the edges of the program (startup, configuration, CLI commands), each
/// naming the failing part. Hot-path errors have their own types in their stages.
pub type Result<T, E = anyhow::Error> = std::result::Result<T, E>;
