//! Just-in-time lookup, the client side: asking a provincial system which of its accounts
//! belongs to a citizen.
//!
//! `POST {url}` with a JSON [`LookupRequest`], signed as `lienthong_citizen::lookup_signature`
//! describes (the system checks it with that crate's `accept`). The system answers
//! `200 {"account_id": "..."}`, or `404` when it has no account. Anything else, or no answer
//! within the timeout, is "unavailable": the citizen gets a page, not a hang.

use std::time::Duration;

pub use lienthong_citizen::lookup_signature::LookupRequest;
use lienthong_citizen::lookup_signature::{SIGNATURE_HEADER, TIMESTAMP_HEADER, signature};
use serde::Deserialize;

use crate::policy::LookupConfig;

#[derive(Debug, Deserialize)]
struct LookupResponse {
    account_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LookupAnswer {
    Found(String),
    NotFound,
}

#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    #[error("lookup endpoint must be HTTPS (HTTP only on loopback): {0}")]
    Insecure(String),
    #[error("lookup endpoint unavailable: {0}")]
    Unavailable(String),
}

/// Checks the URL rule once, at start.
pub fn check_url(url: &str) -> Result<(), LookupError> {
    let parsed = url::Url::parse(url).map_err(|e| LookupError::Insecure(format!("{url}: {e}")))?;
    let loopback = matches!(parsed.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"));
    if parsed.scheme() == "https" || (parsed.scheme() == "http" && loopback) {
        Ok(())
    } else {
        Err(LookupError::Insecure(url.to_owned()))
    }
}

/// Calls the endpoint; `now` (Unix seconds) stamps the signature.
pub async fn lookup(
    http: &reqwest::Client,
    config: &LookupConfig,
    request: &LookupRequest,
    now: u64,
) -> Result<LookupAnswer, LookupError> {
    check_url(&config.url)?;
    let body = serde_json::to_vec(request).expect("serialisable");
    let response = http
        .post(&config.url)
        .timeout(Duration::from_millis(config.timeout_ms))
        .header("content-type", "application/json")
        .header(TIMESTAMP_HEADER, now.to_string())
        .header(
            SIGNATURE_HEADER,
            signature(config.secret.expose(), now, &body),
        )
        .body(body)
        .send()
        .await
        .map_err(|e| {
            LookupError::Unavailable(if e.is_timeout() {
                "timed out".into()
            } else {
                e.to_string()
            })
        })?;
    match response.status().as_u16() {
        200 => {
            let answer: LookupResponse = response
                .json()
                .await
                .map_err(|e| LookupError::Unavailable(format!("bad answer: {e}")))?;
            if answer.account_id.trim().is_empty() || answer.account_id.len() > 200 {
                return Err(LookupError::Unavailable(
                    "empty or oversized account_id".into(),
                ));
            }
            Ok(LookupAnswer::Found(answer.account_id))
        }
        404 => Ok(LookupAnswer::NotFound),
        other => Err(LookupError::Unavailable(format!("answered {other}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_https_or_loopback_http() {
        assert!(check_url("https://hssk.example.gov.vn/lookup").is_ok());
        assert!(check_url("http://127.0.0.1:9000/lookup").is_ok());
        assert!(check_url("http://hssk.example.gov.vn/lookup").is_err());
    }
}
