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
    value: Data,
    expires_at: Deadline,
}

/// What a key holds: like Redis, a value, a set or a counter.
enum Data {
    Bytes(Vec<u8>),
    Set(BTreeSet<String>),
    Counter(u64),
}

impl Data {
    fn bytes(&self) -> Option<&Vec<u8>> {
        match self {
            Data::Bytes(b) => Some(b),
            _ => None,
        }
    }
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
    fn insert(&mut self, key: &str, value: Data, ttl: Duration, now: Deadline) -> bool {
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

    /// Moves a live key's deadline; returns whether the sweeper must wake earlier.
    fn expire(&mut self, key: &str, ttl: Duration, now: Deadline) -> Option<bool> {
        let entry = self.entries.get_mut(key).filter(|e| e.expires_at > now)?;
        let old = entry.expires_at;
        entry.expires_at = now + ttl.as_millis() as u64;
        let new = entry.expires_at;
        self.expirations.remove(&(old, key.to_owned()));
        let earliest = self.expirations.first().is_none_or(|(when, _)| new < *when);
        self.expirations.insert((new, key.to_owned()));
        Some(earliest)
    }
}

impl MemoryStore {
    /// Runs `f` on the state at the store's present; wakes the sweeper if `f` says so.
    fn with_state<R>(&self, f: impl FnOnce(&mut State, Deadline) -> (R, bool)) -> R {
        let now = self.shared.now();
        let (result, wake) = f(&mut self.shared.lock(), now);
        if wake {
            self.shared.sweeper.notify_one();
        }
        result
    }
}

#[async_trait::async_trait]
impl Store for MemoryStore {
    async fn put(&self, key: &str, value: Vec<u8>, ttl: Duration) -> Result<(), StoreError> {
        self.with_state(|s, now| ((), s.insert(key, Data::Bytes(value), ttl, now)));
        Ok(())
    }

    async fn put_new(&self, key: &str, value: Vec<u8>, ttl: Duration) -> Result<bool, StoreError> {
        Ok(self.with_state(|s, now| {
            if s.live(key, now).is_some() {
                return (false, false);
            }
            (true, s.insert(key, Data::Bytes(value), ttl, now))
        }))
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.with_state(|s, now| {
            (
                s.live(key, now).and_then(|e| e.value.bytes().cloned()),
                false,
            )
        }))
    }

    async fn take(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.with_state(|s, now| {
            let taken = s.remove(key, now).and_then(|e| match e.value {
                Data::Bytes(b) => Some(b),
                _ => None,
            });
            (taken, false)
        }))
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.with_state(|s, now| (s.remove(key, now).map(|_| ()).unwrap_or(()), false));
        Ok(())
    }

    async fn take_leaving(
        &self,
        key: &str,
        marker_key: &str,
        marker: Vec<u8>,
        marker_ttl: Duration,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        // One critical section: nobody can see the key gone and the marker not yet there.
        Ok(self.with_state(|s, now| {
            match s.remove(key, now).and_then(|e| match e.value {
                Data::Bytes(b) => Some(b),
                _ => None,
            }) {
                Some(value) => {
                    let wake = s.insert(marker_key, Data::Bytes(marker), marker_ttl, now);
                    (Some(value), wake)
                }
                None => (None, false),
            }
        }))
    }

    async fn set_add(&self, key: &str, member: &str, ttl: Duration) -> Result<(), StoreError> {
        self.with_state(|s, now| {
            let mut members = match s.remove(key, now).map(|e| e.value) {
                Some(Data::Set(m)) => m,
                _ => BTreeSet::new(),
            };
            members.insert(member.to_owned());
            ((), s.insert(key, Data::Set(members), ttl, now))
        });
        Ok(())
    }

    async fn set_members(&self, key: &str) -> Result<Vec<String>, StoreError> {
        Ok(self.with_state(|s, now| {
            let members = match s.live(key, now).map(|e| &e.value) {
                Some(Data::Set(m)) => m.iter().cloned().collect(),
                _ => Vec::new(),
            };
            (members, false)
        }))
    }

    async fn set_remove(&self, key: &str, member: &str) -> Result<(), StoreError> {
        self.with_state(|s, now| {
            if let Some(Data::Set(m)) = s
                .entries
                .get_mut(key)
                .filter(|e| e.expires_at > now)
                .map(|e| &mut e.value)
            {
                m.remove(member);
            }
            ((), false)
        });
        Ok(())
    }

    async fn incr(&self, key: &str, ttl: Duration) -> Result<u64, StoreError> {
        Ok(self.with_state(|s, now| {
            if let Some(Entry {
                value: Data::Counter(n),
                expires_at,
            }) = s.entries.get_mut(key)
                && *expires_at > now
            {
                *n += 1;
                return (*n, false);
            }
            (1, s.insert(key, Data::Counter(1), ttl, now))
        }))
    }

    async fn touch(&self, key: &str, ttl: Duration) -> Result<bool, StoreError> {
        Ok(self.with_state(|s, now| match s.expire(key, ttl, now) {
            Some(wake) => (true, wake),
            None => (false, false),
        }))
    }

    async fn ping(&self) -> Result<(), StoreError> {
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
