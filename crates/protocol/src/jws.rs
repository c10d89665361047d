//! JWS verification on aws-lc-rs, with keys parsed once.
//!
//! Two kinds of key verify here: someone else's published keys ([`PublicKeys`]: the national
//! IdP's ID tokens, the client assertions of `private_key_jwt` clients, RFC 7523) and our own
//! (a [`crate::KeySet`] verifying the tokens it signed). One rule for both: an algorithm from
//! the caller's allow-list and nothing looser — never `none`, never a shared secret, never a key
//! of another type or use than the algorithm asks — the header's `kid` names the key (or,
//! without a `kid`, exactly one key fits), and a `crit` header is refused (RFC 7515 §4.1.11: we
//! understand no extension).
//!
//! jsonwebtoken's `decode` turns the JWK's numbers into an aws-lc-rs public key on every call —
//! for RSA a new key and Montgomery context, for P-256 a point decoded and checked on the curve
//! — and parses the header twice when the caller needs it first. Here each key is parsed when
//! the set is loaded (at discovery, at configuration, at key load), a token's header once, and
//! the signature is checked by the parsed key ([`aws_lc_rs::signature::ParsedPublicKey`]).

use std::borrow::Cow;

use aws_lc_rs::signature::{self as sig, ParsedPublicKey, RsaPublicKeyComponents};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Algorithm;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet, PublicKeyUse};
use serde::Deserialize;
use serde_json::Value;

/// Why a JWS was refused (the message names no secret: it may be logged).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct JwsError(String);

impl JwsError {
    fn new(why: impl Into<String>) -> Self {
        Self(why.into())
    }

    pub(crate) fn claims(e: serde_json::Error) -> Self {
        Self(format!("claims: {e}"))
    }
}

impl From<&str> for JwsError {
    fn from(why: &str) -> Self {
        Self::new(why)
    }
}

/// The algorithms a key can be parsed for.
pub(crate) const SUPPORTED: [Algorithm; 4] = [
    Algorithm::RS256,
    Algorithm::PS256,
    Algorithm::ES256,
    Algorithm::EdDSA,
];

/// A public key parsed for one algorithm (which its holder keeps beside it).
pub(crate) struct Verifier {
    key: ParsedPublicKey,
}

impl Verifier {
    /// Parses `jwk` for `alg`: only a key of the algorithm's type, curve and size.
    pub(crate) fn from_jwk(jwk: &Jwk, alg: Algorithm) -> Result<Self, JwsError> {
        let bytes = |field: &str, b64: &str| {
            URL_SAFE_NO_PAD
                .decode(b64)
                .map_err(|_| JwsError::new(format!("the key's {field} is not base64url")))
        };
        let rejected = |e: aws_lc_rs::error::KeyRejected| JwsError::new(format!("key: {e}"));
        let key = match (&jwk.algorithm, alg) {
            (AlgorithmParameters::RSA(rsa), Algorithm::RS256 | Algorithm::PS256) => {
                // RFC 7518 §6.3.1: the fewest octets; some IdPs still pad `n` with a zero.
                let (n, e) = (bytes("n", &rsa.n)?, bytes("e", &rsa.e)?);
                let trim = |v: &[u8]| v[v.iter().take_while(|b| **b == 0).count()..].to_vec();
                let params = if alg == Algorithm::RS256 {
                    &sig::RSA_PKCS1_2048_8192_SHA256
                } else {
                    &sig::RSA_PSS_2048_8192_SHA256
                };
                RsaPublicKeyComponents {
                    n: trim(&n),
                    e: trim(&e),
                }
                .to_parsed_public_key(params)
                .map_err(rejected)?
            }
            (AlgorithmParameters::EllipticCurve(ec), Algorithm::ES256)
                if ec.curve == EllipticCurve::P256 =>
            {
                let (x, y) = (bytes("x", &ec.x)?, bytes("y", &ec.y)?);
                if x.len() != 32 || y.len() != 32 {
                    return Err(JwsError::new("a P-256 key's x and y are 32 octets"));
                }
                let point = [&[4u8][..], &x, &y].concat();
                ParsedPublicKey::new(&sig::ECDSA_P256_SHA256_FIXED, point).map_err(rejected)?
            }
            (AlgorithmParameters::OctetKeyPair(okp), Algorithm::EdDSA)
                if okp.curve == EllipticCurve::Ed25519 =>
            {
                ParsedPublicKey::new(&sig::ED25519, bytes("x", &okp.x)?).map_err(rejected)?
            }
            _ => return Err(JwsError::new(format!("the key cannot verify {alg:?}"))),
        };
        Ok(Self { key })
    }

    /// Checks the signature of a token whose header is already read, and returns its payload
    /// (JSON text, still to be parsed). The caller has matched the header's `alg` to the key.
    pub(crate) fn verify(&self, token: &Compact<'_>) -> Result<Vec<u8>, JwsError> {
        self.check(token)?;
        token.payload()
    }

    /// Checks the signature alone.
    pub(crate) fn check(&self, token: &Compact<'_>) -> Result<(), JwsError> {
        let signature = URL_SAFE_NO_PAD
            .decode(token.signature)
            .map_err(|_| JwsError::new("the signature is not base64url"))?;
        self.key
            .verify_sig(token.signed.as_bytes(), &signature)
            .map_err(|_| JwsError::new("invalid signature"))
    }
}

/// The header fields a verifier reads (RFC 7515 §4.1).
#[derive(Deserialize)]
pub(crate) struct Header<'a> {
    pub alg: Algorithm,
    #[serde(borrow, default)]
    pub kid: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub typ: Option<Cow<'a, str>>,
    #[serde(default)]
    crit: Option<serde::de::IgnoredAny>,
}

/// A compact JWS taken apart, its header read (once).
pub(crate) struct Compact<'t> {
    /// `header.payload`: what the signature signs.
    signed: &'t str,
    payload: &'t str,
    signature: &'t str,
    header_json: Vec<u8>,
}

impl<'t> Compact<'t> {
    pub(crate) fn parse(token: &'t str) -> Result<Self, JwsError> {
        let malformed = || JwsError::new("not a compact JWS");
        let (signed, signature) = token.rsplit_once('.').ok_or_else(malformed)?;
        let (header, payload) = signed.split_once('.').ok_or_else(malformed)?;
        if payload.contains('.') {
            return Err(malformed());
        }
        let header_json = URL_SAFE_NO_PAD.decode(header).map_err(|_| malformed())?;
        Ok(Self {
            signed,
            payload,
            signature,
            header_json,
        })
    }

    /// The payload's bytes (JSON text, still to be parsed), whether or not the signature holds.
    pub(crate) fn payload(&self) -> Result<Vec<u8>, JwsError> {
        URL_SAFE_NO_PAD
            .decode(self.payload)
            .map_err(|_| JwsError::new("the payload is not base64url"))
    }

    pub(crate) fn header(&self) -> Result<Header<'_>, JwsError> {
        let header: Header<'_> = serde_json::from_slice(&self.header_json)
            .map_err(|e| JwsError::new(format!("header: {e}")))?;
        if header.crit.is_some() {
            return Err(JwsError::new(
                "a crit header names extensions not understood",
            ));
        }
        Ok(header)
    }
}

/// One published key: its `kid`, and its parse for each algorithm it may verify (or why it
/// could not be parsed, said when a token names it).
struct PublishedKey {
    kid: Option<String>,
    verifiers: Vec<(Algorithm, Result<Verifier, String>)>,
}

/// Someone else's JWK Set, each key parsed once for every algorithm it fits.
pub struct PublicKeys {
    keys: Vec<PublishedKey>,
}

impl std::fmt::Debug for PublicKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.keys.iter().map(|k| &k.kid))
            .finish()
    }
}

impl PublicKeys {
    pub fn new(jwks: &JwkSet) -> Self {
        let keys = jwks
            .keys
            .iter()
            .map(|jwk| PublishedKey {
                kid: jwk.common.key_id.clone(),
                verifiers: SUPPORTED
                    .into_iter()
                    .filter(|alg| fits(jwk, *alg))
                    .map(|alg| {
                        let parsed = Verifier::from_jwk(jwk, alg).map_err(|e| e.0);
                        (alg, parsed)
                    })
                    .collect(),
            })
            .collect();
        Self { keys }
    }

    /// How many keys the set publishes.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Verifies `token`'s signature and returns its payload. Only the signature: the claims are
    /// the caller's to check, by the caller's clock.
    pub fn verify(&self, allowed: &[Algorithm], token: &str) -> Result<Value, JwsError> {
        let compact = Compact::parse(token)?;
        let header = compact.header()?;
        if !allowed.contains(&header.alg) {
            return Err(JwsError::new(format!(
                "algorithm {:?} is not allowed",
                header.alg
            )));
        }
        let kid = header.kid.as_deref();
        let mut candidates = self
            .keys
            .iter()
            .filter(|k| kid.is_none() || k.kid.as_deref() == kid)
            .flat_map(|k| k.verifiers.iter())
            .filter(|(alg, _)| *alg == header.alg)
            .map(|(_, parsed)| parsed);
        let key = match (kid, candidates.next(), candidates.next()) {
            (_, Some(one), None) => one.as_ref().map_err(|e| JwsError::new(e.clone()))?,
            (Some(kid), None, _) => return Err(JwsError::new(format!("no published key {kid:?}"))),
            (None, None, _) => return Err(JwsError::new("no published key fits")),
            (_, Some(_), Some(_)) => {
                return Err(JwsError::new("more than one published key fits"));
            }
        };
        let payload = key.verify(&compact)?;
        serde_json::from_slice(&payload).map_err(JwsError::claims)
    }

    /// Whether the token's header names a `kid` the set does not hold.
    pub fn unknown_kid(&self, token: &str) -> bool {
        let Ok(compact) = Compact::parse(token) else {
            return false;
        };
        compact
            .header()
            .ok()
            .and_then(|h| h.kid)
            .is_some_and(|kid| {
                !self
                    .keys
                    .iter()
                    .any(|k| k.kid.as_deref() == Some(kid.as_ref()))
            })
    }
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
