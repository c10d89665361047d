//! `POST /token`: a client redeems its code (RFC 6749 §4.1.3, OIDC Core §3.1.3).
//!
//! The code is taken from the store atomically, so it works once. A second presentation finds
//! the "spent" marker the first left behind and revokes the grant the first one produced
//! (RFC 6749 §4.1.2: "SHOULD revoke all tokens previously issued based on that code").

use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use lienthong_protocol::client_auth::AuthMethod;
use lienthong_protocol::secret::{left_half_sha256, random_token};
use lienthong_protocol::{ClientCredentials, OAuthError, OAuthErrorCode, TokenParams, pkce};
use serde_json::json;

use crate::access_token::{self, ADMIN_SCOPE, Grant, admin_audience, grant_key, userinfo_audience};
use crate::code::{CodeRecord, CodeSpent};
use crate::state::{Broker, Client, Inner};
use crate::store::keys;

pub async fn token(
    State(broker): State<Broker>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, OAuthError> {
    let inner = broker.inner();
    let form = TokenParams::parse(&body)?;
    let creds = ClientCredentials::from_request(
        &headers,
        form.client_id.as_deref(),
        form.client_secret.as_deref(),
    )?;
    let basic = creds.method == AuthMethod::ClientSecretBasic;
    let client = inner
        .clients
        .get(&creds.client_id)
        .ok_or_else(|| OAuthError::invalid_client("unknown client", basic))?;
    creds.check_secret(client.config.secret.expose())?;
    match form.grant_type.as_deref() {
        Some("authorization_code") => {}
        Some("client_credentials") => {
            return client_credentials(inner, client, form.scope.as_deref());
        }
        Some(_) => {
            return Err(OAuthError::new(
                OAuthErrorCode::UnsupportedGrantType,
                "only authorization_code",
            ));
        }
        None => return Err(OAuthError::invalid_request("grant_type is required")),
    }
    let code = form
        .code
        .as_deref()
        .ok_or_else(|| OAuthError::invalid_request("code is required"))?;
    let store_error = |e: crate::store::StoreError| {
        tracing::error!(error = %e, "store failure at the token endpoint");
        OAuthError::new(OAuthErrorCode::TemporarilyUnavailable, "try again shortly")
    };
    // The grant's id is drawn first so that the marker the code leaves names it from the very
    // moment the code is gone: a second redemption, however close, finds it.
    let jti = random_token(24);
    let lifetime = Duration::from_secs(inner.config.tokens.access_token_secs);
    let spent_key = keys::code_spent(code);
    let marker = CodeSpent {
        jti: jti.clone(),
        revoked: false,
    };
    let Some(record) = inner
        .store
        .take_leaving::<CodeRecord, _>(&keys::code(code), &spent_key, &marker, lifetime)
        .await
        .map_err(store_error)?
    else {
        if let Some(mut spent) = inner
            .store
            .get::<CodeSpent>(&spent_key)
            .await
            .map_err(store_error)?
        {
            // Mark first, then delete: the first redemption re-reads the mark after writing its
            // grant, so whichever order the two run in, the grant does not survive.
            spent.revoked = true;
            inner
                .store
                .put(&spent_key, &spent, lifetime)
                .await
                .map_err(store_error)?;
            inner
                .store
                .delete(&grant_key(&spent.jti))
                .await
                .map_err(store_error)?;
            tracing::warn!(client = %client.config.id, "authorization code reused: its tokens are revoked");
        }
        return Err(OAuthError::invalid_grant(
            "the code is unknown, expired or already used",
        ));
    };
    if record.client_id != client.config.id {
        return Err(OAuthError::invalid_grant(
            "the code was issued to another client",
        ));
    }
    if form.redirect_uri.as_deref() != Some(record.redirect_uri.as_str()) {
        return Err(OAuthError::invalid_grant(
            "redirect_uri does not match the authorization request",
        ));
    }
    pkce::verify(form.code_verifier.as_deref(), &record.code_challenge)
        .map_err(|e| OAuthError::invalid_grant(e.to_string()))?;

    let now = inner.now();
    let tokens = &inner.config.tokens;
    let access_claims = json!({
        "iss": inner.issuer,
        "aud": userinfo_audience(inner),
        "sub": record.sub,
        "client_id": client.config.id,
        "iat": now,
        "exp": now + tokens.access_token_secs,
        "jti": jti,
        "scope": record.scopes.join(" "),
        "auth_time": record.auth_time,
        "acr": record.acr,
        "sid": record.sid,
    });
    let sign_error = |e: lienthong_protocol::KeyError| OAuthError::server_error(e.to_string());
    let access_token = access_token::sign(inner, &access_claims).map_err(sign_error)?;
    let mut id_claims = record.claims.clone();
    id_claims.extend([
        ("iss".to_owned(), json!(inner.issuer)),
        ("sub".to_owned(), json!(record.sub)),
        ("aud".to_owned(), json!(client.config.id)),
        ("iat".to_owned(), json!(now)),
        ("exp".to_owned(), json!(now + tokens.id_token_secs)),
        ("auth_time".to_owned(), json!(record.auth_time)),
        ("acr".to_owned(), json!(record.acr)),
        ("sid".to_owned(), json!(record.sid)),
        ("at_hash".to_owned(), json!(left_half_sha256(&access_token))),
    ]);
    if !record.amr.is_empty() {
        id_claims.insert("amr".to_owned(), json!(record.amr));
    }
    if let Some(nonce) = &record.nonce {
        id_claims.insert("nonce".to_owned(), json!(nonce));
    }
    let id_token = inner
        .keys
        .sign(
            client.config.id_token_signed_response_alg.jwt(),
            "JWT",
            &id_claims,
        )
        .map_err(sign_error)?;

    let grant = Grant {
        client_id: client.config.id.clone(),
        sub: record.sub,
        scopes: record.scopes.clone(),
        claims: record.claims,
    };
    inner
        .store
        .put(&grant_key(&jti), &grant, lifetime)
        .await
        .map_err(store_error)?;
    // A reuse of the code may have come between taking it and writing the grant.
    let revoked = inner
        .store
        .get::<CodeSpent>(&spent_key)
        .await
        .map_err(store_error)?
        .is_none_or(|s| s.revoked);
    if revoked {
        inner
            .store
            .delete(&grant_key(&jti))
            .await
            .map_err(store_error)?;
        tracing::warn!(client = %client.config.id, "authorization code reused while being redeemed: its tokens are revoked");
        return Err(OAuthError::invalid_grant(
            "the code is unknown, expired or already used",
        ));
    }
    tracing::info!(client = %client.config.id, "tokens issued");

    let body = json!({
        "access_token": access_token,
        "token_type": "Bearer",
        "expires_in": tokens.access_token_secs,
        "id_token": id_token,
        "scope": record.scopes.join(" "),
    });
    let mut response = Json(body).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
        .headers_mut()
        .insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    Ok(response)
}

/// RFC 6749 §4.4: a client's own access token, for the admin API only.
fn client_credentials(
    inner: &Inner,
    client: &Client,
    scope: Option<&str>,
) -> Result<Response, OAuthError> {
    if client.config.admin_realms.is_empty() {
        return Err(OAuthError::new(
            OAuthErrorCode::UnauthorizedClient,
            "this client has no admin access",
        ));
    }
    let scope = scope.unwrap_or(ADMIN_SCOPE);
    if scope.split(' ').any(|s| s != ADMIN_SCOPE) {
        return Err(OAuthError::new(
            OAuthErrorCode::InvalidScope,
            format!("only {ADMIN_SCOPE} can be granted to a client"),
        ));
    }
    let now = inner.now();
    let lifetime = inner.config.tokens.access_token_secs;
    let claims = json!({
        "iss": inner.issuer,
        "aud": admin_audience(inner),
        "sub": client.config.id,
        "client_id": client.config.id,
        "iat": now,
        "exp": now + lifetime,
        "jti": random_token(24),
        "scope": ADMIN_SCOPE,
    });
    let token =
        access_token::sign(inner, &claims).map_err(|e| OAuthError::server_error(e.to_string()))?;
    tracing::info!(client = %client.config.id, "admin access token issued");
    let body = json!({ "access_token": token, "token_type": "Bearer", "expires_in": lifetime, "scope": ADMIN_SCOPE });
    let mut response = Json(body).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}
