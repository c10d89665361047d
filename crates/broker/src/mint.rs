//! Signing the tokens of one grant: an RFC 9068 access token and an ID token, for a code as it
//! is issued ([`crate::code`]) or redeemed in its earlier form, and for a refresh.

use lienthong_protocol::{OAuthError, token_digest_and_at_hash};
use serde_json::{Map, Value, json};

use crate::access_token::{self, Grant, userinfo_audience};
use crate::state::{Client, Inner};

/// What one issue of tokens says about the citizen.
pub(crate) struct Issue<'a> {
    pub sub: &'a str,
    pub scopes: &'a [String],
    pub claims: &'a Map<String, Value>,
    pub acr: &'a str,
    pub amr: &'a [String],
    pub auth_time: u64,
    pub sid: &'a str,
    pub nonce: Option<&'a str>,
}

/// The tokens of one issue, and the grant the access token is recognised by.
pub(crate) struct Signed {
    pub access_token: String,
    pub id_token: String,
    pub grant: Grant,
}

/// Signs an RFC 9068 access token (grant `jti`) and an ID token for `client`, issued at `now`.
pub(crate) fn mint(
    inner: &Inner,
    client: &Client,
    issue: &Issue<'_>,
    jti: &str,
    now: u64,
) -> Result<Signed, OAuthError> {
    let tokens = &inner.config.tokens;
    let access_claims = json!({
        "iss": inner.issuer,
        "aud": userinfo_audience(inner),
        "sub": issue.sub,
        "client_id": client.config.id,
        "iat": now,
        "exp": now + tokens.access_token_secs,
        "jti": jti,
        "scope": issue.scopes.join(" "),
        "auth_time": issue.auth_time,
        "acr": issue.acr,
        "sid": issue.sid,
    });
    let sign_error = |e: lienthong_protocol::KeyError| OAuthError::server_error(e.to_string());
    let access_token = access_token::sign(inner, &access_claims).map_err(sign_error)?;
    // One SHA-256 of the access token: its grant's digest and the ID token's `at_hash`.
    let (digest, at_hash) = token_digest_and_at_hash(&access_token);
    let mut id_claims = issue.claims.clone();
    id_claims.extend([
        ("iss".to_owned(), json!(inner.issuer)),
        ("sub".to_owned(), json!(issue.sub)),
        ("aud".to_owned(), json!(client.config.id)),
        ("iat".to_owned(), json!(now)),
        ("exp".to_owned(), json!(now + tokens.id_token_secs)),
        ("auth_time".to_owned(), json!(issue.auth_time)),
        ("acr".to_owned(), json!(issue.acr)),
        ("sid".to_owned(), json!(issue.sid)),
        ("at_hash".to_owned(), json!(at_hash)),
    ]);
    if !issue.amr.is_empty() {
        id_claims.insert("amr".to_owned(), json!(issue.amr));
    }
    if let Some(nonce) = issue.nonce {
        id_claims.insert("nonce".to_owned(), json!(nonce));
    }
    let id_token = inner
        .keys
        .current()
        .sign(
            client.config.id_token_signed_response_alg.jwt(),
            "JWT",
            &id_claims,
        )
        .map_err(sign_error)?;
    let grant = Grant {
        client_id: client.config.id.clone(),
        sub: issue.sub.to_owned(),
        scopes: issue.scopes.to_vec(),
        claims: issue.claims.clone(),
        digest: Some(digest),
    };
    Ok(Signed {
        access_token,
        id_token,
        grant,
    })
}
