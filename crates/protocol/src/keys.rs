//! Signing keys and their publication as a JWK Set.
//!
//! A provider signs with one *current* key per algorithm (ES256, RS256, EdDSA) and publishes
//! every public key it holds at its `jwks_uri`: the current one, the *next* one (so that
//! clients caching the set already know it when it becomes current) and the *previous* one (so
//! that tokens signed before a rotation still verify until they expire). A key's `kid` is its
//! RFC 7638 thumbprint, so the same key always has the same id and two nodes loading the same
//! key publish the same set.

use std::borrow::Cow;

use jsonwebtoken::jwk::{Jwk, JwkSet, PublicKeyUse, ThumbprintHash};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::jws::{Compact, JwsError, Verifier};
use crate::secret::constant_time_eq;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("unsupported signing algorithm {0:?} (ES256, RS256 and EdDSA are supported)")]
    Unsupported(Algorithm),
    #[error("cannot generate a key: {0}")]
    Generate(String),
    #[error("invalid key: {0}")]
    Invalid(#[from] jsonwebtoken::errors::Error),
    #[error("no signing key for {0:?}")]
    NoKeyFor(Algorithm),
    #[error("token names no known key")]
    UnknownKey,
    #[error("malformed token: {0}")]
    Malformed(JwsError),
    #[error("typ is not {0}")]
    Type(&'static str),
    #[error("refused: {0}")]
    Refused(JwsError),
    #[error("invalid key: {0}")]
    Rejected(String),
    #[error("signing failed")]
    Sign,
}

/// One private key, with what is needed to sign, to verify and to publish it.
pub struct SigningKey {
    alg: Algorithm,
    kid: String,
    pkcs8_pem: String,
    signer: Signer,
    /// The published key, parsed once to verify what this key signed.
    verifier: Verifier,
    public: Jwk,
}

/// The private key parsed once, at load. jsonwebtoken's `encode` parses its `EncodingKey` on
/// every signature — for RSA a key check with modular inverses and new Montgomery contexts,
/// for P-256 a scalar multiplication to check the public point — which cost about as much as
/// the signature itself (docs/performance-log.md). The same parses as its aws-lc-rs backend, kept.
enum Signer {
    Es256(aws_lc_rs::signature::EcdsaKeyPair),
    Rs256(aws_lc_rs::signature::RsaKeyPair),
    EdDsa(aws_lc_rs::signature::Ed25519KeyPair),
}

impl Signer {
    fn new(alg: Algorithm, key: &EncodingKey) -> Result<Self, KeyError> {
        use aws_lc_rs::signature as sig;
        let invalid = |e: aws_lc_rs::error::KeyRejected| KeyError::Rejected(e.to_string());
        let der = key.as_bytes();
        Ok(match alg {
            Algorithm::ES256 => Self::Es256(
                sig::EcdsaKeyPair::from_pkcs8(&sig::ECDSA_P256_SHA256_FIXED_SIGNING, der)
                    .map_err(invalid)?,
            ),
            Algorithm::RS256 => Self::Rs256(sig::RsaKeyPair::from_der(der).map_err(invalid)?),
            Algorithm::EdDSA => Self::EdDsa(sig::Ed25519KeyPair::from_pkcs8(der).map_err(invalid)?),
            other => return Err(KeyError::Unsupported(other)),
        })
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, KeyError> {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let failed = |_| KeyError::Sign;
        Ok(match self {
            Self::Es256(k) => k.sign(&rng, message).map_err(failed)?.as_ref().to_vec(),
            Self::Rs256(k) => {
                let mut out = vec![0; k.public_modulus_len()];
                k.sign(
                    &aws_lc_rs::signature::RSA_PKCS1_SHA256,
                    &rng,
                    message,
                    &mut out,
                )
                .map_err(failed)?;
                out
            }
            Self::EdDsa(k) => k.sign(message).as_ref().to_vec(),
        })
    }
}

impl std::fmt::Debug for SigningKey {
    // Never print the private key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("alg", &self.alg)
            .field("kid", &self.kid)
            .finish()
    }
}

impl SigningKey {
    /// A fresh key from aws-lc-rs: P-256 for ES256, 2048-bit RSA for RS256, Ed25519 for EdDSA.
    pub fn generate(alg: Algorithm) -> Result<Self, KeyError> {
        use aws_lc_rs::encoding::AsDer;
        let failed = |e: aws_lc_rs::error::Unspecified| KeyError::Generate(e.to_string());
        let pkcs8_der = match alg {
            Algorithm::ES256 => aws_lc_rs::signature::EcdsaKeyPair::generate_pkcs8(
                &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                &aws_lc_rs::rand::SystemRandom::new(),
            )
            .map_err(failed)?
            .as_ref()
            .to_vec(),
            Algorithm::RS256 => aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
                .map_err(failed)?
                .as_der()
                .map_err(failed)?
                .as_ref()
                .to_vec(),
            // PKCS#8 v1 (no embedded public key): the form jsonwebtoken reads for its JWK.
            Algorithm::EdDSA => aws_lc_rs::signature::Ed25519KeyPair::generate_pkcs8v1(
                &aws_lc_rs::rand::SystemRandom::new(),
            )
            .map_err(failed)?
            .as_ref()
            .to_vec(),
            other => return Err(KeyError::Unsupported(other)),
        };
        Self::from_pkcs8_pem(alg, &pkcs8_pem(&pkcs8_der))
    }

    /// Loads a PKCS#8 PEM private key for `alg`.
    pub fn from_pkcs8_pem(alg: Algorithm, pem: &str) -> Result<Self, KeyError> {
        let encoding = match alg {
            Algorithm::ES256 => EncodingKey::from_ec_pem(pem.as_bytes())?,
            Algorithm::RS256 => EncodingKey::from_rsa_pem(pem.as_bytes())?,
            Algorithm::EdDSA => EncodingKey::from_ed_pem(pem.as_bytes())?,
            other => return Err(KeyError::Unsupported(other)),
        };
        let mut public = Jwk::from_encoding_key(&encoding, alg)?;
        let kid = public.thumbprint(ThumbprintHash::SHA256)?;
        public.common.key_id = Some(kid.clone());
        public.common.public_key_use = Some(PublicKeyUse::Signature);
        let verifier =
            Verifier::from_jwk(&public, alg).map_err(|e| KeyError::Rejected(e.to_string()))?;
        Ok(Self {
            alg,
            kid,
            pkcs8_pem: pem.to_owned(),
            signer: Signer::new(alg, &encoding)?,
            verifier,
            public,
        })
    }

    pub fn alg(&self) -> Algorithm {
        self.alg
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The private key as PKCS#8 PEM, for `lienthong keys generate`.
    pub fn pkcs8_pem(&self) -> &str {
        &self.pkcs8_pem
    }
}

/// PEM armour (RFC 7468) around a PKCS#8 DER private key.
fn pkcs8_pem(der: &[u8]) -> String {
    use base64::Engine;
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let mut pem = String::from("-----BEGIN PRIVATE KEY-----\n");
    for line in body.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        pem.push('\n');
    }
    pem.push_str("-----END PRIVATE KEY-----\n");
    pem
}

/// A key's place in its algorithm's rotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// Signed with before the last rotation; still published, so its tokens verify.
    Previous,
    /// Signs.
    Current,
    /// Signs after the next rotation; already published, so caches know it in advance.
    Next,
}

/// The keys a provider holds: per algorithm one current key, and perhaps a previous and a next.
#[derive(Debug, Default)]
pub struct KeySet {
    keys: Vec<(Slot, SigningKey)>,
}

impl KeySet {
    /// Keys that all sign (one per algorithm): a provider that does not rotate.
    pub fn new(keys: Vec<SigningKey>) -> Self {
        Self::with_slots(keys.into_iter().map(|k| (Slot::Current, k)).collect())
    }

    pub fn with_slots(keys: Vec<(Slot, SigningKey)>) -> Self {
        Self { keys }
    }

    /// One freshly generated current key for each algorithm.
    pub fn generate(algs: &[Algorithm]) -> Result<Self, KeyError> {
        Ok(Self::new(
            algs.iter()
                .map(|a| SigningKey::generate(*a))
                .collect::<Result<_, _>>()?,
        ))
    }

    fn current(&self, alg: Algorithm) -> Option<&SigningKey> {
        self.keys
            .iter()
            .find(|(slot, k)| *slot == Slot::Current && k.alg == alg)
            .map(|(_, k)| k)
    }

    /// The algorithms there is a current key for.
    pub fn algorithms(&self) -> impl Iterator<Item = Algorithm> + '_ {
        self.keys
            .iter()
            .filter(|(slot, _)| *slot == Slot::Current)
            .map(|(_, k)| k.alg)
    }

    pub fn supports(&self, alg: Algorithm) -> bool {
        self.current(alg).is_some()
    }

    /// The `kid` of each key with its slot, for operators.
    pub fn describe(&self) -> Vec<(Algorithm, Slot, String)> {
        self.keys
            .iter()
            .map(|(slot, k)| (k.alg, *slot, k.kid.clone()))
            .collect()
    }

    /// The public keys, as served at `jwks_uri`: next, current and previous alike.
    pub fn jwks(&self) -> JwkSet {
        JwkSet {
            keys: self.keys.iter().map(|(_, k)| k.public.clone()).collect(),
        }
    }

    /// Signs `claims` with the key for `alg`; `typ` is the JOSE type (`JWT`, `at+jwt`, ...).
    pub fn sign<T: Serialize>(
        &self,
        alg: Algorithm,
        typ: &str,
        claims: &T,
    ) -> Result<String, KeyError> {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let key = self.current(alg).ok_or(KeyError::NoKeyFor(alg))?;
        let mut header = Header::new(alg);
        header.typ = Some(typ.to_owned());
        header.kid = Some(key.kid.clone());
        let json = |e: serde_json::Error| KeyError::Invalid(e.into());
        let mut jws = b64.encode(serde_json::to_vec(&header).map_err(json)?);
        jws.push('.');
        b64.encode_string(serde_json::to_vec(claims).map_err(json)?, &mut jws);
        let signature = key.signer.sign(jws.as_bytes())?;
        jws.push('.');
        b64.encode_string(signature, &mut jws);
        Ok(jws)
    }

    /// Verifies a token signed by one of our own keys, whatever its slot (found by `kid`, and
    /// of the key's own algorithm), with the claims `expected` names; returns the claims.
    /// Expiry is the caller's to check, by its own clock.
    pub fn verify<T: DeserializeOwned>(
        &self,
        token: &str,
        expected: &Expected<'_>,
    ) -> Result<T, KeyError> {
        self.open(token, expected)?.trust(None)
    }

    /// Takes apart a token of ours as [`KeySet::verify`] does — its `typ`, the key its `kid`
    /// names, the claims `expected` names — all but its signature, which [`Opened::trust`]
    /// checks unless the token is one on record.
    pub fn open<'a, T: DeserializeOwned>(
        &'a self,
        token: &'a str,
        expected: &Expected<'_>,
    ) -> Result<Opened<'a, T>, KeyError> {
        let compact = Compact::parse(token).map_err(KeyError::Malformed)?;
        let header = compact.header().map_err(KeyError::Malformed)?;
        if let Some(typ) = expected.typ
            && header.typ.as_deref() != Some(typ)
        {
            return Err(KeyError::Type(typ));
        }
        let key = self
            .keys
            .iter()
            .map(|(_, k)| k)
            .find(|k| header.kid.as_deref() == Some(k.kid.as_str()) && header.alg == k.alg)
            .ok_or(KeyError::UnknownKey)?;
        let payload = compact.payload().map_err(KeyError::Refused)?;
        let refused = |e| KeyError::Refused(JwsError::claims(e));
        let registered: Registered<'_> = serde_json::from_slice(&payload).map_err(refused)?;
        expected.check(&registered).map_err(KeyError::Refused)?;
        let claims = serde_json::from_slice(&payload).map_err(refused)?;
        Ok(Opened {
            token,
            compact,
            key,
            claims,
        })
    }
}

/// The digest a token of ours is recorded by when it is issued, to be recognised again by
/// [`Opened::trust`]: SHA-256, base64url.
pub fn token_digest(token: &str) -> String {
    crate::secret::sha256_b64url(token)
}

/// An access token's [`token_digest`] and the `at_hash` of the ID token issued with it (OIDC
/// Core §3.1.3.6: the left half of the same SHA-256, base64url), from one pass over the token.
pub fn token_digest_and_at_hash(token: &str) -> (String, String) {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let digest = crate::crypto::sha256(token.as_bytes());
    (b64.encode(digest), b64.encode(&digest[..16]))
}

/// A token of ours taken apart by [`KeySet::open`]: its claims read and checked, its key
/// found, its signature not yet checked.
pub struct Opened<'a, T> {
    token: &'a str,
    compact: Compact<'a>,
    key: &'a SigningKey,
    claims: T,
}

impl<T> Opened<'_, T> {
    /// The claims as the token states them — not to be believed before [`Opened::trust`]; for
    /// finding the record it is trusted by.
    pub fn untrusted(&self) -> &T {
        &self.claims
    }

    /// The claims, once the token is trusted: if `recorded` is its [`token_digest`], kept when it
    /// was issued, it is that very token, byte for byte, and its signature was ours when we
    /// made it (a P-256 verification spared: most of a userinfo request's CPU,
    /// docs/performance-log.md); otherwise its signature must hold.
    pub fn trust(self, recorded: Option<&str>) -> Result<T, KeyError> {
        let on_record =
            recorded.is_some_and(|digest| constant_time_eq(&token_digest(self.token), digest));
        if !on_record {
            self.key
                .verifier
                .check(&self.compact)
                .map_err(KeyError::Refused)?;
        }
        Ok(self.claims)
    }
}

/// What a token of ours must say besides carrying our signature.
#[derive(Debug, Clone, Copy)]
pub struct Expected<'a> {
    /// `iss`: required, and this.
    pub issuer: &'a str,
    /// `aud`: required; when given, it is this or (an array) holds it.
    pub audience: Option<&'a str>,
    /// The JOSE `typ` (`at+jwt` for an access token), when given.
    pub typ: Option<&'static str>,
}

impl<'a> Expected<'a> {
    /// A token from `issuer`, for any audience, of any type.
    pub fn issued_by(issuer: &'a str) -> Self {
        Self {
            issuer,
            audience: None,
            typ: None,
        }
    }

    fn check(&self, claims: &Registered<'_>) -> Result<(), JwsError> {
        if claims.iss.as_deref() != Some(self.issuer) {
            return Err(JwsError::from("iss is not the issuer"));
        }
        let aud_ok = match (&claims.aud, self.audience) {
            (None, _) => false,
            (Some(_), None) => true,
            (Some(Audience::One(aud)), Some(want)) => aud == want,
            (Some(Audience::Many(auds)), Some(want)) => auds.iter().any(|a| a == want),
        };
        if !aud_ok {
            return Err(JwsError::from("aud is missing or not this audience"));
        }
        Ok(())
    }
}

/// The registered claims [`Expected`] checks (RFC 7519 §4.1).
#[derive(Deserialize)]
struct Registered<'a> {
    #[serde(borrow, default)]
    iss: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    aud: Option<Audience<'a>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Audience<'a> {
    One(#[serde(borrow)] Cow<'a, str>),
    Many(#[serde(borrow)] Vec<Cow<'a, str>>),
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    #[test]
    fn one_digest_gives_the_token_digest_and_the_at_hash() {
        let token = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln";
        assert_eq!(
            token_digest_and_at_hash(token),
            (token_digest(token), crate::secret::left_half_sha256(token))
        );
    }

    #[test]
    fn sign_and_verify_with_published_kid() {
        let keys = KeySet::generate(&[Algorithm::ES256]).unwrap();
        let token = keys.sign(Algorithm::ES256, "JWT", &ours("a")).unwrap();
        let header = jsonwebtoken::decode_header(&token).unwrap();
        let jwks = keys.jwks();
        assert_eq!(jwks.keys.len(), 1);
        assert_eq!(header.kid, jwks.keys[0].common.key_id);
        let claims: serde_json::Value = keys.verify(&token, &Expected::issued_by(ISS)).unwrap();
        assert_eq!(claims["sub"], "x");
    }

    const ISS: &str = "https://broker.example";

    fn ours(aud: &str) -> serde_json::Value {
        serde_json::json!({"iss": ISS, "aud": aud, "sub": "x", "exp": 4102444800u64})
    }

    #[test]
    fn a_token_on_record_is_trusted_by_its_digest_any_other_by_its_signature() {
        let keys = KeySet::generate(&[Algorithm::ES256]).unwrap();
        let expected = Expected::issued_by(ISS);
        let token = keys.sign(Algorithm::ES256, "JWT", &ours("a")).unwrap();
        let recorded = token_digest(&token);
        let open = |t| keys.open::<serde_json::Value>(t, &expected).unwrap();
        assert_eq!(open(&token).untrusted()["sub"], "x");
        assert_eq!(open(&token).trust(Some(&recorded)).unwrap()["sub"], "x");
        assert_eq!(open(&token).trust(None).unwrap()["sub"], "x");
        // Its signature altered (our kid kept): not the token on record, and no signature.
        let (signed, signature) = token.rsplit_once('.').unwrap();
        let flipped = if signature.starts_with('A') { 'B' } else { 'A' };
        let altered = format!("{signed}.{flipped}{}", &signature[1..]);
        assert!(matches!(
            open(&altered).trust(Some(&recorded)),
            Err(KeyError::Refused(_))
        ));
        // Its claims altered, the signature kept: refused alike.
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let header = signed.split_once('.').unwrap().0;
        let claims = b64.encode(serde_json::to_vec(&ours("b")).unwrap());
        let swapped = format!("{header}.{claims}.{signature}");
        assert!(open(&swapped).trust(Some(&recorded)).is_err());
        // The record is what is trusted: a digest taken of a token vouches for that token.
        assert!(open(&altered).trust(Some(&token_digest(&altered))).is_ok());
    }

    #[test]
    fn our_tokens_are_checked_for_issuer_audience_and_type() {
        let keys = KeySet::generate(&[Algorithm::ES256]).unwrap();
        let access = keys
            .sign(Algorithm::ES256, "at+jwt", &ours("portal"))
            .unwrap();
        let want = |audience, typ| Expected {
            issuer: ISS,
            audience,
            typ,
        };
        let ok = |e: Expected<'_>| keys.verify::<serde_json::Value>(&access, &e);
        assert!(ok(want(Some("portal"), Some("at+jwt"))).is_ok());
        assert!(matches!(
            ok(want(Some("portal"), Some("JWT"))),
            Err(KeyError::Type("JWT"))
        ));
        assert!(ok(want(Some("other"), None)).is_err());
        assert!(ok(Expected::issued_by("https://elsewhere.example")).is_err());
        // `aud` as an array holding the audience; and no `aud` at all.
        let many = serde_json::json!({"iss": ISS, "aud": ["a", "portal"]});
        let many = keys.sign(Algorithm::ES256, "JWT", &many).unwrap();
        assert!(
            keys.verify::<serde_json::Value>(&many, &want(Some("portal"), None))
                .is_ok()
        );
        let none = keys
            .sign(Algorithm::ES256, "JWT", &serde_json::json!({"iss": ISS}))
            .unwrap();
        assert!(
            keys.verify::<serde_json::Value>(&none, &Expected::issued_by(ISS))
                .is_err()
        );
        // Another key set's token with our kid's shape: unknown key.
        let stranger = KeySet::generate(&[Algorithm::ES256]).unwrap();
        let forged = stranger
            .sign(Algorithm::ES256, "at+jwt", &ours("portal"))
            .unwrap();
        assert!(matches!(
            keys.verify::<serde_json::Value>(&forged, &Expected::issued_by(ISS)),
            Err(KeyError::UnknownKey)
        ));
    }

    /// Signed with the key parsed once, verified by jsonwebtoken from the published JWK alone,
    /// as a client would, and by our own verifier from the same JWK; a changed signature is
    /// refused by both.
    #[test]
    fn every_algorithm_signs_what_its_published_key_verifies() {
        for alg in [Algorithm::ES256, Algorithm::RS256, Algorithm::EdDSA] {
            let keys = KeySet::generate(&[alg]).unwrap();
            let claims = serde_json::json!({"sub": "Nguyễn", "exp": 4102444800u64});
            let token = keys.sign(alg, "at+jwt", &claims).unwrap();
            let header = jsonwebtoken::decode_header(&token).unwrap();
            assert_eq!(header.typ.as_deref(), Some("at+jwt"), "{alg:?}");
            let client = jsonwebtoken::DecodingKey::from_jwk(&keys.jwks().keys[0]).unwrap();
            let mut v = jsonwebtoken::Validation::new(alg);
            v.validate_aud = false;
            let decoded = jsonwebtoken::decode::<serde_json::Value>(&token, &client, &v).unwrap();
            assert_eq!(decoded.claims, claims, "{alg:?}");
            let published = crate::jws::PublicKeys::new(&keys.jwks());
            assert_eq!(published.verify(&[alg], &token).unwrap(), claims, "{alg:?}");
            let mut tampered = token.clone();
            tampered.replace_range(token.len() - 4.., "AAAA");
            assert!(published.verify(&[alg], &tampered).is_err());
            assert!(jsonwebtoken::decode::<serde_json::Value>(&tampered, &client, &v).is_err());
        }
    }

    /// What jsonwebtoken signs — every algorithm a client or the IdP may use, PS256 included —
    /// our verifier accepts from the published JWK; not with an algorithm left off the allowed
    /// list, nor with the key of another algorithm.
    #[test]
    fn tokens_signed_elsewhere_verify_from_their_published_keys() {
        for (alg, key_alg) in [
            (Algorithm::RS256, Algorithm::RS256),
            (Algorithm::PS256, Algorithm::RS256),
            (Algorithm::ES256, Algorithm::ES256),
            (Algorithm::EdDSA, Algorithm::EdDSA),
        ] {
            let key = SigningKey::generate(key_alg).unwrap();
            let pem = key.pkcs8_pem().as_bytes();
            let encoding = match key_alg {
                Algorithm::RS256 => EncodingKey::from_rsa_pem(pem),
                Algorithm::ES256 => EncodingKey::from_ec_pem(pem),
                _ => EncodingKey::from_ed_pem(pem),
            }
            .unwrap();
            let mut header = Header::new(alg);
            header.kid = Some(key.kid().to_owned());
            let claims = serde_json::json!({"iss": "idp", "sub": "s"});
            let token = jsonwebtoken::encode(&header, &claims, &encoding).unwrap();
            let mut jwk = key.public.clone();
            jwk.common.key_algorithm = None;
            let published = crate::jws::PublicKeys::new(&JwkSet { keys: vec![jwk] });
            assert_eq!(published.verify(&[alg], &token).unwrap(), claims, "{alg:?}");
            let others: Vec<Algorithm> = crate::jws::SUPPORTED
                .into_iter()
                .filter(|a| *a != alg)
                .collect();
            assert!(published.verify(&others, &token).is_err(), "{alg:?}");
        }
    }

    #[test]
    fn the_same_pem_gives_the_same_kid() {
        let a = SigningKey::generate(Algorithm::ES256).unwrap();
        let b = SigningKey::from_pkcs8_pem(Algorithm::ES256, a.pkcs8_pem()).unwrap();
        assert_eq!(a.kid(), b.kid());
        assert!(matches!(
            keys_without(Algorithm::RS256),
            Err(KeyError::NoKeyFor(_))
        ));
    }

    #[test]
    fn eddsa_keys_sign_verify_and_publish() {
        let keys = KeySet::generate(&[Algorithm::EdDSA]).unwrap();
        let token = keys.sign(Algorithm::EdDSA, "JWT", &ours("a")).unwrap();
        let claims: serde_json::Value = keys.verify(&token, &Expected::issued_by(ISS)).unwrap();
        assert_eq!(claims["sub"], "x");
        assert_eq!(keys.jwks().keys.len(), 1);
    }

    #[test]
    fn only_the_current_key_signs_but_every_slot_verifies_and_is_published() {
        let (prev, cur, next) = (
            SigningKey::generate(Algorithm::ES256).unwrap(),
            SigningKey::generate(Algorithm::ES256).unwrap(),
            SigningKey::generate(Algorithm::ES256).unwrap(),
        );
        let older = KeySet::new(vec![
            SigningKey::from_pkcs8_pem(Algorithm::ES256, prev.pkcs8_pem()).unwrap(),
        ]);
        let signed_before = older.sign(Algorithm::ES256, "JWT", &ours("a")).unwrap();
        let cur_kid = cur.kid().to_owned();
        let ring = KeySet::with_slots(vec![
            (Slot::Previous, prev),
            (Slot::Current, cur),
            (Slot::Next, next),
        ]);
        assert_eq!(ring.jwks().keys.len(), 3);
        let t = ring
            .sign(
                Algorithm::ES256,
                "JWT",
                &serde_json::json!({"exp": 4102444800u64}),
            )
            .unwrap();
        assert_eq!(
            jsonwebtoken::decode_header(&t).unwrap().kid.as_deref(),
            Some(cur_kid.as_str())
        );
        let expected = Expected::issued_by(ISS);
        assert!(
            ring.verify::<serde_json::Value>(&signed_before, &expected)
                .is_ok()
        );
    }

    fn keys_without(alg: Algorithm) -> Result<String, KeyError> {
        KeySet::default().sign(alg, "JWT", &serde_json::json!({}))
    }

    // The JWS rules of `crate::jws`, on tokens this module signs.

    /// A token whose header is `header` and whose payload and signature are a token's that
    /// `keys` signed.
    fn token_with_header(header: &serde_json::Value, keys: &KeySet) -> String {
        let signed = keys
            .sign(Algorithm::ES256, "JWT", &serde_json::json!({"sub": "x"}))
            .unwrap();
        let mut parts = signed.splitn(2, '.');
        let _ = parts.next();
        let rest = parts.next().unwrap();
        format!(
            "{}.{rest}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(serde_json::to_vec(header).unwrap())
        )
    }

    #[test]
    fn a_crit_header_is_refused_and_a_changed_header_breaks_the_signature() {
        let keys = KeySet::generate(&[Algorithm::ES256]).unwrap();
        let published = crate::jws::PublicKeys::new(&keys.jwks());
        let kid = keys.jwks().keys[0].common.key_id.clone().unwrap();
        let crit = token_with_header(
            &serde_json::json!({"alg": "ES256", "kid": kid, "crit": ["exp"], "exp": 1}),
            &keys,
        );
        let e = published.verify(&[Algorithm::ES256], &crit).unwrap_err();
        assert!(e.to_string().contains("crit"), "{e}");
        let changed = token_with_header(&serde_json::json!({"alg": "ES256", "kid": kid}), &keys);
        let e = published.verify(&[Algorithm::ES256], &changed).unwrap_err();
        assert_eq!(e.to_string(), "invalid signature");
    }

    #[test]
    fn malformed_tokens_are_refused_not_panicked_on() {
        let keys = KeySet::generate(&[Algorithm::ES256]).unwrap();
        let published = crate::jws::PublicKeys::new(&keys.jwks());
        for bad in [
            "",
            ".",
            "..",
            "a.b",
            "a.b.c.d",
            "e30.e30.",
            "!!.e30.AA",
            "e30.e30.AA",
        ] {
            assert!(
                published.verify(&[Algorithm::ES256], bad).is_err(),
                "{bad:?}"
            );
            assert!(!published.unknown_kid(bad), "{bad:?}");
        }
    }

    #[test]
    fn a_key_too_weak_or_of_another_curve_fits_nothing() {
        let mut jwks = KeySet::generate(&[Algorithm::ES256]).unwrap().jwks();
        if let jsonwebtoken::jwk::AlgorithmParameters::EllipticCurve(ec) =
            &mut jwks.keys[0].algorithm
        {
            ec.curve = jsonwebtoken::jwk::EllipticCurve::P384;
        }
        let e = Verifier::from_jwk(&jwks.keys[0], Algorithm::ES256)
            .err()
            .unwrap();
        assert!(e.to_string().contains("cannot verify"), "{e}");
    }
}
