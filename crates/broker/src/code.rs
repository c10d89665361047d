//! Step 8 of a login: the one-time authorization code, bound to the client, its redirect URI,
//! the PKCE challenge, the nonce and the session, and what it stands for when redeemed.

use std::time::Duration;

use axum::response::{IntoResponse, Redirect, Response};
use lienthong_protocol::secret::random_token;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use url::Url;

use crate::error::FlowError;
use crate::identity::{CitizenIdentity, OFFLINE_ACCESS};
use crate::request::AuthorizeRequest;
use crate::session::LiveSession;
use crate::state::{Client, Inner};
use crate::store::{Record, keys};

/// What a redeemed code stands for.
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
    batch.put(keys::code(&code), &record, ttl);
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
