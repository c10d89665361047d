//! Rate counts kept by each node and added to the Store's shared counters in the background.
//!
//! A limit counts the requests of every node together, so its counters live in the Store. A
//! round trip to the Store on every counted request, though, was the largest group of round
//! trips left on a login (five of fifteen on Redis). Each node therefore counts in its own
//! memory and, every [`FLUSH`], adds what it has counted to the Store's counters — all of them at
//! once — learning from each the total that every node has counted in its window. A request is
//! judged against that total plus what this node has counted since, without waiting for the
//! Store:
//!
//! - on one node the count is exact;
//! - across nodes, another node's requests are seen within one flush: a flood spread over `n`
//!   nodes can pass a limit by at most what the other `n - 1` nodes let through in one flush
//!   (their own counts stop each of them at the limit);
//! - when the Store cannot count, each node goes on limiting by its own count and adds it to the
//!   Store once the Store is back.
//!
//! A window starts with its first count anywhere (the Store's counter expires `window` after its
//! creation); a node learns when the shared window ends from the Store at each flush.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use lienthong_protocol::SharedClock;

use crate::store::Records;

/// How often each node adds its counts to the Store's.
pub const FLUSH: Duration = Duration::from_millis(100);

/// Counts of windows that have ended are dropped this often (not at every flush: the map holds
/// one entry per source address and endpoint in a window).
const SWEEP_EVERY: u32 = 50;

#[derive(Clone)]
pub struct Tally {
    shared: Arc<Shared>,
}

struct Shared {
    counts: Mutex<Counts>,
    store: Records,
    clock: SharedClock,
    /// Whether the last flush failed (logged when that changes, not at every flush).
    failing: AtomicBool,
}

#[derive(Default)]
struct Counts {
    by_key: HashMap<String, Count>,
    /// The keys with counts not yet sent, each once.
    unsent: Vec<String>,
}

struct Count {
    /// The total every node had counted in this window, as the Store last answered.
    shared: u64,
    /// Counted here and on its way to the Store.
    sending: u64,
    /// Counted here since.
    unsent: u64,
    window: Duration,
    /// When the window ends (milliseconds on the broker's clock).
    ends_ms: u64,
    /// Which window of this key this is: an answer for an earlier one is not applied.
    generation: u64,
}

impl Count {
    /// A window that starts `now` with nothing counted yet.
    fn starting(now: u64, window: Duration, generation: u64) -> Self {
        Self {
            shared: 0,
            sending: 0,
            unsent: 0,
            window,
            ends_ms: now + window.as_millis() as u64,
            generation,
        }
    }

    fn total(&self) -> u64 {
        self.shared + self.sending + self.unsent
    }
}

impl Tally {
    /// A tally over `store`, flushed every [`FLUSH`] by a task that ends when the tally is
    /// dropped. Must be called inside a Tokio runtime.
    pub fn new(store: Records, clock: SharedClock) -> Self {
        let tally = Self::unflushed(store, clock);
        tokio::spawn(flushing(Arc::downgrade(&tally.shared)));
        tally
    }

    /// A tally that reaches the Store only when [`Tally::flush`] is called.
    fn unflushed(store: Records, clock: SharedClock) -> Self {
        Self {
            shared: Arc::new(Shared {
                counts: Mutex::default(),
                store,
                clock,
                failing: AtomicBool::new(false),
            }),
        }
    }

    /// Counts one request at `key`, whose window is `window` long; returns how many requests
    /// every node has counted at `key` in the window, this one included, as far as this node
    /// knows.
    pub fn count(&self, key: String, window: Duration) -> u64 {
        let now = self.shared.clock.now_millis();
        let mut counts = self.shared.lock();
        let Counts { by_key, unsent } = &mut *counts;
        let count = match by_key.get_mut(&key) {
            Some(c) if c.ends_ms > now => c,
            Some(c) => {
                // The window ended: a new one starts with this request.
                *c = Count::starting(now, window, c.generation + 1);
                c
            }
            None => by_key
                .entry(key.clone())
                .or_insert(Count::starting(now, window, 0)),
        };
        if count.unsent == 0 {
            unsent.push(key);
        }
        count.unsent += 1;
        count.total()
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds every count not yet sent to the Store's counters, all at once, and takes back the
    /// totals (every [`FLUSH`], by the tally's own task).
    async fn flush(&self) {
        let due: Vec<(String, u64, Duration, u64)> = {
            let mut counts = self.lock();
            let Counts { by_key, unsent } = &mut *counts;
            unsent
                .drain(..)
                .filter_map(|key| {
                    let c = by_key.get_mut(&key)?;
                    let n = std::mem::take(&mut c.unsent);
                    c.sending += n;
                    (n > 0).then_some((key, n, c.window, c.generation))
                })
                .collect()
        };
        if due.is_empty() {
            return;
        }
        let store = self.store.raw();
        let answers = futures_util::future::join_all(
            due.iter()
                .map(|(key, n, window, _)| store.incr(key, *n, *window)),
        )
        .await;
        let now = self.clock.now_millis();
        let mut failed = None;
        let mut counts = self.lock();
        let Counts { by_key, unsent } = &mut *counts;
        for ((key, n, _, generation), answer) in due.into_iter().zip(answers) {
            let Some(c) = by_key.get_mut(&key).filter(|c| c.generation == generation) else {
                continue;
            };
            c.sending -= n;
            match answer {
                Ok(counted) => {
                    c.shared = counted.total;
                    c.ends_ms = now + counted.left.as_millis() as u64;
                }
                Err(e) => {
                    // Sent again at the next flush; meanwhile this node counts on its own.
                    if c.unsent == 0 {
                        unsent.push(key);
                    }
                    c.unsent += n;
                    failed = Some(e);
                }
            }
        }
        drop(counts);
        let was_failing = self.failing.swap(failed.is_some(), Ordering::Relaxed);
        match failed {
            Some(e) => {
                self.store.count_error();
                if !was_failing {
                    tracing::warn!(error = %e, "rate counts not added to the Store; each node counts on its own until it is back");
                }
            }
            None if was_failing => tracing::info!("rate counts reach the Store again"),
            None => {}
        }
    }

    /// Drops the counts of windows that have ended and have nothing left to send.
    fn sweep(&self) {
        let now = self.clock.now_millis();
        self.lock()
            .by_key
            .retain(|_, c| c.ends_ms > now || c.sending + c.unsent > 0);
    }
}

async fn flushing(shared: Weak<Shared>) {
    let mut ticks = 0u32;
    loop {
        tokio::time::sleep(FLUSH).await;
        let Some(shared) = shared.upgrade() else {
            break;
        };
        shared.flush().await;
        ticks = ticks.wrapping_add(1);
        if ticks.is_multiple_of(SWEEP_EVERY) {
            shared.sweep();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{MemoryStore, RedisStore, Sealer};
    use lienthong_protocol::{MockClock, SystemClock};

    const MINUTE: Duration = Duration::from_secs(60);

    fn records(store: impl crate::store::Store) -> Records {
        Records::new(Arc::new(store), Sealer::generate())
    }

    /// Two nodes' tallies over one Store, on a clock that moves only when told.
    fn two_nodes() -> (Arc<MockClock>, Tally, Tally) {
        let clock = MockClock::starting_now();
        let store = records(MemoryStore::with_clock(clock.clone()));
        let a = Tally::unflushed(store.clone(), clock.clone());
        let b = Tally::unflushed(store, clock.clone());
        (clock, a, b)
    }

    #[tokio::test]
    async fn each_node_counts_at_once_and_learns_the_others_counts_at_each_flush() {
        let (_clock, a, b) = two_nodes();
        let key = || "lt:count:authorize:192.0.2.1".to_owned();
        let on_a: Vec<u64> = (0..3).map(|_| a.count(key(), MINUTE)).collect();
        assert_eq!(on_a, [1, 2, 3], "exact on one node, before any flush");
        assert_eq!(b.count(key(), MINUTE), 1, "B has not heard of A's yet");
        a.shared.flush().await;
        b.shared.flush().await;
        assert_eq!(b.count(key(), MINUTE), 5, "B knows A's three and its own");
        assert_eq!(a.count(key(), MINUTE), 4, "A has not heard of B's yet");
        a.shared.flush().await;
        assert_eq!(
            a.count(key(), MINUTE),
            6,
            "A's second flush brings B's first"
        );
        b.shared.flush().await;
        a.shared.flush().await;
        assert_eq!(
            store_total(&a, &key()).await,
            7,
            "every count reached the Store once"
        );
        // Another key is another count.
        assert_eq!(a.count("lt:count:authorize:192.0.2.2".into(), MINUTE), 1);
    }

    /// The Store's count at `key` (read by adding one more and taking it off).
    async fn store_total(tally: &Tally, key: &str) -> u64 {
        let store = tally.shared.store.raw();
        store.incr(key, 1, MINUTE).await.unwrap().total - 1
    }

    #[tokio::test]
    async fn a_window_ends_when_the_stores_does_and_ended_counts_are_dropped() {
        let (clock, a, b) = two_nodes();
        let key = || "lt:count:token:192.0.2.1".to_owned();
        a.count(key(), MINUTE);
        a.shared.flush().await;
        clock.advance(Duration::from_secs(40));
        // B's first count in A's window: B learns that the window ends in 20 s, not 60.
        b.count(key(), MINUTE);
        b.shared.flush().await;
        assert_eq!(b.count(key(), MINUTE), 3);
        clock.advance(Duration::from_secs(21));
        assert_eq!(b.count(key(), MINUTE), 1, "a new window");
        b.shared.flush().await;
        assert_eq!(
            store_total(&b, &key()).await,
            1,
            "only the new window's count"
        );
        clock.advance(Duration::from_secs(61));
        b.shared.sweep();
        assert!(
            b.shared.lock().by_key.is_empty(),
            "an ended window is dropped"
        );
    }

    #[tokio::test]
    async fn without_the_store_a_node_limits_by_its_own_count_and_sends_it_later() {
        // A Redis that is not there: every flush fails.
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("redis://{}", closed.local_addr().unwrap());
        drop(closed);
        let store = records(RedisStore::new(&[url]).unwrap());
        let tally = Tally::unflushed(store, SystemClock::shared());
        let key = || "lt:count:callback:192.0.2.1".to_owned();
        for _ in 0..3 {
            tally.count(key(), MINUTE);
        }
        tally.shared.flush().await;
        assert_eq!(tally.count(key(), MINUTE), 4, "nothing lost");
        let counts = tally.shared.lock();
        let count = &counts.by_key[&key()];
        assert_eq!(
            (count.unsent, count.sending),
            (4, 0),
            "all of it to send again"
        );
        assert_eq!(counts.unsent, [key()], "listed once");
    }
}
