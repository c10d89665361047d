//! One-time secrets (codes, state values, session ids) and the hashes under which they are stored.
//!
//! A secret handed to a browser or a client is never used as a storage key as it is: the store
//! sees only its SHA-256, so a dump of the store cannot be replayed.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use subtle::ConstantTimeEq;

use crate::crypto::{random_bytes, sha256};

/// A secret from configuration (a client secret, a signing secret): used and compared, never
/// printed. `Debug` shows `Secret([redacted])`, so a config struct that derives `Debug` cannot
/// leak it into a log.
#[derive(Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for the one place that uses it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Self {
        Self::new(s)
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Self {
        Self(s)
    }
}

/// A fresh random value of `bytes` bytes from the OS generator, base64url without padding.
/// 32 bytes (256 bits) is the default everywhere a value must be unguessable.
pub fn random_token(bytes: usize) -> String {
    URL_SAFE_NO_PAD.encode(random_bytes(bytes))
}

/// Whether `b` is one of base64url's characters (RFC 4648 §5), the alphabet of every token
/// and digest here.
pub const fn is_base64url(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

/// SHA-256 of `value`, base64url without padding: the storage key of a secret.
pub fn sha256_b64url(value: &str) -> String {
    URL_SAFE_NO_PAD.encode(sha256(value.as_bytes()))
}

/// The `at_hash` / `c_hash` of OIDC Core §3.1.3.6: the left half of the SHA-256 of the token,
/// base64url. Valid for the SHA-256 based algorithms we sign with (ES256, RS256).
pub fn left_half_sha256(value: &str) -> String {
    URL_SAFE_NO_PAD.encode(&sha256(value.as_bytes())[..16])
}

/// Compares two secrets in time independent of where they first differ and of their lengths
/// (both are hashed first, so only equal-length digests are compared, by `subtle`).
pub fn constant_time_eq(a: &str, b: &str) -> bool {
    sha256(a.as_bytes()).ct_eq(&sha256(b.as_bytes())).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_distinct_and_url_safe() {
        let a = random_token(32);
        assert_eq!(a.len(), 43);
        assert_ne!(a, random_token(32));
        assert!(
            a.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
    }

    #[test]
    fn secrets_are_redacted_when_printed() {
        let s: Secret = serde_json::from_str("\"hunter22\"").unwrap();
        assert_eq!(s.expose(), "hunter22");
        assert_eq!(format!("{s:?}"), "Secret([redacted])");
    }

    #[test]
    fn at_hash_matches_the_oidc_example_shape() {
        // 16 bytes -> 22 base64url characters.
        assert_eq!(left_half_sha256("token").len(), 22);
        assert!(constant_time_eq("abc", "abc"));
        assert!(!constant_time_eq("abc", "abd"));
    }
}
