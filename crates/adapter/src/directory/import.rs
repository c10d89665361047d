//! Bulk import and export of a realm's links (`lienthong accounts import|export`).
//!
//! The file is validated whole before anything is written: every bad row is reported with its
//! line number and reason. The import then runs in one transaction, in multi-row `INSERT ... ON
//! CONFLICT DO NOTHING` batches (one statement per thousand rows is what makes a million rows a
//! matter of seconds). A row already present with the same values is "unchanged", so importing
//! the same file again changes nothing; a row that contradicts what is stored is a conflict.

use std::collections::HashMap;
use std::io::{Read, Write};

use serde::Serialize;
use serde_json::json;
use sqlx::Row;

use super::{Directory, DirectoryError};
use lienthong_citizen::{CitizenId, LegacyCmnd};

/// The number a link is keyed by: the 12-digit ID number or the old 9-digit CMND.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum AccountNumber {
    Citizen(CitizenId),
    Cmnd(LegacyCmnd),
}

impl AccountNumber {
    /// 12 digits: an ID number; 9 digits: an old CMND.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let raw = raw.trim();
        if raw.len() == 9 {
            LegacyCmnd::parse(raw)
                .map(Self::Cmnd)
                .map_err(|e| format!("old CMND number: {e}"))
        } else {
            CitizenId::parse(raw)
                .map(Self::Citizen)
                .map_err(|e| format!("ID number: {e}"))
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Self::Citizen(n) => n.as_str(),
            Self::Cmnd(n) => n.as_str(),
        }
    }

    pub fn masked(&self) -> String {
        match self {
            Self::Citizen(n) => n.masked(),
            Self::Cmnd(n) => n.masked(),
        }
    }

    /// The `(citizen_id, legacy_cmnd)` column values.
    pub(crate) fn columns(&self) -> (Option<String>, Option<String>) {
        match self {
            Self::Citizen(n) => (Some(n.as_str().to_owned()), None),
            Self::Cmnd(n) => (None, Some(n.as_str().to_owned())),
        }
    }
}

/// One good row of an import file.
#[derive(Debug, Clone)]
pub struct ImportRow {
    pub line: u64,
    pub number: AccountNumber,
    pub local_account_id: String,
}

/// A row that was not imported, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RowError {
    pub line: u64,
    pub reason: String,
}

#[derive(Debug, Default, Serialize)]
pub struct ImportReport {
    pub imported: u64,
    pub unchanged: u64,
    /// Rows contradicting links already stored.
    pub conflicts: Vec<RowError>,
    /// Whether the transaction was committed.
    pub committed: bool,
}

const MAX_ACCOUNT_ID: usize = 200;

/// Reads `number,local_account_id` rows (an optional header line is skipped). Returns the good
/// rows and every bad one with its line and reason, including numbers or accounts that appear
/// twice in the file.
pub fn parse_csv(input: impl Read) -> (Vec<ImportRow>, Vec<RowError>) {
    let mut rows = CsvRows::new(input);
    let mut all = Vec::new();
    while let Some(chunk) = rows.next_chunk(BATCH) {
        all.extend(chunk);
    }
    (all, rows.errors)
}

/// An import file read incrementally, a chunk of good rows at a time; bad rows collect in
/// `errors`.
pub struct CsvRows<R: Read> {
    reader: csv::Reader<R>,
    record: csv::StringRecord,
    line: u64,
    numbers: HashMap<AccountNumber, u64>,
    accounts: HashMap<String, u64>,
    pub errors: Vec<RowError>,
}

impl<R: Read> CsvRows<R> {
    pub fn new(input: R) -> Self {
        let reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .trim(csv::Trim::All)
            .from_reader(input);
        Self {
            reader,
            record: csv::StringRecord::new(),
            line: 0,
            numbers: HashMap::new(),
            accounts: HashMap::new(),
            errors: Vec::new(),
        }
    }

    /// Up to `size` good rows; `None` at the end of the file.
    pub fn next_chunk(&mut self, size: usize) -> Option<Vec<ImportRow>> {
        let mut chunk = Vec::with_capacity(size);
        while chunk.len() < size {
            self.line += 1;
            let line = self.line;
            match self.reader.read_record(&mut self.record) {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) => {
                    self.errors.push(RowError {
                        line,
                        reason: format!("unreadable CSV: {e}"),
                    });
                    continue;
                }
            }
            if let Some(row) = self.check(line) {
                chunk.push(row);
            }
        }
        (!chunk.is_empty()).then_some(chunk)
    }

    /// The current record as a good row, or its error recorded.
    fn check(&mut self, line: u64) -> Option<ImportRow> {
        let record = &self.record;
        if line == 1
            && record
                .get(0)
                .is_some_and(|f| !f.is_empty() && !f.bytes().all(|b| b.is_ascii_digit()))
        {
            return None; // a header
        }
        if record.len() == 1 && record.get(0) == Some("") {
            return None; // a blank line
        }
        let mut fail = |reason: String| {
            self.errors.push(RowError { line, reason });
            None
        };
        if record.len() != 2 {
            return fail(format!(
                "expected 2 columns (number, local account id), found {}",
                record.len()
            ));
        }
        let number = match AccountNumber::parse(&record[0]) {
            Ok(n) => n,
            Err(reason) => return fail(reason),
        };
        let local = &record[1];
        if local.is_empty() || local.len() > MAX_ACCOUNT_ID || local.chars().any(char::is_control) {
            return fail(format!(
                "local account id must be 1 to {MAX_ACCOUNT_ID} printable characters"
            ));
        }
        let local = local.to_owned();
        if let Some(first) = self.numbers.get(&number) {
            let reason = format!("number {} already on line {first}", number.masked());
            return fail(reason);
        }
        if let Some(first) = self.accounts.get(&local) {
            let reason = format!("local account id already on line {first}");
            return fail(reason);
        }
        self.numbers.insert(number.clone(), line);
        self.accounts.insert(local.clone(), line);
        Some(ImportRow {
            line,
            number,
            local_account_id: local,
        })
    }
}

/// The batch INSERT for a number of rows. Every full batch is the same statement, so it is
/// built once per size and shared (`Arc<str>`, which sqlx takes without copying).
#[derive(Default)]
struct InsertStatement {
    rows: usize,
    sql: Option<std::sync::Arc<str>>,
}

impl InsertStatement {
    fn for_rows(&mut self, dir: &Directory, rows: usize) -> std::sync::Arc<str> {
        match &self.sql {
            Some(sql) if self.rows == rows => sql.clone(),
            _ => {
                // Realm and time are bound once, the three per-row values for each row (both
                // SQLite and PostgreSQL name VALUES columns column1..n; SQLite needs the WHERE
                // to parse ON CONFLICT after a SELECT).
                let mut sql = format!(
                    "INSERT INTO account_links (realm, local_account_id, citizen_id, legacy_cmnd, source, created_at) \
                     SELECT {}, column1, column2, column3, 'import', {} FROM (VALUES ",
                    dir.params(1, 1),
                    dir.params(2, 1)
                );
                for i in 0..rows {
                    if i > 0 {
                        sql.push(',');
                    }
                    sql.push('(');
                    sql.push_str(&dir.params(i * 3 + 3, 3));
                    sql.push(')');
                }
                sql.push_str(") AS v WHERE true ON CONFLICT DO NOTHING");
                let sql: std::sync::Arc<str> = sql.into();
                (self.rows, self.sql) = (rows, Some(sql.clone()));
                sql
            }
        }
    }
}

/// Rows per INSERT statement: 30,002 parameters, under SQLite's limit of 32,766.
const BATCH: usize = 10_000;

impl Directory {
    /// Imports validated rows into `realm` in one transaction. With `keep_partial` false, any
    /// conflict rolls everything back; with true, the rows without conflict are kept.
    pub async fn import(
        &self,
        realm: &str,
        rows: &[ImportRow],
        keep_partial: bool,
        actor: &str,
    ) -> Result<ImportReport, DirectoryError> {
        let mut report = ImportReport::default();
        let mut conn = self.conn().await?;
        let mut tx = sqlx::Connection::begin(&mut *conn).await?;
        let created_at = self.now();
        let mut statement = InsertStatement::default();
        for batch in rows.chunks(BATCH) {
            self.insert_batch(
                &mut tx,
                realm,
                batch,
                created_at,
                &mut statement,
                &mut report,
            )
            .await?;
        }
        self.finish_import(tx, realm, report, keep_partial, true, actor)
            .await
    }

    /// Reads and imports a CSV file at once: a blocking thread parses the next batch while
    /// the database writes the previous one, in one transaction. Bad rows are all reported; if
    /// there is any (or any conflict) and not `keep_partial`, nothing is kept.
    pub async fn import_csv<R: Read + Send + 'static>(
        &self,
        realm: &str,
        input: R,
        keep_partial: bool,
        actor: &str,
    ) -> Result<(ImportReport, Vec<RowError>), DirectoryError> {
        let bad_row_seen = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (sender, mut batches) = tokio::sync::mpsc::channel::<Vec<ImportRow>>(2);
        let flag = bad_row_seen.clone();
        let parser = tokio::task::spawn_blocking(move || {
            let mut rows = CsvRows::new(input);
            while let Some(chunk) = rows.next_chunk(BATCH) {
                flag.store(
                    !rows.errors.is_empty(),
                    std::sync::atomic::Ordering::Relaxed,
                );
                if sender.blocking_send(chunk).is_err() {
                    break;
                }
            }
            rows.errors
        });
        let mut report = ImportReport::default();
        let mut conn = self.conn().await?;
        let mut tx = sqlx::Connection::begin(&mut *conn).await?;
        let created_at = self.now();
        let mut statement = InsertStatement::default();
        while let Some(batch) = batches.recv().await {
            // Once a bad row is known and the import is all-or-nothing, writing more is waste;
            // reading on still reports every bad row.
            if keep_partial || !bad_row_seen.load(std::sync::atomic::Ordering::Relaxed) {
                self.insert_batch(
                    &mut tx,
                    realm,
                    &batch,
                    created_at,
                    &mut statement,
                    &mut report,
                )
                .await?;
            }
        }
        let errors = parser
            .await
            .map_err(|e| DirectoryError::Conflict(format!("CSV reader failed: {e}")))?;
        let report = self
            .finish_import(tx, realm, report, keep_partial, errors.is_empty(), actor)
            .await?;
        Ok((report, errors))
    }

    async fn insert_batch(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        realm: &str,
        batch: &[ImportRow],
        created_at: i64,
        statement: &mut InsertStatement,
        report: &mut ImportReport,
    ) -> Result<(), DirectoryError> {
        let sql = statement.for_rows(self, batch.len());
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(realm.to_owned())
            .bind(created_at);
        for row in batch {
            let (citizen_id, cmnd) = row.number.columns();
            query = query
                .bind(row.local_account_id.clone())
                .bind(citizen_id)
                .bind(cmnd);
        }
        let inserted = query.execute(&mut **tx).await?.rows_affected();
        report.imported += inserted;
        if inserted < batch.len() as u64 {
            self.classify_skipped(tx, realm, batch, inserted, report)
                .await?;
        }
        Ok(())
    }

    /// Commits when everything was good or partial imports are allowed; else rolls back.
    async fn finish_import(
        &self,
        mut tx: sqlx::Transaction<'_, sqlx::Any>,
        realm: &str,
        mut report: ImportReport,
        keep_partial: bool,
        rows_all_good: bool,
        actor: &str,
    ) -> Result<ImportReport, DirectoryError> {
        let ok = (rows_all_good && report.conflicts.is_empty()) || keep_partial;
        if ok {
            let detail = json!({ "imported": report.imported, "unchanged": report.unchanged, "conflicts": report.conflicts.len() });
            self.event(&mut *tx, actor, "import", Some(realm), None, detail)
                .await?;
            tx.commit().await?;
        } else {
            tx.rollback().await?;
            report.imported = 0;
            report.unchanged = 0;
        }
        report.committed = ok;
        Ok(report)
    }

    /// After a batch inserted fewer rows than it had. Every skipped row either equals the stored
    /// link (unchanged) or contradicts it (a conflict, which we can name), so the unchanged count
    /// is exactly the skipped rows minus the conflicts. Rows are compared with the number the
    /// link was made with, so a citizen's later change of ID number does not turn a re-import
    /// into conflicts.
    async fn classify_skipped(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        realm: &str,
        batch: &[ImportRow],
        inserted: u64,
        report: &mut ImportReport,
    ) -> Result<(), DirectoryError> {
        let sql = format!(
            "SELECT local_account_id, citizen_id, legacy_cmnd FROM account_links WHERE realm = {} AND local_account_id IN ({})",
            self.params(1, 1),
            self.params(2, batch.len())
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(realm.to_owned());
        for row in batch {
            query = query.bind(row.local_account_id.clone());
        }
        let mut stored = HashMap::new();
        for r in query.fetch_all(&mut **tx).await? {
            let local: String = r.try_get(0)?;
            stored.insert(
                local,
                (
                    r.try_get::<Option<String>, _>(1)?,
                    r.try_get::<Option<String>, _>(2)?,
                ),
            );
        }
        let conflicts_before = report.conflicts.len();
        for row in batch {
            let columns = row.number.columns();
            match stored.get(&row.local_account_id) {
                Some(link) if *link == columns => {}
                Some(_) => report.conflicts.push(RowError {
                    line: row.line,
                    reason: "the local account id is already linked to another citizen".into(),
                }),
                None => report.conflicts.push(RowError {
                    line: row.line,
                    reason: format!(
                        "number {} is already linked to another account",
                        row.number.masked()
                    ),
                }),
            }
        }
        let skipped = batch.len() as u64 - inserted;
        report.unchanged += skipped - (report.conflicts.len() - conflicts_before) as u64;
        Ok(())
    }

    /// Writes a realm's links as `number,local_account_id` CSV (the import format).
    pub async fn export(&self, realm: &str, out: &mut impl Write) -> Result<u64, DirectoryError> {
        let mut writer = csv::Writer::from_writer(out);
        writer
            .write_record(["number", "local_account_id"])
            .map_err(|e| DirectoryError::Conflict(e.to_string()))?;
        let mut after: Option<String> = None;
        let mut count = 0;
        loop {
            let page = self.list_links(realm, after.as_deref(), 1000).await?;
            let Some(last) = page.last() else { break };
            after = Some(last.local_account_id.clone());
            for link in &page {
                let number = link
                    .citizen_id
                    .as_deref()
                    .or(link.legacy_cmnd.as_deref())
                    .unwrap_or("");
                writer
                    .write_record([number, &link.local_account_id])
                    .map_err(|e| DirectoryError::Conflict(e.to_string()))?;
                count += 1;
            }
        }
        writer
            .flush()
            .map_err(|e| DirectoryError::Conflict(e.to_string()))?;
        Ok(count)
    }
}
