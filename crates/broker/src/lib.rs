//! Lienthong's broker: the OpenID provider of a province's systems, and the relying party of the
//! national e-ID.
//!
//! One login, as `docs/ARCHITECTURE.md` tells it: a provincial system sends the citizen to
//! [`authorize`]; without a usable SSO session the broker seals the request as a pending login
//! into the `state` and sends the citizen to the national IdP through the [`upstream`]
//! connector; [`callback`] validates the answer, opens the SSO [`session`], asks for [`consent`]
//! where needed and issues a one-time code; the system redeems it at [`token`] for an ID token
//! and an access token, and reads [`userinfo`]. All other short-lived state is in the
//! [`store`], so any node serves any step.

pub mod access_token;
pub mod account;
pub mod admin;
pub mod authorize;
pub mod callback;
pub mod claims;
pub mod client_assertion;
pub mod code;
pub mod config;
pub mod consent;
pub mod discovery;
pub mod error;
pub mod flow;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
pub mod headers;
pub mod identity;
pub mod introspection;
pub mod keys;
pub mod level;
pub mod limits;
pub mod logout;
pub mod messages;
pub mod metrics;
pub mod mint;
pub mod ops;
mod pages;
pub mod refresh;
pub mod request;
pub mod server;
pub mod session;
pub mod set_cookie;
pub mod state;
pub mod store;
pub mod tally;
pub mod token;
pub mod upstream;
pub mod userinfo;

use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use tokio::net::TcpListener;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;

pub use config::Config;
pub use lienthong_adapter::directory::Directory;
pub use state::{Broker, Client, StartError};
pub use store::{MemoryStore, Store};

impl Broker {
    /// Every route, under the issuer's path.
    pub fn router(&self) -> Router {
        let routes = Router::new()
            .route(
                "/.well-known/openid-configuration",
                get(discovery::configuration),
            )
            .route("/jwks", get(discovery::jwks))
            .route("/healthz", get(ops::healthz))
            .route("/readyz", get(ops::readyz))
            .route("/metrics", get(ops::metrics))
            .route("/authorize", get(authorize::get).post(authorize::post))
            .route("/callback", get(callback::callback))
            .route("/consent", post(consent::decide))
            .route("/logout", get(logout::get).post(logout::post))
            .route("/logout/callback", get(logout::callback))
            .route("/token", post(token::token))
            .route("/introspect", post(introspection::introspect))
            .route("/revoke", post(introspection::revoke))
            .route("/userinfo", get(userinfo::get).post(userinfo::post))
            .route("/admin/openapi.json", get(admin::openapi))
            .route(
                "/admin/realms/{realm}/links",
                get(admin::list).post(admin::link),
            )
            .route(
                "/admin/realms/{realm}/links/by-number/{number}",
                get(admin::find),
            )
            .route(
                "/admin/realms/{realm}/links/{local_account_id}",
                axum::routing::delete(admin::unlink),
            )
            .route_layer(axum::middleware::from_fn_with_state(
                self.clone(),
                ops::track,
            ))
            .with_state(self.clone())
            .layer(axum::middleware::from_fn_with_state(
                self.clone(),
                limits::per_source,
            ))
            // Every answer, including a 404, carries the security headers.
            .layer(axum::middleware::from_fn_with_state(
                self.clone(),
                headers::secure,
            ))
            // Bounded work per request: small bodies, no endless waits.
            .layer(RequestBodyLimitLayer::new(64 * 1024))
            .layer(TimeoutLayer::with_status_code(
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                Duration::from_secs(30),
            ));
        let path = &self.inner().issuer_path;
        if path.is_empty() {
            routes
        } else {
            Router::new().nest(path, routes)
        }
    }

    /// `check-config --online`: the configuration against what the national IdP publishes.
    pub async fn check_upstream(
        &self,
    ) -> Result<Vec<(upstream::Severity, String)>, upstream::UpstreamError> {
        self.inner().upstream.check_online().await
    }

    /// Serves on `listener` until `shutdown` completes, finishing in-flight requests.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let timeout = Duration::from_secs(self.inner().config.server.header_read_timeout_secs);
        server::serve(self.router(), listener, timeout, shutdown).await
    }
}
