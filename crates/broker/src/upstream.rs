//! The connector to the national IdP: Lienthong as an OpenID Connect relying party.
//!
//! Standard OIDC through `openidconnect` (discovery, authorization code with PKCE and nonce,
//! ID token validation), then an optional userinfo call, then the claim mapping that turns the
//! upstream's names — standard, the national portal gateway's, or whatever an agreement says —
//! into one [`CitizenIdentity`] and a [`Level`]. Every endpoint, claim name and `acr` value is
//! configuration; nothing about the real national IdP is assumed in code.

use std::sync::Arc;
use std::time::{Duration, Instant};

use jsonwebtoken::Algorithm;
use jsonwebtoken::jwk::JwkSet;
use lienthong_protocol::{PublicKeys, SharedClock};
use openidconnect::core::{
    CoreAuthDisplay, CoreAuthPrompt, CoreAuthenticationFlow, CoreClaimName, CoreClaimType,
    CoreClient, CoreClientAuthMethod, CoreGrantType, CoreJsonWebKey,
    CoreJweContentEncryptionAlgorithm, CoreJweKeyManagementAlgorithm, CoreJwsSigningAlgorithm,
    CoreResponseMode, CoreResponseType, CoreSubjectIdentifierType,
};
use openidconnect::{
    AdditionalProviderMetadata, AuthType, AuthenticationContextClass, AuthorizationCode, ClientId,
    ClientSecret, CsrfToken, IssuerUrl, LanguageTag, LoginHint, Nonce, OAuth2TokenResponse,
    PkceCodeChallenge, PkceCodeVerifier, ProviderMetadata, RedirectUrl, Scope, TokenResponse,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio::sync::RwLock;

use crate::claims::ClaimMapper;
use crate::config::{UpstreamAlg, UpstreamAuthMethod, UpstreamConfig, UserinfoMethod};
use crate::identity::CitizenIdentity;
use crate::level::Level;

/// Discovery fields the core metadata type does not carry: RFC 9207's flag, and RP-Initiated
/// Logout's end-session endpoint.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ExtraMetadata {
    #[serde(default)]
    authorization_response_iss_parameter_supported: Option<bool>,
    #[serde(default)]
    end_session_endpoint: Option<String>,
}
impl AdditionalProviderMetadata for ExtraMetadata {}

type Metadata = ProviderMetadata<
    ExtraMetadata,
    CoreAuthDisplay,
    CoreClientAuthMethod,
    CoreClaimName,
    CoreClaimType,
    CoreGrantType,
    CoreJweContentEncryptionAlgorithm,
    CoreJweKeyManagementAlgorithm,
    CoreJsonWebKey,
    CoreResponseMode,
    CoreResponseType,
    CoreSubjectIdentifierType,
>;

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// The IdP could not be reached or answered with a failure: worth retrying later.
    #[error("national IdP unavailable: {0}")]
    Unavailable(String),
    /// The IdP's answer failed validation (issuer, signature, nonce, ...): never retried as is.
    #[error("national IdP answer refused: {0}")]
    Rejected(String),
    /// The answer was valid but gives no usable citizen identity.
    #[error("unusable identity from the national IdP: {0}")]
    Identity(#[from] crate::claims::UnusableIdentity),
}

/// What an upstream login needs to be resumed at the callback. Kept in the pending login.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UpstreamRequest {
    pub nonce: String,
    pub pkce_verifier: String,
}

impl UpstreamRequest {
    /// A fresh nonce and PKCE verifier for one upstream login.
    pub fn generate() -> Self {
        Self {
            nonce: lienthong_protocol::secret::random_token(32),
            pkce_verifier: PkceCodeVerifier::new(lienthong_protocol::secret::random_token(32))
                .secret()
                .clone(),
        }
    }
}

/// One finding of [`Connector::check_online`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Ok,
    Warning,
    Error,
}

/// Options of one upstream authorization request.
#[derive(Debug, Default)]
pub struct StartOptions<'a> {
    pub minimum_level: Option<Level>,
    pub force_login: bool,
    pub max_age: Option<u64>,
    pub login_hint: Option<&'a str>,
    pub ui_locales: &'a [String],
}

/// A finished upstream login.
#[derive(Debug, Clone)]
pub struct UpstreamLogin {
    pub identity: CitizenIdentity,
    pub level: Level,
    pub auth_time: Option<u64>,
    pub amr: Vec<String>,
    /// Kept for the upstream end-session call (`id_token_hint`).
    pub id_token: String,
}

/// The upstream client, as the typestates of `openidconnect` name it once configured.
type UpstreamClient = CoreClient<
    openidconnect::EndpointSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointMaybeSet,
    openidconnect::EndpointMaybeSet,
>;

/// One discovery of the IdP and the client configured from it.
struct Discovered {
    at: Instant,
    metadata: Metadata,
    client: UpstreamClient,
    /// The IdP's keys, parsed once per discovery for signature checks on aws-lc-rs.
    keys: PublicKeys,
}

pub struct Connector {
    config: UpstreamConfig,
    redirect_uri: RedirectUrl,
    http: openidconnect::reqwest::Client,
    mapper: ClaimMapper,
    /// `upstream.id_token_algs`, as openidconnect names them and as the signature check takes
    /// them (each converted once, at start).
    id_token_algs: Vec<CoreJwsSigningAlgorithm>,
    signature_algs: Vec<Algorithm>,
    /// The ID token's `exp` and `iat` are judged by the broker's clock.
    clock: SharedClock,
    /// When the JWKS was last fetched again for an unknown `kid` (seconds since the epoch).
    last_refetch: std::sync::atomic::AtomicU64,
    discovered: RwLock<Option<Arc<Discovered>>>,
}

impl Connector {
    pub fn new(
        config: UpstreamConfig,
        broker_issuer: &str,
        clock: SharedClock,
    ) -> Result<Self, String> {
        let redirect = config
            .redirect_uri
            .clone()
            .unwrap_or_else(|| format!("{broker_issuer}/callback"));
        let redirect_uri =
            RedirectUrl::new(redirect).map_err(|e| format!("upstream.redirect_uri: {e}"))?;
        IssuerUrl::new(config.issuer.clone()).map_err(|e| format!("upstream.issuer: {e}"))?;
        // No redirects: a redirect from the IdP's token endpoint is never legitimate and
        // following it would be an SSRF vector (openidconnect's own advice).
        let http = openidconnect::reqwest::Client::builder()
            .redirect(openidconnect::reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(config.timeout_secs))
            .build()
            .map_err(|e| e.to_string())?;
        let id_token_algs = config.id_token_algs.iter().map(|a| core_alg(*a)).collect();
        let signature_algs = config.id_token_algs.iter().map(|a| a.jwt()).collect();
        Ok(Self {
            mapper: ClaimMapper::new(&config),
            config,
            redirect_uri,
            http,
            id_token_algs,
            signature_algs,
            clock,
            last_refetch: std::sync::atomic::AtomicU64::new(0),
            discovered: RwLock::new(None),
        })
    }

    pub fn issuer(&self) -> &str {
        &self.config.issuer
    }

    /// Discovery and the client built from it, cached for `metadata_ttl_secs`. Fetched lazily,
    /// so the broker starts (and shows a clear page) even while the IdP is down; built once per
    /// refresh, not per login.
    async fn discovered(&self) -> Result<Arc<Discovered>, UpstreamError> {
        self.discovered_within(Duration::from_secs(self.config.metadata_ttl_secs))
            .await
    }

    /// Discovery no older than `ttl` (a zero `ttl` fetches it again).
    async fn discovered_within(&self, ttl: Duration) -> Result<Arc<Discovered>, UpstreamError> {
        if let Some(d) = self.discovered.read().await.as_ref()
            && d.at.elapsed() < ttl
        {
            return Ok(d.clone());
        }
        let mut slot = self.discovered.write().await;
        if let Some(d) = slot.as_ref()
            && d.at.elapsed() < ttl
        {
            return Ok(d.clone());
        }
        let issuer = IssuerUrl::new(self.config.issuer.clone())
            .map_err(|e| UpstreamError::Unavailable(e.to_string()))?;
        let metadata = Metadata::discover_async(issuer, &self.http)
            .await
            .map_err(|e| UpstreamError::Unavailable(format!("discovery: {e}")))?;
        let auth = match self.config.token_endpoint_auth_method {
            UpstreamAuthMethod::ClientSecretPost => AuthType::RequestBody,
            UpstreamAuthMethod::ClientSecretBasic => AuthType::BasicAuth,
        };
        let client = CoreClient::from_provider_metadata(
            metadata.clone(),
            ClientId::new(self.config.client_id.clone()),
            Some(ClientSecret::new(
                self.config.client_secret.expose().to_owned(),
            )),
        )
        .set_redirect_uri(self.redirect_uri.clone())
        .set_auth_type(auth);
        let jwks: JwkSet = serde_json::to_value(metadata.jwks())
            .and_then(serde_json::from_value)
            .map_err(|e| UpstreamError::Unavailable(format!("the IdP's JWKS: {e}")))?;
        let fresh = Arc::new(Discovered {
            at: Instant::now(),
            metadata,
            client,
            keys: PublicKeys::new(&jwks),
        });
        *slot = Some(fresh.clone());
        Ok(fresh)
    }

    /// The upstream authorization URL for a login whose `state` is given, with the nonce and
    /// PKCE challenge of `upstream` ([`UpstreamRequest::generate`]), which the callback needs.
    pub async fn start(
        &self,
        state: &str,
        upstream: &UpstreamRequest,
        opts: StartOptions<'_>,
    ) -> Result<String, UpstreamError> {
        let discovered = self.discovered().await?;
        let client = &discovered.client;
        let challenge = PkceCodeChallenge::from_code_verifier_sha256(&PkceCodeVerifier::new(
            upstream.pkce_verifier.clone(),
        ));
        let (state, nonce) = (state.to_owned(), upstream.nonce.clone());
        let mut request = client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                move || CsrfToken::new(state),
                move || Nonce::new(nonce),
            )
            .set_pkce_challenge(challenge);
        for scope in self.config.scopes.iter().filter(|s| *s != "openid") {
            request = request.add_scope(Scope::new(scope.clone()));
        }
        if let Some(acr) = opts.minimum_level.and_then(|l| self.upstream_acr(l)) {
            request = request.add_auth_context_value(AuthenticationContextClass::new(acr));
        }
        if opts.force_login {
            request = request.add_prompt(CoreAuthPrompt::Login);
        }
        if let Some(max_age) = opts.max_age {
            request = request.set_max_age(Duration::from_secs(max_age));
        }
        if let Some(hint) = opts.login_hint {
            request = request.set_login_hint(LoginHint::new(hint.to_owned()));
        }
        for locale in opts.ui_locales {
            request = request.add_ui_locale(LanguageTag::new(locale.clone()));
        }
        let (url, _, _) = request.url();
        Ok(url.to_string())
    }

    /// Where to send the citizen so the national IdP ends its session too (RP-Initiated Logout),
    /// coming back to `post_logout_redirect_uri` with `state`; `None` when the IdP has no
    /// end-session endpoint (or cannot be reached: the broker's own sign-out stands regardless).
    pub async fn end_session_url(
        &self,
        id_token_hint: Option<&str>,
        post_logout_redirect_uri: &str,
        state: &str,
    ) -> Option<String> {
        let discovered = self.discovered().await.ok()?;
        let endpoint = discovered
            .metadata
            .additional_metadata()
            .end_session_endpoint
            .as_deref()?;
        let mut url = url::Url::parse(endpoint).ok()?;
        if let Some(hint) = id_token_hint {
            url.query_pairs_mut().append_pair("id_token_hint", hint);
        }
        url.query_pairs_mut()
            .append_pair("post_logout_redirect_uri", post_logout_redirect_uri)
            .append_pair("client_id", &self.config.client_id)
            .append_pair("state", state);
        Some(url.into())
    }

    /// Checks the configuration against what the IdP publishes now: its discovery and keys are
    /// fetched; the configured algorithms, scopes, claim names and `acr` values are compared
    /// with `id_token_signing_alg_values_supported`, `scopes_supported`, `claims_supported` and
    /// `acr_values_supported`; a plain-http issuer that is not on loopback is flagged.
    pub async fn check_online(&self) -> Result<Vec<(Severity, String)>, UpstreamError> {
        let d = self.discovered_within(Duration::ZERO).await?;
        let m = &d.metadata;
        let mut out = Vec::new();
        out.push(if d.keys.is_empty() {
            (
                Severity::Error,
                "the IdP publishes no signing keys".to_owned(),
            )
        } else {
            (
                Severity::Ok,
                format!("discovery and JWKS fetched: {} key(s)", d.keys.len()),
            )
        });
        let signs: Vec<String> = m
            .id_token_signing_alg_values_supported()
            .iter()
            .filter_map(|a| serde_json::to_value(a).ok())
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect();
        let ours: Vec<String> = self
            .config
            .id_token_algs
            .iter()
            .map(|a| format!("{a:?}"))
            .collect();
        out.push(if ours.iter().any(|a| signs.contains(a)) {
            (
                Severity::Ok,
                format!("ID token algorithms: the IdP signs with {signs:?}"),
            )
        } else {
            (
                Severity::Error,
                format!("upstream.id_token_algs = {ours:?}, but the IdP signs only with {signs:?}"),
            )
        });
        if let Some(scopes) = m.scopes_supported() {
            let published: Vec<&str> = scopes.iter().map(|s| s.as_str()).collect();
            for scope in &self.config.scopes {
                if !published.contains(&scope.as_str()) {
                    out.push((
                        Severity::Error,
                        format!("upstream.scopes: {scope:?} is not in the IdP's scopes_supported {published:?}"),
                    ));
                }
            }
        }
        match m.claims_supported() {
            Some(claims) => {
                let published: Vec<&str> = claims.iter().map(|c| c.as_str()).collect();
                for (key, name, required) in self.mapper.mapped() {
                    if !published.contains(&name) {
                        let severity = if required {
                            Severity::Error
                        } else {
                            Severity::Warning
                        };
                        out.push((
                            severity,
                            format!("{key} = {name:?} is not in the IdP's claims_supported"),
                        ));
                    }
                }
            }
            None => out.push((
                Severity::Warning,
                "the IdP publishes no claims_supported: claim names cannot be checked".into(),
            )),
        }
        if let Some(acrs) = m.acr_values_supported() {
            let published: Vec<&str> = acrs.iter().map(|a| a.as_str()).collect();
            if !self
                .config
                .acr_map
                .keys()
                .any(|k| published.contains(&k.as_str()))
            {
                out.push((
                    Severity::Error,
                    format!("upstream.acr_map knows none of the IdP's acr_values_supported {published:?}"),
                ));
            }
        }
        if let Ok(url) = url::Url::parse(&self.config.issuer)
            && url.scheme() == "http"
            && !matches!(url.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"))
        {
            out.push((
                Severity::Warning,
                format!(
                    "upstream.issuer {} is plain HTTP and not on this machine",
                    self.config.issuer
                ),
            ));
        }
        Ok(out)
    }

    /// Whether an unknown-`kid` re-fetch of the JWKS may run now (one a minute at most).
    fn may_refetch(&self) -> bool {
        let now = self.clock.now_secs();
        let last = self.last_refetch.load(std::sync::atomic::Ordering::Relaxed);
        now >= last + 60
            && self
                .last_refetch
                .compare_exchange(
                    last,
                    now,
                    std::sync::atomic::Ordering::Relaxed,
                    std::sync::atomic::Ordering::Relaxed,
                )
                .is_ok()
    }

    /// The upstream value standing for `level` (the first listed in `acr_map`).
    fn upstream_acr(&self, level: Level) -> Option<String> {
        self.config
            .acr_map
            .iter()
            .find(|(_, l)| **l == level)
            .map(|(k, _)| k.clone())
    }

    /// RFC 9207: when the IdP sends `iss` it must be its issuer; when it says it always sends
    /// one, a missing one is a mix-up attempt.
    pub async fn check_response_issuer(&self, iss: Option<&str>) -> Result<(), UpstreamError> {
        let discovered = self.discovered().await?;
        let metadata = &discovered.metadata;
        let required = metadata
            .additional_metadata()
            .authorization_response_iss_parameter_supported
            == Some(true);
        match iss {
            Some(iss) if iss == metadata.issuer().as_str() => Ok(()),
            Some(_) => Err(UpstreamError::Rejected(
                "iss in the authorization response is not the IdP's".into(),
            )),
            None if required => Err(UpstreamError::Rejected(
                "iss missing from the authorization response".into(),
            )),
            None => Ok(()),
        }
    }

    /// Exchanges the code, validates the ID token, calls userinfo and maps the claims.
    pub async fn finish(
        &self,
        code: &str,
        request: &UpstreamRequest,
    ) -> Result<UpstreamLogin, UpstreamError> {
        let discovered = self.discovered().await?;
        let client = &discovered.client;
        let response = client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(|e| UpstreamError::Unavailable(e.to_string()))?
            .set_pkce_verifier(PkceCodeVerifier::new(request.pkce_verifier.clone()))
            .request_async(&self.http)
            .await
            .map_err(|e| match e {
                openidconnect::RequestTokenError::ServerResponse(r) => {
                    UpstreamError::Rejected(format!("token endpoint: {r}"))
                }
                other => UpstreamError::Unavailable(format!("token endpoint: {other}")),
            })?;
        let id_token = response
            .id_token()
            .ok_or_else(|| UpstreamError::Rejected("no ID token".into()))?;
        // The signature is checked here, on aws-lc-rs (the one crypto stack): openidconnect's
        // own check runs on RustCrypto's bignum RSA, 5 % of a login's CPU. Its claim checks —
        // iss, aud, azp, exp, iat, nonce — still run below, on the token this has verified.
        let id_token_text = id_token.to_string();
        // The claims come from the verified payload: every claim, including names
        // openidconnect's core type ignores.
        let (discovered, mut claims) = match verify_signature(
            &discovered.keys,
            &self.signature_algs,
            &id_token_text,
        ) {
            Ok(claims) => (discovered, claims),
            // A key the cached JWKS does not have: the IdP may have rolled its keys. Fetch the
            // set again — at most once a minute, so forged `kid`s cannot make us hammer it.
            Err(e) if discovered.keys.unknown_kid(&id_token_text) && self.may_refetch() => {
                tracing::info!(error = %e, "ID token signed by a key not in the cached JWKS: fetching the IdP's keys again");
                let fresh = self.discovered_within(Duration::ZERO).await?;
                let claims = verify_signature(&fresh.keys, &self.signature_algs, &id_token_text)?;
                (fresh, claims)
            }
            Err(e) => return Err(e),
        };
        let client = &discovered.client;
        let clock = self.clock.clone();
        let verifier = client
            .id_token_verifier()
            .set_allowed_algs(self.id_token_algs.clone())
            .insecure_disable_signature_check()
            .set_time_fn(move || {
                chrono::DateTime::from_timestamp_millis(clock.now_millis() as i64)
                    .unwrap_or_default()
            });
        let verified = id_token
            .claims(&verifier, &Nonce::new(request.nonce.clone()))
            .map_err(|e| UpstreamError::Rejected(format!("ID token: {e}")))?;
        let auth_time = verified.auth_time().map(|t| t.timestamp() as u64);
        let amr = verified
            .auth_method_refs()
            .map(|v| v.iter().map(|a| a.as_str().to_owned()).collect())
            .unwrap_or_default();
        if self.config.userinfo != UserinfoMethod::None {
            let url = discovered.metadata.userinfo_endpoint().ok_or_else(|| {
                UpstreamError::Rejected("the IdP has no userinfo endpoint".into())
            })?;
            let userinfo = self
                .userinfo(url.as_str(), response.access_token().secret())
                .await?;
            if let Some(sub) = userinfo.get("sub")
                && Some(sub) != claims.get("sub")
            {
                return Err(UpstreamError::Rejected(
                    "userinfo sub differs from the ID token's".into(),
                ));
            }
            for (k, v) in userinfo {
                claims.entry(k).or_insert(v);
            }
        }
        let this_year = time::OffsetDateTime::from_unix_timestamp(self.clock.now_secs() as i64)
            .map(|t| t.year())
            .unwrap_or(i32::MAX);
        let (identity, level) = self.mapper.map(&claims, this_year)?;
        Ok(UpstreamLogin {
            identity,
            level,
            auth_time,
            amr,
            id_token: id_token_text,
        })
    }

    async fn userinfo(
        &self,
        url: &str,
        access_token: &str,
    ) -> Result<Map<String, Value>, UpstreamError> {
        let request = match self.config.userinfo {
            UserinfoMethod::Post => self.http.post(url),
            _ => self.http.get(url),
        };
        let response = request
            .bearer_auth(access_token)
            .header("accept", "application/json")
            .send()
            .await
            .map_err(|e| UpstreamError::Unavailable(format!("userinfo: {e}")))?;
        if !response.status().is_success() {
            return Err(UpstreamError::Unavailable(format!(
                "userinfo answered {}",
                response.status()
            )));
        }
        response
            .json()
            .await
            .map_err(|e| UpstreamError::Rejected(format!("userinfo is not a JSON object: {e}")))
    }
}

/// The upstream ID token's signature, by one of the IdP's published keys, with an algorithm
/// from `upstream.id_token_algs` and nothing looser ([`lienthong_protocol::jws`]); returns
/// the verified payload's claims.
pub(crate) fn verify_signature(
    keys: &PublicKeys,
    allowed: &[Algorithm],
    token: &str,
) -> Result<Map<String, Value>, UpstreamError> {
    match keys.verify(allowed, token) {
        Ok(Value::Object(claims)) => Ok(claims),
        Ok(_) => Err(UpstreamError::Rejected(
            "the ID token's payload is not a JSON object".into(),
        )),
        Err(e) => Err(UpstreamError::Rejected(format!("ID token signature: {e}"))),
    }
}

fn core_alg(alg: UpstreamAlg) -> CoreJwsSigningAlgorithm {
    match alg {
        UpstreamAlg::RS256 => CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
        UpstreamAlg::ES256 => CoreJwsSigningAlgorithm::EcdsaP256Sha256,
        UpstreamAlg::PS256 => CoreJwsSigningAlgorithm::RsaSsaPssSha256,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use lienthong_protocol::KeySet;

    fn claims() -> serde_json::Value {
        serde_json::json!({"iss": "https://idp", "sub": "s", "aud": "lienthong", "exp": 4102444800u64})
    }

    #[test]
    fn the_upstream_signature_is_checked_strictly() {
        let idp = KeySet::generate(&[Algorithm::RS256, Algorithm::ES256]).unwrap();
        let jwks = idp.jwks();
        let keys = PublicKeys::new(&jwks);
        let allowed = [Algorithm::RS256, Algorithm::ES256];
        for alg in [Algorithm::RS256, Algorithm::ES256] {
            let good = idp.sign(alg, "JWT", &claims()).unwrap();
            assert!(verify_signature(&keys, &allowed, &good).is_ok(), "{alg:?}");
            // Someone else's signature under a published kid.
            let (signed_part, _) = good.rsplit_once('.').unwrap();
            let other = KeySet::generate(&[alg])
                .unwrap()
                .sign(alg, "JWT", &claims())
                .unwrap();
            let forged = format!("{signed_part}.{}", other.rsplit_once('.').unwrap().1);
            assert!(
                verify_signature(&keys, &allowed, &forged).is_err(),
                "{alg:?} forged"
            );
        }
        // An algorithm not allowed, even though its key is published.
        let rs = idp.sign(Algorithm::RS256, "JWT", &claims()).unwrap();
        assert!(verify_signature(&keys, &[Algorithm::ES256], &rs).is_err());
        // alg: none.
        let b64 = |v: &serde_json::Value| URL_SAFE_NO_PAD.encode(v.to_string());
        let none = format!(
            "{}.{}.",
            b64(&serde_json::json!({"alg": "none"})),
            b64(&claims())
        );
        assert!(verify_signature(&keys, &allowed, &none).is_err());
        // HS256 keyed with the public key (the classic algorithm confusion).
        let mut header = jsonwebtoken::Header::new(Algorithm::HS256);
        header.kid = jwks.keys[0].common.key_id.clone();
        let public = serde_json::to_string(&jwks.keys[0]).unwrap();
        let hs = jsonwebtoken::encode(
            &header,
            &claims(),
            &jsonwebtoken::EncodingKey::from_secret(public.as_bytes()),
        )
        .unwrap();
        assert!(verify_signature(&keys, &allowed, &hs).is_err());
        // A kid the IdP never published.
        let es = idp.sign(Algorithm::ES256, "JWT", &claims()).unwrap();
        let mut header = jsonwebtoken::Header::new(Algorithm::ES256);
        header.kid = Some("nobody".into());
        let unknown = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).unwrap()),
            es.split_once('.').unwrap().1
        );
        assert!(verify_signature(&keys, &allowed, &unknown).is_err());
    }
}
