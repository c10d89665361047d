//! `POST /consent`: the citizen's answer to "share these details with this system?".
//!
//! Consent is explicit (a button press, never silence), recorded per citizen and client with the
//! exact claims agreed to, and asked again when a client wants more than was agreed.

use std::time::Duration;

use axum::extract::{Form, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum_extra::extract::CookieJar;
use lienthong_protocol::secret::sha256_b64url;
use serde::Deserialize;

use crate::Broker;
use crate::authorize::{PendingConsent, consent_key, issue_code};
use crate::error::{CitizenPage, FlowError, Problem};
use crate::session::{LiveSession, SsoSession};

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
        let key = format!("consent-pending:{}", sha256_b64url(&form.consent_id));
        let Some(pending) = inner.store.take_json::<PendingConsent>(&key).await? else {
            return Err(CitizenPage::new(StatusCode::BAD_REQUEST, Problem::ConsentExpired).into());
        };
        let request = &pending.request;
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
            request,
            &mut live as &mut LiveSession,
            pending.claims,
            pending.sub,
        )
        .await
    }
    .await;
    inner.respond(result)
}

async fn record(
    inner: &crate::Inner,
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
