//! Helpers for hostd policies written in Rust.
//!
//! Nothing here depends on Wasm: the same code runs inside a guest component and
//! natively in the host's benchmarks, which is how the sandbox's cost is measured.
#![forbid(unsafe_code)]

pub mod envelope;
pub mod pii;

pub use envelope::EventView;
pub use pii::{Redactor, RedactorError};
