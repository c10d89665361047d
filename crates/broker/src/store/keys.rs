//! Every Store key, built here and nowhere else.
//!
//! Secrets handed to browsers and clients (login state, session cookie, consent id, code) never
//! appear in a key: the key holds their SHA-256. Keys that one atomic operation touches together
//! share a Redis Cluster hash tag — the part between `{` and `}` — so they live in one slot:
//! a code and its spent-marker, say. Everything starts with `lt:` so that a Redis shared with
//! other software can be told apart.

use lienthong_protocol::secret::sha256_b64url;

/// A login waiting for the citizen to come back from the national IdP, by its `state`.
pub fn pending_login(state: &str) -> String {
    format!("lt:pending:{{{}}}", sha256_b64url(state))
}

/// An SSO session, by its public `sid` (the browser's cookie is `<sid>.<secret>`, and the
/// record holds the secret's digest). Its client set shares its slot.
pub fn session(sid: &str) -> String {
    format!("lt:session:{{{sid}}}")
}

/// An SSO session of a release before the sixth session of 12-05, by the browser's cookie (then
/// a secret alone): read, no longer written.
pub fn sso_session(cookie: &str) -> String {
    format!("lt:sso:{{{}}}", sha256_b64url(cookie))
}

/// The clients that took part in a session (a set, added to atomically), by `sid`.
pub fn session_clients(sid: &str) -> String {
    format!("lt:sso-clients:{{{sid}}}")
}

/// The key of a session of an earlier release ([`sso_session`]), by its `sid`: the index that
/// release wrote beside each session for logout by `sid`. Read, no longer written.
pub fn session_by_sid(sid: &str) -> String {
    format!("lt:sid:{{{sid}}}")
}

/// A consent question waiting for the citizen's answer, by its id.
pub fn pending_consent(consent_id: &str) -> String {
    format!("lt:consent-pending:{{{}}}", sha256_b64url(consent_id))
}

/// A client assertion's `jti`, spent (the replay cache of `private_key_jwt`).
pub fn client_assertion(client_id: &str, jti: &str) -> String {
    format!(
        "lt:assertion:{{{}}}",
        sha256_b64url(&format!("{client_id}\u{0}{jti}"))
    )
}

/// An authorization code's record, and the marker its redemption leaves: one hash tag, so one
/// script can take the first and write the second.
pub fn code(code: &str) -> String {
    format!("lt:code:{{{}}}", sha256_b64url(code))
}

pub fn code_spent(code: &str) -> String {
    format!("lt:code-spent:{{{}}}", sha256_b64url(code))
}

/// A sign-out waiting for the national IdP to end its own session, by its `state`.
pub fn pending_logout(state: &str) -> String {
    format!("lt:logout:{{{}}}", sha256_b64url(state))
}

/// What an access token grants, by its `jti`.
pub fn grant(jti: &str) -> String {
    format!("lt:grant:{{{jti}}}")
}

/// A rate-limit or attempt counter: `what` (an endpoint, say) and `who` (a client id or a
/// source address, hashed so no address is stored as it is).
pub fn counter(what: &str, who: &str) -> String {
    format!("lt:count:{what}:{{{}}}", sha256_b64url(who))
}

/// A refresh token's record, and the marker its use leaves (one hash tag, like a code's).
pub fn refresh_token(token: &str) -> String {
    format!("lt:refresh:{{{}}}", sha256_b64url(token))
}

/// What a used refresh token of an earlier release leaves, by which its reuse is known (this
/// release's tokens bear the broker's tag instead).
pub fn refresh_spent(token: &str) -> String {
    format!("lt:refresh-spent:{{{}}}", sha256_b64url(token))
}

/// The family of a refresh token issued by a release before the family travelled in the token
/// (plain: a random id): read, no longer written, so a reuse of such a token still finds what
/// to revoke.
pub fn refresh_family(token: &str) -> String {
    format!("lt:refresh-family:{{{}}}", sha256_b64url(token))
}

/// A refresh-token family's record, by family id: its live token's tag and its grants.
pub fn family_record(family: &str) -> String {
    format!("lt:refresh-family-record:{{{family}}}")
}

/// The keys of a refresh-token family's grants that may still be live (and before the fifth
/// session of 12-05, of its refresh tokens), by family id: written by earlier releases, whose
/// families carried no record of their own; read at a revocation until they expire.
pub fn token_family(family: &str) -> String {
    format!("lt:family:{{{family}}}")
}

/// Set when a family is revoked, so a rotation racing the revocation sees it.
pub fn family_revoked(family: &str) -> String {
    format!("lt:family-revoked:{{{family}}}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot_tag(key: &str) -> &str {
        let open = key.find('{').unwrap();
        let close = open + key[open..].find('}').unwrap();
        &key[open + 1..close]
    }

    #[test]
    fn a_code_and_its_marker_share_a_slot_and_no_secret_is_in_a_key() {
        let (a, b) = (code("secret-code"), code_spent("secret-code"));
        assert_ne!(a, b);
        assert_eq!(slot_tag(&a), slot_tag(&b));
        assert!(!a.contains("secret-code"));
        assert!(!sso_session("cookie-value").contains("cookie-value"));
        assert_eq!(slot_tag(&session("sid")), slot_tag(&session_clients("sid")));
    }
}
