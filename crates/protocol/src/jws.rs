//! A JWS checked against someone else's published keys: the national IdP's ID tokens, and the
//! client assertions of `private_key_jwt` clients (RFC 7523). One rule for both: an algorithm
//! from the caller's allow-list and nothing looser — never `none`, never a shared secret, never
//! a key of another type or use than the algorithm asks — and the header's `kid` names the key
//! (or, without a `kid`, exactly one key fits).

use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;

/// Why a JWS was refused (the message names no secret: it may be logged).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct JwsError(String);

/// Verifies `token`'s signature and returns its payload. Only the signature: the claims are
/// the caller's to check, by the caller's clock.
pub fn verify(jwks: &JwkSet, allowed: &[Algorithm], token: &str) -> Result<Value, JwsError> {
    let refused = |why: String| JwsError(why);
    let header = jsonwebtoken::decode_header(token).map_err(|e| refused(e.to_string()))?;
    if !allowed.contains(&header.alg) {
        return Err(refused(format!(
            "algorithm {:?} is not allowed",
            header.alg
        )));
    }
    let candidates: Vec<&Jwk> = jwks
        .keys
        .iter()
        .filter(|k| header.kid.is_none() || k.common.key_id == header.kid)
        .filter(|k| fits(k, header.alg))
        .collect();
    let key = match (header.kid.as_deref(), candidates.as_slice()) {
        (_, [one]) => *one,
        (Some(kid), []) => return Err(refused(format!("no published key {kid:?}"))),
        (None, []) => return Err(refused("no published key fits".into())),
        (_, _) => return Err(refused("more than one published key fits".into())),
    };
    let key = DecodingKey::from_jwk(key).map_err(|e| refused(e.to_string()))?;
    let mut validation = Validation::new(header.alg);
    validation.validate_exp = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    jsonwebtoken::decode::<Value>(token, &key, &validation)
        .map(|data| data.claims)
        .map_err(|e| refused(e.to_string()))
}

/// Whether `key` may verify `alg`: the right key type, a signing use, and its own `alg` (if
/// it names one) the same.
fn fits(key: &Jwk, alg: Algorithm) -> bool {
    let family = matches!(
        (&key.algorithm, alg),
        (
            AlgorithmParameters::RSA(_),
            Algorithm::RS256 | Algorithm::PS256
        ) | (AlgorithmParameters::EllipticCurve(_), Algorithm::ES256)
            | (AlgorithmParameters::OctetKeyPair(_), Algorithm::EdDSA)
    );
    let use_ok = matches!(
        key.common.public_key_use,
        None | Some(PublicKeyUse::Signature)
    );
    let alg_ok = key
        .common
        .key_algorithm
        .is_none_or(|a| format!("{a:?}") == format!("{alg:?}"));
    family && use_ok && alg_ok
}

/// Whether the token's header names a `kid` the set does not hold.
pub fn unknown_kid(jwks: &JwkSet, token: &str) -> bool {
    jsonwebtoken::decode_header(token)
        .ok()
        .and_then(|h| h.kid)
        .is_some_and(|kid| jwks.find(&kid).is_none())
}
