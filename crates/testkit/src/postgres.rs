//! PostgreSQL for the tests: a database of the test's own on the machine's server
//! (`postgres://postgres@127.0.0.1:5432/postgres`, or `LIENTHONG_TEST_POSTGRES_URL`), dropped
//! at the end.
//!
//! Where PostgreSQL is unreachable, the tests that need it skip with a loud notice, except when
//! `CI=true`, where they fail.

use sqlx::{Connection, Executor};

/// The variable that names the server, as an administrator's URL (any database on it).
const URL_VARIABLE: &str = "LIENTHONG_TEST_POSTGRES_URL";

/// A PostgreSQL database of the test's own, dropped by [`Database::drop_database`].
pub struct Database {
    admin_url: String,
    name: String,
    /// The URL of this database.
    pub url: String,
}

impl Database {
    /// A new, empty database named `lienthong_test_<process>_<random>`; `None`, said loudly,
    /// when the server is unreachable — a failure instead when `CI=true`.
    pub async fn create_or_skip() -> Option<Self> {
        let admin_url = std::env::var(URL_VARIABLE)
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
        let mut admin = match sqlx::PgConnection::connect(&admin_url).await {
            Ok(c) => c,
            Err(e) => {
                assert!(
                    std::env::var("CI").as_deref() != Ok("true"),
                    "CI=true and PostgreSQL at {admin_url} is unreachable: {e}"
                );
                eprintln!(
                    "\n!!!!! SKIPPED: PostgreSQL at {admin_url} unreachable ({e}); the tests that need it did not run !!!!!\n"
                );
                return None;
            }
        };
        let name = format!(
            "lienthong_test_{}_{}",
            std::process::id(),
            lienthong_protocol::secret::random_token(6)
                .to_lowercase()
                .replace(['-', '_'], "x")
        );
        admin
            .execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .await
            .unwrap();
        let _ = admin.close().await;
        let mut url = url::Url::parse(&admin_url).unwrap();
        url.set_path(&name);
        Some(Self {
            admin_url,
            name,
            url: url.into(),
        })
    }

    /// The database's name on the server.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Drops the database, ending whatever connections to it are still open.
    pub async fn drop_database(self) {
        let mut admin = sqlx::PgConnection::connect(&self.admin_url)
            .await
            .expect("PostgreSQL reachable to drop the test's database");
        admin
            .execute(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            )))
            .await
            .expect("the test's database dropped");
    }
}
