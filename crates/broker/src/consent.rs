//! `POST /consent`: the citizen's answer to "share these details with this system?".
//!
//! Consent is explicit (a button press, never silence), recorded per citizen and client with the
//! exact claims agreed to, and asked again when a client wants more than was agreed. This module
//! holds the whole job: whether to ask ([`ask_if_needed`]), the pending question, the answer
//! (`POST /consent`) and the record.

use std::time::Duration;

use axum::extract::{Form, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum_extra::extract::CookieJar;
use lienthong_protocol::secret::{random_token, sha256_b64url};
use serde::{Deserialize, Serialize};

use crate::code::issue_code;
use crate::error::{CitizenPage, FlowError};
use crate::messages::Problem;
use crate::request::AuthorizeRequest;
use crate::session::{LiveSession, SsoSession};
use crate::state::{Broker, Client, Inner};

/// A consent request waiting for the citizen's answer.
#[derive(Debug, Serialize, Deserialize)]
pub struct PendingConsent {
    pub request: AuthorizeRequest,
    pub session_key: String,
    pub claims: Vec<String>,
    /// The account the code will name.
    pub sub: String,
}

/// Where a citizen's recorded consent for one client is kept.
pub(crate) fn consent_key(session: &crate::session::SsoSession, client_id: &str) -> String {
    let who = sha256_b64url(&format!(
        "{}\0{}",
        session.identity.issuer, session.identity.subject
    ));
    format!("consent:{who}:{client_id}")
}

/// What the login does next, once consent is considered.
pub(crate) enum ConsentStep {
    /// Nothing to ask, or already agreed: go on to the code.
    Granted,
    /// The consent page to show.
    Ask(Response),
}

fn pending_consent_key(consent_id: &str) -> String {
    format!("consent-pending:{}", sha256_b64url(consent_id))
}

/// Whether the citizen must be asked before `claims` go to `client`; if so, the question is
/// stored (single use, bound to the session) and its page returned.
pub(crate) async fn ask_if_needed(
    inner: &Inner,
    client: &Client,
    request: &AuthorizeRequest,
    live: &LiveSession,
    claims: &[String],
    sub: &str,
) -> Result<ConsentStep, FlowError> {
    if !client.config.require_consent || claims.is_empty() {
        return Ok(ConsentStep::Granted);
    }
    let granted: Vec<String> = inner
        .store
        .get_json(&consent_key(&live.session, &client.config.id))
        .await?
        .unwrap_or_default();
    let covered = claims.iter().all(|c| granted.contains(c));
    if !request.prompt_consent && covered {
        return Ok(ConsentStep::Granted);
    }
    if request.prompt_none {
        return Err(request.error(inner, "consent_required", "the citizen must consent"));
    }
    let consent_id = random_token(32);
    let pending = PendingConsent {
        request: request.clone(),
        session_key: live.key.clone(),
        claims: claims.to_vec(),
        sub: sub.to_owned(),
    };
    let ttl = Duration::from_secs(inner.config.sessions.pending_login_secs);
    inner
        .store
        .put_json(&pending_consent_key(&consent_id), &pending, ttl)
        .await?;
    let labels: Vec<_> = claims
        .iter()
        .map(|c| crate::pages::claim_label(c))
        .collect();
    let name = live.session.identity.name.clone().unwrap_or_default();
    Ok(ConsentStep::Ask(crate::pages::consent(
        &client.config.name,
        &labels,
        &consent_id,
        &name,
    )))
}

#[derive(Debug, Deserialize)]
pub struct ConsentForm {
    consent_id: String,
    decision: String,
}

pub async fn decide(
    State(broker): State<Broker>,
    jar: CookieJar,
    Form(form): Form<ConsentForm>,
) -> Response {
    let inner = broker.inner();
    let result: Result<Response, FlowError> = async {
        let key = pending_consent_key(&form.consent_id);
        let Some(pending) = inner.store.take_json::<PendingConsent>(&key).await? else {
            return Err(CitizenPage::new(StatusCode::BAD_REQUEST, Problem::ConsentExpired).into());
        };
        let request = &pending.request;
        let client = inner.client_of(&request.client_id)?;
        // The answer must come from the browser whose session asked.
        let live = inner
            .current_session(&jar)
            .await?
            .filter(|l| l.key == pending.session_key);
        let Some(mut live) = live else {
            return Err(request.page(inner, StatusCode::BAD_REQUEST, Problem::ConsentExpired));
        };
        if form.decision != "allow" {
            tracing::info!(client = %request.client_id, "citizen refused consent");
            return Err(request.error(
                inner,
                "access_denied",
                "the citizen refused to share the requested details",
            ));
        }
        record(inner, &live.session, &request.client_id, &pending.claims).await?;
        tracing::info!(client = %request.client_id, claims = ?pending.claims, "consent recorded");
        issue_code(
            inner,
            client,
            request,
            &mut live,
            pending.claims,
            pending.sub,
        )
        .await
    }
    .await;
    inner.respond(result)
}

async fn record(
    inner: &Inner,
    session: &SsoSession,
    client_id: &str,
    claims: &[String],
) -> Result<(), FlowError> {
    let key = consent_key(session, client_id);
    let mut granted: Vec<String> = inner.store.get_json(&key).await?.unwrap_or_default();
    for c in claims {
        if !granted.contains(c) {
            granted.push(c.clone());
        }
    }
    let ttl = Duration::from_secs(inner.config.sessions.consent_days * 86_400);
    inner.store.put_json(&key, &granted, ttl).await?;
    Ok(())
}
