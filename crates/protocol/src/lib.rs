//! OAuth 2.0 and OpenID Connect building blocks shared by Lienthong's two providers: the broker
//! (the OpenID provider of provincial systems) and the mock national IdP.
//!
//! Each rule lives here once so that both providers apply it the same way: how a PKCE verifier
//! is checked (RFC 7636), how a client authenticates at the token endpoint (RFC 6749 §2.3.1),
//! how token-endpoint errors look on the wire (RFC 6749 §5.2), how signing keys are published
//! (RFC 7517, kid = RFC 7638 thumbprint) and how one-time secrets are drawn.
//!
//! Nothing here is cryptography of our own: signatures are made and checked by aws-lc-rs with
//! keys parsed once ([`keys`], [`jws`]), and keys, hashes and random values come from aws-lc-rs
//! ([`crypto`]); jsonwebtoken supplies the JOSE and JWK types.

pub mod client_auth;
pub mod clock;
pub mod crypto;
pub mod error;
pub mod jws;
pub mod keys;
pub mod params;
pub mod pkce;
pub mod secret;

pub use client_auth::ClientCredentials;
pub use clock::{Clock, MockClock, SharedClock, SystemClock};
pub use error::{OAuthError, OAuthErrorCode};
pub use jws::PublicKeys;
pub use keys::{
    Expected, KeyError, KeySet, Opened, SigningKey, Slot, token_digest, token_digest_and_at_hash,
};
pub use params::{AuthorizationParams, TokenParams, bearer_token, form_access_token};
