//! Durable records the broker keeps beside the directory: consents and shared signing keys.

use sqlx::Row;

use super::{Directory, DirectoryError};

impl Directory {
    /// The claims `subject_key` has agreed to release to `client_id` since `since` (Unix
    /// seconds).
    pub async fn consented_claims(
        &self,
        subject_key: &str,
        client_id: &str,
        since: i64,
    ) -> Result<Vec<String>, DirectoryError> {
        let rows = sqlx::query(
            "SELECT claim FROM consents WHERE subject_key = $1 AND client_id = $2 AND granted_at >= $3",
        )
        .bind(subject_key.to_owned())
        .bind(client_id.to_owned())
        .bind(since)
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .iter()
            .map(|r| r.try_get::<String, _>(0))
            .collect::<Result<_, _>>()?)
    }

    /// Records consent to `claims`: each is added (or its time renewed), none is lost to a
    /// consent recorded at the same moment elsewhere.
    pub async fn record_consent(
        &self,
        subject_key: &str,
        client_id: &str,
        claims: &[String],
    ) -> Result<(), DirectoryError> {
        let now = self.now();
        let mut tx = self.pool().begin().await?;
        for claim in claims {
            sqlx::query(
                "INSERT INTO consents (subject_key, client_id, claim, granted_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (subject_key, client_id, claim) DO UPDATE SET granted_at = excluded.granted_at",
            )
            .bind(subject_key.to_owned())
            .bind(client_id.to_owned())
            .bind(claim.clone())
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The shared signing key for `alg`, as the broker sealed it; if there is none yet,
    /// `candidate` becomes it. Of several nodes starting at once, every one gets the same key.
    pub async fn shared_signing_key(
        &self,
        alg: &str,
        candidate: &str,
    ) -> Result<String, DirectoryError> {
        sqlx::query(
            "INSERT INTO signing_keys (alg, sealed_key, created_at) VALUES ($1, $2, $3) ON CONFLICT (alg) DO NOTHING",
        )
        .bind(alg.to_owned())
        .bind(candidate.to_owned())
        .bind(self.now())
        .execute(self.pool())
        .await?;
        let row = sqlx::query("SELECT sealed_key FROM signing_keys WHERE alg = $1")
            .bind(alg.to_owned())
            .fetch_one(self.pool())
            .await?;
        Ok(row.try_get(0)?)
    }

    /// Whether the database answers (for `/readyz`).
    pub async fn ping(&self) -> Result<(), DirectoryError> {
        sqlx::query("SELECT 1").execute(self.pool()).await?;
        Ok(())
    }
}
