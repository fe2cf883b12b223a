//! JSON Lines on standard output, for development and the quickstart.

mod config;

pub use config::StdoutConfig;

use crate::record::Delivery;
use crate::sinks::{SendOutcome, Sink};
use std::io::Write;

pub struct StdoutSink;

#[async_trait::async_trait]
impl Sink for StdoutSink {
    async fn send(&self, delivery: &Delivery) -> SendOutcome {
        let line = delivery.to_json_line();
        let mut out = std::io::stdout().lock();
        match out.write_all(line.as_bytes()).and_then(|()| out.flush()) {
            Ok(()) => SendOutcome::Delivered,
            Err(e) => SendOutcome::retry(None, format!("stdout: {e}")),
        }
    }
}
