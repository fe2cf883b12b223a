//! JSON Lines on standard output, for development and the quickstart.

use super::Sink;
use crate::record::Delivery;
use crate::sinks::SendOutcome;
use std::io::Write;

pub struct StdoutSink;

#[async_trait::async_trait]
impl Sink for StdoutSink {
    async fn send(&self, delivery: &Delivery) -> SendOutcome {
        let line = delivery.to_json_line();
        let mut out = std::io::stdout().lock();
        match out.write_all(line.as_bytes()).and_then(|()| out.flush()) {
            Ok(()) => SendOutcome::Delivered,
            Err(e) => SendOutcome::Retry { status: None, error: format!("stdout: {e}"), retry_after: None },
        }
    }
}
