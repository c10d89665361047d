//! `GET|POST /authorize`: where a provincial system sends the citizen (OIDC Core §3.1.2).
//!
//! The request is validated ([`crate::request`]); a live SSO session that satisfies it goes
//! straight on to the account, consent and code ([`crate::flow`]); otherwise the request becomes
//! a [`PendingLogin`], sealed into the upstream `state` ([`CarriedLogin`]; in the Store where
//! it cannot be), and the citizen goes to the national IdP.

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
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

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
            _ => start_upstream(inner, request).await,
        }
    }
    .await;
    inner.respond(result)
}

/// Step 4: keep the request as a pending login and send the citizen to the national IdP.
async fn start_upstream(inner: &Inner, request: AuthorizeRequest) -> Result<Response, FlowError> {
    if !limits::allow_pending_login(inner) {
        tracing::warn!("limits.pending_logins_max reached: a login refused");
        return Ok(limits::busy_page());
    }
    let ttl = Duration::from_secs(inner.config.sessions.pending_login_secs);
    let pending = PendingLogin {
        request,
        upstream: UpstreamRequest::generate(),
    };
    // Carried in the state where it can be; else kept in the Store under a random state, which
    // is then also the login cookie's value.
    let (state, binding, kept) = match carry(inner, &pending, ttl) {
        Some((state, binding)) => (state, binding, false),
        None => {
            let state = random_token(32);
            (state.clone(), state, true)
        }
    };
    let request = &pending.request;
    let options = StartOptions {
        minimum_level: request.minimum_level,
        force_login: request.prompt_login,
        max_age: request.max_age,
        login_hint: request.login_hint.as_deref(),
        ui_locales: &request.ui_locales,
    };
    let url = match inner
        .upstream
        .start(&state, &pending.upstream, options)
        .await
    {
        Ok(url) => url,
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
    if kept {
        inner
            .store
            .put(&keys::pending_login(&state), &pending, ttl)
            .await?;
    }
    let cookie = inner.cookie(&inner.login_cookie_name(&binding), &binding, ttl);
    Ok((cookie, Redirect::to(&url)).into_response())
}

/// A pending login carried in the upstream `state` itself, sealed (AES-256-GCM under the
/// `[store] sealing_key`): the national IdP hands it back at the callback, so no node keeps it
/// and no Store round trip is made for it, at `/authorize` or at the callback.
#[derive(Serialize, Deserialize)]
pub(crate) struct CarriedLogin {
    /// The login cookie's value, which ties the login to the browser that started it (the
    /// state itself is too long for a cookie that every request of the login carries).
    pub binding: String,
    /// Seconds since the Unix epoch: `sessions.pending_login_secs` after `/authorize`.
    pub expires_at: u64,
    pub pending: PendingLogin,
}

/// The sealed state's associated data: a value sealed for any other use does not open as one.
const CARRIED_AAD: &str = "lt:upstream-state";
/// Its form's version, which changes with [`PendingLogin`]'s (whose fields it holds).
const CARRIED_VERSION: u8 = PendingLogin::VERSION;

/// The state (and the login cookie's value) carrying `pending`; none while the node writes the
/// forms an earlier release reads (`[store] record_encoding = "json"`: such a node looks for
/// every pending login in the Store), or where the sealed state would be longer than
/// `upstream.max_state_length` (a client's own `state` and `nonce` of hundreds of characters,
/// say: the IdP never gets a URL of kilobytes).
fn carry(inner: &Inner, pending: &PendingLogin, ttl: Duration) -> Option<(String, String)> {
    let sealer = inner.store.sealer();
    if sealer.writes_json() {
        return None;
    }
    /// [`CarriedLogin`] as it is written, borrowing the login: the same fields, the same bytes.
    #[derive(Serialize)]
    struct Carrying<'a> {
        binding: &'a str,
        expires_at: u64,
        pending: &'a PendingLogin,
    }
    let binding = random_token(16);
    let carrying = Carrying {
        binding: &binding,
        expires_at: inner.now() + ttl.as_secs(),
        pending,
    };
    let plain = postcard::to_stdvec(&carrying).expect("a pending login serializes");
    let state = URL_SAFE_NO_PAD.encode(sealer.seal(CARRIED_AAD, CARRIED_VERSION, &plain));
    (state.len() <= inner.config.upstream.max_state_length).then_some((state, binding))
}

/// The pending login a state carries, expired or not; none for a state that does not open (a
/// random one, whose login is in the Store, or one altered on the way).
pub(crate) fn carried(inner: &Inner, state: &str) -> Option<CarriedLogin> {
    let sealed = URL_SAFE_NO_PAD.decode(state).ok()?;
    let plain = inner
        .store
        .sealer()
        .open(CARRIED_AAD, CARRIED_VERSION, &sealed)?;
    postcard::from_bytes(&plain).ok()
}
