//! Sinks: where deliveries leave hostd. A sink knows nothing of policies.

pub mod file;
pub mod stdout;

use crate::config::RouteConfig;
use crate::delivery::Delivery;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
#[error("route `{route}`: {message}")]
pub struct SinkError {
    pub route: String,
    pub message: String,
}

/// The seam every transport implements: deliver a batch to one route, all or nothing.
#[async_trait::async_trait]
pub trait Sink: Send + Sync {
    async fn deliver(&self, batch: &[Delivery]) -> Result<(), SinkError>;
}

/// Builds the sink a route's config names.
pub fn build(route: &str, config: &RouteConfig) -> crate::Result<Arc<dyn Sink>> {
    Ok(match config {
        RouteConfig::File { path } => Arc::new(file::FileSink::open(route, path)?),
        RouteConfig::Stdout {} => Arc::new(stdout::StdoutSink),
    })
}
