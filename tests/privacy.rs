//! Privacy over HTTP: nothing about a citizen leaves Lienthong before they consent — no lookup
//! call to the system, no account created in it, no code — and every answer is recorded with
//! the wording the citizen was shown.

mod common;

use std::sync::atomic::Ordering;

use common::*;
use reqwest::StatusCode;

/// Signs in at the IdP for `req` and returns the consent page's id (asserting one is shown).
async fn up_to_consent(env: &Env, browser: &Browser, req: &AuthRequest) -> String {
    let r = login(env, browser, req, AN).await;
    assert_eq!(r.status(), StatusCode::OK, "the consent page");
    let html = r.text().await.unwrap();
    assert!(html.contains("Đồng ý chia sẻ"), "{html}");
    hidden_field(&html, "consent_id")
}

async fn answer(env: &Env, browser: &Browser, id: &str, decision: &str) -> reqwest::Response {
    browser
        .post_form(
            &format!("{}/consent", env.issuer),
            &[("consent_id", id), ("decision", decision)],
        )
        .await
}

#[tokio::test]
async fn a_lookup_realms_endpoint_receives_nothing_when_the_citizen_refuses_consent() {
    let env = Env::start().await;
    let browser = Browser::new();
    let req = AuthRequest::new(HEALTH_PORTAL);
    let id = up_to_consent(&env, &browser, &req).await;
    assert_eq!(
        env.lookups.load(Ordering::SeqCst),
        0,
        "no lookup call while the citizen is being asked"
    );
    let refused = answer(&env, &browser, &id, "deny").await;
    let q = query(&location(&refused));
    assert_eq!(q["error"], "access_denied");
    assert_eq!(env.lookups.load(Ordering::SeqCst), 0, "nor after a refusal");
    let links = env.directory.list_links(HEALTH, None, 10).await.unwrap();
    assert!(links.is_empty(), "no account was made or bound");

    // Agreeing releases the account: one lookup, the system's own id.
    let other = Browser::new();
    let req = AuthRequest::new(HEALTH_PORTAL);
    let id = up_to_consent(&env, &other, &req).await;
    assert_eq!(env.lookups.load(Ordering::SeqCst), 0);
    let r = answer(&env, &other, &id, "allow").await;
    let code = query(&location(&r))["code"].clone();
    assert_eq!(env.lookups.load(Ordering::SeqCst), 1);
    let tokens: serde_json::Value = redeem(&env, &req, &code, &req.verifier)
        .await
        .json()
        .await
        .unwrap();
    let claims = env
        .verify_id_token(tokens["id_token"].as_str().unwrap(), HEALTH_PORTAL)
        .await;
    assert_eq!(claims["sub"], "HS-004512");

    // Both answers are on record, with the question as it was put.
    let decisions = env
        .directory
        .consent_decisions(HEALTH_PORTAL)
        .await
        .unwrap();
    let answers: Vec<&str> = decisions.iter().map(|d| d.2.as_str()).collect();
    assert_eq!(answers.len(), 2);
    assert!(answers.contains(&"allow") && answers.contains(&"refuse"));
    for (claims, wording, _, at) in &decisions {
        assert_eq!(claims, &["name", "citizen_id"]);
        assert!(
            wording.starts_with("Cổng hồ sơ sức khỏe đề nghị được nhận")
                && wording.contains("Số định danh cá nhân")
                && wording.contains("Personal ID number"),
            "{wording}"
        );
        assert!(*at > 0);
    }
}

#[tokio::test]
async fn no_account_is_provisioned_before_consent() {
    let env = Env::with_consent().await;
    let browser = Browser::new();
    let req = AuthRequest::new(PORTAL_A);
    let id = up_to_consent(&env, &browser, &req).await;
    assert!(
        env.directory
            .list_links(PORTAL_A, None, 10)
            .await
            .unwrap()
            .is_empty(),
        "no account while the citizen is being asked"
    );
    answer(&env, &browser, &id, "deny").await;
    assert!(
        env.directory
            .list_links(PORTAL_A, None, 10)
            .await
            .unwrap()
            .is_empty(),
        "nor after a refusal"
    );
}
