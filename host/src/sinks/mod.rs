//! Sinks: where deliveries leave hostd. A sink knows nothing of policies or retries; it
//! makes one attempt and classifies the result ([`SendOutcome`]).

pub mod file;
pub mod kafka;
pub mod message_id;
pub mod outcome;
pub mod redis_stream;
pub mod sns;
pub mod stdout;
pub mod webhook;

use crate::config::{RouteConfig, RouteKind};
use crate::egress::Egress;
use crate::record::Delivery;
pub use outcome::SendOutcome;
use std::sync::Arc;

/// The seam every transport implements.
#[async_trait::async_trait]
pub trait Sink: Send + Sync {
    /// One attempt to deliver `delivery`.
    async fn send(&self, delivery: &Delivery) -> SendOutcome;

    /// Most deliveries [`Sink::send_batch`] takes at once. Transports that pipeline
    /// (Redis, Kafka) say more than 1; the route queue then hands them whole batches.
    fn max_batch(&self) -> usize {
        1
    }

    /// One attempt for each delivery of `batch`, one outcome each, in order.
    async fn send_batch(&self, batch: &[Delivery]) -> Vec<SendOutcome> {
        let mut out = Vec::with_capacity(batch.len());
        for d in batch {
            out.push(self.send(d).await);
        }
        out
    }
}

/// Builds the sink a route's config names. Errors name the route and the part.
/// `egress` is where webhooks may connect (`[server]`).
pub fn build(tenant: &str, route: &str, config: &RouteConfig, egress: &Egress) -> crate::Result<Arc<dyn Sink>> {
    Ok(match &config.kind {
        RouteKind::File { path } => Arc::new(file::FileSink::open(route, path)?),
        RouteKind::Stdout {} => Arc::new(stdout::StdoutSink),
        RouteKind::Webhook(w) => Arc::new(webhook::WebhookSink::new(route, w, egress)?),
        RouteKind::RedisStream(r) => Arc::new(redis_stream::RedisStreamSink::new(tenant, route, r)?),
        RouteKind::Kafka(k) => Arc::new(kafka::KafkaSink::new(tenant, route, k)?),
        RouteKind::Sns(c) => Arc::new(sns::SnsSink::new(route, c)?),
    })
}

/// An error and its causes on one line ("connection refused" is usually a cause).
pub fn describe_error(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
