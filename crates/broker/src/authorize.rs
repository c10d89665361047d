//! `GET|POST /authorize`: where a provincial system sends the citizen (OIDC Core §3.1.2).
//!
//! The request is validated ([`crate::request`]); a live SSO session that satisfies it goes
//! straight on to the account, consent and code ([`crate::flow`]); otherwise the request is kept
//! as a [`PendingLogin`] and the citizen goes to the national IdP.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::CookieJar;
use lienthong_protocol::AuthorizationParams;
use lienthong_protocol::secret::random_token;
use serde::{Deserialize, Serialize};

use crate::error::{CitizenPage, FlowError};
use crate::flow::complete;
use crate::limits;
use crate::messages::Problem;
use crate::request::{AuthorizeRequest, validate};
use crate::state::{Broker, Inner};
use crate::store::{Record, keys};
use crate::upstream::{StartOptions, UpstreamError, UpstreamRequest};

/// A login waiting for the citizen to come back from the national IdP.
#[derive(Debug, Serialize, Deserialize)]
pub struct PendingLogin {
    pub request: AuthorizeRequest,
    pub upstream: UpstreamRequest,
}

impl Record for PendingLogin {
    const KIND: &'static str = "pending login";
    const VERSION: u8 = 2;
    const JSON_VERSION: Option<u8> = Some(1);
}

pub async fn get(
    State(broker): State<Broker>,
    jar: CookieJar,
    RawQuery(query): RawQuery,
) -> Response {
    authorize(broker, jar, query.unwrap_or_default().as_bytes()).await
}

/// OIDC Core §3.1.2.1: the authorization endpoint also accepts a form POST.
pub async fn post(State(broker): State<Broker>, jar: CookieJar, body: Bytes) -> Response {
    authorize(broker, jar, &body).await
}

async fn authorize(broker: Broker, jar: CookieJar, params: &[u8]) -> Response {
    let inner = broker.inner();
    let result = async {
        // A parameter given twice (RFC 6749 §3.1 forbids it) or malformed encoding: we cannot
        // trust any of it, so not the redirect URI either.
        let raw = AuthorizationParams::parse(params)
            .map_err(|_| CitizenPage::new(StatusCode::BAD_REQUEST, Problem::InvalidRequest))?;
        let request = validate(inner, raw)?;
        let live = inner.current_session(&jar).await?;
        match live {
            Some(live)
                if !request.prompt_login
                    && live.session.satisfies(
                        request.minimum_level,
                        request.max_age,
                        inner.now(),
                    ) =>
            {
                complete(inner, &request, &live).await
            }
            _ if request.prompt_none => {
                Err(request.error(inner, "login_required", "the citizen must sign in"))
            }
            _ => start_upstream(inner, request, jar).await,
        }
    }
    .await;
    inner.respond(result)
}

/// Step 4: keep the request as a pending login and send the citizen to the national IdP.
async fn start_upstream(
    inner: &Inner,
    request: AuthorizeRequest,
    jar: CookieJar,
) -> Result<Response, FlowError> {
    if !limits::allow_pending_login(inner) {
        tracing::warn!("limits.pending_logins_max reached: a login refused");
        return Ok(limits::busy_page());
    }
    let state = random_token(32);
    let options = StartOptions {
        minimum_level: request.minimum_level,
        force_login: request.prompt_login,
        max_age: request.max_age,
        login_hint: request.login_hint.as_deref(),
        ui_locales: &request.ui_locales,
    };
    let (url, upstream) = match inner.upstream.start(&state, options).await {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!(error = %e, "cannot start an upstream login");
            inner.metrics.upstream_error();
            let problem = match e {
                UpstreamError::Unavailable(_) => Problem::UpstreamUnavailable,
                _ => Problem::UpstreamRejected,
            };
            return Err(request.page(inner, StatusCode::SERVICE_UNAVAILABLE, problem));
        }
    };
    let ttl = Duration::from_secs(inner.config.sessions.pending_login_secs);
    inner
        .store
        .put(
            &keys::pending_login(&state),
            &PendingLogin { request, upstream },
            ttl,
        )
        .await?;
    let binding = inner.cookie(inner.login_cookie_name(&state), state, ttl);
    Ok((jar.add(binding), Redirect::to(&url)).into_response())
}
