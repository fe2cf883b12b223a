//! Signed HTTP webhooks: reqwest with rustls, connection reuse, a timeout per route.
//! The body is the policy's payload serialised once with sorted keys; those exact
//! bytes are signed ([`crate::signing`]) and sent.

mod encode;

use super::{describe_error, Sink};
use crate::config::WebhookConfig;
use crate::delivery::retry::{parse_retry_after, SendOutcome};
use crate::delivery::Delivery;
use crate::egress::{self, Egress, RefusedTarget, TargetPolicy};
use crate::signing::{self, SigningKey};
use anyhow::{anyhow, bail};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use reqwest::StatusCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How much of a failed response body is kept for the DLQ.
const BODY_EXCERPT: usize = 2048;

pub struct WebhookSink {
    client: reqwest::Client,
    route: String,
    /// Checked again before each send; names are checked by the client's resolver.
    targets: Arc<TargetPolicy>,
    url: reqwest::Url,
    keys: Vec<SigningKey>,
    standard_webhooks: bool,
    x_signature: bool,
    headers: HeaderMap,
    timeout: Duration,
}

impl WebhookSink {
    /// Reads the secrets and checks the URL and headers. Errors name the route and key
    /// but never a secret.
    /// `egress` decides which addresses it may reach and through which proxy.
    pub fn new(route: &str, config: &WebhookConfig, egress: &Egress) -> crate::Result<Self> {
        let url =
            reqwest::Url::parse(&config.url).map_err(|e| anyhow!("route `{route}`: url: not a valid URL: {e}"))?;
        if !matches!(url.scheme(), "http" | "https") {
            bail!("route `{route}`: url: scheme must be http or https, not `{}`", url.scheme());
        }
        egress.targets.check_url(&url).map_err(|e| anyhow!("route `{route}`: url: {e}"))?;
        let mut keys = Vec::new();
        for var in config.secret_env.to_vec() {
            let secret = std::env::var(&var).map_err(|_| anyhow!("route `{route}`: secret_env `{var}` is not set"))?;
            keys.push(SigningKey::parse(&secret).map_err(|e| anyhow!("route `{route}`: secret_env `{var}`: {e}"))?);
        }
        for path in config.secret_file.to_vec() {
            let secret = std::fs::read_to_string(&path)
                .map_err(|e| anyhow!("route `{route}`: secret_file {}: {e}", path.display()))?;
            keys.push(
                SigningKey::parse(&secret)
                    .map_err(|e| anyhow!("route `{route}`: secret_file {}: {e}", path.display()))?,
            );
        }
        if keys.is_empty() && (config.standard_webhooks || config.x_signature) {
            bail!(
                "route `{route}`: signing is on but no secret is configured; set secret_env or secret_file \
                 (or standard_webhooks = false and x_signature = false)"
            );
        }
        let mut headers = HeaderMap::new();
        for (name, value) in &config.headers {
            let n = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| anyhow!("route `{route}`: headers: `{name}` is not a valid header name"))?;
            let v = HeaderValue::from_str(value)
                .map_err(|_| anyhow!("route `{route}`: headers.{name}: not a valid header value"))?;
            headers.insert(n, v);
        }
        let client = egress
            .client_builder()
            .map_err(|e| anyhow!("route `{route}`: {e}"))?
            .timeout(config.timeout)
            .connect_timeout(config.timeout.min(Duration::from_secs(5)))
            .redirect(reqwest::redirect::Policy::none())
            .pool_idle_timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| anyhow!("route `{route}`: cannot build the HTTP client: {e}"))?;
        Ok(WebhookSink {
            client,
            route: route.to_string(),
            targets: egress.targets.clone(),
            url,
            keys,
            standard_webhooks: config.standard_webhooks,
            x_signature: config.x_signature,
            headers,
            timeout: config.timeout,
        })
    }

    /// The headers of one attempt: static ones, content type, and the signatures.
    fn request_headers(&self, delivery: &Delivery, body: &[u8]) -> HeaderMap {
        let mut headers = self.headers.clone();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let id = signing::header_safe_id(&delivery.idempotency_key);
        let id_value = HeaderValue::from_str(&id).expect("header-safe id");
        if self.standard_webhooks {
            let ts = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
            let sig = signing::standard_webhooks_signature(&self.keys, &id, ts, body);
            headers.insert("webhook-id", id_value.clone());
            headers.insert("webhook-timestamp", HeaderValue::from(ts));
            headers.insert("webhook-signature", HeaderValue::from_str(&sig).expect("base64 is a valid header"));
        }
        if self.x_signature {
            let sig = signing::x_signature_256(&self.keys[0], body);
            headers.insert("x-signature-256", HeaderValue::from_str(&sig).expect("hex is a valid header"));
            headers.insert("idempotency-key", id_value);
        }
        headers
    }
}

#[async_trait::async_trait]
impl Sink for WebhookSink {
    async fn send(&self, delivery: &Delivery) -> SendOutcome {
        if let Err(e) = self.targets.check_url(&self.url) {
            return self.refused(&e);
        }
        let body = encode::sorted_json(delivery.payload.get());
        let headers = self.request_headers(delivery, &body);
        let response = self.client.post(self.url.clone()).headers(headers).body(body).send().await;
        match response {
            Ok(resp) => {
                let status = resp.status();
                if status.is_success() {
                    return SendOutcome::Delivered;
                }
                let retry_after = resp
                    .headers()
                    .get(RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| parse_retry_after(v, SystemTime::now()));
                let excerpt = excerpt(resp).await;
                classify(status, retry_after, excerpt)
            }
            Err(e) if e.is_timeout() => SendOutcome::Retry {
                status: None,
                error: format!("timed out after {:?}", self.timeout),
                retry_after: None,
            },
            Err(e) => match egress::refused_target(&e) {
                Some(refused) => self.refused(refused),
                // `without_url`: a URL may carry a token in its query.
                None => SendOutcome::Retry { status: None, error: describe_error(&e.without_url()), retry_after: None },
            },
        }
    }
}

impl WebhookSink {
    /// A target the egress policy refuses: dead-lettered at once (retrying cannot help).
    fn refused(&self, e: &RefusedTarget) -> SendOutcome {
        SendOutcome::Fatal { status: None, error: format!("route `{}`: refused target: {e}", self.route) }
    }
}

/// The retry classification of an HTTP answer: retry 408, 429 and 5xx; any other
/// non-2xx goes straight to the DLQ with the status and a body excerpt.
pub fn classify(status: StatusCode, retry_after: Option<Duration>, excerpt: String) -> SendOutcome {
    let code = status.as_u16();
    let error = if excerpt.is_empty() { format!("HTTP {code}") } else { format!("HTTP {code}: {excerpt}") };
    match code {
        200..=299 => SendOutcome::Delivered,
        408 | 429 | 500..=599 => SendOutcome::Retry { status: Some(code), error, retry_after },
        _ => SendOutcome::Fatal { status: Some(code), error },
    }
}

async fn excerpt(resp: reqwest::Response) -> String {
    let bytes = resp.bytes().await.unwrap_or_default();
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(BODY_EXCERPT)]);
    text.trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_statuses() {
        let s = |c: u16| StatusCode::from_u16(c).unwrap();
        assert_eq!(classify(s(204), None, String::new()), SendOutcome::Delivered);
        for code in [408, 429, 500, 503] {
            assert!(matches!(classify(s(code), None, String::new()), SendOutcome::Retry { .. }), "{code}");
        }
        match classify(s(400), None, "bad field".into()) {
            SendOutcome::Fatal { status: Some(400), error } => assert_eq!(error, "HTTP 400: bad field"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(classify(s(301), None, String::new()), SendOutcome::Fatal { .. }));
    }
}
