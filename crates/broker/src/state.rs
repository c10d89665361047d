//! The broker's shared state: the checked configuration, the registered clients and realms,
//! the signing keys, the upstream connector, the Store, the directory and the clock. One
//! [`Broker`] handle (an `Arc`) is cloned into every handler.

use std::collections::HashMap;
use std::sync::Arc;

use lienthong_adapter::directory::Directory;
use lienthong_adapter::policy::{LinkPolicy, RealmConfig};
use lienthong_protocol::{PublicKeys, SharedClock, SystemClock};
use std::time::Duration;

use crate::config::{ClientAuthMethod, ClientConfig, Config, RecordEncoding};
use crate::keys::{self, KeyRing};
use axum::http::StatusCode;

use crate::error::{CitizenPage, FlowError};
use crate::messages::Problem;
use crate::metrics::Metrics;
use crate::store::{Records, Sealer, Store};
use crate::tally::Tally;
use crate::upstream::Connector;

/// A registered downstream client, checked at start.
#[derive(Debug, Clone)]
pub struct Client {
    pub config: ClientConfig,
    /// The account realm: the configured one, or the client's own id.
    pub realm: String,
    /// `jwks` (a `private_key_jwt` client's public keys), parsed once at start.
    pub public_keys: Option<Arc<PublicKeys>>,
}

/// The broker: cheap to clone, shared by every handler.
#[derive(Clone)]
pub struct Broker {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub config: Config,
    pub issuer: String,
    /// Short-lived state, sealed and versioned.
    pub store: Records,
    /// The rate limits' counts, kept here and added to the Store's in the background.
    pub tally: Tally,
    /// The signing keys (previous, current, next per algorithm), reloadable.
    pub keys: KeyRing,
    pub upstream: Connector,
    pub clients: HashMap<String, Client>,
    pub account_secret: Vec<u8>,
    /// The one clock every expiry and timestamp reads.
    pub clock: SharedClock,
    pub metrics: Metrics,
    /// Cookies get `Secure` and the `__Host-` prefix (`__Secure-` for the one scoped to the
    /// sign-out path) when the issuer is HTTPS.
    pub secure_cookies: bool,
    /// The issuer's path, without a trailing `/` (empty at a host's root): every route is
    /// under it.
    pub issuer_path: String,
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
    #[error("{0}")]
    SigningKeys(#[from] keys::KeysError),
    #[error("cannot listen: {0}")]
    Io(#[from] std::io::Error),
}

/// A client authenticates one way: a secret, or keys and no secret (a secret beside the keys
/// would let a thief of the secret skip the stronger method).
fn check_client_auth(c: &ClientConfig) -> Result<(), StartError> {
    let fail = |why: &str| Err(StartError::Config(format!("client {}: {why}", c.id)));
    match c.token_endpoint_auth_method {
        ClientAuthMethod::PrivateKeyJwt => match (&c.jwks, &c.secret) {
            (_, Some(_)) => fail("private_key_jwt takes no secret; remove it"),
            (Some(set), None) if !set.keys.is_empty() => Ok(()),
            _ => fail("private_key_jwt needs the client's public keys in jwks"),
        },
        ClientAuthMethod::ClientSecretBasic | ClientAuthMethod::ClientSecretPost => {
            match (&c.secret, &c.jwks) {
                (Some(s), None) if !s.expose().is_empty() => Ok(()),
                (_, Some(_)) => fail("jwks is for private_key_jwt; set token_endpoint_auth_method"),
                _ => fail(
                    "a secret is required (or token_endpoint_auth_method = \"private_key_jwt\")",
                ),
            }
        }
    }
}

impl Broker {
    /// Checks the configuration, loads (or generates, and shares through the directory) the
    /// signing keys. The Store (`store::open(&config.store)`) and the directory
    /// (`Directory::connect(&config.directory.url)`) are connected by the caller.
    pub async fn new(
        config: Config,
        store: Arc<dyn Store>,
        directory: Directory,
    ) -> Result<Self, StartError> {
        Self::with_clock(config, store, directory, SystemClock::shared()).await
    }

    /// [`Broker::new`] with the clock of the caller's choosing (tests move a `MockClock`).
    pub async fn with_clock(
        config: Config,
        store: Arc<dyn Store>,
        directory: Directory,
        clock: SharedClock,
    ) -> Result<Self, StartError> {
        lienthong_protocol::crypto::install();
        let issuer = config.issuer.trim_end_matches('/').to_owned();
        let issuer_url =
            url::Url::parse(&issuer).map_err(|e| StartError::Config(format!("issuer: {e}")))?;
        if issuer_url.query().is_some() || issuer_url.fragment().is_some() {
            return Err(StartError::Config(
                "issuer must have no query or fragment".into(),
            ));
        }
        let secure_cookies = issuer_url.scheme() == "https";
        let issuer_path = issuer_url.path().trim_end_matches('/').to_owned();
        let upstream = Connector::new(config.upstream.clone(), &issuer, clock.clone())
            .map_err(StartError::Config)?;
        let mut clients = HashMap::new();
        for c in &config.clients {
            for uri in c
                .redirect_uris
                .iter()
                .chain(&c.post_logout_redirect_uris)
                .chain(&c.backchannel_logout_uri)
                .chain(&c.frontchannel_logout_uri)
            {
                let u = url::Url::parse(uri)
                    .map_err(|e| StartError::Config(format!("client {}: {uri}: {e}", c.id)))?;
                if u.fragment().is_some() {
                    return Err(StartError::Config(format!(
                        "client {}: {uri}: no fragment allowed",
                        c.id
                    )));
                }
            }
            if c.admin_realms.iter().any(|r| r.contains('*')) {
                return Err(StartError::Config(format!(
                    "client {}: admin_realms lists {:?}; a wildcard is not a realm. To let this \
                     client administer every realm, set admin_realms_all = true (and know why)",
                    c.id, c.admin_realms
                )));
            }
            check_client_auth(c)?;
            let realm = c.realm.clone().unwrap_or_else(|| c.id.clone());
            if clients
                .insert(
                    c.id.clone(),
                    Client {
                        config: c.clone(),
                        realm,
                        public_keys: c.jwks.as_ref().map(|j| Arc::new(PublicKeys::new(j))),
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
        let shared = config.store.is_shared();
        let sealer = match &config.store.sealing_key {
            Some(key) => Some(
                Sealer::from_base64(key.expose()).map_err(|e| StartError::Config(e.to_string()))?,
            ),
            None if shared => {
                return Err(StartError::Config(
                    "store.sealing_key must be set when the Store is shared (store.url is Redis): \
                     every node must open what the others sealed"
                        .into(),
                ));
            }
            None => None,
        };
        if shared && config.account_id_secret.is_none() {
            return Err(StartError::Config(
                "account_id_secret must be set when the Store is shared (store.url is Redis): \
                 a generated one differs on every node, and so would every account id"
                    .into(),
            ));
        }
        let keys = KeyRing::new(keys::load(&config.keys, &directory, sealer.as_ref()).await?);
        let reload = keys::shared(&config.keys, sealer.as_ref())
            .then(|| Duration::from_secs(config.keys.reload_secs.max(1)));
        if let Some(home) = &config.home_url {
            url::Url::parse(home).map_err(|e| StartError::Config(format!("home_url: {e}")))?;
        }
        let t = &config.tokens;
        if t.access_token_secs.min(t.id_token_secs) <= t.code_secs {
            tracing::warn!(
                code_secs = t.code_secs,
                access_token_secs = t.access_token_secs,
                id_token_secs = t.id_token_secs,
                "tokens do not outlive codes: a code's tokens are signed as it is issued, so a code redeemed late hands over tokens about to expire"
            );
        }
        let account_secret = match &config.account_id_secret {
            Some(s) if s.expose().len() >= 16 => s.expose().as_bytes().to_vec(),
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
        let metrics = Metrics::default();
        let json = config.store.record_encoding == RecordEncoding::Json;
        let sealer = sealer.unwrap_or_else(Sealer::generate).writing_json(json);
        let store = Records::new(store, sealer).counting_errors(metrics.store_errors.clone());
        let tally = Tally::new(store.clone(), clock.clone());
        let broker = Self {
            inner: Arc::new(Inner {
                config,
                issuer,
                store,
                tally,
                keys,
                upstream,
                clients,
                account_secret,
                secure_cookies,
                issuer_path,
                directory: directory.with_clock(clock.clone()),
                realms,
                http,
                clock,
                metrics,
            }),
        };
        if let Some(period) = reload {
            // Every node follows the shared ring: a rotation reaches it within `period`. The
            // task holds no strong handle, so it ends with the broker.
            let weak = Arc::downgrade(&broker.inner);
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(period).await;
                    let Some(inner) = weak.upgrade() else { break };
                    let broker = Broker { inner };
                    if let Err(e) = broker.reload_keys().await {
                        tracing::warn!(error = %e, "signing keys not reloaded");
                    }
                }
            });
        }
        Ok(broker)
    }

    pub fn issuer(&self) -> &str {
        &self.inner.issuer
    }

    pub(crate) fn inner(&self) -> &Inner {
        &self.inner
    }

    /// Reads the shared signing keys again (after `lienthong keys rotate`); done by itself
    /// every `keys.reload_secs`.
    pub async fn reload_keys(&self) -> Result<(), StartError> {
        let inner = &self.inner;
        let sealer = inner
            .config
            .store
            .sealing_key
            .as_ref()
            .map(|k| Sealer::from_base64(k.expose()))
            .transpose()
            .map_err(|e| StartError::Config(e.to_string()))?;
        let set = keys::load(&inner.config.keys, &inner.directory, sealer.as_ref()).await?;
        inner.keys.replace(set);
        Ok(())
    }
}

impl Inner {
    /// The registered client a request names. A request read back from the Store is input like
    /// any other: another node (or an older configuration) may have stored a client this node
    /// does not know, which ends the login with a page rather than a panic.
    pub(crate) fn client_of(&self, client_id: &str) -> Result<&Client, FlowError> {
        self.clients.get(client_id).ok_or_else(|| {
            tracing::warn!(client = %client_id, "a stored request names an unknown client");
            CitizenPage::new(StatusCode::BAD_REQUEST, Problem::UnknownClient).into()
        })
    }

    /// Seconds since the Unix epoch, by the broker's clock.
    pub(crate) fn now(&self) -> u64 {
        self.clock.now_secs()
    }

    /// The response of a browser-facing step: its result, or its error with a way back.
    pub(crate) fn respond(
        &self,
        result: Result<axum::response::Response, FlowError>,
    ) -> axum::response::Response {
        use axum::response::IntoResponse;
        if let Err(e) = &result {
            self.metrics.login(e.outcome(), None);
        }
        result.unwrap_or_else(|e| e.with_home(self.config.home_url.as_deref()).into_response())
    }
}
