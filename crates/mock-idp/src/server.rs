//! The mock IdP's HTTP side: routes, in-memory state and the OIDC endpoints.
//!
//! State lives in one `std::sync::Mutex`: every critical section is a few map operations with no
//! `.await` inside, so a blocking mutex is both correct and cheaper than an async one. Expired
//! entries are dropped whenever something is inserted, which bounds memory to what is live.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::serve::ListenerExt;
use axum::{Json, Router};
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};
use jsonwebtoken::Algorithm;
use lienthong_citizen::CitizenId;
use lienthong_protocol::secret::{left_half_sha256, random_token};
use lienthong_protocol::{
    AuthorizationParams, ClientCredentials, Expected, KeySet, OAuthError, OAuthErrorCode,
    TokenParams, bearer_token, form_access_token, pkce,
};
use lienthong_protocol::{SharedClock, SystemClock};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use url::Url;

use crate::config::{ClaimProfile, ClientRegistration, Config};
use crate::pages;
use crate::roster::{Citizen, Roster};

const SESSION_COOKIE: &str = "mockidp_session";
const FLOW_TTL: Duration = Duration::from_secs(600);
const CODE_TTL: Duration = Duration::from_secs(60);
const SESSION_TTL: Duration = Duration::from_secs(8 * 3600);
/// How often the maps are swept of expired entries. Every lookup checks expiry itself; the sweep
/// only frees memory, so it runs at most this often rather than on every request (a sweep is
/// O(entries): after 100,000 logins, one on each authorize and token call took a tenth of the
/// mock IdP's CPU).
const PURGE_EVERY: Duration = Duration::from_secs(10);

/// A configured mock IdP, ready to be served.
#[derive(Clone)]
pub struct MockIdp {
    shared: Arc<Shared>,
}

struct Shared {
    config: Config,
    issuer: String,
    realm_path: String,
    roster: Roster,
    keys: KeySet,
    alg: Algorithm,
    /// `iat`, `exp` and `auth_time` come from here. (Expiry of its in-memory flows, codes and
    /// sessions is paced by the monotonic `Instant`.)
    clock: SharedClock,
    state: Mutex<MemoryState>,
}

#[derive(Default)]
struct MemoryState {
    /// Authorization requests waiting for the login form, by flow id.
    flows: HashMap<String, (Instant, AuthorizationParams)>,
    /// Signed-in browsers, by session cookie.
    sessions: HashMap<String, Session>,
    codes: HashMap<String, CodeGrant>,
    access_tokens: HashMap<String, (Instant, Citizen)>,
    /// When [`MemoryState::purge`] next sweeps; `None` until the first call.
    next_purge: Option<Instant>,
}

#[derive(Clone)]
struct Session {
    expires: Instant,
    citizen: Citizen,
    auth_time: u64,
}

struct CodeGrant {
    expires: Instant,
    client_id: String,
    redirect_uri: String,
    nonce: Option<String>,
    code_challenge: Option<String>,
    session_id: String,
    session: Session,
}

/// A served mock IdP. Dropping it stops the server.
pub struct Running {
    pub addr: SocketAddr,
    pub issuer: String,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Running {
    /// Stops accepting, lets in-flight requests finish, and waits.
    pub async fn stop(mut self) {
        self.shutdown().await;
    }

    /// Like [`Running::stop`], in place: afterwards the address is free to bind again.
    pub async fn shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    /// Serves until the process is told to stop (Ctrl-C / SIGTERM).
    pub async fn wait(mut self) {
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

impl MockIdp {
    /// Binds `config.bind` (port 0 picks a free port), then serves in a background task.
    pub async fn start(
        config: Config,
        roster: Roster,
    ) -> Result<Running, Box<dyn std::error::Error + Send + Sync>> {
        let listener = TcpListener::bind(config.bind).await?;
        Self::start_on(listener, config, roster).await
    }

    /// Serves on an already bound listener (its address becomes the default issuer's).
    pub async fn start_on(
        listener: TcpListener,
        config: Config,
        roster: Roster,
    ) -> Result<Running, Box<dyn std::error::Error + Send + Sync>> {
        let addr = listener.local_addr()?;
        let idp = Self::new(config, roster, addr)?;
        let issuer = idp.shared.issuer.clone();
        let (tx, rx) = oneshot::channel::<()>();
        let app = idp.router();
        let task = tokio::spawn(async move {
            // As the broker's accept loop: no response held back by Nagle's algorithm.
            let listener = listener.tap_io(|stream| {
                let _ = stream.set_nodelay(true);
            });
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = rx.await;
                })
                .await;
        });
        tracing::info!(%issuer, "mock national IdP listening");
        Ok(Running {
            addr,
            issuer,
            shutdown: Some(tx),
            task: Some(task),
        })
    }

    /// Builds the IdP for a server listening on `addr`; generates fresh signing keys.
    pub fn new(
        config: Config,
        roster: Roster,
        addr: SocketAddr,
    ) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        let alg = match config.signing_alg.as_str() {
            "RS256" => Algorithm::RS256,
            "ES256" => Algorithm::ES256,
            other => return Err(format!("signing_alg {other:?}: use RS256 or ES256").into()),
        };
        let issuer = config
            .issuer
            .clone()
            .unwrap_or_else(|| format!("http://{addr}/realms/citizen"));
        let realm_path = Url::parse(&issuer)?.path().trim_end_matches('/').to_owned();
        let keys = KeySet::generate(&[alg])?;
        Ok(Self {
            shared: Arc::new(Shared {
                config,
                issuer,
                realm_path,
                roster,
                keys,
                alg,
                clock: SystemClock::shared(),
                state: Mutex::default(),
            }),
        })
    }

    pub fn issuer(&self) -> &str {
        &self.shared.issuer
    }

    pub fn router(&self) -> Router {
        let realm = Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/protocol/openid-connect/certs", get(jwks))
            .route("/protocol/openid-connect/auth", get(authorize).post(login))
            .route("/protocol/openid-connect/token", axum::routing::post(token))
            .route(
                "/protocol/openid-connect/userinfo",
                get(userinfo).post(userinfo_post),
            )
            .route("/protocol/openid-connect/logout", get(logout))
            .route("/", get(index));
        let router = if self.shared.realm_path.is_empty() {
            realm
        } else {
            Router::new()
                .nest(&self.shared.realm_path, realm)
                .route("/", get(index))
        };
        router.with_state(self.shared.clone())
    }
}

impl Shared {
    fn endpoint(&self, path: &str) -> String {
        format!("{}/protocol/openid-connect/{path}", self.issuer)
    }

    fn client(&self, id: &str) -> Option<&ClientRegistration> {
        self.config.clients.iter().find(|c| c.id == id)
    }

    fn profile(&self) -> ClaimProfile {
        self.config.profile
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemoryState> {
        // A panic while holding the lock leaves maps that are still consistent (each operation
        // is a single insert/remove), so a poisoned lock is safe to keep using.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl MemoryState {
    /// Drops expired entries, at most once per [`PURGE_EVERY`].
    fn purge(&mut self, now: Instant) {
        if self.next_purge.is_some_and(|at| now < at) {
            return;
        }
        self.next_purge = Some(now + PURGE_EVERY);
        self.flows
            .retain(|_, (created, _)| now.duration_since(*created) < FLOW_TTL);
        self.sessions.retain(|_, s| s.expires > now);
        self.codes.retain(|_, c| c.expires > now);
        self.access_tokens.retain(|_, (exp, _)| *exp > now);
    }
}

async fn index(State(s): State<Arc<Shared>>) -> Html<String> {
    pages::index(
        &s.issuer,
        s.roster.citizens(),
        &s.config.password,
        &s.config.otp,
    )
}

async fn discovery(State(s): State<Arc<Shared>>) -> Json<Value> {
    Json(json!({
        "issuer": s.issuer,
        "authorization_endpoint": s.endpoint("auth"),
        "token_endpoint": s.endpoint("token"),
        "userinfo_endpoint": s.endpoint("userinfo"),
        "jwks_uri": s.endpoint("certs"),
        "end_session_endpoint": s.endpoint("logout"),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": [format!("{:?}", s.alg)],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "code_challenge_methods_supported": ["S256"],
        "scopes_supported": ["openid", "profile", "email", "phone", "address"],
        "acr_values_supported": match s.profile() {
            ClaimProfile::Standard => json!(["1", "2"]),
            ClaimProfile::Vnconnect => json!(["LoA1", "LoA2"]),
        },
        "authorization_response_iss_parameter_supported": true,
        "ui_locales_supported": ["vi", "en"],
        "claims_supported": claims_supported(&s),
    }))
}

/// The claims this IdP can return: the protocol's, and the profile's names for a citizen.
fn claims_supported(s: &Shared) -> Vec<String> {
    let mut names: Vec<String> = [
        "sub",
        "iss",
        "aud",
        "exp",
        "iat",
        "auth_time",
        "nonce",
        "acr",
        "amr",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    for citizen in s.roster.citizens() {
        for name in citizen.claims(s.profile()).keys() {
            if !names.contains(name) {
                names.push(name.clone());
            }
        }
    }
    names
}

async fn jwks(State(s): State<Arc<Shared>>) -> Json<jsonwebtoken::jwk::JwkSet> {
    Json(s.keys.jwks())
}

/// Appends query parameters to a registered redirect URI.
fn redirect_with(uri: &str, params: &[(&str, Option<&str>)]) -> Response {
    let mut url = match Url::parse(uri) {
        Ok(u) => u,
        Err(_) => {
            return pages::error(
                StatusCode::BAD_REQUEST,
                "redirect_uri không hợp lệ / invalid redirect_uri",
            );
        }
    };
    {
        let mut q = url.query_pairs_mut();
        for (k, v) in params {
            if let Some(v) = v {
                q.append_pair(k, v);
            }
        }
    }
    Redirect::to(url.as_str()).into_response()
}

fn error_redirect(s: &Shared, p: &AuthorizationParams, error: &str, description: &str) -> Response {
    redirect_with(
        p.redirect_uri.as_deref().unwrap_or_default(),
        &[
            ("error", Some(error)),
            ("error_description", Some(description)),
            ("state", p.state.as_deref()),
            ("iss", Some(&s.issuer)),
        ],
    )
}

/// `GET /auth`: check the request; answer from a live session or show the login form.
async fn authorize(
    State(s): State<Arc<Shared>>,
    jar: CookieJar,
    Query(p): Query<AuthorizationParams>,
) -> Response {
    let client_ok = p
        .client_id
        .as_deref()
        .and_then(|id| s.client(id))
        .is_some_and(|c| {
            p.redirect_uri
                .as_ref()
                .is_some_and(|r| c.redirect_uris.contains(r))
        });
    if !client_ok {
        // Never redirect to an address we cannot vouch for.
        return pages::error(
            StatusCode::BAD_REQUEST,
            "Ứng dụng hoặc địa chỉ chuyển hướng không được đăng ký. / Unknown client or unregistered redirect URI.",
        );
    }
    if p.response_type.as_deref() != Some("code") {
        return error_redirect(
            &s,
            &p,
            "unsupported_response_type",
            "only response_type=code",
        );
    }
    if !p
        .scope
        .as_deref()
        .unwrap_or_default()
        .split(' ')
        .any(|x| x == "openid")
    {
        return error_redirect(&s, &p, "invalid_scope", "scope must contain openid");
    }
    if p.code_challenge.is_some()
        && let Err(e) = pkce::check_challenge(
            p.code_challenge.as_deref(),
            p.code_challenge_method.as_deref(),
        )
    {
        return error_redirect(&s, &p, "invalid_request", &e.to_string());
    }
    let prompt = p.prompt.as_deref().unwrap_or_default();
    let max_age = p.max_age.as_deref().and_then(|m| m.parse::<u64>().ok());
    let now = Instant::now();
    let live = jar.get(SESSION_COOKIE).and_then(|c| {
        let st = s.lock();
        st.sessions
            .get(c.value())
            .filter(|ss| ss.expires > now)
            .cloned()
            .map(|ss| (c.value().to_owned(), ss))
    });
    let live = live.filter(|(_, ss)| {
        max_age.is_none_or(|m| s.clock.now_secs().saturating_sub(ss.auth_time) <= m)
    });
    match live {
        Some((sid, session)) if !prompt.split(' ').any(|x| x == "login") => {
            issue_code(&s, &p, sid, session)
        }
        _ if prompt.split(' ').any(|x| x == "none") => {
            error_redirect(&s, &p, "login_required", "no session")
        }
        _ => {
            let flow = random_token(24);
            let mut st = s.lock();
            st.purge(now);
            st.flows.insert(flow.clone(), (now, p.clone()));
            drop(st);
            pages::login(
                &flow,
                s.roster.citizens(),
                &s.config.password,
                &s.config.otp,
                p.login_hint.as_deref(),
                None,
            )
        }
    }
}

fn issue_code(
    s: &Shared,
    p: &AuthorizationParams,
    session_id: String,
    session: Session,
) -> Response {
    let code = random_token(32);
    let grant = CodeGrant {
        expires: Instant::now() + CODE_TTL,
        client_id: p.client_id.clone().unwrap_or_default(),
        redirect_uri: p.redirect_uri.clone().unwrap_or_default(),
        nonce: p.nonce.clone(),
        code_challenge: p.code_challenge.clone(),
        session_id,
        session,
    };
    s.lock().codes.insert(code.clone(), grant);
    redirect_with(
        p.redirect_uri.as_deref().unwrap_or_default(),
        &[
            ("code", Some(&code)),
            ("state", p.state.as_deref()),
            ("iss", Some(&s.issuer)),
        ],
    )
}

#[derive(Deserialize)]
struct LoginForm {
    flow: String,
    #[serde(default)]
    roster_number: String,
    #[serde(default)]
    typed_number: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    otp: String,
    #[serde(default)]
    action: String,
}

/// `POST /auth`: the login form.
async fn login(State(s): State<Arc<Shared>>, jar: CookieJar, Form(f): Form<LoginForm>) -> Response {
    let flow = s
        .lock()
        .flows
        .get(&f.flow)
        .filter(|(created, _)| created.elapsed() < FLOW_TTL)
        .cloned();
    let Some((_, params)) = flow else {
        return pages::error(
            StatusCode::BAD_REQUEST,
            "Phiên đăng nhập đã hết hạn. Hãy quay lại trang dịch vụ và đăng nhập lại. / This sign-in has expired: go back to the service and start again.",
        );
    };
    if f.action == "cancel" {
        s.lock().flows.remove(&f.flow);
        return error_redirect(&s, &params, "access_denied", "the citizen cancelled");
    }
    let typed: String = f
        .typed_number
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    let raw = if typed.is_empty() {
        f.roster_number.trim().to_owned()
    } else {
        typed
    };
    let retry = |message: String| {
        pages::login(
            &f.flow,
            s.roster.citizens(),
            &s.config.password,
            &s.config.otp,
            Some(&raw),
            Some(&message),
        )
    };
    // Like the national IdP, a number whose birth year has not come yet is not a number.
    let this_year = time::OffsetDateTime::from_unix_timestamp(s.clock.now_secs() as i64)
        .map(|t| t.year())
        .unwrap_or(i32::MAX);
    let number =
        match CitizenId::parse(&raw).and_then(|n| n.check_not_born_after(this_year).map(|()| n)) {
            Ok(n) => n,
            Err(e) => {
                return retry(format!(
                    "Số định danh không hợp lệ: {e}. / Invalid ID number."
                ));
            }
        };
    if f.password != s.config.password || f.otp.trim() != s.config.otp {
        return retry("Mật khẩu hoặc mã OTP không đúng. / Wrong password or OTP.".into());
    }
    let citizen = s.roster.find_or_synthesise(&number);
    let session_id = random_token(32);
    let session = Session {
        expires: Instant::now() + SESSION_TTL,
        citizen,
        auth_time: s.clock.now_secs(),
    };
    {
        let mut st = s.lock();
        st.flows.remove(&f.flow);
        st.sessions.insert(session_id.clone(), session.clone());
    }
    let cookie = Cookie::build((SESSION_COOKIE, session_id.clone()))
        .http_only(true)
        .same_site(SameSite::Lax)
        .path(if s.realm_path.is_empty() {
            "/".to_owned()
        } else {
            s.realm_path.clone()
        })
        .build();
    (
        jar.add(cookie),
        issue_code(&s, &params, session_id, session),
    )
        .into_response()
}

/// `POST /token`: the authorization code grant.
async fn token(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, OAuthError> {
    let f = TokenParams::parse(&body)?;
    let creds = ClientCredentials::from_request(
        &headers,
        f.client_id.as_deref(),
        f.client_secret.as_deref(),
    )?;
    let basic = creds.method == lienthong_protocol::client_auth::AuthMethod::ClientSecretBasic;
    let client = s
        .client(&creds.client_id)
        .ok_or_else(|| OAuthError::invalid_client("unknown client", basic))?;
    creds.check_secret(client.secret.expose())?;
    if f.grant_type.as_deref() != Some("authorization_code") {
        return Err(OAuthError::new(
            OAuthErrorCode::UnsupportedGrantType,
            "only authorization_code",
        ));
    }
    let code = f
        .code
        .ok_or_else(|| OAuthError::invalid_request("code is required"))?;
    let grant = s
        .lock()
        .codes
        .remove(&code)
        .filter(|g| g.expires > Instant::now());
    let grant = grant.ok_or_else(|| OAuthError::invalid_grant("unknown, used or expired code"))?;
    if grant.client_id != client.id
        || f.redirect_uri.as_deref() != Some(grant.redirect_uri.as_str())
    {
        return Err(OAuthError::invalid_grant(
            "code was issued to another client or redirect_uri",
        ));
    }
    if let Some(challenge) = &grant.code_challenge {
        pkce::verify(f.code_verifier.as_deref(), challenge)
            .map_err(|e| OAuthError::invalid_grant(e.to_string()))?;
    }
    let ttl = s.config.token_ttl_secs;
    let access_token = random_token(32);
    let citizen = grant.session.citizen.clone();
    let now = s.clock.now_secs();
    let nonce = if s.config.faults.warning_wrong_id_token_nonce {
        Some(random_token(16))
    } else {
        grant.nonce
    };
    let mut claims = match s.profile() {
        ClaimProfile::Standard => citizen.claims(ClaimProfile::Standard),
        // The national portal gateway delivers identity through userinfo only.
        ClaimProfile::Vnconnect => {
            serde_json::Map::from_iter([("sub".to_owned(), json!(citizen.sub))])
        }
    };
    claims.extend([
        ("iss".to_owned(), json!(s.issuer)),
        ("aud".to_owned(), json!(client.id)),
        ("azp".to_owned(), json!(client.id)),
        ("iat".to_owned(), json!(now)),
        ("exp".to_owned(), json!(now + ttl)),
        ("auth_time".to_owned(), json!(grant.session.auth_time)),
        ("acr".to_owned(), json!(citizen.acr(s.profile()))),
        ("amr".to_owned(), json!(["pwd", "otp"])),
        (
            "sid".to_owned(),
            json!(lienthong_protocol::secret::sha256_b64url(&grant.session_id)),
        ),
        ("at_hash".to_owned(), json!(left_half_sha256(&access_token))),
    ]);
    if let Some(n) = nonce {
        claims.insert("nonce".to_owned(), json!(n));
    }
    let id_token = s
        .keys
        .sign(s.alg, "JWT", &claims)
        .map_err(|e| OAuthError::server_error(e.to_string()))?;
    {
        let mut st = s.lock();
        st.purge(Instant::now());
        st.access_tokens.insert(
            access_token.clone(),
            (Instant::now() + Duration::from_secs(ttl), citizen),
        );
    }
    let body = json!({
        "access_token": access_token,
        "token_type": "Bearer",
        "expires_in": ttl,
        "id_token": id_token,
        "scope": "openid",
    });
    Ok(no_store(Json(body).into_response()))
}

fn no_store(mut r: Response) -> Response {
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r.headers_mut()
        .insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    r
}

fn userinfo_for(s: &Shared, token: Option<String>) -> Result<Json<Value>, OAuthError> {
    let token = token.ok_or_else(|| OAuthError::invalid_token("no bearer token"))?;
    let st = s.lock();
    let (exp, citizen) = st
        .access_tokens
        .get(&token)
        .ok_or_else(|| OAuthError::invalid_token("unknown token"))?;
    if *exp <= Instant::now() {
        return Err(OAuthError::invalid_token("expired"));
    }
    Ok(Json(Value::Object(citizen.claims(s.profile()))))
}

async fn userinfo(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
) -> Result<Json<Value>, OAuthError> {
    userinfo_for(&s, bearer_token(&headers).map(str::to_owned))
}

/// The national portal gateway calls userinfo by POST; accept the token in the header or body.
async fn userinfo_post(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    body: String,
) -> Result<Json<Value>, OAuthError> {
    userinfo_for(
        &s,
        bearer_token(&headers)
            .map(str::to_owned)
            .or(form_access_token(body.as_bytes())),
    )
}

#[derive(Deserialize)]
struct LogoutParams {
    id_token_hint: Option<String>,
    post_logout_redirect_uri: Option<String>,
    state: Option<String>,
    client_id: Option<String>,
}

/// `GET /logout`: RP-initiated logout. Ends the browser's session; returns to a registered
/// `post_logout_redirect_uri` of the client named by `client_id` or the hint's audience.
async fn logout(
    State(s): State<Arc<Shared>>,
    jar: CookieJar,
    Query(p): Query<LogoutParams>,
) -> Response {
    if let Some(c) = jar.get(SESSION_COOKIE) {
        s.lock().sessions.remove(c.value());
    }
    let jar = jar.remove(
        Cookie::build(SESSION_COOKIE).path(if s.realm_path.is_empty() {
            "/".to_owned()
        } else {
            s.realm_path.clone()
        }),
    );
    let hinted_client = p.id_token_hint.as_deref().and_then(|t| {
        s.keys
            .verify::<Value>(t, &Expected::issued_by(&s.issuer))
            .ok()?
            .get("aud")?
            .as_str()
            .map(str::to_owned)
    });
    let client = p
        .client_id
        .or(hinted_client)
        .and_then(|id| s.client(&id).cloned());
    match (client, p.post_logout_redirect_uri) {
        (Some(c), Some(uri)) if c.post_logout_redirect_uris.contains(&uri) => {
            (jar, redirect_with(&uri, &[("state", p.state.as_deref())])).into_response()
        }
        _ => (jar, pages::logged_out()).into_response(),
    }
}
