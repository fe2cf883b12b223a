//! The key that encrypts signing secrets at rest (`server.secret_key_env` /
//! `server.secret_key_file`): 32 random bytes, written as 64 hex digits or as base64
//! (`openssl rand -hex 32`). A value is sealed with XChaCha20-Poly1305 under a random
//! 24-byte nonce of its own, bound to what it belongs to (the AAD), so a sealed value
//! copied to another row does not open. The key's text never appears in `Debug`,
//! errors or logs; only its [id](SecretKey::id) and where it came from do.

use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use sha2::{Digest, Sha256};

/// Bytes in a key.
pub const KEY_BYTES: usize = 32;
/// Bytes in a nonce.
pub const NONCE_BYTES: usize = 24;

/// Why a key's text is not a key, or a sealed value did not open. Never holds key text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretKeyError {
    #[error("{origin}: not a key: give 32 random bytes as 64 hex digits or as base64 (`openssl rand -hex 32`)")]
    Malformed { origin: String },
    #[error("{origin}: the key is {len} bytes, not {KEY_BYTES} (`openssl rand -hex 32` makes one)")]
    WrongLength { origin: String, len: usize },
    #[error("the value does not open with the key from {origin}: another key sealed it, or it was changed")]
    DoesNotOpen { origin: String },
    #[error("cannot seal a value with the key from {origin}")]
    CannotSeal { origin: String },
}

/// A value sealed by [`SecretKey::seal`]: the nonce, and the ciphertext with its tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    pub nonce: [u8; NONCE_BYTES],
    pub ciphertext: Vec<u8>,
}

/// The at-rest encryption key, with where it came from (for messages).
#[derive(Clone)]
pub struct SecretKey {
    bytes: [u8; KEY_BYTES],
    source: String,
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretKey").field("id", &self.id()).field("source", &self.source).finish_non_exhaustive()
    }
}

impl SecretKey {
    /// The key written in `text` (hex or base64, surrounding whitespace ignored);
    /// `source` names where the text came from ("server.secret_key_env `HOSTD_KEY`").
    pub fn parse(text: &str, source: &str) -> Result<SecretKey, SecretKeyError> {
        let text = text.trim();
        let is_hex = text.len() == 2 * KEY_BYTES && text.bytes().all(|b| b.is_ascii_hexdigit());
        let decoded = if is_hex {
            hex::decode(text).ok()
        } else {
            use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
            [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD].iter().find_map(|e| e.decode(text).ok())
        };
        let Some(decoded) = decoded.filter(|d| !d.is_empty()) else {
            return Err(SecretKeyError::Malformed { origin: source.to_string() });
        };
        let bytes: [u8; KEY_BYTES] = decoded
            .as_slice()
            .try_into()
            .map_err(|_| SecretKeyError::WrongLength { origin: source.to_string(), len: decoded.len() })?;
        Ok(SecretKey { bytes, source: source.to_string() })
    }

    /// A key from raw bytes (tests, benchmarks).
    pub fn from_bytes(bytes: [u8; KEY_BYTES], source: &str) -> SecretKey {
        SecretKey { bytes, source: source.to_string() }
    }

    /// Where the key came from, for messages.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// A short public name of the key (16 hex digits of a hash of it), stored beside each
    /// sealed value so that a wrong key is told apart from a damaged value.
    pub fn id(&self) -> String {
        let mut hash = Sha256::new();
        hash.update(b"hostd secret key id\0");
        hash.update(self.bytes);
        hex::encode(&hash.finalize()[..8])
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(&Key::from(self.bytes))
    }

    /// Seals `plaintext` under a fresh random nonce, bound to `aad`.
    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Result<Sealed, SecretKeyError> {
        let nonce: [u8; NONCE_BYTES] = rand::random();
        let ciphertext = self
            .cipher()
            .encrypt(&XNonce::from(nonce), Payload { msg: plaintext, aad })
            .map_err(|_| SecretKeyError::CannotSeal { origin: self.source.clone() })?;
        Ok(Sealed { nonce, ciphertext })
    }

    /// The plaintext of a value [`SecretKey::seal`] made with this key and `aad`.
    pub fn open(&self, nonce: &[u8], ciphertext: &[u8], aad: &[u8]) -> Result<Vec<u8>, SecretKeyError> {
        let fail = || SecretKeyError::DoesNotOpen { origin: self.source.clone() };
        let nonce: [u8; NONCE_BYTES] = nonce.try_into().map_err(|_| fail())?;
        self.cipher().decrypt(&XNonce::from(nonce), Payload { msg: ciphertext, aad }).map_err(|_| fail())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    #[test]
    fn hex_and_base64_give_the_same_key() {
        let hex_key = SecretKey::parse(&format!("  {HEX}\n"), "test").unwrap();
        let bytes = hex::decode(HEX).unwrap();
        for engine in [base64::engine::general_purpose::STANDARD, base64::engine::general_purpose::URL_SAFE_NO_PAD] {
            let b64 = SecretKey::parse(&engine.encode(&bytes), "test").unwrap();
            assert_eq!(b64.id(), hex_key.id());
        }
        assert_eq!(hex_key.id().len(), 16);
    }

    #[test]
    fn bad_keys_are_refused_without_showing_them() {
        let e = SecretKey::parse("not a key at all!", "server.secret_key_env `K`").unwrap_err();
        assert!(matches!(e, SecretKeyError::Malformed { .. }), "{e}");
        assert!(e.to_string().starts_with("server.secret_key_env `K`: not a key") && !e.to_string().contains("at all"));
        let short = base64::engine::general_purpose::STANDARD.encode([7u8; 16]);
        let e = SecretKey::parse(&short, "k").unwrap_err();
        assert_eq!(e, SecretKeyError::WrongLength { origin: "k".into(), len: 16 });
        assert!(!e.to_string().contains(&short));
        assert!(SecretKey::parse("", "k").is_err());
        let key = SecretKey::parse(HEX, "k").unwrap();
        assert!(!format!("{key:?}").contains("0102"), "{key:?}");
    }

    #[test]
    fn seals_and_opens_bound_to_the_key_and_the_aad() {
        let key = SecretKey::parse(HEX, "k").unwrap();
        let a = key.seal(b"whsec_abc", b"acme/hook/1").unwrap();
        let b = key.seal(b"whsec_abc", b"acme/hook/1").unwrap();
        assert_ne!(a.nonce, b.nonce, "a nonce per value");
        assert!(!a.ciphertext.windows(9).any(|w| w == b"whsec_abc"));
        assert_eq!(key.open(&a.nonce, &a.ciphertext, b"acme/hook/1").unwrap(), b"whsec_abc");
        assert!(key.open(&a.nonce, &a.ciphertext, b"acme/hook/2").is_err(), "another row's AAD");
        let other = SecretKey::from_bytes([9; KEY_BYTES], "other");
        let e = other.open(&a.nonce, &a.ciphertext, b"acme/hook/1").unwrap_err();
        assert_eq!(e, SecretKeyError::DoesNotOpen { origin: "other".into() });
        assert!(key.open(&a.nonce[..3], &a.ciphertext, b"acme/hook/1").is_err());
    }
}
