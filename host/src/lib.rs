//! hostd: takes the events LangChain / LangGraph agents emit, runs each through the
//! tenant's sandboxed Wasm policy, and delivers what the policy keeps.
//!
//! Data moves forward only: [`ingest`] → [`policy`] → [`delivery`] → [`sinks`].
//! [`app`] wires the stages together; `main.rs` only parses the command line.
#![forbid(unsafe_code)]

pub mod app;
pub mod config;
pub mod delivery;
pub mod ingest;
pub mod policy;
pub mod policy_test;
pub mod sinks;
pub mod telemetry;
pub mod units;

pub use app::{check, serve, App};
pub use config::Config;

/// Errors at the edges of the program (startup, configuration, CLI commands), each
/// naming the failing part. Hot-path errors have their own types in their stages.
pub type Result<T, E = anyhow::Error> = std::result::Result<T, E>;
