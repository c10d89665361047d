//! The Store: short-lived state that every broker node must see — pending logins, SSO sessions,
//! authorization codes, issued grants, consents.
//!
//! It is a key-value interface with TTLs and one atomic read-and-delete (`take`), because those
//! are exactly the operations that map one-to-one onto Redis (`SET PX`, `SET NX PX`, `GET`,
//! `GETDEL`, `DEL`). Values are opaque bytes; the typed helpers on `dyn Store` put JSON in them.
//! A broker node keeps nothing of its own, so any node can serve any step of any login.

mod memory;

use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

pub use memory::MemoryStore;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store backend unavailable: {0}")]
    Unavailable(String),
    #[error("stored value is corrupt: {0}")]
    Corrupt(String),
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
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn decode<T: DeserializeOwned>(bytes: Option<Vec<u8>>) -> Result<Option<T>, StoreError> {
    bytes
        .map(|b| serde_json::from_slice(&b).map_err(|e| StoreError::Corrupt(e.to_string())))
        .transpose()
}

/// Typed access: every record is JSON under a namespaced key.
impl dyn Store {
    pub async fn put_json<T: Serialize>(
        &self,
        key: &str,
        value: &T,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        self.put(key, encode(value)?, ttl).await
    }

    pub async fn put_new_json<T: Serialize>(
        &self,
        key: &str,
        value: &T,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        self.put_new(key, encode(value)?, ttl).await
    }

    pub async fn get_json<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, StoreError> {
        decode(self.get(key).await?)
    }

    pub async fn take_json<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, StoreError> {
        decode(self.take(key).await?)
    }
}
