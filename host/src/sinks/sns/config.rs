//! `type = "sns"`: the topic, its region and an optional endpoint.

use super::SnsSink;
use crate::sinks::{default_timeout, Sink, SinkContext, TransportConfig};
use crate::units::de_duration;
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnsConfig {
    /// A `.fifo` topic gets `MessageGroupId` = key and `MessageDeduplicationId` from the
    /// idempotency key.
    pub topic_arn: String,
    pub region: String,
    /// For emulators and VPC endpoints. Credentials come from the standard AWS chain.
    pub endpoint_url: Option<String>,
    #[serde(default = "default_timeout", deserialize_with = "de_duration")]
    pub timeout: Duration,
}

/// `hostd check` builds the sink: that checks the ARN; the AWS client is made on first
/// use, so neither credentials nor the endpoint are needed.
impl TransportConfig for SnsConfig {
    fn build(&self, _ctx: &SinkContext) -> crate::Result<Arc<dyn Sink>> {
        Ok(Arc::new(SnsSink::new(self)?))
    }
}
