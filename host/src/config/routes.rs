//! Routes: where deliveries go and how. A route's transport settings (`type` and that
//! transport's own keys) are kept as written: `crate::sinks`, above config, owns and
//! parses them. How it delivers (retry schedule, workers, ordering) is parsed here,
//! whatever the transport.

use serde::Deserialize;
use std::time::Duration;

/// A route: where deliveries go (`type` picks the transport) and how they are
/// retried, ordered and parallelised.
#[derive(Debug, Clone)]
pub struct RouteConfig {
    /// The transport's settings as written, `type` included. `sinks::SinkConfig` parses
    /// them; its errors name the tenant, the route and the key.
    pub sink: toml::Table,
    pub delivery: DeliveryOptions,
}

impl RouteConfig {
    /// A route to a transport of type `kind` with its `settings`, delivered with the
    /// default options.
    pub fn new(kind: &str, mut settings: toml::Table) -> Self {
        settings.insert("type".to_string(), kind.into());
        RouteConfig { sink: settings, delivery: DeliveryOptions::default() }
    }

    /// The route's `type`, when it is a string.
    pub fn kind(&self) -> Option<&str> {
        self.sink.get("type").and_then(toml::Value::as_str)
    }
}

/// How a route delivers, whatever its transport.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveryOptions {
    /// Delays between attempts; after the last, the delivery is dead-lettered.
    #[serde(default = "default_retry", deserialize_with = "de_durations")]
    pub retry: Vec<Duration>,
    /// Deliveries in flight at once on this route.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    #[serde(default)]
    pub ordering: DeliveryOrder,
}

impl Default for DeliveryOptions {
    fn default() -> Self {
        DeliveryOptions {
            retry: default_retry(),
            concurrency: default_concurrency(),
            ordering: DeliveryOrder::default(),
        }
    }
}

fn default_retry() -> Vec<Duration> {
    vec![Duration::from_secs(1), Duration::from_secs(5), Duration::from_secs(30)]
}
fn default_concurrency() -> usize {
    32
}

fn de_durations<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<Duration>, D::Error> {
    let items = Vec::<String>::deserialize(d)?;
    items
        .iter()
        .map(|s| {
            humantime::parse_duration(s)
                .map_err(|e| serde::de::Error::custom(format!("`{s}` is not a duration like \"5s\": {e}")))
        })
        .collect()
}

/// Delivery order on a route.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeliveryOrder {
    /// Deliveries proceed in parallel (fastest).
    #[default]
    Unordered,
    /// Strictly in order per delivery key (one in flight per key); keys in parallel.
    PerKey,
}

/// The keys of a route table that belong to [`DeliveryOptions`].
const DELIVERY_KEYS: [&str; 3] = ["retry", "concurrency", "ordering"];

impl<'de> Deserialize<'de> for RouteConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let mut table = toml::Table::deserialize(d)?;
        let mut common = toml::Table::new();
        for key in DELIVERY_KEYS {
            if let Some(v) = table.remove(key) {
                common.insert(key.to_string(), v);
            }
        }
        let delivery: DeliveryOptions =
            common.try_into().map_err(|e: toml::de::Error| D::Error::custom(e.message()))?;
        if delivery.concurrency == 0 {
            return Err(D::Error::custom("`concurrency` must be at least 1"));
        }
        Ok(RouteConfig { sink: table, delivery })
    }
}
