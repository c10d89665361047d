//! The account id a downstream system sees for a citizen, until it has an account directory of
//! its own: an HMAC of the citizen's stable upstream identity under a server secret, separate per
//! account realm. Stable across logins and restarts (same secret), different in every realm, and
//! not reversible to the citizen's identity without the secret.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// `realm`, `issuer` and `subject` are joined with NUL separators so no two triples collide.
pub fn derived_account_id(secret: &[u8], realm: &str, issuer: &str, subject: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    for part in [realm, issuer, subject] {
        mac.update(part.as_bytes());
        mac.update(&[0]);
    }
    URL_SAFE_NO_PAD.encode(&mac.finalize().into_bytes()[..16])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_per_realm_and_distinct_across_realms() {
        let a = derived_account_id(b"k", "portal", "https://idp", "s1");
        assert_eq!(a, derived_account_id(b"k", "portal", "https://idp", "s1"));
        assert_ne!(a, derived_account_id(b"k", "health", "https://idp", "s1"));
        assert_ne!(a, derived_account_id(b"k2", "portal", "https://idp", "s1"));
        assert_ne!(
            derived_account_id(b"k", "a", "bc", "d"),
            derived_account_id(b"k", "ab", "c", "d")
        );
        assert_eq!(a.len(), 22);
    }
}
