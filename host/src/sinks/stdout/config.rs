//! `type = "stdout"`: no options.

use super::StdoutSink;
use crate::sinks::{Sink, SinkContext, TransportConfig};
use serde::Deserialize;
use std::sync::Arc;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StdoutConfig {}

impl TransportConfig for StdoutConfig {
    fn build(&self, _ctx: &SinkContext) -> crate::Result<Arc<dyn Sink>> {
        Ok(Arc::new(StdoutSink))
    }
}
