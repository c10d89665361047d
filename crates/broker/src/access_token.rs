//! The broker's access tokens (RFC 9068 `at+jwt`, ES256) and the one rule that accepts them.
//!
//! Two audiences use them: `{issuer}/userinfo` (tokens from the authorization code grant, each
//! backed by a [`Grant`] in the Store, whose deletion revokes the token) and `{issuer}/admin`
//! (the client_credentials grant, scope [`ADMIN_SCOPE`]).

use jsonwebtoken::Algorithm;
use lienthong_protocol::{Expected, KeyError};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::state::Inner;
use crate::store::{Record, keys};

/// The scope of the admin API.
pub const ADMIN_SCOPE: &str = "accounts:admin";

pub(crate) fn userinfo_audience(inner: &Inner) -> String {
    format!("{}/userinfo", inner.issuer)
}

pub(crate) fn admin_audience(inner: &Inner) -> String {
    format!("{}/admin", inner.issuer)
}

/// What an access token grants, looked up by its `jti`. Deleting it revokes the token.
#[derive(Debug, Serialize, Deserialize)]
pub struct Grant {
    pub client_id: String,
    pub sub: String,
    pub scopes: Vec<String>,
    pub claims: Map<String, Value>,
}

impl Record for Grant {
    const KIND: &'static str = "grant";
    const VERSION: u8 = 1;
}

pub(crate) fn grant_key(jti: &str) -> String {
    keys::grant(jti)
}

/// Signs an access token with the broker's ES256 key.
pub(crate) fn sign(inner: &Inner, claims: &Value) -> Result<String, KeyError> {
    inner
        .keys
        .current()
        .sign(Algorithm::ES256, "at+jwt", claims)
}

/// The expiry every access token carries, read beside the caller's own claims.
#[derive(Deserialize)]
struct Expiring<T> {
    exp: u64,
    #[serde(flatten)]
    claims: T,
}

/// The access-token rule, in one place: one of our own `at+jwt` tokens, signed by our key, for
/// `audience`, unexpired by the broker's clock (no leeway). The error says why, for the
/// `WWW-Authenticate` header.
pub(crate) fn verify<T: DeserializeOwned>(
    inner: &Inner,
    token: &str,
    audience: &str,
) -> Result<T, &'static str> {
    verify_with_expiry(inner, token, audience).map(|(claims, _)| claims)
}

/// [`verify`], with the token's `exp` beside the claims (which must not ask for `exp` again).
pub(crate) fn verify_with_expiry<T: DeserializeOwned>(
    inner: &Inner,
    token: &str,
    audience: &str,
) -> Result<(T, u64), &'static str> {
    let expected = Expected {
        issuer: &inner.issuer,
        audience: Some(audience),
        typ: Some("at+jwt"),
    };
    // Expiry is checked below against the broker's clock; `exp` is required by `Expiring`.
    let token: Expiring<T> =
        inner
            .keys
            .current()
            .verify(token, &expected)
            .map_err(|e| match e {
                KeyError::Malformed(_) => "malformed token",
                KeyError::Type(_) => "not an access token",
                _ => "invalid or expired token",
            })?;
    if token.exp <= inner.now() {
        return Err("invalid or expired token");
    }
    Ok((token.claims, token.exp))
}
