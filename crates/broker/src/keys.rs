//! The broker's signing keys: where they come from, how they roll over, how every node keeps up.
//!
//! Per algorithm (ES256, RS256, EdDSA) the broker holds a current key that signs, a next key and
//! a previous key, all three published in the JWKS. Keys come from a PEM file (`[keys]`, no
//! rotation), or — with a sealing key — from the directory, where they are shared by every
//! node: there the newest generation is *next*, the one below *current*, the one below that
//! *previous*. `lienthong keys rotate` adds a generation: next becomes current (clients have
//! had it in their JWKS caches since the last rotation), current becomes previous (tokens it
//! signed still verify until they expire), and a fresh next is published. Each node reloads the
//! ring every `keys.reload_secs`; a node that has not reloaded yet signs with a key that is
//! still published, so no token in flight breaks. Without a sealing key (one node, the demo),
//! a current and a next key are generated at start.

use std::sync::{Arc, RwLock};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use jsonwebtoken::Algorithm;
use lienthong_adapter::directory::Directory;
use lienthong_protocol::{KeySet, SigningKey, Slot};

use crate::config::KeysConfig;
use crate::store::Sealer;

/// Every algorithm the broker signs with.
pub const ALGORITHMS: [Algorithm; 3] = [Algorithm::ES256, Algorithm::RS256, Algorithm::EdDSA];

#[derive(Debug, thiserror::Error)]
pub enum KeysError {
    #[error("{0}")]
    Config(String),
    #[error("keys: {0}")]
    Key(#[from] lienthong_protocol::KeyError),
    #[error("signing keys in the directory: {0}")]
    Directory(#[from] lienthong_adapter::directory::DirectoryError),
}

/// The key set in use, swapped whole when the ring is reloaded.
#[derive(Debug)]
pub struct KeyRing {
    set: RwLock<Arc<KeySet>>,
}

impl KeyRing {
    pub fn new(set: KeySet) -> Self {
        Self {
            set: RwLock::new(Arc::new(set)),
        }
    }

    /// The keys now (a cheap handle; a reload does not disturb a request holding it).
    pub fn current(&self) -> Arc<KeySet> {
        self.set.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn replace(&self, set: KeySet) {
        *self.set.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(set);
    }
}

fn name(alg: Algorithm) -> String {
    format!("{alg:?}")
}

fn pem_for(config: &KeysConfig, alg: Algorithm) -> Option<&std::path::Path> {
    match alg {
        Algorithm::ES256 => config.es256_pem.as_deref(),
        Algorithm::RS256 => config.rs256_pem.as_deref(),
        Algorithm::EdDSA => config.eddsa_pem.as_deref(),
        _ => None,
    }
}

/// Whether some algorithm's keys live in the directory (and so can rotate and must be reloaded).
pub fn shared(config: &KeysConfig, sealer: Option<&Sealer>) -> bool {
    sealer.is_some() && ALGORITHMS.iter().any(|a| pem_for(config, *a).is_none())
}

fn aad(alg: Algorithm, generation: i64) -> String {
    format!("signing-key:{}:{generation}", name(alg))
}

fn seal(sealer: &Sealer, alg: Algorithm, generation: i64, key: &SigningKey) -> String {
    STANDARD.encode(sealer.seal(&aad(alg, generation), 1, key.pkcs8_pem().as_bytes()))
}

fn open(
    sealer: &Sealer,
    alg: Algorithm,
    generation: i64,
    sealed: &str,
) -> Result<SigningKey, KeysError> {
    let pem = STANDARD
        .decode(sealed)
        .ok()
        .and_then(|bytes| sealer.open(&aad(alg, generation), 1, &bytes))
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or_else(|| {
            KeysError::Config(format!(
                "the shared {} signing key (generation {generation}) in the directory does not \
                 open with this store.sealing_key: every node must have the same one",
                name(alg)
            ))
        })?;
    Ok(SigningKey::from_pkcs8_pem(alg, &pem)?)
}

/// The newest three generations of `alg` in the directory, creating the first two if there are
/// none yet (of several nodes starting at once, every one ends up with the same keys).
async fn shared_generations(
    directory: &Directory,
    sealer: &Sealer,
    alg: Algorithm,
) -> Result<Vec<(i64, String)>, KeysError> {
    let rows = directory.signing_keys(&name(alg), 3).await?;
    if rows.len() >= 2 {
        return Ok(rows);
    }
    for generation in 1..=2 {
        let key = SigningKey::generate(alg)?;
        directory
            .add_signing_key(&name(alg), generation, &seal(sealer, alg, generation, &key))
            .await?;
    }
    Ok(directory.signing_keys(&name(alg), 3).await?)
}

/// Loads every algorithm's keys as the configuration says.
pub async fn load(
    config: &KeysConfig,
    directory: &Directory,
    sealer: Option<&Sealer>,
) -> Result<KeySet, KeysError> {
    let mut keys = Vec::new();
    for alg in ALGORITHMS {
        if let Some(path) = pem_for(config, alg) {
            let text = std::fs::read_to_string(path)
                .map_err(|e| KeysError::Config(format!("{}: {e}", path.display())))?;
            keys.push((Slot::Current, SigningKey::from_pkcs8_pem(alg, &text)?));
            continue;
        }
        let Some(sealer) = sealer else {
            keys.push((Slot::Current, SigningKey::generate(alg)?));
            keys.push((Slot::Next, SigningKey::generate(alg)?));
            continue;
        };
        let rows = shared_generations(directory, sealer, alg).await?;
        for ((generation, sealed), slot) in
            rows.iter().zip([Slot::Next, Slot::Current, Slot::Previous])
        {
            keys.push((slot, open(sealer, alg, *generation, sealed)?));
        }
    }
    Ok(KeySet::with_slots(keys))
}

/// Rolls `alg`'s shared keys one step (next becomes current, current previous, a new next);
/// returns the new ring's `kid`s as (slot, kid).
pub async fn rotate(
    directory: &Directory,
    sealer: &Sealer,
    alg: Algorithm,
) -> Result<Vec<(Slot, String)>, KeysError> {
    let rows = shared_generations(directory, sealer, alg).await?;
    let newest = rows[0].0;
    let key = SigningKey::generate(alg)?;
    let added = directory
        .add_signing_key(&name(alg), newest + 1, &seal(sealer, alg, newest + 1, &key))
        .await?;
    if !added {
        return Err(KeysError::Config(format!(
            "another rotation of {} ran at the same moment; run it again if two were meant",
            name(alg)
        )));
    }
    // Keep previous, current and next; older keys can no longer verify a live token.
    directory.prune_signing_keys(&name(alg), newest - 1).await?;
    let rows = directory.signing_keys(&name(alg), 3).await?;
    rows.iter()
        .zip([Slot::Next, Slot::Current, Slot::Previous])
        .map(|((generation, sealed), slot)| {
            Ok((
                slot,
                open(sealer, alg, *generation, sealed)?.kid().to_owned(),
            ))
        })
        .collect()
}
