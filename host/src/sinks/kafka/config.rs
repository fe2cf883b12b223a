//! `type = "kafka"`: the brokers, the topic and librdkafka's own options.

use super::KafkaSink;
use crate::sinks::{Sink, SinkContext, TransportConfig};
use crate::units::de_duration;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// `bootstrap.servers`: `host:port[,host:port...]`.
    pub brokers: String,
    /// Topic; `{tenant}` and `{route}` are replaced ([`SinkContext::expand`]).
    pub topic: String,
    /// Raw librdkafka client options (SASL, TLS, tuning), applied after hostd's own.
    #[serde(default)]
    pub librdkafka: BTreeMap<String, String>,
    /// How long librdkafka may try one message before hostd's retry schedule takes over.
    #[serde(default = "default_message_timeout", deserialize_with = "de_duration")]
    pub message_timeout: Duration,
}

fn default_message_timeout() -> Duration {
    Duration::from_secs(30)
}

/// `hostd check` builds the sink: librdkafka checks every option when it creates the
/// producer (which connects in the background, as at startup; nothing waits for it).
impl TransportConfig for KafkaConfig {
    fn build(&self, ctx: &SinkContext) -> crate::Result<Arc<dyn Sink>> {
        Ok(Arc::new(KafkaSink::new(ctx, self)?))
    }
}
