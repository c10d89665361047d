//! Entry points for the fuzz targets in `fuzz/` (cargo-fuzz): the parsers and checks that meet
//! untrusted bytes first, callable in-process, without a network and without a panic being
//! anything but a bug. Compiled only with the `fuzzing` feature; nothing in the product uses it.

use std::sync::Arc;

use axum::http::{HeaderMap, HeaderValue, header};
use base64::Engine;
use jsonwebtoken::Algorithm;
use lienthong_protocol::{AuthorizationParams, KeySet, PublicKeys, TokenParams, pkce};
use serde_json::{Map, Value};

use crate::callback::CallbackParams;
use crate::claims::ClaimMapper;
use crate::config::Config;
use crate::state::Broker;
use crate::store::MemoryStore;
use crate::{access_token, authorize, client_assertion, request, token, upstream};
use lienthong_adapter::directory::Directory;

/// A broker with three registered clients (one authenticating with `private_key_jwt`), a
/// memory Store and an in-memory directory, and a national IdP's key set, built once per
/// fuzzing process with the runtime its directory and Store run on.
pub struct Target {
    runtime: tokio::runtime::Runtime,
    broker: Broker,
    upstream_keys: PublicKeys,
    client_keys: PublicKeys,
    mapper: ClaimMapper,
}

const CONFIG: &str = r#"
issuer = "http://127.0.0.1:9/lienthong"
account_id_secret = "fuzzing-account-id-secret"
[upstream]
issuer = "http://127.0.0.1:9/idp"
client_id = "lienthong"
client_secret = "upstream-secret"
acr_map = { "1" = 1, "2" = 2 }
[store]
url = "memory"
[directory]
url = "sqlite::memory:"
[[clients]]
id = "portal"
secret = "portal-secret"
name = "Cổng"
redirect_uris = ["https://portal.example/cb", "http://127.0.0.1:3000/cb?x=1"]
claims = ["name", "citizen_id"]
offline_access = true
[[clients]]
id = "spa"
secret = "spa-secret"
name = "SPA"
redirect_uris = ["https://spa.example/cb"]
"#;

/// The `private_key_jwt` client, its keys appended at start.
const KEYED_CLIENT: &str = r#"
[[clients]]
id = "keyed"
token_endpoint_auth_method = "private_key_jwt"
name = "Keyed"
redirect_uris = ["https://keyed.example/cb"]
"#;

impl Default for Target {
    fn default() -> Self {
        Self::new()
    }
}

impl Target {
    /// Builds the target and the runtime it runs on.
    pub fn new() -> Self {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let client_keys = KeySet::generate(&[Algorithm::ES256, Algorithm::EdDSA]).expect("keys");
        let client_jwks = client_keys.jwks();
        let mut config: Config =
            toml::from_str(&format!("{CONFIG}{KEYED_CLIENT}")).expect("the fuzzing config parses");
        config.clients[2].jwks = Some(client_jwks.clone());
        let mapper = ClaimMapper::new(&config.upstream);
        let broker = runtime.block_on(async {
            let directory = Directory::connect(&config.directory.url)
                .await
                .expect("an in-memory directory");
            Broker::new(config, Arc::new(MemoryStore::new()), directory)
                .await
                .expect("the fuzzing broker starts")
        });
        let idp = KeySet::generate(&[Algorithm::RS256, Algorithm::ES256]).expect("IdP keys");
        Self {
            runtime,
            broker,
            upstream_keys: PublicKeys::new(&idp.jwks()),
            client_keys: PublicKeys::new(&client_jwks),
            mapper,
        }
    }

    /// `GET /authorize?{query}`: parsed and validated as the endpoint does, the retry link of
    /// a valid request built.
    pub fn authorize_query(&self, query: &[u8]) {
        let inner = self.broker.inner();
        let Ok(raw) = AuthorizationParams::parse(query) else {
            return;
        };
        if let Ok(request) = request::validate(inner, raw) {
            let _ = request.retry_url(&inner.issuer);
        }
    }

    /// `POST /token`: the `Authorization` header (if it is a valid header value) and the form
    /// body, parsed, the client authenticated and a presented PKCE verifier checked.
    pub fn token_request(&self, authorization: &[u8], body: &[u8]) {
        let inner = self.broker.inner();
        let mut headers = HeaderMap::new();
        if let Ok(value) = HeaderValue::from_bytes(authorization) {
            headers.insert(header::AUTHORIZATION, value);
        }
        let Ok(form) = TokenParams::parse(body) else {
            return;
        };
        let _ = self
            .runtime
            .block_on(token::authenticate(inner, &headers, &form));
        let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
        let _ = pkce::verify(form.code_verifier.as_deref(), challenge);
    }

    /// `GET /callback?{query}` parsed, its `state` opened as a sealed pending login, and an
    /// upstream answer's claims (ID token payload and userinfo, merged) mapped to a citizen
    /// identity and level.
    pub fn callback(&self, query: &[u8], upstream_claims: &[u8]) {
        if let Ok(params) = serde_urlencoded::from_bytes::<CallbackParams>(query)
            && let Some(state) = params.state
        {
            let _ = authorize::carried(self.broker.inner(), &state);
        }
        if let Ok(claims) = serde_json::from_slice::<Map<String, Value>>(upstream_claims) {
            let _ = self.mapper.map(&claims, 2026);
        }
    }

    /// A compact JWT as every verifier meets it: the national IdP's ID token (signature, then
    /// payload and claim mapping), the broker's own access token at userinfo and admin, and a
    /// `private_key_jwt` client assertion.
    pub fn jwt(&self, token: &str) {
        let inner = self.broker.inner();
        let allowed = [Algorithm::RS256, Algorithm::ES256, Algorithm::PS256];
        let _ = upstream::verify_signature(&self.upstream_keys, &allowed, token);
        let _ = self.upstream_keys.unknown_kid(token);
        // The claim mapping behind the signature, reached with any payload.
        let payload = token.split('.').nth(1).unwrap_or_default();
        if let Ok(bytes) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload)
            && let Ok(claims) = serde_json::from_slice::<Map<String, Value>>(&bytes)
        {
            let _ = self.mapper.map(&claims, 2026);
        }
        let _ =
            access_token::verify::<Value>(inner, token, &access_token::userinfo_audience(inner));
        let _ = access_token::verify::<Value>(inner, token, &access_token::admin_audience(inner));
        let _ = self.runtime.block_on(client_assertion::verify(
            inner,
            "keyed",
            &self.client_keys,
            token,
        ));
    }
}
