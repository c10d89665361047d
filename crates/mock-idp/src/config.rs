//! The mock IdP's configuration file (TOML). See `config/mock-idp.example.toml`.

use std::net::SocketAddr;
use std::path::PathBuf;

use lienthong_protocol::secret::Secret;
use serde::Deserialize;

/// Which claim names the IdP speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ClaimProfile {
    /// OIDC standard names (`name`, `birthdate`, `gender`, ...) with the ID number in
    /// `preferred_username`, as the national SSO realm (Keycloak) does. `acr` is `"1"` or `"2"`.
    #[default]
    Standard,
    /// The national portal gateway's names (`TechID`, `HoVaTen`, `SoDinhDanh`, ...), delivered
    /// by userinfo; `acr` is `"LoA1"` or `"LoA2"`.
    Vnconnect,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientRegistration {
    pub id: String,
    pub secret: Secret,
    pub redirect_uris: Vec<String>,
    #[serde(default)]
    pub post_logout_redirect_uris: Vec<String>,
}

/// Deliberate misbehaviour, for testing that a relying party refuses it. Never enable in a demo.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Faults {
    /// Put a nonce other than the one the client sent into every ID token.
    #[serde(default)]
    pub warning_wrong_id_token_nonce: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address to listen on.
    #[serde(default = "default_bind")]
    pub bind: SocketAddr,
    /// The issuer URL; defaults to `http://{bind}/realms/citizen`. Its path is the realm path.
    pub issuer: Option<String>,
    /// The roster file (JSON); defaults to the shipped test citizens.
    pub citizens: Option<PathBuf>,
    #[serde(default)]
    pub profile: ClaimProfile,
    /// `RS256` (like the national realm) or `ES256`.
    #[serde(default = "default_alg")]
    pub signing_alg: String,
    /// The fixed test password, shown on the login page.
    #[serde(default = "default_password")]
    pub password: String,
    /// The fixed test OTP, shown on the login page.
    #[serde(default = "default_otp")]
    pub otp: String,
    /// Seconds an ID token and access token live.
    #[serde(default = "default_token_ttl")]
    pub token_ttl_secs: u64,
    #[serde(default)]
    pub clients: Vec<ClientRegistration>,
    #[serde(default)]
    pub faults: Faults,
}

fn default_bind() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8081))
}
fn default_alg() -> String {
    "RS256".into()
}
fn default_password() -> String {
    "matkhau-thu".into()
}
fn default_otp() -> String {
    "123456".into()
}
fn default_token_ttl() -> u64 {
    300
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl Config {
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Invalid(e.to_string()))
    }

    /// A configuration with defaults, one client, listening on `bind`.
    pub fn with_client(bind: SocketAddr, client: ClientRegistration) -> Self {
        let mut config = Self::from_toml("").expect("defaults parse");
        config.bind = bind;
        config.clients.push(client);
        config
    }
}
