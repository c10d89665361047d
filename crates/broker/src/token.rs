//! `POST /token`: a client redeems its code (RFC 6749 §4.1.3, OIDC Core §3.1.3), refreshes
//! (RFC 6749 §6, see [`crate::refresh`]), or takes an admin token (client_credentials, §4.4).
//!
//! A code is taken from the Store atomically, and leaves a marker naming the grant it produced,
//! so it works once; a second presentation revokes that grant and its refresh-token family
//! (RFC 6749 §4.1.2: "SHOULD revoke all tokens previously issued based on that code"). The
//! tokens were signed, and their grant written, when the code was issued ([`crate::code`]):
//! a redemption is that one take.

use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use lienthong_protocol::client_auth::AuthMethod;
use lienthong_protocol::secret::random_token;
use lienthong_protocol::{ClientCredentials, OAuthError, OAuthErrorCode, TokenParams, pkce};
use serde_json::{Value, json};

use crate::access_token::{self, ADMIN_SCOPE, admin_audience, grant_key};
use crate::client_assertion;
use crate::code::{self, CodeRecord, CodeSpent, MintedCode};
use crate::config::ClientAuthMethod;
use crate::identity;
use crate::mint::{Issue, Signed, mint};
use crate::refresh::{self, store_error};
use crate::state::{Broker, Client, Inner};
use crate::store::{Sealer, StoreError, keys};

/// Compared against when the client id is unknown (it matches no presented secret that
/// matters: the answer is a refusal either way).
const UNKNOWN_CLIENT_SECRET: &str = "\u{0}no client has this secret\u{0}";

/// The client a token-endpoint request (or introspection, or revocation) authenticates as, by
/// the one method it is registered for.
pub(crate) async fn authenticate<'a>(
    inner: &'a Inner,
    headers: &HeaderMap,
    form: &TokenParams,
) -> Result<&'a Client, OAuthError> {
    let creds = ClientCredentials::from_token_request(headers, form)?;
    let basic = creds.method == AuthMethod::ClientSecretBasic;
    // One answer for an unknown client, a wrong secret, a bad assertion and the wrong method,
    // so client ids cannot be probed; a secret comparison runs either way, against a stand-in
    // for an unknown client.
    let refused = || OAuthError::invalid_client("client authentication failed", basic);
    let registered = inner.clients.get(&creds.client_id);
    if let Some(client) = registered
        && client.config.token_endpoint_auth_method == ClientAuthMethod::PrivateKeyJwt
    {
        let (Some(keys), Some(assertion)) = (&client.public_keys, &creds.assertion) else {
            return Err(refused());
        };
        return match client_assertion::verify(inner, &client.config.id, keys, assertion).await {
            Ok(()) => Ok(client),
            Err(e) => {
                tracing::warn!(client = %client.config.id, error = %e, "client assertion refused");
                Err(refused())
            }
        };
    }
    let secret = registered
        .and_then(|c| c.config.secret.as_ref())
        .map_or(UNKNOWN_CLIENT_SECRET, |s| s.expose());
    match (registered, creds.check_secret(secret)) {
        (Some(client), Ok(())) => Ok(client),
        _ => Err(refused()),
    }
}

/// A JSON answer that no cache keeps (RFC 6749 §5.1).
pub(crate) fn no_store(body: Value) -> Response {
    let mut response = Json(body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

pub async fn token(
    State(broker): State<Broker>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, OAuthError> {
    let inner = broker.inner();
    let form = TokenParams::parse(&body)?;
    let client = authenticate(inner, &headers, &form).await?;
    let per_client = inner.config.limits.token_per_client_per_minute;
    if !crate::limits::allow(inner, "token-client", &client.config.id, per_client) {
        tracing::warn!(client = %client.config.id, "rate limit reached for a client");
        return Ok(crate::limits::client_error());
    }
    match form.grant_type.as_deref() {
        Some("authorization_code") => authorization_code(inner, client, &form).await,
        Some("refresh_token") => refresh_token(inner, client, &form).await,
        Some("client_credentials") => client_credentials(inner, client, form.scope.as_deref()),
        Some(_) => Err(OAuthError::new(
            OAuthErrorCode::UnsupportedGrantType,
            "authorization_code, refresh_token or client_credentials",
        )),
        None => Err(OAuthError::invalid_request("grant_type is required")),
    }
}

/// A code taken from the Store, in either form.
enum Taken {
    Minted(MintedCode),
    Earlier(Box<CodeRecord>),
}

async fn authorization_code(
    inner: &Inner,
    client: &Client,
    form: &TokenParams,
) -> Result<Response, OAuthError> {
    let code = form
        .code
        .as_deref()
        .ok_or_else(|| OAuthError::invalid_request("code is required"))?;
    // The marker the code leaves names its grant from the very moment the code is gone: a
    // second redemption, however close, finds it.
    let jti = code::grant_id(inner.store.sealer(), code);
    let lifetime = Duration::from_secs(inner.config.tokens.access_token_secs);
    let spent_key = keys::code_spent(code);
    let marker = CodeSpent {
        jti: jti.clone(),
        revoked: false,
        client_id: client.config.id.clone(),
    };
    let code_key = keys::code(code);
    // A code's tokens were written to live only as long as the code: taken, it keeps them on.
    let family = keys::family_record(&code::family_id(inner.store.sealer(), code));
    let keep = [
        (grant_key(&jti), lifetime),
        (family, refresh::lifetime(inner)),
    ];
    let taken = inner
        .store
        .take_leaving_touching_raw(&code_key, &spent_key, &marker, lifetime, &keep)
        .await
        .map_err(store_error)?;
    let sealer = inner.store.sealer();
    let taken = match taken {
        Some(bytes) if Sealer::holds::<MintedCode>(&bytes) => sealer
            .decode::<MintedCode>(&code_key, Some(bytes))
            .map(Taken::Minted),
        bytes => sealer
            .decode::<CodeRecord>(&code_key, bytes)
            .map(|r| Taken::Earlier(Box::new(r))),
    };
    let Some(taken) = taken else {
        // A second presentation by the client the code belongs to revokes what the first
        // produced; another client presenting a stolen code is only refused (it must not be
        // able to revoke the rightful client's tokens).
        if let Some(mut spent) = inner
            .store
            .get::<CodeSpent>(&spent_key)
            .await
            .map_err(store_error)?
            .filter(|s| s.client_id == client.config.id)
        {
            // Mark first, then delete: the first redemption of an earlier-form code re-reads
            // the mark after writing its grant, so whichever order the two run in, the grant
            // does not survive.
            spent.revoked = true;
            inner
                .store
                .put(&spent_key, &spent, lifetime)
                .await
                .map_err(store_error)?;
            revoke_minted(inner, code, &spent.jti)
                .await
                .map_err(store_error)?;
            tracing::warn!(client = %client.config.id, "authorization code reused: its tokens are revoked");
        }
        return Err(OAuthError::invalid_grant(
            "the code is unknown, expired or already used",
        ));
    };
    let (client_id, redirect_uri, challenge) = match &taken {
        Taken::Minted(m) => (&m.client_id, &m.redirect_uri, &m.code_challenge),
        Taken::Earlier(r) => (&r.client_id, &r.redirect_uri, &r.code_challenge),
    };
    let refused = if *client_id != client.config.id {
        Some(OAuthError::invalid_grant(
            "the code was issued to another client",
        ))
    } else if form.redirect_uri.as_deref() != Some(redirect_uri.as_str()) {
        Some(OAuthError::invalid_grant(
            "redirect_uri does not match the authorization request",
        ))
    } else {
        pkce::verify(form.code_verifier.as_deref(), challenge)
            .err()
            .map(|e| OAuthError::invalid_grant(e.to_string()))
    };
    match taken {
        Taken::Minted(m) => {
            if let Some(refused) = refused {
                // The code is spent: the tokens signed for it are never handed over.
                revoke_minted(inner, code, &jti)
                    .await
                    .map_err(store_error)?;
                return Err(refused);
            }
            tracing::info!(client = %client.config.id, refresh = m.refresh_token.is_some(), "tokens issued");
            let expires_in = m.expires_at.saturating_sub(inner.now());
            Ok(respond(
                &m.access_token,
                &m.id_token,
                m.refresh_token,
                &m.scopes,
                expires_in,
            ))
        }
        Taken::Earlier(record) => match refused {
            Some(refused) => Err(refused),
            None => redeem_earlier(inner, client, code, &record, &jti, &spent_key).await,
        },
    }
}

/// Revokes the tokens signed for `code` (grant `jti`, and its refresh-token family, if any).
async fn revoke_minted(inner: &Inner, code: &str, jti: &str) -> Result<(), StoreError> {
    inner.store.delete(&grant_key(jti)).await?;
    refresh::revoke_family(inner, &code::family_id(inner.store.sealer(), code), None).await
}

/// A code of the earlier form: its tokens are signed and written now, and its marker is read
/// back once they are, for a reuse that came between the take and the writes.
async fn redeem_earlier(
    inner: &Inner,
    client: &Client,
    code: &str,
    record: &CodeRecord,
    jti: &str,
    spent_key: &str,
) -> Result<Response, OAuthError> {
    let mut batch = inner.store.batch();
    let family = code::family_id(inner.store.sealer(), code);
    let minted = code::mint_for(inner, client, record, jti, &family, None, &mut batch)?;
    let revoked = inner
        .store
        .write_then_get::<CodeSpent>(batch, spent_key)
        .await
        .map_err(store_error)?
        .is_none_or(|s| s.revoked);
    if revoked {
        revoke_minted(inner, code, jti).await.map_err(store_error)?;
        tracing::warn!(client = %client.config.id, "authorization code reused while being redeemed: its tokens are revoked");
        return Err(OAuthError::invalid_grant(
            "the code is unknown, expired or already used",
        ));
    }
    tracing::info!(client = %client.config.id, refresh = minted.refresh_token.is_some(), "tokens issued");
    Ok(respond(
        &minted.access_token,
        &minted.id_token,
        minted.refresh_token,
        &record.scopes,
        inner.config.tokens.access_token_secs,
    ))
}

/// The token response (RFC 6749 §5.1); `expires_in` counts to the access token's `exp`.
fn respond(
    access_token: &str,
    id_token: &str,
    refresh_token: Option<String>,
    scopes: &[String],
    expires_in: u64,
) -> Response {
    let mut body = json!({
        "access_token": access_token,
        "token_type": "Bearer",
        "expires_in": expires_in,
        "id_token": id_token,
        "scope": scopes.join(" "),
    });
    if let Some(r) = refresh_token {
        body["refresh_token"] = json!(r);
    }
    no_store(body)
}

/// RFC 6749 §6: a used refresh token is exchanged for new tokens and a new refresh token of the
/// same family, with the claims re-released from the citizen's current identity under the
/// client's current allow-list and consent.
async fn refresh_token(
    inner: &Inner,
    client: &Client,
    form: &TokenParams,
) -> Result<Response, OAuthError> {
    if !client.config.offline_access {
        return Err(OAuthError::new(
            OAuthErrorCode::UnauthorizedClient,
            "this client may not use refresh tokens",
        ));
    }
    let presented = form
        .refresh_token
        .as_deref()
        .ok_or_else(|| OAuthError::invalid_request("refresh_token is required"))?;
    let mut record = refresh::take(inner, client, presented).await?;
    // A narrower scope may be asked for (§6), never a wider one.
    let scopes: Vec<String> = match form.scope.as_deref() {
        Some(asked) => {
            let asked: Vec<String> = asked
                .split(' ')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect();
            if asked.iter().any(|s| !record.scopes.contains(s)) {
                return Err(OAuthError::new(
                    OAuthErrorCode::InvalidScope,
                    "a refresh cannot widen the scope",
                ));
            }
            asked
        }
        None => record.scopes.clone(),
    };
    // The citizen as they are now: the live session's identity if there still is one.
    if let Some(live) = inner
        .session_by_sid(&record.sid)
        .await
        .map_err(store_error)?
    {
        record.identity = live.session.identity;
    }
    let mut allowed: Vec<String> = identity::releasable(&scopes, &client.config.claims)
        .map(str::to_owned)
        .collect();
    if client.config.require_consent {
        let consented = crate::consent::granted_claims(inner, &record.identity, &client.config.id)
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "directory failure at refresh");
                OAuthError::new(OAuthErrorCode::TemporarilyUnavailable, "try again shortly")
            })?;
        allowed.retain(|c| consented.contains(c));
    }
    let claims = record.identity.released_claims(&scopes, &allowed);
    let jti = random_token(24);
    let issue = Issue {
        sub: &record.sub,
        scopes: &scopes,
        claims: &claims,
        acr: &record.acr,
        amr: &record.amr,
        auth_time: record.auth_time,
        sid: &record.sid,
        nonce: None,
    };
    let Signed {
        access_token,
        id_token,
        grant,
    } = mint(inner, client, &issue, &jti, inner.now())?;
    let lifetime = Duration::from_secs(inner.config.tokens.access_token_secs);
    let family = record.family.clone();
    record.scopes = scopes.clone();
    let mut batch = inner.store.batch();
    batch.put(grant_key(&jti), &grant, lifetime);
    let next = refresh::issue(inner, &mut batch, record, &jti, None);
    // A reuse detected meanwhile revoked the family: what was just written goes too.
    if refresh::write_then_family_revoked(inner, batch, &family)
        .await
        .map_err(store_error)?
    {
        refresh::revoke_family(inner, &family, None)
            .await
            .map_err(store_error)?;
        return Err(OAuthError::invalid_grant(
            "the refresh token is unknown, expired or revoked",
        ));
    }
    tracing::info!(client = %client.config.id, "tokens refreshed");
    Ok(respond(
        &access_token,
        &id_token,
        Some(next),
        &scopes,
        inner.config.tokens.access_token_secs,
    ))
}

/// RFC 6749 §4.4: a client's own access token, for the admin API only.
fn client_credentials(
    inner: &Inner,
    client: &Client,
    scope: Option<&str>,
) -> Result<Response, OAuthError> {
    if client.config.admin_realms.is_empty() && !client.config.admin_realms_all {
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
    Ok(no_store(
        json!({ "access_token": token, "token_type": "Bearer", "expires_in": lifetime, "scope": ADMIN_SCOPE }),
    ))
}
