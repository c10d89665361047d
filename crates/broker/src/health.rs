//! `/healthz` (the process answers) and `/readyz` (it can serve a login: the Store and the
//! directory answer), for load balancers and orchestrators.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
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
