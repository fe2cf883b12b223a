//! hostd: takes the events LangChain / LangGraph agents emit, runs each through the
//! tenant's sandboxed Wasm policy, and delivers what the policy keeps.
//!
//! Data moves forward only: [`ingest`] → [`policy`] → [`store`] → [`delivery`] → [`sinks`].
//! [`app`] wires the stages together; [`swap`] replaces a tenant's policy while it runs;
//! `main.rs` only parses the command line.
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
pub mod policy;
pub mod policy_test;
pub mod record;
pub mod server;
pub mod signing;
pub mod sinks;
pub mod store;
pub mod swap;
pub mod telemetry;
pub mod text;
pub mod units;

pub use app::App;
pub use check::check;
pub use config::Config;
pub use server::serve;

/// Errors at the edges of the program (startup, configuration, CLI commands), each
/// naming the failing part. Hot-path errors have their own types in their stages.
pub type Result<T, E = anyhow::Error> = std::result::Result<T, E>;
