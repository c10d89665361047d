//! How a client authenticates at the token endpoint (RFC 6749 §2.3.1, OIDC Core §9):
//! `client_secret_basic` (HTTP Basic with form-urlencoded id and secret), `client_secret_post`
//! (the same two values in the form body) or `private_key_jwt` (a JWT signed with the client's
//! own key, RFC 7523 §2.2; verified by the provider, which holds the registered keys). Using
//! two methods at once is refused, as the RFC requires.

use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::error::OAuthError;
use crate::params::TokenParams;
use crate::secret::constant_time_eq;

/// The one `client_assertion_type` of `private_key_jwt` (RFC 7523 §2.2).
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Which method the client used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    ClientSecretBasic,
    ClientSecretPost,
    PrivateKeyJwt,
    /// A public client naming itself by `client_id` only.
    None,
}

/// The credentials a token request presented, not yet checked against a registration.
#[derive(Debug, Clone)]
pub struct ClientCredentials {
    pub client_id: String,
    pub secret: Option<String>,
    /// The signed client assertion (`private_key_jwt`), not yet verified.
    pub assertion: Option<String>,
    pub method: AuthMethod,
}

impl ClientCredentials {
    /// Reads the credentials of a token, introspection or revocation request: a client
    /// assertion, or else a secret ([`ClientCredentials::from_request`]). With an assertion
    /// and no `client_id`, the client is the assertion's `iss` (to be verified, with `sub`, by
    /// the provider).
    pub fn from_token_request(headers: &HeaderMap, form: &TokenParams) -> Result<Self, OAuthError> {
        let (kind, assertion) = match (
            form.client_assertion_type.as_deref(),
            form.client_assertion.as_deref(),
        ) {
            (None, None) => {
                return Self::from_request(
                    headers,
                    form.client_id.as_deref(),
                    form.client_secret.as_deref(),
                );
            }
            (Some(kind), Some(assertion)) => (kind, assertion),
            _ => {
                return Err(OAuthError::invalid_request(
                    "client_assertion and client_assertion_type go together",
                ));
            }
        };
        if headers.contains_key(AUTHORIZATION) || form.client_secret.is_some() {
            return Err(OAuthError::invalid_request(
                "use one client authentication method, not both",
            ));
        }
        let fail = |why: &str| OAuthError::invalid_client(why, false);
        if kind != JWT_BEARER {
            return Err(fail("unsupported client_assertion_type"));
        }
        let client_id = match &form.client_id {
            Some(id) => id.clone(),
            None => {
                unverified_issuer(assertion).ok_or_else(|| fail("malformed client assertion"))?
            }
        };
        Ok(Self {
            client_id,
            secret: None,
            assertion: Some(assertion.to_owned()),
            method: AuthMethod::PrivateKeyJwt,
        })
    }

    /// Reads the credentials from the `Authorization` header or the form fields.
    pub fn from_request(
        headers: &HeaderMap,
        form_client_id: Option<&str>,
        form_secret: Option<&str>,
    ) -> Result<Self, OAuthError> {
        let basic = headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Basic ")
                    .or_else(|| v.strip_prefix("basic "))
            });
        match (basic, form_secret) {
            (Some(_), Some(_)) => Err(OAuthError::invalid_request(
                "use one client authentication method, not both",
            )),
            (Some(encoded), None) => {
                let fail = || OAuthError::invalid_client("malformed Basic credentials", true);
                let decoded = STANDARD.decode(encoded.trim()).map_err(|_| fail())?;
                let decoded = String::from_utf8(decoded).map_err(|_| fail())?;
                let (id, secret) = decoded.split_once(':').ok_or_else(fail)?;
                let id = form_urldecode(id).ok_or_else(fail)?;
                let secret = form_urldecode(secret).ok_or_else(fail)?;
                if form_client_id.is_some_and(|f| f != id) {
                    return Err(OAuthError::invalid_request(
                        "client_id differs from the Basic credentials",
                    ));
                }
                Ok(Self {
                    client_id: id,
                    secret: Some(secret),
                    assertion: None,
                    method: AuthMethod::ClientSecretBasic,
                })
            }
            (None, Some(secret)) => Ok(Self {
                client_id: form_client_id
                    .ok_or_else(|| OAuthError::invalid_request("client_id is required"))?
                    .to_owned(),
                secret: Some(secret.to_owned()),
                assertion: None,
                method: AuthMethod::ClientSecretPost,
            }),
            (None, None) => Ok(Self {
                client_id: form_client_id
                    .ok_or_else(|| {
                        OAuthError::invalid_client("client authentication is required", false)
                    })?
                    .to_owned(),
                secret: None,
                assertion: None,
                method: AuthMethod::None,
            }),
        }
    }

    /// Checks the presented secret against the registered one.
    pub fn check_secret(&self, registered: &str) -> Result<(), OAuthError> {
        let basic = self.method == AuthMethod::ClientSecretBasic;
        match &self.secret {
            Some(s) if constant_time_eq(s, registered) => Ok(()),
            _ => Err(OAuthError::invalid_client(
                "client authentication failed",
                basic,
            )),
        }
    }
}

/// The `iss` of a JWT's payload, read without verifying anything: only to find which
/// client's keys to verify it with.
fn unverified_issuer(jwt: &str) -> Option<String> {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let payload = URL_SAFE_NO_PAD.decode(jwt.split('.').nth(1)?).ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&payload).ok()?;
    claims.get("iss")?.as_str().map(str::to_owned)
}

/// `application/x-www-form-urlencoded` decoding of one value ('+' is a space), as RFC 6749
/// §2.3.1 asks of Basic credentials. A malformed escape (`%+1`, a lone `%`) is refused, not
/// passed through: a credential is either exactly what the client meant or nothing.
fn form_urldecode(value: &str) -> Option<String> {
    let bytes = value.as_bytes();
    let well_formed = bytes.iter().enumerate().all(|(i, b)| {
        *b != b'%'
            || bytes
                .get(i + 1..i + 3)
                .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit))
    });
    if !well_formed {
        return None;
    }
    // One value, not a form: `&` and `=` in it are data, so they are escaped before parsing.
    let escaped = value.replace('&', "%26").replace('=', "%3D");
    let form = format!("v={escaped}");
    let (_, decoded) = url::form_urlencoded::parse(form.as_bytes()).next()?;
    Some(decoded.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    fn basic(raw: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        let v = format!("Basic {}", STANDARD.encode(raw));
        h.insert(AUTHORIZATION, HeaderValue::from_str(&v).unwrap());
        h
    }

    #[test]
    fn basic_credentials_are_form_decoded() {
        let c =
            ClientCredentials::from_request(&basic("my%20client:s%3Acret+x"), None, None).unwrap();
        assert_eq!(c.client_id, "my client");
        assert_eq!(c.secret.as_deref(), Some("s:cret x"));
        assert_eq!(c.method, AuthMethod::ClientSecretBasic);
        assert!(c.check_secret("s:cret x").is_ok());
        assert!(c.check_secret("other").unwrap_err().basic_challenge);
    }

    #[test]
    fn malformed_escapes_are_refused() {
        assert_eq!(form_urldecode("a%2Bb+c").as_deref(), Some("a+b c"));
        assert_eq!(form_urldecode("k=v&w").as_deref(), Some("k=v&w"));
        assert_eq!(form_urldecode("").as_deref(), Some(""));
        assert_eq!(form_urldecode("%+1"), None);
        assert_eq!(form_urldecode("abc%"), None);
        assert_eq!(form_urldecode("%zz"), None);
        assert!(ClientCredentials::from_request(&basic("id:%+1"), None, None).is_err());
    }

    #[test]
    fn both_methods_at_once_are_refused() {
        let err = ClientCredentials::from_request(&basic("a:b"), Some("a"), Some("b")).unwrap_err();
        assert_eq!(err.error, crate::error::OAuthErrorCode::InvalidRequest);
    }

    #[test]
    fn a_client_assertion_names_its_client_and_excludes_other_methods() {
        let payload = URL_SAFE_NO_PAD.encode(br#"{"iss":"portal","sub":"portal"}"#);
        let jwt = format!("e30.{payload}.sig");
        let form = |kind: Option<&str>, id: Option<&str>, secret: Option<&str>| TokenParams {
            client_assertion_type: kind.map(str::to_owned),
            client_assertion: Some(jwt.clone()),
            client_id: id.map(str::to_owned),
            client_secret: secret.map(str::to_owned),
            ..TokenParams::default()
        };
        let none = HeaderMap::new();
        let c = ClientCredentials::from_token_request(&none, &form(Some(JWT_BEARER), None, None))
            .unwrap();
        assert_eq!(
            (c.client_id.as_str(), c.method),
            ("portal", AuthMethod::PrivateKeyJwt)
        );
        assert_eq!(c.assertion.as_deref(), Some(jwt.as_str()));
        assert!(c.check_secret("").is_err());
        let with_id = form(Some(JWT_BEARER), Some("other"), None);
        assert_eq!(
            ClientCredentials::from_token_request(&none, &with_id)
                .unwrap()
                .client_id,
            "other"
        );
        for (headers, f) in [
            (basic("portal:s"), form(Some(JWT_BEARER), None, None)),
            (none.clone(), form(Some(JWT_BEARER), None, Some("s"))),
            (none.clone(), form(None, None, None)),
            (none.clone(), form(Some("urn:other"), None, None)),
        ] {
            assert!(ClientCredentials::from_token_request(&headers, &f).is_err());
        }
    }

    #[test]
    fn post_credentials() {
        let c = ClientCredentials::from_request(&HeaderMap::new(), Some("a"), Some("b")).unwrap();
        assert_eq!(c.method, AuthMethod::ClientSecretPost);
        assert!(ClientCredentials::from_request(&HeaderMap::new(), None, Some("b")).is_err());
    }
}
