//! Step 8 of a login: the one-time authorization code, bound to the client, its redirect URI,
//! the PKCE challenge, the nonce and the session, and what it stands for when redeemed.
//!
//! The tokens a code stands for are signed when the code is issued, and written in the same
//! round trip as the code itself (their grant, the refresh-token family), to live no longer
//! than the code: the token endpoint then only takes the code — one Store operation, which
//! leaves the spent-marker and keeps the tokens' records on for their own lifetimes — and hands
//! them over. A code never redeemed leaves nothing behind it longer than itself. Whatever
//! presents the code a second time finds the marker and revokes the tokens by their ids,
//! which the code alone determines ([`grant_id`], [`family_id`]). The earlier
//! form, a [`CodeRecord`] whose tokens the token endpoint signs, is still redeemed, and still
//! written with `[store] record_encoding = "json"` (a rolling update from a release that knows
//! no other).

use std::time::Duration;

use axum::response::{IntoResponse, Redirect, Response};
use lienthong_protocol::OAuthError;
use lienthong_protocol::secret::random_token;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use url::Url;

use crate::access_token::grant_key;
use crate::error::{CitizenPage, FlowError};
use crate::identity::{CitizenIdentity, OFFLINE_ACCESS};
use crate::messages::Problem;
use crate::mint::{Issue, Signed, mint};
use crate::refresh::{self, RefreshRecord};
use crate::request::AuthorizeRequest;
use crate::session::LiveSession;
use crate::state::{Client, Inner};
use crate::store::{Batch, Record, Sealer, keys};

/// What a code stands for, in the earlier form: the token endpoint signs its tokens.
#[derive(Debug, Serialize, Deserialize)]
pub struct CodeRecord {
    pub client_id: String,
    pub redirect_uri: String,
    pub code_challenge: String,
    pub nonce: Option<String>,
    pub scopes: Vec<String>,
    pub sub: String,
    #[serde(with = "crate::store::record::json_map")]
    pub claims: Map<String, Value>,
    pub acr: String,
    pub amr: Vec<String>,
    pub auth_time: u64,
    pub sid: String,
    /// The citizen, kept only when the client may have a refresh token: a refresh re-releases
    /// the claims from it under the client's current allow-list and consent.
    pub identity: Option<CitizenIdentity>,
}

impl Record for CodeRecord {
    const KIND: &'static str = "authorization code";
    const VERSION: u8 = 3;
    const JSON_VERSION: Option<u8> = Some(2);
}

/// What a code stands for: the tokens, signed when it was issued, and what binds them to the
/// client's request. Kept under the same key as a [`CodeRecord`], at a version of its own.
#[derive(Debug, Serialize, Deserialize)]
pub struct MintedCode {
    pub client_id: String,
    pub redirect_uri: String,
    pub code_challenge: String,
    pub scopes: Vec<String>,
    pub access_token: String,
    pub id_token: String,
    pub refresh_token: Option<String>,
    /// The access token's `exp`: the response's `expires_in` counts down to it.
    pub expires_at: u64,
}

impl Record for MintedCode {
    const KIND: &'static str = "authorization code";
    const VERSION: u8 = 4;
}

/// The id (`jti`) of the grant a code's tokens belong to: derived from the code, so that a
/// second presentation finds it whether or not the first has been redeemed.
pub fn grant_id(sealer: &Sealer, code: &str) -> String {
    sealer.tag(&format!("code grant {code}"))
}

/// The id of the refresh-token family a code's tokens start, if its client may have one:
/// derived from the code as [`grant_id`] is.
pub fn family_id(sealer: &Sealer, code: &str) -> String {
    sealer.tag(&format!("code family {code}"))
}

/// The tokens a code stands for, as [`mint_for`] signed them.
pub(crate) struct Minted {
    pub access_token: String,
    pub id_token: String,
    pub refresh_token: Option<String>,
    /// The access token's `exp`.
    pub expires_at: u64,
}

/// Signs the tokens `record` stands for under grant `jti`, and puts in `batch` what they need:
/// the grant, and — when the client may have a refresh token and asked (the code kept the
/// identity) — the refresh-token family `family`. Both are kept for `held`, where given (the
/// code's own lifetime: an unredeemed code leaves nothing behind it for longer), else for the
/// tokens' lifetimes.
pub(crate) fn mint_for(
    inner: &Inner,
    client: &Client,
    record: &CodeRecord,
    jti: &str,
    family: &str,
    held: Option<Duration>,
    batch: &mut Batch<'_>,
) -> Result<Minted, OAuthError> {
    let issue = Issue {
        sub: &record.sub,
        scopes: &record.scopes,
        claims: &record.claims,
        acr: &record.acr,
        amr: &record.amr,
        auth_time: record.auth_time,
        sid: &record.sid,
        nonce: record.nonce.as_deref(),
    };
    let lifetime = Duration::from_secs(inner.config.tokens.access_token_secs);
    let now = inner.now();
    let expires_at = now + lifetime.as_secs();
    let Signed {
        access_token,
        id_token,
        grant,
    } = mint(inner, client, &issue, jti, now)?;
    batch.put(grant_key(jti), &grant, held.unwrap_or(lifetime));
    let refresh_token = match record.identity.clone() {
        Some(identity) if client.config.offline_access => {
            let family = RefreshRecord {
                family: family.to_owned(),
                client_id: client.config.id.clone(),
                sub: record.sub.clone(),
                scopes: record.scopes.clone(),
                identity,
                acr: record.acr.clone(),
                amr: record.amr.clone(),
                auth_time: record.auth_time,
                sid: record.sid.clone(),
                expires_at: 0,
                grants: Vec::new(),
                live: String::new(),
            };
            Some(refresh::issue(inner, batch, family, jti, held))
        }
        _ => None,
    };
    Ok(Minted {
        access_token,
        id_token,
        refresh_token,
        expires_at,
    })
}

/// What a redeemed code leaves behind: the grant it produced, and whether a second
/// presentation has revoked it.
#[derive(Debug, Serialize, Deserialize)]
pub struct CodeSpent {
    pub jti: String,
    pub revoked: bool,
    /// The client the code was issued to: only its own second presentation revokes.
    pub client_id: String,
}

impl Record for CodeSpent {
    const KIND: &'static str = "spent code";
    const VERSION: u8 = 3;
    const JSON_VERSION: Option<u8> = Some(2);
}

/// Step 8: a one-time code bound to the client, redirect URI, PKCE challenge, nonce and session.
pub(crate) async fn issue_code(
    inner: &Inner,
    client: &Client,
    request: &AuthorizeRequest,
    live: &LiveSession,
    claims: Vec<String>,
    sub: String,
) -> Result<Response, FlowError> {
    let session = &live.session;
    let identity = &session.identity;
    let record = CodeRecord {
        client_id: client.config.id.clone(),
        redirect_uri: request.redirect_uri.clone(),
        code_challenge: request.code_challenge.clone(),
        nonce: request.nonce.clone(),
        scopes: request.scopes.clone(),
        sub,
        claims: identity.released_claims(&request.scopes, &claims),
        acr: session.level.acr().to_owned(),
        amr: session.amr.clone(),
        auth_time: session.auth_time,
        sid: session.sid.clone(),
        identity: (client.config.offline_access
            && request.scopes.iter().any(|s| s == OFFLINE_ACCESS))
        .then(|| identity.clone()),
    };
    let code = random_token(32);
    let ttl = Duration::from_secs(inner.config.tokens.code_secs);
    let mut batch = inner.store.batch();
    inner.join_session(&mut batch, live, &client.config.id);
    if inner.store.sealer().writes_json() {
        batch.put(keys::code(&code), &record, ttl);
    } else {
        let sealer = inner.store.sealer();
        let (jti, family) = (grant_id(sealer, &code), family_id(sealer, &code));
        let minted = mint_for(inner, client, &record, &jti, &family, Some(ttl), &mut batch)
            .map_err(|e| {
                tracing::error!(error = %e, "the tokens of a code could not be signed");
                CitizenPage::new(
                    axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                    Problem::ServiceMisconfigured,
                )
            })?;
        let minted = MintedCode {
            client_id: record.client_id,
            redirect_uri: record.redirect_uri,
            code_challenge: record.code_challenge,
            scopes: record.scopes,
            access_token: minted.access_token,
            id_token: minted.id_token,
            refresh_token: minted.refresh_token,
            expires_at: minted.expires_at,
        };
        batch.put(keys::code(&code), &minted, ttl);
    }
    inner.store.write(batch).await?;
    tracing::info!(client = %client.config.id, level = live.session.level.number(), "authorization code issued");
    inner
        .metrics
        .login("success", Some(live.session.level.number()));
    let mut url =
        Url::parse(&request.redirect_uri).expect("registered redirect URIs are valid URLs");
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("code", &code);
        if let Some(state) = &request.state {
            q.append_pair("state", state);
        }
        q.append_pair("iss", &inner.issuer);
    }
    Ok(Redirect::to(url.as_str()).into_response())
}
