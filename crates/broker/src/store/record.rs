//! How a typed record becomes bytes in the Store, and back.
//!
//! Every value is `[schema version][nonce][AES-256-GCM ciphertext of its encoding]`, sealed with
//! the `[store] sealing_key` and bound to the key it is stored under (the key is the AEAD's
//! associated data, so a value copied under another key does not open). Personal data — the
//! ID number, the claims, the upstream ID token — thus never leaves the process in clear, even
//! into a Redis shared by several nodes.
//!
//! The encoding is postcard: the fields in their declared order, without their names, integers
//! as varints. A session or a refresh-token family is held for hours, a hundred thousand of them
//! on a busy node, and in JSON about half of each was field names and punctuation. The releases
//! before the seventh session of 12-05 wrote JSON, each record at the version its
//! [`Record::JSON_VERSION`] names, and read nothing else: every node reads that form still, and
//! writes it with `[store] record_encoding = "json"`, for a rolling update from such a release.
//! A claims map (JSON by nature) travels inside as its JSON text ([`json_map`]).
//!
//! The same key, through a key derived from it, also tags what the broker hands out and must
//! later know for its own without keeping a record of each (a refresh token, whose reuse is
//! recognised by its tag once its record is gone): every node that shares the sealing key
//! recognises the others' tags.
//!
//! A value that does not open or decode — written by a newer release (another schema version),
//! sealed with another key, damaged — reads as absent and is logged: the citizen starts again,
//! the node does not answer 503 or panic.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::hmac;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// A type kept in the Store.
pub trait Record: Serialize + DeserializeOwned {
    const KIND: &'static str;
    /// The version of its stored form, in postcard. Fields have no names there, so it changes
    /// whenever a field is added, removed, moved or retyped, or an enum's variants are; a
    /// `#[serde(skip_serializing_if)]` would make a value unreadable.
    const VERSION: u8;
    /// The version the releases before postcard wrote it at, in JSON: always read, written
    /// only by a [`Sealer::writing_json`].
    const JSON_VERSION: Option<u8> = None;
}

/// The sealing key, and the tagging key derived from it.
pub struct Sealer {
    key: LessSafeKey,
    tag_key: hmac::Key,
    /// Records are written in JSON at their `JSON_VERSION` (`[store] record_encoding = "json"`).
    json: bool,
}

/// Bytes of HMAC-SHA256 a tag keeps: 128 bits, as many as a forger must guess.
const TAG_LEN: usize = 16;

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer([redacted])")
    }
}

#[derive(Debug, thiserror::Error)]
#[error("store.sealing_key must be 32 bytes in base64: {0}")]
pub struct SealingKeyError(String);

impl Sealer {
    pub fn new(key: &[u8; 32]) -> Self {
        let unbound = UnboundKey::new(&AES_256_GCM, key).expect("32 bytes is an AES-256 key");
        // A key of its own for tags, derived (HMAC as the PRF) so that no value is ever both
        // sealed and tagged under one key.
        let derived = hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA256, key),
            b"lienthong tag key v1",
        );
        Self {
            key: LessSafeKey::new(unbound),
            tag_key: hmac::Key::new(hmac::HMAC_SHA256, derived.as_ref()),
            json: false,
        }
    }

    /// Writes records in JSON, as the releases before postcard read them (a record without a
    /// `JSON_VERSION` is still written in postcard). Reading is the same either way.
    pub fn writing_json(mut self, json: bool) -> Self {
        self.json = json;
        self
    }

    /// Whether records are written in JSON ([`Sealer::writing_json`]): the forms an earlier
    /// release reads.
    pub fn writes_json(&self) -> bool {
        self.json
    }

    /// From the configuration's base64 text.
    pub fn from_base64(text: &str) -> Result<Self, SealingKeyError> {
        let bytes = STANDARD
            .decode(text.trim())
            .map_err(|e| SealingKeyError(e.to_string()))?;
        let key: [u8; 32] = bytes
            .try_into()
            .map_err(|b: Vec<u8>| SealingKeyError(format!("{} bytes", b.len())))?;
        Ok(Self::new(&key))
    }

    /// A key for this process alone (the memory Store, where nothing leaves the process).
    pub fn generate() -> Self {
        let bytes = lienthong_protocol::crypto::random_bytes(32);
        Self::new(&bytes.try_into().expect("32 bytes"))
    }

    /// Seals `plain` for storage under `key`.
    pub fn seal(&self, key: &str, version: u8, plain: &[u8]) -> Vec<u8> {
        let nonce_bytes: [u8; NONCE_LEN] = lienthong_protocol::crypto::random_bytes(NONCE_LEN)
            .try_into()
            .expect("nonce length");
        let mut buf = plain.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce_bytes),
                Aad::from(key.as_bytes()),
                &mut buf,
            )
            .expect("AES-GCM sealing does not fail for in-memory buffers");
        let mut out = Vec::with_capacity(1 + NONCE_LEN + buf.len());
        out.push(version);
        out.extend_from_slice(&nonce_bytes);
        out.extend_from_slice(&buf);
        out
    }

    /// Opens a value stored under `key`; `None` unless it is `version` and opens.
    pub fn open(&self, key: &str, version: u8, sealed: &[u8]) -> Option<Vec<u8>> {
        let (&v, rest) = sealed.split_first()?;
        if v != version || rest.len() < NONCE_LEN {
            return None;
        }
        let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
        let mut buf = ciphertext.to_vec();
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(key.as_bytes()), &mut buf)
            .ok()?;
        Some(plain.to_vec())
    }

    /// The tag of `text`: base64url, 22 characters.
    pub fn tag(&self, text: &str) -> String {
        let mac = hmac::sign(&self.tag_key, text.as_bytes());
        URL_SAFE_NO_PAD.encode(&mac.as_ref()[..TAG_LEN])
    }

    /// Whether `tag` is the tag of `text` (in constant time).
    pub fn tagged(&self, text: &str, tag: &str) -> bool {
        lienthong_protocol::secret::constant_time_eq(&self.tag(text), tag)
    }

    pub fn encode<T: Record>(&self, key: &str, value: &T) -> Vec<u8> {
        match T::JSON_VERSION {
            Some(version) if self.json => {
                let plain = serde_json::to_vec(value).expect("records serialize");
                self.seal(key, version, &plain)
            }
            _ => {
                let plain = postcard::to_stdvec(value).expect("records serialize");
                self.seal(key, T::VERSION, &plain)
            }
        }
    }

    /// Whether `sealed` was written at `T`'s postcard version: for a key that may hold one of
    /// several record types, which [`Sealer::decode`] is then asked for.
    pub fn holds<T: Record>(sealed: &[u8]) -> bool {
        sealed.first() == Some(&T::VERSION)
    }

    pub fn decode<T: Record>(&self, key: &str, bytes: Option<Vec<u8>>) -> Option<T> {
        let bytes = bytes?;
        let decoded = match bytes.first().copied() {
            Some(v) if v == T::VERSION => self
                .open(key, v, &bytes)
                .and_then(|plain| postcard::from_bytes(&plain).ok()),
            Some(v) if Some(v) == T::JSON_VERSION => self
                .open(key, v, &bytes)
                .and_then(|plain| serde_json::from_slice(&plain).ok()),
            _ => None,
        };
        if decoded.is_none() {
            // Never the value itself: it may be personal data.
            tracing::warn!(
                kind = T::KIND,
                stored_version = bytes.first().copied(),
                expected_version = T::VERSION,
                "a stored value could not be read (other schema version, other sealing key, or damaged): treated as absent"
            );
        }
        decoded
    }
}

/// `#[serde(with = "json_map")]` for a claims map: in JSON (an earlier release's records) the
/// map itself; in postcard, which cannot carry JSON's self-describing values, its JSON text.
pub mod json_map {
    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use serde_json::{Map, Value};

    pub fn serialize<S: Serializer>(map: &Map<String, Value>, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            map.serialize(s)
        } else {
            s.serialize_str(&serde_json::to_string(map).map_err(serde::ser::Error::custom)?)
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Map<String, Value>, D::Error> {
        if d.is_human_readable() {
            Map::deserialize(d)
        } else {
            let text = String::deserialize(d)?;
            serde_json::from_str(&text).map_err(D::Error::custom)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
    struct Sample {
        citizen_id: String,
    }
    impl Record for Sample {
        const KIND: &'static str = "sample";
        const VERSION: u8 = 3;
    }

    #[test]
    fn sealed_values_open_only_under_their_key_version_and_sealing_key() {
        let s = Sealer::generate();
        let v = Sample {
            citizen_id: "001085004512".into(),
        };
        let bytes = s.encode("k1", &v);
        assert!(
            !bytes.windows(12).any(|w| w == b"001085004512"),
            "no personal data in clear"
        );
        assert_eq!(s.decode::<Sample>("k1", Some(bytes.clone())), Some(v));
        assert_eq!(
            s.decode::<Sample>("k2", Some(bytes.clone())),
            None,
            "other key"
        );
        assert_eq!(
            Sealer::generate().decode::<Sample>("k1", Some(bytes.clone())),
            None
        );
        let mut other_version = bytes;
        other_version[0] = 4;
        assert_eq!(s.decode::<Sample>("k1", Some(other_version)), None);
        assert!(Sealer::from_base64("c2hvcnQ=").is_err());
        assert!(Sealer::from_base64(&STANDARD.encode([7u8; 32])).is_ok());
    }

    #[test]
    fn a_tag_holds_only_for_its_text_under_its_key() {
        let key = STANDARD.encode([7u8; 32]);
        let s = Sealer::from_base64(&key).unwrap();
        let tag = s.tag("family.secret");
        assert_eq!(tag.len(), 22);
        assert!(s.tagged("family.secret", &tag));
        assert!(
            Sealer::from_base64(&key)
                .unwrap()
                .tagged("family.secret", &tag),
            "another node with the same sealing key"
        );
        assert!(!s.tagged("family.secreT", &tag), "other text");
        assert!(!s.tagged("family.secret", &tag[1..]), "a shorter tag");
        assert!(
            !Sealer::generate().tagged("family.secret", &tag),
            "other key"
        );
    }
}
