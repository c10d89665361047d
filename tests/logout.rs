//! Signing out, over HTTP: RP-Initiated Logout, Back-Channel Logout to every system that took
//! part, Front-Channel frames, and the national IdP's own session ended too.

mod common;

use common::*;
use reqwest::StatusCode;
use serde_json::Value;

/// Verifies a logout token against the broker's JWKS and returns its claims.
async fn logout_claims(env: &Env, token: &str, client: &str) -> Value {
    let header = jsonwebtoken::decode_header(token).unwrap();
    assert_eq!(header.typ.as_deref(), Some("logout+jwt"));
    let jwks = env.jwks().await;
    let jwk = jwks
        .find(header.kid.as_deref().unwrap())
        .expect("kid in JWKS");
    let mut v = jsonwebtoken::Validation::new(header.alg);
    v.set_issuer(&[&env.issuer]);
    v.set_audience(&[client]);
    v.set_required_spec_claims(&["iss", "aud", "iat", "exp"]);
    jsonwebtoken::decode::<Value>(
        token,
        &jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap(),
        &v,
    )
    .unwrap()
    .claims
}

/// Where a sign-out sends the browser next: its redirect, or the signed-out page's own.
async fn onward(r: reqwest::Response) -> String {
    if r.status() != StatusCode::OK {
        return location(&r);
    }
    let page = r.text().await.unwrap();
    page.split("http-equiv=\"refresh\" content=\"2;url=")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the page moves on by itself")
        // HTML-escaped in the attribute, as a browser reads it.
        .replace("&#38;", "&")
        .replace("&amp;", "&")
}

/// Signs out at the broker with no parameters; returns the national IdP's sign-out address,
/// where the browser goes next.
async fn sign_out_at_broker(env: &Env, browser: &Browser) -> String {
    let next = onward(browser.get(&format!("{}/logout", env.issuer)).await).await;
    assert!(next.starts_with(&env.idp.issuer), "{next}");
    next
}

/// The claims of a JWT, unverified (the test reads what the IdP issued, the IdP verifies).
fn jwt_claims(token: &str) -> Value {
    use base64::Engine;
    let payload = token.split('.').nth(1).expect("a JWT");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

/// The value of cookie `name` the browser would send to `url`.
fn cookie_for(jar: &reqwest::cookie::Jar, url: &str, name: &str) -> Option<String> {
    use reqwest::cookie::CookieStore;
    let header = jar.cookies(&url::Url::parse(url).unwrap())?;
    header
        .to_str()
        .unwrap()
        .split("; ")
        .find_map(|pair| pair.strip_prefix(&format!("{name}=")).map(str::to_owned))
}

const UPSTREAM_COOKIE: &str = "lienthong_upstream";
const SESSION_COOKIE: &str = "lienthong_sso";

fn logout_url(env: &Env, params: &[(&str, &str)]) -> String {
    let mut url = url::Url::parse(&format!("{}/logout", env.issuer)).unwrap();
    for (k, v) in params {
        url.query_pairs_mut().append_pair(k, v);
    }
    url.into()
}

#[tokio::test]
async fn a_sign_out_ends_the_session_everywhere_notifies_every_system_and_the_idp() {
    let env = Env::start().await;
    let browser = Browser::new();
    let a = tokens(&env, &browser, &AuthRequest::new(PORTAL_A), AN).await;
    let b = tokens(&env, &browser, &AuthRequest::new(PORTAL_B), AN).await;
    let id_a = env
        .verify_id_token(a["id_token"].as_str().unwrap(), PORTAL_A)
        .await;
    let id_b = env
        .verify_id_token(b["id_token"].as_str().unwrap(), PORTAL_B)
        .await;
    let sid = id_a["sid"].as_str().unwrap().to_owned();
    assert_eq!(id_b["sid"], sid, "one session, one sid");

    // Discovery says where and how.
    let discovery: Value = discovery(&env).await;
    assert_eq!(
        discovery["end_session_endpoint"],
        format!("{}/logout", env.issuer)
    );
    assert_eq!(discovery["backchannel_logout_session_supported"], true);

    let after = after_logout_uri(PORTAL_A);
    let r = browser
        .get(&logout_url(
            &env,
            &[
                ("id_token_hint", a["id_token"].as_str().unwrap()),
                ("post_logout_redirect_uri", &after),
                ("state", "bye-1"),
            ],
        ))
        .await;
    // PORTAL_B asked for front-channel logout: the signed-out page frames it, then goes on.
    assert_eq!(r.status(), StatusCode::OK);
    let page = r.text().await.unwrap();
    assert!(page.contains("Bạn đã đăng xuất"), "{page}");
    assert!(
        page.contains(&format!("{PORTAL_B}/frontchannel?iss=")) && page.contains(&sid),
        "a front-channel frame with iss and sid: {page}"
    );
    let next = page
        .split("http-equiv=\"refresh\" content=\"2;url=")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the page moves on by itself")
        // HTML-escaped in the attribute, as a browser reads it.
        .replace("&#38;", "&")
        .replace("&amp;", "&");
    assert!(
        next.starts_with(&env.idp.issuer),
        "the national IdP's session is ended too: {next}"
    );
    let back = location(&browser.get(&next).await);
    assert!(back.starts_with(&format!("{}/logout/callback", env.issuer)));
    let end = location(&browser.get(&back).await);
    assert!(end.starts_with(&after), "{end}");
    assert_eq!(query(&end)["state"], "bye-1");

    // Every system that took part gets a verifiable logout token with the sid.
    for client in [PORTAL_A, PORTAL_B] {
        let tokens = env.logout_tokens(client, 1).await;
        let claims = logout_claims(&env, &tokens[0], client).await;
        assert_eq!(claims["sid"], sid);
        assert!(
            claims["events"]
                .get("http://schemas.openid.net/event/backchannel-logout")
                .is_some()
        );
        assert!(claims["jti"].is_string());
        assert!(claims.get("nonce").is_none(), "a logout token has no nonce");
    }

    // The session is gone: silent login fails, and a new sign-in asks the IdP for a password.
    let silent = AuthRequest::new(PORTAL_A).with("prompt", "none");
    let q = query(&location(&browser.get(&silent.url(&env.issuer)).await));
    assert_eq!(q["error"], "login_required");
    let again = location(
        &browser
            .get(&AuthRequest::new(PORTAL_A).url(&env.issuer))
            .await,
    );
    assert!(again.starts_with(&env.idp.issuer));
    let form = browser.get(&again).await;
    assert_eq!(form.status(), StatusCode::OK);
    assert!(
        form.text().await.unwrap().contains("Mật khẩu"),
        "the IdP asks for the password again"
    );
}

#[tokio::test]
async fn without_the_upstream_id_token_kept_the_idp_session_still_ends_by_client_id() {
    let env = Env::with(Options {
        upstream_extra: Some("logout_id_token_hint = false".into()),
        ..Options::default()
    })
    .await;
    let jar = std::sync::Arc::new(reqwest::cookie::Jar::default());
    let browser = Browser::with_jar(jar.clone());
    let a = tokens(&env, &browser, &AuthRequest::new(PORTAL_A), AN).await;
    let logout = format!("{}/logout", env.issuer);
    assert_eq!(cookie_for(&jar, &logout, UPSTREAM_COOKIE), None);
    let r = browser
        .get(&logout_url(
            &env,
            &[("id_token_hint", a["id_token"].as_str().unwrap())],
        ))
        .await;
    let next = onward(r).await;
    assert!(next.starts_with(&env.idp.issuer), "{next}");
    let q = query(&next);
    assert!(!q.contains_key("id_token_hint"), "{next}");
    assert_eq!(q["client_id"], "lienthong");
    let back = location(&browser.get(&next).await);
    assert!(back.starts_with(&format!("{}/logout/callback", env.issuer)));
    let again = location(
        &browser
            .get(&AuthRequest::new(PORTAL_A).url(&env.issuer))
            .await,
    );
    let form = browser.get(&again).await;
    assert!(
        form.text().await.unwrap().contains("Mật khẩu"),
        "the IdP's session ended too"
    );
}

#[tokio::test]
async fn the_idp_id_token_is_kept_sealed_in_a_cookie_sent_to_the_sign_out_alone() {
    let env = Env::start().await;
    let (jar, other_jar) = (
        std::sync::Arc::new(reqwest::cookie::Jar::default()),
        std::sync::Arc::new(reqwest::cookie::Jar::default()),
    );
    let (browser, other) = (
        Browser::with_jar(jar.clone()),
        Browser::with_jar(other_jar.clone()),
    );
    tokens(&env, &browser, &AuthRequest::new(PORTAL_A), AN).await;
    tokens(&env, &other, &AuthRequest::new(PORTAL_A), "001192007731").await;
    let logout = format!("{}/logout", env.issuer);
    let sealed = cookie_for(&jar, &logout, UPSTREAM_COOKIE).expect("the cookie, at /logout");
    for path in ["/authorize", "/consent", "/token", "/userinfo", "/"] {
        assert_eq!(
            cookie_for(&jar, &format!("{}{path}", env.issuer), UPSTREAM_COOKIE),
            None,
            "no other request carries it: {path}"
        );
    }

    // Another session's cookie does not open in this one: the sign-out sends no hint, and
    // certainly not the other citizen's token.
    other_jar.add_cookie_str(
        &format!("{UPSTREAM_COOKIE}={sealed}; Path=/logout"),
        &url::Url::parse(&logout).unwrap(),
    );
    let next = sign_out_at_broker(&env, &other).await;
    let q = query(&next);
    assert!(!q.contains_key("id_token_hint"), "{next}");
    assert_eq!(q["client_id"], "lienthong");
    assert_eq!(
        cookie_for(&other_jar, &logout, UPSTREAM_COOKIE),
        None,
        "a sign-out forgets the cookie"
    );

    // Its own session's cookie opens: the IdP gets back the ID token it issued, which the
    // cookie did not show in clear.
    let next = sign_out_at_broker(&env, &browser).await;
    let hint = query(&next)["id_token_hint"].clone();
    let claims = jwt_claims(&hint);
    assert_eq!(claims["iss"], env.idp.issuer.as_str());
    assert_eq!(claims["aud"], "lienthong");
    let payload = hint.split('.').nth(1).unwrap();
    assert!(!sealed.contains(payload), "sealed, not in clear");
    assert_eq!(cookie_for(&jar, &logout, UPSTREAM_COOKIE), None);
    let back = location(&browser.get(&next).await);
    assert!(back.starts_with(&format!("{}/logout/callback", env.issuer)));
}

#[tokio::test]
async fn an_idp_id_token_too_long_for_a_cookie_is_kept_with_the_session() {
    // A long address makes the IdP's ID token longer than a browser keeps in a cookie.
    let address = "Thôn Thử Nghiệm, xã Thử Nghiệm, ".repeat(120);
    let roster = format!(
        r#"{{"citizens": [{{"sub": "long-1", "citizen_id": "{AN}", "full_name": "Trần Văn Thử",
            "birthdate": "1985-04-12", "sex": "male", "level": 2, "address": "{address}"}}]}}"#
    );
    let env = Env::with(Options {
        roster: Some(lienthong_mock_idp::Roster::from_json(&roster).unwrap()),
        ..Options::default()
    })
    .await;
    let jar = std::sync::Arc::new(reqwest::cookie::Jar::default());
    let browser = Browser::with_jar(jar.clone());
    tokens(&env, &browser, &AuthRequest::new(PORTAL_A), AN).await;
    let logout = format!("{}/logout", env.issuer);
    assert_eq!(
        cookie_for(&jar, &logout, UPSTREAM_COOKIE),
        None,
        "no cookie a browser would drop"
    );
    let next = sign_out_at_broker(&env, &browser).await;
    let hint = query(&next)["id_token_hint"].clone();
    assert!(hint.len() > 4000, "{} bytes", hint.len());
    assert_eq!(jwt_claims(&hint)["iss"], env.idp.issuer.as_str());
}

#[tokio::test]
async fn a_sign_out_never_redirects_to_an_unregistered_address_and_ends_nothing() {
    let env = Env::start().await;
    let browser = Browser::new();
    let a = tokens(&env, &browser, &AuthRequest::new(PORTAL_A), AN).await;
    let hint = a["id_token"].as_str().unwrap();
    for (params, what) in [
        (
            vec![
                ("id_token_hint", hint),
                ("post_logout_redirect_uri", "https://evil.example/"),
            ],
            "an unregistered address",
        ),
        (
            vec![(
                "post_logout_redirect_uri",
                "http://127.0.0.1:9/portal-a/signed-out",
            )],
            "an address with no client named",
        ),
        (
            vec![("id_token_hint", "not.a.token")],
            "a hint that is not our token",
        ),
        (
            vec![("id_token_hint", hint), ("client_id", PORTAL_B)],
            "a client_id other than the hint's audience",
        ),
    ] {
        let r = browser.get(&logout_url(&env, &params)).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{what}");
        assert!(r.headers().get("location").is_none(), "{what}");
    }
    let silent = AuthRequest::new(PORTAL_A).with("prompt", "none");
    let q = query(&location(&browser.get(&silent.url(&env.issuer)).await));
    assert!(
        q.contains_key("code"),
        "still signed in after refused sign-outs"
    );
}

#[tokio::test]
async fn a_system_that_does_not_answer_does_not_hold_up_the_sign_out() {
    let env = Env::start().await;
    let browser = Browser::new();
    tokens(&env, &browser, &AuthRequest::new(PORTAL_A), AN).await;
    tokens(&env, &browser, &AuthRequest::new(UNREACHABLE), AN).await;
    let r = browser.get(&logout_url(&env, &[])).await;
    // No client named, no frames: ends at the national IdP's sign-out, then a page.
    let next = location(&r);
    let back = location(&browser.get(&next).await);
    let page = browser.get(&back).await;
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page.text().await.unwrap().contains("Bạn đã đăng xuất"));
    // The system that answers was told, whatever the other one does.
    assert_eq!(env.logout_tokens(PORTAL_A, 1).await.len(), 1);
    let silent = AuthRequest::new(UNREACHABLE).with("prompt", "none");
    let q = query(&location(&browser.get(&silent.url(&env.issuer)).await));
    assert_eq!(q["error"], "login_required");
}

#[tokio::test]
async fn an_id_token_hint_alone_ends_its_session_from_another_browser() {
    let env = Env::start().await;
    let browser = Browser::new();
    let a = tokens(&env, &browser, &AuthRequest::new(PORTAL_A), AN).await;
    // The system signs the citizen out from its own back end, with no broker cookie.
    let r = Browser::new()
        .get(&logout_url(
            &env,
            &[
                ("id_token_hint", a["id_token"].as_str().unwrap()),
                ("post_logout_redirect_uri", &after_logout_uri(PORTAL_A)),
            ],
        ))
        .await;
    assert!(r.status().is_redirection());
    let silent = AuthRequest::new(PORTAL_A).with("prompt", "none");
    let q = query(&location(&browser.get(&silent.url(&env.issuer)).await));
    assert_eq!(
        q["error"], "login_required",
        "the session named by the hint ended"
    );
}

/// The session cookie is `<sid>.<secret>`: the `sid`, which every system's ID tokens carry,
/// finds the session, and only the secret opens it.
#[tokio::test]
async fn a_session_cookie_opens_its_session_only_with_its_secret() {
    let env = Env::start().await;
    let jar = std::sync::Arc::new(reqwest::cookie::Jar::default());
    let browser = Browser::with_jar(jar.clone());
    let a = tokens(&env, &browser, &AuthRequest::new(PORTAL_A), AN).await;
    let sid = jwt_claims(a["id_token"].as_str().unwrap())["sid"]
        .as_str()
        .unwrap()
        .to_owned();
    let cookie = cookie_for(&jar, &env.issuer, SESSION_COOKIE).expect("the session cookie");
    let (in_cookie, secret) = cookie.split_once('.').expect("<sid>.<secret>");
    assert_eq!(in_cookie, sid);
    let silent = |env: &Env, browser: &Browser| {
        let req = AuthRequest::new(PORTAL_B).with("prompt", "none");
        let url = req.url(&env.issuer);
        let browser = browser.http.clone();
        async move { query(&location(&browser.get(url).send().await.unwrap())) }
    };
    let url = url::Url::parse(&env.issuer).unwrap();
    for forged in [
        format!("{sid}.{}", lienthong_protocol::secret::random_token(32)),
        format!("{sid}."),
        sid.clone(),
        secret.to_owned(),
    ] {
        let other = std::sync::Arc::new(reqwest::cookie::Jar::default());
        other.add_cookie_str(&format!("{SESSION_COOKIE}={forged}; Path=/"), &url);
        let q = silent(&env, &Browser::with_jar(other)).await;
        assert_eq!(q["error"], "login_required", "{forged}");
    }
    let q = silent(&env, &browser).await;
    assert!(q.contains_key("code"), "the citizen's own browser: {q:?}");
}

/// A session written by an earlier release — the cookie a secret alone, the session under its
/// hash, in JSON, an index from its `sid` — still signs the citizen in by its cookie, and a
/// sign-out by `id_token_hint` alone still finds and ends it.
#[tokio::test]
async fn a_session_of_an_earlier_release_is_still_found_by_its_cookie_and_its_sid() {
    use lienthong_broker::session::SsoSession;
    use lienthong_broker::store::{Record, Sealer, Store, keys};

    let env = Env::with(Options {
        shared_keys: true,
        ..Options::default()
    })
    .await;
    let sealer = Sealer::from_base64(SEALING_KEY).unwrap();
    let a = tokens(&env, &Browser::new(), &AuthRequest::new(PORTAL_A), AN).await;
    let sid = jwt_claims(a["id_token"].as_str().unwrap())["sid"]
        .as_str()
        .unwrap()
        .to_owned();
    // The session as the earlier release kept it.
    let stored = env.store.take(&keys::session(&sid)).await.unwrap();
    let mut session: SsoSession = sealer
        .decode(&keys::session(&sid), stored)
        .expect("the session opens");
    session.cookie = String::new();
    let secret = lienthong_protocol::secret::random_token(32);
    let key = keys::sso_session(&secret);
    let ttl = std::time::Duration::from_secs(600);
    let json = serde_json::to_vec(&session).unwrap();
    let earlier = sealer.seal(&key, SsoSession::JSON_VERSION.unwrap(), &json);
    env.store.put(&key, earlier, ttl).await.unwrap();
    env.store
        .put(&keys::session_by_sid(&sid), key.clone().into_bytes(), ttl)
        .await
        .unwrap();

    let jar = std::sync::Arc::new(reqwest::cookie::Jar::default());
    jar.add_cookie_str(
        &format!("{SESSION_COOKIE}={secret}; Path=/"),
        &url::Url::parse(&env.issuer).unwrap(),
    );
    let browser = Browser::with_jar(jar);
    let silent = AuthRequest::new(PORTAL_B).with("prompt", "none");
    let q = query(&location(&browser.get(&silent.url(&env.issuer)).await));
    assert!(
        q.contains_key("code"),
        "signed in by the earlier cookie: {q:?}"
    );
    // Signed out from a browser without the cookie, by the ID token's `sid`.
    let r = Browser::new()
        .get(&logout_url(
            &env,
            &[("id_token_hint", a["id_token"].as_str().unwrap())],
        ))
        .await;
    assert!(onward(r).await.starts_with(&env.idp.issuer));
    assert_eq!(
        env.store.get(&key).await.unwrap(),
        None,
        "the session ended"
    );
    assert_eq!(
        env.store.get(&keys::session_by_sid(&sid)).await.unwrap(),
        None,
        "with its index"
    );
    let q = query(&location(&browser.get(&silent.url(&env.issuer)).await));
    assert_eq!(q["error"], "login_required");
}
