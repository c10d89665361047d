//! Refresh tokens (RFC 6749 §6, OIDC Core §12) for systems allowed `offline_access`: a system
//! keeps a citizen signed in for a working day without sending them to sign in again.
//!
//! A refresh token is opaque to its client, stored only under its hash, and good for one use:
//! each use gives a new one of the same *family*. Presenting a used one again means it was
//! copied — so the whole family is revoked at once (every refresh token and access token it
//! issued): whichever way a theft and a legitimate use interleave, nothing the family issued
//! survives. Each refresh re-releases the claims from the citizen's current identity under the
//! client's current allow-list and consent.
//!
//! A token is its family's id, 32 random bytes and a tag (`<family>.<secret>.<tag>`,
//! base64url): the family says which family a reuse revokes, and the tag — a MAC under a key
//! derived from the Store's sealing key ([`crate::store::Sealer::tag`]) — says the token is one
//! the broker issued. A used token therefore leaves nothing behind: when its record is gone, a
//! token that bears the broker's tag is a reuse (or a presentation racing the one that took it),
//! and a made-up one, which cannot bear it, revokes nothing. (A token presented after it expired
//! unused is its family's newest, so the family it revokes has nothing left alive.) The family's
//! set in the Store holds its access tokens that may still be live — at most four, the oldest
//! revoked early when a system rotates faster than they expire — pruned at each rotation; its
//! refresh tokens need no place there, since every read of one checks the family's
//! revoked-mark. So a family costs the same after its thousandth rotation as after its first.
//!
//! Tokens of earlier releases (`<family>.<secret>`, or a bare secret with its family in an
//! index key) are still rotated, and their reuse still found by the used-marker they leave,
//! until the last of them expires (one refresh-token lifetime after an upgrade).

use std::time::Duration;

use lienthong_protocol::OAuthError;
use lienthong_protocol::secret::random_token;
use serde::{Deserialize, Serialize};

use crate::access_token::grant_key;
use crate::identity::CitizenIdentity;
use crate::state::{Client, Inner};
use crate::store::{Batch, Record, StoreError, keys};

/// An access token issued beside one of the family's refresh tokens.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FamilyGrant {
    pub jti: String,
    /// Seconds since the epoch.
    pub expires_at: u64,
}

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
    /// The family's access tokens that may still be live, carried from token to token: the
    /// members of the family's set, pruned as they expire. Absent from an earlier release's
    /// records, whose families' sets keep what they had until they expire.
    #[serde(default)]
    pub grants: Vec<FamilyGrant>,
}

impl Record for RefreshRecord {
    const KIND: &'static str = "refresh token";
    const VERSION: u8 = 1;
}

/// What a used refresh token of an earlier release leaves behind: only that it was used.
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

/// The most access tokens a family keeps live at once: a system rotating as its access tokens
/// expire has one, or two for a moment.
const LIVE_GRANTS_MAX: usize = 4;

/// A new refresh token of `record.family`, written by `batch` with the grant `jti` issued beside
/// it added to the family's set, and the family's grants that have expired since — or that
/// would make more than [`LIVE_GRANTS_MAX`] live — taken out.
pub(crate) fn issue(
    inner: &Inner,
    batch: &mut Batch<'_>,
    mut record: RefreshRecord,
    jti: &str,
) -> String {
    let body = format!("{}.{}", record.family, random_token(32));
    let token = format!("{body}.{}", inner.store.sealer().tag(&body));
    let ttl = lifetime(inner);
    let now = inner.now();
    record.expires_at = now + ttl.as_secs();
    let family = keys::token_family(&record.family);
    record.grants.retain(|g| {
        let live = g.expires_at > now;
        if !live {
            batch.set_remove(family.clone(), grant_key(&g.jti));
        }
        live
    });
    // A system that rotates faster than its access tokens expire loses the oldest of them
    // early, so that neither this record nor the set grows with the pace of its rotations.
    let excess = (record.grants.len() + 1).saturating_sub(LIVE_GRANTS_MAX);
    for g in record.grants.drain(..excess) {
        let key = grant_key(&g.jti);
        batch.delete(key.clone()).set_remove(family.clone(), key);
    }
    record.grants.push(FamilyGrant {
        jti: jti.to_owned(),
        expires_at: now + inner.config.tokens.access_token_secs,
    });
    batch
        .put(keys::refresh_token(&token), &record, ttl)
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

/// What a presented refresh token is, by its form.
enum Presented<'t> {
    /// `<family>.<secret>.<tag>` with the broker's tag: one it issued.
    Ours { family: &'t str },
    /// That form with any other tag: made up.
    Forged,
    /// An earlier release's form.
    Earlier,
}

fn presented<'t>(inner: &Inner, token: &'t str) -> Presented<'t> {
    match token.rsplit_once('.') {
        Some((body, tag)) if body.contains('.') => {
            if inner.store.sealer().tagged(body, tag) {
                let family = body.split_once('.').map_or(body, |(f, _)| f);
                Presented::Ours { family }
            } else {
                Presented::Forged
            }
        }
        _ => Presented::Earlier,
    }
}

/// The family of a used token of an earlier release: the part before its dot, or for the
/// tokens without one, the index key their release wrote beside each.
async fn earlier_family(inner: &Inner, token: &str) -> Result<Option<String>, StoreError> {
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
    let key = keys::refresh_token(token);
    let taken = match presented(inner, token) {
        Presented::Forged => return Err(refused()),
        // Of two presentations, however close, one takes the record; the other finds it gone
        // and, the token being ours, knows it for a reuse.
        Presented::Ours { family } => {
            let taken = inner.store.take::<RefreshRecord>(&key).await;
            if let Ok(None) = taken {
                revoke_reused(inner, client, family).await?;
            }
            taken
        }
        // Taken leaving the used-marker in one step, as the earlier release did: the marker
        // is how its reuse is known.
        Presented::Earlier => {
            let taken = inner
                .store
                .take_leaving::<RefreshRecord, _>(
                    &key,
                    &keys::refresh_spent(token),
                    &RefreshSpent {},
                    lifetime(inner),
                )
                .await;
            if let Ok(None) = taken
                && inner
                    .store
                    .raw()
                    .get(&keys::refresh_spent(token))
                    .await
                    .map_err(store_error)?
                    .is_some()
                && let Some(family) = earlier_family(inner, token).await.map_err(store_error)?
            {
                revoke_reused(inner, client, &family).await?;
            }
            taken
        }
    };
    let Some(record) = taken.map_err(store_error)? else {
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

async fn revoke_reused(inner: &Inner, client: &Client, family: &str) -> Result<(), OAuthError> {
    revoke_family(inner, family).await.map_err(store_error)?;
    tracing::warn!(client = %client.config.id, "refresh token reused: its whole family is revoked");
    Ok(())
}
