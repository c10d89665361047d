//! PostgreSQL for the tests: a database of the test's own on the machine's server
//! (`postgres://postgres@127.0.0.1:5432/postgres`, or `LIENTHONG_TEST_POSTGRES_URL`), dropped
//! at the end.
//!
//! Where PostgreSQL is unreachable, the tests that need it skip with a loud notice, except when
//! `CI=true`, where they fail.

use sqlx::{Connection, Executor};

/// A PostgreSQL database of the test's own, dropped at the end.
pub struct Database {
    admin_url: String,
    name: String,
    pub url: String,
}

impl Database {
    pub async fn create_or_skip() -> Option<Self> {
        let admin_url = std::env::var("LIENTHONG_TEST_POSTGRES_URL")
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
            "lienthong_test_{}",
            lienthong_protocol::secret::random_token(8)
                .to_lowercase()
                .replace(['-', '_'], "x")
        );
        admin
            .execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .await
            .unwrap();
        let mut url = url::Url::parse(&admin_url).unwrap();
        url.set_path(&name);
        Some(Self {
            admin_url,
            name,
            url: url.into(),
        })
    }

    pub async fn drop_database(self) {
        if let Ok(mut admin) = sqlx::PgConnection::connect(&self.admin_url).await {
            let _ = admin
                .execute(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                    self.name
                )))
                .await;
        }
    }
}
