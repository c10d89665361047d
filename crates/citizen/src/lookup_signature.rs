//! The signature of a just-in-time lookup request, for both sides of the call.
//!
//! Lienthong asks a provincial system "which of your accounts is this citizen?" with
//! `POST {url}`, a JSON [`LookupRequest`] body, and two headers: `Lienthong-Timestamp` (Unix
//! seconds) and `Lienthong-Signature: sha256=<hex HMAC-SHA256(secret, "{timestamp}.{body}")>`.
//! The system checks both with [`accept`] before it reads anything: the call is Lienthong's, the
//! body is intact, and it is fresh (at most five minutes from the system's clock).

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

pub const TIMESTAMP_HEADER: &str = "Lienthong-Timestamp";
pub const SIGNATURE_HEADER: &str = "Lienthong-Signature";
/// How far a request's timestamp may be from the receiver's clock.
pub const TOLERANCE_SECS: u64 = 300;

/// What Lienthong sends about the citizen.
#[derive(Debug, Serialize, Deserialize)]
pub struct LookupRequest {
    pub realm: String,
    pub citizen_id: Option<String>,
    pub legacy_cmnd: Option<String>,
    pub name: Option<String>,
    pub birthdate: Option<String>,
}

fn mac(secret: &str, timestamp: u64, body: &[u8]) -> Hmac<Sha256> {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The `Lienthong-Signature` value: `sha256=<hex>` of `"{timestamp}.{body}"`.
pub fn signature(secret: &str, timestamp: u64, body: &[u8]) -> String {
    let hex: String = mac(secret, timestamp, body)
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256={hex}")
}

/// Whether `presented` signs `body` at `timestamp` with `secret`, and the timestamp is at most
/// `tolerance_secs` from `now`. The MAC is compared in constant time (`Mac::verify_slice`).
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
    let Some(tag) = presented.strip_prefix("sha256=").and_then(decode_hex) else {
        return false;
    };
    mac(secret, ts, body).verify_slice(&tag).is_ok()
}

fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect()
}

/// For the provincial system's side: the lookup request, if the signature in its headers is
/// valid and fresh at `now` (Unix seconds); `None` for anything else.
pub fn accept(
    secret: &str,
    headers: &http::HeaderMap,
    body: &[u8],
    now: u64,
) -> Option<LookupRequest> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let (timestamp, signature) = (header(TIMESTAMP_HEADER)?, header(SIGNATURE_HEADER)?);
    verify(secret, timestamp, body, signature, now, TOLERANCE_SECS)
        .then(|| serde_json::from_slice(body).ok())
        .flatten()
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
        assert!(!verify("k", "1000", b"{}", "sha256=zz", 1010, 300));
        assert!(!verify("k", "1000", b"{}", &sig[..20], 1010, 300));
    }

    #[test]
    fn accept_reads_the_headers() {
        let body =
            br#"{"realm":"r","citizen_id":null,"legacy_cmnd":null,"name":null,"birthdate":null}"#;
        let mut headers = http::HeaderMap::new();
        headers.insert(TIMESTAMP_HEADER, "1000".parse().unwrap());
        headers.insert(
            SIGNATURE_HEADER,
            signature("k", 1000, body).parse().unwrap(),
        );
        assert_eq!(accept("k", &headers, body, 1001).unwrap().realm, "r");
        assert!(accept("k", &headers, body, 5000).is_none());
        assert!(accept("x", &headers, body, 1001).is_none());
    }
}
