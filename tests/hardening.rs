//! Refusals that hold under probing, over HTTP: scopes beyond what a client may have, client
//! ids probed at the token endpoint, a stolen code, and malformed requests that must get our
//! page or error rather than the framework's text.

mod common;

use common::*;
use reqwest::StatusCode;
use serde_json::Value;

#[tokio::test]
async fn a_scope_the_client_may_not_have_never_reaches_its_tokens() {
    let env = Env::start().await;
    let mut req = AuthRequest::new(PORTAL_B);
    req.scope = "openid profile accounts:admin offline_access made-up".into();
    let t = tokens(&env, &Browser::new(), &req, AN).await;
    assert_eq!(t["scope"], "openid profile", "requested ∩ allowed");
    assert!(t.get("refresh_token").is_none());
    // The access token's own scope claim says the same.
    let claims = jwt_payload(t["access_token"].as_str().unwrap());
    assert_eq!(claims["scope"], "openid profile");
}

#[tokio::test]
async fn an_unknown_client_and_a_wrong_secret_get_the_same_answer() {
    let env = Env::start().await;
    let attempt = |id: &'static str, secret: &'static str| {
        reqwest::Client::new()
            .post(format!("{}/token", env.issuer))
            .basic_auth(id, Some(secret))
            .form(&[("grant_type", "authorization_code"), ("code", "x")])
            .send()
    };
    let unknown = attempt("no-such-client", "whatever").await.unwrap();
    let wrong = attempt(PORTAL_A, "wrong-secret").await.unwrap();
    assert_eq!(unknown.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let (a, b): (Value, Value) = (unknown.json().await.unwrap(), wrong.json().await.unwrap());
    assert_eq!(a, b, "nothing tells the two apart");
}

#[tokio::test]
async fn a_stolen_code_presented_by_another_client_does_not_revoke_the_rightful_tokens() {
    let env = Env::start().await;
    let browser = Browser::new();
    let req = AuthRequest::new(PORTAL_A);
    let code = login_for_code(&env, &browser, &req, AN).await;
    let r = redeem(&env, &req, &code, &req.verifier).await;
    assert_eq!(r.status(), StatusCode::OK);
    let tokens: Value = r.json().await.unwrap();
    // Another registered system presents the same code.
    let thief = reqwest::Client::new()
        .post(format!("{}/token", env.issuer))
        .basic_auth(PORTAL_B, Some(SECRET))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", &redirect_uri(PORTAL_A)),
            ("code_verifier", &req.verifier),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(thief.status(), StatusCode::BAD_REQUEST);
    let userinfo = reqwest::Client::new()
        .get(format!("{}/userinfo", env.issuer))
        .bearer_auth(tokens["access_token"].as_str().unwrap());
    assert_eq!(
        status_of(userinfo).await,
        StatusCode::OK,
        "the rightful tokens survive"
    );
    // The rightful client's own second presentation still revokes them.
    assert_eq!(
        redeem(&env, &req, &code, &req.verifier).await.status(),
        StatusCode::BAD_REQUEST
    );
    let userinfo = reqwest::Client::new()
        .get(format!("{}/userinfo", env.issuer))
        .bearer_auth(tokens["access_token"].as_str().unwrap());
    assert_eq!(status_of(userinfo).await, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn malformed_callback_and_consent_requests_get_a_page_not_framework_text() {
    let env = Env::start().await;
    let browser = Browser::new();
    for url in [
        format!("{}/callback?state=a&state=b", env.issuer),
        format!("{}/callback?state=%zz", env.issuer),
    ] {
        let r = browser.get(&url).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{url}");
        let html = r.text().await.unwrap();
        assert!(
            html.contains("<html lang=\"vi\">") && html.contains("Mã tra cứu"),
            "{url}: one of our pages, with a reference: {html}"
        );
        assert!(!html.contains("Failed to deserialize"), "{url}");
    }
    let r = browser
        .post_form(
            &format!("{}/consent", env.issuer),
            &[
                ("consent_id", "a"),
                ("consent_id", "b"),
                ("decision", "allow"),
            ],
        )
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("Yêu cầu đăng nhập không hợp lệ")
    );
}

#[tokio::test]
async fn every_route_answers_with_the_security_headers() {
    let env = Env::start().await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let i = &env.issuer;
    let get = |p: &str| http.get(format!("{i}{p}"));
    let post = |p: &str| http.post(format!("{i}{p}")).body("a=1");
    let routes = [
        ("discovery", get("/.well-known/openid-configuration"), true),
        ("jwks", get("/jwks"), true),
        ("healthz", get("/healthz"), false),
        ("readyz", get("/readyz"), false),
        ("metrics", get("/metrics"), false),
        ("authorize GET", get("/authorize?client_id=x"), false),
        ("authorize POST", post("/authorize"), false),
        ("callback", get("/callback?state=x"), false),
        ("consent", post("/consent"), false),
        ("logout GET", get("/logout"), false),
        ("logout POST", post("/logout"), false),
        ("logout callback", get("/logout/callback"), false),
        ("token", post("/token"), false),
        ("introspect", post("/introspect"), false),
        ("revoke", post("/revoke"), false),
        ("userinfo GET", get("/userinfo"), false),
        ("userinfo POST", post("/userinfo"), false),
        ("openapi", get("/admin/openapi.json"), true),
        ("admin list", get("/admin/realms/r/links"), false),
        ("admin link", post("/admin/realms/r/links"), false),
        (
            "admin find",
            get("/admin/realms/r/links/by-number/001085004512"),
            false,
        ),
        (
            "admin unlink",
            http.delete(format!("{i}/admin/realms/r/links/x")),
            false,
        ),
        ("not found", get("/no-such-route"), false),
    ];
    for (name, request, public) in routes {
        let r = request.send().await.unwrap();
        let h = r.headers();
        let value = |k: &str| h.get(k).map(|v| v.to_str().unwrap().to_owned());
        let csp = value("content-security-policy").unwrap_or_default();
        assert!(
            csp.contains("frame-ancestors 'none'") && csp.contains("default-src 'none'"),
            "{name}: {csp:?}"
        );
        assert!(
            !csp.contains("script-src"),
            "{name}: no script is allowed at all"
        );
        assert_eq!(value("x-frame-options").as_deref(), Some("DENY"), "{name}");
        assert_eq!(
            value("x-content-type-options").as_deref(),
            Some("nosniff"),
            "{name}"
        );
        assert_eq!(
            value("referrer-policy").as_deref(),
            Some("no-referrer"),
            "{name}"
        );
        let cache = value("cache-control").unwrap_or_default();
        if public {
            assert!(cache.starts_with("public"), "{name}: {cache}");
        } else {
            assert_eq!(cache, "no-store", "{name}");
        }
        // HTTP issuer in tests: no HSTS (it is set under an https issuer).
        assert!(value("strict-transport-security").is_none(), "{name}");
    }
}

#[tokio::test]
async fn the_consent_page_cannot_be_framed_and_userinfo_is_never_cached() {
    let env = Env::with_consent().await;
    let browser = Browser::new();
    let r = login(&env, &browser, &AuthRequest::new(PORTAL_A), AN).await;
    assert_eq!(r.status(), StatusCode::OK, "the consent page");
    assert_eq!(r.headers()["x-frame-options"], "DENY");
    assert!(
        r.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("frame-ancestors 'none'")
    );
    let t = tokens(&env, &Browser::new(), &AuthRequest::new(PORTAL_B), AN).await;
    let u = reqwest::Client::new()
        .get(format!("{}/userinfo", env.issuer))
        .bearer_auth(t["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(u.status(), StatusCode::OK);
    assert_eq!(u.headers()["cache-control"], "no-store");
}

#[tokio::test]
async fn a_wildcard_realm_is_refused_and_every_realm_must_be_asked_for_by_name() {
    lienthong_protocol::crypto::install();
    let config = |admin: &str| {
        format!(
            r#"
            issuer = "http://127.0.0.1:1"
            [upstream]
            issuer = "http://127.0.0.1:1/idp"
            client_id = "lienthong"
            client_secret = "upstream-secret"
            [[clients]]
            id = "ops"
            secret = "{SECRET}"
            name = "Vận hành"
            redirect_uris = ["http://127.0.0.1:9/ops/callback"]
            {admin}
            "#
        )
    };
    let start = |text: String| async move {
        lienthong_broker::Broker::new(
            toml::from_str(&text).unwrap(),
            std::sync::Arc::new(lienthong_broker::MemoryStore::new()),
            lienthong_broker::Directory::connect("sqlite::memory:")
                .await
                .unwrap(),
        )
        .await
    };
    let refused = start(config("admin_realms = [\"*\"]")).await.err().unwrap();
    assert!(
        refused.to_string().contains("admin_realms_all"),
        "the refusal names the explicit switch: {refused}"
    );
    assert!(start(config("admin_realms_all = true")).await.is_ok());
}

#[tokio::test]
async fn too_many_requests_get_a_429_with_retry_after() {
    let env = Env::with(Options {
        limits: Some("authorize_per_minute = 3\ntoken_per_client_per_minute = 2".into()),
        ..Options::default()
    })
    .await;
    let browser = Browser::new();
    for _ in 0..3 {
        let r = browser
            .get(&AuthRequest::new(PORTAL_A).url(&env.issuer))
            .await;
        assert!(r.status().is_redirection());
    }
    let r = browser
        .get(&AuthRequest::new(PORTAL_A).url(&env.issuer))
        .await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.headers()["retry-after"], "60");
    assert!(r.text().await.unwrap().contains("Quá nhiều lượt đăng nhập"));
    // Per client at the token endpoint: a JSON error, also with Retry-After.
    let attempt = || {
        reqwest::Client::new()
            .post(format!("{}/token", env.issuer))
            .basic_auth(PORTAL_A, Some(SECRET))
            .form(&[("grant_type", "authorization_code"), ("code", "x")])
            .send()
    };
    for _ in 0..2 {
        assert_eq!(attempt().await.unwrap().status(), StatusCode::BAD_REQUEST);
    }
    let r = attempt().await.unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.headers()["retry-after"], "60");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "temporarily_unavailable");
}

#[tokio::test]
async fn pending_logins_are_capped_in_total_and_the_admin_api_per_client() {
    let env = Env::with(Options {
        limits: Some("pending_logins_max = 3\nadmin_per_client_per_minute = 2".into()),
        ..Options::default()
    })
    .await;
    // Each from a browser of its own: the cap counts every source together.
    let mut statuses = vec![];
    for _ in 0..4 {
        let r = Browser::new()
            .get(&AuthRequest::new(PORTAL_A).url(&env.issuer))
            .await;
        statuses.push(r.status().as_u16());
        if r.status() == StatusCode::SERVICE_UNAVAILABLE {
            assert_eq!(r.headers()["retry-after"], "60");
        }
    }
    assert_eq!(statuses, [303, 303, 303, 503]);
    let token = admin_access_token(&env, "ops").await;
    let list = || {
        reqwest::Client::new()
            .get(format!("{}/admin/realms/{ONESTOP}/links", env.issuer))
            .bearer_auth(&token)
            .send()
    };
    for _ in 0..2 {
        assert_eq!(list().await.unwrap().status(), StatusCode::OK);
    }
    let r = list().await.unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.headers()["retry-after"], "60");
}

#[tokio::test]
async fn oversized_parameters_are_refused_before_anything_is_stored() {
    let env = Env::start().await;
    let long = "x".repeat(600);
    let r = Browser::new()
        .get(
            &AuthRequest::new(PORTAL_A)
                .with("login_hint", &long)
                .url(&env.issuer),
        )
        .await;
    let q = query(&location(&r));
    assert_eq!(q["error"], "invalid_request");
    assert!(q["error_description"].contains("login_hint"));
    let mut req = AuthRequest::new(PORTAL_A);
    req.state = "s".repeat(513);
    let q = query(&location(&Browser::new().get(&req.url(&env.issuer)).await));
    assert_eq!(q["error"], "invalid_request");
}

/// A broker whose connections wait at most a second for a request's headers, and its address.
async fn with_a_one_second_header_timeout() -> (Env, String) {
    let env = Env::with(Options {
        extra: Some("[server]\nheader_read_timeout_secs = 1".into()),
        ..Options::default()
    })
    .await;
    let addr = env.issuer.trim_start_matches("http://").to_owned();
    (env, addr)
}

/// Opens a connection, sends `bytes`, and reads until the server closes it (at most 5 s):
/// what came back, and how long the server took to close.
async fn send_and_wait_for_close(addr: &str, bytes: &[u8]) -> (Vec<u8>, std::time::Duration) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    let started = std::time::Instant::now();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        stream.read_to_end(&mut buf),
    )
    .await;
    assert!(read.is_ok(), "the server closed the connection by itself");
    (buf, started.elapsed())
}

#[tokio::test]
async fn a_connection_that_stalls_in_its_headers_is_closed() {
    let (_env, addr) = with_a_one_second_header_timeout().await;
    // Slowloris: half a request, then silence.
    let (_, took) =
        send_and_wait_for_close(&addr, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ").await;
    assert!(
        took < std::time::Duration::from_secs(4),
        "within the header timeout, not the test's"
    );
    // A complete request on time is served as usual.
    let (answer, _) = send_and_wait_for_close(
        &addr,
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed() {
    let (_env, addr) = with_a_one_second_header_timeout().await;
    // One request answered on a keep-alive connection, then nothing: the wait for the next
    // request's headers is bounded too, so an idle connection does not stay open for ever.
    let (answer, took) =
        send_and_wait_for_close(&addr, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200"));
    assert!(took < std::time::Duration::from_secs(4));
}
