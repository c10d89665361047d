//! The broker's configuration (TOML). `config/lienthong.example.toml` documents every key.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use lienthong_protocol::secret::Secret;
use serde::Deserialize;

use crate::level::Level;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The broker's public issuer URL, exactly as clients see it (no trailing slash).
    pub issuer: String,
    #[serde(default = "default_bind")]
    pub bind: SocketAddr,
    pub upstream: UpstreamConfig,
    #[serde(default)]
    pub clients: Vec<ClientConfig>,
    #[serde(default)]
    pub sessions: SessionConfig,
    #[serde(default)]
    pub tokens: TokenConfig,
    #[serde(default)]
    pub keys: KeysConfig,
    #[serde(default)]
    pub store: StoreConfig,
    #[serde(default)]
    pub limits: LimitsConfig,
    #[serde(default)]
    pub server: ServerConfig,
    /// Secret for the per-system account ids derived from the citizen's upstream identity. Keep
    /// it stable: changing it changes every derived id. Absent: a random one per start (demo).
    pub account_id_secret: Option<Secret>,
    /// The province's portal home page: the way back offered on error pages that cannot send the
    /// citizen back to the service that asked (an unknown client, an expired login).
    pub home_url: Option<String>,
    #[serde(default)]
    pub directory: DirectoryConfig,
    /// Account realms and their linking policies. A client whose realm is not listed here gets
    /// `provision`.
    #[serde(default)]
    pub realms: Vec<lienthong_adapter::policy::RealmConfig>,
}

/// Where the account directory lives.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirectoryConfig {
    /// `sqlite://data/lienthong.db?mode=rwc` (the default: a file in the data directory) or
    /// `postgres://user@host/db`.
    #[serde(default = "default_directory_url")]
    pub url: String,
}

impl Default for DirectoryConfig {
    fn default() -> Self {
        Self {
            url: default_directory_url(),
        }
    }
}

fn default_directory_url() -> String {
    "sqlite://data/lienthong.db?mode=rwc".into()
}

fn default_bind() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}

/// The national IdP (or the mock), as this broker's upstream OpenID provider.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// Issuer URL; its discovery document gives every endpoint.
    pub issuer: String,
    pub client_id: String,
    pub client_secret: Secret,
    /// Where the upstream sends the citizen back; defaults to `{issuer}/callback`.
    pub redirect_uri: Option<String>,
    #[serde(default = "default_upstream_scopes")]
    pub scopes: Vec<String>,
    /// `client_secret_basic` (default) or `client_secret_post`.
    #[serde(default)]
    pub token_endpoint_auth_method: UpstreamAuthMethod,
    /// ID token signature algorithms accepted from upstream.
    #[serde(default = "default_upstream_algs")]
    pub id_token_algs: Vec<UpstreamAlg>,
    /// Call userinfo after the token exchange: `get`, `post` (as the national portal gateway
    /// wants) or `none`.
    #[serde(default)]
    pub userinfo: UserinfoMethod,
    /// Seconds to wait for any upstream HTTP call.
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
    /// How long discovery and JWKS are cached, in seconds.
    #[serde(default = "default_metadata_ttl")]
    pub metadata_ttl_secs: u64,
    #[serde(default)]
    pub claims: ClaimMapping,
    /// Upstream `acr` values and the account level (1 or 2) each stands for. An upstream value
    /// not listed here is refused: the broker never guesses a level.
    #[serde(default = "default_acr_map")]
    pub acr_map: BTreeMap<String, Level>,
    /// Keep the IdP's ID token with each SSO session, to send as `id_token_hint` when ending
    /// the IdP's session at sign-out (default true). It is kept sealed in a cookie for the
    /// sign-out endpoint, not in the Store; without it only `client_id` is sent, and the IdP
    /// may ask the citizen to confirm the sign-out.
    #[serde(default = "yes")]
    pub logout_id_token_hint: bool,
    /// The longest `state` sent to the IdP (default 1024 characters). A pending login travels
    /// in it, sealed (about 450 characters); one that would not fit is kept in the Store under
    /// a random state of 43. For an IdP that refuses or cuts long values, set its limit; below
    /// 43 no login is carried.
    #[serde(default = "default_max_state_length")]
    pub max_state_length: usize,
}

/// How the broker authenticates at the upstream token endpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UpstreamAuthMethod {
    #[default]
    ClientSecretBasic,
    ClientSecretPost,
}

/// An ID token signature algorithm accepted from upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum UpstreamAlg {
    RS256,
    ES256,
    PS256,
}

impl UpstreamAlg {
    pub fn jwt(self) -> jsonwebtoken::Algorithm {
        match self {
            Self::RS256 => jsonwebtoken::Algorithm::RS256,
            Self::ES256 => jsonwebtoken::Algorithm::ES256,
            Self::PS256 => jsonwebtoken::Algorithm::PS256,
        }
    }
}

/// Whether, and how, the upstream userinfo endpoint is called.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UserinfoMethod {
    #[default]
    Get,
    Post,
    None,
}

/// How the broker signs a client's ID tokens.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum SigningAlg {
    #[default]
    ES256,
    RS256,
    EdDSA,
}

impl SigningAlg {
    pub fn jwt(self) -> jsonwebtoken::Algorithm {
        match self {
            Self::ES256 => jsonwebtoken::Algorithm::ES256,
            Self::RS256 => jsonwebtoken::Algorithm::RS256,
            Self::EdDSA => jsonwebtoken::Algorithm::EdDSA,
        }
    }
}

fn default_upstream_scopes() -> Vec<String> {
    vec!["openid".into()]
}
fn default_upstream_algs() -> Vec<UpstreamAlg> {
    vec![UpstreamAlg::RS256, UpstreamAlg::ES256]
}
fn default_max_state_length() -> usize {
    1024
}

fn default_timeout() -> u64 {
    10
}
fn default_metadata_ttl() -> u64 {
    600
}
fn default_acr_map() -> BTreeMap<String, Level> {
    [
        ("1", Level::ONE),
        ("2", Level::TWO),
        ("LoA1", Level::ONE),
        ("LoA2", Level::TWO),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// Which upstream claim holds each part of the citizen's identity. `preset` fills the names of
/// a known upstream; any name set explicitly overrides it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClaimMapping {
    /// `standard` (OIDC names, ID number in `preferred_username`) or `vnconnect` (the national
    /// portal gateway: `TechID`, `SoDinhDanh`, `HoVaTen`, ...).
    #[serde(default)]
    pub preset: ClaimPreset,
    pub subject: Option<String>,
    pub citizen_id: Option<String>,
    pub legacy_id: Option<String>,
    pub name: Option<String>,
    pub birthdate: Option<String>,
    pub gender: Option<String>,
    pub phone: Option<String>,
    pub email: Option<String>,
    pub address: Option<String>,
    pub acr: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClaimPreset {
    #[default]
    Standard,
    Vnconnect,
}

/// A provincial system registered as a client of the broker.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    pub id: String,
    /// How the client authenticates at `/token`, `/introspect` and `/revoke`:
    /// `client_secret_basic` (the default; `client_secret_post` is accepted too) with `secret`,
    /// or `private_key_jwt` with the public keys in `jwks` and no secret.
    #[serde(default)]
    pub token_endpoint_auth_method: ClientAuthMethod,
    /// The shared secret of the `client_secret_*` methods.
    pub secret: Option<Secret>,
    /// The client's public keys for `private_key_jwt` (a JWK Set: `{ keys = [...] }`).
    pub jwks: Option<jsonwebtoken::jwk::JwkSet>,
    /// Shown to citizens on the consent page.
    pub name: String,
    pub redirect_uris: Vec<String>,
    /// Where the citizen may be sent after signing out (RP-initiated logout), exactly.
    #[serde(default)]
    pub post_logout_redirect_uris: Vec<String>,
    /// OpenID Back-Channel Logout: where the broker POSTs a signed logout token when a session
    /// this system took part in ends.
    pub backchannel_logout_uri: Option<String>,
    /// OpenID Front-Channel Logout: loaded in a hidden frame of the signed-out page, with `iss`
    /// and `sid`.
    pub frontchannel_logout_uri: Option<String>,
    /// `ES256` (default), `RS256` or `EdDSA`.
    #[serde(default)]
    pub id_token_signed_response_alg: SigningAlg,
    /// Claims this system may ever receive (further limited by the scopes it asks for).
    #[serde(default)]
    pub claims: Vec<String>,
    /// The account realm: systems sharing a realm see the same account id. Defaults to `id`.
    pub realm: Option<String>,
    /// Ask the citizen before releasing personal data (default true).
    #[serde(default = "yes")]
    pub require_consent: bool,
    /// What `sub` is: `account` (the local account id from the directory, the default) or
    /// `pairwise` (an opaque per-realm identifier, for systems that keep no accounts).
    #[serde(default)]
    pub subject_type: SubjectType,
    /// May this system keep a citizen signed in with refresh tokens (scope `offline_access`)?
    /// Default false.
    #[serde(default)]
    pub offline_access: bool,
    /// Account realms this client may administer through the admin API (with a token from the
    /// client_credentials grant, scope `accounts:admin`). Empty: no admin access.
    #[serde(default)]
    pub admin_realms: Vec<String>,
    /// RISKY: this client may administer every realm, present and future. Off by default;
    /// a wildcard in `admin_realms` is refused so that this is never granted by accident.
    #[serde(default)]
    pub admin_realms_all: bool,
}

/// A client's authentication method at the broker's token endpoint (OIDC Core §9).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuthMethod {
    /// A shared secret, by HTTP Basic or (equally accepted) in the form body.
    #[default]
    ClientSecretBasic,
    ClientSecretPost,
    /// A JWT signed with the client's private key (RFC 7523); no secret is shared.
    PrivateKeyJwt,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SubjectType {
    #[default]
    Account,
    Pairwise,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionConfig {
    /// An SSO session ends after this many seconds without use...
    #[serde(default = "default_idle")]
    pub idle_secs: u64,
    /// ...and in any case this many seconds after sign-in.
    #[serde(default = "default_absolute")]
    pub absolute_secs: u64,
    /// Seconds a citizen has to finish signing in upstream.
    #[serde(default = "default_pending")]
    pub pending_login_secs: u64,
    /// How long a recorded consent is remembered, in days.
    #[serde(default = "default_consent_days")]
    pub consent_days: u64,
}

impl Default for SessionConfig {
    fn default() -> Self {
        toml::from_str("").expect("defaults parse")
    }
}

fn default_idle() -> u64 {
    1800
}
fn default_absolute() -> u64 {
    8 * 3600
}
fn default_pending() -> u64 {
    600
}
fn default_consent_days() -> u64 {
    365
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    #[serde(default = "default_code_ttl")]
    pub code_secs: u64,
    #[serde(default = "default_token_ttl")]
    pub id_token_secs: u64,
    #[serde(default = "default_token_ttl")]
    pub access_token_secs: u64,
    /// How long a refresh token lives unused; each use gives a new one (a working day: 10 h).
    #[serde(default = "default_refresh_ttl")]
    pub refresh_token_secs: u64,
}

fn default_refresh_ttl() -> u64 {
    10 * 3600
}

impl Default for TokenConfig {
    fn default() -> Self {
        toml::from_str("").expect("defaults parse")
    }
}

fn default_code_ttl() -> u64 {
    60
}
fn default_token_ttl() -> u64 {
    300
}

/// The HTTP server's own bounds.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Seconds a connection has to deliver a request's headers (slowloris is cut off).
    #[serde(default = "default_header_timeout")]
    pub header_read_timeout_secs: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            header_read_timeout_secs: default_header_timeout(),
        }
    }
}

fn default_header_timeout() -> u64 {
    10
}

/// Requests per minute before a 429 (see `limits.rs`). Generous by default: many citizens
/// share one public address behind a commune office's NAT.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Per source address, at `/authorize` (each may leave a pending login).
    #[serde(default = "default_authorize_limit")]
    pub authorize_per_minute: u32,
    /// Per source address, at `/callback`.
    #[serde(default = "default_authorize_limit")]
    pub callback_per_minute: u32,
    /// Per source address, at `/token`.
    #[serde(default = "default_token_limit")]
    pub token_per_minute: u32,
    /// Per client, at `/token`.
    #[serde(default = "default_client_limit")]
    pub token_per_client_per_minute: u32,
    /// Per source address, at the admin API.
    #[serde(default = "default_token_limit")]
    pub admin_per_minute: u32,
    /// Per client, at the admin API.
    #[serde(default = "default_token_limit")]
    pub admin_per_client_per_minute: u32,
    /// Pending logins started (all sources, all nodes) per `sessions.pending_login_secs`
    /// window; beyond it `/authorize` answers 503 with `Retry-After`. Each one is at most a few
    /// KB in the Store (its parameters are length-capped).
    #[serde(default = "default_pending_logins_max")]
    pub pending_logins_max: u32,
    /// Behind a reverse proxy or load balancer: take the source address from the first
    /// `X-Forwarded-For` entry. Only when every request passes through a proxy that sets it.
    #[serde(default)]
    pub trust_forwarded_for: bool,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        toml::from_str("").expect("defaults parse")
    }
}

fn default_authorize_limit() -> u32 {
    600
}
fn default_token_limit() -> u32 {
    3000
}
fn default_pending_logins_max() -> u32 {
    100_000
}
fn default_client_limit() -> u32 {
    20_000
}

/// Where short-lived state lives, and the key that seals it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// `memory` (the default: this process only) or `redis://host:port[/db]`; for a Redis
    /// Cluster, its seed nodes separated by commas, or one `redis+cluster://host:port`.
    #[serde(default = "default_store_url")]
    pub url: String,
    /// AES-256-GCM key, 32 bytes in base64, sealing every value the broker writes to the Store
    /// (and the shared signing keys it writes to the directory). Required with a shared Store.
    pub sealing_key: Option<Secret>,
    /// How records are written: `postcard` (the default), or `json`, as the releases before
    /// the seventh session of 12-05 wrote them — for a rolling update from such a release, while
    /// its nodes, which read JSON only, share the Store. Every node reads both.
    #[serde(default)]
    pub record_encoding: RecordEncoding,
}

/// [`StoreConfig::record_encoding`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordEncoding {
    #[default]
    Postcard,
    Json,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            url: default_store_url(),
            sealing_key: None,
            record_encoding: RecordEncoding::default(),
        }
    }
}

fn default_store_url() -> String {
    "memory".into()
}

impl StoreConfig {
    /// The Redis URLs, or none for the memory Store.
    pub fn redis_urls(&self) -> Vec<String> {
        if self.url.trim() == "memory" {
            return Vec::new();
        }
        self.url
            .split(',')
            .map(|u| u.trim().to_owned())
            .filter(|u| !u.is_empty())
            .collect()
    }

    /// Whether other nodes share this Store (so secrets must be shared too).
    pub fn is_shared(&self) -> bool {
        !self.redis_urls().is_empty()
    }
}

/// PKCS#8 PEM files of the signing keys. A key not given is generated once and kept in the
/// directory, sealed with `[store] sealing_key`, so every node sharing the directory signs with
/// it; without a sealing key it is generated at each start (one node and the demo only).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeysConfig {
    pub es256_pem: Option<PathBuf>,
    pub rs256_pem: Option<PathBuf>,
    pub eddsa_pem: Option<PathBuf>,
    /// Seconds between two reloads of the shared keys (how soon `lienthong keys rotate` reaches
    /// every node).
    #[serde(default = "default_reload")]
    pub reload_secs: u64,
}

impl Default for KeysConfig {
    fn default() -> Self {
        Self {
            es256_pem: None,
            rs256_pem: None,
            eddsa_pem: None,
            reload_secs: default_reload(),
        }
    }
}

fn default_reload() -> u64 {
    60
}
