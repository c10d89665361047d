//! A sample provincial portal, as an integrator would write one: an ordinary OpenID Connect
//! relying party of the Lienthong broker, built on the `openidconnect` crate with nothing
//! Lienthong-specific. It discovers the broker, sends the citizen to sign in with PKCE, state
//! and nonce, verifies the ID token against the broker's JWKS, reads userinfo and greets the
//! citizen by name. `lienthong demo` runs it; read it as a worked example.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use askama::Template;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};
use lienthong_protocol::secret::random_token;
use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreProviderMetadata};
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce, OAuth2TokenResponse,
    PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope, TokenResponse,
};
use serde::Deserialize;
use serde_json::{Map, Value};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

const SESSION_COOKIE: &str = "portal_session";
const LOGIN_COOKIE: &str = "portal_login";

/// How the portal is registered at the broker.
#[derive(Debug, Clone)]
pub struct PortalConfig {
    /// The broker's issuer URL.
    pub issuer: String,
    pub client_id: String,
    pub client_secret: String,
    pub redirect_uri: String,
    /// The portal's own name, shown on its page.
    pub title: String,
    pub scopes: Vec<String>,
}

struct Shared {
    config: PortalConfig,
    http: openidconnect::reqwest::Client,
    metadata: tokio::sync::OnceCell<CoreProviderMetadata>,
    logins: Mutex<HashMap<String, (String, String)>>,
    sessions: Mutex<HashMap<String, SignedIn>>,
}

#[derive(Clone)]
struct SignedIn {
    sub: String,
    acr: String,
    name: String,
    claims: Vec<(String, String)>,
}

/// A running portal; dropping it stops the server.
pub struct Running {
    pub addr: std::net::SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Serves the portal on `listener`.
pub async fn start_on(listener: TcpListener, config: PortalConfig) -> std::io::Result<Running> {
    let addr = listener.local_addr()?;
    let http = openidconnect::reqwest::Client::builder()
        .redirect(openidconnect::reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(std::io::Error::other)?;
    let shared = Arc::new(Shared {
        config,
        http,
        metadata: tokio::sync::OnceCell::new(),
        logins: Mutex::default(),
        sessions: Mutex::default(),
    });
    let app = Router::new()
        .route("/", get(home))
        .route("/login", get(login))
        .route("/callback", get(callback))
        .route("/logout", get(logout))
        .with_state(shared);
    let (tx, rx) = oneshot::channel::<()>();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = rx.await;
            })
            .await;
    });
    Ok(Running {
        addr,
        shutdown: Some(tx),
    })
}

#[derive(Template)]
#[template(path = "portal.html")]
struct Page<'a> {
    title: &'a str,
    user: Option<&'a SignedIn>,
    error: Option<&'a str>,
}

fn page(title: &str, user: Option<&SignedIn>, error: Option<&str>) -> Response {
    let html = Page { title, user, error }
        .render()
        .unwrap_or_else(|e| format!("template error: {e}"));
    let status = if error.is_some() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    (status, Html(html)).into_response()
}

impl Shared {
    fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
        m.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn client(
        &self,
    ) -> Result<
        CoreClient<
            openidconnect::EndpointSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointMaybeSet,
            openidconnect::EndpointMaybeSet,
        >,
        String,
    > {
        let metadata = self
            .metadata
            .get_or_try_init(|| async {
                let issuer =
                    IssuerUrl::new(self.config.issuer.clone()).map_err(|e| e.to_string())?;
                CoreProviderMetadata::discover_async(issuer, &self.http)
                    .await
                    .map_err(|e| e.to_string())
            })
            .await?;
        Ok(CoreClient::from_provider_metadata(
            metadata.clone(),
            ClientId::new(self.config.client_id.clone()),
            Some(ClientSecret::new(self.config.client_secret.clone())),
        )
        .set_redirect_uri(
            RedirectUrl::new(self.config.redirect_uri.clone()).map_err(|e| e.to_string())?,
        ))
    }
}

async fn home(State(s): State<Arc<Shared>>, jar: CookieJar) -> Response {
    let user = jar
        .get(SESSION_COOKIE)
        .and_then(|c| Shared::lock(&s.sessions).get(c.value()).cloned());
    page(&s.config.title, user.as_ref(), None)
}

async fn login(State(s): State<Arc<Shared>>, jar: CookieJar) -> Response {
    let client = match s.client().await {
        Ok(c) => c,
        Err(e) => {
            return page(
                &s.config.title,
                None,
                Some(&format!(
                    "Không kết nối được máy chủ đăng nhập / cannot reach the sign-in server: {e}"
                )),
            );
        }
    };
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let mut request = client
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .set_pkce_challenge(challenge);
    for scope in &s.config.scopes {
        request = request.add_scope(Scope::new(scope.clone()));
    }
    let (url, state, nonce) = request.url();
    Shared::lock(&s.logins).insert(
        state.secret().clone(),
        (nonce.secret().clone(), verifier.secret().clone()),
    );
    let cookie = Cookie::build((LOGIN_COOKIE, state.secret().clone()))
        .http_only(true)
        .same_site(SameSite::Lax)
        .path("/")
        .build();
    (jar.add(cookie), Redirect::to(url.as_str())).into_response()
}

#[derive(Deserialize)]
struct CallbackParams {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

async fn callback(
    State(s): State<Arc<Shared>>,
    jar: CookieJar,
    Query(p): Query<CallbackParams>,
) -> Response {
    let title = s.config.title.clone();
    let fail = |msg: String| page(&title, None, Some(&msg));
    let state = p.state.unwrap_or_default();
    if jar.get(LOGIN_COOKIE).map(|c| c.value().to_owned()) != Some(state.clone()) {
        return fail(
            "Yêu cầu đăng nhập không khớp, hãy thử lại / sign-in state mismatch, try again".into(),
        );
    }
    let Some((nonce, verifier)) = Shared::lock(&s.logins).remove(&state) else {
        return fail("Lượt đăng nhập đã hết hạn / this sign-in expired".into());
    };
    if let Some(error) = p.error {
        let detail = p.error_description.unwrap_or_default();
        return fail(format!(
            "Đăng nhập không thành công / sign-in failed: {error} {detail}"
        ));
    }
    let result = async {
        let client = s.client().await?;
        let tokens = client
            .exchange_code(AuthorizationCode::new(p.code.ok_or("no code")?))
            .map_err(|e| e.to_string())?
            .set_pkce_verifier(PkceCodeVerifier::new(verifier))
            .request_async(&s.http)
            .await
            .map_err(|e| format!("token: {e}"))?;
        let id_token = tokens.id_token().ok_or("no ID token")?;
        let claims = id_token
            .claims(&client.id_token_verifier(), &Nonce::new(nonce))
            .map_err(|e| format!("ID token: {e}"))?;
        let userinfo: Map<String, Value> = s
            .http
            .get(
                client
                    .user_info_url()
                    .ok_or("no userinfo endpoint")?
                    .url()
                    .as_str(),
            )
            .bearer_auth(tokens.access_token().secret())
            .send()
            .await
            .map_err(|e| e.to_string())?
            .json()
            .await
            .map_err(|e| e.to_string())?;
        let shown = userinfo
            .iter()
            .filter(|(k, _)| *k != "sub")
            .map(|(k, v)| {
                (
                    k.clone(),
                    v.as_str()
                        .map(str::to_owned)
                        .unwrap_or_else(|| v.to_string()),
                )
            })
            .collect();
        Ok::<_, String>(SignedIn {
            sub: claims.subject().to_string(),
            acr: claims
                .auth_context_ref()
                .map(|a| a.to_string())
                .unwrap_or_default(),
            name: userinfo
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("công dân")
                .to_owned(),
            claims: shown,
        })
    }
    .await;
    match result {
        Ok(user) => {
            let sid = random_token(32);
            Shared::lock(&s.sessions).insert(sid.clone(), user);
            let cookie = Cookie::build((SESSION_COOKIE, sid))
                .http_only(true)
                .same_site(SameSite::Lax)
                .path("/")
                .build();
            (
                jar.remove(Cookie::build(LOGIN_COOKIE).path("/"))
                    .add(cookie),
                Redirect::to("/"),
            )
                .into_response()
        }
        Err(e) => fail(format!("Đăng nhập không thành công / sign-in failed: {e}")),
    }
}

async fn logout(State(s): State<Arc<Shared>>, jar: CookieJar) -> Response {
    if let Some(c) = jar.get(SESSION_COOKIE) {
        Shared::lock(&s.sessions).remove(c.value());
    }
    (
        jar.remove(Cookie::build(SESSION_COOKIE).path("/")),
        Redirect::to("/"),
    )
        .into_response()
}
