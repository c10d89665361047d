//! `POST /consent`: the citizen's answer to "share these details with this system?".
//!
//! Consent is explicit (a button press, never silence), recorded per citizen and client with the
//! exact claims agreed to, and asked again when a client wants more than was agreed. This module
//! holds the whole job: whether to ask ([`ask_if_needed`]), the pending question, the answer
//! (`POST /consent`) and the record.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum_extra::extract::CookieJar;
use lienthong_adapter::directory::{ConsentAnswer, ConsentQuery};
use lienthong_protocol::secret::{random_token, sha256_b64url};
use serde::{Deserialize, Serialize};

use crate::account::{Account, release};
use crate::error::{CitizenPage, FlowError};
use crate::identity::CitizenIdentity;
use crate::messages::Problem;
use crate::request::AuthorizeRequest;
use crate::session::LiveSession;
use crate::state::{Broker, Client, Inner};
use crate::store::{Record, keys};

/// A consent request waiting for the citizen's answer.
#[derive(Debug, Serialize, Deserialize)]
pub struct PendingConsent {
    pub request: AuthorizeRequest,
    pub session_key: String,
    pub claims: Vec<String>,
    /// The question exactly as the page put it, recorded with the answer.
    pub wording: String,
    /// The account as far as it was known before asking.
    pub account: Account,
}

impl Record for PendingConsent {
    const KIND: &'static str = "pending consent";
    const VERSION: u8 = 3;
    const JSON_VERSION: Option<u8> = Some(2);
}

/// The citizen's key in the consent records: the upstream identity's hash, never a number.
pub(crate) fn subject_key(identity: &CitizenIdentity) -> String {
    sha256_b64url(&format!("{}\0{}", identity.issuer, identity.subject))
}

/// Whether `claims` may go to `client` only with the citizen's consent.
pub(crate) fn required(client: &Client, claims: &[String]) -> bool {
    client.config.require_consent && !claims.is_empty()
}

/// The directory's question: the claims the citizen with `subject_key` has agreed to release
/// to `client_id`, within `consent_days`.
pub(crate) fn question<'a>(
    inner: &Inner,
    subject_key: &'a str,
    client_id: &'a str,
) -> ConsentQuery<'a> {
    ConsentQuery {
        subject_key,
        client_id,
        since: inner.now() as i64 - (inner.config.sessions.consent_days * 86_400) as i64,
    }
}

/// The claims the citizen has agreed to release to `client_id`, within `consent_days`.
pub(crate) async fn granted_claims(
    inner: &Inner,
    identity: &CitizenIdentity,
    client_id: &str,
) -> Result<Vec<String>, lienthong_adapter::directory::DirectoryError> {
    let key = subject_key(identity);
    inner
        .directory
        .consented_claims(question(inner, &key, client_id))
        .await
}

fn directory_unavailable(e: lienthong_adapter::directory::DirectoryError) -> FlowError {
    tracing::error!(error = %e, "directory failure at consent");
    CitizenPage::new(
        StatusCode::SERVICE_UNAVAILABLE,
        Problem::TemporarilyUnavailable,
    )
    .into()
}

/// The question the consent page asks, in both languages, as recorded with the answer.
fn wording(client_name: &str, labels: &[crate::pages::ClaimLabel]) -> String {
    let vi: Vec<&str> = labels.iter().map(|l| l.vi).collect();
    let en: Vec<&str> = labels.iter().map(|l| l.en).collect();
    format!(
        "{client_name} đề nghị được nhận các thông tin sau của bạn: {}. / {client_name} asks to receive these details of yours: {}.",
        vi.join(", "),
        en.join(", ")
    )
}

/// What the login does next, once consent is considered.
pub(crate) enum ConsentStep {
    /// Nothing to ask, or already agreed: go on to the code.
    Granted,
    /// The consent page to show.
    Ask(Response),
}

/// Whether the citizen must be asked before `claims` go to `client`, given the claims they
/// have `granted` it (`None`: no consent is [`required`]); if so, the question is stored
/// (single use, bound to the session) and its page returned.
pub(crate) async fn ask_if_needed(
    inner: &Inner,
    client: &Client,
    request: &AuthorizeRequest,
    live: &LiveSession,
    claims: &[String],
    account: &Account,
    granted: Option<Vec<String>>,
) -> Result<ConsentStep, FlowError> {
    let Some(granted) = granted else {
        return Ok(ConsentStep::Granted);
    };
    let covered = claims.iter().all(|c| granted.contains(c));
    if !request.prompt_consent && covered {
        return Ok(ConsentStep::Granted);
    }
    if request.prompt_none {
        return Err(request.error(inner, "consent_required", "the citizen must consent"));
    }
    let consent_id = random_token(32);
    let labels: Vec<_> = claims
        .iter()
        .map(|c| crate::pages::claim_label(c))
        .collect();
    let pending = PendingConsent {
        request: request.clone(),
        session_key: live.key.clone(),
        claims: claims.to_vec(),
        wording: wording(&client.config.name, &labels),
        account: account.clone(),
    };
    let ttl = Duration::from_secs(inner.config.sessions.pending_login_secs);
    // A session this request opened goes with its question, in one round trip.
    let mut batch = inner.store.batch();
    inner.save_session(&mut batch, live);
    batch.put(keys::pending_consent(&consent_id), &pending, ttl);
    inner.store.write(batch).await?;
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
    body: axum::body::Bytes,
) -> Response {
    let inner = broker.inner();
    let result: Result<Response, FlowError> = async {
        let form: ConsentForm = serde_urlencoded::from_bytes(&body)
            .map_err(|_| CitizenPage::new(StatusCode::BAD_REQUEST, Problem::InvalidRequest))?;
        let key = keys::pending_consent(&form.consent_id);
        // The question is taken and the browser's session read at once: neither depends on the
        // other, and on Redis the two commands go out together (most often in one write).
        let (pending, live) = tokio::join!(
            inner.store.take::<PendingConsent>(&key),
            inner.current_session(&jar)
        );
        let Some(pending) = pending? else {
            return Err(CitizenPage::new(StatusCode::BAD_REQUEST, Problem::ConsentExpired).into());
        };
        let request = &pending.request;
        let client = inner.client_of(&request.client_id)?;
        // The answer must come from the browser whose session asked.
        let live = live?.filter(|l| l.key == pending.session_key);
        let Some(live) = live else {
            return Err(request.page(inner, StatusCode::BAD_REQUEST, Problem::ConsentExpired));
        };
        let subject = subject_key(&live.session.identity);
        let answer = ConsentAnswer {
            subject_key: &subject,
            client_id: &request.client_id,
            claims: &pending.claims,
            wording: &pending.wording,
            allowed: form.decision == "allow",
        };
        if !answer.allowed {
            inner
                .directory
                .record_consent_answer(&answer)
                .await
                .map_err(directory_unavailable)?;
            tracing::info!(client = %request.client_id, "citizen refused consent");
            return Err(request.error(
                inner,
                "access_denied",
                "the citizen refused to share the requested details",
            ));
        }
        tracing::info!(client = %request.client_id, claims = ?pending.claims, "consent given");
        // Recorded by `release`, with the account where the directory makes one.
        release(
            inner,
            client,
            request,
            &live,
            pending.claims.clone(),
            pending.account,
            Some(answer),
        )
        .await
    }
    .await;
    inner.respond(result)
}
