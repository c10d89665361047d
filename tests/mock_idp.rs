//! The mock national IdP on its own, as an integrator's relying party meets it.

mod common;

use common::{Browser, hidden_field, json_of, location, pkce, query};
use lienthong_mock_idp::{ClientRegistration, Config, MockIdp, Roster, Running};
use reqwest::StatusCode;
use serde_json::Value;

const CLIENT: &str = "rp";
const REDIRECT: &str = "http://127.0.0.1:9/rp/callback";
const AFTER_LOGOUT: &str = "http://127.0.0.1:9/rp/";

async fn idp(alg: &str) -> Running {
    lienthong_protocol::crypto::install();
    let mut config = Config::with_client(
        "127.0.0.1:0".parse().unwrap(),
        ClientRegistration {
            id: CLIENT.into(),
            secret: "rp-secret".into(),
            redirect_uris: vec![REDIRECT.into()],
            post_logout_redirect_uris: vec![AFTER_LOGOUT.into()],
        },
    );
    config.signing_alg = alg.into();
    MockIdp::start(config, Roster::builtin()).await.unwrap()
}

fn auth_url(idp: &Running, challenge: &str) -> String {
    format!(
        "{}/protocol/openid-connect/auth?client_id={CLIENT}&redirect_uri={}&response_type=code&scope=openid&state=st&nonce=n1&code_challenge={challenge}&code_challenge_method=S256",
        idp.issuer,
        url::form_urlencoded::byte_serialize(REDIRECT.as_bytes()).collect::<String>()
    )
}

async fn submit(
    browser: &Browser,
    idp: &Running,
    url: &str,
    number_field: &str,
    number: &str,
    password: &str,
) -> reqwest::Response {
    let html = browser.get(url).await.text().await.unwrap();
    let flow = hidden_field(&html, "flow");
    let form = format!("{}/protocol/openid-connect/auth", idp.issuer);
    browser
        .post_form(
            &form,
            &[
                ("flow", &flow),
                (number_field, number),
                ("password", password),
                ("otp", "123456"),
                ("action", "login"),
            ],
        )
        .await
}

#[tokio::test]
async fn signs_rs256_by_default_and_es256_when_configured() {
    for (alg, kty) in [("RS256", "RSA"), ("ES256", "EC")] {
        let idp = idp(alg).await;
        let d: Value = reqwest::get(format!("{}/.well-known/openid-configuration", idp.issuer))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(d["id_token_signing_alg_values_supported"][0], alg);
        let jwks: Value = reqwest::get(d["jwks_uri"].as_str().unwrap())
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(jwks["keys"][0]["kty"], kty);
    }
}

#[tokio::test]
async fn the_form_explains_a_wrong_password_or_number_and_keeps_the_flow() {
    let idp = idp("RS256").await;
    let browser = Browser::new();
    let (_, challenge) = pkce();
    let url = auth_url(&idp, &challenge);
    let wrong = submit(&browser, &idp, &url, "roster_number", common::AN, "nope").await;
    assert_eq!(wrong.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        wrong
            .text()
            .await
            .unwrap()
            .contains("Mật khẩu hoặc mã OTP không đúng")
    );
    let bad_number = submit(&browser, &idp, &url, "typed_number", "12345", "matkhau-thu").await;
    assert!(
        bad_number
            .text()
            .await
            .unwrap()
            .contains("Số định danh không hợp lệ")
    );
    // A valid number outside the roster signs in as a synthetic level-1 citizen.
    let ok = submit(
        &browser,
        &idp,
        &url,
        "typed_number",
        "0361 9900 0123",
        "matkhau-thu",
    )
    .await;
    assert!(query(&location(&ok)).contains_key("code"));
}

#[tokio::test]
async fn client_secret_post_pkce_and_userinfo_by_post() {
    let idp = idp("RS256").await;
    let browser = Browser::new();
    let (_, challenge) = pkce();
    let r = submit(
        &browser,
        &idp,
        &auth_url(&idp, &challenge),
        "roster_number",
        common::MAI,
        "matkhau-thu",
    )
    .await;
    let q = query(&location(&r));
    assert_eq!(
        (q["state"].as_str(), q["iss"].as_str()),
        ("st", idp.issuer.as_str())
    );
    let token_url = format!("{}/protocol/openid-connect/token", idp.issuer);
    let http = reqwest::Client::new();
    let form = |v: &str| {
        vec![
            ("grant_type", "authorization_code".to_owned()),
            ("code", q["code"].clone()),
            ("redirect_uri", REDIRECT.to_owned()),
            ("code_verifier", v.to_owned()),
            ("client_id", CLIENT.to_owned()),
            ("client_secret", "rp-secret".to_owned()),
        ]
    };
    let (wrong, _) = pkce();
    let refused: Value = json_of(http.post(&token_url).form(&form(&wrong))).await;
    assert_eq!(refused["error"], "invalid_grant");
    // The refused attempt consumed the code: sign in again (the IdP session answers at once).
    let (verifier2, challenge2) = pkce();
    let again = browser.get(&auth_url(&idp, &challenge2)).await;
    let q2 = query(&location(&again));
    let mut f = form(&verifier2);
    f[1].1 = q2["code"].clone();
    let tokens: Value = json_of(http.post(&token_url).form(&f)).await;
    let info: Value = json_of(
        http.post(format!("{}/protocol/openid-connect/userinfo", idp.issuer))
            .bearer_auth(tokens["access_token"].as_str().unwrap()),
    )
    .await;
    assert_eq!(info["preferred_username"], common::MAI);
    assert_eq!(info["name"], "Giàng Thị Mai");
}

#[tokio::test]
async fn logout_ends_the_session_and_returns_only_to_a_registered_address() {
    let idp = idp("RS256").await;
    let browser = Browser::new();
    let (_, challenge) = pkce();
    submit(
        &browser,
        &idp,
        &auth_url(&idp, &challenge),
        "roster_number",
        common::AN,
        "matkhau-thu",
    )
    .await;
    let logout = format!("{}/protocol/openid-connect/logout", idp.issuer);
    let evil = browser
        .get(&format!(
            "{logout}?client_id={CLIENT}&post_logout_redirect_uri=https://evil.example/"
        ))
        .await;
    assert_eq!(
        evil.status(),
        StatusCode::OK,
        "an unregistered address gets a page, not a redirect"
    );
    assert!(evil.text().await.unwrap().contains("Đã đăng xuất"));
    submit(
        &browser,
        &idp,
        &auth_url(&idp, &challenge),
        "roster_number",
        common::AN,
        "matkhau-thu",
    )
    .await;
    let r = browser
        .get(&format!(
            "{logout}?client_id={CLIENT}&post_logout_redirect_uri={AFTER_LOGOUT}&state=bye"
        ))
        .await;
    assert_eq!(location(&r), format!("{AFTER_LOGOUT}?state=bye"));
    let after = browser.get(&auth_url(&idp, &challenge)).await;
    assert_eq!(
        after.status(),
        StatusCode::OK,
        "signed out: the login form again, not a code"
    );
}
