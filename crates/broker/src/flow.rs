//! Steps 7–8 of a login, once the citizen has a live SSO session (fresh from the callback, or
//! found at `/authorize`): the client's account for the citizen, consent where needed, then the
//! code. The one path both entries share.

use axum::response::Response;

use crate::account::account_for;
use crate::code::issue_code;
use crate::consent::{ConsentStep, ask_if_needed};
use crate::error::FlowError;
use crate::identity;
use crate::request::AuthorizeRequest;
use crate::session::LiveSession;
use crate::state::Inner;

/// Steps 7–8 with a live session: the account, consent if needed, then a one-time code back to
/// the client.
pub(crate) async fn complete(
    inner: &Inner,
    request: &AuthorizeRequest,
    live: LiveSession,
) -> Result<Response, FlowError> {
    let client = inner.client_of(&request.client_id)?;
    let sub = account_for(inner, client, request, &live.session).await?;
    let claims: Vec<String> = identity::releasable(&request.scopes, &client.config.claims)
        .map(str::to_owned)
        .collect();
    match ask_if_needed(inner, client, request, &live, &claims, &sub).await? {
        ConsentStep::Ask(page) => Ok(page),
        ConsentStep::Granted => issue_code(inner, client, request, &live, claims, sub).await,
    }
}
