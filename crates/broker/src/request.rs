//! The authorization request (OIDC Core §3.1.2.1) once validated.
//!
//! The raw parameters become an [`AuthorizeRequest`] only through [`validate`]; nothing else in
//! the broker sees unvalidated parameters. Errors about the client or its redirect URI are shown
//! as a page and never redirected (we cannot vouch for the address); every other error goes back
//! to the client with `state` and `iss`.

use axum::http::StatusCode;
use lienthong_protocol::{AuthorizationParams, pkce};
use serde::{Deserialize, Serialize};
use url::Url;

use crate::error::{CitizenPage, ClientRedirect, FlowError};
use crate::identity;
use crate::level::Level;
use crate::messages::Problem;
use crate::state::{Client, Inner};

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
    // Bounded: each of these is stored with the pending login until it expires.
    for (name, value, max) in [
        ("state", &raw.state, 512),
        ("nonce", &raw.nonce, 512),
        ("login_hint", &raw.login_hint, 256),
        ("acr_values", &raw.acr_values, 256),
        ("ui_locales", &raw.ui_locales, 128),
        ("scope", &raw.scope, 1024),
        ("max_age", &raw.max_age, 10),
    ] {
        if value.as_ref().is_some_and(|v| v.len() > max) {
            return Err(fail(
                "invalid_request",
                &format!("{name} is longer than {max} characters"),
            ));
        }
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
    // Granted = requested ∩ allowed: a scope this client may not have (say `accounts:admin`,
    // or `offline_access` without the right) is dropped, never copied into its tokens.
    let mut scopes: Vec<String> = Vec::new();
    for s in raw.scope.as_deref().unwrap_or_default().split(' ') {
        let allowed = identity::supported_scopes().any(|known| known == s)
            && (s != identity::OFFLINE_ACCESS || client.config.offline_access);
        if allowed && !scopes.iter().any(|have| have == s) {
            scopes.push(s.to_owned());
        }
    }
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
