//! Routes: where deliveries go (`type` picks the transport, each with its own options)
//! and how they are delivered (retry schedule, workers, ordering), whatever the transport.

use super::server::default_dedupe_window;
use crate::units::de_duration;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// A route: where deliveries go (`type` picks the transport) and how they are
/// retried, ordered and parallelised.
#[derive(Debug, Clone)]
pub struct RouteConfig {
    pub kind: RouteKind,
    pub delivery: DeliveryOptions,
}

impl RouteConfig {
    pub fn new(kind: RouteKind) -> Self {
        RouteConfig { kind, delivery: DeliveryOptions::default() }
    }
}

/// The transport of a route and its own options.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
pub enum RouteKind {
    /// JSON Lines, one line per delivery.
    File { path: PathBuf },
    /// JSON Lines on standard output.
    Stdout {},
    /// Signed HTTP POST of the payload.
    Webhook(WebhookConfig),
    /// `XADD` to a Redis stream.
    RedisStream(RedisStreamConfig),
    /// Produce to a Kafka topic (idempotent producer).
    Kafka(KafkaConfig),
    /// Publish to an AWS SNS topic (standard or FIFO).
    Sns(SnsConfig),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnsConfig {
    /// A `.fifo` topic gets `MessageGroupId` = key and `MessageDeduplicationId` from the
    /// idempotency key.
    pub topic_arn: String,
    pub region: String,
    /// For emulators and VPC endpoints. Credentials come from the standard AWS chain.
    pub endpoint_url: Option<String>,
    #[serde(default = "default_webhook_timeout", deserialize_with = "de_duration")]
    pub timeout: Duration,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// `bootstrap.servers`: `host:port[,host:port...]`.
    pub brokers: String,
    /// Topic; `{tenant}` and `{route}` are replaced.
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

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisStreamConfig {
    /// `redis://[:password@]host:port/db` (or `rediss://`). Use `url_env` when it holds a password.
    pub url: Option<String>,
    /// Env var holding the URL.
    pub url_env: Option<String>,
    /// Stream name; `{tenant}` and `{route}` are replaced.
    #[serde(default = "default_stream")]
    pub stream: String,
    /// Approximate cap on the stream's length (`MAXLEN ~`).
    #[serde(default = "default_maxlen")]
    pub maxlen: u64,
    /// Append each idempotency key at most once per `dedupe_window` (atomically, by a
    /// Lua script doing `SET NX EX` and `XADD`), so a retry never appends twice.
    #[serde(default)]
    pub dedupe: bool,
    #[serde(default = "default_dedupe_window", deserialize_with = "de_duration")]
    pub dedupe_window: Duration,
    /// Per-command timeout.
    #[serde(default = "default_webhook_timeout", deserialize_with = "de_duration")]
    pub timeout: Duration,
}

fn default_stream() -> String {
    "hostd:{tenant}:{route}".to_string()
}
fn default_maxlen() -> u64 {
    100_000
}

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
    #[serde(default = "default_webhook_timeout", deserialize_with = "de_duration")]
    pub timeout: Duration,
}

fn yes() -> bool {
    true
}
fn default_webhook_timeout() -> Duration {
    Duration::from_secs(5)
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
    pub ordering: Ordering,
}

impl Default for DeliveryOptions {
    fn default() -> Self {
        DeliveryOptions { retry: default_retry(), concurrency: default_concurrency(), ordering: Ordering::default() }
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
pub enum Ordering {
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
        let kind: RouteKind = table.try_into().map_err(|e: toml::de::Error| D::Error::custom(e.message()))?;
        Ok(RouteConfig { kind, delivery })
    }
}
