//! Request parameters as they arrive at an OpenID provider, before any validation. Unknown
//! parameters are ignored, as OAuth requires; each provider validates these into its own types.

use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use serde::{Deserialize, Serialize};

use crate::error::OAuthError;

/// An authorization request (RFC 6749 §4.1.1, RFC 7636 §4.3, OIDC Core §3.1.2.1).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AuthorizationParams {
    pub client_id: Option<String>,
    pub redirect_uri: Option<String>,
    pub response_type: Option<String>,
    pub response_mode: Option<String>,
    pub scope: Option<String>,
    pub state: Option<String>,
    pub nonce: Option<String>,
    pub code_challenge: Option<String>,
    pub code_challenge_method: Option<String>,
    pub prompt: Option<String>,
    pub max_age: Option<String>,
    pub acr_values: Option<String>,
    pub login_hint: Option<String>,
    pub ui_locales: Option<String>,
    pub request: Option<String>,
    pub request_uri: Option<String>,
}

impl AuthorizationParams {
    /// Parses a query string or form body. A parameter given twice is an error (RFC 6749 §3.1).
    pub fn parse(encoded: &[u8]) -> Result<Self, serde_urlencoded::de::Error> {
        serde_urlencoded::from_bytes(encoded)
    }
}

/// A token request for the authorization code grant (RFC 6749 §4.1.3, RFC 7636 §4.5).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct TokenParams {
    pub grant_type: Option<String>,
    pub code: Option<String>,
    pub redirect_uri: Option<String>,
    pub code_verifier: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    /// `private_key_jwt` (RFC 7523 §2.2, OIDC Core §9): the type, always
    /// [`crate::client_auth::JWT_BEARER`], and the signed assertion.
    pub client_assertion_type: Option<String>,
    pub client_assertion: Option<String>,
    /// For the client_credentials grant (RFC 6749 §4.4.2), or to narrow a refresh (§6).
    pub scope: Option<String>,
    /// For the refresh_token grant (RFC 6749 §6).
    pub refresh_token: Option<String>,
    /// For introspection (RFC 7662 §2.1) and revocation (RFC 7009 §2.1).
    pub token: Option<String>,
    pub token_type_hint: Option<String>,
}

impl TokenParams {
    /// Parses the form body; a malformed body or a repeated parameter (RFC 6749 §3.2) is an
    /// `invalid_request`, not a framework rejection.
    pub fn parse(body: &[u8]) -> Result<Self, OAuthError> {
        serde_urlencoded::from_bytes(body)
            .map_err(|e| OAuthError::invalid_request(format!("malformed form: {e}")))
    }
}

/// The bearer token of an `Authorization` header (RFC 6750 §2.1).
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// The `access_token` of a form body (RFC 6750 §2.2).
pub fn form_access_token(body: &[u8]) -> Option<String> {
    url::form_urlencoded::parse(body)
        .find(|(k, _)| k == "access_token")
        .map(|(_, v)| v.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_parameters_are_refused() {
        assert!(AuthorizationParams::parse(b"client_id=a&client_id=b").is_err());
        assert!(TokenParams::parse(b"code=a&code=b").is_err());
        let p = AuthorizationParams::parse(b"client_id=a&unknown=1").unwrap();
        assert_eq!(p.client_id.as_deref(), Some("a"));
    }

    #[test]
    fn bearer_from_header_or_body() {
        let mut h = HeaderMap::new();
        h.insert(AUTHORIZATION, "bearer abc".parse().unwrap());
        assert_eq!(bearer_token(&h), Some("abc"));
        h.insert(AUTHORIZATION, "Basic abc".parse().unwrap());
        assert_eq!(bearer_token(&h), None);
        assert_eq!(
            form_access_token(b"x=1&access_token=t%2B1").as_deref(),
            Some("t+1")
        );
    }
}
