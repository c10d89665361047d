//! Rate limits: how many requests one source address (or one client) may make per minute at
//! the endpoints that do work or hold state — `/authorize` and `/callback` (pending logins),
//! `/token`, and the admin API. Counted by [`crate::tally`]: on this node at once, and in the
//! Store's one-minute counters within a tenth of a second, so every node shares the count. Over
//! the limit: 429 with `Retry-After`, as a page for a browser step and as a JSON error for a
//! client. No request waits on the Store to be counted; when the Store cannot count, each node
//! limits by its own count.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Json;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::error::CitizenPage;
use crate::messages::Problem;
use crate::state::{Broker, Inner};
use crate::store::keys;

const WINDOW: Duration = Duration::from_secs(60);

/// Counts one request of `who` at `what`; false when that makes more than `per_minute`.
pub(crate) fn allow(inner: &Inner, what: &str, who: &str, per_minute: u32) -> bool {
    inner.tally.count(keys::counter(what, who), WINDOW) <= u64::from(per_minute)
}

/// Counts one more pending login against `limits.pending_logins_max`, for all sources and
/// nodes together, in windows as long as a pending login lives; false when over the cap. A
/// pending login too long to travel in its state is held in the Store until it expires, and
/// every one sends the citizen to the national IdP, so without this a flood from many
/// addresses could grow the Store without bound and pass on to the IdP.
pub(crate) fn allow_pending_login(inner: &Inner) -> bool {
    let window = inner.config.sessions.pending_login_secs.max(1);
    let slot = (inner.now() / window).to_string();
    inner.tally.count(
        keys::counter("pending-logins", &slot),
        Duration::from_secs(window),
    ) <= u64::from(inner.config.limits.pending_logins_max)
}

/// The answer when every pending-login place is taken: 503, try again shortly.
pub(crate) fn busy_page() -> Response {
    with_retry_after(
        CitizenPage::new(StatusCode::SERVICE_UNAVAILABLE, Problem::TooManyRequests).into_response(),
    )
}

/// The 429 a browser sees.
pub(crate) fn page() -> Response {
    with_retry_after(
        CitizenPage::new(StatusCode::TOO_MANY_REQUESTS, Problem::TooManyRequests).into_response(),
    )
}

/// The 429 a client sees.
pub(crate) fn client_error() -> Response {
    let body = json!({
        "error": "temporarily_unavailable",
        "error_description": "too many requests; try again after the Retry-After delay",
    });
    with_retry_after((StatusCode::TOO_MANY_REQUESTS, Json(body)).into_response())
}

pub(crate) fn with_retry_after(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(WINDOW.as_secs()));
    response
}

/// The address a request comes from: the peer, or — behind a proxy the configuration trusts —
/// the last address of `X-Forwarded-For`, the one that proxy added. Never the first: a proxy
/// appends to whatever the client sent, so the first entry is the client's to choose (RFC 9700
/// §4.13).
fn source(inner: &Inner, request: &Request) -> String {
    if inner.config.limits.trust_forwarded_for
        && let Some(last) = request
            .headers()
            .get_all("x-forwarded-for")
            .iter()
            .next_back()
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit(',').next())
            .map(str::trim)
            .filter(|a| !a.is_empty())
    {
        return last.to_owned();
    }
    request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_string())
        .unwrap_or_else(|| "unknown".into())
}

/// The per-source limits, as a middleware on every route.
pub async fn per_source(State(broker): State<Broker>, request: Request, next: Next) -> Response {
    let inner = broker.inner();
    let l = &inner.config.limits;
    let path = request.uri().path();
    let (what, per_minute, browser) = if path.ends_with("/authorize") {
        ("authorize", l.authorize_per_minute, true)
    } else if path.ends_with("/callback") && !path.ends_with("/logout/callback") {
        ("callback", l.callback_per_minute, true)
    } else if path.ends_with("/token") {
        ("token", l.token_per_minute, false)
    } else if path.contains("/admin/realms/") {
        ("admin", l.admin_per_minute, false)
    } else {
        return next.run(request).await;
    };
    let who = source(inner, &request);
    if allow(inner, what, &who, per_minute) {
        next.run(request).await
    } else {
        tracing::warn!(endpoint = what, "rate limit reached for a source address");
        if browser { page() } else { client_error() }
    }
}
