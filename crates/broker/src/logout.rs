//! Signing out: RP-Initiated Logout 1.0 (`end_session_endpoint`), and what it sets off —
//! Back-Channel Logout 1.0 to every system that took part in the session, Front-Channel Logout
//! frames for systems that ask for them, and the national IdP's own sign-out.
//!
//! A sign-out ends the SSO session at once, on every node (it is in the Store): the next
//! `prompt=none` answers `login_required` and the next sign-in goes to the national IdP, whose
//! session is ended too, so on a shared counter computer the next citizen is asked for their own
//! password. Notifying the systems cannot undo that: a system that does not answer is logged,
//! retried a few times in the background, and never holds the citizen up.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Query, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::CookieJar;
use lienthong_protocol::secret::random_token;
use serde::{Deserialize, Serialize};
use serde_json::json;
use url::Url;

use crate::error::{CitizenPage, FlowError};
use crate::messages::Problem;
use crate::session::LiveSession;
use crate::state::{Broker, Client, Inner};
use crate::store::{Record, keys};

/// The `events` member of a logout token (Back-Channel Logout 1.0 §2.4).
pub const BACKCHANNEL_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

/// How long a system has to answer one back-channel delivery, and how many tries it gets.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(5);
const DELIVERY_ATTEMPTS: u32 = 3;

#[derive(Debug, Default, Deserialize)]
struct LogoutParams {
    id_token_hint: Option<String>,
    client_id: Option<String>,
    post_logout_redirect_uri: Option<String>,
    state: Option<String>,
}

/// A sign-out waiting for the national IdP to end its session: where to go afterwards.
#[derive(Debug, Serialize, Deserialize)]
struct PendingLogout {
    next: Option<String>,
}

impl Record for PendingLogout {
    const KIND: &'static str = "pending logout";
    const VERSION: u8 = 2;
    const JSON_VERSION: Option<u8> = Some(1);
}

#[derive(Deserialize)]
struct HintClaims {
    aud: serde_json::Value,
    sid: Option<String>,
}

pub async fn get(State(broker): State<Broker>, jar: CookieJar, RawQuery(q): RawQuery) -> Response {
    logout(broker, jar, q.unwrap_or_default().as_bytes()).await
}

pub async fn post(State(broker): State<Broker>, jar: CookieJar, body: Bytes) -> Response {
    logout(broker, jar, &body).await
}

fn bad_request() -> FlowError {
    CitizenPage::new(StatusCode::BAD_REQUEST, Problem::InvalidRequest).into()
}

/// The client and the sid an `id_token_hint` names, if it is one of our ID tokens (expired or
/// not: a hint is often presented after the token's short life).
fn read_hint(inner: &Inner, hint: &str) -> Result<(String, Option<String>), FlowError> {
    let expected = lienthong_protocol::Expected::issued_by(&inner.issuer);
    let claims: HintClaims = inner.keys.current().verify(hint, &expected).map_err(|e| {
        tracing::warn!(error = %e, "logout with an id_token_hint that is not ours");
        bad_request()
    })?;
    let aud = match claims.aud {
        serde_json::Value::String(a) => a,
        serde_json::Value::Array(a) => a
            .first()
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_owned(),
        _ => return Err(bad_request()),
    };
    Ok((aud, claims.sid))
}

/// Where the citizen goes at the end: the client's registered address, with `state`.
fn final_destination(
    client: Option<&Client>,
    uri: Option<&str>,
    state: Option<&str>,
) -> Result<Option<String>, FlowError> {
    let Some(uri) = uri else {
        return Ok(None);
    };
    // Never a redirect to an address the client did not register (an open redirector).
    let client = client.ok_or_else(bad_request)?;
    if !client
        .config
        .post_logout_redirect_uris
        .iter()
        .any(|r| r == uri)
    {
        return Err(bad_request());
    }
    let mut url = Url::parse(uri).map_err(|_| bad_request())?;
    if let Some(state) = state {
        url.query_pairs_mut().append_pair("state", state);
    }
    Ok(Some(url.into()))
}

async fn logout(broker: Broker, jar: CookieJar, params: &[u8]) -> Response {
    let inner = broker.inner();
    let result = async {
        let p: LogoutParams = serde_urlencoded::from_bytes(params).map_err(|_| bad_request())?;
        let hint = p
            .id_token_hint
            .as_deref()
            .map(|h| read_hint(inner, h))
            .transpose()?;
        let client_id = match (&p.client_id, &hint) {
            (Some(c), Some((aud, _))) if c != aud => return Err(bad_request()),
            (Some(c), _) => Some(c.clone()),
            (None, Some((aud, _))) => Some(aud.clone()),
            (None, None) => None,
        };
        let client = client_id.as_deref().and_then(|id| inner.clients.get(id));
        let destination = final_destination(
            client,
            p.post_logout_redirect_uri.as_deref(),
            p.state.as_deref(),
        )?;
        let live = match inner.current_session(&jar).await? {
            Some(live) => Some(live),
            None => match hint.as_ref().and_then(|(_, sid)| sid.as_deref()) {
                Some(sid) => match inner.session_by_sid(sid).await? {
                    Some(live) => Some(live),
                    None => inner.earlier_session_by_sid(sid).await?,
                },
                None => None,
            },
        };
        let upstream_id_token = live
            .as_ref()
            .and_then(|live| inner.upstream_id_token(&jar, live));
        let removals = (
            inner.forget_upstream_id_token(),
            inner.removal(inner.session_cookie_name(), "/"),
        );
        let Some(live) = live else {
            // Nothing to end (already signed out, or another browser): go on as asked.
            return Ok(match destination {
                Some(next) => (removals, Redirect::to(&next)).into_response(),
                None => (
                    removals,
                    crate::pages::signed_out(&[], None, inner.config.home_url.as_deref()),
                )
                    .into_response(),
            });
        };
        let (frames, next) = end(&broker, &live, upstream_id_token.as_deref(), destination).await?;
        tracing::info!(frames = frames.len(), "citizen signed out");
        Ok(if frames.is_empty() {
            match next {
                Some(next) => (removals, Redirect::to(&next)).into_response(),
                None => (
                    removals,
                    crate::pages::signed_out(&[], None, inner.config.home_url.as_deref()),
                )
                    .into_response(),
            }
        } else {
            (
                removals,
                crate::pages::signed_out(
                    &frames,
                    next.as_deref(),
                    inner.config.home_url.as_deref(),
                ),
            )
                .into_response()
        })
    }
    .await;
    inner.respond(result)
}

/// Ends the session and sets off the notifications; returns the front-channel frames and
/// where the browser goes next (the national IdP's sign-out, with the IdP's ID token as its
/// hint where one was kept, or the final destination).
async fn end(
    broker: &Broker,
    live: &LiveSession,
    upstream_id_token: Option<&str>,
    destination: Option<String>,
) -> Result<(Vec<String>, Option<String>), FlowError> {
    let inner = broker.inner();
    let sid = live.session.sid.clone();
    let participants = inner.session_clients(&sid).await?;
    inner.end_session(live).await?;
    let clients: Vec<&Client> = participants
        .iter()
        .filter_map(|id| inner.clients.get(id))
        .collect();
    for client in clients
        .iter()
        .filter(|c| c.config.backchannel_logout_uri.is_some())
    {
        let broker = broker.clone();
        let (client_id, sid) = (client.config.id.clone(), sid.clone());
        tokio::spawn(async move { deliver(&broker, &client_id, &sid).await });
    }
    let frames = clients
        .iter()
        .filter_map(|c| c.config.frontchannel_logout_uri.as_deref())
        .filter_map(|uri| {
            let mut url = Url::parse(uri).ok()?;
            url.query_pairs_mut()
                .append_pair("iss", &inner.issuer)
                .append_pair("sid", &sid);
            Some(String::from(url))
        })
        .collect();
    // The national IdP's own session, so the next sign-in asks for a password again.
    let state = random_token(32);
    let upstream = inner
        .upstream
        .end_session_url(
            upstream_id_token,
            &format!("{}/logout/callback", inner.issuer),
            &state,
        )
        .await;
    let next = match upstream {
        Some(url) => {
            let ttl = Duration::from_secs(inner.config.sessions.pending_login_secs);
            inner
                .store
                .put(
                    &keys::pending_logout(&state),
                    &PendingLogout { next: destination },
                    ttl,
                )
                .await?;
            Some(url)
        }
        None => destination,
    };
    Ok((frames, next))
}

/// `GET /logout/callback`: back from the national IdP's sign-out.
#[derive(Deserialize)]
pub struct CallbackParams {
    state: Option<String>,
}

pub async fn callback(State(broker): State<Broker>, Query(p): Query<CallbackParams>) -> Response {
    let inner = broker.inner();
    let result = async {
        let pending = match p.state.as_deref() {
            Some(state) => {
                inner
                    .store
                    .take::<PendingLogout>(&keys::pending_logout(state))
                    .await?
            }
            None => None,
        };
        Ok(match pending.and_then(|p| p.next) {
            Some(next) => Redirect::to(&next).into_response(),
            None => crate::pages::signed_out(&[], None, inner.config.home_url.as_deref()),
        })
    }
    .await;
    inner.respond(result)
}

/// The logout token for `client` (Back-Channel Logout 1.0 §2.4), signed like its ID tokens.
pub(crate) fn logout_token(inner: &Inner, client: &Client, sid: &str) -> Result<String, String> {
    let now = inner.now();
    let claims = json!({
        "iss": inner.issuer,
        "aud": client.config.id,
        "iat": now,
        "exp": now + 120,
        "jti": random_token(16),
        "sid": sid,
        "events": { BACKCHANNEL_EVENT: {} },
    });
    inner
        .keys
        .current()
        .sign(
            client.config.id_token_signed_response_alg.jwt(),
            "logout+jwt",
            &claims,
        )
        .map_err(|e| e.to_string())
}

/// POSTs the logout token, retrying a few times; a failure is logged, never fatal.
async fn deliver(broker: &Broker, client_id: &str, sid: &str) {
    let inner = broker.inner();
    let Some(client) = inner.clients.get(client_id) else {
        return;
    };
    let Some(uri) = client.config.backchannel_logout_uri.as_deref() else {
        return;
    };
    let token = match logout_token(inner, client, sid) {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(client = client_id, error = %e, "cannot sign a logout token");
            return;
        }
    };
    let mut last = String::new();
    for attempt in 0..DELIVERY_ATTEMPTS {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(250 * 4u64.pow(attempt - 1))).await;
        }
        match inner
            .http
            .post(uri)
            .timeout(DELIVERY_TIMEOUT)
            .form(&[("logout_token", token.as_str())])
            .send()
            .await
        {
            Ok(r) if r.status().is_success() => {
                tracing::info!(client = client_id, "back-channel logout delivered");
                return;
            }
            Ok(r) => last = format!("answered {}", r.status()),
            Err(e) => {
                last = if e.is_timeout() {
                    "timed out".into()
                } else {
                    e.to_string()
                }
            }
        }
    }
    tracing::warn!(client = client_id, reason = %last, attempts = DELIVERY_ATTEMPTS, "back-channel logout not delivered");
}
