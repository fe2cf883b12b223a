//! `type = "webhook"`: the URL, the signing secrets, the headers and the timeout.

use super::WebhookSink;
use crate::sinks::{default_timeout, Sink, SinkContext, TransportConfig};
use crate::units::de_duration;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    pub url: String,
    /// Env var(s) holding the signing secret(s), `whsec_<base64>` or raw. Several
    /// give several Standard Webhooks signatures (rotation); the first also signs
    /// `X-Signature-256`.
    #[serde(default)]
    pub secret_env: OneOrMany<String>,
    /// File(s) holding the signing secret(s).
    #[serde(default)]
    pub secret_file: OneOrMany<PathBuf>,
    /// Send Standard Webhooks headers (`webhook-id`, `webhook-timestamp`, `webhook-signature`).
    #[serde(default = "yes")]
    pub standard_webhooks: bool,
    /// Send `X-Signature-256` and `Idempotency-Key`.
    #[serde(default = "yes")]
    pub x_signature: bool,
    /// Extra static headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Per-request timeout.
    #[serde(default = "default_timeout", deserialize_with = "de_duration")]
    pub timeout: Duration,
}

fn yes() -> bool {
    true
}

/// A value or a list of values.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany<T> {
    One(T),
    Many(Vec<T>),
}

impl<T> Default for OneOrMany<T> {
    fn default() -> Self {
        OneOrMany::Many(Vec::new())
    }
}

impl<T: Clone> OneOrMany<T> {
    pub fn to_vec(&self) -> Vec<T> {
        match self {
            OneOrMany::One(v) => vec![v.clone()],
            OneOrMany::Many(v) => v.clone(),
        }
    }
}

/// `hostd check` builds the sink: that reads the secrets and checks the URL against
/// the egress policy and the headers, connecting nowhere.
impl TransportConfig for WebhookConfig {
    fn build(&self, ctx: &SinkContext) -> crate::Result<Arc<dyn Sink>> {
        Ok(Arc::new(WebhookSink::new(ctx, self)?))
    }
}
