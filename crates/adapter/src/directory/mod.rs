//! The account directory: which local account of each provincial system belongs to a citizen.
//!
//! One implementation over sqlx's `Any` driver, so the same SQL and the same migrations serve
//! SQLite (a file in the data directory: the embedded default) and PostgreSQL (production).
//! Placeholders are `$n`, which both accept. Every operation that changes a link or a citizen
//! record also appends a row to `directory_events`, the processing log the law asks for.

mod connections;
mod durable;
mod import;

use std::sync::Arc;

use serde::Serialize;
use serde_json::json;
use sqlx::Row;
use sqlx::any::{AnyPoolOptions, AnyRow};

use crate::lookup::{self, LookupAnswer, LookupRequest};
use crate::policy::{LinkPolicy, NewSubjectRule, RealmConfig};
use connections::{ACQUIRE_TIMEOUT, Conn, Connections};
use lienthong_citizen::{CitizenId, LegacyCmnd};
use lienthong_protocol::{SharedClock, SystemClock};

pub use import::{AccountNumber, ImportReport, ImportRow, RowError, parse_csv};

#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    #[error("directory database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("directory migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("{0}")]
    Conflict(String),
}

/// The citizen as the broker knows them after an upstream sign-in.
#[derive(Debug, Clone)]
pub struct CitizenInput<'a> {
    pub issuer: &'a str,
    pub subject: &'a str,
    pub citizen_id: Option<&'a CitizenId>,
    pub legacy_cmnd: Option<&'a LegacyCmnd>,
    pub name: Option<&'a str>,
    pub birthdate: Option<&'a str>,
}

/// A login's question about consent, answered in the statement that reads its account: the
/// claims `subject_key` has agreed to release to `client_id` since `since` (Unix seconds), as
/// [`Directory::consented_claims`] answers it alone.
#[derive(Debug, Clone, Copy)]
pub struct ConsentQuery<'a> {
    pub subject_key: &'a str,
    pub client_id: &'a str,
    pub since: i64,
}

/// A citizen's answer to a consent question: the claims, the wording they were shown, the
/// decision. Recorded alone ([`Directory::record_consent_answer`]) or with the account it lets
/// a login release ([`Directory::release_account`]).
#[derive(Debug, Clone, Copy)]
pub struct ConsentAnswer<'a> {
    pub subject_key: &'a str,
    pub client_id: &'a str,
    pub claims: &'a [String],
    pub wording: &'a str,
    pub allowed: bool,
}

/// What [`Directory::prepare`] found: the account as far as it is decided before consent, and
/// the consented claims where it was asked about them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preparation {
    pub account: Prepared,
    pub consented: Option<Vec<String>>,
}

/// The account as far as [`Directory::prepare`] decided it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Prepared {
    /// Decided without releasing anything.
    Done(Resolution),
    /// The realm's policy must act (lookup or provision): after consent.
    NeedsRelease { citizen_key: String },
}

/// The outcome of resolving a citizen's account in one realm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    Account {
        local_account_id: String,
        how: LinkSource,
    },
    /// `linked` realm (or lookup found nothing): the citizen has no account here.
    NotLinked,
    /// A known ID number under a new upstream subject, and the realm refuses to relink alone.
    NeedsRelink,
    /// The system's lookup endpoint failed or was too slow.
    LookupUnavailable(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LinkSource {
    /// An existing link of this citizen.
    Existing,
    /// An imported (or admin) link, bound to the citizen at first sign-in.
    Bound,
    Lookup,
    Provision,
    /// Moved from the previous subject of the same ID number.
    Relinked,
}

/// A link as listed by the admin API and `accounts export`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Link {
    pub realm: String,
    pub local_account_id: String,
    pub citizen_id: Option<String>,
    pub legacy_cmnd: Option<String>,
    /// Whether the citizen has signed in since the link was made.
    pub bound: bool,
    pub source: String,
    pub created_at: i64,
}

/// An entry of the processing log.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    pub at: i64,
    pub actor: String,
    pub action: String,
    pub realm: Option<String>,
    pub detail: serde_json::Value,
}

/// Everything known about one number, for `accounts show`.
#[derive(Debug, Serialize)]
pub struct CitizenView {
    pub citizens: Vec<serde_json::Value>,
    pub links: Vec<Link>,
    pub events: Vec<Event>,
}

/// A handle to the directory; clones share its connections.
#[derive(Clone)]
pub struct Directory {
    connections: Arc<Connections>,
    /// Every `at` and `created_at` the directory writes comes from here.
    clock: SharedClock,
}

/// What [`Directory::prepare`] reads in one statement.
#[derive(Default)]
struct LoginView {
    /// The citizen record of this upstream identity: key, ID number, CMND.
    me: Option<(String, Option<String>, Option<String>)>,
    /// Its link in the realm.
    own: Option<String>,
    /// Other citizen records with the same ID number.
    others: Vec<String>,
    /// An unbound link in the realm made for the ID number, or for the CMND.
    unbound_by_number: Option<String>,
    unbound_by_cmnd: Option<String>,
    /// A link in the realm held by another record with the same ID number: account, its key.
    previous: Option<(String, String)>,
    /// The claims consented, where the login asked ([`ConsentQuery`]).
    consented: Option<Vec<String>>,
}

/// The head of [`INSERT_CITIZEN`] and [`INSERT_CITIZEN_UNFLUSHED`]: their columns, once.
macro_rules! insert_citizen {
    () => {
        "INSERT INTO citizens (citizen_key, issuer, subject, citizen_id, legacy_cmnd, created_at, updated_at) "
    };
}

/// A new citizen record.
const INSERT_CITIZEN: &str = concat!(
    insert_citizen!(),
    "VALUES ($1, $2, $3, $4, $5, $6, $6) ON CONFLICT DO NOTHING"
);

/// [`INSERT_CITIZEN`] on PostgreSQL, committed without waiting for its WAL to reach the disk
/// (`synchronous_commit` off for its own transaction alone: `set_config(..., true)`, evaluated
/// once, before the row is written). A first sign-in then waits for one disk flush, not two.
///
/// Nothing is lost that anything else relies on. Every later write that refers to the record —
/// the link bound or created, the consent answer, the directory's events — is a commit that
/// waits, and PostgreSQL's WAL is one sequence: flushing that commit flushes the record's,
/// written before it. A crash in the fraction of a second before can lose a record that
/// nothing refers to yet; the citizen's next login creates it again. No token carries the
/// record's key. (SQLite, in WAL mode with `synchronous = NORMAL`, commits every transaction
/// so.)
const INSERT_CITIZEN_UNFLUSHED: &str = concat!(
    insert_citizen!(),
    "SELECT $1, $2, $3, $4, $5, $6, $6 WHERE set_config('synchronous_commit', 'off', true) = 'off' \
     ON CONFLICT DO NOTHING"
);

fn new_key() -> String {
    lienthong_protocol::secret::random_token(16)
}

const LINK_COLUMNS: &str = "l.realm, l.local_account_id, COALESCE(c.citizen_id, l.citizen_id), COALESCE(c.legacy_cmnd, l.legacy_cmnd), l.citizen_key, l.source, l.created_at";

fn link_from(row: &AnyRow) -> Result<Link, sqlx::Error> {
    Ok(Link {
        realm: row.try_get(0)?,
        local_account_id: row.try_get(1)?,
        citizen_id: row.try_get(2)?,
        legacy_cmnd: row.try_get(3)?,
        bound: row.try_get::<Option<String>, _>(4)?.is_some(),
        source: row.try_get(5)?,
        created_at: row.try_get(6)?,
    })
}

fn masked(number: Option<&str>) -> Option<String> {
    let n = number?;
    Some(match CitizenId::parse(n) {
        Ok(id) => id.masked(),
        Err(_) => LegacyCmnd::parse(n)
            .map(|c| c.masked())
            .unwrap_or_else(|_| "***".into()),
    })
}

/// How SQLite's one connection is set up. WAL lets another process (`lienthong accounts`) read
/// beside the writer; `synchronous = NORMAL` is durable across application crashes, which is
/// what a directory needs.
///
/// The page cache is 8 MiB (`cache_size` in KiB when negative; SQLite's default is 2 MiB), not
/// more, because of what every commit does with it: it drops any cached page numbered past the
/// end of the file, and a B-tree split parks a page at such a number (the lock page's) while it
/// puts the new pages in order. A write to an index on random keys (a citizen's key, an event's
/// id) splits often, so at nearly every first sign-in's commit that drop walks the whole
/// cache. With 256 MiB (up to 63,000 pages, filled as the directory grows) the walk took, at
/// 40,000 citizens, as much of the broker's time as the rest of SQLite's work together, and
/// the cache 70 MB of memory; with 8 MiB it walks at most about 2,000 pages, and a page not in
/// it is read from the system's file cache (docs/performance-log.md, 2026-12-06, third session).
const SQLITE_SETUP: &str =
    "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA cache_size = -8192;";

impl Directory {
    /// Connects (`sqlite://path?mode=rwc`, `sqlite::memory:`, `postgres://...`) and migrates.
    pub async fn connect(url: &str) -> Result<Self, DirectoryError> {
        sqlx::any::install_default_drivers();
        let sqlite = url.starts_with("sqlite:");
        // SQLite gets exactly one connection. An in-memory database lives in one; and for a
        // file, SQLite runs one writer at a time anyway, while in WAL mode a connection drops
        // its whole page cache whenever another one has written: with a pool of eight, nearly
        // every statement of a login re-read its pages from the file (docs/performance-log.md).
        // That connection runs the migrations and stays the directory's own from then on.
        // PostgreSQL gets up to eight.
        let max = if sqlite { 1 } else { 8 };
        let options = AnyPoolOptions::new()
            .max_connections(max as u32)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            // The pool may still hold a connection the migrations used: checked before it is
            // handed over (sqlx's default), as a new one needs no check.
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if sqlite {
                        sqlx::raw_sql(SQLITE_SETUP).execute(conn).await?;
                    }
                    Ok(())
                })
            });
        // sqlx's pool only opens connections; the directory keeps them (`Connections`).
        let opener = options.connect(url).await?;
        sqlx::migrate!("./migrations").run(&opener).await?;
        let first = opener.acquire().await?.detach();
        Ok(Self {
            connections: Arc::new(Connections::new(opener, first, max, !sqlite)),
            clock: SystemClock::shared(),
        })
    }

    /// A connection for one statement or one transaction: SQLite's one, or one of PostgreSQL's
    /// (see [`connections`]). Waits at most `ACQUIRE_TIMEOUT` before giving up.
    pub(crate) async fn conn(&self) -> Result<Conn, DirectoryError> {
        self.connections.lend().await
    }

    /// Opens PostgreSQL's connections in the background, ahead of the statements that will
    /// need them (a server calls this as it starts: see [`connections`]); nothing on SQLite.
    pub fn warm(&self) {
        if !self.sqlite() {
            self.connections.warm();
        }
    }

    /// Closes the directory's idle connections; one still lent is dropped with the last handle.
    pub async fn close(self) {
        self.connections.close().await;
    }

    /// The same directory reading the time from `clock`.
    pub fn with_clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// Seconds since the Unix epoch, by the directory's clock.
    pub(crate) fn now(&self) -> i64 {
        self.clock.now_secs() as i64
    }

    /// Whether the directory is SQLite (which has its one connection held), not PostgreSQL.
    pub(crate) fn sqlite(&self) -> bool {
        !self.connections.postgres
    }

    /// `count` bind parameters numbered from `first`: `?, ?` on SQLite, `$3, $4` elsewhere.
    /// SQLite binds anonymous `?` parameters in constant time but looks named ones (`$n`) up in
    /// a list, which makes a statement with thousands of them quadratic to bind. Large
    /// statements (the import's batches) therefore use `?` there, `$n` on PostgreSQL.
    pub(crate) fn params(&self, first: usize, count: usize) -> String {
        let one = |n: usize| {
            if self.sqlite() {
                "?".to_owned()
            } else {
                format!("${n}")
            }
        };
        (first..first + count)
            .map(one)
            .collect::<Vec<_>>()
            .join(", ")
    }

    async fn event(
        &self,
        exec: impl sqlx::Executor<'_, Database = sqlx::Any>,
        actor: &str,
        action: &str,
        realm: Option<&str>,
        citizen_key: Option<&str>,
        detail: serde_json::Value,
    ) -> Result<(), DirectoryError> {
        sqlx::query("INSERT INTO directory_events (event_id, at, actor, action, realm, citizen_key, detail) VALUES ($1, $2, $3, $4, $5, $6, $7)")
            .bind(new_key())
            .bind(self.now())
            .bind(actor.to_owned())
            .bind(action.to_owned())
            .bind(realm.map(str::to_owned))
            .bind(citizen_key.map(str::to_owned))
            .bind(detail.to_string())
            .execute(exec)
            .await?;
        Ok(())
    }

    /// Runs `query`, a SQLite transaction written out as several statements (`BEGIN
    /// IMMEDIATE; ...; COMMIT`), in one hop to SQLite's connection thread: sqlx sends a
    /// multi-statement query whole, binding each `$n` wherever it appears, where a `Transaction`
    /// costs a hop for BEGIN, one per statement and one for COMMIT. A statement that fails
    /// leaves the transaction open, so it is rolled back before the connection goes back.
    /// The query runs to its end even if the request that asked is dropped meanwhile (a
    /// citizen closing the page): sqlx's SQLite thread stops at the first answer nobody
    /// awaits, which would leave the transaction open on the one connection, and every
    /// statement after it inside. Returns the rows the statements returned (`RETURNING`), all
    /// together: SQLite's count of changed rows is not kept per statement, so it says nothing
    /// here.
    pub(crate) async fn sqlite_atomic(
        &self,
        query: sqlx::query::Query<'static, sqlx::Any, sqlx::any::AnyArguments>,
    ) -> Result<Vec<AnyRow>, DirectoryError> {
        let mut conn = self.conn().await?;
        let run = tokio::spawn(async move {
            match query.fetch_all(&mut *conn).await {
                Ok(rows) => Ok(rows),
                Err(e) => {
                    // Undoes whatever ran; if BEGIN itself failed there is nothing to undo and
                    // SQLite says so, which changes nothing.
                    let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
                    Err(e.into())
                }
            }
        });
        match run.await {
            Ok(done) => done,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(_) => Err(DirectoryError::Database(sqlx::Error::PoolClosed)),
        }
    }

    /// Records a changed ID number or CMND of an existing citizen record, with its event.
    async fn keep_numbers_current(
        &self,
        key: &str,
        c: &CitizenInput<'_>,
        old_number: Option<String>,
        old_cmnd: Option<String>,
    ) -> Result<(), DirectoryError> {
        let number = c.citizen_id.map(|n| n.as_str().to_owned());
        let cmnd = c.legacy_cmnd.map(|n| n.as_str().to_owned());
        let number_changed = number.is_some() && number != old_number;
        let cmnd_changed = cmnd.is_some() && cmnd != old_cmnd;
        if !(number_changed || cmnd_changed) {
            return Ok(());
        }
        let mut conn = self.conn().await?;
        let mut tx = sqlx::Connection::begin(&mut *conn).await?;
        sqlx::query("UPDATE citizens SET citizen_id = COALESCE($1, citizen_id), legacy_cmnd = COALESCE($2, legacy_cmnd), updated_at = $3 WHERE citizen_key = $4")
            .bind(number.clone())
            .bind(cmnd.clone())
            .bind(self.now())
            .bind(key.to_owned())
            .execute(&mut *tx)
            .await?;
        if number_changed {
            let detail =
                json!({ "old": masked(old_number.as_deref()), "new": masked(number.as_deref()) });
            self.event(
                &mut *tx,
                "login",
                "id_number_changed",
                None,
                Some(key),
                detail,
            )
            .await?;
        }
        if cmnd_changed {
            let detail =
                json!({ "old": masked(old_cmnd.as_deref()), "new": masked(cmnd.as_deref()) });
            self.event(
                &mut *tx,
                "login",
                "legacy_number_changed",
                None,
                Some(key),
                detail,
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Creates the citizen record under `key`; false if one for this upstream identity exists
    /// already (created by another node at the same moment).
    ///
    /// On PostgreSQL its commit does not wait for the disk ([`INSERT_CITIZEN_UNFLUSHED`]).
    async fn insert_citizen(
        &self,
        key: &str,
        c: &CitizenInput<'_>,
    ) -> Result<bool, DirectoryError> {
        let sql = if self.sqlite() {
            INSERT_CITIZEN
        } else {
            INSERT_CITIZEN_UNFLUSHED
        };
        let inserted = sqlx::query(sql)
            .bind(key.to_owned())
            .bind(c.issuer.to_owned())
            .bind(c.subject.to_owned())
            .bind(c.citizen_id.map(|n| n.as_str().to_owned()))
            .bind(c.legacy_cmnd.map(|n| n.as_str().to_owned()))
            .bind(self.now())
            .execute(&mut *self.conn().await?)
            .await?;
        Ok(inserted.rows_affected() == 1)
    }

    /// A new citizen record whose ID number other records (earlier upstream subjects) hold.
    async fn record_known_number(
        &self,
        key: &str,
        number: &CitizenId,
        others: &[String],
    ) -> Result<(), DirectoryError> {
        for previous in others {
            let detail = json!({ "number": number.masked(), "previous_citizen_key": previous });
            self.event(
                &mut *self.conn().await?,
                "login",
                "known_number_new_subject",
                None,
                Some(key),
                detail,
            )
            .await?;
        }
        Ok(())
    }

    /// Everything a login's account step reads, and the consents it asks about, in one statement
    /// (one round trip: a hop to SQLite's thread or to PostgreSQL costs more than the lookups,
    /// docs/performance-log.md).
    async fn login_view(
        &self,
        realm: &RealmConfig,
        c: &CitizenInput<'_>,
        consents: Option<ConsentQuery<'_>>,
    ) -> Result<LoginView, DirectoryError> {
        // $1, $2: the upstream identity; $3: the realm; $4: the ID number; $5: the CMND, where
        // the realm matches on it. A NULL number matches nothing.
        // Each link is found through a correlated subquery on the (realm, citizen_key) index, not
        // a join: with stale statistics PostgreSQL hashed a join over every link of the realm
        // (about 45 ms at 100,000 links, seconds under load), and a subquery cannot be planned so.
        macro_rules! accounts {
            () => {
                "SELECT 'me', c.citizen_key, c.citizen_id, c.legacy_cmnd, \
                 (SELECT l.local_account_id FROM account_links l WHERE l.realm = $3 AND l.citizen_key = c.citizen_key) \
                 FROM citizens c WHERE c.issuer = $1 AND c.subject = $2 \
                 UNION ALL \
                 SELECT 'other', c.citizen_key, NULL, NULL, \
                 (SELECT l.local_account_id FROM account_links l WHERE l.realm = $3 AND l.citizen_key = c.citizen_key) \
                 FROM citizens c WHERE c.citizen_id = $4 AND NOT (c.issuer = $1 AND c.subject = $2) \
                 UNION ALL \
                 SELECT 'citizen_id', local_account_id, NULL, NULL, NULL FROM account_links \
                 WHERE realm = $3 AND citizen_id = $4 AND citizen_key IS NULL \
                 UNION ALL \
                 SELECT 'legacy_cmnd', local_account_id, NULL, NULL, NULL FROM account_links \
                 WHERE realm = $3 AND legacy_cmnd = $5 AND citizen_key IS NULL \
                 UNION ALL \
                 SELECT 'previous', l.local_account_id, l.citizen_key, NULL, NULL FROM account_links l \
                 WHERE l.realm = $3 AND l.citizen_id = $4 AND l.citizen_key IS NOT NULL \
                 AND l.citizen_key NOT IN (SELECT citizen_key FROM citizens WHERE issuer = $1 AND subject = $2)"
            };
        }
        // $6, $7, $8: the consent question's subject, client and time, as in consented_claims.
        const WITH_CONSENTS: &str = concat!(
            accounts!(),
            " UNION ALL SELECT 'consent', claim, NULL, NULL, NULL FROM consents \
             WHERE subject_key = $6 AND client_id = $7 AND granted_at >= $8"
        );
        let query = sqlx::query(if consents.is_some() {
            WITH_CONSENTS
        } else {
            accounts!()
        })
        .bind(c.issuer.to_owned())
        .bind(c.subject.to_owned())
        .bind(realm.id.clone())
        .bind(c.citizen_id.map(|n| n.as_str().to_owned()))
        .bind(
            c.legacy_cmnd
                .filter(|_| realm.match_legacy_cmnd)
                .map(|n| n.as_str().to_owned()),
        );
        let query = match consents {
            Some(q) => query
                .bind(q.subject_key.to_owned())
                .bind(q.client_id.to_owned())
                .bind(q.since),
            None => query,
        };
        let rows = query.fetch_all(&mut *self.conn().await?).await?;
        let mut view = LoginView {
            consented: consents.map(|_| Vec::new()),
            ..LoginView::default()
        };
        // A link made for this number and bound to another record comes before the link of
        // another record holding the number: either is the "previous" account.
        let mut held_by_other = None;
        for row in &rows {
            let kind: String = row.try_get(0)?;
            let value: String = row.try_get(1)?;
            match kind.as_str() {
                "me" => {
                    view.me = Some((value, row.try_get(2)?, row.try_get(3)?));
                    view.own = row.try_get(4)?;
                }
                "other" => {
                    let local: Option<String> = row.try_get(4)?;
                    if let Some(local) = local {
                        held_by_other.get_or_insert((local, value.clone()));
                    }
                    view.others.push(value);
                }
                "citizen_id" => view.unbound_by_number = Some(value),
                "legacy_cmnd" => view.unbound_by_cmnd = Some(value),
                "consent" => view.consented.get_or_insert_default().push(value),
                _ => {
                    view.previous.get_or_insert((value, row.try_get(2)?));
                }
            }
        }
        if view.previous.is_none() {
            view.previous = held_by_other;
        }
        Ok(view)
    }

    /// The account of `citizen` in `realm`, under the realm's policy (DESIGN.md step 7).
    pub async fn resolve(
        &self,
        realm: &RealmConfig,
        citizen: &CitizenInput<'_>,
        http: &reqwest::Client,
    ) -> Result<Resolution, DirectoryError> {
        match self.prepare(realm, citizen, None).await?.account {
            Prepared::Done(resolution) => Ok(resolution),
            Prepared::NeedsRelease { citizen_key } => {
                self.release_account(realm, citizen, &citizen_key, http, None)
                    .await
            }
        }
    }

    /// Everything [`Directory::resolve`] can decide without anything about the citizen leaving
    /// Lienthong: the citizen record, their own link, an imported link to bind, a number known
    /// under another subject, and the `linked` policy's refusal. What it cannot decide — a
    /// `lookup` call to the system, a `provision`ed account — waits for
    /// [`Directory::release_account`], which the broker calls only after the citizen consented.
    /// `consents`, where given, is answered in the same statement that reads the account.
    pub async fn prepare(
        &self,
        realm: &RealmConfig,
        citizen: &CitizenInput<'_>,
        consents: Option<ConsentQuery<'_>>,
    ) -> Result<Preparation, DirectoryError> {
        let mut view = self.login_view(realm, citizen, consents).await?;
        let consented = view.consented.take();
        loop {
            if let Some(account) = self.decide(realm, citizen, view).await? {
                return Ok(Preparation { account, consented });
            }
            // Another node created the citizen record at the same moment: read again.
            view = self.login_view(realm, citizen, None).await?;
        }
    }

    /// [`Directory::prepare`]'s decision on what it read; `None` when the citizen record it was
    /// to create was created elsewhere in the meantime.
    async fn decide(
        &self,
        realm: &RealmConfig,
        citizen: &CitizenInput<'_>,
        view: LoginView,
    ) -> Result<Option<Prepared>, DirectoryError> {
        let done = |r: Resolution| Ok(Some(Prepared::Done(r)));
        let r = realm.id.as_str();
        let key = match view.me {
            Some((key, old_number, old_cmnd)) => {
                self.keep_numbers_current(&key, citizen, old_number, old_cmnd)
                    .await?;
                key
            }
            None => {
                let key = new_key();
                if !self.insert_citizen(&key, citizen).await? {
                    return Ok(None);
                }
                if let Some(n) = citizen.citizen_id {
                    self.record_known_number(&key, n, &view.others).await?;
                }
                key
            }
        };
        // 1. This citizen's own link (a record created just now has none).
        if let Some(local_account_id) = view.own {
            return done(Resolution::Account {
                local_account_id,
                how: LinkSource::Existing,
            });
        }
        // 2. A link made beforehand by number (import, admin), not yet bound to anyone.
        let numbers = [
            (
                "citizen_id",
                view.unbound_by_number,
                citizen.citizen_id.map(CitizenId::as_str),
            ),
            (
                "legacy_cmnd",
                view.unbound_by_cmnd,
                citizen.legacy_cmnd.map(LegacyCmnd::as_str),
            ),
        ];
        for (column, local, number) in numbers {
            let (Some(local), Some(number)) = (local, number) else {
                continue;
            };
            let sql = format!(
                "UPDATE account_links SET citizen_key = $1 WHERE realm = $2 AND local_account_id = $3 AND {column} = $4 AND citizen_key IS NULL"
            );
            let bound = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(key.clone())
                .bind(r.to_owned())
                .bind(local.clone())
                .bind(number.to_owned())
                .execute(&mut *self.conn().await?)
                .await?;
            // Not 1: bound by someone else since it was read; the next rule decides.
            if bound.rows_affected() == 1 {
                self.event(
                    &mut *self.conn().await?,
                    "login",
                    "link_bound",
                    Some(r),
                    Some(&key),
                    json!({ "by": column, "local_account_id": local }),
                )
                .await?;
                return done(Resolution::Account {
                    local_account_id: local,
                    how: LinkSource::Bound,
                });
            }
        }
        // 3. The same ID number is linked here under another upstream subject.
        if let (Some(number), Some((local, old_key))) = (citizen.citizen_id, view.previous) {
            let detail = json!({ "number": number.masked(), "local_account_id": local, "previous_citizen_key": old_key });
            return match realm.on_new_subject {
                NewSubjectRule::Refuse => {
                    self.event(
                        &mut *self.conn().await?,
                        "login",
                        "relink_refused",
                        Some(r),
                        Some(&key),
                        detail,
                    )
                    .await?;
                    done(Resolution::NeedsRelink)
                }
                NewSubjectRule::Relink => {
                    sqlx::query("UPDATE account_links SET citizen_key = $1 WHERE realm = $2 AND local_account_id = $3")
                        .bind(key.clone())
                        .bind(r.to_owned())
                        .bind(local.clone())
                        .execute(&mut *self.conn().await?)
                        .await?;
                    self.event(
                        &mut *self.conn().await?,
                        "login",
                        "relinked",
                        Some(r),
                        Some(&key),
                        detail,
                    )
                    .await?;
                    done(Resolution::Account {
                        local_account_id: local,
                        how: LinkSource::Relinked,
                    })
                }
            };
        }
        // 4. The realm's policy: `linked` refuses here; the others release something.
        match realm.policy {
            LinkPolicy::Linked => done(Resolution::NotLinked),
            LinkPolicy::Lookup | LinkPolicy::Provision => {
                Ok(Some(Prepared::NeedsRelease { citizen_key: key }))
            }
        }
    }

    /// The realm policy's account for a citizen [`Directory::prepare`] left undecided: the
    /// system's `lookup` endpoint is called, or an account is `provision`ed. Either releases the
    /// citizen to the system, so the broker calls this only after consent — and records the
    /// consent `answer` here: with a `provision`ed account in one transaction (one round trip,
    /// one commit), before a `lookup` call (on record before anything leaves).
    pub async fn release_account(
        &self,
        realm: &RealmConfig,
        citizen: &CitizenInput<'_>,
        key: &str,
        http: &reqwest::Client,
        answer: Option<&ConsentAnswer<'_>>,
    ) -> Result<Resolution, DirectoryError> {
        let r = realm.id.as_str();
        let key = key.to_owned();
        let record_alone = async || match answer {
            Some(answer) => self.record_consent_answer(answer).await,
            None => Ok(()),
        };
        match realm.policy {
            LinkPolicy::Linked => {
                record_alone().await?;
                Ok(Resolution::NotLinked)
            }
            LinkPolicy::Provision => {
                let local = new_key();
                match self.insert_link(r, &local, &key, "provision", answer).await {
                    Ok(()) => Ok(Resolution::Account {
                        local_account_id: local,
                        how: LinkSource::Provision,
                    }),
                    // Another node provisioned this citizen at the same moment: theirs stands.
                    Err(DirectoryError::Conflict(_)) => {
                        let row = sqlx::query(
                            "SELECT local_account_id FROM account_links WHERE realm = $1 AND citizen_key = $2",
                        )
                        .bind(r.to_owned())
                        .bind(key.clone())
                        .fetch_one(&mut *self.conn().await?)
                        .await?;
                        Ok(Resolution::Account {
                            local_account_id: row.try_get(0)?,
                            how: LinkSource::Existing,
                        })
                    }
                    Err(other) => Err(other),
                }
            }
            LinkPolicy::Lookup => {
                record_alone().await?;
                let Some(config) = &realm.lookup else {
                    return Ok(Resolution::LookupUnavailable(
                        "no lookup endpoint configured".into(),
                    ));
                };
                let request = LookupRequest {
                    realm: r.to_owned(),
                    citizen_id: citizen.citizen_id.map(|n| n.as_str().to_owned()),
                    legacy_cmnd: citizen.legacy_cmnd.map(|n| n.as_str().to_owned()),
                    name: citizen.name.map(str::to_owned),
                    birthdate: citizen.birthdate.map(str::to_owned),
                };
                match lookup::lookup(http, config, &request, self.clock.now_secs()).await {
                    Ok(LookupAnswer::Found(local)) => {
                        match self.insert_link(r, &local, &key, "lookup", None).await {
                            Ok(()) => Ok(Resolution::Account {
                                local_account_id: local,
                                how: LinkSource::Lookup,
                            }),
                            Err(DirectoryError::Conflict(_)) => {
                                let detail = json!({ "local_account_id": local, "reason": "already linked to another citizen" });
                                self.event(
                                    &mut *self.conn().await?,
                                    "login",
                                    "lookup_conflict",
                                    Some(r),
                                    Some(&key),
                                    detail,
                                )
                                .await?;
                                Ok(Resolution::NeedsRelink)
                            }
                            Err(e) => Err(e),
                        }
                    }
                    Ok(LookupAnswer::NotFound) => Ok(Resolution::NotLinked),
                    Err(e) => Ok(Resolution::LookupUnavailable(e.to_string())),
                }
            }
        }
    }

    /// A login's new link with its `link_created` event, both or neither, and the consent
    /// `answer` that let it be made, in the same transaction (recorded even when the link is
    /// not made); `Conflict` when the account is linked already (to this citizen by another
    /// node at the same moment, or to someone else).
    async fn insert_link(
        &self,
        realm: &str,
        local: &str,
        key: &str,
        source: &str,
        answer: Option<&ConsentAnswer<'_>>,
    ) -> Result<(), DirectoryError> {
        const LINK: &str = "INSERT INTO account_links (realm, local_account_id, citizen_key, source, created_at) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING";
        const EVENT: &str = "INSERT INTO directory_events (event_id, at, actor, action, realm, citizen_key, detail)";
        let now = self.now();
        let detail = json!({ "source": source, "local_account_id": local });
        // The answer's statements, numbered after the link's seven parameters.
        let recorded = answer.map(|a| a.statements(7));
        let sql = if self.sqlite() {
            // SQLite has no INSERT inside WITH: the event follows the link in one transaction,
            // written only if the link was (changes() counts the previous statement's rows).
            let mut sql = String::from("BEGIN IMMEDIATE; ");
            if let Some((decision, grants)) = &recorded {
                sql.push_str(decision);
                sql.push_str("; ");
                if let Some(grants) = grants {
                    sql.push_str(grants);
                    sql.push_str("; ");
                }
            }
            sql.push_str(&format!(
                "{LINK}; {EVENT} SELECT $6, $5, 'login', 'link_created', $1, $3, $7 WHERE changes() = 1 RETURNING 1; COMMIT"
            ));
            sql
        } else {
            // One statement, so one round trip: the event is written from the inserted row, and
            // only if there is one.
            let mut sql = String::from("WITH ");
            if let Some((decision, grants)) = &recorded {
                sql.push_str(&format!("decision AS ({decision}), "));
                if let Some(grants) = grants {
                    sql.push_str(&format!("grants AS ({grants}), "));
                }
            }
            sql.push_str(&format!(
                "link AS ({LINK} RETURNING realm, citizen_key) \
                 {EVENT} SELECT $6, $5, 'login', 'link_created', realm, citizen_key, $7 FROM link"
            ));
            sql
        };
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(realm.to_owned())
            .bind(local.to_owned())
            .bind(key.to_owned())
            .bind(source.to_owned())
            .bind(now)
            .bind(new_key())
            .bind(detail.to_string());
        if let Some(answer) = answer {
            query = answer.bind(query, now);
        }
        let inserted = if self.sqlite() {
            self.sqlite_atomic(query).await?.len() == 1
        } else {
            query
                .execute(&mut *self.conn().await?)
                .await?
                .rows_affected()
                == 1
        };
        if !inserted {
            return Err(DirectoryError::Conflict(format!(
                "account {local} is already linked in realm {realm}"
            )));
        }
        Ok(())
    }

    /// Links a number to a local account ahead of the citizen's first sign-in (admin API).
    pub async fn link(
        &self,
        realm: &str,
        number: &AccountNumber,
        local: &str,
        actor: &str,
    ) -> Result<(), DirectoryError> {
        let (citizen_id, cmnd) = number.columns();
        let mut conn = self.conn().await?;
        let mut tx = sqlx::Connection::begin(&mut *conn).await?;
        let inserted = sqlx::query("INSERT INTO account_links (realm, local_account_id, citizen_id, legacy_cmnd, source, created_at) VALUES ($1, $2, $3, $4, 'admin', $5) ON CONFLICT DO NOTHING")
            .bind(realm.to_owned())
            .bind(local.to_owned())
            .bind(citizen_id)
            .bind(cmnd)
            .bind(self.now())
            .execute(&mut *tx)
            .await?;
        if inserted.rows_affected() == 0 {
            return Err(DirectoryError::Conflict(
                "the number or the account is already linked in this realm".into(),
            ));
        }
        self.event(
            &mut *tx,
            actor,
            "link_created",
            Some(realm),
            None,
            json!({ "number": number.masked(), "local_account_id": local, "source": "admin" }),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Removes a link; returns whether there was one.
    pub async fn unlink(
        &self,
        realm: &str,
        local: &str,
        actor: &str,
    ) -> Result<bool, DirectoryError> {
        let mut conn = self.conn().await?;
        let mut tx = sqlx::Connection::begin(&mut *conn).await?;
        let deleted =
            sqlx::query("DELETE FROM account_links WHERE realm = $1 AND local_account_id = $2")
                .bind(realm.to_owned())
                .bind(local.to_owned())
                .execute(&mut *tx)
                .await?;
        let existed = deleted.rows_affected() == 1;
        if existed {
            self.event(
                &mut *tx,
                actor,
                "link_removed",
                Some(realm),
                None,
                json!({ "local_account_id": local }),
            )
            .await?;
        }
        tx.commit().await?;
        Ok(existed)
    }

    /// The link of a number in a realm, whether bound or not.
    pub async fn find_link(
        &self,
        realm: &str,
        number: &AccountNumber,
    ) -> Result<Option<Link>, DirectoryError> {
        let (column, value) = match number {
            AccountNumber::Citizen(n) => ("citizen_id", n.as_str().to_owned()),
            AccountNumber::Cmnd(n) => ("legacy_cmnd", n.as_str().to_owned()),
        };
        let sql = format!(
            "SELECT {LINK_COLUMNS} FROM account_links l LEFT JOIN citizens c ON c.citizen_key = l.citizen_key \
             WHERE l.realm = $1 AND (l.{column} = $2 OR c.{column} = $2) ORDER BY l.local_account_id LIMIT 1"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(realm.to_owned())
            .bind(value)
            .fetch_optional(&mut *self.conn().await?)
            .await?;
        Ok(row.map(|r| link_from(&r)).transpose()?)
    }

    /// One page of a realm's links, by local account id, after `after`.
    pub async fn list_links(
        &self,
        realm: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Link>, DirectoryError> {
        let sql = format!(
            "SELECT {LINK_COLUMNS} FROM account_links l LEFT JOIN citizens c ON c.citizen_key = l.citizen_key \
             WHERE l.realm = $1 AND l.local_account_id > $2 ORDER BY l.local_account_id LIMIT $3"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(realm.to_owned())
            .bind(after.unwrap_or("").to_owned())
            .bind(i64::from(limit.clamp(1, 1000)))
            .fetch_all(&mut *self.conn().await?)
            .await?;
        Ok(rows.iter().map(link_from).collect::<Result<_, _>>()?)
    }

    /// Records an action of an operator or client (the admin API's audit trail).
    pub async fn record(
        &self,
        actor: &str,
        action: &str,
        realm: Option<&str>,
        detail: serde_json::Value,
    ) -> Result<(), DirectoryError> {
        self.event(&mut *self.conn().await?, actor, action, realm, None, detail)
            .await
    }

    /// Events, newest first (for `accounts show` and tests).
    pub async fn events(
        &self,
        citizen_key: Option<&str>,
        limit: i64,
    ) -> Result<Vec<Event>, DirectoryError> {
        let rows = sqlx::query("SELECT at, actor, action, realm, detail FROM directory_events WHERE ($1 IS NULL OR citizen_key = $1) ORDER BY at DESC, event_id LIMIT $2")
            .bind(citizen_key.map(str::to_owned))
            .bind(limit)
            .fetch_all(&mut *self.conn().await?)
            .await?;
        rows.iter()
            .map(|r| {
                let detail: String = r.try_get(4)?;
                Ok(Event {
                    at: r.try_get(0)?,
                    actor: r.try_get(1)?,
                    action: r.try_get(2)?,
                    realm: r.try_get(3)?,
                    detail: serde_json::from_str(&detail).unwrap_or(serde_json::Value::Null),
                })
            })
            .collect()
    }

    /// Everything about one number: the citizen records holding it, their links, their history.
    pub async fn show(&self, number: &AccountNumber) -> Result<CitizenView, DirectoryError> {
        let (column, value) = match number {
            AccountNumber::Citizen(n) => ("citizen_id", n.as_str().to_owned()),
            AccountNumber::Cmnd(n) => ("legacy_cmnd", n.as_str().to_owned()),
        };
        let sql = format!(
            "SELECT citizen_key, issuer, subject, citizen_id, legacy_cmnd, created_at, updated_at FROM citizens WHERE {column} = $1"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(value.clone())
            .fetch_all(&mut *self.conn().await?)
            .await?;
        let mut citizens = vec![];
        let mut keys = vec![];
        for r in &rows {
            let key: String = r.try_get(0)?;
            citizens.push(json!({
                "citizen_key": key, "issuer": r.try_get::<String, _>(1)?, "subject": r.try_get::<String, _>(2)?,
                "citizen_id": r.try_get::<Option<String>, _>(3)?, "legacy_cmnd": r.try_get::<Option<String>, _>(4)?,
                "created_at": r.try_get::<i64, _>(5)?, "updated_at": r.try_get::<i64, _>(6)?,
            }));
            keys.push(key);
        }
        let sql = format!(
            "SELECT {LINK_COLUMNS} FROM account_links l LEFT JOIN citizens c ON c.citizen_key = l.citizen_key \
             WHERE l.{column} = $1 OR c.{column} = $1 ORDER BY l.realm, l.local_account_id"
        );
        let links = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(value)
            .fetch_all(&mut *self.conn().await?)
            .await?;
        let mut events = vec![];
        for key in &keys {
            events.extend(self.events(Some(key), 100).await?);
        }
        Ok(CitizenView {
            citizens,
            links: links.iter().map(link_from).collect::<Result<_, _>>()?,
            events,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// A statement that fails inside a SQLite transaction sent whole undoes the ones before it,
    /// and the connection is left outside any transaction.
    #[tokio::test]
    async fn a_failed_sqlite_transaction_leaves_nothing_behind() {
        let dir = Directory::connect("sqlite::memory:").await.unwrap();
        let events = || async {
            sqlx::query_scalar::<_, i64>("SELECT count(*) FROM directory_events")
                .fetch_one(&mut *dir.conn().await.unwrap())
                .await
                .unwrap()
        };
        let write = |then: &'static str| {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "BEGIN IMMEDIATE; \
                 INSERT INTO directory_events (event_id, at, actor, action, detail) VALUES ($1, 0, 'test', 'written', '{{}}'); \
                 {then}; COMMIT"
            )))
            .bind(new_key())
        };
        let failed = dir
            .sqlite_atomic(write("INSERT INTO no_such_table VALUES (1)"))
            .await;
        assert!(failed.is_err());
        assert_eq!(events().await, 0, "the first insert was rolled back");
        dir.sqlite_atomic(write("SELECT 1")).await.unwrap();
        assert_eq!(
            events().await,
            1,
            "and the connection takes a new transaction"
        );
    }

    /// A SQLite transaction whose caller is dropped before it ends (a request cancelled while
    /// a slow statement runs) still commits, and leaves the one connection outside any
    /// transaction for the next.
    #[tokio::test]
    async fn a_sqlite_transaction_runs_to_its_end_when_its_caller_is_dropped() {
        let dir = Directory::connect("sqlite::memory:").await.unwrap();
        let write = |slow: &str| {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "BEGIN IMMEDIATE; \
                 INSERT INTO directory_events (event_id, at, actor, action, detail) VALUES ($1, 0, 'test', 'written', '{{}}'); \
                 {slow}; COMMIT"
            )))
            .bind(new_key())
        };
        let slow = "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 2000000) SELECT count(*) FROM n";
        let dropped =
            tokio::time::timeout(Duration::from_millis(20), dir.sqlite_atomic(write(slow))).await;
        assert!(dropped.is_err(), "the slow statement outlasts its caller");
        dir.sqlite_atomic(write("SELECT 1")).await.unwrap();
        let events = sqlx::query_scalar::<_, i64>("SELECT count(*) FROM directory_events")
            .fetch_one(&mut *dir.conn().await.unwrap())
            .await
            .unwrap();
        assert_eq!(events, 2, "both transactions committed");
    }

    /// SQLite's one connection, in use, makes another statement wait for it — and give up with
    /// an error after `ACQUIRE_TIMEOUT`, as the pool did — rather than open a second one.
    #[tokio::test]
    async fn a_statement_waits_for_sqlites_one_connection_and_gives_up_in_time() {
        let dir = Directory::connect("sqlite::memory:").await.unwrap();
        let in_use = dir.conn().await.unwrap();
        tokio::time::pause();
        let asked = tokio::time::Instant::now();
        let refused = dir.ping().await.unwrap_err();
        assert!(
            matches!(refused, DirectoryError::Database(sqlx::Error::PoolTimedOut)),
            "{refused}"
        );
        let waited = asked.elapsed();
        assert!(
            waited >= ACQUIRE_TIMEOUT && waited < ACQUIRE_TIMEOUT + Duration::from_secs(1),
            "{waited:?}"
        );
        tokio::time::resume();
        drop(in_use);
        dir.ping().await.unwrap();
    }

    /// On PostgreSQL a new citizen record's commit does not wait for the disk, and nothing else
    /// is so: the statement turns `synchronous_commit` off until its own transaction ends.
    #[tokio::test]
    async fn a_new_citizen_record_is_committed_without_waiting_for_the_disk_and_alone() {
        let Some((dir, db)) = connections::tests::postgres().await else {
            return;
        };
        let setting = "SELECT current_setting('synchronous_commit')";
        let mut conn = dir.conn().await.unwrap();
        // The server's own setting: `on` unless its configuration says otherwise.
        let before: String = sqlx::query_scalar(setting)
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        let mut tx = sqlx::Connection::begin(&mut *conn).await.unwrap();
        let inserted = sqlx::query(INSERT_CITIZEN_UNFLUSHED)
            .bind("key-1")
            .bind("https://idp.example")
            .bind("subject-1")
            .bind(Some("001085012345"))
            .bind(None::<String>)
            .bind(1_i64)
            .execute(&mut *tx)
            .await
            .unwrap();
        assert_eq!(inserted.rows_affected(), 1);
        let during: String = sqlx::query_scalar(setting)
            .fetch_one(&mut *tx)
            .await
            .unwrap();
        assert_eq!(during, "off", "the record's own transaction");
        tx.commit().await.unwrap();
        let after: String = sqlx::query_scalar(setting)
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        assert_eq!(after, before, "the connection's next transaction");
        drop(conn);

        // Through the directory: the record is written, once.
        let subject = CitizenInput {
            issuer: "https://idp.example",
            subject: "subject-2",
            citizen_id: None,
            legacy_cmnd: None,
            name: None,
            birthdate: None,
        };
        assert!(dir.insert_citizen("key-2", &subject).await.unwrap());
        assert!(!dir.insert_citizen("key-3", &subject).await.unwrap());
        let keys: Vec<String> =
            sqlx::query_scalar("SELECT citizen_key FROM citizens ORDER BY citizen_key")
                .fetch_all(&mut *dir.conn().await.unwrap())
                .await
                .unwrap();
        assert_eq!(keys, ["key-1", "key-2"]);
        dir.close().await;
        db.drop_database().await;
    }
}
