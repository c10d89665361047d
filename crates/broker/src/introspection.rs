//! What a client may ask about, or end, of the tokens it holds: introspection (RFC 7662) and
//! revocation (RFC 7009). Both authenticate the client as the token endpoint does, and both
//! answer only about the client's own tokens: another client's token is "not active" to it,
//! and its revocation a no-op, so neither reveals anything about tokens it does not hold.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use lienthong_protocol::{OAuthError, OAuthErrorCode, TokenParams};
use serde_json::{Value, json};

use crate::access_token::{self, Refusal, grant_key, userinfo_audience};
use crate::refresh::{self, store_error};
use crate::state::{Broker, Client, Inner};
use crate::token::{authenticate, no_store};

fn token_param(form: &TokenParams) -> Result<&str, OAuthError> {
    form.token
        .as_deref()
        .ok_or_else(|| OAuthError::invalid_request("token is required"))
}

/// Tries the token as one of our access tokens (unexpired, grant still there), then as a
/// refresh token; `None` when it is neither, or not this client's.
async fn active(inner: &Inner, client: &Client, token: &str) -> Result<Option<Value>, OAuthError> {
    match access_token::granted(inner, token).await {
        Ok(Some((c, _))) if c.client_id == client.config.id => {
            return Ok(Some(json!({
                "active": true,
                "token_type": "Bearer",
                "scope": c.scope,
                "client_id": c.client_id,
                "sub": c.sub,
                "iss": inner.issuer,
                "aud": userinfo_audience(inner),
                "iat": c.iat,
                "exp": c.exp,
                "jti": c.jti,
                "acr": c.acr,
                "auth_time": c.auth_time,
                "sid": c.sid,
            })));
        }
        Ok(_) => return Ok(None),
        Err(Refusal::Store(e)) => return Err(store_error(e)),
        // Not an access token: perhaps a refresh token.
        Err(Refusal::Invalid(_)) => {}
    }
    match refresh::live(inner, client, token)
        .await
        .map_err(store_error)?
    {
        Some(r) => Ok(Some(json!({
            "active": true,
            "token_type": "refresh_token",
            "scope": r.scopes.join(" "),
            "client_id": r.client_id,
            "sub": r.sub,
            "iss": inner.issuer,
            "exp": r.expires_at,
            "acr": r.acr,
            "auth_time": r.auth_time,
            "sid": r.sid,
        }))),
        None => Ok(None),
    }
}

/// `POST /introspect` (RFC 7662).
pub async fn introspect(
    State(broker): State<Broker>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, OAuthError> {
    let inner = broker.inner();
    let form = TokenParams::parse(&body)?;
    let client = authenticate(inner, &headers, &form).await?;
    let answer = active(inner, client, token_param(&form)?)
        .await?
        .unwrap_or_else(|| json!({ "active": false }));
    Ok(no_store(answer))
}

/// `POST /revoke` (RFC 7009): a refresh token ends its whole family (every token issued from
/// the same sign-in); an access token ends its grant. Unknown tokens are not an error.
pub async fn revoke(
    State(broker): State<Broker>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, OAuthError> {
    let inner = broker.inner();
    let form = TokenParams::parse(&body)?;
    let client = authenticate(inner, &headers, &form).await?;
    let token = token_param(&form)?;
    match form.token_type_hint.as_deref() {
        None | Some("access_token") | Some("refresh_token") => {}
        Some(_) => {
            return Err(OAuthError::new(
                OAuthErrorCode::InvalidRequest,
                "unsupported_token_type: use access_token or refresh_token",
            ));
        }
    }
    let refresh = refresh::live(inner, client, token)
        .await
        .map_err(store_error)?;
    if let Some(r) = refresh {
        refresh::revoke_family(inner, &r.family, None)
            .await
            .map_err(store_error)?;
        tracing::info!(client = %client.config.id, "refresh token revoked with its family");
    } else if let Ok(Some((c, _))) = access_token::granted(inner, token).await
        && c.client_id == client.config.id
    {
        inner
            .store
            .delete(&grant_key(&c.jti))
            .await
            .map_err(store_error)?;
        tracing::info!(client = %client.config.id, "access token revoked");
    }
    Ok((StatusCode::OK, [("cache-control", "no-store")]).into_response())
}
