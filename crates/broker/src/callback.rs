//! `GET /callback`: the citizen comes back from the national IdP (DESIGN.md step 5–6).
//!
//! The order of checks matters: the login must have been started by this browser (binding
//! cookie, removed as it is used), its pending login must open from the sealed state and be in
//! time (or, kept in the Store, be taken from it exactly once), the authorization response must
//! come from our IdP (RFC 9207 `iss`), and only then is the code exchanged — once: the IdP
//! refuses a code presented again — and the ID token validated against the login's nonce.

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum_extra::extract::CookieJar;
use axum_extra::extract::cookie::Cookie;
use lienthong_protocol::secret::random_token;
use serde::Deserialize;

use crate::authorize::{PendingLogin, carried};
use crate::claims::UnusableIdentity;
use crate::error::{CitizenPage, FlowError};
use crate::flow::complete;
use crate::messages::Problem;
use crate::session::SsoSession;
use crate::state::Broker;
use crate::store::keys;
use crate::upstream::UpstreamError;

#[derive(Debug, Deserialize)]
pub struct CallbackParams {
    pub(crate) state: Option<String>,
    code: Option<String>,
    error: Option<String>,
    iss: Option<String>,
}

pub async fn callback(
    State(broker): State<Broker>,
    jar: CookieJar,
    RawQuery(query): RawQuery,
) -> Response {
    let inner = broker.inner();
    // The login cookie, once it has matched: it goes with whatever this answers.
    let mut spent: Option<String> = None;
    let result: Result<Response, FlowError> = async {
        // Parsed here, not by an extractor: a malformed or repeated parameter gets our page,
        // not the framework's bare text.
        let p: CallbackParams = serde_urlencoded::from_str(query.as_deref().unwrap_or_default())
            .map_err(|_| CitizenPage::new(StatusCode::BAD_REQUEST, Problem::InvalidRequest))?;
        let Some(state) = p.state.as_deref() else {
            return Err(CitizenPage::new(StatusCode::BAD_REQUEST, Problem::InvalidRequest).into());
        };
        // The login is carried in the state, sealed; or, for a state that does not open, kept
        // in the Store under it (authorize::carry says when).
        let carried = carried(inner, state);
        // The Store's key (a digest of the whole state) only where the state carried nothing.
        let key = || keys::pending_login(state);
        let binding = carried.as_ref().map_or(state, |c| c.binding.as_str());
        let cookie_name = inner.login_cookie_name(binding);
        let expired = |retry: Option<String>| CitizenPage::new(StatusCode::BAD_REQUEST, Problem::LoginExpired).with_links(retry, None);
        if jar.get(&cookie_name).map(Cookie::value) != Some(binding) {
            // Not started in this browser (or the state was altered): refuse, but if the login
            // exists, still offer a clean restart of it.
            tracing::warn!("callback without the matching login cookie");
            let request = match carried {
                Some(c) => Some(c.pending.request),
                None => inner.store.get::<PendingLogin>(&key()).await?.map(|p| p.request),
            };
            return Err(expired(request.map(|r| r.retry_url(&inner.issuer))).into());
        }
        spent = Some(cookie_name);
        let pending = match carried {
            Some(c) if c.expires_at > inner.now() => c.pending,
            // Too late: the request is still known, so the citizen may start it again.
            Some(c) => return Err(expired(Some(c.pending.request.retry_url(&inner.issuer))).into()),
            None => match inner.store.take::<PendingLogin>(&key()).await? {
                Some(pending) => pending,
                None => return Err(expired(None).into()),
            },
        };
        let request = &pending.request;
        if let Err(e) = inner.upstream.check_response_issuer(p.iss.as_deref()).await {
            tracing::warn!(error = %e, "authorization response issuer refused");
            return Err(request.page(inner, StatusCode::BAD_REQUEST, Problem::UpstreamRejected));
        }
        if let Some(error) = p.error.as_deref() {
            tracing::info!(upstream_error = error, "the national IdP returned an error");
            return Err(match error {
                "access_denied" => request.error(inner, "access_denied", "the citizen cancelled at the national IdP"),
                "temporarily_unavailable" => request.page(inner, StatusCode::SERVICE_UNAVAILABLE, Problem::UpstreamUnavailable),
                _ => request.page(inner, StatusCode::BAD_GATEWAY, Problem::UpstreamRejected),
            });
        }
        let Some(code) = p.code.as_deref() else {
            return Err(request.page(inner, StatusCode::BAD_REQUEST, Problem::InvalidRequest));
        };
        let login = inner.upstream.finish(code, &pending.upstream).await.map_err(|e| {
            tracing::warn!(error = %e, "upstream login failed");
            inner.metrics.upstream_error();
            match e {
                UpstreamError::Unavailable(_) => request.page(inner, StatusCode::BAD_GATEWAY, Problem::UpstreamUnavailable),
                UpstreamError::Rejected(_) => request.page(inner, StatusCode::BAD_REQUEST, Problem::UpstreamRejected),
                UpstreamError::Identity(UnusableIdentity::Misconfigured { claim, problem, config_key }) => {
                    // Named for the operator: the claim, what arrived, the key to change.
                    tracing::error!(%claim, %problem, %config_key, "the national IdP's answer does not match the claim mapping: login refused");
                    request.page(inner, StatusCode::BAD_GATEWAY, Problem::ServiceMisconfigured)
                }
                UpstreamError::Identity(UnusableIdentity::Inconsistent(_)) => request.page(inner, StatusCode::FORBIDDEN, Problem::IdentityUnusable),
            }
        })?;
        tracing::info!(
            citizen = %login.identity.citizen_id.as_ref().map(ToString::to_string).unwrap_or_default(),
            level = login.level.number(),
            "citizen signed in upstream"
        );
        // A new sign-in replaces whatever session this browser had.
        if let Some(old) = inner.current_session(&jar).await? {
            inner.end_session(&old).await?;
        }
        let now = inner.now();
        let session = SsoSession {
            sid: random_token(16),
            identity: login.identity,
            level: login.level,
            auth_time: login.auth_time.unwrap_or(now),
            amr: login.amr,
            created_at: now,
            cookie: String::new(),
            upstream_id_token: None,
        };
        let level = session.level;
        let (mut live, session_cookie) = inner.open_session(session);
        let upstream_cookie = if inner.config.upstream.logout_id_token_hint {
            inner.keep_upstream_id_token(&mut live, login.id_token)
        } else {
            None
        };
        let response = if request.minimum_level.is_some_and(|m| level < m) {
            request.error(inner, "unmet_authentication_requirements", "the account level is lower than requested").into_response()
        } else {
            inner.respond(complete(inner, request, &live).await)
        };
        // The session went with the login's pending consent or code, or, where the login ended
        // before either, goes now: the citizen stays signed in for the other systems.
        inner.save_session_alone(&live).await?;
        Ok((session_cookie, upstream_cookie, response).into_response())
    }
    .await;
    let response = inner.respond(result);
    match spent {
        // A login is resumed at most once by the browser that started it, refused or not: the
        // IdP's answer cannot be replayed here after a refusal (an answer from another issuer,
        // say). A login kept in the Store was taken from it too.
        Some(name) => (inner.removal(&name, "/"), response).into_response(),
        None => response,
    }
}
