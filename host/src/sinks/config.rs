//! A route's transport settings, typed: [`SinkConfig`] is the one list of transports,
//! each variant the `config.rs` of its folder. `config::RouteConfig` keeps the settings
//! as written; they are parsed here because config sits below sinks.

use super::file::FileConfig;
use super::kafka::KafkaConfig;
use super::redis_stream::RedisStreamConfig;
use super::sns::SnsConfig;
use super::stdout::StdoutConfig;
use super::webhook::WebhookConfig;
use super::{Sink, SinkContext};
use crate::config::Config;
use crate::record::TenantId;
use serde::Deserialize;
use std::sync::Arc;

/// The transport of a route and its own options; `type` picks the variant.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
pub enum SinkConfig {
    /// JSON Lines, one line per delivery.
    File(FileConfig),
    /// JSON Lines on standard output.
    Stdout(StdoutConfig),
    /// Signed HTTP POST of the payload.
    Webhook(WebhookConfig),
    /// `XADD` to a Redis stream.
    RedisStream(RedisStreamConfig),
    /// Produce to a Kafka topic (idempotent producer).
    Kafka(KafkaConfig),
    /// Publish to an AWS SNS topic (standard or FIFO).
    Sns(SnsConfig),
}

/// What a transport's settings do: build the route's sink, and answer `hostd check`.
#[async_trait::async_trait]
pub trait TransportConfig: Send + Sync {
    /// The sink of the route `ctx` names. Errors say what is wrong (the key, the file);
    /// [`SinkConfig::build`] adds the tenant and the route.
    fn build(&self, ctx: &SinkContext) -> crate::Result<Arc<dyn Sink>>;

    /// `hostd check`, like Vector's healthcheck: whatever [`Self::build`] would refuse
    /// at startup, without writing anything and without needing the service up. By
    /// default the sink is built and dropped (building opens no connection); a
    /// transport whose build has side effects (the file sink creates its file) says
    /// what it checks instead.
    async fn check(&self, ctx: &SinkContext) -> crate::Result<()> {
        self.build(ctx).map(drop)
    }
}

/// A route whose sink cannot be parsed, built or checked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("tenant `{tenant}`: route `{route}`: {problem}")]
pub struct RouteError {
    pub tenant: TenantId,
    pub route: String,
    /// What is wrong, naming the key or part.
    pub problem: String,
}

impl SinkConfig {
    /// Parses a route's settings (`config::RouteConfig::sink`). Unknown keys and types
    /// are refused, naming the key (toml's own message).
    pub fn parse(ctx: &SinkContext, settings: &toml::Table) -> Result<SinkConfig, RouteError> {
        settings.clone().try_into().map_err(|e: toml::de::Error| ctx.error(e.message()))
    }

    /// Builds the route's sink.
    pub fn build(&self, ctx: &SinkContext) -> Result<Arc<dyn Sink>, RouteError> {
        self.transport().build(ctx).map_err(|e| ctx.error(format!("{e:#}")))
    }

    /// `hostd check` of the route ([`TransportConfig::check`]).
    pub async fn check(&self, ctx: &SinkContext) -> Result<(), RouteError> {
        self.transport().check(ctx).await.map_err(|e| ctx.error(format!("{e:#}")))
    }

    fn transport(&self) -> &dyn TransportConfig {
        match self {
            SinkConfig::File(c) => c,
            SinkConfig::Stdout(c) => c,
            SinkConfig::Webhook(c) => c,
            SinkConfig::RedisStream(c) => c,
            SinkConfig::Kafka(c) => c,
            SinkConfig::Sns(c) => c,
        }
    }
}

/// Parses the transport settings of every route in `config`: what `Config::load` leaves
/// to sinks. The first error names the tenant, the route and the key.
pub fn validate_routes(config: &Config) -> Result<(), RouteError> {
    let egress = config.server.egress();
    for tenant in &config.tenants {
        for (name, route) in &tenant.routes {
            let ctx = SinkContext::new(TenantId::from(tenant.id.as_str()), name.as_str(), egress.clone());
            SinkConfig::parse(&ctx, &route.sink)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RouteConfig;
    use std::time::Duration;

    /// A route table as `[tenants.routes.default]` of tenant `acme` holds it, parsed as
    /// startup and `hostd check` parse it.
    fn parse(route: &str) -> Result<SinkConfig, String> {
        let route: RouteConfig = toml::from_str(route).map_err(|e| e.to_string())?;
        let ctx = SinkContext::new(TenantId::from("acme"), "default", Default::default());
        SinkConfig::parse(&ctx, &route.sink).map_err(|e| e.to_string())
    }

    #[test]
    fn unknown_keys_are_named_with_the_tenant_and_route() {
        assert!(matches!(parse("type = \"file\"\npath = \"out.jsonl\"").unwrap(), SinkConfig::File(_)));
        let e = parse("type = \"file\"\npth = \"out.jsonl\"").unwrap_err();
        assert_eq!(e, "tenant `acme`: route `default`: unknown field `pth`, expected `path`");
        let e = parse("type = \"carrier-pigeon\"").unwrap_err();
        assert!(e.starts_with("tenant `acme`: route `default`: unknown variant `carrier-pigeon`"), "{e}");
        assert!(e.contains("`file`, `stdout`, `webhook`, `redis-stream`, `kafka`, `sns`"), "{e}");
        let e = parse("path = \"out.jsonl\"").unwrap_err();
        assert!(e.ends_with("missing field `type`"), "{e}");
        let e = parse("type = \"stdout\"\npath = \"out.jsonl\"").unwrap_err();
        assert!(e.ends_with("unknown field `path`, there are no fields"), "{e}");
    }

    #[test]
    fn webhook_routes_with_delivery_options() {
        let text = "type = \"webhook\"\nurl = \"http://x\"\nsecret_env = [\"A\", \"B\"]\nretry = [\"1s\"]\nordering = \"per-key\"";
        let SinkConfig::Webhook(w) = parse(text).unwrap() else { panic!("webhook") };
        assert_eq!(w.secret_env.to_vec(), vec!["A", "B"]);
        assert!(w.standard_webhooks && w.x_signature);
        assert_eq!(w.timeout, Duration::from_secs(5));
        let e = parse(&text.replace("ordering", "orderin")).unwrap_err();
        assert!(e.contains("orderin"), "{e}");
        let e = parse(&text.replace("secret_env = [\"A\", \"B\"]", "secret_env = 5")).unwrap_err();
        assert!(e.ends_with("data did not match any variant of untagged enum OneOrMany"), "{e}");
    }

    #[test]
    fn every_transport_parses_with_its_defaults() {
        let SinkConfig::RedisStream(r) = parse("type = \"redis-stream\"\nurl = \"redis://h\"").unwrap() else {
            panic!("redis")
        };
        assert_eq!((r.stream.as_str(), r.maxlen, r.dedupe), ("hostd:{tenant}:{route}", 100_000, false));
        assert_eq!((r.dedupe_window, r.timeout), (Duration::from_secs(24 * 3600), Duration::from_secs(5)));
        let SinkConfig::Kafka(k) = parse("type = \"kafka\"\nbrokers = \"b:9092\"\ntopic = \"t\"").unwrap() else {
            panic!("kafka")
        };
        assert_eq!((k.message_timeout, k.librdkafka.len()), (Duration::from_secs(30), 0));
        let e = parse("type = \"kafka\"\nbrokers = \"b\"\ntopic = \"t\"\nmessage_timeout = \"soon\"").unwrap_err();
        assert!(e.starts_with("tenant `acme`: route `default`: `soon` is not a duration"), "{e}");
        let SinkConfig::Sns(s) = parse("type = \"sns\"\ntopic_arn = \"arn:aws:sns:r:1:t\"\nregion = \"r\"").unwrap()
        else {
            panic!("sns")
        };
        assert_eq!((s.endpoint_url, s.timeout), (None, Duration::from_secs(5)));
        assert!(matches!(parse("type = \"stdout\"").unwrap(), SinkConfig::Stdout(_)));
        let e = parse("type = \"redis-stream\"\nmaxlen = \"x\"").unwrap_err();
        assert!(e.ends_with("invalid type: string \"x\", expected u64"), "{e}");
    }

    #[test]
    fn validate_routes_names_the_first_bad_route() {
        let mut config: Config = toml::from_str("").unwrap();
        validate_routes(&config).unwrap();
        let tenant = |id: &str, route: &str| -> crate::config::TenantConfig {
            let text = format!("id = \"{id}\"\npolicy = \"p.wasm\"\n[routes.default]\n{route}");
            toml::from_str(&text).unwrap()
        };
        config.tenants = vec![tenant("acme", "type = \"stdout\""), tenant("globex", "type = \"file\"\npth = \"x\"")];
        let e = validate_routes(&config).unwrap_err();
        assert_eq!((e.tenant.as_str(), e.route.as_str()), ("globex", "default"));
        assert_eq!(e.problem, "unknown field `pth`, expected `path`");
    }
}
