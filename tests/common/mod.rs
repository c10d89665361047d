//! The test kit: starts the mock national IdP and the broker on free loopback ports, in this
//! process, and drives them over real HTTP like a browser (cookie jar, redirects followed by
//! hand so each hop can be asserted) and like a provincial system (token, userinfo).
#![allow(dead_code)]

pub mod redis;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{DecodingKey, Validation};
use lienthong_broker::{Broker, MemoryStore};
use lienthong_citizen::lookup_signature;
use lienthong_mock_idp::{
    ClaimProfile, ClientRegistration, Config as IdpConfig, MockIdp, Roster, Running,
};
use lienthong_protocol::{Clock, MockClock, SharedClock, SystemClock};
use reqwest::StatusCode;
use reqwest::header::LOCATION;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use url::Url;

pub const PORTAL_A: &str = "portal-a";
pub const PORTAL_B: &str = "portal-b";
/// A system whose back-channel logout endpoint never answers.
pub const UNREACHABLE: &str = "unreachable";
pub const SECRET: &str = "test-secret";
/// The province's home page, the way back from pages that cannot return to a client.
pub const HOME: &str = "https://tinh.example.gov.vn/";
/// A level-2 citizen of the shipped roster (Nguyễn Văn An, Hà Nội).
pub const AN: &str = "001085004512";
/// A level-1 citizen (Giàng Thị Mai, Hà Giang).
pub const MAI: &str = "002301004418";

pub fn redirect_uri(client: &str) -> String {
    format!("http://127.0.0.1:9/{client}/callback")
}

/// A scratch folder of the test's own (`lienthong-{tag}-{pid}` under the temporary folder).
pub fn scratch_dir(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("lienthong-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes `config` as `broker.toml` in `dir`; its path, for `lienthong ... --config`.
pub fn write_config(dir: &std::path::Path, config: &str) -> std::path::PathBuf {
    let path = dir.join("broker.toml");
    std::fs::write(&path, config).unwrap();
    path
}

/// Where a system sends the citizen after signing out (registered for PORTAL_A).
pub fn after_logout_uri(client: &str) -> String {
    format!("http://127.0.0.1:9/{client}/signed-out")
}

/// The systems' back-channel logout endpoints: record every logout token, answer 200.
pub async fn backchannel_receiver(
    received: Arc<std::sync::Mutex<Vec<(String, String)>>>,
) -> String {
    let app = axum::Router::new().route(
        "/{client}",
        axum::routing::post(
            move |axum::extract::Path(client): axum::extract::Path<String>,
                  axum::Form(form): axum::Form<HashMap<String, String>>| {
                let received = received.clone();
                async move {
                    if let Some(token) = form.get("logout_token") {
                        received.lock().unwrap().push((client, token.clone()));
                    }
                    axum::http::StatusCode::OK
                }
            },
        ),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

/// A mock national IdP on a free port with the broker at `broker_issuer` registered as its
/// client (`lienthong` / `upstream-secret`).
pub fn idp_config_for(broker_issuer: &str) -> IdpConfig {
    IdpConfig::with_client(
        "127.0.0.1:0".parse().unwrap(),
        ClientRegistration {
            id: "lienthong".into(),
            secret: "upstream-secret".into(),
            redirect_uris: vec![format!("{broker_issuer}/callback")],
            post_logout_redirect_uris: vec![format!("{broker_issuer}/logout/callback")],
        },
    )
}

/// How to vary the environment for one test.
#[derive(Default)]
pub struct Options {
    pub vnconnect: bool,
    pub wrong_nonce: bool,
    pub consent: bool,
    pub idp_alg_es256: bool,
    /// A roster of the test's own instead of the shipped one.
    pub roster: Option<Roster>,
    /// A clock the test moves (the broker and its Store read it); default: the system clock.
    pub clock: Option<Arc<MockClock>>,
    /// Keep the signing keys in the directory, sealed with [`SEALING_KEY`], so they can rotate.
    pub shared_keys: bool,
    /// More keys of the `[store]` table (with `shared_keys`).
    pub store_extra: Option<String>,
    /// A `[limits]` section of the test's own (its keys, one per line).
    pub limits: Option<String>,
    /// More configuration, appended at the end (whole tables).
    pub extra: Option<String>,
    /// More keys of the `[upstream]` table.
    pub upstream_extra: Option<String>,
    /// How long the broker caches the IdP's discovery and keys (default 0: never).
    pub metadata_ttl_secs: u64,
}

/// The sealing key of environments with `shared_keys` (32 bytes of 7, base64).
pub const SEALING_KEY: &str = "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=";
/// A system in the lookup realm that asks the citizen's consent first.
pub const HEALTH_PORTAL: &str = "health-portal";
/// A system that wants its ID tokens signed with EdDSA.
pub const PORTAL_ED: &str = "portal-ed";

/// A linked realm: only citizens imported beforehand.
pub const ONESTOP: &str = "onestop";
pub const ONESTOP_OFFICE: &str = "Bộ phận một cửa, UBND tỉnh (thử nghiệm)";
/// A lookup realm, answered by the environment's own endpoint.
pub const HEALTH: &str = "health";

pub struct Env {
    pub issuer: String,
    pub broker: Broker,
    pub idp: Running,
    pub directory: lienthong_broker::Directory,
    /// The broker's Store (a handle on the same map), for what a test plants or reads in it.
    pub store: MemoryStore,
    /// How many times the health system's lookup endpoint was called.
    pub lookups: Arc<AtomicUsize>,
    /// Logout tokens the systems' back-channel endpoints received: (client, token).
    pub logouts: Arc<std::sync::Mutex<Vec<(String, String)>>>,
    idp_config: IdpConfig,
    shutdown: Option<oneshot::Sender<()>>,
}

impl Drop for Env {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// The health system's lookup endpoint: checks the signature; knows citizens born before 2000.
async fn lookup_endpoint(calls: Arc<AtomicUsize>) -> String {
    use axum::http::HeaderMap;
    let app = axum::Router::new().route(
        "/lookup",
        axum::routing::post(move |headers: HeaderMap, body: axum::body::Bytes| {
            let calls = calls.clone();
            async move {
                calls.fetch_add(1, Ordering::SeqCst);
                let Some(request) = lookup_signature::accept(
                    "health-lookup-secret",
                    &headers,
                    &body,
                    SystemClock.now_secs(),
                ) else {
                    return (axum::http::StatusCode::UNAUTHORIZED, String::new());
                };
                match request.citizen_id.as_deref() {
                    Some(n) if &n[3..4] < "2" => (
                        axum::http::StatusCode::OK,
                        format!(r#"{{"account_id":"HS-{}"}}"#, &n[6..]),
                    ),
                    _ => (axum::http::StatusCode::NOT_FOUND, String::new()),
                }
            }
        }),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/lookup", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

impl Env {
    pub async fn start() -> Self {
        Self::with(Options::default()).await
    }

    /// A broker whose systems ask for consent.
    pub async fn with_consent() -> Self {
        Self::with(Options {
            consent: true,
            ..Options::default()
        })
        .await
    }

    pub async fn with(o: Options) -> Self {
        lienthong_protocol::crypto::install();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let issuer = format!("http://{}", listener.local_addr().unwrap());
        let mut idp_config = idp_config_for(&issuer);
        if o.vnconnect {
            idp_config.profile = ClaimProfile::Vnconnect;
        }
        if o.idp_alg_es256 {
            idp_config.signing_alg = "ES256".into();
        }
        idp_config.faults.warning_wrong_id_token_nonce = o.wrong_nonce;
        let idp = MockIdp::start(idp_config.clone(), o.roster.unwrap_or_else(Roster::builtin))
            .await
            .unwrap();
        idp_config.bind = idp.addr;
        idp_config.issuer = Some(idp.issuer.clone());
        let lookups = Arc::new(AtomicUsize::new(0));
        let lookup_url = lookup_endpoint(lookups.clone()).await;
        let logouts = Arc::new(std::sync::Mutex::new(Vec::new()));
        let backchannel = backchannel_receiver(logouts.clone()).await;
        let claims = r#"["name", "family_name", "given_name", "birthdate", "gender", "citizen_id", "legacy_id_number"]"#;
        let config = format!(
            r#"
            issuer = "{issuer}"
            account_id_secret = "test-account-id-secret-0123456789"
            home_url = "{HOME}"
            {store}
            {limits}
            [upstream]
            issuer = "{idp_issuer}"
            client_id = "lienthong"
            client_secret = "upstream-secret"
            userinfo = "{userinfo}"
            metadata_ttl_secs = {ttl}
            claims = {{ preset = "{preset}" }}
            {upstream_extra}
            [[realms]]
            id = "{ONESTOP}"
            policy = "linked"
            office = "{ONESTOP_OFFICE}"
            match_legacy_cmnd = true
            [[realms]]
            id = "{HEALTH}"
            policy = "lookup"
            lookup = {{ url = "{lookup_url}", secret = "health-lookup-secret", timeout_ms = 2000 }}
            [[clients]]
            id = "{PORTAL_A}"
            secret = "{SECRET}"
            name = "Cổng dịch vụ công A"
            redirect_uris = ["{ra}"]
            post_logout_redirect_uris = ["{pa}"]
            backchannel_logout_uri = "{backchannel}/{PORTAL_A}"
            offline_access = true
            claims = {claims}
            require_consent = {consent}
            [[clients]]
            id = "{PORTAL_B}"
            secret = "{SECRET}"
            name = "Hồ sơ sức khỏe B"
            redirect_uris = ["{rb}"]
            backchannel_logout_uri = "{backchannel}/{PORTAL_B}"
            frontchannel_logout_uri = "http://127.0.0.1:9/{PORTAL_B}/frontchannel"
            id_token_signed_response_alg = "RS256"
            claims = ["name", "birthdate"]
            require_consent = {consent}
            [[clients]]
            id = "{ONESTOP}"
            secret = "{SECRET}"
            name = "Một cửa"
            redirect_uris = ["{ro}"]
            realm = "{ONESTOP}"
            require_consent = false
            [[clients]]
            id = "{HEALTH_PORTAL}"
            secret = "{SECRET}"
            name = "Cổng hồ sơ sức khỏe"
            redirect_uris = ["{rhp}"]
            realm = "{HEALTH}"
            claims = ["name", "citizen_id"]
            require_consent = true
            [[clients]]
            id = "{PORTAL_ED}"
            secret = "{SECRET}"
            name = "Hệ thống chữ ký EdDSA"
            redirect_uris = ["{red}"]
            id_token_signed_response_alg = "EdDSA"
            require_consent = false
            [[clients]]
            id = "{UNREACHABLE}"
            secret = "{SECRET}"
            name = "Hệ thống không trả lời"
            redirect_uris = ["{ru}"]
            backchannel_logout_uri = "http://127.0.0.1:9/closed"
            require_consent = false
            [[clients]]
            id = "ops"
            secret = "{SECRET}"
            name = "Vận hành"
            redirect_uris = ["http://127.0.0.1:9/ops/callback"]
            admin_realms = ["{ONESTOP}"]
            [[clients]]
            id = "{HEALTH}"
            secret = "{SECRET}"
            name = "Sức khỏe"
            redirect_uris = ["{rh}"]
            realm = "{HEALTH}"
            require_consent = false
            {extra}
            "#,
            extra = o.extra.as_deref().unwrap_or_default(),
            upstream_extra = o.upstream_extra.as_deref().unwrap_or_default(),
            ttl = o.metadata_ttl_secs,
            idp_issuer = idp.issuer,
            userinfo = if o.vnconnect { "post" } else { "get" },
            preset = if o.vnconnect { "vnconnect" } else { "standard" },
            ra = redirect_uri(PORTAL_A),
            pa = after_logout_uri(PORTAL_A),
            rb = redirect_uri(PORTAL_B),
            ru = redirect_uri(UNREACHABLE),
            red = redirect_uri(PORTAL_ED),
            rhp = redirect_uri(HEALTH_PORTAL),
            limits = o
                .limits
                .as_deref()
                .map(|l| format!("[limits]\n{l}"))
                .unwrap_or_default(),
            store = if o.shared_keys {
                format!(
                    "[store]\nsealing_key = \"{SEALING_KEY}\"\n{}",
                    o.store_extra.as_deref().unwrap_or_default()
                )
            } else {
                String::new()
            },
            ro = redirect_uri(ONESTOP),
            rh = redirect_uri(HEALTH),
            consent = o.consent,
        );
        let directory = lienthong_broker::Directory::connect("sqlite::memory:")
            .await
            .unwrap();
        let clock: SharedClock = match o.clock {
            Some(mock) => mock,
            None => SystemClock::shared(),
        };
        let store = MemoryStore::with_clock(clock.clone());
        let broker = Broker::with_clock(
            toml::from_str(&config).unwrap(),
            Arc::new(store.clone()),
            directory.clone(),
            clock,
        )
        .await
        .unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        tokio::spawn(broker.clone().serve(listener, async move {
            let _ = rx.await;
        }));
        Env {
            broker: broker.clone(),
            issuer,
            idp,
            directory,
            store,
            lookups,
            logouts,
            idp_config,
            shutdown: Some(tx),
        }
    }

    /// Restarts the national IdP at the same address with another roster: as if the national
    /// data changed (a citizen's ID number re-established, say).
    pub async fn restart_idp(&mut self, roster: Roster) {
        self.idp.shutdown().await;
        self.idp = MockIdp::start(self.idp_config.clone(), roster)
            .await
            .unwrap();
    }

    pub async fn jwks(&self) -> JwkSet {
        reqwest::get(format!("{}/jwks", self.issuer))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// The logout tokens received so far by `client`'s back-channel endpoint, waiting (up to
    /// five seconds) until there are `n`.
    pub async fn logout_tokens(&self, client: &str, n: usize) -> Vec<String> {
        for _ in 0..100 {
            let got: Vec<String> = self
                .logouts
                .lock()
                .unwrap()
                .iter()
                .filter(|(c, _)| c == client)
                .map(|(_, t)| t.clone())
                .collect();
            if got.len() >= n {
                return got;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("{client} did not receive {n} logout token(s)");
    }

    /// Verifies a broker ID token against the published JWKS: signature by `kid`, `iss`, `aud`.
    pub async fn verify_id_token(&self, token: &str, client: &str) -> Value {
        let header = jsonwebtoken::decode_header(token).unwrap();
        let jwks = self.jwks().await;
        let jwk = jwks
            .find(header.kid.as_deref().expect("kid"))
            .expect("kid is in the JWKS");
        let mut v = Validation::new(header.alg);
        v.set_issuer(&[&self.issuer]);
        v.set_audience(&[client]);
        v.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
        jsonwebtoken::decode::<Value>(token, &DecodingKey::from_jwk(jwk).unwrap(), &v)
            .unwrap()
            .claims
    }
}

/// A PKCE pair.
pub fn pkce() -> (String, String) {
    let verifier = lienthong_protocol::secret::random_token(32);
    let challenge = lienthong_protocol::secret::sha256_b64url(&verifier);
    (verifier, challenge)
}

/// A citizen's browser: a cookie jar and no automatic redirects.
pub struct Browser {
    pub http: reqwest::Client,
}

impl Default for Browser {
    fn default() -> Self {
        Self::new()
    }
}

impl Browser {
    pub fn new() -> Self {
        Self::with_jar(Arc::default())
    }

    /// A browser whose cookie jar the test can read and change.
    pub fn with_jar(jar: Arc<reqwest::cookie::Jar>) -> Self {
        lienthong_protocol::crypto::install();
        let http = reqwest::Client::builder()
            .cookie_provider(jar)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        Self { http }
    }

    pub async fn get(&self, url: &str) -> reqwest::Response {
        self.http.get(url).send().await.unwrap()
    }

    pub async fn post_form(&self, url: &str, form: &[(&str, &str)]) -> reqwest::Response {
        self.http.post(url).form(form).send().await.unwrap()
    }
}

pub fn location(r: &reqwest::Response) -> String {
    assert!(
        r.status().is_redirection(),
        "expected a redirect, got {}",
        r.status()
    );
    r.headers()
        .get(LOCATION)
        .expect("Location")
        .to_str()
        .unwrap()
        .to_owned()
}

pub fn query(url: &str) -> HashMap<String, String> {
    Url::parse(url)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect()
}

/// An authorization request as a client builds it.
pub struct AuthRequest {
    pub client: String,
    pub state: String,
    pub nonce: String,
    pub verifier: String,
    pub challenge: String,
    pub extra: Vec<(String, String)>,
    pub scope: String,
}

impl AuthRequest {
    pub fn new(client: &str) -> Self {
        let (verifier, challenge) = pkce();
        Self {
            client: client.into(),
            state: lienthong_protocol::secret::random_token(12),
            nonce: lienthong_protocol::secret::random_token(12),
            verifier,
            challenge,
            extra: vec![],
            scope: "openid profile citizen_id".into(),
        }
    }

    pub fn with(mut self, k: &str, v: &str) -> Self {
        self.extra.push((k.into(), v.into()));
        self
    }

    pub fn url(&self, issuer: &str) -> String {
        let mut url = Url::parse(&format!("{issuer}/authorize")).unwrap();
        url.query_pairs_mut()
            .append_pair("client_id", &self.client)
            .append_pair("redirect_uri", &redirect_uri(&self.client))
            .append_pair("response_type", "code")
            .append_pair("scope", &self.scope)
            .append_pair("state", &self.state)
            .append_pair("nonce", &self.nonce)
            .append_pair("code_challenge", &self.challenge)
            .append_pair("code_challenge_method", "S256");
        for (k, v) in &self.extra {
            url.query_pairs_mut().append_pair(k, v);
        }
        url.into()
    }
}

/// The hidden `name` field's value in an HTML form.
pub fn hidden_field(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no hidden {name} in:\n{html}"))
        + marker.len();
    html[start..start + html[start..].find('"').unwrap()].to_owned()
}

/// Signs in at the mock IdP's form (already at `idp_url`); returns the IdP's response.
pub async fn sign_in_at_idp(browser: &Browser, idp_url: &str, number: &str) -> reqwest::Response {
    let page = browser.get(idp_url).await;
    assert_eq!(
        page.status(),
        StatusCode::OK,
        "the IdP shows its login form"
    );
    let html = page.text().await.unwrap();
    assert!(html.contains("Mật khẩu"), "the form is in Vietnamese");
    let flow = hidden_field(&html, "flow");
    let form_url = idp_url.split('?').next().unwrap().to_owned();
    browser
        .post_form(
            &form_url,
            &[
                ("flow", &flow),
                ("roster_number", number),
                ("password", "matkhau-thu"),
                ("otp", "123456"),
                ("action", "login"),
            ],
        )
        .await
}

/// A full login from the client's authorization request to the response that ends at the
/// client (normally the redirect carrying the code). Answers the consent page when shown.
pub async fn login(
    env: &Env,
    browser: &Browser,
    req: &AuthRequest,
    number: &str,
) -> reqwest::Response {
    let r = browser.get(&req.url(&env.issuer)).await;
    let to_idp = location(&r);
    assert!(
        to_idp.starts_with(&env.idp.issuer),
        "the broker sends the citizen to the IdP: {to_idp}"
    );
    let back = sign_in_at_idp(browser, &to_idp, number).await;
    let callback = location(&back);
    assert!(callback.starts_with(&format!("{}/callback", env.issuer)));
    browser.get(&callback).await
}

/// `login`, answering a consent page with "allow" if one appears; returns the code.
pub async fn login_for_code(
    env: &Env,
    browser: &Browser,
    req: &AuthRequest,
    number: &str,
) -> String {
    let r = login(env, browser, req, number).await;
    code_from(env, browser, req, r).await
}

pub async fn code_from(
    env: &Env,
    browser: &Browser,
    req: &AuthRequest,
    mut r: reqwest::Response,
) -> String {
    if r.status() == StatusCode::OK {
        let html = r.text().await.unwrap();
        let id = hidden_field(&html, "consent_id");
        r = browser
            .post_form(
                &format!("{}/consent", env.issuer),
                &[("consent_id", &id), ("decision", "allow")],
            )
            .await;
    }
    let at_client = location(&r);
    assert!(
        at_client.starts_with(&redirect_uri(&req.client)),
        "ends at the client: {at_client}"
    );
    let q = query(&at_client);
    assert_eq!(
        q.get("state"),
        Some(&req.state),
        "state is returned unchanged"
    );
    assert_eq!(q.get("iss"), Some(&env.issuer), "RFC 9207 iss");
    q.get("code")
        .unwrap_or_else(|| panic!("a code in {at_client}"))
        .clone()
}

/// `POST /token` with client_secret_basic.
pub async fn redeem(env: &Env, req: &AuthRequest, code: &str, verifier: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{}/token", env.issuer))
        .basic_auth(&req.client, Some(SECRET))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", &redirect_uri(&req.client)),
            ("code_verifier", verifier),
        ])
        .send()
        .await
        .unwrap()
}

/// A whole login and the token response: what a system holds after a successful sign-in.
/// With a live SSO session the broker answers at once; otherwise the citizen signs in upstream.
pub async fn tokens(
    env: &Env,
    browser: &Browser,
    req: &AuthRequest,
    number: &str,
) -> serde_json::Value {
    let first = browser.get(&req.url(&env.issuer)).await;
    let code = if location(&first).starts_with(&redirect_uri(&req.client)) {
        code_from(env, browser, req, first).await
    } else {
        login_for_code(env, browser, req, number).await
    };
    let r = redeem(env, req, &code, &req.verifier).await;
    assert_eq!(r.status(), StatusCode::OK);
    r.json().await.unwrap()
}

/// The broker's discovery document.
pub async fn discovery(env: &Env) -> Value {
    json_of(reqwest::Client::new().get(format!("{}/.well-known/openid-configuration", env.issuer)))
        .await
}

/// `POST /token` with the client_credentials grant and `scope`, as `client` (by its secret).
pub async fn client_credentials(env: &Env, client: &str, scope: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{}/token", env.issuer))
        .basic_auth(client, Some(SECRET))
        .form(&[("grant_type", "client_credentials"), ("scope", scope)])
        .send()
        .await
        .unwrap()
}

/// An admin access token of `client` (scope `accounts:admin`).
pub async fn admin_access_token(env: &Env, client: &str) -> String {
    let answer: Value = client_credentials(env, client, "accounts:admin")
        .await
        .json()
        .await
        .unwrap();
    answer["access_token"].as_str().unwrap().to_owned()
}

/// `GET url` with a bearer token.
pub async fn bearer_get(url: &str, token: &str) -> reqwest::Response {
    reqwest::Client::new()
        .get(url)
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

/// A JWT's payload, decoded without any check (to look at what a token says).
pub fn jwt_payload(jwt: &str) -> Value {
    use base64::Engine;
    let payload = jwt.split('.').nth(1).expect("a compact JWT");
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap()
}

/// `url` with each query parameter's value passed through `change(name, value)`; a `None`
/// drops the parameter.
pub fn rewrite_query(url: &str, change: impl Fn(&str, String) -> Option<String>) -> String {
    let mut url = Url::parse(url).unwrap();
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .filter_map(|(k, v)| change(&k, v.into_owned()).map(|v| (k.into_owned(), v)))
        .collect();
    url.query_pairs_mut().clear().extend_pairs(pairs);
    url.into()
}

/// Sends a request and returns its status.
pub async fn status_of(request: reqwest::RequestBuilder) -> StatusCode {
    request.send().await.unwrap().status()
}

/// Sends a request and returns its JSON body.
pub async fn json_of(request: reqwest::RequestBuilder) -> serde_json::Value {
    request.send().await.unwrap().json().await.unwrap()
}
