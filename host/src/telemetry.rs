//! Logging (`tracing` to stderr, filtered by `RUST_LOG`, default `info`; stdout stays
//! free for the `stdout` sink and CLI output) and Prometheus metrics.

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;

pub fn init() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

/// Metric names, in one place so dashboards and code agree.
pub mod metrics_names {
    pub const ACCEPTED: &str = "hostd_events_accepted_total";
    pub const DUPLICATE: &str = "hostd_events_duplicate_total";
    pub const DROPPED: &str = "hostd_events_dropped_by_policy_total";
    pub const POLICY_FAULTS: &str = "hostd_policy_faults_total";
    pub const DELIVERED: &str = "hostd_deliveries_delivered_total";
    pub const RETRIED: &str = "hostd_deliveries_retried_total";
    pub const DEAD_LETTERED: &str = "hostd_deliveries_dead_lettered_total";
    pub const DELIVERY_LATENCY: &str = "hostd_delivery_latency_seconds";
    pub const SPOOL_DEPTH: &str = "hostd_spool_depth";
    pub const DLQ_DEPTH: &str = "hostd_dlq_depth";
    pub const POLICY_SWAPS: &str = "hostd_policy_swaps_total";
}

static PROMETHEUS: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the process-wide Prometheus recorder (once) and returns its handle.
pub fn prometheus() -> Option<&'static PrometheusHandle> {
    PROMETHEUS
        .get_or_init(|| {
            let buckets = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    metrics_exporter_prometheus::Matcher::Full(metrics_names::DELIVERY_LATENCY.into()),
                    &buckets,
                )
                .ok()?;
            match builder.install_recorder() {
                Ok(handle) => Some(handle),
                Err(e) => {
                    tracing::warn!("metrics disabled: {e}");
                    None
                }
            }
        })
        .as_ref()
}
