//! The connector to the national IdP: Lienthong as an OpenID Connect relying party.
//!
//! Standard OIDC through `openidconnect` (discovery, authorization code with PKCE and nonce,
//! ID token validation), then an optional userinfo call, then the claim mapping that turns the
//! upstream's names — standard, the national portal gateway's, or whatever an agreement says —
//! into one [`CitizenIdentity`] and a [`Level`]. Every endpoint, claim name and `acr` value is
//! configuration; nothing about the real national IdP is assumed in code.

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use lienthong_adapter::{CitizenId, Sex};
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

use crate::config::{ClaimPreset, UpstreamConfig};
use crate::identity::CitizenIdentity;
use crate::level::Level;

/// RFC 9207's discovery flag, which the core metadata type does not carry.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct IssParameter {
    #[serde(default)]
    authorization_response_iss_parameter_supported: Option<bool>,
}
impl AdditionalProviderMetadata for IssParameter {}

type Metadata = ProviderMetadata<
    IssParameter,
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
    /// The answer was valid but does not describe a usable citizen identity.
    #[error("unusable identity from the national IdP: {0}")]
    Identity(String),
}

/// What an upstream login needs to be resumed at the callback. Kept in the pending login.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UpstreamRequest {
    pub nonce: String,
    pub pkce_verifier: String,
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

/// Resolved claim names (preset + overrides).
#[derive(Debug, Clone)]
struct ClaimNames {
    subject: String,
    citizen_id: String,
    legacy_id: String,
    name: String,
    birthdate: String,
    gender: String,
    phone: String,
    email: String,
    address: String,
    acr: String,
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
}

pub struct Connector {
    config: UpstreamConfig,
    redirect_uri: RedirectUrl,
    http: openidconnect::reqwest::Client,
    names: ClaimNames,
    discovered: RwLock<Option<Arc<Discovered>>>,
}

impl Connector {
    pub fn new(config: UpstreamConfig, broker_issuer: &str) -> Result<Self, String> {
        let redirect = config
            .redirect_uri
            .clone()
            .unwrap_or_else(|| format!("{broker_issuer}/callback"));
        let redirect_uri =
            RedirectUrl::new(redirect).map_err(|e| format!("upstream.redirect_uri: {e}"))?;
        IssuerUrl::new(config.issuer.clone()).map_err(|e| format!("upstream.issuer: {e}"))?;
        if !matches!(config.userinfo.as_str(), "get" | "post" | "none") {
            return Err(format!(
                "upstream.userinfo {:?}: use get, post or none",
                config.userinfo
            ));
        }
        if !matches!(
            config.token_endpoint_auth_method.as_str(),
            "client_secret_basic" | "client_secret_post"
        ) {
            return Err(
                "upstream.token_endpoint_auth_method: client_secret_basic or client_secret_post"
                    .into(),
            );
        }
        for alg in &config.id_token_algs {
            parse_alg(alg)?;
        }
        if let Some((acr, level)) = config
            .acr_map
            .iter()
            .find(|(_, l)| Level::new(**l).is_none())
        {
            return Err(format!(
                "upstream.acr_map: {acr:?} = {level} is not a level (1 or 2)"
            ));
        }
        // No redirects: a redirect from the IdP's token endpoint is never legitimate and
        // following it would be an SSRF vector (openidconnect's own advice).
        let http = openidconnect::reqwest::Client::builder()
            .redirect(openidconnect::reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(config.timeout_secs))
            .build()
            .map_err(|e| e.to_string())?;
        let names = resolve_names(&config);
        Ok(Self {
            config,
            redirect_uri,
            http,
            names,
            discovered: RwLock::new(None),
        })
    }

    pub fn issuer(&self) -> &str {
        &self.config.issuer
    }

    /// Discovery, cached for `metadata_ttl_secs`. Fetched lazily, so the broker starts (and shows
    /// a clear page) even while the IdP is down.
    /// Discovery and the client built from it, cached for `metadata_ttl_secs`. Fetched lazily,
    /// so the broker starts (and shows a clear page) even while the IdP is down; built once per
    /// refresh, not per login.
    async fn discovered(&self) -> Result<Arc<Discovered>, UpstreamError> {
        let ttl = Duration::from_secs(self.config.metadata_ttl_secs);
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
        let auth = match self.config.token_endpoint_auth_method.as_str() {
            "client_secret_post" => AuthType::RequestBody,
            _ => AuthType::BasicAuth,
        };
        let client = CoreClient::from_provider_metadata(
            metadata.clone(),
            ClientId::new(self.config.client_id.clone()),
            Some(ClientSecret::new(self.config.client_secret.clone())),
        )
        .set_redirect_uri(self.redirect_uri.clone())
        .set_auth_type(auth);
        let fresh = Arc::new(Discovered {
            at: Instant::now(),
            metadata,
            client,
        });
        *slot = Some(fresh.clone());
        Ok(fresh)
    }

    /// The upstream authorization URL for a login whose `state` is given, with fresh nonce and
    /// PKCE; the returned [`UpstreamRequest`] must be kept until the callback.
    pub async fn start(
        &self,
        state: &str,
        opts: StartOptions<'_>,
    ) -> Result<(String, UpstreamRequest), UpstreamError> {
        let discovered = self.discovered().await?;
        let client = &discovered.client;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let nonce = lienthong_protocol::secret::random_token(32);
        let (state, nonce_for_url) = (state.to_owned(), nonce.clone());
        let mut request = client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                move || CsrfToken::new(state),
                move || Nonce::new(nonce_for_url),
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
        Ok((
            url.to_string(),
            UpstreamRequest {
                nonce,
                pkce_verifier: verifier.secret().clone(),
            },
        ))
    }

    /// The upstream value standing for `level` (the first listed in `acr_map`).
    fn upstream_acr(&self, level: Level) -> Option<String> {
        self.config
            .acr_map
            .iter()
            .find(|(_, l)| **l == level.number())
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
        let algs: Vec<CoreJwsSigningAlgorithm> = self
            .config
            .id_token_algs
            .iter()
            .filter_map(|a| parse_alg(a).ok())
            .collect();
        let verifier = client.id_token_verifier().set_allowed_algs(algs);
        let verified = id_token
            .claims(&verifier, &Nonce::new(request.nonce.clone()))
            .map_err(|e| UpstreamError::Rejected(format!("ID token: {e}")))?;
        let auth_time = verified.auth_time().map(|t| t.timestamp() as u64);
        let amr = verified
            .auth_method_refs()
            .map(|v| v.iter().map(|a| a.as_str().to_owned()).collect())
            .unwrap_or_default();
        let id_token_text = id_token.to_string();
        // The signature is verified; read every claim, including names the core type ignores.
        let mut claims = jwt_payload(&id_token_text)?;
        if self.config.userinfo != "none" {
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
        let (identity, level) = self.map_claims(&claims)?;
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
        let request = match self.config.userinfo.as_str() {
            "post" => self.http.post(url),
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

    /// The claim mapping: upstream names -> [`CitizenIdentity`] and [`Level`].
    fn map_claims(
        &self,
        claims: &Map<String, Value>,
    ) -> Result<(CitizenIdentity, Level), UpstreamError> {
        let n = &self.names;
        let text = |name: &str| claims.get(name).and_then(text_value);
        let subject = text(&n.subject)
            .ok_or_else(|| UpstreamError::Identity(format!("no {} claim", n.subject)))?;
        let birthdate = text(&n.birthdate).and_then(|b| normalise_date(&b));
        let gender = text(&n.gender).and_then(|g| parse_sex(&g));
        let citizen_id = match text(&n.citizen_id) {
            Some(raw) => {
                let date = birthdate.as_deref().and_then(|d| {
                    time::Date::parse(d, time::macros::format_description!("[year]-[month]-[day]"))
                        .ok()
                });
                Some(
                    CitizenId::parse_checked(raw.trim(), date, None)
                        .map_err(|e| UpstreamError::Identity(format!("{}: {e}", n.citizen_id)))?,
                )
            }
            None => None,
        };
        let level = claims
            .get(&n.acr)
            .into_iter()
            .flat_map(|v| match v {
                Value::Array(items) => items.iter().filter_map(text_value).collect::<Vec<_>>(),
                other => text_value(other).into_iter().collect(),
            })
            .filter_map(|acr| self.config.acr_map.get(&acr).and_then(|l| Level::new(*l)))
            .max()
            .ok_or_else(|| {
                UpstreamError::Identity(format!("no known level in the {} claim", n.acr))
            })?;
        let identity = CitizenIdentity {
            issuer: self.config.issuer.clone(),
            subject,
            citizen_id,
            legacy_id: text(&n.legacy_id),
            name: text(&n.name),
            birthdate,
            gender,
            phone: text(&n.phone),
            email: text(&n.email),
            address: text(&n.address),
        };
        Ok((identity, level))
    }
}

fn parse_alg(alg: &str) -> Result<CoreJwsSigningAlgorithm, String> {
    match alg {
        "RS256" => Ok(CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256),
        "ES256" => Ok(CoreJwsSigningAlgorithm::EcdsaP256Sha256),
        "PS256" => Ok(CoreJwsSigningAlgorithm::RsaSsaPssSha256),
        other => Err(format!(
            "upstream.id_token_algs: {other:?} is not supported (RS256, ES256, PS256)"
        )),
    }
}

fn resolve_names(config: &UpstreamConfig) -> ClaimNames {
    let m = &config.claims;
    let preset: [&str; 10] = match m.preset {
        ClaimPreset::Standard => [
            "sub",
            "preferred_username",
            "legacy_id_number",
            "name",
            "birthdate",
            "gender",
            "phone_number",
            "email",
            "address",
            "acr",
        ],
        ClaimPreset::Vnconnect => [
            "TechID",
            "SoDinhDanh",
            "SoCMND",
            "HoVaTen",
            "NgayThangNamSinh",
            "GioiTinh",
            "SoDienThoai",
            "ThuDienTu",
            "DiaChi",
            "loAs",
        ],
    };
    let pick = |o: &Option<String>, i: usize| o.clone().unwrap_or_else(|| preset[i].to_owned());
    ClaimNames {
        subject: pick(&m.subject, 0),
        citizen_id: pick(&m.citizen_id, 1),
        legacy_id: pick(&m.legacy_id, 2),
        name: pick(&m.name, 3),
        birthdate: pick(&m.birthdate, 4),
        gender: pick(&m.gender, 5),
        phone: pick(&m.phone, 6),
        email: pick(&m.email, 7),
        address: pick(&m.address, 8),
        acr: pick(&m.acr, 9),
    }
}

/// The payload of a JWT whose signature has already been verified.
fn jwt_payload(jwt: &str) -> Result<Map<String, Value>, UpstreamError> {
    let payload = jwt
        .split('.')
        .nth(1)
        .ok_or_else(|| UpstreamError::Rejected("malformed ID token".into()))?;
    let bytes = URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|e| UpstreamError::Rejected(e.to_string()))?;
    serde_json::from_slice(&bytes).map_err(|e| UpstreamError::Rejected(e.to_string()))
}

/// A claim as text: strings as they are, numbers printed, an OIDC address by its `formatted`.
fn text_value(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Object(o) => o.get("formatted").and_then(text_value),
        _ => None,
    }
}

/// `YYYY-MM-DD`, `YYYYMMDD` (the national gateway) or `DD/MM/YYYY` -> `YYYY-MM-DD`.
fn normalise_date(raw: &str) -> Option<String> {
    let raw = raw.trim();
    let (y, m, d) = if raw.len() == 8 && raw.bytes().all(|b| b.is_ascii_digit()) {
        (&raw[..4], &raw[4..6], &raw[6..])
    } else if let [d, m, y] = raw.split('/').collect::<Vec<_>>()[..] {
        (y, m, d)
    } else if let [y, m, d] = raw.split('-').collect::<Vec<_>>()[..] {
        (y, m, d)
    } else {
        return None;
    };
    let date = format!("{y:0>4}-{m:0>2}-{d:0>2}");
    time::Date::parse(
        &date,
        time::macros::format_description!("[year]-[month]-[day]"),
    )
    .ok()?;
    Some(date)
}

fn parse_sex(raw: &str) -> Option<Sex> {
    match raw.trim().to_lowercase().as_str() {
        "male" | "nam" | "m" => Some(Sex::Male),
        "female" | "nữ" | "nu" | "f" => Some(Sex::Female),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_in_every_upstream_shape() {
        assert_eq!(normalise_date("19850412").as_deref(), Some("1985-04-12"));
        assert_eq!(normalise_date("12/04/1985").as_deref(), Some("1985-04-12"));
        assert_eq!(normalise_date("1985-04-12").as_deref(), Some("1985-04-12"));
        assert_eq!(normalise_date("1985-02-30"), None);
        assert_eq!(normalise_date("soon"), None);
    }

    #[test]
    fn vietnamese_and_oidc_gender_values() {
        assert_eq!(parse_sex("Nữ"), Some(Sex::Female));
        assert_eq!(parse_sex("Nam"), Some(Sex::Male));
        assert_eq!(parse_sex("female"), Some(Sex::Female));
        assert_eq!(parse_sex("other"), None);
    }
}
