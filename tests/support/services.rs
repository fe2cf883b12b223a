//! The external services some tests need, each named by an environment variable that
//! the Makefile's `TEST_ENV` sets once `make services` has started them. Without the
//! variables a test skips, saying so on one line, so a bare `cargo test` passes; with
//! `HOSTD_TEST_REQUIRE_SERVICES=1` (which `make test` sets) a missing variable fails the
//! test instead, so no service test is ever skipped in silence.
//!
//! ```ignore
//! let Some([brokers, tansu]) = services::configured([Service::Kafka, Service::Tansu]) else { return };
//! ```

use std::io::Write;

/// Set to `1` by `make test`: a service test whose variable is unset fails.
pub const REQUIRE_SERVICES: &str = "HOSTD_TEST_REQUIRE_SERVICES";

/// A service from `make services`.
#[derive(Clone, Copy, Debug)]
pub enum Service {
    /// Redis, `redis://127.0.0.1:16379/0`. It also gates the tests that run a private
    /// `redis-server`, which `make services` installs.
    Redis,
    /// The Kafka-protocol broker (tansu), `127.0.0.1:19092`.
    Kafka,
    /// The `tansu` binary, for creating topics and running a private broker.
    Tansu,
    /// moto's server (SNS, SQS, and the S3 a private tansu stores on), `http://127.0.0.1:15000`.
    Moto,
}

impl Service {
    /// The environment variable that names it.
    pub fn var(self) -> &'static str {
        match self {
            Service::Redis => "HOSTD_TEST_REDIS_URL",
            Service::Kafka => "HOSTD_TEST_KAFKA",
            Service::Tansu => "HOSTD_TEST_TANSU",
            Service::Moto => "HOSTD_TEST_MOTO",
        }
    }

    fn what(self) -> &'static str {
        match self {
            Service::Redis => "Redis",
            Service::Kafka => "the Kafka broker",
            Service::Tansu => "the tansu binary",
            Service::Moto => "moto",
        }
    }
}

/// The values of the `wanted` services' variables, in order. When any is unset: `None`
/// after a one-line notice naming each missing one, or a panic under [`REQUIRE_SERVICES`].
pub fn configured<const N: usize>(wanted: [Service; N]) -> Option<[String; N]> {
    let values = wanted.map(|s| std::env::var(s.var()).ok().filter(|v| !v.trim().is_empty()));
    let missing: Vec<String> = wanted
        .iter()
        .zip(&values)
        .filter(|(_, value)| value.is_none())
        .map(|(s, _)| format!("{} ({})", s.what(), s.var()))
        .collect();
    if missing.is_empty() {
        return Some(values.map(Option::unwrap_or_default));
    }
    let test = std::thread::current().name().unwrap_or("this test").to_string();
    let missing = missing.join(" and ");
    if required() {
        panic!("{test} needs {missing}, unset while {REQUIRE_SERVICES}=1: run it through `make test`");
    }
    // Straight to stderr, past the test harness' capture, so `cargo test` shows the skip.
    let _ = writeln!(
        std::io::stderr(),
        "skipped {test}: needs {missing} (`make services` starts it; `make test` sets the variables)"
    );
    None
}

fn required() -> bool {
    std::env::var(REQUIRE_SERVICES).is_ok_and(|v| !matches!(v.trim(), "" | "0" | "false"))
}
