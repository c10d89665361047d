//! The embedded default Store: a map in this process's memory.
//!
//! Like mini-redis's `Db`, the state sits behind one `std::sync::Mutex` (every critical section
//! is a map operation with no `.await`, so a blocking mutex is correct and cheap) next to a
//! `BTreeSet` ordered by expiry. One background task sleeps until the next expiry, drops what has
//! expired, and stops when the last handle to the store is dropped. Reads also check expiry, so
//! an entry is never seen after its deadline even if the sweeper is late.
//!
//! Deadlines are read from the broker's [`Clock`], like every other expiry, so a test that moves
//! a `MockClock` past a code's lifetime sees the code gone.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use lienthong_protocol::{SharedClock, SystemClock};
use tokio::sync::Notify;

use super::{Store, StoreError};

/// A deadline: milliseconds since the Unix epoch, by the store's clock.
type Deadline = u64;

/// A handle to the memory store; clones share one map. Only one node can use it: run Redis when
/// the broker has several nodes.
#[derive(Clone)]
pub struct MemoryStore {
    shared: Arc<Shared>,
    /// Stops the sweeper when the last handle goes.
    _guard: Arc<SweeperGuard>,
}

struct Shared {
    state: Mutex<State>,
    sweeper: Notify,
    clock: SharedClock,
}

#[derive(Default)]
struct State {
    entries: HashMap<String, Entry>,
    expirations: BTreeSet<(Deadline, String)>,
    shutdown: bool,
}

struct Entry {
    value: Vec<u8>,
    expires_at: Deadline,
}

struct SweeperGuard(Arc<Shared>);

impl Drop for SweeperGuard {
    fn drop(&mut self) {
        self.0.lock().shutdown = true;
        self.0.sweeper.notify_one();
    }
}

impl MemoryStore {
    /// Creates the store and spawns its sweeper; must be called inside a Tokio runtime.
    pub fn new() -> Self {
        Self::with_clock(SystemClock::shared())
    }

    /// A store whose deadlines follow `clock`.
    pub fn with_clock(clock: SharedClock) -> Self {
        let shared = Arc::new(Shared {
            state: Mutex::default(),
            sweeper: Notify::new(),
            clock,
        });
        tokio::spawn(sweep(shared.clone()));
        Self {
            _guard: Arc::new(SweeperGuard(shared.clone())),
            shared,
        }
    }

    /// How many live entries the store holds (for tests and metrics).
    pub fn len(&self) -> usize {
        let now = self.shared.now();
        self.shared
            .lock()
            .entries
            .values()
            .filter(|e| e.expires_at > now)
            .count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl Shared {
    fn now(&self) -> Deadline {
        self.clock.now_millis()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Each critical section leaves the maps consistent, so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Drops expired entries; returns when the next one expires.
    fn purge(&self) -> Option<Deadline> {
        let now = self.now();
        let mut state = self.lock();
        if state.shutdown {
            return None;
        }
        let state = &mut *state;
        while let Some((when, key)) = state.expirations.first().cloned() {
            if when > now {
                return Some(when);
            }
            state.entries.remove(&key);
            state.expirations.pop_first();
        }
        None
    }

    fn is_shutdown(&self) -> bool {
        self.lock().shutdown
    }
}

async fn sweep(shared: Arc<Shared>) {
    while !shared.is_shutdown() {
        match shared.purge() {
            Some(when) => tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(when.saturating_sub(shared.now()))) => {}
                _ = shared.sweeper.notified() => {}
            },
            None => shared.sweeper.notified().await,
        }
    }
}

impl State {
    fn live(&self, key: &str, now: Deadline) -> Option<&Entry> {
        self.entries.get(key).filter(|e| e.expires_at > now)
    }

    /// Inserts; returns true when the new entry expires before everything else, so the sweeper
    /// must wake up earlier than planned.
    fn insert(&mut self, key: &str, value: Vec<u8>, ttl: Duration, now: Deadline) -> bool {
        let expires_at = now + ttl.as_millis() as u64;
        let earliest = self
            .expirations
            .first()
            .is_none_or(|(when, _)| expires_at < *when);
        if let Some(old) = self
            .entries
            .insert(key.to_owned(), Entry { value, expires_at })
        {
            self.expirations.remove(&(old.expires_at, key.to_owned()));
        }
        self.expirations.insert((expires_at, key.to_owned()));
        earliest
    }

    fn remove(&mut self, key: &str, now: Deadline) -> Option<Entry> {
        let entry = self.entries.remove(key)?;
        self.expirations.remove(&(entry.expires_at, key.to_owned()));
        (entry.expires_at > now).then_some(entry)
    }
}

#[async_trait::async_trait]
impl Store for MemoryStore {
    async fn put(&self, key: &str, value: Vec<u8>, ttl: Duration) -> Result<(), StoreError> {
        let now = self.shared.now();
        if self.shared.lock().insert(key, value, ttl, now) {
            self.shared.sweeper.notify_one();
        }
        Ok(())
    }

    async fn put_new(&self, key: &str, value: Vec<u8>, ttl: Duration) -> Result<bool, StoreError> {
        let now = self.shared.now();
        let mut state = self.shared.lock();
        if state.live(key, now).is_some() {
            return Ok(false);
        }
        if state.insert(key, value, ttl, now) {
            self.shared.sweeper.notify_one();
        }
        Ok(true)
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let now = self.shared.now();
        Ok(self.shared.lock().live(key, now).map(|e| e.value.clone()))
    }

    async fn take(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let now = self.shared.now();
        Ok(self.shared.lock().remove(key, now).map(|e| e.value))
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let now = self.shared.now();
        self.shared.lock().remove(key, now);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn entries_expire_and_are_swept() {
        let clock = lienthong_protocol::MockClock::starting_now();
        let store = MemoryStore::with_clock(clock.clone());
        store
            .put("a", b"1".to_vec(), Duration::from_secs(5))
            .await
            .unwrap();
        store
            .put("b", b"2".to_vec(), Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!(store.get("a").await.unwrap(), Some(b"1".to_vec()));
        clock.advance(Duration::from_secs(6));
        assert_eq!(store.get("a").await.unwrap(), None, "expired by the clock");
        // The sweeper planned to wake after 5 s; let it run.
        tokio::time::sleep(Duration::from_secs(6)).await;
        assert_eq!(
            store.shared.lock().entries.len(),
            1,
            "the sweeper removed the expired entry"
        );
        assert_eq!(store.len(), 1);
    }

    #[tokio::test]
    async fn take_is_single_use_and_put_new_does_not_overwrite() {
        let store = MemoryStore::new();
        assert!(
            store
                .put_new("k", b"x".to_vec(), Duration::from_secs(5))
                .await
                .unwrap()
        );
        assert!(
            !store
                .put_new("k", b"y".to_vec(), Duration::from_secs(5))
                .await
                .unwrap()
        );
        assert_eq!(store.take("k").await.unwrap(), Some(b"x".to_vec()));
        assert_eq!(store.take("k").await.unwrap(), None);
    }

    #[tokio::test]
    async fn concurrent_takes_yield_one_winner() {
        let store = MemoryStore::new();
        store
            .put("code", b"c".to_vec(), Duration::from_secs(5))
            .await
            .unwrap();
        let tasks: Vec<_> = (0..16)
            .map(|_| {
                let s = store.clone();
                tokio::spawn(async move { s.take("code").await.unwrap().is_some() })
            })
            .collect();
        let mut winners = 0;
        for t in tasks {
            winners += usize::from(t.await.unwrap());
        }
        assert_eq!(winners, 1);
    }

    #[tokio::test]
    async fn the_sweeper_stops_with_the_last_handle() {
        let store = MemoryStore::new();
        let shared = store.shared.clone();
        drop(store.clone());
        assert!(!shared.is_shutdown());
        drop(store);
        assert!(shared.is_shutdown());
    }
}
