//! Directory benchmark (run: `cargo bench -p lienthong-adapter --bench directory`).
//!
//! 1. Import: 1,000,000 generated `number,local_account_id` rows, CSV parsing included, into a
//!    fresh SQLite file, five times; prints rows/s per run, the median and the spread.
//! 2. Per-login lookup: `Directory::resolve` for citizens who already have a link (the hot path
//!    of every sign-in: the citizen record by upstream subject, then the realm's link); prints
//!    p50, p99 and max over 20,000 calls.
//!
//! Targets (issue 3, on the 2-core machine): import >= 100,000 rows/s, lookup p99 < 1 ms.

use std::time::{Duration, Instant};

use lienthong_adapter::directory::{CitizenInput, Directory, Resolution};
use lienthong_adapter::policy::{LinkPolicy, RealmConfig};
use lienthong_citizen::{CitizenId, province};

const LOOKUPS: usize = 20_000;

/// `LIENTHONG_BENCH_ROWS` / `LIENTHONG_BENCH_RUNS` shrink the run while investigating.
fn setting(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn number(i: usize) -> String {
    let code = province::all()[i % 63].code;
    let rest = i / 63;
    format!(
        "{code}{}{:02}{:06}",
        rest % 10,
        (rest / 10) % 100,
        rest / 1000
    )
}

fn csv(rows: usize) -> String {
    let mut s = String::with_capacity(rows * 30);
    s.push_str("number,local_account_id\n");
    for i in 0..rows {
        s.push_str(&number(i));
        s.push_str(&format!(",ACC-{i:07}\n"));
    }
    s
}

async fn fresh(tag: &str) -> (Directory, std::path::PathBuf) {
    let path =
        std::env::temp_dir().join(format!("lienthong-bench-{tag}-{}.db", std::process::id()));
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    (
        Directory::connect(&format!("sqlite://{}?mode=rwc", path.display()))
            .await
            .unwrap(),
        path,
    )
}

fn citizen<'a>(subject: &'a str, n: &'a CitizenId) -> CitizenInput<'a> {
    CitizenInput {
        issuer: "https://idp",
        subject,
        citizen_id: Some(n),
        legacy_cmnd: None,
        name: None,
        birthdate: None,
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let (rows_n, runs) = (
        setting("LIENTHONG_BENCH_ROWS", 1_000_000),
        setting("LIENTHONG_BENCH_RUNS", 5),
    );
    let text = csv(rows_n);
    println!(
        "directory benchmark: {rows_n} rows, {runs} runs, SQLite file in {}",
        std::env::temp_dir().display()
    );
    let mut rates = vec![];
    let mut last = None;
    for run in 0..runs {
        let (dir, path) = fresh(&format!("import{run}")).await;
        let input = std::io::Cursor::new(text.clone().into_bytes());
        let started = Instant::now();
        let (report, errors) = dir
            .import_csv("bench", input, false, "bench")
            .await
            .unwrap();
        assert!(errors.is_empty());
        let elapsed = started.elapsed();
        assert_eq!(report.imported as usize, rows_n);
        let rate = rows_n as f64 / elapsed.as_secs_f64();
        println!(
            "  import run {}: {:.2} s (CSV parsed, validated and written), {:.0} rows/s",
            run + 1,
            elapsed.as_secs_f64(),
            rate
        );
        rates.push(rate);
        if let Some((d, p)) = last.replace((dir, path)) {
            let d: Directory = d;
            d.close().await;
            let _ = std::fs::remove_file(p);
        }
    }
    rates.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!(
        "import: median {:.0} rows/s, min {:.0}, max {:.0} (spread {:.1}%)",
        rates[runs / 2],
        rates[0],
        rates[runs - 1],
        (rates[runs - 1] - rates[0]) / rates[runs / 2] * 100.0
    );

    // Per-login lookup on the last imported directory: bind 2,000 citizens by
    // a first sign-in, then time repeated sign-ins of theirs.
    let (dir, path) = last.unwrap();
    let realm = RealmConfig {
        policy: LinkPolicy::Linked,
        ..RealmConfig::provision("bench")
    };
    lienthong_protocol::crypto::install();
    let http = reqwest::Client::new();
    let people: Vec<(String, CitizenId)> = (0..2000)
        .map(|i| {
            (
                format!("subject-{i}"),
                CitizenId::parse(&number((i * 499) % rows_n)).unwrap(),
            )
        })
        .collect();
    for (subject, n) in &people {
        let c = citizen(subject, n);
        assert!(matches!(
            dir.resolve(&realm, &c, &http).await.unwrap(),
            Resolution::Account { .. }
        ));
    }
    let mut times = Vec::with_capacity(LOOKUPS);
    for i in 0..LOOKUPS {
        let (subject, n) = &people[(i * 7919) % people.len()];
        let c = citizen(subject, n);
        let started = Instant::now();
        let r = dir.resolve(&realm, &c, &http).await.unwrap();
        times.push(started.elapsed());
        assert!(matches!(r, Resolution::Account { .. }));
    }
    times.sort();
    println!(
        "per-login resolve ({LOOKUPS} calls, {rows_n} links): p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
        percentile(&times, 0.5).as_secs_f64() * 1e3,
        percentile(&times, 0.99).as_secs_f64() * 1e3,
        times[LOOKUPS - 1].as_secs_f64() * 1e3
    );
    dir.close().await;
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
}
