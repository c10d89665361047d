//! `lienthong bench` as an operator runs it, against a broker and mock IdP on loopback, or with
//! both started inside it (`--in-process`): every workload completes without an error, and the
//! login workload says how many of its logins were first sign-ins (consent asked, account
//! linked) — the figures of a first run and of a second run over the same citizens measure
//! different things.

mod common;

use common::redis::Server;
use common::{Env, PORTAL_A, SECRET, redirect_uri};
use lienthong_testkit::postgres::Database;

/// Runs `lienthong bench` against the test broker and returns its output.
async fn bench(env: &Env, workload: &str, first_citizen: &str, extra: &[&str]) -> String {
    let mut args: Vec<String> = [
        "bench",
        "--issuer",
        &env.issuer,
        "--client-id",
        PORTAL_A,
        "--client-secret",
        SECRET,
        "--redirect-uri",
        &redirect_uri(PORTAL_A),
        "--workload",
        workload,
        "--logins",
        "12",
        "--concurrency",
        "3",
        "--first-citizen",
        first_citizen,
    ]
    .map(str::to_owned)
    .into();
    if !extra.contains(&"--duration-secs") {
        args.extend(["--duration-secs".to_owned(), "60".to_owned()]);
    }
    args.extend(extra.iter().map(|a| a.to_string()));
    succeeded(lienthong(args).await)
}

/// Runs the binary, off the runtime that serves the broker.
async fn lienthong(args: Vec<String>) -> std::process::Output {
    lienthong_with(args, Vec::new()).await
}

/// Runs the binary with `vars` added to its environment.
async fn lienthong_with(
    args: Vec<String>,
    vars: Vec<(&'static str, String)>,
) -> std::process::Output {
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_lienthong"))
            .args(&args)
            .envs(vars)
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

/// The report's name for a SQLite directory's thread: a part of the broker's CPU, not a party
/// beside it.
const SQLITE_PARTY: &str = "broker's SQLite thread";

/// How many of `stdout`'s lines start (after their indent) with `party`, each right after the
/// broker's line: the broker's SQLite thread is reported as part of the broker.
fn after_the_broker(stdout: &str, party: &str) -> usize {
    let lines: Vec<&str> = stdout.lines().map(str::trim).collect();
    lines
        .windows(2)
        .filter(|w| w[0].starts_with("broker (") && w[1].starts_with(party))
        .count()
}

/// The CPU seconds of a party's report line (`broker (pid N): 1.98 CPU s, ...`).
fn cpu_secs(line: &str) -> Option<f64> {
    let after = line.split("): ").nth(1)?;
    after.split(' ').next()?.parse().ok()
}

/// The kernel's share of a report line's CPU (`..., 38 % in the kernel`), where it gives one.
fn kernel_share(line: &str) -> Option<f64> {
    let (before, _) = line.split_once(" % in the kernel")?;
    before.rsplit(' ').next()?.parse().ok()
}

/// The busy and stolen shares of the machine's line (`machine (2 CPUs): 81 % busy, 0.3 % taken
/// by the host (steal)`).
fn machine_shares(line: &str) -> Option<(f64, f64)> {
    let (_, after) = line.split_once("): ")?;
    let (busy, after) = after.split_once(" % busy, ")?;
    let (steal, _) = after.split_once(" % taken by the host")?;
    Some((busy.parse().ok()?, steal.parse().ok()?))
}

/// The milliseconds of CPU per operation of a party's report line (`..., 0.683 ms CPU per login`).
fn ms_per_op(line: &str) -> Option<f64> {
    let (before, _) = line.split_once(" ms CPU per ")?;
    before.rsplit(' ').next()?.parse().ok()
}

/// The ceiling line's CPUs, the parties' milliseconds per operation together, the rate they
/// bound and the share of it reached (`ceiling (2 CPUs): 1.830 ms of CPU per login by the
/// parties above, at most 1093 logins/s with every core theirs; this run 80 % of it`).
fn ceiling(line: &str) -> Option<(f64, f64, f64, f64)> {
    let (cpus, after) = line.strip_prefix("ceiling (")?.split_once(" CPUs): ")?;
    let (together, after) = after.split_once(" ms of CPU per ")?;
    let (_, after) = after.split_once(", at most ")?;
    let (most, after) = after.split_once(' ')?;
    let (_, after) = after.split_once("; this run ")?;
    let (reached, _) = after.split_once(" % of it")?;
    let number = |s: &str| s.parse::<f64>().ok();
    Some((
        number(cpus)?,
        number(together)?,
        number(most)?,
        number(reached)?,
    ))
}

/// The standard output of a run that must have succeeded.
fn succeeded(out: std::process::Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[tokio::test]
async fn bench_runs_every_workload_and_tells_first_sign_ins_from_returning_ones() {
    let env = Env::with_consent().await;
    let first = bench(&env, "all", "0", &[]).await;
    for workload in [
        "workload: complete brokered login",
        "workload: SSO login",
        "workload: refresh-token rotation",
        "workload: userinfo",
        "workload: introspection",
    ] {
        assert!(first.contains(workload), "{workload} missing:\n{first}");
    }
    assert_eq!(
        first.matches(" 12 ok, 0 failed").count(),
        5,
        "every workload did all of its operations:\n{first}"
    );
    assert!(!first.contains("error "), "{first}");
    assert_eq!(
        first.matches("bench driver (pid ").count(),
        5,
        "the driver's own CPU for every workload:\n{first}"
    );
    assert!(
        first.contains("consent asked (first sign-in to the system): 12 of 12 logins"),
        "{first}"
    );
    // The broker here is this test's process, its directory SQLite: told its pid, the bench
    // gives the broker's SQLite threads a line after the broker's.
    let pid = std::process::id().to_string();
    let again = bench(&env, "login", "0", &["--broker-pid", &pid]).await;
    assert!(
        again.contains("consent asked (first sign-in to the system): 0 of 12 logins"),
        "the same citizens return: {again}"
    );
    let sqlite = format!("{SQLITE_PARTY} (threads sqlx-sqlite-wor* of pid {pid}): ");
    assert_eq!(after_the_broker(&again, &sqlite), 1, "{again}");
}

#[tokio::test]
async fn bench_with_a_rate_starts_each_operation_at_its_time() {
    let env = Env::with_consent().await;
    // 12 userinfo requests offered at 40 a second: the last starts 11/40 s after the first, so
    // at most 12 / (11/40) = 43.6 a second are done; unpaced, a loopback broker does hundreds.
    let out = bench(&env, "userinfo", "0", &["--rate", "40"]).await;
    assert!(out.contains(" 12 ok, 0 failed"), "{out}");
    assert!(out.contains("offered: 40.0 requests/s"), "{out}");
    let achieved: f64 = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("rate: "))
        .and_then(|r| r.split(' ').next())
        .and_then(|r| r.parse().ok())
        .unwrap_or_else(|| panic!("a rate line in:\n{out}"));
    assert!(achieved <= 43.7, "paced at the offered rate: {out}");
    assert!(!out.contains("stopped by"), "{out}");
    // Offered at 4 a second for one second: the four scheduled before the deadline are done,
    // and the report says the run stopped short of its count.
    let out = bench(
        &env,
        "userinfo",
        "0",
        &["--rate", "4", "--duration-secs", "1"],
    )
    .await;
    assert!(out.contains(" 4 ok, 0 failed"), "{out}");
    assert!(
        out.contains("stopped by --duration-secs 1 before --logins 12: 4 done"),
        "{out}"
    );
}

#[tokio::test]
async fn bench_in_process_starts_its_own_broker_and_mock_idp_and_tells_their_cpu_apart() {
    let args = |a: &[&str]| a.iter().map(|a| a.to_string()).collect();
    let stdout = succeeded(
        lienthong(args(&[
            "bench",
            "--in-process",
            "--workload",
            "all,login",
            "--logins",
            "40",
            "--concurrency",
            "4",
            "--duration-secs",
            "60",
        ]))
        .await,
    );
    assert_eq!(
        stdout.matches(" 40 ok, 0 failed").count(),
        6,
        "every workload did all of its operations, nothing else running:\n{stdout}"
    );
    // The list's last login pass is the first one's citizens again: they return.
    let consents: Vec<&str> = stdout
        .lines()
        .filter(|l| l.contains("consent asked"))
        .collect();
    assert_eq!(
        consents,
        [
            "  consent asked (first sign-in to the system): 40 of 40 logins",
            "  consent asked (first sign-in to the system): 0 of 40 logins"
        ],
        "{stdout}"
    );
    // The login workload's CPU, by party: the broker's and the mock IdP's threads both worked.
    let cpu = |party: &str| -> f64 {
        stdout
            .lines()
            .find(|l| l.trim().starts_with(party))
            .and_then(cpu_secs)
            .unwrap_or_else(|| panic!("a {party} line in:\n{stdout}"))
    };
    assert!(cpu("broker (threads lt-broker") > 0.0, "{stdout}");
    assert!(cpu("mock IdP (threads lt-mock-idp") > 0.0, "{stdout}");
    // Each party that spent CPU says how much of it was the kernel's.
    let parties: Vec<&str> = stdout
        .lines()
        .filter(|l| l.contains(" CPU s, ") && !l.contains(": 0.00 CPU s"))
        .collect();
    assert!(parties.len() >= 4, "{stdout}");
    for line in parties {
        let share = kernel_share(line).unwrap_or_else(|| panic!("the kernel's share: {line}"));
        assert!((0.0..=100.0).contains(&share), "{line}");
    }
    // Each workload says how busy the whole machine was and what the host took from it — where
    // it lasted a tick of /proc/stat at least: the logins do, 40 userinfo requests may not.
    let machine: Vec<&str> = stdout
        .lines()
        .filter_map(|l| l.trim().strip_prefix("machine ("))
        .collect();
    assert_eq!(machine.len(), 6, "{stdout}");
    let shares: Vec<(f64, f64)> = machine.iter().filter_map(|l| machine_shares(l)).collect();
    assert!(shares.iter().any(|&(busy, _)| busy > 0.0), "{stdout}");
    for (busy, steal) in shares {
        assert!((0.0..=100.0).contains(&busy), "{stdout}");
        assert!((0.0..=100.0).contains(&steal), "{stdout}");
    }
    for line in machine.iter().filter(|l| machine_shares(l).is_none()) {
        assert!(
            line.ends_with("shorter than a tick of /proc/stat"),
            "{line}"
        );
    }
    // Each workload's ceiling: the parties' CPU per operation added up — the SQLite thread's
    // once, in the broker's — and the rate the machine's cores could bear at that cost.
    let mut bounded = 0;
    for block in stdout.split("workload: ").skip(1) {
        let lines: Vec<&str> = block.lines().map(str::trim).collect();
        let line = lines
            .iter()
            .find(|l| l.starts_with("ceiling ("))
            .unwrap_or_else(|| panic!("a ceiling line in:\n{block}"));
        let per_op: Vec<f64> = lines
            .iter()
            .filter(|l| l.contains(" CPU s, ") && !l.starts_with(SQLITE_PARTY))
            .map(|l| ms_per_op(l).unwrap_or_else(|| panic!("ms per operation in {l:?}")))
            .collect();
        assert_eq!(per_op.len(), 3, "broker, mock IdP and driver:\n{block}");
        let sum: f64 = per_op.iter().sum();
        let Some((cpus, together, most, reached)) = ceiling(line) else {
            assert!(line.ends_with("under a tick of /proc"), "{line}");
            assert_eq!(sum, 0.0, "{block}");
            continue;
        };
        bounded += 1;
        // Each figure is printed to a thousandth: their sum, to a thousandth per figure.
        assert!(
            (together - sum).abs() <= 0.0005 * 4.0,
            "{together} vs {sum}:\n{block}"
        );
        let bound = |ms: f64| cpus * 1000.0 / ms;
        assert!(
            bound(together + 0.0005) - 1.0 <= most && most <= bound(together - 0.0005) + 1.0,
            "{line}"
        );
        let rate: f64 = lines
            .iter()
            .find_map(|l| l.strip_prefix("rate: "))
            .and_then(|r| r.split(' ').next())
            .and_then(|r| r.parse().ok())
            .unwrap_or_else(|| panic!("the rate in:\n{block}"));
        let share = |most: f64| rate / most * 100.0;
        assert!(
            share(most + 0.5) - 1.0 <= reached && reached <= share(most - 0.5) + 1.0,
            "{line} at {rate} /s"
        );
    }
    assert!(bounded >= 2, "the logins lasted a tick at least:\n{stdout}");
    // The directory is SQLite: its thread's share of the broker's CPU has a line of its own
    // after the broker's, each workload, and is part of the broker's.
    let sqlite = format!("{SQLITE_PARTY} (threads sqlx-sqlite-wor");
    let described = format!("{sqlite}* of this process): ");
    assert_eq!(stdout.matches(&described).count(), 6, "{stdout}");
    assert_eq!(after_the_broker(&stdout, &described), 6, "{stdout}");
    assert!(cpu(&sqlite) <= cpu("broker (threads lt-broker"), "{stdout}");
    assert_eq!(
        stdout
            .matches("this process (driver, broker and mock IdP): peak RSS")
            .count(),
        6,
        "{stdout}"
    );
    // The directory's temporary folder is gone with the run.
    let folder = stdout
        .split("; directory SQLite in ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .unwrap_or_else(|| panic!("the folder in:\n{stdout}"));
    assert!(
        !std::path::Path::new(folder).exists(),
        "{folder} left behind"
    );

    // The parties it starts are its own: it drives no other broker.
    let out = lienthong(args(&[
        "bench",
        "--in-process",
        "--issuer",
        "http://127.0.0.1:9",
    ]))
    .await;
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot be used with"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Given `LIENTHONG__STORE__URL` and `LIENTHONG__DIRECTORY__URL`, as `serve` is, the in-process
/// broker runs on that Redis and that PostgreSQL: the citizens it signs in are in the database,
/// their sessions in the Redis, and the run says which it used, without the URL's password.
/// Given their servers' pids, it reports their CPU beside the broker's.
#[tokio::test]
async fn bench_in_process_runs_on_redis_and_postgresql_when_the_environment_says_so() {
    let Some(db) = Database::create_or_skip().await else {
        return;
    };
    let Some(redis) = Server::start_on_socket_or_skip() else {
        db.drop_database().await;
        return;
    };
    redis.wait_ready().await;
    // A password the run must not print. The machine's PostgreSQL trusts loopback and asks for
    // none; a server given with one of its own keeps it.
    let mut directory = url::Url::parse(&db.url).unwrap();
    if directory.password().is_none() && std::env::var_os("PGPASSWORD").is_none() {
        directory.set_password(Some("never-printed")).unwrap();
    }
    let password = directory.password().map(str::to_owned);
    // PostgreSQL's postmaster is the parent of a backend, when the server runs on this machine
    // (a process of that pid here that is not a backend is someone else's).
    let mut pg = <sqlx::PgConnection as sqlx::Connection>::connect(&db.url)
        .await
        .unwrap();
    let backend: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut pg)
        .await
        .unwrap();
    drop(pg);
    let postmaster = std::fs::read_to_string(format!("/proc/{backend}/stat"))
        .ok()
        .filter(|stat| stat.contains(" (postgres) "))
        .and_then(|stat| {
            stat.rsplit(") ")
                .next()?
                .split(' ')
                .nth(1)?
                .parse::<u32>()
                .ok()
        });
    let vars = vec![
        ("LIENTHONG__STORE__URL", redis.url()),
        (
            "LIENTHONG__STORE__SEALING_KEY",
            "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=".to_owned(),
        ),
        ("LIENTHONG__DIRECTORY__URL", directory.to_string()),
    ];
    let mut args: Vec<String> = ["bench", "--in-process", "--workload", "login,login,sso"]
        .into_iter()
        .chain([
            "--logins",
            "40",
            "--concurrency",
            "4",
            "--duration-secs",
            "60",
        ])
        .map(str::to_owned)
        .collect();
    args.extend(["--store-pid".to_owned(), redis.pid().to_string()]);
    if let Some(pid) = postmaster {
        args.extend(["--directory-pid".to_owned(), pid.to_string()]);
    }
    let out = lienthong_with(args, vars).await;
    // What the run left, read before any assertion: the database is dropped whatever they say.
    let mut pg = <sqlx::PgConnection as sqlx::Connection>::connect(&db.url)
        .await
        .unwrap();
    let citizens: Result<i64, _> = sqlx::query_scalar("SELECT count(*) FROM citizens")
        .fetch_one(&mut pg)
        .await;
    drop(pg);
    db.drop_database().await;
    let client = redis::Client::open(redis.url()).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    let sessions: Vec<String> = redis::cmd("KEYS")
        .arg("lt:session:*")
        .query_async(&mut c)
        .await
        .unwrap();

    let stdout = succeeded(out);
    assert_eq!(stdout.matches(" 40 ok, 0 failed").count(), 3, "{stdout}");
    assert!(
        stdout.contains(&format!("; Store {}; directory postgres://", redis.url())),
        "{stdout}"
    );
    // No SQLite thread in a broker whose directory is PostgreSQL: no line for one.
    assert!(!stdout.contains("SQLite thread"), "{stdout}");
    if let Some(password) = password {
        assert!(!stdout.contains(&password), "{stdout}");
    }
    // 40 citizens of the login passes and the 8 the SSO workload signs in first, in PostgreSQL;
    // a session per browser in Redis: 40 first sign-ins, 40 returning, the SSO workload's 8.
    assert_eq!(citizens.unwrap(), 48, "{stdout}");
    assert_eq!(sessions.len(), 88, "{stdout}");
    // The servers' CPU, a line each per workload: Redis's own, PostgreSQL's with its backends.
    let cpu =
        |line: &str| -> f64 { cpu_secs(line).unwrap_or_else(|| panic!("CPU seconds in {line:?}")) };
    let redis_lines: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with(&format!("  Redis (pid {}): ", redis.pid())))
        .collect();
    assert_eq!(redis_lines.len(), 3, "{stdout}");
    redis_lines.iter().for_each(|l| assert!(cpu(l) >= 0.0));
    if let Some(pid) = postmaster {
        let postgres: f64 = stdout
            .lines()
            .filter(|l| l.starts_with(&format!("  PostgreSQL (pid {pid} and its children): ")))
            .map(cpu)
            .sum();
        // 48 citizens' records, consents and links written, 128 logins read: not nothing.
        assert!(postgres > 0.0, "{stdout}");
    }
}
