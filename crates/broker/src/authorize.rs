//! `GET|POST /authorize`: where a provincial system sends the citizen (OIDC Core §3.1.2).
//!
//! The raw query becomes an [`AuthorizeRequest`] only through [`validate`]; nothing else in the
//! broker sees unvalidated parameters. Errors about the client or its redirect URI are shown as a
//! page and never redirected (we cannot vouch for the address); every other error goes back to
//! the client with `state` and `iss`.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::CookieJar;
use lienthong_protocol::secret::{random_token, sha256_b64url};
use lienthong_protocol::{AuthorizationParams, pkce};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use url::Url;

use crate::config::SubjectType;
use crate::error::{CitizenPage, ClientRedirect, FlowError, Problem};
use crate::level::Level;
use crate::session::LiveSession;
use crate::upstream::{StartOptions, UpstreamError, UpstreamRequest};
use crate::{Broker, Client, Inner, identity};
use lienthong_adapter::LegacyCmnd;
use lienthong_adapter::directory::{CitizenInput, Resolution};

/// A validated authorization request: registered client, exact redirect URI, PKCE S256.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuthorizeRequest {
    pub client_id: String,
    pub redirect_uri: String,
    pub scopes: Vec<String>,
    pub state: Option<String>,
    pub nonce: Option<String>,
    pub code_challenge: String,
    pub prompt_none: bool,
    pub prompt_login: bool,
    pub prompt_consent: bool,
    pub max_age: Option<u64>,
    pub acr_values: Option<String>,
    pub minimum_level: Option<Level>,
    pub login_hint: Option<String>,
    pub ui_locales: Vec<String>,
}

/// A login waiting for the citizen to come back from the national IdP.
#[derive(Debug, Serialize, Deserialize)]
pub struct PendingLogin {
    pub request: AuthorizeRequest,
    pub upstream: UpstreamRequest,
}

/// What a redeemed code stands for.
#[derive(Debug, Serialize, Deserialize)]
pub struct CodeRecord {
    pub client_id: String,
    pub redirect_uri: String,
    pub code_challenge: String,
    pub nonce: Option<String>,
    pub scopes: Vec<String>,
    pub sub: String,
    pub claims: Map<String, Value>,
    pub acr: String,
    pub amr: Vec<String>,
    pub auth_time: u64,
    pub sid: String,
}

/// The redirect-URI rule, in one place: exact string match with a registered URI.
pub fn redirect_uri_registered(client: &Client, redirect_uri: &str) -> bool {
    client
        .config
        .redirect_uris
        .iter()
        .any(|r| r == redirect_uri)
}

fn error_to_client(
    inner: &Inner,
    redirect_uri: &str,
    state: Option<&str>,
    error: &'static str,
    description: impl Into<String>,
) -> FlowError {
    ClientRedirect {
        redirect_uri: redirect_uri.to_owned(),
        error,
        description: description.into(),
        state: state.map(str::to_owned),
        iss: inner.issuer.clone(),
    }
    .into()
}

/// Turns the raw parameters into an [`AuthorizeRequest`] or the right kind of refusal.
pub(crate) fn validate(
    inner: &Inner,
    raw: AuthorizationParams,
) -> Result<AuthorizeRequest, FlowError> {
    let client = raw
        .client_id
        .as_deref()
        .and_then(|id| inner.clients.get(id));
    let (Some(client), Some(redirect_uri)) = (client, raw.redirect_uri.as_deref()) else {
        return Err(CitizenPage::new(StatusCode::BAD_REQUEST, Problem::UnknownClient).into());
    };
    if !redirect_uri_registered(client, redirect_uri) {
        return Err(CitizenPage::new(StatusCode::BAD_REQUEST, Problem::UnknownClient).into());
    }
    let state = raw.state.as_deref();
    let fail =
        |error, description: &str| error_to_client(inner, redirect_uri, state, error, description);
    if raw.request.is_some() {
        return Err(fail(
            "request_not_supported",
            "request objects are not supported",
        ));
    }
    if raw.request_uri.is_some() {
        return Err(fail(
            "request_uri_not_supported",
            "request_uri is not supported",
        ));
    }
    if raw.response_type.as_deref() != Some("code") {
        return Err(fail(
            "unsupported_response_type",
            "only response_type=code is supported",
        ));
    }
    if raw.response_mode.as_deref().is_some_and(|m| m != "query") {
        return Err(fail(
            "invalid_request",
            "only response_mode=query is supported",
        ));
    }
    let scopes: Vec<String> = raw
        .scope
        .as_deref()
        .unwrap_or_default()
        .split(' ')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    if !scopes.iter().any(|s| s == "openid") {
        return Err(fail("invalid_scope", "scope must include openid"));
    }
    let code_challenge = pkce::check_challenge(
        raw.code_challenge.as_deref(),
        raw.code_challenge_method.as_deref(),
    )
    .map_err(|e| fail("invalid_request", &e.to_string()))?;
    let prompts: Vec<&str> = raw
        .prompt
        .as_deref()
        .unwrap_or_default()
        .split(' ')
        .filter(|p| !p.is_empty())
        .collect();
    if prompts.contains(&"none") && prompts.len() > 1 {
        return Err(fail(
            "invalid_request",
            "prompt=none cannot be combined with other values",
        ));
    }
    let max_age = match raw.max_age.as_deref() {
        Some(m) => Some(
            m.parse::<u64>()
                .map_err(|_| fail("invalid_request", "max_age must be a non-negative integer"))?,
        ),
        None => None,
    };
    let ui_locales = raw
        .ui_locales
        .as_deref()
        .unwrap_or_default()
        .split(' ')
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect();
    Ok(AuthorizeRequest {
        client_id: client.config.id.clone(),
        redirect_uri: redirect_uri.to_owned(),
        scopes,
        state: raw.state,
        nonce: raw.nonce,
        code_challenge,
        prompt_none: prompts.contains(&"none"),
        prompt_login: prompts.contains(&"login"),
        prompt_consent: prompts.contains(&"consent"),
        max_age,
        minimum_level: Level::minimum_requested(raw.acr_values.as_deref()),
        acr_values: raw.acr_values,
        login_hint: raw.login_hint,
        ui_locales,
    })
}

impl AuthorizeRequest {
    /// The same request again: the "try again" link of error pages.
    pub fn retry_url(&self, issuer: &str) -> String {
        let mut url = Url::parse(&format!("{issuer}/authorize")).expect("issuer is a URL");
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("client_id", &self.client_id)
                .append_pair("redirect_uri", &self.redirect_uri)
                .append_pair("response_type", "code")
                .append_pair("scope", &self.scopes.join(" "))
                .append_pair("code_challenge", &self.code_challenge)
                .append_pair("code_challenge_method", "S256");
            for (k, v) in [
                ("state", &self.state),
                ("nonce", &self.nonce),
                ("acr_values", &self.acr_values),
                ("login_hint", &self.login_hint),
            ] {
                if let Some(v) = v {
                    q.append_pair(k, v);
                }
            }
            if let Some(m) = self.max_age {
                q.append_pair("max_age", &m.to_string());
            }
        }
        url.into()
    }

    /// An error for the client, sent back to its redirect URI.
    pub(crate) fn error(
        &self,
        inner: &Inner,
        error: &'static str,
        description: impl Into<String>,
    ) -> FlowError {
        error_to_client(
            inner,
            &self.redirect_uri,
            self.state.as_deref(),
            error,
            description,
        )
    }

    /// A page for the citizen with a way to try again and a way back to the service.
    pub(crate) fn page(&self, inner: &Inner, status: StatusCode, problem: Problem) -> FlowError {
        let back = match self.error(inner, "access_denied", problem.key()) {
            FlowError::Redirect(r) => Some(r.url()),
            FlowError::Page(_) => None,
        };
        CitizenPage::new(status, problem)
            .with_links(Some(self.retry_url(&inner.issuer)), back)
            .into()
    }
}

pub async fn get(
    State(broker): State<Broker>,
    jar: CookieJar,
    RawQuery(query): RawQuery,
) -> Response {
    authorize(broker, jar, query.unwrap_or_default().as_bytes()).await
}

/// OIDC Core §3.1.2.1: the authorization endpoint also accepts a form POST.
pub async fn post(State(broker): State<Broker>, jar: CookieJar, body: Bytes) -> Response {
    authorize(broker, jar, &body).await
}

async fn authorize(broker: Broker, jar: CookieJar, params: &[u8]) -> Response {
    let inner = broker.inner();
    let result = async {
        // A parameter given twice (RFC 6749 §3.1 forbids it) or malformed encoding: we cannot
        // trust any of it, so not the redirect URI either.
        let raw = AuthorizationParams::parse(params)
            .map_err(|_| CitizenPage::new(StatusCode::BAD_REQUEST, Problem::InvalidRequest))?;
        let request = validate(inner, raw)?;
        let live = inner.current_session(&jar).await?;
        match live {
            Some(live)
                if !request.prompt_login
                    && live
                        .session
                        .satisfies(request.minimum_level, request.max_age) =>
            {
                complete(inner, &request, live).await
            }
            _ if request.prompt_none => {
                Err(request.error(inner, "login_required", "the citizen must sign in"))
            }
            _ => start_upstream(inner, request, jar).await,
        }
    }
    .await;
    inner.respond(result)
}

/// Step 4: keep the request as a pending login and send the citizen to the national IdP.
async fn start_upstream(
    inner: &Inner,
    request: AuthorizeRequest,
    jar: CookieJar,
) -> Result<Response, FlowError> {
    let state = random_token(32);
    let options = StartOptions {
        minimum_level: request.minimum_level,
        force_login: request.prompt_login,
        max_age: request.max_age,
        login_hint: request.login_hint.as_deref(),
        ui_locales: &request.ui_locales,
    };
    let (url, upstream) = match inner.upstream.start(&state, options).await {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!(error = %e, "cannot start an upstream login");
            let problem = match e {
                UpstreamError::Unavailable(_) => Problem::UpstreamUnavailable,
                _ => Problem::UpstreamRejected,
            };
            return Err(request.page(inner, StatusCode::SERVICE_UNAVAILABLE, problem));
        }
    };
    let ttl = Duration::from_secs(inner.config.sessions.pending_login_secs);
    inner
        .store
        .put_json(
            &format!("pending:{}", sha256_b64url(&state)),
            &PendingLogin { request, upstream },
            ttl,
        )
        .await?;
    let binding = inner.cookie(inner.login_cookie_name(&state), state, ttl);
    Ok((jar.add(binding), Redirect::to(&url)).into_response())
}

/// A consent request waiting for the citizen's answer.
#[derive(Debug, Serialize, Deserialize)]
pub struct PendingConsent {
    pub request: AuthorizeRequest,
    pub session_key: String,
    pub claims: Vec<String>,
    /// The account the code will name.
    pub sub: String,
}

/// Step 7: which account of this client's system belongs to the citizen, under its realm's
/// policy; or the page that says why there is none.
async fn account_for(
    inner: &Inner,
    request: &AuthorizeRequest,
    session: &crate::session::SsoSession,
) -> Result<String, FlowError> {
    let client = &inner.clients[&request.client_id];
    let identity = &session.identity;
    if client.config.subject_type == SubjectType::Pairwise {
        return Ok(lienthong_adapter::derived_account_id(
            &inner.account_secret,
            &client.realm,
            &identity.issuer,
            &identity.subject,
        ));
    }
    let realm = &inner.realms[&client.realm];
    let cmnd = identity
        .legacy_id
        .as_deref()
        .and_then(|c| LegacyCmnd::parse(c).ok());
    let input = CitizenInput {
        issuer: &identity.issuer,
        subject: &identity.subject,
        citizen_id: identity.citizen_id.as_ref(),
        legacy_cmnd: cmnd.as_ref(),
        name: identity.name.as_deref(),
        birthdate: identity.birthdate.as_deref(),
    };
    let resolution = inner
        .directory
        .resolve(realm, &input, &inner.http)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "directory failure");
            request.page(
                inner,
                StatusCode::SERVICE_UNAVAILABLE,
                Problem::TemporarilyUnavailable,
            )
        })?;
    let refuse = |status, problem, description: &str| {
        if request.prompt_none {
            return request.error(inner, "access_denied", description);
        }
        match request.page(inner, status, problem) {
            FlowError::Page(mut page) => {
                page.contact = realm.office.clone();
                // Trying again cannot help until someone links the account.
                if problem != Problem::SystemUnavailable {
                    page.retry = None;
                }
                FlowError::Page(page)
            }
            other => other,
        }
    };
    match resolution {
        Resolution::Account {
            local_account_id,
            how,
        } => {
            tracing::info!(client = %client.config.id, realm = %realm.id, how = ?how, "account resolved");
            Ok(local_account_id)
        }
        Resolution::NotLinked => Err(refuse(
            StatusCode::FORBIDDEN,
            Problem::NotLinked,
            "no account linked in this system",
        )),
        Resolution::NeedsRelink => Err(refuse(
            StatusCode::FORBIDDEN,
            Problem::RelinkRequired,
            "the account must be re-linked",
        )),
        Resolution::LookupUnavailable(reason) => {
            tracing::warn!(realm = %realm.id, %reason, "lookup endpoint failed");
            Err(refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                Problem::SystemUnavailable,
                "the system's lookup failed",
            ))
        }
    }
}

/// Where a citizen's recorded consent for one client is kept.
pub(crate) fn consent_key(session: &crate::session::SsoSession, client_id: &str) -> String {
    let who = sha256_b64url(&format!(
        "{}\0{}",
        session.identity.issuer, session.identity.subject
    ));
    format!("consent:{who}:{client_id}")
}

/// Steps 7–8 with a live session: consent if needed, then a one-time code back to the client.
pub(crate) async fn complete(
    inner: &Inner,
    request: &AuthorizeRequest,
    mut live: LiveSession,
) -> Result<Response, FlowError> {
    let client = &inner.clients[&request.client_id];
    let sub = account_for(inner, request, &live.session).await?;
    let claims: Vec<String> = identity::releasable(&request.scopes, &client.config.claims)
        .map(str::to_owned)
        .collect();
    if client.config.require_consent && !claims.is_empty() {
        let granted: Vec<String> = inner
            .store
            .get_json(&consent_key(&live.session, &client.config.id))
            .await?
            .unwrap_or_default();
        let covered = claims.iter().all(|c| granted.contains(c));
        if request.prompt_consent || !covered {
            if request.prompt_none {
                return Err(request.error(inner, "consent_required", "the citizen must consent"));
            }
            let consent_id = random_token(32);
            let pending = PendingConsent {
                request: request.clone(),
                session_key: live.key.clone(),
                claims: claims.clone(),
                sub,
            };
            let ttl = Duration::from_secs(inner.config.sessions.pending_login_secs);
            inner
                .store
                .put_json(
                    &format!("consent-pending:{}", sha256_b64url(&consent_id)),
                    &pending,
                    ttl,
                )
                .await?;
            let labels: Vec<_> = claims
                .iter()
                .map(|c| crate::pages::claim_label(c))
                .collect();
            let name = live.session.identity.name.clone().unwrap_or_default();
            return Ok(crate::pages::consent(
                &client.config.name,
                &labels,
                &consent_id,
                &name,
            ));
        }
    }
    issue_code(inner, request, &mut live, claims, sub).await
}

/// Step 8: a one-time code bound to the client, redirect URI, PKCE challenge, nonce and session.
pub(crate) async fn issue_code(
    inner: &Inner,
    request: &AuthorizeRequest,
    live: &mut LiveSession,
    claims: Vec<String>,
    sub: String,
) -> Result<Response, FlowError> {
    let client = &inner.clients[&request.client_id];
    let session = &live.session;
    let identity = &session.identity;
    let record = CodeRecord {
        client_id: client.config.id.clone(),
        redirect_uri: request.redirect_uri.clone(),
        code_challenge: request.code_challenge.clone(),
        nonce: request.nonce.clone(),
        scopes: request.scopes.clone(),
        sub,
        claims: identity.released_claims(&request.scopes, &claims),
        acr: session.level.acr().to_owned(),
        amr: session.amr.clone(),
        auth_time: session.auth_time,
        sid: session.sid.clone(),
    };
    if !live.session.clients.contains(&client.config.id) {
        live.session.clients.push(client.config.id.clone());
    }
    inner.touch_session(live).await?;
    let code = random_token(32);
    let ttl = Duration::from_secs(inner.config.tokens.code_secs);
    inner
        .store
        .put_json(&format!("code:{}", sha256_b64url(&code)), &record, ttl)
        .await?;
    tracing::info!(client = %client.config.id, level = live.session.level.number(), "authorization code issued");
    let mut url =
        Url::parse(&request.redirect_uri).expect("registered redirect URIs are valid URLs");
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("code", &code);
        if let Some(state) = &request.state {
            q.append_pair("state", state);
        }
        q.append_pair("iss", &inner.issuer);
    }
    Ok(Redirect::to(url.as_str()).into_response())
}
