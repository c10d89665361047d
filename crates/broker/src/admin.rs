//! The admin API: provincial systems and operators manage a realm's links (link, unlink, look
//! up, list). A client authenticates with the client_credentials grant for scope
//! `accounts:admin` and may touch only the realms its registration lists in `admin_realms`.
//! Every call is recorded in the directory's event log with the calling client. The OpenAPI
//! description served at `/admin/openapi.json` is `docs/admin-api.openapi.json` itself.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use lienthong_adapter::directory::{AccountNumber, DirectoryError};
use lienthong_protocol::bearer_token;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::access_token::{self, ADMIN_SCOPE, admin_audience};
use crate::limits;
use crate::state::{Broker, Inner};

pub const OPENAPI: &str = include_str!("../../../docs/admin-api.openapi.json");

/// An admin API error: a status and an RFC 6749-style JSON body.
pub struct AdminError {
    status: StatusCode,
    error: &'static str,
    description: String,
}

impl AdminError {
    fn new(status: StatusCode, error: &'static str, description: impl Into<String>) -> Self {
        Self {
            status,
            error,
            description: description.into(),
        }
    }
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        let mut r = (
            self.status,
            Json(json!({ "error": self.error, "error_description": self.description })),
        )
            .into_response();
        if matches!(self.error, "invalid_token" | "insufficient_scope")
            && let Ok(v) = HeaderValue::from_str(&format!(
                "Bearer error=\"{}\", scope=\"{ADMIN_SCOPE}\"",
                self.error
            ))
        {
            r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
        }
        if self.status == StatusCode::TOO_MANY_REQUESTS {
            r = limits::with_retry_after(r);
        }
        r
    }
}

impl From<DirectoryError> for AdminError {
    fn from(e: DirectoryError) -> Self {
        match e {
            DirectoryError::Conflict(msg) => Self::new(StatusCode::CONFLICT, "conflict", msg),
            other => {
                tracing::error!(error = %other, "directory failure in the admin API");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "temporarily_unavailable",
                    "the directory is unavailable",
                )
            }
        }
    }
}

#[derive(Deserialize)]
struct AdminClaims {
    client_id: String,
    scope: String,
}

/// The calling client, once its token and its right to `realm` are checked.
async fn caller(inner: &Inner, headers: &HeaderMap, realm: &str) -> Result<String, AdminError> {
    let unauthorized = |d: &str| AdminError::new(StatusCode::UNAUTHORIZED, "invalid_token", d);
    let token = bearer_token(headers).ok_or_else(|| unauthorized("a bearer token is required"))?;
    let claims: AdminClaims =
        access_token::verify(inner, token, &admin_audience(inner)).map_err(unauthorized)?;
    let per_client = inner.config.limits.admin_per_client_per_minute;
    if !limits::allow(inner, "admin-client", &claims.client_id, per_client) {
        tracing::warn!(client = %claims.client_id, "admin rate limit reached for a client");
        return Err(AdminError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "temporarily_unavailable",
            "too many requests; try again after the Retry-After delay",
        ));
    }
    let forbidden = |d: String| AdminError::new(StatusCode::FORBIDDEN, "insufficient_scope", d);
    if !claims.scope.split(' ').any(|s| s == ADMIN_SCOPE) {
        return Err(forbidden(format!("scope {ADMIN_SCOPE} is required")));
    }
    let allowed = inner.clients.get(&claims.client_id).is_some_and(|c| {
        c.config.admin_realms_all || c.config.admin_realms.iter().any(|r| r == realm)
    });
    let actor = format!("client:{}", claims.client_id);
    if !allowed {
        // A refused call is recorded too: who tried what.
        let detail = json!({ "reason": "realm not permitted" });
        inner
            .directory
            .record(&actor, "admin_denied", Some(realm), detail)
            .await?;
        return Err(forbidden(format!(
            "client {} may not administer realm {realm}",
            claims.client_id
        )));
    }
    Ok(actor)
}

fn parse_number(raw: &str) -> Result<AccountNumber, AdminError> {
    AccountNumber::parse(raw)
        .map_err(|e| AdminError::new(StatusCode::BAD_REQUEST, "invalid_request", e))
}

#[derive(Deserialize)]
pub struct Page {
    after: Option<String>,
    limit: Option<u32>,
}

/// `GET /admin/realms/{realm}/links?after=&limit=`
pub async fn list(
    State(b): State<Broker>,
    headers: HeaderMap,
    Path(realm): Path<String>,
    Query(p): Query<Page>,
) -> Result<Json<Value>, AdminError> {
    let inner = b.inner();
    let actor = caller(inner, &headers, &realm).await?;
    let limit = p.limit.unwrap_or(100).clamp(1, 1000);
    let links = inner
        .directory
        .list_links(&realm, p.after.as_deref(), limit)
        .await?;
    inner
        .directory
        .record(
            &actor,
            "admin_list",
            Some(&realm),
            json!({ "after": p.after, "returned": links.len() }),
        )
        .await?;
    let next = (links.len() == limit as usize)
        .then(|| links.last().map(|l| l.local_account_id.clone()))
        .flatten();
    Ok(Json(json!({ "links": links, "next": next })))
}

#[derive(Deserialize)]
pub struct NewLink {
    number: String,
    local_account_id: String,
}

/// `POST /admin/realms/{realm}/links`
pub async fn link(
    State(b): State<Broker>,
    headers: HeaderMap,
    Path(realm): Path<String>,
    body: Bytes,
) -> Result<Response, AdminError> {
    let inner = b.inner();
    let actor = caller(inner, &headers, &realm).await?;
    let result = create_link(inner, &realm, &body, &actor).await;
    if let Err(e) = &result {
        let detail = json!({ "error": e.error, "reason": e.description });
        inner
            .directory
            .record(&actor, "admin_link_refused", Some(&realm), detail)
            .await?;
    }
    result
}

async fn create_link(
    inner: &Inner,
    realm: &str,
    body: &[u8],
    actor: &str,
) -> Result<Response, AdminError> {
    let new: NewLink = serde_json::from_slice(body).map_err(|e| {
        AdminError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            format!("expected {{\"number\", \"local_account_id\"}}: {e}"),
        )
    })?;
    let number = parse_number(&new.number)?;
    let local = new.local_account_id.trim();
    if local.is_empty() || local.len() > 200 || local.chars().any(char::is_control) {
        return Err(AdminError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "local_account_id must be 1 to 200 printable characters",
        ));
    }
    inner.directory.link(realm, &number, local, actor).await?;
    let created = inner.directory.find_link(realm, &number).await?;
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

/// `GET /admin/realms/{realm}/links/by-number/{number}`
pub async fn find(
    State(b): State<Broker>,
    headers: HeaderMap,
    Path((realm, number)): Path<(String, String)>,
) -> Result<Response, AdminError> {
    let inner = b.inner();
    let actor = caller(inner, &headers, &realm).await?;
    let number = parse_number(&number)?;
    let found = inner.directory.find_link(&realm, &number).await?;
    inner
        .directory
        .record(
            &actor,
            "admin_lookup",
            Some(&realm),
            json!({ "number": number.masked(), "found": found.is_some() }),
        )
        .await?;
    Ok(match found {
        Some(link) => Json(link).into_response(),
        None => AdminError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no link for this number in this realm",
        )
        .into_response(),
    })
}

/// `DELETE /admin/realms/{realm}/links/{local_account_id}`
pub async fn unlink(
    State(b): State<Broker>,
    headers: HeaderMap,
    Path((realm, local)): Path<(String, String)>,
) -> Result<Response, AdminError> {
    let inner = b.inner();
    let actor = caller(inner, &headers, &realm).await?;
    if inner.directory.unlink(&realm, &local, &actor).await? {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(AdminError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such link",
        ))
    }
}

/// `GET /admin/openapi.json`
pub async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}
