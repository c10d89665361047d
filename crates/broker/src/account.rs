//! Step 7 of a login: which local account of the client's system belongs to the citizen, under
//! its realm's linking policy (the directory decides), or the page that says why there is none.
//!
//! In two parts, around consent. [`before_consent`] decides what Lienthong's own directory can
//! decide without anything leaving it — an existing or imported link, a `linked` realm's
//! refusal, a number known under another subject — so a citizen with no account is told so
//! before being asked anything. What releases the citizen to the system — the `lookup` call, a
//! `provision`ed account — happens in [`release`], after consent, and is followed by the code.

use axum::http::StatusCode;
use axum::response::Response;
use lienthong_adapter::directory::{
    CitizenInput, ConsentAnswer, ConsentQuery, DirectoryError, Preparation, Prepared, Resolution,
};
use lienthong_adapter::policy::RealmConfig;
use serde::{Deserialize, Serialize};

use crate::code::issue_code;
use crate::config::SubjectType;
use crate::error::FlowError;
use crate::identity::CitizenIdentity;
use crate::messages::Problem;
use crate::request::AuthorizeRequest;
use crate::session::LiveSession;
use crate::state::{Client, Inner};

/// The account as far as it is known before consent.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Account {
    /// Decided already: the `sub` the code will name.
    Known(String),
    /// The realm's policy acts after consent, for the citizen record with this key.
    AfterConsent { citizen_key: String },
}

fn input(identity: &CitizenIdentity) -> CitizenInput<'_> {
    CitizenInput {
        issuer: &identity.issuer,
        subject: &identity.subject,
        citizen_id: identity.citizen_id.as_ref(),
        legacy_cmnd: identity.legacy_id.as_ref(),
        name: identity.name.as_deref(),
        birthdate: identity.birthdate.as_deref(),
    }
}

fn realm_of<'a>(inner: &'a Inner, client: &Client) -> &'a RealmConfig {
    // Every client's realm is in the map (filled at start), so this holds for any client.
    &inner.realms[&client.realm]
}

fn unavailable(inner: &Inner, request: &AuthorizeRequest, e: DirectoryError) -> FlowError {
    tracing::error!(error = %e, "directory failure");
    request.page(
        inner,
        StatusCode::SERVICE_UNAVAILABLE,
        Problem::TemporarilyUnavailable,
    )
}

/// What the account step knows before consent — the `sub`, a refusal page, or "after
/// consent" — and the answer to the consent `question`, where there is one, read with it.
pub(crate) async fn before_consent(
    inner: &Inner,
    client: &Client,
    request: &AuthorizeRequest,
    identity: &CitizenIdentity,
    question: Option<ConsentQuery<'_>>,
) -> Result<(Account, Option<Vec<String>>), FlowError> {
    let unavailable = |e| unavailable(inner, request, e);
    if client.config.subject_type == SubjectType::Pairwise {
        let sub = lienthong_adapter::derived_account_id(
            &inner.account_secret,
            &client.realm,
            &identity.issuer,
            &identity.subject,
        );
        let granted = match question {
            Some(q) => Some(
                inner
                    .directory
                    .consented_claims(q)
                    .await
                    .map_err(unavailable)?,
            ),
            None => None,
        };
        return Ok((Account::Known(sub), granted));
    }
    let realm = realm_of(inner, client);
    let Preparation { account, consented } = inner
        .directory
        .prepare(realm, &input(identity), question)
        .await
        .map_err(unavailable)?;
    let account = match account {
        Prepared::Done(resolution) => {
            Account::Known(outcome(inner, client, request, realm, resolution)?)
        }
        Prepared::NeedsRelease { citizen_key } => Account::AfterConsent { citizen_key },
    };
    Ok((account, consented))
}

/// What follows consent (or needs none): the account, if the realm's policy still had to act
/// — the first moment anything about the citizen leaves Lienthong — then the code. The citizen's
/// consent `answer`, where they were just asked, is recorded first, or with the account the
/// directory makes (one round trip: [`Directory::release_account`]).
///
/// [`Directory::release_account`]: lienthong_adapter::directory::Directory::release_account
pub(crate) async fn release(
    inner: &Inner,
    client: &Client,
    request: &AuthorizeRequest,
    live: &LiveSession,
    claims: Vec<String>,
    account: Account,
    answer: Option<ConsentAnswer<'_>>,
) -> Result<Response, FlowError> {
    let sub = match account {
        Account::Known(sub) => {
            if let Some(answer) = &answer {
                inner
                    .directory
                    .record_consent_answer(answer)
                    .await
                    .map_err(|e| unavailable(inner, request, e))?;
            }
            sub
        }
        Account::AfterConsent { citizen_key } => {
            let realm = realm_of(inner, client);
            let resolution = inner
                .directory
                .release_account(
                    realm,
                    &input(&live.session.identity),
                    &citizen_key,
                    &inner.http,
                    answer.as_ref(),
                )
                .await
                .map_err(|e| unavailable(inner, request, e))?;
            outcome(inner, client, request, realm, resolution)?
        }
    };
    issue_code(inner, client, request, live, claims, sub).await
}

/// The directory's answer as the `sub`, or the page (or error) that says why there is none.
fn outcome(
    inner: &Inner,
    client: &Client,
    request: &AuthorizeRequest,
    realm: &RealmConfig,
    resolution: Resolution,
) -> Result<String, FlowError> {
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
