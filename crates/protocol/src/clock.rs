//! Time, as every part of Lienthong reads it: through one [`Clock`].
//!
//! Whatever decides by the time of day — token `iat`/`exp`, a session's idle and absolute
//! limits, `max_age`, a lookup signature's freshness, an expiring Store entry — asks the clock it
//! was given. Production passes [`SystemClock`]; tests pass a [`MockClock`] and move it forward
//! instead of sleeping. Clippy's `disallowed-methods` (see `clippy.toml`) keeps the system time
//! out of everything but `SystemClock`. (Monotonic `Instant`s that only measure how long
//! something took, or pace a cache, are not time of day and are not routed through here.)

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A source of the current time.
pub trait Clock: Send + Sync + 'static {
    /// Milliseconds since the Unix epoch.
    fn now_millis(&self) -> u64;

    /// Seconds since the Unix epoch.
    fn now_secs(&self) -> u64 {
        self.now_millis() / 1000
    }
}

/// A clock shared by every part of one process.
pub type SharedClock = Arc<dyn Clock>;

/// The operating system's wall clock: the only place that reads it.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl SystemClock {
    pub fn shared() -> SharedClock {
        Arc::new(Self)
    }
}

impl Clock for SystemClock {
    #[allow(clippy::disallowed_methods)] // the one sanctioned read of the system time
    fn now_millis(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    }
}

/// A clock that stands still until a test moves it.
#[derive(Debug)]
pub struct MockClock {
    millis: AtomicU64,
}

impl MockClock {
    /// Starts at the system clock's present, so that tokens it stamps look ordinary to peers
    /// that read the real time.
    pub fn starting_now() -> Arc<Self> {
        Arc::new(Self {
            millis: AtomicU64::new(SystemClock.now_millis()),
        })
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        self.millis
            .fetch_add(by.as_millis() as u64, Ordering::SeqCst);
    }
}

impl Clock for MockClock {
    fn now_millis(&self) -> u64 {
        self.millis.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mock_clock_moves_only_when_told() {
        let clock = MockClock::starting_now();
        let t0 = clock.now_secs();
        assert_eq!(clock.now_secs(), t0);
        clock.advance(Duration::from_secs(90));
        assert_eq!(clock.now_secs(), t0 + 90);
        let shared: SharedClock = clock.clone();
        assert_eq!(shared.now_secs(), t0 + 90);
    }
}
