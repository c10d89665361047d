//! `GET|POST /userinfo` (OIDC Core §5.3): the claims a client is entitled to, for a valid,
//! unrevoked access token presented in the `Authorization` header or, by POST, in the body
//! (RFC 6750 §2.1–2.2).

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use lienthong_protocol::{OAuthError, bearer_token, form_access_token};
use serde_json::{Value, json};

use crate::access_token::{self, Refusal};
use crate::state::Broker;

pub async fn get(
    State(broker): State<Broker>,
    headers: HeaderMap,
) -> Result<Json<Value>, OAuthError> {
    claims_for(&broker, bearer_token(&headers)).await
}

pub async fn post(
    State(broker): State<Broker>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, OAuthError> {
    let from_body = form_access_token(&body);
    match (bearer_token(&headers), from_body.as_deref()) {
        (Some(_), Some(_)) => Err(OAuthError::invalid_request(
            "send the token once, in the header or the body",
        )),
        (h, b) => claims_for(&broker, h.or(b)).await,
    }
}

async fn claims_for(broker: &Broker, token: Option<&str>) -> Result<Json<Value>, OAuthError> {
    let inner = broker.inner();
    let token = token.ok_or_else(|| OAuthError::invalid_token("an access token is required"))?;
    let grant = match access_token::granted(inner, token).await {
        Ok(Some((_, grant))) => grant,
        Ok(None) => return Err(OAuthError::invalid_token("the token was revoked")),
        Err(Refusal::Invalid(why)) => return Err(OAuthError::invalid_token(why)),
        Err(Refusal::Store(e)) => {
            tracing::error!(error = %e, "store failure at userinfo");
            return Err(OAuthError::new(
                lienthong_protocol::OAuthErrorCode::TemporarilyUnavailable,
                "try again shortly",
            ));
        }
    };
    let mut body = grant.claims;
    body.insert("sub".to_owned(), json!(grant.sub));
    Ok(Json(Value::Object(body)))
}
