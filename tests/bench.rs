//! `lienthong bench` as an operator runs it, against a broker and mock IdP on loopback: every
//! workload completes without an error, and the login workload says how many of its logins were
//! first sign-ins (consent asked, account linked) — the figures of a first run and of a second
//! run over the same citizens measure different things.

mod common;

use common::{Env, PORTAL_A, SECRET, redirect_uri};

/// Runs the bench binary (off the runtime that serves the broker) and returns its output.
async fn bench(env: &Env, workload: &str, first_citizen: &str) -> String {
    let args: Vec<String> = [
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
        "--duration-secs",
        "60",
        "--first-citizen",
        first_citizen,
    ]
    .map(str::to_owned)
    .into();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_lienthong"))
            .args(&args)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
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
    let first = bench(&env, "all", "0").await;
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
    assert!(
        first.contains("consent asked (first sign-in to the system): 12 of 12 logins"),
        "{first}"
    );
    let again = bench(&env, "login", "0").await;
    assert!(
        again.contains("consent asked (first sign-in to the system): 0 of 12 logins"),
        "the same citizens return: {again}"
    );
}
