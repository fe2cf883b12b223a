//! Kafka: an idempotent producer (`enable.idempotence=true`, `acks=all`) per distinct
//! broker config, shared across routes. Record key = the delivery's key (default the
//! root run id, so a run stays in one partition, in order). Headers carry the
//! idempotency key, tenant, event, policy version, and CloudEvents binary-mode
//! attributes. A delivery is done only when its delivery report says so.

mod config;

pub use config::KafkaConfig;

use crate::record::Delivery;
use crate::sinks::{SendOutcome, Sink, SinkContext};
use anyhow::anyhow;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, UNIX_EPOCH};

/// Most records enqueued before awaiting their reports; librdkafka batches them.
const MAX_BATCH: usize = 1000;

pub struct KafkaSink {
    producer: Arc<SharedProducer>,
    topic: String,
    source: String,
}

/// A producer shared by every route with the same client config (one connection set,
/// one idempotence sequence). An idempotent producer that hits a fatal error (the
/// broker fenced it, e.g. after a broker restart lost its producer state) is dead for
/// good: it is replaced, and the failed records are retried on the new one.
struct SharedProducer {
    config: ClientConfig,
    current: RwLock<(u64, FutureProducer)>,
}

impl SharedProducer {
    fn get(&self) -> (u64, FutureProducer) {
        let guard = self.current.read().expect("producer lock");
        (guard.0, guard.1.clone())
    }

    /// Replaces generation `used` if it is still the current one and it is dead:
    /// librdkafka reports a fatal error, or a record failed with a fencing error.
    fn replace_if_fatal(&self, used: u64, producer: &FutureProducer, fenced: bool) {
        let (code, reason) = match producer.client().fatal_error() {
            Some(fatal) => fatal,
            None if fenced => (RDKafkaErrorCode::ProducerFenced, "a record was fenced".to_string()),
            None => return,
        };
        let mut guard = self.current.write().expect("producer lock");
        if guard.0 != used {
            return;
        }
        match self.config.create::<FutureProducer>() {
            Ok(fresh) => {
                tracing::warn!("kafka producer hit a fatal error ({code:?}: {reason}); replaced it with a new one");
                *guard = (used + 1, fresh);
            }
            Err(e) => {
                tracing::error!("kafka producer hit a fatal error ({code:?}: {reason}) and cannot be replaced: {e}")
            }
        }
    }
}

/// Shared producers by their full client config.
fn producers() -> &'static Mutex<HashMap<String, Arc<SharedProducer>>> {
    static PRODUCERS: OnceLock<Mutex<HashMap<String, Arc<SharedProducer>>>> = OnceLock::new();
    PRODUCERS.get_or_init(Default::default)
}

impl KafkaSink {
    /// Creates the producer, or shares the one of a route with the same client config.
    pub fn new(ctx: &SinkContext, config: &KafkaConfig) -> crate::Result<Self> {
        let mut client = ClientConfig::new();
        client
            .set("bootstrap.servers", &config.brokers)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("message.timeout.ms", config.message_timeout.as_millis().to_string())
            .set("linger.ms", "5")
            // Never create topics as a side effect of producing; a missing topic is a
            // configuration error and goes to the DLQ.
            .set("allow.auto.create.topics", "false")
            .set("client.id", "hostd");
        for (k, v) in &config.librdkafka {
            client.set(k, v);
        }
        let mut identity: Vec<(String, String)> =
            client.config_map().iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        identity.sort();
        let identity = format!("{identity:?}");
        let mut producers = producers().lock().expect("producer registry lock");
        let producer = match producers.get(&identity) {
            Some(p) => p.clone(),
            None => {
                // The error names the bad option but never echoes a value (it may be a
                // password): not `KafkaError`'s Display, which appends it.
                let p: FutureProducer = client.create().map_err(|e| match e {
                    KafkaError::ClientConfig(_, desc, _, _) => anyhow!("cannot create the Kafka producer: {desc}"),
                    e => anyhow!("cannot create the Kafka producer: {e}"),
                })?;
                let shared = Arc::new(SharedProducer { config: client.clone(), current: RwLock::new((0, p)) });
                producers.insert(identity, shared.clone());
                shared
            }
        };
        Ok(KafkaSink {
            producer,
            topic: ctx.expand(&config.topic),
            source: format!("/hostd/{}/{}", ctx.tenant, ctx.route),
        })
    }

    fn headers(&self, d: &Delivery) -> OwnedHeaders {
        let time = humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(d.created_ms)).to_string();
        let ce_type = format!("dev.hostd.{}", d.event);
        let pairs: [(&str, &str); 10] = [
            ("idempotency-key", &d.idempotency_key),
            ("hostd-tenant", &d.tenant),
            ("hostd-event", &d.event),
            ("hostd-policy-version", &d.policy_version),
            ("ce_id", &d.idempotency_key),
            ("ce_source", &self.source),
            ("ce_type", &ce_type),
            ("ce_specversion", "1.0"),
            ("ce_time", &time),
            ("content-type", "application/json"),
        ];
        pairs.iter().fold(OwnedHeaders::new_with_capacity(pairs.len()), |h, (k, v)| {
            h.insert(Header { key: k, value: Some(*v) })
        })
    }
}

#[async_trait::async_trait]
impl Sink for KafkaSink {
    async fn send(&self, delivery: &Delivery) -> SendOutcome {
        self.send_batch(std::slice::from_ref(delivery)).await.pop().expect("one outcome per delivery")
    }

    fn max_batch(&self) -> usize {
        MAX_BATCH
    }

    /// Enqueues the whole batch, then awaits every delivery report.
    async fn send_batch(&self, batch: &[Delivery]) -> Vec<SendOutcome> {
        let (generation, producer) = self.producer.get();
        let mut pending = Vec::with_capacity(batch.len());
        for d in batch {
            let record = FutureRecord::to(&self.topic).key(&d.key).payload(d.payload.get()).headers(self.headers(d));
            pending.push(match producer.send_result(record) {
                Ok(future) => Ok(future),
                Err((e, _)) => Err(classify(&e)),
            });
        }
        let mut out = Vec::with_capacity(pending.len());
        let mut fenced = false;
        for p in pending {
            out.push(match p {
                Ok(future) => match future.await {
                    Ok(Ok(_)) => SendOutcome::Delivered,
                    Ok(Err((e, _))) => {
                        fenced |= is_fencing(&e);
                        classify(&e)
                    }
                    Err(_) => SendOutcome::retry(None, "kafka: the producer dropped the message"),
                },
                Err(outcome) => outcome,
            });
        }
        if out.iter().any(|o| *o != SendOutcome::Delivered) {
            self.producer.replace_if_fatal(generation, &producer, fenced);
        }
        out
    }
}

impl Drop for KafkaSink {
    fn drop(&mut self) {
        let _ = self.producer.get().1.flush(Duration::from_secs(1));
    }
}

/// Errors after which an idempotent producer can never send again.
fn is_fencing(e: &KafkaError) -> bool {
    use RDKafkaErrorCode as C;
    matches!(
        e.rdkafka_error_code(),
        Some(
            C::ProducerFenced | C::InvalidProducerEpoch | C::OutOfOrderSequenceNumber | C::Fatal | C::UnknownProducerId
        )
    )
}

/// Retry what time can fix (broker down, timeouts, leader moves, NOT_ENOUGH_REPLICAS,
/// a full local queue); dead-letter what it cannot (too large, unknown topic, auth).
pub fn classify(e: &KafkaError) -> SendOutcome {
    use RDKafkaErrorCode as C;
    let error = format!("kafka: {e}");
    let fatal = matches!(
        e.rdkafka_error_code(),
        Some(
            C::MessageSizeTooLarge
                | C::InvalidMessageSize
                | C::InvalidMessage
                | C::UnknownTopic
                | C::UnknownTopicOrPartition
                | C::InvalidTopic
                | C::TopicAuthorizationFailed
                | C::ClusterAuthorizationFailed
                | C::TransactionalIdAuthorizationFailed
                | C::SaslAuthenticationFailed
                | C::Authentication
        )
    );
    if fatal {
        SendOutcome::fatal(None, error)
    } else {
        SendOutcome::retry(None, error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_option_is_named_but_its_value_never_shown() {
        let ctx = SinkContext::new("acme".into(), "default", Default::default());
        let config = KafkaConfig {
            brokers: "127.0.0.1:1".into(),
            topic: "{tenant}.{route}".into(),
            librdkafka: [("sasl.pasword".to_string(), "hunter2".to_string())].into(),
            message_timeout: Duration::from_secs(1),
        };
        let e = KafkaSink::new(&ctx, &config).err().expect("refused").to_string();
        assert!(e.starts_with("cannot create the Kafka producer: ") && e.contains("sasl.pasword"), "{e}");
        assert!(!e.contains("hunter2"), "{e}");
    }
}
