//! Failing closed on identity, over HTTP with the real binary (so its log can be read): behind
//! an upstream whose ID number is not where the configuration says, or whose `acr` is not in
//! `acr_map`, every login is refused with a page that says the service is misconfigured (not
//! the citizen's fault), and the log names the claim, what arrived and the key to fix.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::redis::free_port;
use common::*;
use lienthong_mock_idp::{MockIdp, Roster};
use reqwest::StatusCode;

struct Broker {
    child: Child,
    issuer: String,
    log: std::path::PathBuf,
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A broker process whose `[upstream]` section ends with `upstream_extra`, behind a mock IdP.
/// A mock IdP for a broker on a free port, and that broker's configuration file: its
/// `[upstream]` section ends with `upstream_extra`, and `clients` follows.
struct Setup {
    idp: lienthong_mock_idp::Running,
    issuer: String,
    port: u16,
    dir: std::path::PathBuf,
    config: std::path::PathBuf,
}

async fn setup(tag: &str, upstream_extra: &str, clients: &str) -> Setup {
    lienthong_protocol::crypto::install();
    let port = free_port();
    let issuer = format!("http://127.0.0.1:{port}");
    let idp = MockIdp::start(idp_config_for(&issuer), Roster::builtin())
        .await
        .unwrap();
    let dir = scratch_dir(tag);
    let config = write_config(
        &dir,
        &format!(
            r#"
            issuer = "{issuer}"
            [directory]
            url = "sqlite::memory:"
            [upstream]
            issuer = "{idp}"
            client_id = "lienthong"
            client_secret = "upstream-secret"
            {upstream_extra}
            {clients}
            "#,
            idp = idp.issuer,
        ),
    );
    Setup {
        idp,
        issuer,
        port,
        dir,
        config,
    }
}

/// A broker process whose `[upstream]` ends with `upstream_extra`, behind a mock IdP.
async fn broker_with(upstream_extra: &str, tag: &str) -> (Broker, lienthong_mock_idp::Running) {
    let client = format!(
        r#"
        [[clients]]
        id = "{PORTAL_A}"
        secret = "{SECRET}"
        name = "Cổng A"
        redirect_uris = ["{ra}"]
        require_consent = false
        "#,
        ra = redirect_uri(PORTAL_A),
    );
    let Setup {
        idp,
        issuer,
        port,
        dir,
        config,
    } = setup(&format!("identity-{tag}"), upstream_extra, &client).await;
    let log = dir.join("broker.log");
    let child = Command::new(env!("CARGO_BIN_EXE_lienthong"))
        .args(["serve", "--config"])
        .arg(&config)
        .env("LIENTHONG__BIND", format!("127.0.0.1:{port}"))
        .env("LIENTHONG_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    for _ in 0..200 {
        if reqwest::get(format!("{issuer}/healthz")).await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (Broker { child, issuer, log }, idp)
}

/// A login through the IdP; the broker's answer at the callback.
async fn attempt(broker: &Broker, number: &str) -> reqwest::Response {
    let browser = Browser::new();
    let req = AuthRequest::new(PORTAL_A);
    let to_idp = location(&browser.get(&req.url(&broker.issuer)).await);
    let back = sign_in_at_idp(&browser, &to_idp, number).await;
    browser.get(&location(&back)).await
}

async fn assert_refused_as_misconfigured(broker: &Broker, number: &str) {
    let r = attempt(broker, number).await;
    assert_eq!(r.status(), StatusCode::BAD_GATEWAY);
    assert!(
        r.headers().get("location").is_none(),
        "no code, no redirect"
    );
    let page = r.text().await.unwrap();
    assert!(
        page.contains("cấu hình") && page.contains("không phải lỗi của bạn"),
        "the page blames the configuration, not the citizen: {page}"
    );
}

#[tokio::test]
async fn a_login_whose_id_number_is_not_where_the_config_says_is_refused_as_misconfigured() {
    // The mock IdP's standard profile sends the number in preferred_username.
    let (broker, _idp) = broker_with("claims = { citizen_id = \"so_dinh_danh\" }", "number").await;
    for number in [AN, MAI] {
        assert_refused_as_misconfigured(&broker, number).await;
    }
    let log = std::fs::read_to_string(&broker.log).unwrap();
    let line = log
        .lines()
        .find(|l| l.contains("does not match the claim mapping"))
        .unwrap_or_else(|| panic!("a log line for the operator in:\n{log}"));
    assert!(line.contains("so_dinh_danh"), "names the claim: {line}");
    assert!(
        line.contains("upstream.claims.citizen_id"),
        "names the key: {line}"
    );
    assert!(
        !log.contains(AN) && !log.contains(MAI),
        "no ID number in the log"
    );
    assert!(
        !log.contains('\x1b'),
        "a log written to a file is plain text, without colour escapes: {log}"
    );
}

#[tokio::test]
async fn a_login_whose_acr_is_not_mapped_is_refused_as_misconfigured() {
    // The standard profile sends acr "1" or "2"; this map knows neither.
    let (broker, _idp) = broker_with("acr_map = { \"LoA9\" = 2 }", "acr").await;
    assert_refused_as_misconfigured(&broker, AN).await;
    let log = std::fs::read_to_string(&broker.log).unwrap();
    let line = log
        .lines()
        .find(|l| l.contains("does not match the claim mapping"))
        .unwrap_or_else(|| panic!("a log line for the operator in:\n{log}"));
    assert!(line.contains("upstream.acr_map"), "{line}");
    assert!(
        line.contains("\\\"2\\\"") || line.contains("\"2\""),
        "names the value: {line}"
    );
}

/// `lienthong check-config --online` with a config whose `[upstream]` ends with `extra`.
async fn check_online(extra: &str, tag: &str) -> (bool, String) {
    // `held` keeps the mock IdP running while the command runs.
    let held = setup(&format!("online-{tag}"), extra, "").await;
    let config = held.config.clone();
    // In the blocking pool: the mock IdP keeps answering on this test's runtime meanwhile.
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_lienthong"))
            .args(["check-config", "--online", "--config"])
            .arg(&config)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test]
async fn check_config_online_compares_the_configuration_with_what_the_idp_publishes() {
    let (ok, text) = check_online("", "good").await;
    assert!(ok, "{text}");
    assert!(text.contains("ok: discovery and JWKS fetched"), "{text}");
    let (ok, text) = check_online("claims = { citizen_id = \"so_dinh_danh\" }", "claim").await;
    assert!(!ok, "{text}");
    assert!(
        text.contains("error: upstream.claims.citizen_id = \"so_dinh_danh\" is not in the IdP's claims_supported"),
        "{text}"
    );
    let (ok, text) = check_online("id_token_algs = [\"ES256\"]", "alg").await;
    assert!(!ok && text.contains("upstream.id_token_algs"), "{text}");
    let (ok, text) = check_online("scopes = [\"openid\", \"made-up\"]", "scope").await;
    assert!(
        !ok && text.contains("\"made-up\" is not in the IdP's scopes_supported"),
        "{text}"
    );
}
