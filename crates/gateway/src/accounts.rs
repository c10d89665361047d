//! `lienthong accounts ...`: bulk import and export of a realm's links, and what the directory
//! knows of one number. Works on the directory of a broker configuration (`--config`), or on
//! any directory named with `--database` / `LIENTHONG_DATABASE_URL`.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use lienthong_adapter::directory::AccountNumber;

#[derive(clap::Args)]
pub struct Target {
    /// The broker configuration whose `[directory]` to use.
    #[arg(long, short, global = true)]
    config: Option<PathBuf>,
    /// The directory's URL (sqlite://... or postgres://...); overrides --config.
    #[arg(long, env = "LIENTHONG_DATABASE_URL", global = true)]
    database: Option<String>,
}

#[derive(clap::Subcommand)]
pub enum AccountsCommand {
    /// Import `number,local_account_id` rows (12-digit ID number or old 9-digit CMND). Every bad
    /// row is reported by line; nothing is imported if any row is bad, unless --skip-invalid.
    /// Exit status: 0 all rows good, 1 some rows bad.
    Import {
        #[arg(long)]
        realm: String,
        file: PathBuf,
        /// Import the good rows anyway (bad rows are still reported).
        #[arg(long)]
        skip_invalid: bool,
    },
    /// Write a realm's links as CSV (the import format) to standard output.
    Export {
        #[arg(long)]
        realm: String,
    },
    /// Show the citizen records, links and history of one number, as JSON.
    Show { number: String },
}

async fn directory(target: &Target) -> anyhow::Result<lienthong_broker::Directory> {
    let url = match (&target.database, &target.config) {
        (Some(url), _) => url.clone(),
        (None, Some(path)) => {
            crate::settings::load::<lienthong_broker::Config>(path, "LIENTHONG")?
                .directory
                .url
        }
        (None, None) => lienthong_broker::config::DirectoryConfig::default().url,
    };
    crate::runtime::connect_directory(&url).await
}

pub async fn run(target: Target, command: AccountsCommand) -> anyhow::Result<ExitCode> {
    let dir = directory(&target).await?;
    match command {
        AccountsCommand::Import {
            realm,
            file,
            skip_invalid,
        } => {
            let input = std::fs::File::open(&file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let (report, mut bad) = dir
                .import_csv(&realm, std::io::BufReader::new(input), skip_invalid, "cli")
                .await?;
            bad.extend(report.conflicts.iter().cloned());
            let report = Some(report);
            bad.sort_by_key(|e| e.line);
            for e in &bad {
                eprintln!("{}:{}: {}", file.display(), e.line, e.reason);
            }
            match report {
                Some(r) if r.committed => println!(
                    "realm {realm}: {} imported, {} unchanged, {} rejected",
                    r.imported,
                    r.unchanged,
                    bad.len()
                ),
                _ => println!(
                    "realm {realm}: nothing imported: {} bad row(s) (use --skip-invalid to import the others)",
                    bad.len()
                ),
            }
            Ok(if bad.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        AccountsCommand::Export { realm } => {
            let mut out = std::io::stdout().lock();
            let count = dir.export(&realm, &mut out).await?;
            out.flush()?;
            eprintln!("realm {realm}: {count} link(s) exported");
            Ok(ExitCode::SUCCESS)
        }
        AccountsCommand::Show { number } => {
            let number = AccountNumber::parse(&number).map_err(|e| anyhow::anyhow!(e))?;
            let view = dir.show(&number).await?;
            println!("{}", serde_json::to_string_pretty(&view)?);
            Ok(if view.citizens.is_empty() && view.links.is_empty() {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            })
        }
    }
}
