//! The directory's connections, lent one statement (or one transaction) at a time.
//!
//! sqlx's pool only opens them: every connection it opens is taken out of it for good and kept
//! here. sqlx 0.9's pool pings each connection as it comes back, unconditionally — for
//! PostgreSQL a round trip to the server after every statement, for SQLite a hop to the
//! connection's thread and back — and the next statement on that connection waits behind the
//! ping. Here a connection goes back as it is, unless it has something left to send: a
//! transaction dropped before its end (a request cancelled mid-way) queues its `ROLLBACK`, and
//! that is sent, and the answers drained, before the connection is lent again — at once, in
//! the background, so no row stays locked by an idle connection. A statement dropped while its
//! answer was on the way needs nothing: the connection reads the rest before its next one.
//!
//! SQLite gets one connection, never pinged (a file cannot hang up). A server opens
//! PostgreSQL's ahead of need ([`Connections::warm`]), and they are kept however long they
//! wait: a burst of logins — the first after a start, or the morning's after a quiet night —
//! finds them ready, where each of its first statements would otherwise open one (a new server
//! process, its authentication, its cold caches: docs/performance-log.md measured the first logins
//! of a burst held up to 100 ms by it). A PostgreSQL connection idle for `PING_IF_IDLE` or
//! more is pinged before it is lent (a server restart shows there first), one that fails the
//! ping or leaves it unanswered for `PING_TIMEOUT` is dropped for a new one, and connections
//! are renewed after `MAX_LIFETIME`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sqlx::{AnyConnection, AnyPool, Connection};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::DirectoryError;

/// How long a statement waits for a connection before the directory reports itself unavailable.
pub(super) const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);
/// A PostgreSQL connection idle at least this long is pinged before it is lent; one in steady
/// use is not.
const PING_IF_IDLE: Duration = Duration::from_secs(1);
/// A PostgreSQL connection whose ping is not answered within this is dropped for a new one. A
/// firewall between the broker and the server may forget a connection that waited long, and
/// tell neither end: the ping then gets no answer at all, not even a reset.
const PING_TIMEOUT: Duration = Duration::from_secs(2);
/// A PostgreSQL connection is closed once this old, and another opened when one is needed.
const MAX_LIFETIME: Duration = Duration::from_secs(1800);

/// An idle connection with its age.
struct Idle {
    conn: AnyConnection,
    opened: Instant,
    since: Instant,
}

pub(super) struct Connections {
    /// Opens connections. It keeps none of its own, except what the migrations left idle
    /// (checked before it is handed over).
    opener: AnyPool,
    /// Most recently returned last: the next statement takes the connection warmest in cache.
    idle: Mutex<Vec<Idle>>,
    /// One per connection that may be open: idle, lent, or being opened.
    permits: Arc<Semaphore>,
    /// How many may be open.
    max: usize,
    /// PostgreSQL's (pings, lifetimes); SQLite has none of them.
    pub(super) postgres: bool,
}

/// A connection lent for one statement or one transaction; it goes back when dropped.
pub(crate) struct Conn {
    conn: Option<Idle>,
    home: Arc<Connections>,
    /// Released after the connection is back (see `Drop`).
    permit: Option<OwnedSemaphorePermit>,
}

impl std::ops::Deref for Conn {
    type Target = AnyConnection;
    fn deref(&self) -> &AnyConnection {
        &self.conn.as_ref().expect("lent until dropped").conn
    }
}

impl std::ops::DerefMut for Conn {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        &mut self.conn.as_mut().expect("lent until dropped").conn
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        let Some(idle) = self.conn.take() else {
            return;
        };
        if !idle.conn.should_flush() {
            self.home.give_back(idle);
            return;
        }
        // A transaction was dropped unfinished: its ROLLBACK waits in the connection's buffer.
        // The permit goes with the connection, so it is not lent (nor a new one opened in its
        // place) until the rollback is through.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let home = self.home.clone();
        let permit = self.permit.take();
        runtime.spawn(async move {
            let _permit = permit;
            let mut idle = idle;
            match tokio::time::timeout(ACQUIRE_TIMEOUT, idle.conn.flush()).await {
                Ok(Ok(())) => home.give_back(idle),
                _ => tracing::warn!(
                    "a directory connection did not finish a rolled-back transaction: closed"
                ),
            }
        });
    }
}

impl Connections {
    /// Keeps `first` (the connection that ran the migrations: for an in-memory SQLite
    /// database, the database itself) and opens others through `opener` as needed, up to `max`.
    pub(super) fn new(opener: AnyPool, first: AnyConnection, max: usize, postgres: bool) -> Self {
        let now = Instant::now();
        Self {
            opener,
            idle: Mutex::new(vec![Idle {
                conn: first,
                opened: now,
                since: now,
            }]),
            permits: Arc::new(Semaphore::new(max)),
            max,
            postgres,
        }
    }

    /// A connection: an idle one, or a new one while fewer than `max` are open. Waits at most
    /// `ACQUIRE_TIMEOUT` for one to come back, as sqlx's pool would.
    pub(super) async fn lend(self: &Arc<Self>) -> Result<Conn, DirectoryError> {
        let timed_out = || DirectoryError::Database(sqlx::Error::PoolTimedOut);
        let asked = Instant::now();
        let permit = tokio::time::timeout(ACQUIRE_TIMEOUT, self.permits.clone().acquire_owned())
            .await
            .map_err(|_| timed_out())?
            .map_err(|_| DirectoryError::Database(sqlx::Error::PoolClosed))?;
        loop {
            let taken = self.idle.lock().expect("not poisoned").pop();
            let Some(mut idle) = taken else {
                let left = ACQUIRE_TIMEOUT.saturating_sub(asked.elapsed());
                let conn = tokio::time::timeout(left, self.opener.acquire())
                    .await
                    .map_err(|_| timed_out())??
                    .detach();
                let now = Instant::now();
                return Ok(self.lent(
                    Idle {
                        conn,
                        opened: now,
                        since: now,
                    },
                    permit,
                ));
            };
            if self.postgres {
                if idle.opened.elapsed() >= MAX_LIFETIME {
                    close(idle);
                    continue;
                }
                if idle.since.elapsed() >= PING_IF_IDLE {
                    let answer = tokio::time::timeout(PING_TIMEOUT, idle.conn.ping()).await;
                    if !matches!(answer, Ok(Ok(()))) {
                        // What ended or forgot this one (a server restart, a firewall) ended
                        // those idle longer too: dropped with it, not pinged one by one.
                        let mut list = self.idle.lock().expect("not poisoned");
                        list.retain(|other| other.since > idle.since);
                        continue;
                    }
                }
            }
            return Ok(self.lent(idle, permit));
        }
    }

    fn lent(self: &Arc<Self>, idle: Idle, permit: OwnedSemaphorePermit) -> Conn {
        Conn {
            conn: Some(idle),
            home: self.clone(),
            permit: Some(permit),
        }
    }

    /// Puts a connection back.
    fn give_back(&self, mut idle: Idle) {
        idle.since = Instant::now();
        self.idle.lock().expect("not poisoned").push(idle);
    }

    /// Opens connections in the background until all but one of `max` are open: it borrows
    /// that many and holds them, so each borrowing after the idle ones opens another, then
    /// gives them all back. The one left is for the statements that come meanwhile (the broker
    /// reads its signing keys as it starts). If the server cannot be reached, the borrowing
    /// fails and the connections are opened when statements need them, as they would have been.
    pub(super) fn warm(self: &Arc<Self>) {
        let this = self.clone();
        tokio::spawn(async move {
            let mut lent = Vec::with_capacity(this.max);
            for _ in 1..this.max {
                match this.lend().await {
                    Ok(conn) => lent.push(conn),
                    Err(e) => {
                        tracing::debug!(error = %e, "directory connections not opened ahead");
                        break;
                    }
                }
            }
        });
    }

    /// Closes every idle connection and lends no more.
    pub(super) async fn close(&self) {
        self.permits.close();
        let idle = std::mem::take(&mut *self.idle.lock().expect("not poisoned"));
        for idle in idle {
            let _ = idle.conn.close().await;
        }
        self.opener.close().await;
    }
}

/// Closes a connection without waiting for it.
fn close(idle: Idle) {
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        runtime.spawn(async move {
            let _ = idle.conn.close().await;
        });
    }
}

#[cfg(test)]
pub(super) mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use sqlx::PgConnection;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

    use lienthong_testkit::postgres::Database;

    use super::*;
    use crate::directory::Directory;

    /// A directory on a new PostgreSQL database of the test's own (the testkit's: the loopback
    /// server or LIENTHONG_TEST_POSTGRES_URL), with that database to drop at the end; `None`
    /// (said loudly) without a server, except on CI.
    pub(in crate::directory) async fn postgres() -> Option<(Directory, Database)> {
        let db = Database::create_or_skip().await?;
        let dir = Directory::connect(&db.url).await.unwrap();
        Some((dir, db))
    }

    /// A server's directory opens its PostgreSQL connections ahead of the first burst — all
    /// but one of the eight, in the background — and answers statements meanwhile.
    #[tokio::test]
    async fn warm_opens_the_postgres_connections_ahead_of_need() {
        let Some((dir, db)) = postgres().await else {
            return;
        };
        let mut admin = PgConnection::connect(&db.url).await.unwrap();
        let open = async |admin: &mut PgConnection| {
            sqlx::query_scalar::<_, i64>(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
            )
            .bind(db.name())
            .fetch_one(admin)
            .await
            .unwrap()
        };
        // The migrations' connection, and one sqlx's pool may still hold from them.
        assert!(open(&mut admin).await <= 2);
        dir.warm();
        sqlx::query("SELECT 1")
            .execute(&mut *dir.conn().await.unwrap())
            .await
            .unwrap();
        let mut seen = 0;
        for _ in 0..100 {
            seen = open(&mut admin).await;
            if seen == 7 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(
            seen, 7,
            "seven connections open, none of them asked for by a statement"
        );
        admin.close().await.unwrap();
        dir.close().await;
        db.drop_database().await;
    }

    /// A TCP relay whose connections so far can be made to forget: they then take what comes,
    /// pass nothing on, and stay open — as a firewall that dropped them would leave them.
    struct Relay {
        port: u16,
        flags: Arc<Mutex<Vec<Arc<AtomicBool>>>>,
    }

    impl Relay {
        async fn start(target: (String, u16)) -> Self {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let port = listener.local_addr().unwrap().port();
            let flags = Arc::new(Mutex::new(Vec::new()));
            let list = flags.clone();
            tokio::spawn(async move {
                while let Ok((inbound, _)) = listener.accept().await {
                    let Ok(outbound) = tokio::net::TcpStream::connect(target.clone()).await else {
                        continue;
                    };
                    let forgotten = Arc::new(AtomicBool::new(false));
                    list.lock().unwrap().push(forgotten.clone());
                    let (from_client, to_client) = inbound.into_split();
                    let (from_server, to_server) = outbound.into_split();
                    tokio::spawn(pass(from_client, to_server, forgotten.clone()));
                    tokio::spawn(pass(from_server, to_client, forgotten));
                }
            });
            Self { port, flags }
        }

        fn forget_every_connection(&self) {
            for flag in self.flags.lock().unwrap().iter() {
                flag.store(true, Ordering::SeqCst);
            }
        }
    }

    async fn pass(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, forgotten: Arc<AtomicBool>) {
        let mut buf = vec![0; 16 * 1024];
        while let Ok(n @ 1..) = from.read(&mut buf).await {
            if forgotten.load(Ordering::SeqCst) {
                let _open = (from, to);
                return std::future::pending().await;
            }
            if to.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    }

    /// Connections a firewall forgot while they waited (no answer, not even a reset) cost the
    /// next statement one `PING_TIMEOUT`, not one per connection, nor a hang.
    #[tokio::test]
    async fn connections_that_no_longer_answer_cost_one_ping_timeout() {
        let Some((direct, db)) = postgres().await else {
            return;
        };
        direct.close().await;
        let mut url = url::Url::parse(&db.url).unwrap();
        let target = (
            url.host_str().unwrap().to_owned(),
            url.port().unwrap_or(5432),
        );
        let relay = Relay::start(target).await;
        url.set_port(Some(relay.port)).unwrap();
        let dir = Directory::connect(url.as_str()).await.unwrap();
        dir.warm();
        for _ in 0..100 {
            if dir.connections.idle.lock().unwrap().len() == 7 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(dir.connections.idle.lock().unwrap().len(), 7, "warmed");
        relay.forget_every_connection();
        tokio::time::sleep(PING_IF_IDLE + Duration::from_millis(100)).await;
        let started = Instant::now();
        let statement = async {
            sqlx::query("SELECT 1")
                .execute(&mut *dir.conn().await.unwrap())
                .await
                .unwrap();
        };
        tokio::time::timeout(PING_TIMEOUT + Duration::from_secs(3), statement)
            .await
            .expect("answered through a new connection");
        let took = started.elapsed();
        assert!(
            (PING_TIMEOUT..PING_TIMEOUT * 2).contains(&took),
            "one ping waited for: {took:?}"
        );
        db.drop_database().await;
    }

    /// A transaction dropped unfinished (its request cancelled) holds nothing once its
    /// connection is back: the rollback is sent then, not when the connection is next lent.
    #[tokio::test]
    async fn a_dropped_postgres_transaction_is_rolled_back_as_its_connection_goes_back() {
        let Some((dir, db)) = postgres().await else {
            return;
        };
        {
            let mut conn = dir.conn().await.unwrap();
            let mut tx = conn.begin().await.unwrap();
            sqlx::query("SELECT pg_advisory_xact_lock(4242)")
                .execute(&mut *tx)
                .await
                .unwrap();
        }
        let mut other = PgConnection::connect(&db.url).await.unwrap();
        let mut free = false;
        for _ in 0..40 {
            free = sqlx::query_scalar::<_, bool>("SELECT pg_try_advisory_lock(4242)")
                .fetch_one(&mut other)
                .await
                .unwrap();
            if free {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(free, "the dropped transaction's lock was released");
        // And the connection is lent again, ready.
        sqlx::query("SELECT 1")
            .execute(&mut *dir.conn().await.unwrap())
            .await
            .unwrap();
        other.close().await.unwrap();
        dir.close().await;
        db.drop_database().await;
    }
}
