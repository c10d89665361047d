//! Lienthong's broker: the OpenID provider of a province's systems, and the relying party of the
//! national e-ID.
//!
//! One login, as `docs/ARCHITECTURE.md` tells it: a provincial system sends the citizen to
//! [`authorize`]; without a usable SSO session the broker keeps the request as a pending login
//! and sends the citizen to the national IdP through the [`upstream`] connector; [`callback`]
//! validates the answer, opens the SSO [`session`], asks for [`consent`] where needed and issues
//! a one-time code; the system redeems it at [`token`] for an ID token and an access token, and
//! reads [`userinfo`]. All short-lived state is in the [`store`], so any node serves any step.

pub mod admin;
pub mod authorize;
pub mod callback;
pub mod config;
pub mod consent;
pub mod discovery;
pub mod error;
pub mod identity;
pub mod level;
mod pages;
pub mod session;
pub mod store;
pub mod token;
pub mod upstream;
pub mod userinfo;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use jsonwebtoken::Algorithm;
use lienthong_protocol::{KeySet, SigningKey};
use tokio::net::TcpListener;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;

use config::ClientConfig;
pub use config::Config;
pub use lienthong_adapter::directory::Directory;
use lienthong_adapter::policy::{LinkPolicy, RealmConfig};
pub use store::{MemoryStore, Store};
use upstream::Connector;

/// A registered downstream client, checked at start.
#[derive(Debug, Clone)]
pub struct Client {
    pub config: ClientConfig,
    pub id_token_alg: Algorithm,
    pub realm: String,
}

/// The broker: cheap to clone, shared by every handler.
#[derive(Clone)]
pub struct Broker {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub config: Config,
    pub issuer: String,
    pub store: Arc<dyn Store>,
    pub keys: KeySet,
    pub upstream: Connector,
    pub clients: HashMap<String, Client>,
    pub account_secret: Vec<u8>,
    /// Cookies get `Secure` and the `__Host-` prefix when the issuer is HTTPS.
    pub secure_cookies: bool,
    pub directory: Directory,
    pub realms: HashMap<String, RealmConfig>,
    /// For provincial systems' lookup endpoints: no redirects, per-call timeouts.
    pub http: reqwest::Client,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("configuration: {0}")]
    Config(String),
    #[error("keys: {0}")]
    Keys(#[from] lienthong_protocol::KeyError),
    #[error("cannot listen: {0}")]
    Io(#[from] std::io::Error),
}

impl Broker {
    /// Checks the configuration, loads or generates the signing keys. The directory is
    /// connected by the caller (`Directory::connect(&config.directory.url)`).
    pub fn new(
        config: Config,
        store: Arc<dyn Store>,
        directory: Directory,
    ) -> Result<Self, StartError> {
        let issuer = config.issuer.trim_end_matches('/').to_owned();
        let issuer_url =
            url::Url::parse(&issuer).map_err(|e| StartError::Config(format!("issuer: {e}")))?;
        if issuer_url.query().is_some() || issuer_url.fragment().is_some() {
            return Err(StartError::Config(
                "issuer must have no query or fragment".into(),
            ));
        }
        let secure_cookies = issuer_url.scheme() == "https";
        let upstream =
            Connector::new(config.upstream.clone(), &issuer).map_err(StartError::Config)?;
        let mut clients = HashMap::new();
        for c in &config.clients {
            let id_token_alg = match c.id_token_signed_response_alg.as_str() {
                "ES256" => Algorithm::ES256,
                "RS256" => Algorithm::RS256,
                other => {
                    return Err(StartError::Config(format!(
                        "client {}: id_token_signed_response_alg {other:?}",
                        c.id
                    )));
                }
            };
            for uri in c.redirect_uris.iter().chain(&c.post_logout_redirect_uris) {
                let u = url::Url::parse(uri)
                    .map_err(|e| StartError::Config(format!("client {}: {uri}: {e}", c.id)))?;
                if u.fragment().is_some() {
                    return Err(StartError::Config(format!(
                        "client {}: {uri}: no fragment allowed",
                        c.id
                    )));
                }
            }
            let realm = c.realm.clone().unwrap_or_else(|| c.id.clone());
            if clients
                .insert(
                    c.id.clone(),
                    Client {
                        config: c.clone(),
                        id_token_alg,
                        realm,
                    },
                )
                .is_some()
            {
                return Err(StartError::Config(format!(
                    "client {} is registered twice",
                    c.id
                )));
            }
        }
        let mut realms = HashMap::new();
        for realm in &config.realms {
            match (&realm.policy, &realm.lookup) {
                (LinkPolicy::Lookup, None) => {
                    return Err(StartError::Config(format!(
                        "realm {}: policy lookup needs [realms.lookup]",
                        realm.id
                    )));
                }
                (_, Some(l)) => lienthong_adapter::lookup::check_url(&l.url)
                    .map_err(|e| StartError::Config(format!("realm {}: {e}", realm.id)))?,
                _ => {}
            }
            if realms.insert(realm.id.clone(), realm.clone()).is_some() {
                return Err(StartError::Config(format!(
                    "realm {} is configured twice",
                    realm.id
                )));
            }
        }
        for client in clients.values() {
            realms
                .entry(client.realm.clone())
                .or_insert_with(|| RealmConfig::provision(&client.realm));
        }
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| StartError::Config(e.to_string()))?;
        let keys = KeySet::new(vec![
            load_or_generate(Algorithm::ES256, config.keys.es256_pem.as_deref())?,
            load_or_generate(Algorithm::RS256, config.keys.rs256_pem.as_deref())?,
        ]);
        if let Some(home) = &config.home_url {
            url::Url::parse(home).map_err(|e| StartError::Config(format!("home_url: {e}")))?;
        }
        let account_secret = match &config.account_id_secret {
            Some(s) if s.len() >= 16 => s.as_bytes().to_vec(),
            Some(_) => {
                return Err(StartError::Config(
                    "account_id_secret must be at least 16 characters".into(),
                ));
            }
            None => {
                tracing::warn!(
                    "no account_id_secret: account ids change at every restart (fine for a demo only)"
                );
                lienthong_protocol::secret::random_token(32).into_bytes()
            }
        };
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                issuer,
                store,
                keys,
                upstream,
                clients,
                account_secret,
                secure_cookies,
                directory,
                realms,
                http,
            }),
        })
    }

    pub fn issuer(&self) -> &str {
        &self.inner.issuer
    }

    /// Every route, under the issuer's path.
    pub fn router(&self) -> Router {
        let routes = Router::new()
            .route(
                "/.well-known/openid-configuration",
                get(discovery::configuration),
            )
            .route("/jwks", get(discovery::jwks))
            .route("/authorize", get(authorize::get).post(authorize::post))
            .route("/callback", get(callback::callback))
            .route("/consent", post(consent::decide))
            .route("/token", post(token::token))
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
            .with_state(self.clone())
            // Bounded work per request: small bodies, no endless waits.
            .layer(RequestBodyLimitLayer::new(64 * 1024))
            .layer(TimeoutLayer::with_status_code(
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                Duration::from_secs(30),
            ));
        let path = url::Url::parse(&self.inner.issuer)
            .map(|u| u.path().trim_end_matches('/').to_owned())
            .unwrap_or_default();
        if path.is_empty() {
            routes
        } else {
            Router::new().nest(&path, routes)
        }
    }

    /// Serves on `listener` until `shutdown` completes, finishing in-flight requests.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        axum::serve(
            listener,
            self.router()
                .into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(shutdown)
        .await
    }

    pub(crate) fn inner(&self) -> &Inner {
        &self.inner
    }
}

impl Inner {
    /// The response of a browser-facing step: its result, or its error with a way back.
    pub(crate) fn respond(
        &self,
        result: Result<axum::response::Response, error::FlowError>,
    ) -> axum::response::Response {
        use axum::response::IntoResponse;
        result.unwrap_or_else(|e| e.with_home(self.config.home_url.as_deref()).into_response())
    }
}

fn load_or_generate(
    alg: Algorithm,
    pem: Option<&std::path::Path>,
) -> Result<SigningKey, StartError> {
    match pem {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| StartError::Config(format!("{}: {e}", path.display())))?;
            Ok(SigningKey::from_pkcs8_pem(alg, &text)?)
        }
        None => Ok(SigningKey::generate(alg)?),
    }
}

/// Seconds since the Unix epoch.
pub(crate) fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
