//! `private_key_jwt` (RFC 7523 §3, OIDC Core §9): a client proves itself with a short-lived JWT
//! signed by its own private key, against the public keys registered in its `jwks`. No secret
//! is shared, and each assertion works once: its `jti` is remembered in the Store, by every
//! node, until the assertion expires.

use std::time::Duration;

use jsonwebtoken::Algorithm;
use lienthong_protocol::{PublicKeys, jws};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::state::Inner;
use crate::store::{Record, StoreError, keys};

/// The algorithms a client may sign with: asymmetric only.
const ALGORITHMS: [Algorithm; 4] = [
    Algorithm::ES256,
    Algorithm::RS256,
    Algorithm::PS256,
    Algorithm::EdDSA,
];

/// Clock skew tolerated between the client and the broker.
const LEEWAY_SECS: u64 = 30;

/// The longest-lived assertion accepted (its `jti` is kept this long).
const MAX_LIFETIME_SECS: u64 = 3600;

/// The replay cache's entry: the `jti` was used.
#[derive(Serialize, Deserialize)]
struct Used;

impl Record for Used {
    const KIND: &'static str = "used client assertion";
    const VERSION: u8 = 2;
    const JSON_VERSION: Option<u8> = Some(1);
}

/// Why an assertion was refused: for the log. The client only ever hears `invalid_client`.
#[derive(Debug, thiserror::Error)]
pub enum AssertionError {
    #[error("signature: {0}")]
    Signature(#[from] jws::JwsError),
    #[error("{0}")]
    Claims(&'static str),
    #[error("jti already used: a replayed assertion")]
    Replayed,
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

/// Verifies `assertion` as `client_id`'s, signed by one of its registered `keys`, and spends
/// its `jti`.
pub(crate) async fn verify(
    inner: &Inner,
    client_id: &str,
    keys: &PublicKeys,
    assertion: &str,
) -> Result<(), AssertionError> {
    let claims = keys.verify(&ALGORITHMS, assertion)?;
    let text = |name: &str| claims.get(name).and_then(Value::as_str);
    let number = |name: &str| claims.get(name).and_then(Value::as_u64);
    if text("iss") != Some(client_id) || text("sub") != Some(client_id) {
        return Err(AssertionError::Claims(
            "iss and sub must both be the client_id",
        ));
    }
    let token_endpoint = format!("{}/token", inner.issuer);
    let audience_ok = |aud: &str| aud == inner.issuer || aud == token_endpoint;
    let aud_ok = match claims.get("aud") {
        Some(Value::String(aud)) => audience_ok(aud),
        Some(Value::Array(auds)) => auds.iter().filter_map(Value::as_str).any(audience_ok),
        _ => false,
    };
    if !aud_ok {
        return Err(AssertionError::Claims(
            "aud must be the issuer or the token endpoint",
        ));
    }
    let now = inner.now();
    let Some(exp) = number("exp") else {
        return Err(AssertionError::Claims("exp is required"));
    };
    if exp + LEEWAY_SECS <= now {
        return Err(AssertionError::Claims("expired"));
    }
    if exp > now + MAX_LIFETIME_SECS + LEEWAY_SECS {
        return Err(AssertionError::Claims("exp is more than an hour away"));
    }
    if number("nbf").is_some_and(|nbf| nbf > now + LEEWAY_SECS)
        || number("iat").is_some_and(|iat| iat > now + LEEWAY_SECS)
    {
        return Err(AssertionError::Claims(
            "not valid yet (nbf or iat in the future)",
        ));
    }
    let jti = match text("jti") {
        Some(jti) if !jti.is_empty() && jti.len() <= 256 => jti,
        _ => {
            return Err(AssertionError::Claims(
                "jti is required (at most 256 characters)",
            ));
        }
    };
    let ttl = Duration::from_secs(exp + LEEWAY_SECS - now);
    let key = keys::client_assertion(client_id, jti);
    if inner.store.put_new(&key, &Used, ttl).await? {
        Ok(())
    } else {
        Err(AssertionError::Replayed)
    }
}
