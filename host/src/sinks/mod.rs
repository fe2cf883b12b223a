//! Sinks: where deliveries leave hostd. A sink knows nothing of policies or retries; it
//! makes one attempt and classifies the result ([`SendOutcome`]).
//!
//! Each transport is a folder: its sink in `mod.rs`, its settings and how they build
//! and check in `config.rs`. [`SinkConfig`] is the one list of transports.

pub mod config;
pub mod context;
pub mod file;
pub mod kafka;
pub mod message_id;
pub mod outcome;
pub mod redis_stream;
pub mod sns;
pub mod stdout;
pub mod webhook;

use crate::config::RouteConfig;
use crate::record::Delivery;
pub use config::{validate_routes, RouteError, SinkConfig, TransportConfig};
pub use context::SinkContext;
pub use outcome::SendOutcome;
use std::sync::Arc;
use std::time::Duration;

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

/// Builds the sink of a route: parses its transport settings, then builds them.
/// Errors name the tenant, the route and the key or part.
pub fn build(ctx: &SinkContext, route: &RouteConfig) -> Result<Arc<dyn Sink>, RouteError> {
    SinkConfig::parse(ctx, &route.sink)?.build(ctx)
}

/// `hostd check` of one route: what [`build`] would refuse at startup, asked of the
/// route's transport ([`TransportConfig::check`]).
pub async fn check(ctx: &SinkContext, route: &RouteConfig) -> Result<(), RouteError> {
    SinkConfig::parse(ctx, &route.sink)?.check(ctx).await
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

/// The per-request (webhook, SNS) or per-command (Redis) timeout when a route sets none.
fn default_timeout() -> Duration {
    Duration::from_secs(5)
}
