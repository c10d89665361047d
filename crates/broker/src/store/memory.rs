//! The embedded default Store: a map in this process's memory.
//!
//! Like mini-redis's `Db`, the state sits behind one `std::sync::Mutex` (every critical section
//! is a map operation with no `.await`, so a blocking mutex is correct and cheap) next to a
//! min-heap of deadlines. One background task sleeps until the next expiry, drops what has
//! expired, and stops when the last handle to the store is dropped. Reads also check expiry, so
//! an entry is never seen after its deadline even if the sweeper is late.
//!
//! Memory per entry is what bounds the sessions one node holds, so the map and the heap share
//! one allocation of each key (`Arc<str>`), and a heap slot is 24 bytes. A live entry has one
//! slot, at `Entry::scheduled`: a later deadline (a session touched on every sign-in) adds no
//! slot — when the slot comes up, it is pushed again at the entry's deadline — and only an
//! earlier one does. A deleted entry's slot is dropped when it comes up, or sooner: once such
//! stale slots outnumber the entries, the sweeper rebuilds the heap from the entries (one slot
//! each, in linear time), so that the codes, pending logins and used refresh tokens taken in a
//! burst do not hold their keys' allocations for their whole lifetimes.
//!
//! Deadlines are read from the broker's [`Clock`], like every other expiry, so a test that moves
//! a `MockClock` past a code's lifetime sees the code gone.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use lienthong_protocol::{SharedClock, SystemClock};
use tokio::sync::Notify;

use super::{Counted, Marker, Store, StoreError, Write};

/// A deadline: milliseconds since the Unix epoch, by the store's clock.
type Deadline = u64;

/// Stale slots the heap may hold beyond one per entry before it is rebuilt: a rebuild walks
/// every entry, so a small store is never rebuilt for a handful.
const STALE_SLOTS_FLOOR: usize = 4096;

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
    entries: HashMap<Arc<str>, Entry>,
    /// Every deadline set, earliest on top; see the module's note on stale slots.
    expirations: BinaryHeap<Reverse<(Deadline, Arc<str>)>>,
    shutdown: bool,
}

struct Entry {
    value: Data,
    expires_at: Deadline,
    /// The deadline of this entry's slot in the heap: never after `expires_at`.
    scheduled: Deadline,
}

/// What a key holds: like Redis, a value, a set or a counter. Boxed slices rather than vectors
/// (no capacity beside the length): every entry's slot in the map is 8 bytes smaller.
enum Data {
    Bytes(Box<[u8]>),
    /// Sorted, without duplicates. Sets here are small (a session's clients), where a slice
    /// rebuilt at each addition costs a fraction of a tree's nodes.
    Set(Box<[Box<str>]>),
    Counter(u64),
}

impl Data {
    fn bytes(&self) -> Option<&[u8]> {
        match self {
            Data::Bytes(b) => Some(b),
            _ => None,
        }
    }

    fn into_bytes(self) -> Option<Vec<u8>> {
        match self {
            Data::Bytes(b) => Some(b.into_vec()),
            _ => None,
        }
    }
}

impl From<Vec<u8>> for Data {
    fn from(value: Vec<u8>) -> Self {
        Data::Bytes(value.into_boxed_slice())
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
        if state.crowded() {
            state.compact();
        }
        while let Some(Reverse((when, _))) = state.expirations.peek() {
            if *when > now {
                return Some(*when);
            }
            let Some(Reverse((when, key))) = state.expirations.pop() else {
                break;
            };
            // A slot that is not its entry's (the entry was deleted, or planned earlier) does
            // nothing; an entry whose deadline moved later is planned again, under the same key.
            match state.entries.get_mut(&key) {
                Some(entry) if entry.scheduled == when && entry.expires_at <= now => {
                    state.entries.remove(&key);
                }
                Some(entry) if entry.scheduled == when => {
                    entry.scheduled = entry.expires_at;
                    state.expirations.push(Reverse((entry.expires_at, key)));
                }
                _ => {}
            }
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
    /// Whether the heap holds more stale slots (of entries deleted, or planned again later)
    /// than entries, past the floor.
    fn crowded(&self) -> bool {
        self.expirations.len() > 2 * self.entries.len() + STALE_SLOTS_FLOOR
    }

    /// The heap rebuilt with each entry's own slot and nothing else.
    fn compact(&mut self) {
        self.expirations = self
            .entries
            .iter()
            .map(|(key, entry)| Reverse((entry.scheduled, key.clone())))
            .collect();
    }

    fn live(&self, key: &str, now: Deadline) -> Option<&Entry> {
        self.entries.get(key).filter(|e| e.expires_at > now)
    }

    /// Plans `key`'s expiry at `when`; returns true when that is before everything else, so the
    /// sweeper must wake up earlier than planned.
    fn schedule(&mut self, when: Deadline, key: Arc<str>) -> bool {
        let earliest = self
            .expirations
            .peek()
            .is_none_or(|Reverse((next, _))| when < *next);
        self.expirations.push(Reverse((when, key)));
        earliest
    }

    /// Gives a present entry a new deadline; returns whether the sweeper must wake earlier.
    /// Only a deadline before the entry's slot needs a new slot.
    fn move_deadline(&mut self, key: &str, expires_at: Deadline) -> Option<bool> {
        let (shared, entry) = self.entries.get_key_value(key)?;
        if entry.scheduled <= expires_at {
            self.entries.get_mut(key)?.expires_at = expires_at;
            return Some(false);
        }
        let shared = shared.clone();
        let entry = self.entries.get_mut(key)?;
        entry.expires_at = expires_at;
        entry.scheduled = expires_at;
        Some(self.schedule(expires_at, shared))
    }

    /// Inserts; returns whether the sweeper must wake earlier.
    fn insert(&mut self, key: &str, value: Data, ttl: Duration, now: Deadline) -> bool {
        let expires_at = now + ttl.as_millis() as u64;
        if let Some(entry) = self.entries.get_mut(key) {
            // A key already present keeps its allocation and, if it can, its slot.
            entry.value = value;
            return self.move_deadline(key, expires_at).unwrap_or(false);
        }
        let key: Arc<str> = Arc::from(key);
        let entry = Entry {
            value,
            expires_at,
            scheduled: expires_at,
        };
        self.entries.insert(key.clone(), entry);
        self.schedule(expires_at, key)
    }

    fn remove(&mut self, key: &str, now: Deadline) -> Option<Entry> {
        let entry = self.entries.remove(key)?;
        (entry.expires_at > now).then_some(entry)
    }

    /// Moves a live key's deadline; returns whether the sweeper must wake earlier.
    fn expire(&mut self, key: &str, ttl: Duration, now: Deadline) -> Option<bool> {
        self.live(key, now)?;
        self.move_deadline(key, now + ttl.as_millis() as u64)
    }

    /// Adds `member` to the set at `key` with expiry `ttl`; returns whether the sweeper must
    /// wake earlier.
    fn add_member(&mut self, key: &str, member: &str, ttl: Duration, now: Deadline) -> bool {
        // Added in place to a live set (no new key, no new slot unless the deadline moves
        // earlier); anything else under the key is replaced by a new set.
        if let Some(Entry {
            value: Data::Set(members),
            ..
        }) = self.entries.get_mut(key).filter(|e| e.expires_at > now)
        {
            if let Err(at) = members.binary_search_by(|m| (**m).cmp(member)) {
                let mut grown = std::mem::take(members).into_vec();
                grown.insert(at, member.into());
                *members = grown.into_boxed_slice();
            }
            return self.expire(key, ttl, now).unwrap_or(false);
        }
        self.insert(key, Data::Set(Box::new([member.into()])), ttl, now)
    }

    /// Removes `member` from the live set at `key`, if it is there.
    fn remove_member(&mut self, key: &str, member: &str, now: Deadline) {
        if let Some(Data::Set(members)) = self
            .entries
            .get_mut(key)
            .filter(|e| e.expires_at > now)
            .map(|e| &mut e.value)
            && let Ok(at) = members.binary_search_by(|m| (**m).cmp(member))
        {
            let mut shrunk = std::mem::take(members).into_vec();
            shrunk.remove(at);
            *members = shrunk.into_boxed_slice();
        }
    }
}

impl MemoryStore {
    /// Runs `f` on the state at the store's present; wakes the sweeper if `f` says so, or if
    /// the heap is due to be rebuilt.
    fn with_state<R>(&self, f: impl FnOnce(&mut State, Deadline) -> (R, bool)) -> R {
        let now = self.shared.now();
        let (result, wake) = {
            let mut state = self.shared.lock();
            let (result, wake) = f(&mut state, now);
            (result, wake || state.crowded())
        };
        if wake {
            self.shared.sweeper.notify_one();
        }
        result
    }
}

#[async_trait::async_trait]
impl Store for MemoryStore {
    async fn put(&self, key: &str, value: Vec<u8>, ttl: Duration) -> Result<(), StoreError> {
        self.with_state(|s, now| ((), s.insert(key, value.into(), ttl, now)));
        Ok(())
    }

    async fn put_new(&self, key: &str, value: Vec<u8>, ttl: Duration) -> Result<bool, StoreError> {
        Ok(self.with_state(|s, now| {
            if s.live(key, now).is_some() {
                return (false, false);
            }
            (true, s.insert(key, value.into(), ttl, now))
        }))
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.with_state(|s, now| {
            (
                s.live(key, now)
                    .and_then(|e| e.value.bytes().map(<[u8]>::to_vec)),
                false,
            )
        }))
    }

    async fn take(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.with_state(|s, now| {
            let taken = s.remove(key, now).and_then(|e| e.value.into_bytes());
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
        marker: Marker<'_>,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        // One critical section: nobody can see the key gone and the marker not yet there.
        Ok(self.with_state(
            |s, now| match s.remove(key, now).and_then(|e| e.value.into_bytes()) {
                Some(value) => {
                    let wake = s.insert(marker.key, marker.value.into(), marker.ttl, now);
                    (Some(value), wake)
                }
                None => (None, false),
            },
        ))
    }

    async fn set_members(&self, key: &str) -> Result<Vec<String>, StoreError> {
        Ok(self.with_state(|s, now| {
            let members = match s.live(key, now).map(|e| &e.value) {
                Some(Data::Set(m)) => m.iter().map(|m| m.to_string()).collect(),
                _ => Vec::new(),
            };
            (members, false)
        }))
    }

    async fn set_remove(&self, key: &str, member: &str) -> Result<(), StoreError> {
        self.with_state(|s, now| (s.remove_member(key, member, now), false));
        Ok(())
    }

    async fn incr(&self, key: &str, by: u64, ttl: Duration) -> Result<Counted, StoreError> {
        Ok(self.with_state(|s, now| {
            if let Some(Entry {
                value: Data::Counter(n),
                expires_at,
                ..
            }) = s.entries.get_mut(key)
                && *expires_at > now
            {
                *n += by;
                let left = Duration::from_millis(*expires_at - now);
                return (Counted { total: *n, left }, false);
            }
            let wake = s.insert(key, Data::Counter(by), ttl, now);
            (
                Counted {
                    total: by,
                    left: ttl,
                },
                wake,
            )
        }))
    }

    async fn touch(&self, key: &str, ttl: Duration) -> Result<bool, StoreError> {
        Ok(self.with_state(|s, now| match s.expire(key, ttl, now) {
            Some(wake) => (true, wake),
            None => (false, false),
        }))
    }

    async fn write_all(&self, writes: Vec<Write>) -> Result<(), StoreError> {
        self.with_state(|s, now| {
            let mut wake = false;
            for write in writes {
                wake |= match write {
                    Write::Put { key, value, ttl } => s.insert(&key, value.into(), ttl, now),
                    Write::SetAdd { key, member, ttl } => s.add_member(&key, &member, ttl, now),
                    Write::Delete { key } => {
                        s.remove(&key, now);
                        false
                    }
                    Write::Touch { key, ttl } => s.expire(&key, ttl, now).unwrap_or(false),
                };
            }
            ((), wake)
        });
        Ok(())
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

    #[tokio::test(start_paused = true)]
    async fn a_stale_deadline_removes_nothing() {
        let clock = lienthong_protocol::MockClock::starting_now();
        let store = MemoryStore::with_clock(clock.clone());
        let ttl = |secs| Duration::from_secs(secs);
        // Put again with a longer life, deleted and put back, and kept alive by touch: each
        // leaves a slot for its first deadline in the heap.
        store.put("again", b"1".to_vec(), ttl(5)).await.unwrap();
        store.put("again", b"2".to_vec(), ttl(60)).await.unwrap();
        store.put("back", b"1".to_vec(), ttl(5)).await.unwrap();
        store.delete("back").await.unwrap();
        store.put("back", b"2".to_vec(), ttl(60)).await.unwrap();
        store.put("touched", b"1".to_vec(), ttl(5)).await.unwrap();
        assert!(store.touch("touched", ttl(60)).await.unwrap());
        clock.advance(ttl(6));
        tokio::time::sleep(ttl(6)).await;
        assert_eq!(store.shared.lock().entries.len(), 3, "nothing swept early");
        for key in ["again", "back", "touched"] {
            assert!(store.get(key).await.unwrap().is_some(), "{key} still there");
        }
        clock.advance(ttl(60));
        tokio::time::sleep(ttl(60)).await;
        let state = store.shared.lock();
        assert!(state.entries.is_empty(), "all swept at their own deadlines");
        assert!(
            state.expirations.is_empty(),
            "and every stale slot with them"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_deadline_moved_later_adds_no_slot() {
        let clock = lienthong_protocol::MockClock::starting_now();
        let store = MemoryStore::with_clock(clock.clone());
        store
            .put("session", b"1".to_vec(), Duration::from_secs(60))
            .await
            .unwrap();
        for _ in 0..1000 {
            clock.advance(Duration::from_millis(10));
            assert!(
                store
                    .touch("session", Duration::from_secs(60))
                    .await
                    .unwrap()
            );
            store
                .set_add("clients", "portal", Duration::from_secs(60))
                .await
                .unwrap();
        }
        assert_eq!(
            store.shared.lock().expirations.len(),
            2,
            "one slot per entry however often it is touched"
        );
        // Past the first deadline the slot is planned again, not lost.
        clock.advance(Duration::from_secs(55));
        tokio::time::sleep(Duration::from_secs(61)).await;
        assert!(store.get("session").await.unwrap().is_some());
        clock.advance(Duration::from_secs(10));
        tokio::time::sleep(Duration::from_secs(11)).await;
        assert!(store.shared.lock().entries.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn slots_of_taken_entries_are_let_go_long_before_their_deadlines() {
        let clock = lienthong_protocol::MockClock::starting_now();
        let store = MemoryStore::with_clock(clock.clone());
        let ttl = Duration::from_secs(600);
        store.put("kept", b"1".to_vec(), ttl).await.unwrap();
        // The sweeper runs, then sleeps until the first deadline, 10 minutes away.
        tokio::time::sleep(Duration::from_millis(1)).await;
        // A burst of pending logins, each taken at once: 10 minutes of slots, with no entry.
        let burst = 3 * STALE_SLOTS_FLOOR;
        for i in 0..burst {
            let key = format!("pending-{i}");
            store.put(&key, b"p".to_vec(), ttl).await.unwrap();
            assert!(store.take(&key).await.unwrap().is_some());
        }
        // The sweeper, woken by the store once the stale slots pass the floor, rebuilds the heap.
        tokio::time::sleep(Duration::from_millis(10)).await;
        let slots = store.shared.lock().expirations.len();
        assert!(
            slots <= STALE_SLOTS_FLOOR + 2,
            "{slots} slots left of {burst} taken entries"
        );
        // What lives keeps its deadline.
        clock.advance(Duration::from_secs(599));
        tokio::time::sleep(Duration::from_secs(599)).await;
        assert!(store.get("kept").await.unwrap().is_some());
        clock.advance(Duration::from_secs(2));
        tokio::time::sleep(Duration::from_secs(2)).await;
        let state = store.shared.lock();
        assert!(state.entries.is_empty() && state.expirations.is_empty());
    }

    #[tokio::test]
    async fn sets_hold_each_member_once() {
        let store = MemoryStore::new();
        let ttl = Duration::from_secs(60);
        for member in ["portal", "health", "portal", "one-stop"] {
            store.set_add("s", member, ttl).await.unwrap();
        }
        let mut members = store.set_members("s").await.unwrap();
        members.sort();
        assert_eq!(members, ["health", "one-stop", "portal"]);
        store.set_remove("s", "portal").await.unwrap();
        store.set_remove("s", "absent").await.unwrap();
        let mut members = store.set_members("s").await.unwrap();
        members.sort();
        assert_eq!(members, ["health", "one-stop"]);
        assert!(store.set_members("no-such-set").await.unwrap().is_empty());
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
