//! A brokered login, specified over HTTP: a provincial system, the broker, the mock national IdP.

mod common;

use std::time::Duration;

use common::*;
use lienthong_protocol::MockClock;
use reqwest::StatusCode;
use serde_json::Value;

#[tokio::test]
async fn a_citizen_signs_in_and_the_portal_receives_a_verifiable_id_token() {
    let env = Env::start().await;
    let browser = Browser::new();
    let req = AuthRequest::new(PORTAL_A);
    let code = login_for_code(&env, &browser, &req, AN).await;
    let r = redeem(&env, &req, &code, &req.verifier).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
    let id_token = body["id_token"].as_str().unwrap();
    assert_eq!(
        jsonwebtoken::decode_header(id_token).unwrap().alg,
        jsonwebtoken::Algorithm::ES256,
        "ES256 by default"
    );
    let claims = env.verify_id_token(id_token, PORTAL_A).await;
    assert_eq!(claims["iss"], env.issuer.as_str());
    assert_eq!(claims["aud"], PORTAL_A);
    assert_eq!(claims["nonce"], req.nonce.as_str());
    assert_eq!(
        claims["acr"], "LoA2",
        "the level the national IdP vouched for"
    );
    assert_eq!(claims["name"], "Nguyễn Văn An");
    assert_eq!(claims["citizen_id"], AN);
    assert!(
        claims["sid"].is_string() && claims["auth_time"].is_u64() && claims["at_hash"].is_string()
    );
    assert_ne!(
        claims["sub"], AN,
        "the subject is an account id, not the ID number"
    );

    let access = body["access_token"].as_str().unwrap();
    let info: Value = json_of(
        reqwest::Client::new()
            .get(format!("{}/userinfo", env.issuer))
            .bearer_auth(access),
    )
    .await;
    assert_eq!(info["sub"], claims["sub"]);
    assert_eq!(info["name"], "Nguyễn Văn An");
    assert_eq!(info["birthdate"], "1985-04-12");
    assert_eq!(info["gender"], "male");
    assert_eq!(info["citizen_id"], AN);
    assert_eq!(info["legacy_id_number"], "012345678");
    assert!(
        info.get("phone_number").is_none(),
        "not in the scopes asked for"
    );
}

#[tokio::test]
async fn the_account_id_is_stable_across_logins() {
    let env = Env::start().await;
    let mut subs = vec![];
    for _ in 0..2 {
        let (browser, req) = (Browser::new(), AuthRequest::new(PORTAL_A));
        let body = tokens(&env, &browser, &req, AN).await;
        subs.push(
            env.verify_id_token(body["id_token"].as_str().unwrap(), PORTAL_A)
                .await["sub"]
                .clone(),
        );
    }
    assert_eq!(subs[0], subs[1]);
}

#[tokio::test]
async fn userinfo_answers_by_get_by_post_header_and_by_post_body() {
    let env = Env::start().await;
    let (browser, req) = (Browser::new(), AuthRequest::new(PORTAL_A));
    let body = tokens(&env, &browser, &req, AN).await;
    let token = body["access_token"].as_str().unwrap();
    let url = format!("{}/userinfo", env.issuer);
    let http = reqwest::Client::new();
    for r in [
        http.get(&url).bearer_auth(token).send().await.unwrap(),
        http.post(&url).bearer_auth(token).send().await.unwrap(),
        http.post(&url)
            .form(&[("access_token", token)])
            .send()
            .await
            .unwrap(),
    ] {
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.json::<Value>().await.unwrap()["name"], "Nguyễn Văn An");
    }
    let none = http.get(&url).send().await.unwrap();
    assert_eq!(none.status(), StatusCode::UNAUTHORIZED);
    assert!(
        none.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer")
    );
    let id_token_as_bearer = http
        .get(&url)
        .bearer_auth(body["id_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(
        id_token_as_bearer.status(),
        StatusCode::UNAUTHORIZED,
        "an ID token is not an access token"
    );
}

#[tokio::test]
async fn a_second_portal_signs_the_citizen_in_without_the_idp() {
    let env = Env::start().await;
    let browser = Browser::new();
    let a = AuthRequest::new(PORTAL_A);
    let tokens_a = tokens(&env, &browser, &a, AN).await;
    let sub_a = env
        .verify_id_token(tokens_a["id_token"].as_str().unwrap(), PORTAL_A)
        .await["sub"]
        .clone();

    // Scope order is irrelevant and unknown parameters are ignored.
    let b = AuthRequest {
        scope: "profile openid".into(),
        ..AuthRequest::new(PORTAL_B)
    }
    .with("vendor_hint", "x");
    let r = browser.get(&b.url(&env.issuer)).await;
    let straight_back = location(&r);
    assert!(
        straight_back.starts_with(&redirect_uri(PORTAL_B)),
        "no trip to the IdP: {straight_back}"
    );
    let code_b = query(&straight_back)["code"].clone();
    let tokens_b: Value = redeem(&env, &b, &code_b, &b.verifier)
        .await
        .json()
        .await
        .unwrap();
    let id_b = tokens_b["id_token"].as_str().unwrap();
    assert_eq!(
        jsonwebtoken::decode_header(id_b).unwrap().alg,
        jsonwebtoken::Algorithm::RS256,
        "RS256 for this client"
    );
    let claims_b = env.verify_id_token(id_b, PORTAL_B).await;
    assert_eq!(claims_b["acr"], "LoA2");
    assert_ne!(claims_b["sub"], sub_a, "each system has its own account id");
    assert!(
        claims_b.get("citizen_id").is_none(),
        "portal B may not receive the ID number"
    );
}

#[tokio::test]
async fn an_authorization_request_without_pkce_is_refused_back_to_the_client() {
    let env = Env::start().await;
    let req = AuthRequest::new(PORTAL_A);
    let url = req
        .url(&env.issuer)
        .replace(&format!("code_challenge={}", req.challenge), "x=1");
    let r = Browser::new().get(&url).await;
    let q = query(&location(&r));
    assert_eq!(q["error"], "invalid_request");
    assert_eq!(q["state"], req.state);
    assert_eq!(q["iss"], env.issuer);
    let plain = req
        .url(&env.issuer)
        .replace("code_challenge_method=S256", "code_challenge_method=plain");
    assert_eq!(
        query(&location(&Browser::new().get(&plain).await))["error"],
        "invalid_request"
    );
}

#[tokio::test]
async fn a_wrong_code_verifier_is_refused() {
    let env = Env::start().await;
    let (browser, req) = (Browser::new(), AuthRequest::new(PORTAL_A));
    let code = login_for_code(&env, &browser, &req, AN).await;
    let (other_verifier, _) = pkce();
    let r = redeem(&env, &req, &code, &other_verifier).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_grant");
}

#[tokio::test]
async fn a_reused_code_is_refused_and_revokes_what_it_issued() {
    let env = Env::start().await;
    let (browser, req) = (Browser::new(), AuthRequest::new(PORTAL_A));
    let code = login_for_code(&env, &browser, &req, AN).await;
    let first: Value = redeem(&env, &req, &code, &req.verifier)
        .await
        .json()
        .await
        .unwrap();
    let userinfo = |token: String| {
        let url = format!("{}/userinfo", env.issuer);
        async move { status_of(reqwest::Client::new().get(url).bearer_auth(token)).await }
    };
    let access = first["access_token"].as_str().unwrap().to_owned();
    assert_eq!(userinfo(access.clone()).await, StatusCode::OK);
    let again = redeem(&env, &req, &code, &req.verifier).await;
    assert_eq!(again.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        again.json::<Value>().await.unwrap()["error"],
        "invalid_grant"
    );
    assert_eq!(
        userinfo(access).await,
        StatusCode::UNAUTHORIZED,
        "the first access token is revoked"
    );
}

#[tokio::test]
async fn an_unknown_client_is_shown_a_page_and_never_redirected() {
    let env = Env::start().await;
    let mut req = AuthRequest::new(PORTAL_A);
    req.client = "nobody".into();
    let r = Browser::new().get(&req.url(&env.issuer)).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.headers().get("location").is_none());
    let html = r.text().await.unwrap();
    assert!(
        html.contains("Không thể đăng nhập") && html.contains("Cannot sign in"),
        "{html}"
    );
}

#[tokio::test]
async fn an_unregistered_redirect_uri_is_shown_a_page_and_never_redirected() {
    let env = Env::start().await;
    let req = AuthRequest::new(PORTAL_A);
    for evil in [
        "https://evil.example/cb",
        "http://127.0.0.1:9/portal-a/callback/extra",
        "http://127.0.0.1:9/portal-a/callback?x=1",
    ] {
        let url = req
            .url(&env.issuer)
            .replace(&urlencode(&redirect_uri(PORTAL_A)), &urlencode(evil));
        let r = Browser::new().get(&url).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{evil}");
        assert!(r.headers().get("location").is_none(), "{evil}");
    }
}

#[tokio::test]
async fn a_repeated_parameter_is_shown_a_page_and_never_redirected() {
    let env = Env::start().await;
    let url = AuthRequest::new(PORTAL_A)
        .with("redirect_uri", "https://evil.example/cb")
        .url(&env.issuer);
    let r = Browser::new().get(&url).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.headers().get("location").is_none());
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("Yêu cầu đăng nhập không hợp lệ")
    );
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[tokio::test]
async fn a_tampered_state_at_the_callback_is_refused() {
    let env = Env::start().await;
    let (browser, req) = (Browser::new(), AuthRequest::new(PORTAL_A));
    let to_idp = location(&browser.get(&req.url(&env.issuer)).await);
    let back = sign_in_at_idp(&browser, &to_idp, AN).await;
    let callback = location(&back);
    let state = query(&callback)["state"].clone();
    let tampered = callback.replace(&format!("state={state}"), "state=forged-state-value");
    let r = browser.get(&tampered).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.headers().get("location").is_none());
    assert!(r.text().await.unwrap().contains("hết hạn"));
    // The genuine callback still works once, and only once.
    let ok = browser.get(&callback).await;
    assert!(location(&ok).starts_with(&redirect_uri(PORTAL_A)));
    assert_eq!(
        browser.get(&callback).await.status(),
        StatusCode::BAD_REQUEST,
        "a pending login is single use"
    );
}

#[tokio::test]
async fn a_callback_from_another_browser_is_refused() {
    let env = Env::start().await;
    let (victim, req) = (Browser::new(), AuthRequest::new(PORTAL_A));
    let to_idp = location(&victim.get(&req.url(&env.issuer)).await);
    let callback = location(&sign_in_at_idp(&victim, &to_idp, AN).await);
    let r = Browser::new().get(&callback).await;
    assert_eq!(
        r.status(),
        StatusCode::BAD_REQUEST,
        "login CSRF: the callback is bound to the browser"
    );
    assert!(
        r.text().await.unwrap().contains("Thử lại"),
        "with a way to start again"
    );
}

#[tokio::test]
async fn an_upstream_id_token_with_a_wrong_nonce_is_refused() {
    let env = Env::with(Options {
        wrong_nonce: true,
        ..Options::default()
    })
    .await;
    let (browser, req) = (Browser::new(), AuthRequest::new(PORTAL_A));
    let r = login(&env, &browser, &req, AN).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.headers().get("location").is_none(), "no code is issued");
    let html = r.text().await.unwrap();
    assert!(html.contains("Không xác nhận được đăng nhập"));
    assert!(
        html.contains("Thử lại") && html.contains("Quay lại trang dịch vụ"),
        "a way to retry and a way back"
    );
}

#[tokio::test]
async fn the_national_gateway_claim_profile_maps_to_the_same_identity() {
    let env = Env::with(Options {
        vnconnect: true,
        idp_alg_es256: true,
        ..Options::default()
    })
    .await;
    let (browser, req) = (Browser::new(), AuthRequest::new(PORTAL_A));
    let body = tokens(&env, &browser, &req, MAI).await;
    let claims = env
        .verify_id_token(body["id_token"].as_str().unwrap(), PORTAL_A)
        .await;
    assert_eq!(claims["name"], "Giàng Thị Mai");
    assert_eq!(
        claims["birthdate"], "2001-06-15",
        "NgayThangNamSinh yyyyMMdd became an OIDC date"
    );
    assert_eq!(claims["gender"], "female", "GioiTinh Nữ");
    assert_eq!(claims["citizen_id"], MAI);
    assert_eq!(claims["acr"], "LoA1");
}

#[tokio::test]
async fn prompt_none_answers_login_required_without_a_session_and_a_code_with_one() {
    let env = Env::start().await;
    let browser = Browser::new();
    let silent = AuthRequest::new(PORTAL_A).with("prompt", "none");
    let q = query(&location(&browser.get(&silent.url(&env.issuer)).await));
    assert_eq!(q["error"], "login_required");
    assert_eq!(q["state"], silent.state);
    login_for_code(&env, &browser, &AuthRequest::new(PORTAL_A), AN).await;
    let silent = AuthRequest::new(PORTAL_A).with("prompt", "none");
    let q = query(&location(&browser.get(&silent.url(&env.issuer)).await));
    assert!(q.contains_key("code"), "{q:?}");
}

#[tokio::test]
async fn prompt_login_and_an_exceeded_max_age_send_the_citizen_back_to_the_idp() {
    let clock = MockClock::starting_now();
    let env = Env::with(Options {
        clock: Some(clock.clone()),
        ..Options::default()
    })
    .await;
    let browser = Browser::new();
    login_for_code(&env, &browser, &AuthRequest::new(PORTAL_A), AN).await;
    // The mock IdP stamps `auth_time` from the real clock, which keeps running while the login
    // does: the broker's clock must move past it by more than a slow machine's login takes.
    clock.advance(Duration::from_secs(60));
    for req in [
        AuthRequest::new(PORTAL_A).with("prompt", "login"),
        AuthRequest::new(PORTAL_A).with("max_age", "0"),
    ] {
        let to = location(&browser.get(&req.url(&env.issuer)).await);
        assert!(to.starts_with(&env.idp.issuer), "{to}");
    }
    let fresh_enough = AuthRequest::new(PORTAL_A).with("max_age", "3600");
    assert!(
        location(&browser.get(&fresh_enough.url(&env.issuer)).await)
            .starts_with(&redirect_uri(PORTAL_A))
    );
}

#[tokio::test]
async fn a_level_1_account_does_not_satisfy_a_request_for_level_2() {
    let env = Env::start().await;
    let (browser, req) = (
        Browser::new(),
        AuthRequest::new(PORTAL_A).with("acr_values", "LoA2"),
    );
    let to_idp = location(&browser.get(&req.url(&env.issuer)).await);
    assert_eq!(
        query(&to_idp)["acr_values"],
        "2",
        "the level is asked of the IdP in its own terms"
    );
    let r = login(&env, &browser, &req, MAI).await;
    let q = query(&location(&r));
    assert_eq!(q["error"], "unmet_authentication_requirements");
    assert_eq!(q["state"], req.state);
    // The citizen is still signed in at the level obtained: a system that asks no more gets a
    // code without the IdP.
    let other = AuthRequest::new(PORTAL_B);
    assert!(
        location(&browser.get(&other.url(&env.issuer)).await).starts_with(&redirect_uri(PORTAL_B))
    );
}

#[tokio::test]
async fn consent_is_asked_once_remembered_and_refusable() {
    let env = Env::with_consent().await;
    let browser = Browser::new();
    let req = AuthRequest::new(PORTAL_A);
    let page = login(&env, &browser, &req, AN).await;
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    assert!(
        html.contains("Số định danh cá nhân") && html.contains("Cổng dịch vụ công A"),
        "{html}"
    );
    let consent_id = hidden_field(&html, "consent_id");
    let r = browser
        .post_form(
            &format!("{}/consent", env.issuer),
            &[("consent_id", &consent_id), ("decision", "allow")],
        )
        .await;
    assert!(query(&location(&r)).contains_key("code"));
    let replay = browser
        .post_form(
            &format!("{}/consent", env.issuer),
            &[("consent_id", &consent_id), ("decision", "allow")],
        )
        .await;
    assert_eq!(
        replay.status(),
        StatusCode::BAD_REQUEST,
        "a consent answer is single use"
    );

    let again = AuthRequest::new(PORTAL_A);
    assert!(
        query(&location(&browser.get(&again.url(&env.issuer)).await)).contains_key("code"),
        "remembered"
    );

    let b = AuthRequest::new(PORTAL_B);
    let page = browser.get(&b.url(&env.issuer)).await;
    let id = hidden_field(&page.text().await.unwrap(), "consent_id");
    let r = browser
        .post_form(
            &format!("{}/consent", env.issuer),
            &[("consent_id", &id), ("decision", "deny")],
        )
        .await;
    let q = query(&location(&r));
    assert_eq!(
        (q["error"].as_str(), q["state"].as_str()),
        ("access_denied", b.state.as_str())
    );
}

#[tokio::test]
async fn cancelling_at_the_idp_returns_access_denied_to_the_client() {
    let env = Env::start().await;
    let (browser, req) = (Browser::new(), AuthRequest::new(PORTAL_A));
    let to_idp = location(&browser.get(&req.url(&env.issuer)).await);
    let html = browser.get(&to_idp).await.text().await.unwrap();
    let flow = hidden_field(&html, "flow");
    let form_url = to_idp.split('?').next().unwrap().to_owned();
    let back = browser
        .post_form(&form_url, &[("flow", &flow), ("action", "cancel")])
        .await;
    let at_client = location(&browser.get(&location(&back)).await);
    let q = query(&at_client);
    assert_eq!(q["error"], "access_denied");
    assert_eq!(q["state"], req.state);
}

#[tokio::test]
async fn the_token_endpoint_authenticates_clients_as_the_standard_says() {
    let env = Env::start().await;
    let (browser, req) = (Browser::new(), AuthRequest::new(PORTAL_A));
    let code = login_for_code(&env, &browser, &req, AN).await;
    let http = reqwest::Client::new();
    let url = format!("{}/token", env.issuer);
    let redirect = redirect_uri(PORTAL_A);
    let base = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", redirect.as_str()),
        ("code_verifier", req.verifier.as_str()),
    ];

    let wrong = http
        .post(&url)
        .basic_auth(PORTAL_A, Some("wrong"))
        .form(&base)
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(wrong.headers()["www-authenticate"], "Basic");
    assert_eq!(
        wrong.json::<Value>().await.unwrap()["error"],
        "invalid_client"
    );

    let mut post = base.to_vec();
    post.extend([("client_id", PORTAL_A), ("client_secret", SECRET)]);
    let ok = http.post(&url).form(&post).send().await.unwrap();
    assert_eq!(ok.status(), StatusCode::OK, "client_secret_post");

    let req = AuthRequest::new(PORTAL_A);
    let code = login_for_code(&env, &Browser::new(), &req, AN).await;
    let stolen = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", redirect.as_str()),
        ("code_verifier", req.verifier.as_str()),
    ];
    let other_client = http
        .post(&url)
        .basic_auth(PORTAL_B, Some(SECRET))
        .form(&stolen)
        .send()
        .await
        .unwrap();
    assert_eq!(
        other_client.json::<Value>().await.unwrap()["error"],
        "invalid_grant",
        "a code is bound to its client"
    );

    let unsupported = http
        .post(&url)
        .basic_auth(PORTAL_A, Some(SECRET))
        .form(&[("grant_type", "password")])
        .send()
        .await
        .unwrap();
    assert_eq!(
        unsupported.json::<Value>().await.unwrap()["error"],
        "unsupported_grant_type"
    );
}

#[tokio::test]
async fn discovery_describes_the_provider_exactly() {
    let env = Env::start().await;
    let d: Value = discovery(&env).await;
    assert_eq!(d["issuer"], env.issuer.as_str());
    assert_eq!(d["authorization_response_iss_parameter_supported"], true);
    assert_eq!(
        d["code_challenge_methods_supported"],
        serde_json::json!(["S256"])
    );
    // Per algorithm the current key and the next one (published ahead of a rotation).
    let jwks = env.jwks().await;
    for alg in ["ES256", "RS256", "EdDSA"] {
        let n = jwks
            .keys
            .iter()
            .filter(|k| k.common.key_algorithm.map(|a| format!("{a:?}")) == Some(alg.into()))
            .count();
        assert_eq!(n, 2, "{alg}: current and next");
    }
    let kids: std::collections::HashSet<_> =
        jwks.keys.iter().map(|k| k.common.key_id.clone()).collect();
    assert_eq!(kids.len(), jwks.keys.len(), "every kid distinct");
}

/// An environment whose broker (and its Store) reads a clock the test moves.
async fn env_with_clock() -> (Env, std::sync::Arc<MockClock>) {
    let clock = MockClock::starting_now();
    let env = Env::with(Options {
        clock: Some(clock.clone()),
        ..Options::default()
    })
    .await;
    (env, clock)
}

#[tokio::test]
async fn a_pending_login_expires_and_the_callback_shows_a_page_not_a_code() {
    let (env, clock) = env_with_clock().await;
    let browser = Browser::new();
    let req = AuthRequest::new(PORTAL_A);
    let to_idp = location(&browser.get(&req.url(&env.issuer)).await);
    // pending_login_secs is 600 by default.
    clock.advance(Duration::from_secs(601));
    let back = sign_in_at_idp(&browser, &to_idp, AN).await;
    let r = browser.get(&location(&back)).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let page = r.text().await.unwrap();
    assert!(page.contains("hết hạn"), "the login-expired page: {page}");
    assert!(
        page.contains("Thử lại"),
        "the request is still known: a way to start again"
    );
}

/// The upstream `state` of a login started at `/authorize`, and whether the Store holds a
/// pending login under it.
async fn upstream_state(env: &Env, browser: &Browser, req: &AuthRequest) -> (String, String, bool) {
    use lienthong_broker::store::{Store, keys};
    let to_idp = location(&browser.get(&req.url(&env.issuer)).await);
    let state = query(&to_idp)["state"].clone();
    let kept = env
        .store
        .get(&keys::pending_login(&state))
        .await
        .unwrap()
        .is_some();
    (to_idp, state, kept)
}

/// The rest of a login whose citizen is at the IdP: the callback's redirect to the portal.
async fn finish_at_idp(browser: &Browser, to_idp: &str) -> String {
    let back = sign_in_at_idp(browser, to_idp, AN).await;
    location(&browser.get(&location(&back)).await)
}

#[tokio::test]
async fn a_pending_login_travels_sealed_in_the_state_and_the_store_keeps_nothing_for_it() {
    let env = Env::start().await;
    let (browser, req) = (Browser::new(), AuthRequest::new(PORTAL_A));
    let (to_idp, state, kept) = upstream_state(&env, &browser, &req).await;
    assert!(!kept, "no pending login in the Store");
    assert!(
        (100..=1024).contains(&state.len()),
        "the login sealed in the state: {} characters",
        state.len()
    );
    assert!(
        !state.contains(&req.state) && !state.contains(&req.challenge),
        "nothing of the request in clear"
    );
    let at_portal = finish_at_idp(&browser, &to_idp).await;
    assert!(
        at_portal.starts_with(&redirect_uri(PORTAL_A)),
        "{at_portal}"
    );
    assert_eq!(query(&at_portal)["state"], req.state);
}

#[tokio::test]
async fn a_sealed_state_altered_on_the_way_back_is_refused() {
    let env = Env::start().await;
    let (browser, req) = (Browser::new(), AuthRequest::new(PORTAL_A));
    let to_idp = location(&browser.get(&req.url(&env.issuer)).await);
    let callback = location(&sign_in_at_idp(&browser, &to_idp, AN).await);
    let state = query(&callback)["state"].clone();
    // One character of the sealed text changed; the browser's login cookie is untouched.
    let mut altered = state.clone().into_bytes();
    let i = altered.len() / 2;
    altered[i] = if altered[i] == b'A' { b'B' } else { b'A' };
    let altered = String::from_utf8(altered).unwrap();
    let r = browser
        .get(&callback.replace(&format!("state={state}"), &format!("state={altered}")))
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.headers().get("location").is_none(), "no code");
    assert!(r.text().await.unwrap().contains("hết hạn"));
    let ok = browser.get(&callback).await;
    assert!(location(&ok).starts_with(&redirect_uri(PORTAL_A)));
    // Used once, its cookie gone: the same answer again is the broker's own refusal, before
    // the IdP is asked about the spent code.
    let again = browser.get(&callback).await;
    assert_eq!(again.status(), StatusCode::BAD_REQUEST);
    assert!(again.text().await.unwrap().contains("hết hạn"));
}

#[tokio::test]
async fn a_pending_login_too_long_for_its_state_is_kept_in_the_store_and_taken_once() {
    let env = Env::start().await;
    let browser = Browser::new();
    let mut req = AuthRequest::new(PORTAL_A);
    // A client's own state and nonce of 500 characters each: sealed, over a kilobyte.
    req.state = "s".repeat(500);
    req.nonce = "n".repeat(500);
    let (to_idp, state, kept) = upstream_state(&env, &browser, &req).await;
    assert!(kept, "kept in the Store");
    assert_eq!(state.len(), 43, "a random state: {state}");
    let callback = location(&sign_in_at_idp(&browser, &to_idp, AN).await);
    let at_portal = location(&browser.get(&callback).await);
    assert!(
        at_portal.starts_with(&redirect_uri(PORTAL_A)),
        "{at_portal}"
    );
    assert_eq!(query(&at_portal)["state"], req.state);
    assert_eq!(
        browser.get(&callback).await.status(),
        StatusCode::BAD_REQUEST,
        "taken once"
    );
}

/// A login in an environment of `options` whose pending logins are kept in the Store: under a
/// random state, and the login completes.
async fn signs_in_with_the_pending_login_in_the_store(options: Options) {
    let env = Env::with(options).await;
    let (browser, req) = (Browser::new(), AuthRequest::new(PORTAL_A));
    let (to_idp, state, kept) = upstream_state(&env, &browser, &req).await;
    assert!(kept, "kept in the Store");
    assert_eq!(state.len(), 43, "a random state: {state}");
    let at_portal = finish_at_idp(&browser, &to_idp).await;
    assert!(
        at_portal.starts_with(&redirect_uri(PORTAL_A)),
        "{at_portal}"
    );
}

#[tokio::test]
async fn an_idp_limit_on_the_state_keeps_pending_logins_in_the_store() {
    signs_in_with_the_pending_login_in_the_store(Options {
        upstream_extra: Some("max_state_length = 64".into()),
        ..Options::default()
    })
    .await;
}

#[tokio::test]
async fn with_record_encoding_json_a_pending_login_is_kept_in_the_store() {
    // The first step of a rolling update: an earlier release's nodes look for every pending
    // login in the Store, so none is carried in its state.
    signs_in_with_the_pending_login_in_the_store(Options {
        shared_keys: true,
        store_extra: Some("record_encoding = \"json\"".into()),
        ..Options::default()
    })
    .await;
}

#[tokio::test]
async fn an_expired_code_is_refused_at_the_token_endpoint() {
    let (env, clock) = env_with_clock().await;
    let browser = Browser::new();
    let req = AuthRequest::new(PORTAL_A);
    let code = login_for_code(&env, &browser, &req, AN).await;
    // code_secs is 60 by default.
    clock.advance(Duration::from_secs(61));
    let r = redeem(&env, &req, &code, &req.verifier).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "invalid_grant");
}

#[tokio::test]
async fn an_idle_session_expires_and_the_next_sign_in_goes_to_the_idp() {
    let (env, clock) = env_with_clock().await;
    let browser = Browser::new();
    login_for_code(&env, &browser, &AuthRequest::new(PORTAL_A), AN).await;
    // idle_secs is 1800: used within it, the session lives on (and its idle clock restarts).
    clock.advance(Duration::from_secs(1700));
    let sso = AuthRequest::new(PORTAL_B);
    assert!(
        location(&browser.get(&sso.url(&env.issuer)).await).starts_with(&redirect_uri(PORTAL_B)),
        "still signed in"
    );
    clock.advance(Duration::from_secs(1801));
    let after = AuthRequest::new(PORTAL_A);
    let to = location(&browser.get(&after.url(&env.issuer)).await);
    assert!(to.starts_with(&env.idp.issuer), "idle session ended: {to}");
}

#[tokio::test]
async fn an_expired_access_token_is_refused_at_userinfo() {
    let (env, clock) = env_with_clock().await;
    let browser = Browser::new();
    let req = AuthRequest::new(PORTAL_A);
    let tokens = tokens(&env, &browser, &req, AN).await;
    let access = tokens["access_token"].as_str().unwrap();
    let userinfo = format!("{}/userinfo", env.issuer);
    let http = reqwest::Client::new();
    assert_eq!(
        status_of(http.get(&userinfo).bearer_auth(access)).await,
        StatusCode::OK
    );
    // access_token_secs is 300 by default.
    clock.advance(Duration::from_secs(301));
    assert_eq!(
        status_of(http.get(&userinfo).bearer_auth(access)).await,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn metrics_count_logins_by_outcome_and_level_and_time_each_endpoint() {
    let env = Env::start().await;
    let browser = Browser::new();
    tokens(&env, &browser, &AuthRequest::new(PORTAL_A), AN).await;
    let silent = AuthRequest::new(PORTAL_A).with("prompt", "none");
    // A second browser with no session: refused with login_required.
    Browser::new().get(&silent.url(&env.issuer)).await;
    let r = reqwest::get(format!("{}/metrics", env.issuer))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let text = r.text().await.unwrap();
    assert!(
        text.contains("lienthong_logins_total{outcome=\"success\",level=\"2\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("lienthong_logins_total{outcome=\"login_required\",level=\"\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("lienthong_http_request_duration_seconds_count{endpoint=\"/token\"} 1"),
        "{text}"
    );
    assert!(text.contains("lienthong_sessions_opened_total 1"), "{text}");
    assert!(!text.contains(AN), "no personal data in metrics");
}

#[tokio::test]
async fn when_the_idp_rolls_its_keys_the_next_login_fetches_them_again() {
    // The broker caches the IdP's keys for ten minutes; the IdP restarts with new keys.
    let mut env = Env::with(Options {
        metadata_ttl_secs: 600,
        ..Options::default()
    })
    .await;
    let before = tokens(&env, &Browser::new(), &AuthRequest::new(PORTAL_A), AN).await;
    assert!(before["id_token"].is_string());
    env.restart_idp(lienthong_mock_idp::Roster::builtin()).await;
    let after = tokens(&env, &Browser::new(), &AuthRequest::new(PORTAL_A), MAI).await;
    assert!(
        after["id_token"].is_string(),
        "signed by a key the cache did not have, and still accepted after a re-fetch"
    );
}
