//! Just-in-time lookup: asking a provincial system which of its accounts belongs to a citizen.
//!
//! `POST {url}` with a JSON body `{"realm", "citizen_id", "legacy_cmnd", "name", "birthdate"}`,
//! signed so the system knows the call is ours and fresh: header `Lienthong-Timestamp` (Unix
//! seconds) and `Lienthong-Signature: sha256=<hex HMAC-SHA256(secret, "{timestamp}.{body}")>`.
//! The system answers `200 {"account_id": "..."}`, or `404` when it has no account. Anything
//! else, or no answer within the timeout, is "unavailable": the citizen gets a page, not a hang.

use std::time::Duration;

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::policy::LookupConfig;

pub const TIMESTAMP_HEADER: &str = "Lienthong-Timestamp";
pub const SIGNATURE_HEADER: &str = "Lienthong-Signature";

/// What is sent about the citizen.
#[derive(Debug, Serialize, Deserialize)]
pub struct LookupRequest {
    pub realm: String,
    pub citizen_id: Option<String>,
    pub legacy_cmnd: Option<String>,
    pub name: Option<String>,
    pub birthdate: Option<String>,
}

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

/// `sha256=<hex>` of `"{timestamp}.{body}"`.
pub fn signature(secret: &str, timestamp: u64, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256={hex}")
}

/// For the provincial system's side: checks a request's signature and freshness (at most
/// `tolerance_secs` away from `now`), in constant time.
pub fn verify(
    secret: &str,
    timestamp: &str,
    body: &[u8],
    presented: &str,
    now: u64,
    tolerance_secs: u64,
) -> bool {
    let Ok(ts) = timestamp.parse::<u64>() else {
        return false;
    };
    if now.abs_diff(ts) > tolerance_secs {
        return false;
    }
    let expected = signature(secret, ts, body);
    expected.len() == presented.len()
        && expected
            .bytes()
            .zip(presented.bytes())
            .fold(0u8, |a, (x, y)| a | (x ^ y))
            == 0
}

/// For the provincial system's side: the lookup request, if the signature in its headers is
/// valid and at most five minutes old. (`http::HeaderMap`, as axum and reqwest both use it.)
pub fn accept(
    secret: &str,
    headers: &reqwest::header::HeaderMap,
    body: &[u8],
) -> Option<LookupRequest> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (timestamp, signature) = (header(TIMESTAMP_HEADER)?, header(SIGNATURE_HEADER)?);
    verify(secret, timestamp, body, signature, now, 300)
        .then(|| serde_json::from_slice(body).ok())
        .flatten()
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

/// Calls the endpoint.
pub async fn lookup(
    http: &reqwest::Client,
    config: &LookupConfig,
    request: &LookupRequest,
) -> Result<LookupAnswer, LookupError> {
    check_url(&config.url)?;
    let body = serde_json::to_vec(request).expect("serialisable");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let response = http
        .post(&config.url)
        .timeout(Duration::from_millis(config.timeout_ms))
        .header("content-type", "application/json")
        .header(TIMESTAMP_HEADER, now.to_string())
        .header(SIGNATURE_HEADER, signature(&config.secret, now, &body))
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
    fn signatures_verify_only_fresh_and_intact() {
        let sig = signature("k", 1000, b"{}");
        assert!(verify("k", "1000", b"{}", &sig, 1010, 300));
        assert!(
            !verify("k", "1000", b"{} ", &sig, 1010, 300),
            "body altered"
        );
        assert!(
            !verify("other", "1000", b"{}", &sig, 1010, 300),
            "wrong secret"
        );
        assert!(!verify("k", "1000", b"{}", &sig, 2000, 300), "stale");
    }

    #[test]
    fn only_https_or_loopback_http() {
        assert!(check_url("https://hssk.example.gov.vn/lookup").is_ok());
        assert!(check_url("http://127.0.0.1:9000/lookup").is_ok());
        assert!(check_url("http://hssk.example.gov.vn/lookup").is_err());
    }
}
