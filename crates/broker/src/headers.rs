//! What every answer carries, whatever route gave it: a Content-Security-Policy with no script
//! at all and `frame-ancestors 'none'` (the consent page cannot be framed for clickjacking),
//! `X-Frame-Options: DENY` for older browsers, `nosniff`, `Referrer-Policy: no-referrer` (a code
//! in a URL never travels in a Referer), HSTS when the issuer is HTTPS, and `no-store` on every
//! answer except the public metadata (discovery, JWKS, the admin API's description, probes).

use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;

use crate::pages::CSP;
use crate::state::Broker;

/// Paths whose answers hold nothing personal and may be cached.
fn public(path: &str) -> bool {
    [
        "/.well-known/openid-configuration",
        "/jwks",
        "/admin/openapi.json",
    ]
    .iter()
    .any(|p| path.ends_with(p))
}

pub async fn secure(State(broker): State<Broker>, request: Request, next: Next) -> Response {
    let cacheable = public(request.uri().path());
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    if !h.contains_key(header::CONTENT_SECURITY_POLICY) {
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        );
    }
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if broker.inner().secure_cookies {
        h.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        );
    }
    if cacheable {
        h.entry(header::CACHE_CONTROL)
            .or_insert(HeaderValue::from_static("public, max-age=300"));
    } else {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}
