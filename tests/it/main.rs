//! hostd's end-to-end tests, one test binary: each module starts the real `hostd`
//! binary (and, for some, real services) and drives it as a user would. Shared helpers
//! are the `hostd_e2e` library (`tests/support/`).
//!
//! `cargo test -p hostd-e2e --test it -- kafka::` runs one module. The Redis and Kafka
//! tests skip, saying so, unless `make services` runs and their variables are set (see
//! `hostd_e2e::services`); `make test` sets `HOSTD_TEST_REQUIRE_SERVICES=1`, which turns a
//! missing service into a failure.

mod cli;
mod crash_and_drain;
mod delivery;
mod hostile_guests;
mod ingest_errors;
mod kafka;
mod langgraph_hook;
mod management;
mod policy_swap;
mod polyglot;
mod quickstart;
mod redis_stream;
mod server_hardening;
mod sink_hardening;
mod store;
