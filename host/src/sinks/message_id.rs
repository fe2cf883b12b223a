//! The id a delivery carries downstream for deduplication: webhooks' `webhook-id` and
//! `Idempotency-Key`, the Redis Streams dedupe key, the SNS FIFO deduplication id.
//!
//! It is scoped: `msg_` + the hex sha256 of the tenant, the route and the idempotency
//! key, each length-prefixed (see [`message_id`]). So a tenant can never pre-claim
//! another tenant's id at a shared receiver, topic or stream (idempotency keys are
//! chosen by clients and predictable), and an id names one delivery: every retry and
//! every replay of it carries the same id.

use crate::json::length_prefixed_sha256;
use crate::record::Delivery;

/// Fixed first bytes of the hashed input: the scheme's name and version.
pub const DOMAIN: &str = "hostd-message-id-v1";

/// `msg_` + hex(sha256(DOMAIN ‖ len(tenant) ‖ tenant ‖ len(route) ‖ route ‖ len(key) ‖ key)),
/// each `len` 8 bytes big-endian: 68 characters of `[a-z0-9_]`, whatever the inputs.
pub fn message_id(tenant: &str, route: &str, idempotency_key: &str) -> String {
    format!("msg_{}", hex::encode(length_prefixed_sha256(DOMAIN, &[tenant, route, idempotency_key])))
}

/// [`message_id`] of a delivery.
pub fn of(d: &Delivery) -> String {
    message_id(&d.tenant, &d.route, &d.idempotency_key)
}

#[cfg(test)]
mod tests {
    use super::message_id;

    #[test]
    fn scoped_by_tenant_and_route_and_unambiguous() {
        let id = message_id("acme", "default", "root:on_tool_end:1");
        assert_eq!(id, message_id("acme", "default", "root:on_tool_end:1"), "stable across retries");
        assert_eq!(id.len(), 68);
        assert!(id.starts_with("msg_") && id[4..].bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        assert_ne!(id, message_id("globex", "default", "root:on_tool_end:1"), "another tenant, another id");
        assert_ne!(id, message_id("acme", "billing", "root:on_tool_end:1"), "another route, another id");
        // No separator to play with: moving bytes between the parts changes the id.
        assert_ne!(message_id("ab", "c", "k"), message_id("a", "bc", "k"));
        assert_ne!(message_id("a", "b:c", "k"), message_id("a:b", "c", "k"));
        assert_eq!(message_id(&"t".repeat(10_000), "r", &"k".repeat(10_000)).len(), 68, "bounded");
    }

    #[test]
    fn matches_the_documented_formula() {
        // The README gives receivers this formula; keep it pinned.
        use sha2::{Digest, Sha256};
        let mut input = super::DOMAIN.as_bytes().to_vec();
        for part in ["acme", "default", "k"] {
            input.extend_from_slice(&(part.len() as u64).to_be_bytes());
            input.extend_from_slice(part.as_bytes());
        }
        assert_eq!(message_id("acme", "default", "k"), format!("msg_{}", hex::encode(Sha256::digest(&input))));
    }
}
