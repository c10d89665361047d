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
use crate::store::{Record, StoreError, keys};

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
    #[serde(with = "crate::store::record::json_map")]
    pub claims: Map<String, Value>,
    /// The token's [`lienthong_protocol::token_digest`], by which it is recognised without
    /// checking its signature again. Absent from grants written before it was kept: their tokens
    /// are checked by signature.
    pub digest: Option<String>,
}

impl Record for Grant {
    const KIND: &'static str = "grant";
    const VERSION: u8 = 2;
    const JSON_VERSION: Option<u8> = Some(1);
}

pub fn grant_key(jti: &str) -> String {
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

/// What an access token of ours says besides our signature: our issuer, `audience`, `at+jwt`.
fn ours<'a>(inner: &'a Inner, audience: &'a str) -> Expected<'a> {
    Expected {
        issuer: &inner.issuer,
        audience: Some(audience),
        typ: Some("at+jwt"),
    }
}

fn reason(e: KeyError) -> &'static str {
    match e {
        KeyError::Malformed(_) => "malformed token",
        KeyError::Type(_) => "not an access token",
        _ => "invalid or expired token",
    }
}

/// The access-token rule, in one place: one of our own `at+jwt` tokens, signed by our key, for
/// `audience`, unexpired by the broker's clock (no leeway). The error says why, for the
/// `WWW-Authenticate` header.
pub(crate) fn verify<T: DeserializeOwned>(
    inner: &Inner,
    token: &str,
    audience: &str,
) -> Result<T, &'static str> {
    let expected = ours(inner, audience);
    // Expiry is checked below against the broker's clock; `exp` is required by `Expiring`.
    let token: Expiring<T> = inner
        .keys
        .current()
        .verify(token, &expected)
        .map_err(reason)?;
    if token.exp <= inner.now() {
        return Err("invalid or expired token");
    }
    Ok(token.claims)
}

/// The claims of an access token from the authorization code or refresh grant.
#[derive(Debug, Deserialize)]
pub(crate) struct AccessClaims {
    pub jti: String,
    pub sub: String,
    pub client_id: String,
    pub scope: String,
    pub iat: u64,
    pub exp: u64,
    pub acr: Option<String>,
    pub auth_time: Option<u64>,
    pub sid: Option<String>,
}

/// Why [`granted`] has no answer.
pub(crate) enum Refusal {
    /// Not a valid access token for userinfo; why, for the `WWW-Authenticate` header.
    Invalid(&'static str),
    /// The Store did not answer.
    Store(StoreError),
}

/// [`verify`]'s rule for the tokens backed by a [`Grant`] (audience `{issuer}/userinfo`): the
/// claims and the grant, or `None` when the grant is gone (revoked, or run out with the token).
/// The grant is read by the `jti` the token states, and a token recorded in it (its digest) is
/// that very token: its signature, checked when we made it, is not checked again — a P-256
/// verification, most of a userinfo request's CPU (docs/performance-log.md). Any other token must
/// carry our signature.
pub(crate) async fn granted(
    inner: &Inner,
    token: &str,
) -> Result<Option<(AccessClaims, Grant)>, Refusal> {
    let audience = userinfo_audience(inner);
    let expected = ours(inner, &audience);
    let keys = inner.keys.current();
    let opened = keys
        .open::<AccessClaims>(token, &expected)
        .map_err(|e| Refusal::Invalid(reason(e)))?;
    if opened.untrusted().exp <= inner.now() {
        return Err(Refusal::Invalid("invalid or expired token"));
    }
    let grant = inner
        .store
        .get::<Grant>(&grant_key(&opened.untrusted().jti))
        .await
        .map_err(Refusal::Store)?;
    let claims = opened
        .trust(grant.as_ref().and_then(|g| g.digest.as_deref()))
        .map_err(|e| Refusal::Invalid(reason(e)))?;
    Ok(grant
        .filter(|g| g.sub == claims.sub)
        .map(|grant| (claims, grant)))
}
