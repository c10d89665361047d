//! Durable records the broker keeps beside the directory: consents and shared signing keys.

use sqlx::Row;

use super::{ConsentAnswer, ConsentQuery, Directory, DirectoryError};

/// A consent to claims, each row `(subject_key, client_id, claim, granted_at)`; one given again
/// renews its time.
const GRANT: &str = "INSERT INTO consents (subject_key, client_id, claim, granted_at) VALUES";
const GRANT_RENEWS: &str =
    "ON CONFLICT (subject_key, client_id, claim) DO UPDATE SET granted_at = excluded.granted_at";

type AnyQuery<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>;

impl ConsentAnswer<'_> {
    /// Whether the answer grants anything (a consent row per claim).
    fn grants(&self) -> bool {
        self.allowed && !self.claims.is_empty()
    }

    /// The statements that record the answer, their parameters numbered after the `before`
    /// that the query binds first: the decision, and the consents it grants, if any.
    pub(super) fn statements(&self, before: usize) -> (String, Option<String>) {
        let p = |n: usize| format!("${}", before + n);
        let decision = format!(
            "INSERT INTO consent_records (record_id, subject_key, client_id, claims, wording, decision, decided_at) \
             VALUES ({}, {}, {}, {}, {}, {}, {})",
            p(1),
            p(2),
            p(3),
            p(4),
            p(5),
            p(6),
            p(7)
        );
        // The consents reuse the decision's parameters: subject, client and time.
        let grants = self.grants().then(|| {
            let rows: Vec<String> = (0..self.claims.len())
                .map(|i| format!("({}, {}, {}, {})", p(2), p(3), p(8 + i), p(7)))
                .collect();
            format!("{GRANT} {} {GRANT_RENEWS}", rows.join(", "))
        });
        (decision, grants)
    }

    /// Binds the parameters of [`ConsentAnswer::statements`], after those `query` has.
    pub(super) fn bind<'q>(&self, query: AnyQuery<'q>, now: i64) -> AnyQuery<'q> {
        let mut query = query
            .bind(lienthong_protocol::secret::random_token(16))
            .bind(self.subject_key.to_owned())
            .bind(self.client_id.to_owned())
            .bind(serde_json::to_string(self.claims).expect("a list of strings"))
            .bind(self.wording.to_owned())
            .bind(if self.allowed { "allow" } else { "refuse" }.to_owned())
            .bind(now);
        if self.grants() {
            for claim in self.claims {
                query = query.bind(claim.clone());
            }
        }
        query
    }
}

impl Directory {
    /// The answer to a consent question alone (a login asks it with its account:
    /// [`Directory::prepare`]).
    pub async fn consented_claims(
        &self,
        q: ConsentQuery<'_>,
    ) -> Result<Vec<String>, DirectoryError> {
        let rows = sqlx::query(
            "SELECT claim FROM consents WHERE subject_key = $1 AND client_id = $2 AND granted_at >= $3",
        )
        .bind(q.subject_key.to_owned())
        .bind(q.client_id.to_owned())
        .bind(q.since)
        .fetch_all(&mut *self.conn().await?)
        .await?;
        Ok(rows
            .iter()
            .map(|r| r.try_get::<String, _>(0))
            .collect::<Result<_, _>>()?)
    }

    /// Records a citizen's answer to a consent question — the claims, the wording they were
    /// shown, the decision — and, if they allowed it, their consent to each claim: added, or its
    /// time renewed, none lost to a consent recorded at the same moment elsewhere. PostgreSQL
    /// takes both in one statement; SQLite, whose WITH takes no INSERT, as one transaction of
    /// two statements sent together.
    pub async fn record_consent_answer(
        &self,
        answer: &ConsentAnswer<'_>,
    ) -> Result<(), DirectoryError> {
        let (decision, grants) = answer.statements(0);
        let Some(grants) = grants else {
            let query = sqlx::query(sqlx::AssertSqlSafe(decision));
            answer
                .bind(query, self.now())
                .execute(&mut *self.conn().await?)
                .await?;
            return Ok(());
        };
        let sql = if self.sqlite() {
            format!("BEGIN IMMEDIATE; {decision}; {grants}; COMMIT")
        } else {
            format!("WITH decision AS ({decision}) {grants}")
        };
        let query = answer.bind(sqlx::query(sqlx::AssertSqlSafe(sql)), self.now());
        if self.sqlite() {
            self.sqlite_atomic(query).await?;
        } else {
            query.execute(&mut *self.conn().await?).await?;
        }
        Ok(())
    }

    /// The consent decisions recorded for `client_id`, newest first: (claims, wording,
    /// decision, decided_at).
    pub async fn consent_decisions(
        &self,
        client_id: &str,
    ) -> Result<Vec<(Vec<String>, String, String, i64)>, DirectoryError> {
        let rows = sqlx::query(
            "SELECT claims, wording, decision, decided_at FROM consent_records WHERE client_id = $1 ORDER BY decided_at DESC, record_id",
        )
        .bind(client_id.to_owned())
        .fetch_all(&mut *self.conn().await?)
        .await?;
        rows.iter()
            .map(|r| {
                let claims: String = r.try_get(0)?;
                Ok((
                    serde_json::from_str(&claims).unwrap_or_default(),
                    r.try_get(1)?,
                    r.try_get(2)?,
                    r.try_get(3)?,
                ))
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }

    /// The newest `limit` generations of the shared signing keys for `alg`, newest first, as
    /// the broker sealed them.
    pub async fn signing_keys(
        &self,
        alg: &str,
        limit: i64,
    ) -> Result<Vec<(i64, String)>, DirectoryError> {
        let rows = sqlx::query(
            "SELECT generation, sealed_key FROM signing_keys WHERE alg = $1 ORDER BY generation DESC LIMIT $2",
        )
        .bind(alg.to_owned())
        .bind(limit)
        .fetch_all(&mut *self.conn().await?)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }

    /// Adds generation `generation` for `alg`, unless it exists already (another node or
    /// operator got there first); returns whether this call added it.
    pub async fn add_signing_key(
        &self,
        alg: &str,
        generation: i64,
        sealed: &str,
    ) -> Result<bool, DirectoryError> {
        let done = sqlx::query(
            "INSERT INTO signing_keys (alg, generation, sealed_key, created_at) VALUES ($1, $2, $3, $4) ON CONFLICT (alg, generation) DO NOTHING",
        )
        .bind(alg.to_owned())
        .bind(generation)
        .bind(sealed.to_owned())
        .bind(self.now())
        .execute(&mut *self.conn().await?)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Forgets the generations of `alg` below `generation` (keys no token can need any more).
    pub async fn prune_signing_keys(
        &self,
        alg: &str,
        generation: i64,
    ) -> Result<(), DirectoryError> {
        sqlx::query("DELETE FROM signing_keys WHERE alg = $1 AND generation < $2")
            .bind(alg.to_owned())
            .bind(generation)
            .execute(&mut *self.conn().await?)
            .await?;
        Ok(())
    }

    /// Whether the database answers (for `/readyz`).
    pub async fn ping(&self) -> Result<(), DirectoryError> {
        sqlx::query("SELECT 1")
            .execute(&mut *self.conn().await?)
            .await?;
        Ok(())
    }
}
