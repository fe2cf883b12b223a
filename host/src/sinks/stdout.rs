//! JSON Lines on standard output, for development and the quickstart.

use super::{Sink, SinkError};
use crate::delivery::Delivery;
use std::io::Write;

pub struct StdoutSink;

#[async_trait::async_trait]
impl Sink for StdoutSink {
    async fn deliver(&self, batch: &[Delivery]) -> Result<(), SinkError> {
        let buf: String = batch.iter().map(Delivery::to_json_line).collect();
        let mut out = std::io::stdout().lock();
        out.write_all(buf.as_bytes()).and_then(|()| out.flush()).map_err(|e| SinkError {
            route: batch.first().map(|d| d.route.clone()).unwrap_or_default(),
            message: format!("stdout: {e}"),
        })
    }
}
