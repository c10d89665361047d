//! Step 7 of a login: which local account of the client's system belongs to the citizen, under
//! its realm's linking policy (the directory decides), or the page that says why there is none.

use axum::http::StatusCode;
use lienthong_adapter::directory::{CitizenInput, Resolution};

use crate::config::SubjectType;
use crate::error::FlowError;
use crate::messages::Problem;
use crate::request::AuthorizeRequest;
use crate::session::SsoSession;
use crate::state::{Client, Inner};

/// Step 7: which account of this client's system belongs to the citizen, under its realm's
/// policy; or the page that says why there is none.
pub(crate) async fn account_for(
    inner: &Inner,
    client: &Client,
    request: &AuthorizeRequest,
    session: &SsoSession,
) -> Result<String, FlowError> {
    let identity = &session.identity;
    if client.config.subject_type == SubjectType::Pairwise {
        return Ok(lienthong_adapter::derived_account_id(
            &inner.account_secret,
            &client.realm,
            &identity.issuer,
            &identity.subject,
        ));
    }
    // Every client's realm is in the map (filled at start), so this holds for any client.
    let realm = &inner.realms[&client.realm];
    let input = CitizenInput {
        issuer: &identity.issuer,
        subject: &identity.subject,
        citizen_id: identity.citizen_id.as_ref(),
        legacy_cmnd: identity.legacy_id.as_ref(),
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
