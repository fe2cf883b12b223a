//! Webhook signatures, both schemes on by default:
//! - Standard Webhooks: `webhook-signature: v1,<base64 HMAC-SHA256(key, "{id}.{ts}.{body}")>`,
//!   one space-separated signature per secret (two during a rotation);
//! - `X-Signature-256: sha256=<hex HMAC-SHA256(key, body)>` with the primary secret,
//!   the style GitHub and the LangChain webhook guides use.
//!
//! A `whsec_<base64>` secret's key is the decoded base64; any other secret's key is its
//! bytes. Secret material never reaches `Debug` output or a log line.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// An HMAC key. Its `Debug` never shows the key.
#[derive(Clone)]
pub struct SigningKey(Vec<u8>);

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey(<redacted>)")
    }
}

impl SigningKey {
    /// Parses a secret as configured: `whsec_<base64>` or raw text. The error never
    /// includes the secret.
    pub fn parse(secret: &str) -> Result<SigningKey, String> {
        let secret = secret.trim();
        if secret.is_empty() {
            return Err("the secret is empty".into());
        }
        match secret.strip_prefix("whsec_") {
            Some(b64) => {
                B64.decode(b64).map(SigningKey).map_err(|_| "a `whsec_` secret must be followed by base64".to_string())
            }
            None => Ok(SigningKey(secret.as_bytes().to_vec())),
        }
    }

    fn mac(&self) -> HmacSha256 {
        HmacSha256::new_from_slice(&self.0).expect("HMAC takes keys of any length")
    }
}

/// The Standard Webhooks signature header value for all `keys`, space-separated.
pub fn standard_webhooks_signature(keys: &[SigningKey], id: &str, timestamp: i64, body: &[u8]) -> String {
    keys.iter()
        .map(|k| {
            let mut mac = k.mac();
            mac.update(id.as_bytes());
            mac.update(b".");
            mac.update(timestamp.to_string().as_bytes());
            mac.update(b".");
            mac.update(body);
            format!("v1,{}", B64.encode(mac.finalize().into_bytes()))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The `X-Signature-256` header value.
pub fn x_signature_256(key: &SigningKey, body: &[u8]) -> String {
    let mut mac = key.mac();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_webhooks_reference_vector() {
        // The example from the Standard Webhooks specification.
        let key = SigningKey::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = br#"{"test": 2432232314}"#;
        let sig = standard_webhooks_signature(&[key], "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body);
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn rotation_gives_two_signatures_and_debug_hides_keys() {
        let a = SigningKey::parse("whsec_YWFh").unwrap();
        let b = SigningKey::parse("plain-secret").unwrap();
        let sig = standard_webhooks_signature(&[a.clone(), b], "id", 1, b"{}");
        assert_eq!(sig.split(' ').count(), 2);
        assert!(!format!("{a:?}").contains("aaa"));
        assert!(x_signature_256(&a, b"{}").starts_with("sha256="));
        assert!(SigningKey::parse("whsec_!!!").unwrap_err().contains("base64"));
    }
}
