//! Entry points for the fuzz targets in `fuzz/` (cargo-fuzz): the parsers and checks that meet
//! untrusted bytes first, callable in-process, without a network and without a panic being
//! anything but a bug. Compiled only with the `fuzzing` feature; nothing in the product uses it.

use std::sync::Arc;

use axum::http::{HeaderMap, HeaderValue, header};
use jsonwebtoken::Algorithm;
use jsonwebtoken::jwk::JwkSet;
use lienthong_protocol::{AuthorizationParams, KeySet, TokenParams, pkce};
use serde_json::{Map, Value};

use crate::callback::CallbackParams;
use crate::claims::ClaimMapper;
use crate::config::{Config, UpstreamAlg};
use crate::state::Broker;
use crate::{Directory, MemoryStore, access_token, request, token, upstream};

/// A broker with two registered clients, a memory Store and an in-memory directory, and a
/// national IdP's key set, built once per fuzzing process.
pub struct Target {
    broker: Broker,
    upstream_jwks: JwkSet,
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

impl Target {
    /// Builds the target; needs a Tokio runtime (the directory's migrations run on it).
    pub async fn new() -> Self {
        let config: Config = toml::from_str(CONFIG).expect("the fuzzing config parses");
        let directory = Directory::connect(&config.directory.url)
            .await
            .expect("an in-memory directory");
        let mapper = ClaimMapper::new(&config.upstream);
        let broker = Broker::new(config, Arc::new(MemoryStore::new()), directory)
            .await
            .expect("the fuzzing broker starts");
        let idp = KeySet::generate(&[Algorithm::RS256, Algorithm::ES256]).expect("IdP keys");
        Self {
            broker,
            upstream_jwks: idp.jwks(),
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
        let _ = token::authenticate(inner, &headers, &form);
        let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
        let _ = pkce::verify(form.code_verifier.as_deref(), challenge);
    }

    /// `GET /callback?{query}` parsed, and an upstream answer's claims (ID token payload and
    /// userinfo, merged) mapped to a citizen identity and level.
    pub fn callback(&self, query: &[u8], upstream_claims: &[u8]) {
        let _ = serde_urlencoded::from_bytes::<CallbackParams>(query);
        if let Ok(claims) = serde_json::from_slice::<Map<String, Value>>(upstream_claims) {
            let _ = self.mapper.map(&claims, 2026);
        }
    }

    /// A compact JWT as every verifier meets it: the national IdP's ID token (signature, then
    /// payload and claim mapping) and the broker's own access token at userinfo and admin.
    pub fn jwt(&self, token: &str) {
        let inner = self.broker.inner();
        let allowed = [UpstreamAlg::RS256, UpstreamAlg::ES256, UpstreamAlg::PS256];
        let _ = upstream::verify_signature(&self.upstream_jwks, &allowed, token);
        let _ = upstream::unknown_kid(&self.upstream_jwks, token);
        if let Ok(claims) = upstream::jwt_payload(token) {
            let _ = self.mapper.map(&claims, 2026);
        }
        let _ =
            access_token::verify::<Value>(inner, token, &access_token::userinfo_audience(inner));
        let _ = access_token::verify::<Value>(inner, token, &access_token::admin_audience(inner));
    }
}
