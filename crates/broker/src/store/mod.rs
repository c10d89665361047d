//! The Store: short-lived state that every broker node must see — pending logins, SSO sessions
//! and their clients, authorization codes and their spent-markers, issued grants, counters.
//!
//! The contract is written for many nodes at once. Every operation a login relies on being
//! atomic is one operation here, mapping one-to-one onto Redis: `put` (`SET PX`), `put_new`
//! (`SET NX PX`), `get`, `take` (`GETDEL`), `delete`, `take_leaving` (a script: take a value and
//! leave a marker in its place, so a second redemption racing the first always sees the first;
//! `take_leaving_touching` also moves the expiry of the keys that must outlive it once taken),
//! `set_add` / `set_members` / `set_remove` (`SADD`/`SMEMBERS`/`SREM`: two logins at once to two
//! systems both land in the session's list of clients), `incr` (add to a counter that expires,
//! learning its total: the rate limits' shared counts, which [`crate::tally`] adds to), `touch`
//! (`PEXPIRE`: a sliding idle timeout without rewriting the value), and `write_all`: several
//! writes that belong to one step (a token response's grant and refresh token, a code and its
//! session's client list) in one round trip. Durable records (consents, signing keys) are not
//! here: they are in SQL.
//!
//! Backends: [`MemoryStore`] (one process: the demo and single-node use) and [`RedisStore`]
//! (Redis or Redis Cluster, shared by every node). Values are opaque bytes; [`Records`] puts
//! typed, versioned and sealed records in them. Key names come from [`keys`].

pub mod keys;
mod memory;
pub mod record;
mod redis;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

pub use memory::MemoryStore;
pub use record::{Record, Sealer};
pub use redis::RedisStore;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store backend unavailable: {0}")]
    Unavailable(String),
}

/// What [`Store::incr`] answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counted {
    pub total: u64,
    /// Until the counter expires.
    pub left: Duration,
}

/// One write of a [`Store::write_all`] batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Write {
    /// As [`Store::put`].
    Put {
        key: String,
        value: Vec<u8>,
        ttl: Duration,
    },
    /// As [`Store::set_add`].
    SetAdd {
        key: String,
        member: String,
        ttl: Duration,
    },
    /// As [`Store::delete`].
    Delete { key: String },
    /// As [`Store::touch`] (a missing key stays missing).
    Touch { key: String, ttl: Duration },
}

/// What [`Store::take_leaving`] puts in place of the value it takes: `value` at `key`, expiring
/// after `ttl`. Its key shares the taken key's hash tag ([`keys`]).
pub struct Marker<'a> {
    pub key: &'a str,
    pub value: Vec<u8>,
    pub ttl: Duration,
}

/// Shared short-lived state with per-key expiry.
#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    /// Sets `key` to `value`, replacing any old value, expiring after `ttl`.
    async fn put(&self, key: &str, value: Vec<u8>, ttl: Duration) -> Result<(), StoreError>;
    /// Sets `key` only if it is absent; returns whether it was set.
    async fn put_new(&self, key: &str, value: Vec<u8>, ttl: Duration) -> Result<bool, StoreError>;
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// Atomically reads and deletes `key`: of two concurrent callers at most one gets the value.
    async fn take(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError>;
    async fn delete(&self, key: &str) -> Result<(), StoreError>;
    /// Atomically takes `key` and, if it was there, leaves `marker` in its place: whoever comes
    /// second finds the marker, never a gap.
    async fn take_leaving(
        &self,
        key: &str,
        marker: Marker<'_>,
    ) -> Result<Option<Vec<u8>>, StoreError>;
    /// [`Store::take_leaving`], and, if it found the value, each of `touches` as
    /// [`Store::touch`] (a missing key stays missing) — in the same round trip where the
    /// backend can (a standalone Redis: one script). For a value whose companions were written
    /// to live no longer than it unless it is taken: an authorization code's tokens.
    async fn take_leaving_touching(
        &self,
        key: &str,
        marker: Marker<'_>,
        touches: &[(String, Duration)],
    ) -> Result<Option<Vec<u8>>, StoreError> {
        take_then_touch(self, key, marker, touches).await
    }
    /// Adds `member` to the set at `key` and sets the set's expiry to `ttl`: a batch of one.
    async fn set_add(&self, key: &str, member: &str, ttl: Duration) -> Result<(), StoreError> {
        self.write_all(vec![Write::SetAdd {
            key: key.to_owned(),
            member: member.to_owned(),
            ttl,
        }])
        .await
    }
    async fn set_members(&self, key: &str) -> Result<Vec<String>, StoreError>;
    async fn set_remove(&self, key: &str, member: &str) -> Result<(), StoreError>;
    /// Adds `by` to the counter at `key` (created with it, expiring `ttl` after its creation);
    /// returns the new count and the time the counter has left.
    async fn incr(&self, key: &str, by: u64, ttl: Duration) -> Result<Counted, StoreError>;
    /// Restarts `key`'s expiry at `ttl` without rewriting it; false if it does not exist.
    async fn touch(&self, key: &str, ttl: Duration) -> Result<bool, StoreError>;
    /// Applies every write of one step, in one round trip where the backend can (a standalone
    /// Redis: one MULTI/EXEC; a Cluster, whose keys lie in different slots: the commands at
    /// once). Once it returns `Ok` every write is done — a read that follows sees them all; after
    /// an error some may be done. Their order is not promised: writes to one key must not depend
    /// on it.
    async fn write_all(&self, writes: Vec<Write>) -> Result<(), StoreError>;
    /// [`Store::write_all`], then the value at `key` as it is once every write is done: in the
    /// same round trip where the backend can (a standalone Redis: the `GET` ends the MULTI). For
    /// a step that must learn whether something came between its take and its writes (a code
    /// or refresh token presented twice at once).
    async fn write_all_then_get(
        &self,
        writes: Vec<Write>,
        key: &str,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        self.write_all(writes).await?;
        self.get(key).await
    }
    /// Whether the backend answers (for `/readyz`).
    async fn ping(&self) -> Result<(), StoreError>;
}

/// [`Store::take_leaving_touching`] in two steps: the take, then the touches if it found the
/// value (the backends that cannot do both in one).
async fn take_then_touch<S: Store + ?Sized>(
    store: &S,
    key: &str,
    marker: Marker<'_>,
    touches: &[(String, Duration)],
) -> Result<Option<Vec<u8>>, StoreError> {
    let taken = store.take_leaving(key, marker).await?;
    if taken.is_some() {
        for (touched, ttl) in touches {
            store.touch(touched, *ttl).await?;
        }
    }
    Ok(taken)
}

/// The Store `[store] url` names: the memory Store, or Redis (connected on first use, so a node
/// starts while Redis is down).
pub fn open(config: &crate::config::StoreConfig) -> Result<Arc<dyn Store>, StoreError> {
    let urls = config.redis_urls();
    if urls.is_empty() {
        Ok(Arc::new(MemoryStore::new()))
    } else {
        Ok(Arc::new(RedisStore::new(&urls)?))
    }
}

/// Typed access to the Store: every record sealed, versioned and bound to its key.
#[derive(Clone)]
pub struct Records {
    store: Arc<dyn Store>,
    sealer: Arc<Sealer>,
    errors: Arc<AtomicU64>,
}

impl Records {
    pub fn new(store: Arc<dyn Store>, sealer: Sealer) -> Self {
        Self {
            store,
            sealer: Arc::new(sealer),
            errors: Arc::default(),
        }
    }

    /// Counts failed operations into `errors` (the broker's metrics).
    pub fn counting_errors(mut self, errors: Arc<AtomicU64>) -> Self {
        self.errors = errors;
        self
    }

    fn counted<T>(&self, result: Result<T, StoreError>) -> Result<T, StoreError> {
        if result.is_err() {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    /// Counts a failed operation made through [`Records::raw`] (shown in the metrics).
    pub fn count_error(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
    }

    /// The sealing key, for what is sealed to leave the process another way than the Store
    /// (the upstream ID token's cookie).
    pub fn sealer(&self) -> &Sealer {
        &self.sealer
    }

    /// The untyped operations (sets, counters, expiry).
    pub fn raw(&self) -> &dyn Store {
        &*self.store
    }

    pub async fn put<T: Record>(
        &self,
        key: &str,
        value: &T,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        self.counted(
            self.store
                .put(key, self.sealer.encode(key, value), ttl)
                .await,
        )
    }

    pub async fn put_new<T: Record>(
        &self,
        key: &str,
        value: &T,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        self.counted(
            self.store
                .put_new(key, self.sealer.encode(key, value), ttl)
                .await,
        )
    }

    /// A batch of writes for [`Records::write`]: typed records sealed as [`Records::put`] seals
    /// them.
    pub fn batch(&self) -> Batch<'_> {
        Batch {
            sealer: &self.sealer,
            writes: Vec::new(),
        }
    }

    /// Applies `batch` ([`Store::write_all`]).
    pub async fn write(&self, batch: Batch<'_>) -> Result<(), StoreError> {
        self.counted(self.store.write_all(batch.writes).await)
    }

    /// Applies `batch`, then reads `key` as it is once every write is done
    /// ([`Store::write_all_then_get`]).
    pub async fn write_then_get<T: Record>(
        &self,
        batch: Batch<'_>,
        key: &str,
    ) -> Result<Option<T>, StoreError> {
        let value = self.write_then_get_raw(batch, key).await?;
        Ok(self.sealer.decode(key, value))
    }

    /// [`Records::write_then_get`] of a value stored as it is.
    pub async fn write_then_get_raw(
        &self,
        batch: Batch<'_>,
        key: &str,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        self.counted(self.store.write_all_then_get(batch.writes, key).await)
    }

    pub async fn get<T: Record>(&self, key: &str) -> Result<Option<T>, StoreError> {
        Ok(self
            .sealer
            .decode(key, self.counted(self.store.get(key).await)?))
    }

    pub async fn take<T: Record>(&self, key: &str) -> Result<Option<T>, StoreError> {
        Ok(self
            .sealer
            .decode(key, self.counted(self.store.take(key).await)?))
    }

    pub async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.counted(self.store.delete(key).await)
    }

    /// [`Store::take_leaving`] with typed value and marker.
    pub async fn take_leaving<T: Record, M: Record>(
        &self,
        key: &str,
        marker_key: &str,
        marker: &M,
        marker_ttl: Duration,
    ) -> Result<Option<T>, StoreError> {
        let taken = self
            .take_leaving_touching_raw(key, marker_key, marker, marker_ttl, &[])
            .await?;
        Ok(self.sealer.decode(key, taken))
    }

    /// [`Store::take_leaving_touching`] with a typed marker, the value left sealed: for a key
    /// that may hold one of several record types, told apart by [`Sealer::decode`]'s caller.
    pub async fn take_leaving_touching_raw<M: Record>(
        &self,
        key: &str,
        marker_key: &str,
        marker: &M,
        marker_ttl: Duration,
        touches: &[(String, Duration)],
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let marker = Marker {
            key: marker_key,
            value: self.sealer.encode(marker_key, marker),
            ttl: marker_ttl,
        };
        self.counted(self.store.take_leaving_touching(key, marker, touches).await)
    }
}

/// Writes gathered for one [`Records::write`].
pub struct Batch<'a> {
    sealer: &'a Sealer,
    writes: Vec<Write>,
}

impl Batch<'_> {
    pub fn put<T: Record>(&mut self, key: String, value: &T, ttl: Duration) -> &mut Self {
        let value = self.sealer.encode(&key, value);
        self.put_raw(key, value, ttl)
    }

    /// A value stored as it is (an index holding a key, say: nothing personal).
    pub fn put_raw(&mut self, key: String, value: Vec<u8>, ttl: Duration) -> &mut Self {
        self.writes.push(Write::Put { key, value, ttl });
        self
    }

    pub fn set_add(&mut self, key: String, member: String, ttl: Duration) -> &mut Self {
        self.writes.push(Write::SetAdd { key, member, ttl });
        self
    }

    pub fn delete(&mut self, key: String) -> &mut Self {
        self.writes.push(Write::Delete { key });
        self
    }

    pub fn touch(&mut self, key: String, ttl: Duration) -> &mut Self {
        self.writes.push(Write::Touch { key, ttl });
        self
    }
}
