//! One-time secrets (codes, state values, session ids) and the hashes under which they are stored.
//!
//! A secret handed to a browser or a client is never used as a storage key as it is: the store
//! sees only its SHA-256, so a dump of the store cannot be replayed.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use sha2::{Digest, Sha256};

/// A fresh random value of `bytes` bytes from the OS generator, base64url without padding.
/// 32 bytes (256 bits) is the default everywhere a value must be unguessable.
pub fn random_token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rngs::OsRng.fill_bytes(&mut buf);
    URL_SAFE_NO_PAD.encode(buf)
}

/// SHA-256 of `value`, base64url without padding: the storage key of a secret.
pub fn sha256_b64url(value: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(value.as_bytes()))
}

/// The `at_hash` / `c_hash` of OIDC Core §3.1.3.6: the left half of the SHA-256 of the token,
/// base64url. Valid for the SHA-256 based algorithms we sign with (ES256, RS256).
pub fn left_half_sha256(value: &str) -> String {
    let digest = Sha256::digest(value.as_bytes());
    URL_SAFE_NO_PAD.encode(&digest[..16])
}

/// Compares two secrets in time independent of where they first differ.
pub fn constant_time_eq(a: &str, b: &str) -> bool {
    let (a, b) = (Sha256::digest(a.as_bytes()), Sha256::digest(b.as_bytes()));
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
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
    fn at_hash_matches_the_oidc_example_shape() {
        // 16 bytes -> 22 base64url characters.
        assert_eq!(left_half_sha256("token").len(), 22);
        assert!(constant_time_eq("abc", "abc"));
        assert!(!constant_time_eq("abc", "abd"));
    }
}
