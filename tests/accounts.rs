//! Citizen identity to local accounts, end to end: each provincial system receives *its*
//! account id for the citizen in the ID token's `sub`, or the citizen gets a clear refusal.

mod common;

use std::sync::atomic::Ordering;

use common::*;
use lienthong_adapter::directory::{AccountNumber, parse_csv};
use lienthong_mock_idp::Roster;
use reqwest::StatusCode;

async fn sub_for(env: &Env, browser: &Browser, client: &str, number: &str) -> String {
    let req = AuthRequest::new(client);
    let body = tokens(env, browser, &req, number).await;
    env.verify_id_token(body["id_token"].as_str().unwrap(), client)
        .await["sub"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn import(env: &Env, realm: &str, csv: &str) {
    let (rows, errors) = parse_csv(csv.as_bytes());
    assert!(errors.is_empty(), "{errors:?}");
    assert!(
        env.directory
            .import(realm, &rows, false, "test")
            .await
            .unwrap()
            .committed
    );
}

#[tokio::test]
async fn a_prelinked_citizen_receives_the_imported_account_id() {
    let env = Env::start().await;
    // Nguyễn Văn An by ID number; Lò Văn Sáng by his old 9-digit CMND only.
    import(&env, ONESTOP, "001085004512,MC-0001\n040123456,MC-0002\n").await;
    assert_eq!(sub_for(&env, &Browser::new(), ONESTOP, AN).await, "MC-0001");
    assert_eq!(
        sub_for(&env, &Browser::new(), ONESTOP, "011078003316").await,
        "MC-0002",
        "matched by old CMND"
    );
    assert_eq!(
        sub_for(&env, &Browser::new(), ONESTOP, AN).await,
        "MC-0001",
        "and the same again"
    );
}

#[tokio::test]
async fn an_unlinked_citizen_of_a_linked_system_sees_a_refusal_naming_the_office() {
    let env = Env::start().await;
    let (browser, req) = (Browser::new(), AuthRequest::new(ONESTOP));
    let r = login(&env, &browser, &req, MAI).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(r.headers().get("location").is_none(), "no code");
    let html = r.text().await.unwrap();
    assert!(html.contains("Chưa có tài khoản tại dịch vụ này"), "{html}");
    assert!(html.contains(ONESTOP_OFFICE), "names the office to contact");
    assert!(html.contains("Quay lại trang dịch vụ"), "with a way back");
    // The citizen is still signed in: another system works without the IdP.
    let other = AuthRequest::new(PORTAL_A);
    assert!(
        location(&browser.get(&other.url(&env.issuer)).await).starts_with(&redirect_uri(PORTAL_A))
    );
}

#[tokio::test]
async fn lookup_links_on_first_sign_in_and_reuses_the_link_after() {
    let env = Env::start().await;
    let first = sub_for(&env, &Browser::new(), HEALTH, AN).await;
    assert_eq!(first, "HS-004512", "the system's own answer");
    assert_eq!(env.lookups.load(Ordering::SeqCst), 1);
    assert_eq!(sub_for(&env, &Browser::new(), HEALTH, AN).await, first);
    assert_eq!(
        env.lookups.load(Ordering::SeqCst),
        1,
        "the stored link is reused"
    );
    // A citizen the system does not know (born after 2000, see the endpoint) is refused.
    let r = login(&env, &Browser::new(), &AuthRequest::new(HEALTH), MAI).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn provision_is_stable_and_every_realm_sees_its_own_id() {
    let env = Env::start().await;
    import(&env, ONESTOP, "001085004512,MC-0001\n").await;
    let browser = Browser::new();
    let portal = sub_for(&env, &browser, PORTAL_A, AN).await;
    let onestop = sub_for(&env, &browser, ONESTOP, AN).await;
    let health = sub_for(&env, &browser, HEALTH, AN).await;
    let b = sub_for(&env, &browser, PORTAL_B, AN).await;
    let ids = [&portal, &onestop, &health, &b];
    for (i, x) in ids.iter().enumerate() {
        for y in &ids[i + 1..] {
            assert_ne!(x, y, "one citizen, a different id in every realm");
        }
    }
    assert_eq!(
        sub_for(&env, &Browser::new(), PORTAL_A, AN).await,
        portal,
        "provision is stable"
    );
}

const ROSTER: &str = r#"{"citizens": [{"sub": "stable-subject-1", "citizen_id": "NUMBER", "full_name": "Đặng Thị Thử", "birthdate": "1990-05-05", "sex": "female", "level": 2}]}"#;

#[tokio::test]
async fn an_id_number_change_keeps_the_link() {
    let (before, after) = ("001190001111", "001190002222");
    let mut env = Env::with(Options {
        roster: Some(Roster::from_json(&ROSTER.replace("NUMBER", before)).unwrap()),
        ..Options::default()
    })
    .await;
    import(&env, ONESTOP, &format!("{before},MC-7\n")).await;
    assert_eq!(
        sub_for(&env, &Browser::new(), ONESTOP, before).await,
        "MC-7"
    );
    // The national data now gives the same person (same subject) a re-established number.
    env.restart_idp(Roster::from_json(&ROSTER.replace("NUMBER", after)).unwrap())
        .await;
    let browser = Browser::new();
    assert_eq!(
        sub_for(&env, &browser, ONESTOP, after).await,
        "MC-7",
        "the link follows the person"
    );
    let token = tokens(&env, &browser, &AuthRequest::new(PORTAL_A), after).await;
    let claims = env
        .verify_id_token(token["id_token"].as_str().unwrap(), PORTAL_A)
        .await;
    assert_eq!(
        claims["citizen_id"], after,
        "the current number is released"
    );
    let view = env
        .directory
        .show(&AccountNumber::parse(after).unwrap())
        .await
        .unwrap();
    assert!(
        view.events.iter().any(|e| e.action == "id_number_changed"),
        "the change is in the history"
    );
}

#[tokio::test]
async fn a_known_number_under_a_new_subject_is_not_merged_silently() {
    let number = "001190003333";
    let mut env = Env::with(Options {
        roster: Some(Roster::from_json(&ROSTER.replace("NUMBER", number)).unwrap()),
        ..Options::default()
    })
    .await;
    import(&env, ONESTOP, &format!("{number},MC-8\n")).await;
    assert_eq!(
        sub_for(&env, &Browser::new(), ONESTOP, number).await,
        "MC-8"
    );
    let other_subject = ROSTER
        .replace("NUMBER", number)
        .replace("stable-subject-1", "another-subject");
    env.restart_idp(Roster::from_json(&other_subject).unwrap())
        .await;
    let r = login(&env, &Browser::new(), &AuthRequest::new(ONESTOP), number).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("Tài khoản cần được xác nhận lại")
    );
    let events = env.directory.events(None, 50).await.unwrap();
    assert!(
        events
            .iter()
            .any(|e| e.action == "known_number_new_subject")
    );
    assert!(events.iter().any(|e| e.action == "relink_refused"));
}

#[tokio::test]
async fn a_system_receives_only_the_claims_its_allow_list_and_scopes_permit() {
    let env = Env::start().await;
    import(&env, ONESTOP, "001085004512,MC-0001\n").await;
    let body = tokens(&env, &Browser::new(), &AuthRequest::new(ONESTOP), AN).await;
    let claims = env
        .verify_id_token(body["id_token"].as_str().unwrap(), ONESTOP)
        .await;
    assert_eq!(claims["sub"], "MC-0001");
    assert!(
        claims.get("name").is_none() && claims.get("citizen_id").is_none(),
        "onestop's allow-list is empty: {claims}"
    );
}
