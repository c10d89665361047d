//! The admin API, as a provincial system's back office uses it.

mod common;

use common::*;
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn admin_token(env: &Env, client: &str) -> reqwest::Response {
    client_credentials(env, client, "accounts:admin").await
}

#[tokio::test]
async fn an_admin_client_links_finds_lists_and_unlinks_and_every_call_is_recorded() {
    let env = Env::start().await;
    let token: Value = admin_token(&env, "ops").await.json().await.unwrap();
    let token = token["access_token"].as_str().unwrap().to_owned();
    let http = reqwest::Client::new();
    let links = format!("{}/admin/realms/{ONESTOP}/links", env.issuer);

    for (i, n) in ["001085004512", "002301004418", "040123456"]
        .iter()
        .enumerate()
    {
        let r = http
            .post(&links)
            .bearer_auth(&token)
            .json(&json!({ "number": n, "local_account_id": format!("MC-{i}") }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
    }
    let dup = http
        .post(&links)
        .bearer_auth(&token)
        .json(&json!({ "number": "001085004512", "local_account_id": "MC-9" }))
        .send()
        .await
        .unwrap();
    assert_eq!(dup.status(), StatusCode::CONFLICT);
    let bad = http
        .post(&links)
        .bearer_auth(&token)
        .json(&json!({ "number": "12345", "local_account_id": "X" }))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    let refused = env.directory.events(None, 100).await.unwrap();
    let count = refused
        .iter()
        .filter(|e| e.action == "admin_link_refused")
        .count();
    assert_eq!(count, 2, "the conflict and the bad number are recorded");

    let page: Value = json_of(http.get(format!("{links}?limit=2")).bearer_auth(&token)).await;
    assert_eq!(page["links"].as_array().unwrap().len(), 2);
    let next = page["next"].as_str().unwrap();
    let last: Value = json_of(
        http.get(format!("{links}?limit=2&after={next}"))
            .bearer_auth(&token),
    )
    .await;
    assert_eq!(
        (last["links"].as_array().unwrap().len(), &last["next"]),
        (1, &Value::Null)
    );

    // The link is used at sign-in: Mai gets MC-1 in the one-stop system.
    let body = tokens(&env, &Browser::new(), &AuthRequest::new(ONESTOP), MAI).await;
    assert_eq!(
        env.verify_id_token(body["id_token"].as_str().unwrap(), ONESTOP)
            .await["sub"],
        "MC-1"
    );
    let found: Value = json_of(
        http.get(format!("{links}/by-number/{MAI}"))
            .bearer_auth(&token),
    )
    .await;
    assert_eq!(
        (found["local_account_id"].as_str(), found["bound"].as_bool()),
        (Some("MC-1"), Some(true))
    );

    assert_eq!(
        status_of(http.delete(format!("{links}/MC-1")).bearer_auth(&token)).await,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        status_of(http.delete(format!("{links}/MC-1")).bearer_auth(&token)).await,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        status_of(
            http.get(format!("{links}/by-number/{MAI}"))
                .bearer_auth(&token)
        )
        .await,
        StatusCode::NOT_FOUND
    );

    let events = env.directory.events(None, 100).await.unwrap();
    for action in ["link_created", "admin_list", "admin_lookup", "link_removed"] {
        assert!(
            events
                .iter()
                .any(|e| e.action == action && e.actor == "client:ops"),
            "{action} recorded with its caller"
        );
    }
}

#[tokio::test]
async fn the_admin_api_refuses_without_a_token_outside_the_clients_realms_and_for_ordinary_clients()
{
    let env = Env::start().await;
    let http = reqwest::Client::new();
    let none = http
        .get(format!("{}/admin/realms/{ONESTOP}/links", env.issuer))
        .send()
        .await
        .unwrap();
    assert_eq!(none.status(), StatusCode::UNAUTHORIZED);
    assert!(
        none.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer")
    );

    let token: Value = admin_token(&env, "ops").await.json().await.unwrap();
    let token = token["access_token"].as_str().unwrap();
    let other_realm = http
        .get(format!("{}/admin/realms/{HEALTH}/links", env.issuer))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(other_realm.status(), StatusCode::FORBIDDEN);
    let events = env.directory.events(None, 10).await.unwrap();
    assert!(
        events
            .iter()
            .any(|e| e.action == "admin_denied" && e.actor == "client:ops"),
        "a refused call is recorded with its caller"
    );

    let ordinary = admin_token(&env, PORTAL_A).await;
    assert_eq!(ordinary.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        ordinary.json::<Value>().await.unwrap()["error"],
        "unauthorized_client"
    );

    // A citizen's access token is not an admin token.
    let body = tokens(&env, &Browser::new(), &AuthRequest::new(PORTAL_A), AN).await;
    let citizen = http
        .get(format!("{}/admin/realms/{ONESTOP}/links", env.issuer))
        .bearer_auth(body["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(citizen.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_openapi_description_is_served_and_is_the_one_in_docs() {
    let env = Env::start().await;
    let served = reqwest::get(format!("{}/admin/openapi.json", env.issuer))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let docs = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/admin-api.openapi.json"
    ))
    .unwrap();
    assert_eq!(served, docs);
    let spec: Value = serde_json::from_str(&served).unwrap();
    for path in [
        "/admin/realms/{realm}/links",
        "/admin/realms/{realm}/links/by-number/{number}",
        "/admin/realms/{realm}/links/{local_account_id}",
    ] {
        assert!(spec["paths"].get(path).is_some(), "{path} is described");
    }
}
