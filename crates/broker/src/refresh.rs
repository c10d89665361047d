//! Refresh tokens (RFC 6749 §6, OIDC Core §12) for systems allowed `offline_access`: a system
//! keeps a citizen signed in for a working day without sending them to sign in again.
//!
//! A refresh token is opaque to its client and good for one use: each use gives a new one of
//! the same *family*. Presenting a used one again means it was copied — so the whole family is
//! revoked at once (every refresh token and access token it issued): whichever way a theft and
//! a legitimate use interleave, nothing the family issued survives. Each refresh re-releases
//! the claims from the citizen's current identity under the client's current allow-list and
//! consent.
//!
//! A token is its family's id, 32 random bytes and a tag (`<family>.<secret>.<tag>`,
//! base64url). The tag is a MAC over the client's id and the rest, under a key derived from the
//! Store's sealing key ([`crate::store::Sealer::tag`]): it says the broker issued the token to
//! that client, so a made-up token, or one presented by another system, is refused without a
//! Store round trip and revokes nothing. A family is one record in the Store, under its id: the
//! citizen, the grant, the tag of its one live refresh token and its access tokens that may
//! still be live (at most four, the oldest revoked early when a system rotates faster than they
//! expire, the expired ones dropped at each rotation). A rotation takes the record, and writes
//! it back with the new token's tag: a token of the family that is not the live one — or that
//! finds the record gone, taken by a presentation racing it — is a reuse. So a used token
//! leaves nothing behind, a revocation finds everything to end under the family's id, and a
//! family costs the same after its thousandth rotation as after its first.
//!
//! Tokens of earlier releases are still rotated until the last of them expires (one
//! refresh-token lifetime after an upgrade): those tagged without the client (their record under
//! the token's hash, their access tokens in a set under the family), whose reuse the tag still
//! tells; and before them `<family>.<secret>` and a bare secret with its family in an index
//! key, whose reuse is found by the used-marker they leave. A token of this release presented
//! to a node of an earlier one during a rolling update does not bear the tag that node checks:
//! it is refused there and revokes nothing.

use std::time::Duration;

use lienthong_protocol::OAuthError;
use lienthong_protocol::secret::{constant_time_eq, random_token};
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

/// A refresh-token family: what its live refresh token stands for. Stored under the family's
/// id ([`keys::family_record`]); an earlier release stored one per token, under the token's
/// hash ([`keys::refresh_token`]).
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
    /// When the live token stops working (seconds since the epoch), for introspection.
    pub expires_at: u64,
    /// The family's access tokens that may still be live, pruned as they expire. Absent from
    /// the records of the releases before the fifth session of 12-05.
    #[serde(default)]
    pub grants: Vec<FamilyGrant>,
    /// The tag of the family's live refresh token; empty in an earlier release's records, which
    /// stand for the one token whose hash keys them.
    #[serde(default)]
    pub live: String,
}

impl Record for RefreshRecord {
    const KIND: &'static str = "refresh token";
    const VERSION: u8 = 2;
    const JSON_VERSION: Option<u8> = Some(1);
}

/// What a used refresh token of an earlier release leaves behind: only that it was used.
#[derive(Debug, Serialize, Deserialize)]
pub struct RefreshSpent {}

impl Record for RefreshSpent {
    const KIND: &'static str = "spent refresh token";
    const VERSION: u8 = 2;
    const JSON_VERSION: Option<u8> = Some(1);
}

pub(crate) fn store_error(e: StoreError) -> OAuthError {
    tracing::error!(error = %e, "store failure at the token endpoint");
    OAuthError::new(
        lienthong_protocol::OAuthErrorCode::TemporarilyUnavailable,
        "try again shortly",
    )
}

pub(crate) fn lifetime(inner: &Inner) -> Duration {
    Duration::from_secs(inner.config.tokens.refresh_token_secs)
}

/// The most access tokens a family keeps live at once: a system rotating as its access tokens
/// expire has one, or two for a moment.
const LIVE_GRANTS_MAX: usize = 4;

/// The tag of a token `<family>.<secret>` issued to `client_id`. The id comes first, after a
/// NUL that no token holds: an earlier release's tag, over the token alone, is never this one.
fn tag(inner: &Inner, client_id: &str, body: &str) -> String {
    inner.store.sealer().tag(&format!("{client_id}\0{body}"))
}

/// A new refresh token of `record.family`, written by `batch` as the family's record with the
/// grant `jti` issued beside it, and the family's grants that have expired since dropped — or,
/// past [`LIVE_GRANTS_MAX`] live, revoked. The record is kept for `held`, where given, instead
/// of the token's lifetime: until a code is redeemed, whose redemption then keeps it on
/// ([`lifetime`]).
pub(crate) fn issue(
    inner: &Inner,
    batch: &mut Batch<'_>,
    mut record: RefreshRecord,
    jti: &str,
    held: Option<Duration>,
) -> String {
    let body = format!("{}.{}", record.family, random_token(32));
    record.live = tag(inner, &record.client_id, &body);
    let token = format!("{body}.{}", record.live);
    let ttl = lifetime(inner);
    let now = inner.now();
    record.expires_at = now + ttl.as_secs();
    record.grants.retain(|g| g.expires_at > now);
    // A system that rotates faster than its access tokens expire loses the oldest of them
    // early, so that the record does not grow with the pace of its rotations.
    let excess = (record.grants.len() + 1).saturating_sub(LIVE_GRANTS_MAX);
    for g in record.grants.drain(..excess) {
        batch.delete(grant_key(&g.jti));
    }
    record.grants.push(FamilyGrant {
        jti: jti.to_owned(),
        expires_at: now + inner.config.tokens.access_token_secs,
    });
    batch.put(
        keys::family_record(&record.family),
        &record,
        held.unwrap_or(ttl),
    );
    token
}

/// Revokes everything `family` issued: marks it first (a rotation in flight re-reads the mark),
/// then takes its record and deletes the access tokens it names — and `held`'s, a record of
/// the family already taken — and, for a family of an earlier release, the members of its set.
pub(crate) async fn revoke_family(
    inner: &Inner,
    family: &str,
    held: Option<&RefreshRecord>,
) -> Result<(), StoreError> {
    let raw = inner.store.raw();
    raw.put(
        &keys::family_revoked(family),
        b"1".to_vec(),
        lifetime(inner),
    )
    .await?;
    let taken = inner
        .store
        .take::<RefreshRecord>(&keys::family_record(family))
        .await?;
    let mut batch = inner.store.batch();
    for g in taken.iter().chain(held).flat_map(|r| &r.grants) {
        batch.delete(grant_key(&g.jti));
    }
    let set = keys::token_family(family);
    for member in raw.set_members(&set).await? {
        batch.delete(member);
    }
    batch.delete(set);
    inner.store.write(batch).await
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

/// What a presented refresh token is, by its form and its tag.
enum Presented<'t> {
    /// `<family>.<secret>.<tag>` issued by this release to the presenting client.
    Ours { family: &'t str, tag: &'t str },
    /// That form tagged by the release before this one (without the client): its record is
    /// under the token's hash.
    Tagged { family: &'t str },
    /// That form with any other tag: made up, or another client's.
    Forged,
    /// The forms of the releases before the tag.
    Earlier,
}

fn presented<'t>(inner: &Inner, client: &Client, token: &'t str) -> Presented<'t> {
    let Some((body, tag)) = token.rsplit_once('.').filter(|(b, _)| b.contains('.')) else {
        return Presented::Earlier;
    };
    let family = body.split_once('.').map_or(body, |(f, _)| f);
    if constant_time_eq(&self::tag(inner, &client.config.id, body), tag) {
        Presented::Ours { family, tag }
    } else if inner.store.sealer().tagged(body, tag) {
        Presented::Tagged { family }
    } else {
        Presented::Forged
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

/// The record of a presented token that is its family's live one and `client`'s, without
/// taking it (introspection, revocation); `None` for any other token.
pub(crate) async fn live(
    inner: &Inner,
    client: &Client,
    token: &str,
) -> Result<Option<RefreshRecord>, StoreError> {
    let record = match presented(inner, client, token) {
        Presented::Forged => return Ok(None),
        Presented::Ours { family, tag } => inner
            .store
            .get::<RefreshRecord>(&keys::family_record(family))
            .await?
            .filter(|r| constant_time_eq(&r.live, tag)),
        Presented::Tagged { .. } | Presented::Earlier => {
            inner
                .store
                .get::<RefreshRecord>(&keys::refresh_token(token))
                .await?
        }
    };
    match record {
        Some(r) if r.client_id == client.config.id && !family_revoked(inner, &r.family).await? => {
            Ok(Some(r))
        }
        _ => Ok(None),
    }
}

/// Takes a presented refresh token for `client`: its family's record, or `invalid_grant` (with
/// the family revoked when the token had been used already). Whether the family was revoked is
/// not read here: the rotation reads the family's mark once its writes are done
/// ([`write_then_family_revoked`], the same round trip), which also catches a revocation that
/// comes after this take, and gives up what it wrote.
pub(crate) async fn take(
    inner: &Inner,
    client: &Client,
    token: &str,
) -> Result<RefreshRecord, OAuthError> {
    let refused = || OAuthError::invalid_grant("the refresh token is unknown, expired or revoked");
    let taken = match presented(inner, client, token) {
        Presented::Forged => return Err(refused()),
        // Of two presentations, however close, one takes the record; the other finds it gone,
        // or holding another token's tag, and, the token being ours, knows it for a reuse.
        Presented::Ours { family, tag } => {
            let taken = inner
                .store
                .take::<RefreshRecord>(&keys::family_record(family))
                .await
                .map_err(store_error)?;
            match taken {
                Some(r) if constant_time_eq(&r.live, tag) => r,
                other => {
                    revoke_reused(inner, client, family, other.as_ref()).await?;
                    return Err(refused());
                }
            }
        }
        Presented::Tagged { family } => {
            let taken = inner
                .store
                .take::<RefreshRecord>(&keys::refresh_token(token))
                .await
                .map_err(store_error)?;
            let Some(r) = taken else {
                revoke_reused(inner, client, family, None).await?;
                return Err(refused());
            };
            r
        }
        // Taken leaving the used-marker in one step, as the earlier release did: the marker
        // is how its reuse is known.
        Presented::Earlier => {
            let taken = inner
                .store
                .take_leaving::<RefreshRecord, _>(
                    &keys::refresh_token(token),
                    &keys::refresh_spent(token),
                    &RefreshSpent {},
                    lifetime(inner),
                )
                .await
                .map_err(store_error)?;
            let Some(r) = taken else {
                if inner
                    .store
                    .raw()
                    .get(&keys::refresh_spent(token))
                    .await
                    .map_err(store_error)?
                    .is_some()
                    && let Some(family) = earlier_family(inner, token).await.map_err(store_error)?
                {
                    revoke_reused(inner, client, &family, None).await?;
                }
                return Err(refused());
            };
            r
        }
    };
    if taken.client_id != client.config.id {
        // An earlier release's token, stolen and presented by another system: refused.
        return Err(refused());
    }
    Ok(taken)
}

async fn revoke_reused(
    inner: &Inner,
    client: &Client,
    family: &str,
    held: Option<&RefreshRecord>,
) -> Result<(), OAuthError> {
    revoke_family(inner, family, held)
        .await
        .map_err(store_error)?;
    tracing::warn!(client = %client.config.id, "refresh token reused: its whole family is revoked");
    Ok(())
}
