//! The RFC 9700 (OAuth 2.0 Security Best Current Practice) §4 threat suite: one test per attack
//! that applies to Lienthong — as the authorization server of provincial systems and as the
//! client of the national IdP — named after its section, performing the attack over HTTP and
//! showing it fail. docs/security.md maps every heading of §4 to its test or to why it does not
//! apply.

mod common;

use common::*;
use reqwest::StatusCode;
use reqwest::header::{CONTENT_SECURITY_POLICY, LOCATION, REFERRER_POLICY, X_FRAME_OPTIONS};
use serde_json::Value;

fn token_endpoint(env: &Env) -> String {
    format!("{}/token", env.issuer)
}

/// `POST /token` as `client` (by its secret) with `form`.
async fn post_token(env: &Env, client: &str, form: &[(&str, &str)]) -> reqwest::Response {
    reqwest::Client::new()
        .post(token_endpoint(env))
        .basic_auth(client, Some(SECRET))
        .form(form)
        .send()
        .await
        .unwrap()
}

/// The broker's answer must be a page of its own, never a redirect away.
fn assert_page_not_redirect(r: &reqwest::Response, what: &str) {
    assert!(
        r.status().is_client_error(),
        "{what}: {} (expected a refusal page)",
        r.status()
    );
    assert!(r.headers().get(LOCATION).is_none(), "{what}: redirected");
}

/// §4.1: every near-miss of the registered redirect URI is refused with a page of the broker's
/// own — exact string matching, no patterns, no normalisation — so a code never travels to a
/// URI the client did not register.
#[tokio::test]
async fn rfc9700_4_1_insufficient_redirect_uri_validation() {
    let env = Env::start().await;
    let registered = redirect_uri(PORTAL_A);
    let variants = [
        format!("{registered}/"),
        format!("{registered}x"),
        format!("{registered}?next=https://attacker.example"),
        format!("{registered}#frag"),
        registered.replace("/callback", "/CALLBACK"),
        registered.replace("127.0.0.1:9", "127.0.0.1:99"),
        registered.replace("http://", "http://attacker.example@"),
        registered.replace("127.0.0.1", "127.0.0.1.attacker.example"),
        registered.replace("/callback", "/%63allback"),
        registered.replace("/callback", "/./callback"),
        "https://attacker.example/callback".to_owned(),
    ];
    let browser = Browser::new();
    for variant in variants {
        let url = rewrite_query(&AuthRequest::new(PORTAL_A).url(&env.issuer), |k, v| {
            Some(if k == "redirect_uri" {
                variant.clone()
            } else {
                v
            })
        });
        let r = browser.get(&url).await;
        assert_page_not_redirect(&r, &variant);
    }
}

/// §4.2: the pages of the authorization endpoint and of the broker's own redirection endpoint
/// tell the browser to send no `Referer` anywhere, and load nothing from another origin, so
/// neither `state` nor a code leaks to a third party.
#[tokio::test]
async fn rfc9700_4_2_credential_leakage_via_referer_headers() {
    let env = Env::with_consent().await;
    let browser = Browser::new();
    let req = AuthRequest::new(PORTAL_A);
    let to_idp = browser.get(&req.url(&env.issuer)).await;
    assert_eq!(to_idp.headers()[REFERRER_POLICY], "no-referrer");
    // The consent page: reached with the code-bearing callback URL in the address bar.
    let consent = login(&env, &browser, &req, AN).await;
    assert_eq!(consent.status(), StatusCode::OK);
    assert_eq!(consent.headers()[REFERRER_POLICY], "no-referrer");
    let html = consent.text().await.unwrap();
    for attribute in ["src=\"http", "src=\"//", "href=\"//"] {
        assert!(
            !html.contains(attribute),
            "third-party content: {attribute}"
        );
    }
    // A refusal page too (an unknown client).
    let refused = browser
        .get(&format!("{}/authorize?client_id=nobody", env.issuer))
        .await;
    assert_eq!(refused.headers()[REFERRER_POLICY], "no-referrer");
}

/// §4.3: a code found in the browser's history is worth nothing once redeemed — and trying it
/// revokes what it produced — and an access token is never accepted in a URL query.
#[tokio::test]
async fn rfc9700_4_3_credential_leakage_via_browser_history() {
    let env = Env::start().await;
    let browser = Browser::new();
    let req = AuthRequest::new(PORTAL_A);
    let code = login_for_code(&env, &browser, &req, AN).await;
    let first = redeem(&env, &req, &code, &req.verifier).await;
    assert_eq!(first.status(), StatusCode::OK);
    let access = first.json::<Value>().await.unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let from_history = redeem(&env, &req, &code, &req.verifier).await;
    assert_eq!(from_history.status(), StatusCode::BAD_REQUEST);
    let userinfo = format!("{}/userinfo", env.issuer);
    let revoked = bearer_get(&userinfo, &access).await;
    assert_eq!(
        revoked.status(),
        StatusCode::UNAUTHORIZED,
        "the replayed code revoked its grant"
    );
    // A fresh token, in a URL query (RFC 6750 §2.3): not accepted.
    let fresh = tokens(&env, &browser, &AuthRequest::new(PORTAL_A), AN).await;
    let fresh = fresh["access_token"].as_str().unwrap();
    let in_query = reqwest::get(format!("{userinfo}?access_token={fresh}"))
        .await
        .unwrap();
    assert_eq!(in_query.status(), StatusCode::UNAUTHORIZED);
}

/// §4.4: as a client, the broker takes an authorization response only with its IdP's `iss`
/// (RFC 9207); as a server, it names itself in every response so its clients can do the same.
#[tokio::test]
async fn rfc9700_4_4_mix_up_attacks() {
    let env = Env::start().await;
    let browser = Browser::new();
    let req = AuthRequest::new(PORTAL_A);
    let to_idp = location(&browser.get(&req.url(&env.issuer)).await);
    let back = location(&sign_in_at_idp(&browser, &to_idp, AN).await);
    // The attacker's IdP answers in the honest IdP's place: same state, its own issuer.
    let mixed = rewrite_query(&back, |k, v| {
        Some(if k == "iss" {
            "https://attacker.example/idp".to_owned()
        } else {
            v
        })
    });
    let r = browser.get(&mixed).await;
    assert_page_not_redirect(&r, "an authorization response from another issuer");
    // Spent by the refusal (its login cookie removed with it): the genuine response cannot be
    // replayed after it either.
    let again = browser.get(&back).await;
    assert_page_not_redirect(&again, "the same login again");
    // The broker's own responses carry iss (checked in code_from for every login).
    let code = login_for_code(&env, &Browser::new(), &AuthRequest::new(PORTAL_A), AN).await;
    assert!(!code.is_empty());
}

/// §4.5: a code stolen from one login and injected into another session is useless: it is
/// bound to its PKCE challenge, its client and its redirect URI.
#[tokio::test]
async fn rfc9700_4_5_authorization_code_injection() {
    let env = Env::start().await;
    // The attacker's own login; the victim's client redeems the code with the victim's
    // session's PKCE verifier.
    let attacker = AuthRequest::new(PORTAL_A);
    let stolen = login_for_code(&env, &Browser::new(), &attacker, MAI).await;
    let victim = AuthRequest::new(PORTAL_A);
    let r = redeem(&env, &victim, &stolen, &victim.verifier).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_grant");
    // Another client, or another redirect URI, cannot redeem a code either.
    let other = login_for_code(&env, &Browser::new(), &attacker, MAI).await;
    let as_b = post_token(
        &env,
        PORTAL_B,
        &[
            ("grant_type", "authorization_code"),
            ("code", other.as_str()),
            ("redirect_uri", &redirect_uri(PORTAL_A)),
            ("code_verifier", &attacker.verifier),
        ],
    )
    .await;
    assert_eq!(as_b.status(), StatusCode::BAD_REQUEST);
    let third = login_for_code(&env, &Browser::new(), &attacker, MAI).await;
    let wrong_uri = post_token(
        &env,
        PORTAL_A,
        &[
            ("grant_type", "authorization_code"),
            ("code", third.as_str()),
            ("redirect_uri", &redirect_uri(PORTAL_B)),
            ("code_verifier", &attacker.verifier),
        ],
    )
    .await;
    assert_eq!(wrong_uri.status(), StatusCode::BAD_REQUEST);
}

/// §4.6: an access token the broker did not issue, or issued for another purpose, is not
/// accepted: signature by the broker's keys, `typ` at+jwt, issuer and audience all checked. A
/// token is recognised without its signature only as the exact text recorded with its grant:
/// one altered under our `kid`, its grant alive, is refused at userinfo and introspection.
#[tokio::test]
async fn rfc9700_4_6_access_token_injection() {
    use base64::Engine;
    let env = Env::start().await;
    let t = tokens(&env, &Browser::new(), &AuthRequest::new(PORTAL_A), AN).await;
    let access = t["access_token"].as_str().unwrap();
    let id_token = t["id_token"].as_str().unwrap();
    // Forged: the same claims signed by a key of the attacker's.
    let claims = jwt_payload(access);
    let forger = lienthong_protocol::KeySet::generate(&[jsonwebtoken::Algorithm::ES256]).unwrap();
    let forged = forger
        .sign(jsonwebtoken::Algorithm::ES256, "at+jwt", &claims)
        .unwrap();
    // Ours, altered: another signature; more scope under our signature.
    let (signed, signature) = access.rsplit_once('.').unwrap();
    let flipped = if signature.starts_with('A') { 'B' } else { 'A' };
    let resigned = format!("{signed}.{flipped}{}", &signature[1..]);
    let mut wider = claims.clone();
    wider["scope"] = "openid profile citizen_id offline_access".into();
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header = signed.split_once('.').unwrap().0;
    let widened = format!(
        "{header}.{}.{signature}",
        b64.encode(serde_json::to_vec(&wider).unwrap())
    );
    let userinfo = format!("{}/userinfo", env.issuer);
    for (what, token) in [
        ("forged", forged.as_str()),
        ("an ID token", id_token),
        ("garbage", "e30.e30.e30"),
        ("its signature altered", resigned.as_str()),
        ("its claims altered", widened.as_str()),
    ] {
        let r = bearer_get(&userinfo, token).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{what}");
        let r = reqwest::Client::new()
            .post(format!("{}/introspect", env.issuer))
            .basic_auth(PORTAL_A, Some(SECRET))
            .form(&[("token", token)])
            .send()
            .await
            .unwrap();
        let answer: Value = r.json().await.unwrap();
        assert_eq!(answer["active"], false, "{what}");
    }
    // The token itself, its grant alive, is accepted at userinfo.
    assert_eq!(bearer_get(&userinfo, access).await.status(), StatusCode::OK);
    // A citizen's access token at the admin API: another audience.
    let admin = format!("{}/admin/realms/{ONESTOP}/links", env.issuer);
    let r = bearer_get(&admin, access).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

/// §4.7: login CSRF against the broker as a client — the attacker's authorization response
/// delivered to the victim's browser — fails: the response must come back to the browser that
/// started the login (a cookie bound to `state`). The consent answer likewise must come from
/// the browser whose session asked.
#[tokio::test]
async fn rfc9700_4_7_cross_site_request_forgery() {
    let env = Env::with_consent().await;
    let attacker = Browser::new();
    let req = AuthRequest::new(PORTAL_A);
    let to_idp = location(&attacker.get(&req.url(&env.issuer)).await);
    let response = location(&sign_in_at_idp(&attacker, &to_idp, MAI).await);
    let victim = Browser::new();
    let r = victim.get(&response).await;
    assert_page_not_redirect(&r, "an authorization response in another browser");
    // The victim has no session: the attacker's identity was not planted.
    let probe = victim
        .get(
            &AuthRequest::new(PORTAL_A)
                .with("prompt", "none")
                .url(&env.issuer),
        )
        .await;
    assert_eq!(query(&location(&probe))["error"], "login_required");

    // Consent: the attacker's pending question answered from the victim's browser.
    let consent = login(&env, &Browser::new(), &AuthRequest::new(PORTAL_A), MAI).await;
    let id = hidden_field(&consent.text().await.unwrap(), "consent_id");
    let forged = victim
        .post_form(
            &format!("{}/consent", env.issuer),
            &[("consent_id", &id), ("decision", "allow")],
        )
        .await;
    assert_page_not_redirect(&forged, "a consent answer from another browser");
}

/// §4.8: PKCE cannot be dropped or weakened: no challenge, `plain`, or a redemption without
/// the verifier are all refused.
#[tokio::test]
async fn rfc9700_4_8_pkce_downgrade_attack() {
    let env = Env::start().await;
    let browser = Browser::new();
    let base = AuthRequest::new(PORTAL_A);
    let without = rewrite_query(&base.url(&env.issuer), |k, v| {
        (!k.starts_with("code_challenge")).then_some(v)
    });
    let r = browser.get(&without).await;
    assert_eq!(query(&location(&r))["error"], "invalid_request");
    let plain = AuthRequest::new(PORTAL_A);
    let url = plain
        .url(&env.issuer)
        .replace("code_challenge_method=S256", "code_challenge_method=plain");
    let r = browser.get(&url).await;
    assert_eq!(query(&location(&r))["error"], "invalid_request");
    // With a challenge, the code is not redeemed without its verifier.
    let req = AuthRequest::new(PORTAL_A);
    let code = login_for_code(&env, &Browser::new(), &req, AN).await;
    let r = post_token(
        &env,
        PORTAL_A,
        &[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", &redirect_uri(PORTAL_A)),
        ],
    )
    .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
}

/// §4.9: an access token is audience-restricted to the broker's userinfo: the `aud` names it,
/// and an admin token (another audience) is refused there, so a token leaked to one resource
/// cannot be spent at another.
#[tokio::test]
async fn rfc9700_4_9_access_token_leakage_at_the_resource_server() {
    let env = Env::start().await;
    let t = tokens(&env, &Browser::new(), &AuthRequest::new(PORTAL_A), AN).await;
    let claims = jwt_payload(t["access_token"].as_str().unwrap());
    assert_eq!(claims["aud"], format!("{}/userinfo", env.issuer));
    let admin_token = admin_access_token(&env, "ops").await;
    let r = bearer_get(&format!("{}/userinfo", env.issuer), &admin_token).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

/// §4.10: a stolen access token is bounded: revoked by its client, it stops working at once
/// (sender-constraining is not offered: see docs/security.md).
#[tokio::test]
async fn rfc9700_4_10_misuse_of_stolen_access_tokens() {
    let env = Env::start().await;
    let t = tokens(&env, &Browser::new(), &AuthRequest::new(PORTAL_A), AN).await;
    let access = t["access_token"].as_str().unwrap();
    let claims = jwt_payload(access);
    let lifetime = claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap();
    assert!(lifetime <= 300, "short-lived: {lifetime} s");
    let userinfo = format!("{}/userinfo", env.issuer);
    let works = bearer_get(&userinfo, access).await;
    assert_eq!(works.status(), StatusCode::OK);
    let revoke = reqwest::Client::new()
        .post(format!("{}/revoke", env.issuer))
        .basic_auth(PORTAL_A, Some(SECRET))
        .form(&[("token", access), ("token_type_hint", "access_token")])
        .send()
        .await
        .unwrap();
    assert_eq!(revoke.status(), StatusCode::OK);
    let stolen = bearer_get(&userinfo, access).await;
    assert_eq!(stolen.status(), StatusCode::UNAUTHORIZED);
}

/// §4.11: the broker is no open redirector: an error for an unknown client or an unregistered
/// URI is a page, never a redirect; sign-out goes back only to a registered address.
#[tokio::test]
async fn rfc9700_4_11_open_redirection() {
    let env = Env::start().await;
    let browser = Browser::new();
    let evil = "https%3A%2F%2Fattacker.example%2F";
    for url in [
        format!(
            "{}/authorize?client_id=nobody&redirect_uri={evil}&response_type=code&scope=openid",
            env.issuer
        ),
        format!(
            "{}/authorize?client_id={PORTAL_A}&redirect_uri={evil}&response_type=bogus&scope=bogus",
            env.issuer
        ),
        format!(
            "{}/logout?client_id={PORTAL_A}&post_logout_redirect_uri={evil}",
            env.issuer
        ),
    ] {
        let r = browser.get(&url).await;
        assert_page_not_redirect(&r, &url);
    }
}

/// §4.12: every redirect the broker answers a POST with (the consent form, the authorization
/// form) is a 303, so the browser never re-posts the citizen's form to the next site.
#[tokio::test]
async fn rfc9700_4_12_307_redirect() {
    let env = Env::with_consent().await;
    let browser = Browser::new();
    let req = AuthRequest::new(PORTAL_A);
    let consent = login(&env, &browser, &req, AN).await;
    let id = hidden_field(&consent.text().await.unwrap(), "consent_id");
    let r = browser
        .post_form(
            &format!("{}/consent", env.issuer),
            &[("consent_id", &id), ("decision", "allow")],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    // POST /authorize (form post), with the session now live: straight back with a code.
    let again = AuthRequest::new(PORTAL_A);
    let form: Vec<(String, String)> = url::Url::parse(&again.url(&env.issuer))
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect();
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let r = browser
        .post_form(&format!("{}/authorize", env.issuer), &form)
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
}

/// §4.13: behind a TLS-terminating proxy the client's address comes from `X-Forwarded-For`,
/// and only the entry the trusted proxy added counts: addresses the client puts first do not
/// buy it a fresh rate limit. Without a proxy the header is ignored.
#[tokio::test]
async fn rfc9700_4_13_tls_terminating_reverse_proxies() {
    for (trusted, limits) in [
        (true, "authorize_per_minute = 3\ntrust_forwarded_for = true"),
        (false, "authorize_per_minute = 3"),
    ] {
        let env = Env::with(Options {
            limits: Some(limits.into()),
            ..Options::default()
        })
        .await;
        let mut statuses = vec![];
        for i in 0..5 {
            // The client names a new address each time; the proxy appends the real one.
            let r = reqwest::Client::new()
                .get(AuthRequest::new(PORTAL_A).url(&env.issuer))
                .header("x-forwarded-for", format!("10.0.0.{i}, 192.0.2.7"))
                .send()
                .await
                .unwrap();
            statuses.push(r.status().as_u16());
        }
        let refused = statuses.iter().filter(|s| **s == 429).count();
        assert_eq!(refused, 2, "trusted proxy {trusted}: {statuses:?}");
    }
}

/// §4.14: refresh tokens rotate; a refresh token used twice (stolen and used by both parties)
/// ends the whole family, and another client cannot use it at all.
#[tokio::test]
async fn rfc9700_4_14_refresh_token_protection() {
    let env = Env::start().await;
    let mut req = AuthRequest::new(PORTAL_A);
    req.scope = "openid profile offline_access".into();
    let t = tokens(&env, &Browser::new(), &req, AN).await;
    let stolen = t["refresh_token"].as_str().unwrap().to_owned();
    let refresh = |client: &'static str, token: String| {
        let env = &env;
        async move {
            let form = [("grant_type", "refresh_token"), ("refresh_token", &token)];
            post_token(env, client, &form).await
        }
    };
    assert_eq!(
        refresh(PORTAL_B, stolen.clone()).await.status(),
        StatusCode::BAD_REQUEST,
        "another client"
    );
    let legit = refresh(PORTAL_A, stolen.clone()).await;
    assert_eq!(legit.status(), StatusCode::OK);
    let rotated = legit.json::<Value>().await.unwrap()["refresh_token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(rotated, stolen);
    // The thief uses the old one: refused, and the rotated one dies with the family.
    assert_eq!(
        refresh(PORTAL_A, stolen).await.status(),
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        refresh(PORTAL_A, rotated).await.status(),
        StatusCode::BAD_REQUEST
    );
}

/// §4.15: a client cannot pass itself off as a citizen: a client_credentials token has no
/// citizen `sub` and is not accepted where a citizen's token is.
#[tokio::test]
async fn rfc9700_4_15_client_impersonating_resource_owner() {
    let env = Env::start().await;
    // A citizen's scopes by the client's own grant: refused.
    let r = client_credentials(&env, "ops", "openid profile").await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_scope");
    let admin: Value = client_credentials(&env, "ops", "accounts:admin")
        .await
        .json()
        .await
        .unwrap();
    assert!(admin.get("id_token").is_none(), "no ID token for a client");
    let token = admin["access_token"].as_str().unwrap();
    let claims = jwt_payload(token);
    assert_eq!(claims["client_id"], "ops");
    assert_eq!(claims["scope"], "accounts:admin");
    let r = bearer_get(&format!("{}/userinfo", env.issuer), token).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

/// §4.16: the pages where a citizen decides (the consent page) and every other page refuse to
/// be framed.
#[tokio::test]
async fn rfc9700_4_16_clickjacking() {
    let env = Env::with_consent().await;
    let consent = login(&env, &Browser::new(), &AuthRequest::new(PORTAL_A), AN).await;
    assert_eq!(consent.status(), StatusCode::OK);
    let csp = consent.headers()[CONTENT_SECURITY_POLICY].to_str().unwrap();
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(consent.headers()[X_FRAME_OPTIONS], "DENY");
}

/// §4.17: no in-browser message flow (`web_message`, `form_post` to a frame) is offered: a
/// request for one is refused, and the pages run no script that could post a code elsewhere.
#[tokio::test]
async fn rfc9700_4_17_attacks_on_in_browser_communication_flows() {
    let env = Env::start().await;
    let browser = Browser::new();
    for mode in ["web_message", "form_post", "fragment"] {
        let r = browser
            .get(
                &AuthRequest::new(PORTAL_A)
                    .with("response_mode", mode)
                    .url(&env.issuer),
            )
            .await;
        assert_eq!(query(&location(&r))["error"], "invalid_request", "{mode}");
    }
    let r = browser.get(&format!("{}/authorize", env.issuer)).await;
    let csp = r.headers()[CONTENT_SECURITY_POLICY].to_str().unwrap();
    assert!(
        csp.contains("script-src 'none'") || csp.contains("default-src 'none'"),
        "{csp}"
    );
}

/// §4.18: the broker does not become a redirector to a phishing site: clients are registered
/// by the province, not by whoever asks (no dynamic registration endpoint), and a request the
/// broker cannot trust (unknown client, unregistered URI) gets a page, not a redirect.
#[tokio::test]
async fn rfc9700_4_18_authorization_server_redirecting_to_phishing_site() {
    let env = Env::start().await;
    let discovery: Value = discovery(&env).await;
    assert!(discovery.get("registration_endpoint").is_none());
    let register = reqwest::Client::new()
        .post(format!("{}/register", env.issuer))
        .json(&serde_json::json!({ "redirect_uris": ["https://attacker.example/cb"] }))
        .send()
        .await
        .unwrap();
    assert_eq!(register.status(), StatusCode::NOT_FOUND);
    let r = Browser::new()
        .get(&format!(
            "{}/authorize?client_id=attacker&redirect_uri=https%3A%2F%2Fattacker.example%2Fcb&response_type=code&scope=bogus",
            env.issuer
        ))
        .await;
    assert_page_not_redirect(&r, "an unregistered client with an invalid scope");
}
