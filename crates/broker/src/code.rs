//! Step 8 of a login: the one-time authorization code, bound to the client, its redirect URI,
//! the PKCE challenge, the nonce and the session, and what it stands for when redeemed.

use std::time::Duration;

use axum::response::{IntoResponse, Redirect, Response};
use lienthong_protocol::secret::{random_token, sha256_b64url};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use url::Url;

use crate::error::FlowError;
use crate::request::AuthorizeRequest;
use crate::session::LiveSession;
use crate::state::{Client, Inner};

/// Where a code's record is kept, under the code's hash.
pub(crate) fn code_key(code: &str) -> String {
    format!("code:{}", sha256_b64url(code))
}

/// What a redeemed code stands for.
#[derive(Debug, Serialize, Deserialize)]
pub struct CodeRecord {
    pub client_id: String,
    pub redirect_uri: String,
    pub code_challenge: String,
    pub nonce: Option<String>,
    pub scopes: Vec<String>,
    pub sub: String,
    pub claims: Map<String, Value>,
    pub acr: String,
    pub amr: Vec<String>,
    pub auth_time: u64,
    pub sid: String,
}

/// Step 8: a one-time code bound to the client, redirect URI, PKCE challenge, nonce and session.
pub(crate) async fn issue_code(
    inner: &Inner,
    client: &Client,
    request: &AuthorizeRequest,
    live: &mut LiveSession,
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
    };
    if !live.session.clients.contains(&client.config.id) {
        live.session.clients.push(client.config.id.clone());
    }
    inner.touch_session(live).await?;
    let code = random_token(32);
    let ttl = Duration::from_secs(inner.config.tokens.code_secs);
    inner.store.put_json(&code_key(&code), &record, ttl).await?;
    tracing::info!(client = %client.config.id, level = live.session.level.number(), "authorization code issued");
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
