//! Refresh tokens (RFC 6749 §6, OIDC Core §12) for systems allowed `offline_access`: a system
//! keeps a citizen signed in for a working day without sending them to sign in again.
//!
//! A refresh token is opaque to its client, stored only under its hash, and good for one use:
//! each use gives a new one of the same *family*. Presenting a used one again means it was
//! copied — so the whole family is revoked at once (every refresh token and access token it
//! issued), by the same take-and-mark rule as codes: whichever way a theft and a legitimate use
//! interleave, nothing the family issued survives. Each refresh re-releases the claims from the
//! citizen's current identity under the client's current allow-list and consent.
//!
//! A token is its family's id, a dot, and 32 random bytes (`<family>.<secret>`, base64url), so
//! that a reuse finds the family to revoke in the token itself rather than in an index key per
//! token. The family's id is random and says nothing but which tokens belong together, which
//! their holder knows anyway; a forged token naming someone's family finds no used-marker (that
//! is keyed by the whole token) and revokes nothing.

use std::time::Duration;

use lienthong_protocol::OAuthError;
use lienthong_protocol::secret::random_token;
use serde::{Deserialize, Serialize};

use crate::access_token::grant_key;
use crate::identity::CitizenIdentity;
use crate::state::{Client, Inner};
use crate::store::{Batch, Record, StoreError, keys};

/// What a refresh token stands for.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RefreshRecord {
    pub family: String,
    pub client_id: String,
    pub sub: String,
    pub scopes: Vec<String>,
    pub identity: CitizenIdentity,
    pub acr: String,
    pub amr: Vec<String>,
    pub auth_time: u64,
    pub sid: String,
    /// When this token stops working (seconds since the epoch), for introspection.
    pub expires_at: u64,
}

impl Record for RefreshRecord {
    const KIND: &'static str = "refresh token";
    const VERSION: u8 = 1;
}

/// What a used refresh token leaves behind: only that it was used (its family is in the
/// token).
#[derive(Debug, Serialize, Deserialize)]
pub struct RefreshSpent {}

impl Record for RefreshSpent {
    const KIND: &'static str = "spent refresh token";
    const VERSION: u8 = 1;
}

pub(crate) fn store_error(e: StoreError) -> OAuthError {
    tracing::error!(error = %e, "store failure at the token endpoint");
    OAuthError::new(
        lienthong_protocol::OAuthErrorCode::TemporarilyUnavailable,
        "try again shortly",
    )
}

fn lifetime(inner: &Inner) -> Duration {
    Duration::from_secs(inner.config.tokens.refresh_token_secs)
}

/// A new refresh token of `record.family`, written by `batch` as a member of the family
/// together with the grant `jti` issued beside it.
pub(crate) fn issue(
    inner: &Inner,
    batch: &mut Batch<'_>,
    mut record: RefreshRecord,
    jti: &str,
) -> String {
    let token = format!("{}.{}", record.family, random_token(32));
    let ttl = lifetime(inner);
    record.expires_at = inner.now() + ttl.as_secs();
    let key = keys::refresh_token(&token);
    let family = keys::token_family(&record.family);
    batch
        .put(key.clone(), &record, ttl)
        .set_add(family.clone(), key, ttl)
        .set_add(family, grant_key(jti), ttl);
    token
}

/// Revokes everything `family` issued: marks it first (a rotation in flight re-reads the mark),
/// then deletes every member.
pub(crate) async fn revoke_family(inner: &Inner, family: &str) -> Result<(), StoreError> {
    let raw = inner.store.raw();
    raw.put(
        &keys::family_revoked(family),
        b"1".to_vec(),
        lifetime(inner),
    )
    .await?;
    let set = keys::token_family(family);
    for member in raw.set_members(&set).await? {
        raw.delete(&member).await?;
    }
    raw.delete(&set).await
}

/// Applies `batch`, then says whether `family` is revoked, read once every write is done (in
/// the same round trip where the Store can): a rotation's check that no reuse came between.
pub(crate) async fn write_then_family_revoked(
    inner: &Inner,
    batch: Batch<'_>,
    family: &str,
) -> Result<bool, StoreError> {
    Ok(inner
        .store
        .write_then_get_raw(batch, &keys::family_revoked(family))
        .await?
        .is_some())
}

pub(crate) async fn family_revoked(inner: &Inner, family: &str) -> Result<bool, StoreError> {
    Ok(inner
        .store
        .raw()
        .get(&keys::family_revoked(family))
        .await?
        .is_some())
}

/// The family of a used `token`: the part before its dot. Tokens of earlier releases have no
/// dot; their family is in the index key those releases wrote beside each token, read until
/// the last of them expires (one refresh-token lifetime after an upgrade).
async fn family_of(inner: &Inner, token: &str) -> Result<Option<String>, StoreError> {
    if let Some((family, _)) = token.split_once('.') {
        return Ok(Some(family.to_owned()));
    }
    Ok(inner
        .store
        .raw()
        .get(&keys::refresh_family(token))
        .await?
        .and_then(|f| String::from_utf8(f).ok()))
}

/// Takes a presented refresh token for `client`: its record, or `invalid_grant` (with the
/// family revoked when the token had been used already).
pub(crate) async fn take(
    inner: &Inner,
    client: &Client,
    token: &str,
) -> Result<RefreshRecord, OAuthError> {
    let refused = || OAuthError::invalid_grant("the refresh token is unknown, expired or revoked");
    // Take it and leave the used-marker in one step: of two presentations, however close, one
    // gets the record and the other finds the marker.
    let Some(record) = inner
        .store
        .take_leaving::<RefreshRecord, _>(
            &keys::refresh_token(token),
            &keys::refresh_spent(token),
            &RefreshSpent {},
            lifetime(inner),
        )
        .await
        .map_err(store_error)?
    else {
        let raw = inner.store.raw();
        if raw
            .get(&keys::refresh_spent(token))
            .await
            .map_err(store_error)?
            .is_some()
            && let Some(family) = family_of(inner, token).await.map_err(store_error)?
        {
            revoke_family(inner, &family).await.map_err(store_error)?;
            tracing::warn!(client = %client.config.id, "refresh token reused: its whole family is revoked");
        }
        return Err(refused());
    };
    if record.client_id != client.config.id {
        // Stolen and presented by another system: refused, the owner's family left alone.
        return Err(refused());
    }
    if family_revoked(inner, &record.family)
        .await
        .map_err(store_error)?
    {
        return Err(refused());
    }
    Ok(record)
}
