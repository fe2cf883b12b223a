//! AWS SNS: `Publish` of the payload with message attributes `event`, `tenant`,
//! `policy_version` and `idempotency_key`. FIFO topics (`.fifo`) get `MessageGroupId` =
//! the delivery key (a run stays in order) and `MessageDeduplicationId` = the delivery's
//! [`super::message_id`] (scoped by tenant and route), so SNS itself drops a repeat of
//! the same delivery within its 5-minute window, and tenants sharing a topic never
//! drop each other's.
//! Credentials come from the standard AWS chain (env, profile, IMDS, ...).

mod config;

pub use config::SnsConfig;

use super::{describe_error, message_id, SendOutcome, Sink};
use crate::record::Delivery;
use crate::text::log_safe;
use aws_sdk_sns::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sns::types::MessageAttributeValue;
use sha2::{Digest, Sha256};
use std::time::Duration;
use tokio::sync::OnceCell;

pub struct SnsSink {
    config: SnsConfig,
    fifo: bool,
    client: OnceCell<aws_sdk_sns::Client>,
}

impl SnsSink {
    pub fn new(config: &SnsConfig) -> crate::Result<Self> {
        if !config.topic_arn.starts_with("arn:") {
            anyhow::bail!("topic_arn `{}` is not an ARN (arn:aws:sns:REGION:ACCOUNT:NAME)", config.topic_arn);
        }
        Ok(SnsSink { fifo: config.topic_arn.ends_with(".fifo"), config: config.clone(), client: OnceCell::new() })
    }

    /// The client is built on first use: loading the AWS config is async and may read
    /// the environment or a profile.
    async fn client(&self) -> &aws_sdk_sns::Client {
        self.client
            .get_or_init(|| async {
                let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
                    .region(aws_config::Region::new(self.config.region.clone()))
                    .timeout_config(
                        aws_config::timeout::TimeoutConfig::builder().operation_timeout(self.config.timeout).build(),
                    );
                if let Some(url) = &self.config.endpoint_url {
                    loader = loader.endpoint_url(url);
                }
                aws_sdk_sns::Client::new(&loader.load().await)
            })
            .await
    }
}

fn attribute(value: &str) -> MessageAttributeValue {
    MessageAttributeValue::builder().data_type("String").string_value(value).build().expect("data type is set")
}

/// An id SNS accepts (≤ 128 of its allowed characters): the text itself when it
/// already is one, else a stable sha256 of it.
pub fn sns_safe_id(text: &str) -> String {
    let allowed = |c: char| c.is_ascii_alphanumeric() || c.is_ascii_punctuation();
    if !text.is_empty() && text.len() <= 128 && text.chars().all(allowed) {
        text.to_string()
    } else {
        hex::encode(Sha256::digest(text.as_bytes()))
    }
}

#[async_trait::async_trait]
impl Sink for SnsSink {
    async fn send(&self, d: &Delivery) -> SendOutcome {
        let mut publish = self
            .client()
            .await
            .publish()
            .topic_arn(&self.config.topic_arn)
            .message(d.payload.get())
            .message_attributes("event", attribute(&d.event))
            .message_attributes("tenant", attribute(&d.tenant))
            .message_attributes("policy_version", attribute(&d.policy_version))
            .message_attributes("idempotency_key", attribute(&d.idempotency_key));
        if self.fifo {
            publish = publish.message_group_id(sns_safe_id(&d.key)).message_deduplication_id(message_id::of(d));
        }
        match tokio::time::timeout(self.config.timeout + Duration::from_secs(1), publish.send()).await {
            Ok(Ok(_)) => SendOutcome::Delivered,
            Ok(Err(e)) => classify(&e),
            Err(_) => SendOutcome::retry(None, format!("sns: no answer within {:?}", self.config.timeout)),
        }
    }
}

/// Throttling, 5xx and network trouble are retried; validation, not-found and
/// authorization errors go to the DLQ with the AWS error code.
pub fn classify<E>(e: &SdkError<E, aws_sdk_sns::config::http::HttpResponse>) -> SendOutcome
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match e {
        SdkError::ServiceError(service) => {
            let err = service.err();
            let code = err.code().unwrap_or("Unknown").to_string();
            let status = e.raw_response().map(|r| r.status().as_u16());
            let error = log_safe(&format!("sns: {code}: {}", err.message().unwrap_or("")), 2048);
            let retry = status.is_some_and(|s| s >= 500 || s == 429)
                || code.contains("Throttl")
                || code == "InternalError"
                || code == "ServiceUnavailable";
            if retry {
                SendOutcome::retry(status, error)
            } else {
                SendOutcome::fatal(status, error)
            }
        }
        SdkError::ConstructionFailure(_) => SendOutcome::fatal(None, format!("sns: {e}")),
        _ => SendOutcome::retry(None, format!("sns: {}", describe_error(e))),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn safe_ids() {
        assert_eq!(super::sns_safe_id("root:on_tool_end:3"), "root:on_tool_end:3");
        assert_eq!(super::sns_safe_id("has space").len(), 64);
        assert_eq!(super::sns_safe_id(&"x".repeat(200)).len(), 64);
    }
}
