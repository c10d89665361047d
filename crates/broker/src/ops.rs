//! What operators and their tools ask of a node: `/healthz` (the process answers), `/readyz`
//! (it can serve a login: the Store and the directory answer), `/metrics` (Prometheus text,
//! from [`crate::metrics`]), and the middleware that times every request for it.

use std::time::Instant;

use axum::Json;
use axum::extract::{MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::state::Broker;

pub async fn healthz() -> &'static str {
    "ok"
}

pub async fn readyz(State(broker): State<Broker>) -> Response {
    let inner = broker.inner();
    let (store, directory) = tokio::join!(inner.store.raw().ping(), inner.directory.ping());
    let status = |ok: bool| if ok { "ok" } else { "unavailable" };
    let ready = store.is_ok() && directory.is_ok();
    if let Err(e) = &store {
        tracing::warn!(error = %e, "not ready: the Store does not answer");
    }
    if let Err(e) = &directory {
        tracing::warn!(error = %e, "not ready: the directory does not answer");
    }
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        code,
        Json(json!({ "store": status(store.is_ok()), "directory": status(directory.is_ok()) })),
    )
        .into_response()
}

/// Times every request, labelled by its route (never its URL, which may carry a code).
pub async fn track(State(broker): State<Broker>, request: Request, next: Next) -> Response {
    // A shared string: no allocation per request.
    let endpoint = request.extensions().get::<MatchedPath>().cloned();
    let started = Instant::now();
    let response = next.run(request).await;
    let name = endpoint.as_ref().map_or("unmatched", MatchedPath::as_str);
    broker.inner().metrics.observe(name, started.elapsed());
    response
}

/// `GET /metrics`
pub async fn metrics(State(broker): State<Broker>) -> Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        broker.inner().metrics.render(),
    )
        .into_response()
}
