//! Signed HTTP webhooks: reqwest with rustls, connection reuse, a timeout per route.
//! The body is the policy's payload in canonical form (sorted keys, strings and numbers
//! as written); those exact bytes are signed ([`crate::signing`]) and sent. A payload
//! with no canonical form is dead-lettered, never sent as something else. The id in
//! `webhook-id` / `Idempotency-Key` is the tenant- and route-scoped
//! [`super::message_id`].

mod config;
mod encode;

pub use config::{OneOrMany, WebhookConfig};

use super::{describe_error, message_id, Sink, SinkContext};
use crate::egress::{self, RefusedTarget, TargetPolicy};
use crate::record::Delivery;
use crate::signing::{self, SigningKey};
use crate::sinks::outcome::{parse_retry_after, SendOutcome};
use crate::text::log_safe;
use anyhow::{anyhow, bail};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use reqwest::StatusCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How much of a failed response body is read and kept for the DLQ (escaped, in bytes).
const BODY_EXCERPT: usize = 2048;
/// Longest wait for that excerpt: a receiver that drips its error body slowly does not
/// hold the worker until the route timeout.
const EXCERPT_DEADLINE: Duration = Duration::from_secs(1);

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
    /// Reads the secrets and checks the URL and headers. Errors name the key but never
    /// a secret. `ctx.egress` decides which addresses it may reach and through which
    /// proxy.
    pub fn new(ctx: &SinkContext, config: &WebhookConfig) -> crate::Result<Self> {
        let url = reqwest::Url::parse(&config.url).map_err(|e| anyhow!("url: not a valid URL: {e}"))?;
        if !matches!(url.scheme(), "http" | "https") {
            bail!("url: scheme must be http or https, not `{}`", url.scheme());
        }
        ctx.egress.targets.check_url(&url).map_err(|e| anyhow!("url: {e}"))?;
        let mut keys = Vec::new();
        for (i, secret) in ctx.signing_secrets.iter().enumerate() {
            keys.push(SigningKey::parse(secret).map_err(|e| anyhow!("stored signing secret {i}: {e}"))?);
        }
        for var in config.secret_env.to_vec() {
            let secret = std::env::var(&var).map_err(|_| anyhow!("secret_env `{var}` is not set"))?;
            keys.push(SigningKey::parse(&secret).map_err(|e| anyhow!("secret_env `{var}`: {e}"))?);
        }
        for path in config.secret_file.to_vec() {
            let secret = std::fs::read_to_string(&path).map_err(|e| anyhow!("secret_file {}: {e}", path.display()))?;
            keys.push(SigningKey::parse(&secret).map_err(|e| anyhow!("secret_file {}: {e}", path.display()))?);
        }
        if keys.is_empty() && (config.standard_webhooks || config.x_signature) {
            bail!(
                "signing is on but no secret is configured; set secret_env or secret_file, or let hostd keep one \
                 (a route created through the admin API) (or standard_webhooks = false and x_signature = false)"
            );
        }
        let mut headers = HeaderMap::new();
        for (name, value) in &config.headers {
            let n = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| anyhow!("headers: `{name}` is not a valid header name"))?;
            let v = HeaderValue::from_str(value).map_err(|_| anyhow!("headers.{name}: not a valid header value"))?;
            headers.insert(n, v);
        }
        let client = ctx
            .egress
            .client_builder()?
            .timeout(config.timeout)
            .connect_timeout(config.timeout.min(Duration::from_secs(5)))
            .redirect(reqwest::redirect::Policy::none())
            .pool_idle_timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| anyhow!("cannot build the HTTP client: {e}"))?;
        Ok(WebhookSink {
            client,
            route: ctx.route.clone(),
            targets: ctx.egress.targets.clone(),
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
        let id = message_id::of(delivery);
        let id_value = HeaderValue::from_str(&id).expect("a message id is `msg_` and hex");
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
        let body = match encode::sorted_json(delivery.payload.get()) {
            Ok(body) => body,
            Err(e) => {
                return SendOutcome::fatal(
                    None,
                    format!("not sent: the payload has no canonical JSON form to sign ({e})"),
                )
            }
        };
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
            Err(e) if e.is_timeout() => SendOutcome::retry(None, format!("timed out after {:?}", self.timeout)),
            Err(e) => match egress::refused_target(&e) {
                Some(refused) => self.refused(refused),
                // `without_url`: a URL may carry a token in its query.
                None => SendOutcome::retry(None, describe_error(&e.without_url())),
            },
        }
    }
}

impl WebhookSink {
    /// A target the egress policy refuses: dead-lettered at once (retrying cannot help).
    fn refused(&self, e: &RefusedTarget) -> SendOutcome {
        SendOutcome::fatal(None, format!("route `{}`: refused target: {e}", self.route))
    }
}

/// The retry classification of an HTTP answer: retry 408, 429 and 5xx; any other
/// non-2xx goes straight to the DLQ with the status and a body excerpt.
pub fn classify(status: StatusCode, retry_after: Option<Duration>, excerpt: String) -> SendOutcome {
    let code = status.as_u16();
    let error = if excerpt.is_empty() { format!("HTTP {code}") } else { format!("HTTP {code}: {excerpt}") };
    match code {
        200..=299 => SendOutcome::Delivered,
        408 | 429 | 500..=599 => SendOutcome::retry(Some(code), error).with_retry_after(retry_after),
        _ => SendOutcome::fatal(Some(code), error),
    }
}

/// The start of a failed answer's body for the DLQ and the log: at most
/// [`BODY_EXCERPT`] bytes are read (chunk by chunk, within [`EXCERPT_DEADLINE`]), then
/// the response is dropped; control characters are escaped.
async fn excerpt(mut resp: reqwest::Response) -> String {
    let mut buf = Vec::with_capacity(BODY_EXCERPT);
    let read = async {
        while buf.len() < BODY_EXCERPT {
            match resp.chunk().await {
                Ok(Some(chunk)) => buf.extend_from_slice(&chunk[..chunk.len().min(BODY_EXCERPT - buf.len())]),
                Ok(None) | Err(_) => break,
            }
        }
    };
    let _ = tokio::time::timeout(EXCERPT_DEADLINE, read).await;
    log_safe(String::from_utf8_lossy(&buf).trim(), BODY_EXCERPT)
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

    fn unsigned_sink(url: &str) -> WebhookSink {
        let config: WebhookConfig = toml::from_str(&format!(
            "url = \"{url}\"\nstandard_webhooks = false\nx_signature = false\ntimeout = \"30s\""
        ))
        .unwrap();
        let loopback_allowed = crate::egress::Egress {
            targets: std::sync::Arc::new(crate::egress::TargetPolicy { allow_all: true, ..Default::default() }),
            proxy: None,
        };
        WebhookSink::new(&SinkContext::new("acme".into(), "default", loopback_allowed), &config).unwrap()
    }

    fn delivery(payload: &str) -> Delivery {
        Delivery {
            id: 1,
            tenant: "acme".into(),
            route: "default".into(),
            idempotency_key: "k".into(),
            event: "on_tool_end".into(),
            key: "root".into(),
            policy_version: "v".into(),
            redactions: vec![],
            payload: serde_json::value::RawValue::from_string(payload.into()).unwrap(),
            attempts: 0,
            next_attempt_ms: 0,
            created_ms: 0,
        }
    }

    #[tokio::test]
    async fn a_payload_with_no_canonical_form_is_dead_lettered_unsent() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let sink = unsigned_sink(&format!("http://{}/hook", listener.local_addr().unwrap()));
        // `RawValue` accepts any depth; the sink must not send it as anything else.
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        match sink.send(&delivery(&deep)).await {
            SendOutcome::Fatal { status: None, error } => {
                assert!(error.starts_with("not sent: the payload has no canonical JSON form"), "{error}");
                assert!(error.contains("deeper than 128 levels at byte 128"), "{error}");
            }
            other => panic!("{other:?}"),
        }
        let accepted = tokio::time::timeout(Duration::from_millis(200), listener.accept()).await;
        assert!(accepted.is_err(), "nothing was sent");
    }

    #[tokio::test]
    async fn an_endless_error_body_is_read_only_up_to_the_excerpt() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let sink = unsigned_sink(&format!("http://{}/hook", listener.local_addr().unwrap()));
        let written = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = written.clone();
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 65536];
            let _ = stream.read(&mut buf).await;
            let head = "HTTP/1.1 503 Service Unavailable\r\ntransfer-encoding: chunked\r\n\r\n";
            let _ = stream.write_all(head.as_bytes()).await;
            let line = "down\nERROR forged\n".repeat(256);
            let chunk = format!("{:x}\r\n{line}\r\n", line.len());
            // Bounded: 256 MiB at most, far more than an excerpt.
            for _ in 0..(256 << 20) / line.len() {
                if stream.write_all(chunk.as_bytes()).await.is_err() {
                    return;
                }
                counter.fetch_add(line.len(), std::sync::atomic::Ordering::Relaxed);
            }
        });
        let started = std::time::Instant::now();
        let outcome = sink.send(&delivery("{}")).await;
        assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
        match outcome {
            SendOutcome::Retry { status: Some(503), error, .. } => {
                let excerpt = error.strip_prefix("HTTP 503: ").unwrap();
                assert!(excerpt.len() <= BODY_EXCERPT && excerpt.len() > BODY_EXCERPT / 2, "{}", excerpt.len());
                assert!(excerpt.starts_with("down\\nERROR forged\\n") && !excerpt.contains('\n'), "{excerpt}");
            }
            other => panic!("{other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let sent = written.load(std::sync::atomic::Ordering::Relaxed);
        assert!(sent < 16 << 20, "the receiver wrote {sent} bytes: hostd kept reading");
    }
}
