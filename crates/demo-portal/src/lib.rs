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
use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreIdToken};
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, LogoutRequest, Nonce,
    OAuth2TokenResponse, PkceCodeChallenge, PkceCodeVerifier, PostLogoutRedirectUrl,
    ProviderMetadataWithLogout, RedirectUrl, Scope, TokenResponse,
};
use serde::Deserialize;
use serde_json::{Map, Value};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

const SESSION_COOKIE: &str = "portal_session";
const LOGIN_COOKIE: &str = "portal_login";

/// The province's site: its systems, each a separate client of the broker.
#[derive(Debug, Clone)]
pub struct PortalConfig {
    /// The broker's issuer URL.
    pub issuer: String,
    /// The site's name.
    pub title: String,
    pub systems: Vec<SystemConfig>,
}

/// One provincial system and how it is registered at the broker.
#[derive(Debug, Clone)]
pub struct SystemConfig {
    /// The path it is served under: "" for the site's root, else e.g. "mot-cua".
    pub slug: String,
    pub title: String,
    pub client_id: String,
    pub client_secret: String,
    pub redirect_uri: String,
    pub scopes: Vec<String>,
}

struct Shared {
    config: PortalConfig,
    http: openidconnect::reqwest::Client,
    metadata: tokio::sync::OnceCell<ProviderMetadataWithLogout>,
    logins: Mutex<HashMap<String, (String, String)>>,
    /// Signed-in citizens, by (system index, session cookie).
    sessions: Mutex<HashMap<(usize, String), SignedIn>>,
}

/// A request's system: its index in the configuration.
#[derive(Clone, Copy)]
struct Sys(usize);

#[derive(Clone)]
struct SignedIn {
    /// For the `id_token_hint` of RP-initiated logout.
    id_token: CoreIdToken,
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
    lienthong_protocol::crypto::install();
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
    let mut app = Router::new();
    for (i, system) in shared.config.systems.iter().enumerate() {
        let base = if system.slug.is_empty() {
            String::new()
        } else {
            format!("/{}", system.slug)
        };
        let sys = Sys(i);
        app = app
            .route(&format!("{base}/"), get(move |s, j| home(s, j, sys)))
            .route(&format!("{base}/login"), get(move |s, j| login(s, j, sys)))
            .route(
                &format!("{base}/callback"),
                get(move |s, j, q| callback(s, j, q, sys)),
            )
            .route(
                &format!("{base}/logout"),
                get(move |s, j| logout(s, j, sys)),
            );
        if !base.is_empty() {
            app = app.route(&base, get(move |s, j| home(s, j, sys)));
        }
    }
    let app = app.with_state(shared);
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

/// One system as listed on every page: where it is and whether this browser is signed in there.
struct Tab {
    title: String,
    href: String,
    current: bool,
    account: Option<String>,
}

#[derive(Template)]
#[template(path = "portal.html")]
struct Page<'a> {
    site: &'a str,
    title: &'a str,
    base: &'a str,
    tabs: &'a [Tab],
    user: Option<&'a SignedIn>,
    error: Option<&'a str>,
}

fn page(s: &Shared, jar: &CookieJar, sys: Sys, error: Option<&str>) -> Response {
    let sessions = Shared::lock(&s.sessions);
    let signed_in = |i: usize| {
        jar.get(&cookie_name(SESSION_COOKIE, i))
            .and_then(|c| sessions.get(&(i, c.value().to_owned())))
    };
    let tabs: Vec<Tab> = s
        .config
        .systems
        .iter()
        .enumerate()
        .map(|(i, system)| Tab {
            title: system.title.clone(),
            href: home_of(s, Sys(i)),
            current: i == sys.0,
            account: signed_in(i).map(|u| u.sub.clone()),
        })
        .collect();
    let base = home_of(s, sys).trim_end_matches('/').to_owned();
    let page = Page {
        site: &s.config.title,
        title: &s.config.systems[sys.0].title,
        base: &base,
        tabs: &tabs,
        user: signed_in(sys.0),
        error,
    };
    let html = page
        .render()
        .unwrap_or_else(|e| format!("template error: {e}"));
    let status = if error.is_some() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    (status, Html(html)).into_response()
}

/// Cookies are per system (they share the host): `portal_session_0`, ...
fn cookie_name(prefix: &str, i: usize) -> String {
    format!("{prefix}_{i}")
}

impl Shared {
    /// The broker's discovery, with its end-session endpoint, fetched once.
    async fn metadata(&self) -> Result<&ProviderMetadataWithLogout, String> {
        self.metadata
            .get_or_try_init(|| async {
                let issuer =
                    IssuerUrl::new(self.config.issuer.clone()).map_err(|e| e.to_string())?;
                ProviderMetadataWithLogout::discover_async(issuer, &self.http)
                    .await
                    .map_err(|e| e.to_string())
            })
            .await
    }

    fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
        m.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn client(
        &self,
        sys: Sys,
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
        let metadata = self.metadata().await?;
        let system = &self.config.systems[sys.0];
        Ok(CoreClient::from_provider_metadata(
            metadata.clone(),
            ClientId::new(system.client_id.clone()),
            Some(ClientSecret::new(system.client_secret.clone())),
        )
        .set_redirect_uri(
            RedirectUrl::new(system.redirect_uri.clone()).map_err(|e| e.to_string())?,
        ))
    }
}

async fn home(State(s): State<Arc<Shared>>, jar: CookieJar, sys: Sys) -> Response {
    page(&s, &jar, sys, None)
}

async fn login(State(s): State<Arc<Shared>>, jar: CookieJar, sys: Sys) -> Response {
    let client = match s.client(sys).await {
        Ok(c) => c,
        Err(e) => {
            return page(
                &s,
                &jar,
                sys,
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
    for scope in &s.config.systems[sys.0].scopes {
        request = request.add_scope(Scope::new(scope.clone()));
    }
    let (url, state, nonce) = request.url();
    Shared::lock(&s.logins).insert(
        state.secret().clone(),
        (nonce.secret().clone(), verifier.secret().clone()),
    );
    let cookie = Cookie::build((cookie_name(LOGIN_COOKIE, sys.0), state.secret().clone()))
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
    sys: Sys,
) -> Response {
    let fail = |msg: String| page(&s, &jar, sys, Some(&msg));
    let state = p.state.unwrap_or_default();
    if jar
        .get(&cookie_name(LOGIN_COOKIE, sys.0))
        .map(|c| c.value().to_owned())
        != Some(state.clone())
    {
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
        let client = s.client(sys).await?;
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
            id_token: id_token.clone(),
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
            Shared::lock(&s.sessions).insert((sys.0, sid.clone()), user);
            let cookie = Cookie::build((cookie_name(SESSION_COOKIE, sys.0), sid))
                .http_only(true)
                .same_site(SameSite::Lax)
                .path("/")
                .build();
            let home = home_of(&s, sys);
            (
                jar.remove(Cookie::build(cookie_name(LOGIN_COOKIE, sys.0)).path("/"))
                    .add(cookie),
                Redirect::to(&home),
            )
                .into_response()
        }
        Err(e) => fail(format!("Đăng nhập không thành công / sign-in failed: {e}")),
    }
}

fn home_of(s: &Shared, sys: Sys) -> String {
    let slug = &s.config.systems[sys.0].slug;
    if slug.is_empty() {
        "/".into()
    } else {
        format!("/{slug}/")
    }
}

/// "Đăng xuất": the portal forgets the citizen, then sends the browser to the broker's
/// end-session endpoint (RP-Initiated Logout) so the single sign-on session ends too, in every
/// system of the province and at the national IdP, and the browser comes back here.
async fn logout(State(s): State<Arc<Shared>>, jar: CookieJar, sys: Sys) -> Response {
    let name = cookie_name(SESSION_COOKIE, sys.0);
    let signed_in = jar
        .get(&name)
        .and_then(|c| Shared::lock(&s.sessions).remove(&(sys.0, c.value().to_owned())));
    let home = home_of(&s, sys);
    let jar = jar.remove(Cookie::build(name).path("/"));
    let system = &s.config.systems[sys.0];
    let end_session = match (&signed_in, s.metadata().await) {
        (Some(user), Ok(metadata)) => metadata
            .additional_metadata()
            .end_session_endpoint
            .clone()
            .and_then(|endpoint| {
                let back = system.redirect_uri.strip_suffix("callback")?.to_owned();
                Some(
                    LogoutRequest::from(endpoint)
                        .set_id_token_hint(&user.id_token)
                        .set_client_id(ClientId::new(system.client_id.clone()))
                        .set_post_logout_redirect_uri(PostLogoutRedirectUrl::new(back).ok()?)
                        .http_get_url(),
                )
            }),
        _ => None,
    };
    match end_session {
        Some(url) => (jar, Redirect::to(url.as_str())).into_response(),
        None => (jar, Redirect::to(&home)).into_response(),
    }
}
