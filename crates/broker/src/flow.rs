//! Steps 7–8 of a login, once the citizen has a live SSO session (fresh from the callback, or
//! found at `/authorize`): the client's account for the citizen, consent where needed, then the
//! code. The one path both entries share.

use axum::response::Response;

use crate::account::{before_consent, release};
use crate::consent::{self, ConsentStep, ask_if_needed};
use crate::error::FlowError;
use crate::identity;
use crate::request::AuthorizeRequest;
use crate::session::LiveSession;
use crate::state::Inner;

/// Steps 7–8 with a live session: consent where it is required, and only then the account
/// and the code ([`release`]). Nothing about the citizen leaves Lienthong — no lookup call to the
/// system, no account created in it, no code — before the citizen has agreed.
pub(crate) async fn complete(
    inner: &Inner,
    request: &AuthorizeRequest,
    live: &LiveSession,
) -> Result<Response, FlowError> {
    let client = inner.client_of(&request.client_id)?;
    let identity = &live.session.identity;
    let claims: Vec<String> = identity::releasable(&request.scopes, &client.config.claims)
        .map(str::to_owned)
        .collect();
    // What the directory decides without releasing anything comes first: a citizen with no
    // account in a `linked` realm is told so before being asked to share anything. The
    // consents already given, where consent is required, are read in the same statement.
    let subject_key = consent::required(client, &claims).then(|| consent::subject_key(identity));
    let question = subject_key
        .as_deref()
        .map(|key| consent::question(inner, key, &client.config.id));
    let (account, granted) = before_consent(inner, client, request, identity, question).await?;
    match ask_if_needed(inner, client, request, live, &claims, &account, granted).await? {
        ConsentStep::Ask(page) => Ok(page),
        ConsentStep::Granted => release(inner, client, request, live, claims, account, None).await,
    }
}
