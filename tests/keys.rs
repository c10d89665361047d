//! Signing keys over HTTP: ES256 by default, RS256 and EdDSA per client, a JWKS with the
//! previous, current and next keys, and a rotation during a run that breaks no login and no
//! token validation.

mod common;

use std::process::Command;

use common::*;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{DecodingKey, Validation};
use lienthong_broker::keys::{ALGORITHMS, rotate};
use lienthong_broker::store::Sealer;
use reqwest::StatusCode;
use serde_json::Value;

/// Verifies an ID token against a given (possibly cached) JWKS.
fn verify_with(jwks: &JwkSet, issuer: &str, token: &str, client: &str) -> Result<Value, String> {
    let header = jsonwebtoken::decode_header(token).map_err(|e| e.to_string())?;
    let jwk = jwks
        .find(header.kid.as_deref().unwrap_or_default())
        .ok_or("kid not in this JWKS")?;
    let mut v = Validation::new(header.alg);
    v.set_issuer(&[issuer]);
    v.set_audience(&[client]);
    jsonwebtoken::decode::<Value>(token, &DecodingKey::from_jwk(jwk).unwrap(), &v)
        .map(|t| t.claims)
        .map_err(|e| e.to_string())
}

async fn rotate_all(env: &Env) {
    let sealer = Sealer::from_base64(SEALING_KEY).unwrap();
    for alg in ALGORITHMS {
        rotate(&env.directory, &sealer, alg).await.unwrap();
    }
    env.broker.reload_keys().await.unwrap();
}

#[tokio::test]
async fn a_key_rotation_during_a_run_breaks_no_login_and_no_token_validation() {
    let env = Env::with(Options {
        shared_keys: true,
        ..Options::default()
    })
    .await;
    let browser = Browser::new();
    let before = tokens(&env, &browser, &AuthRequest::new(PORTAL_A), AN).await;
    // A client caches the JWKS now, as certified libraries do.
    let cached = env.jwks().await;
    assert_eq!(
        cached.keys.len(),
        6,
        "current and next, for each of three algorithms"
    );
    // A login that spans the rotation: begun before it, finished after.
    let other = Browser::new();
    let spanning = AuthRequest::new(PORTAL_B);
    let to_idp = location(&other.get(&spanning.url(&env.issuer)).await);

    rotate_all(&env).await;

    let fresh = env.jwks().await;
    assert_eq!(
        fresh.keys.len(),
        9,
        "previous, current and next, for each algorithm"
    );
    // Tokens signed before the rotation still verify, and still work.
    let id = before["id_token"].as_str().unwrap();
    verify_with(&fresh, &env.issuer, id, PORTAL_A).expect("the previous key is published");
    let userinfo = reqwest::Client::new()
        .get(format!("{}/userinfo", env.issuer))
        .bearer_auth(before["access_token"].as_str().unwrap());
    assert_eq!(status_of(userinfo).await, StatusCode::OK);
    // The spanning login completes.
    let back = sign_in_at_idp(&other, &to_idp, MAI).await;
    let r = other.get(&location(&back)).await;
    let code = code_from(&env, &other, &spanning, r).await;
    let spanned = redeem(&env, &spanning, &code, &spanning.verifier).await;
    assert_eq!(spanned.status(), StatusCode::OK);
    let spanned: Value = spanned.json().await.unwrap();
    // New tokens are signed with what was the next key: a JWKS cached before the rotation
    // already verifies them.
    let after = tokens(&env, &browser, &AuthRequest::new(PORTAL_A), AN).await;
    for (token, client) in [
        (after["id_token"].as_str().unwrap(), PORTAL_A),
        (spanned["id_token"].as_str().unwrap(), PORTAL_B),
    ] {
        verify_with(&cached, &env.issuer, token, client)
            .expect("signed with a key the cached JWKS already had");
    }
    let old_kid = jsonwebtoken::decode_header(id).unwrap().kid;
    let new_kid = jsonwebtoken::decode_header(after["id_token"].as_str().unwrap())
        .unwrap()
        .kid;
    assert_ne!(old_kid, new_kid, "the current key changed");
}

#[tokio::test]
async fn each_client_gets_the_algorithm_it_registered() {
    let env = Env::start().await;
    let browser = Browser::new();
    for (client, alg) in [
        (PORTAL_A, jsonwebtoken::Algorithm::ES256),
        (PORTAL_B, jsonwebtoken::Algorithm::RS256),
        (PORTAL_ED, jsonwebtoken::Algorithm::EdDSA),
    ] {
        let t = tokens(&env, &browser, &AuthRequest::new(client), AN).await;
        let id = t["id_token"].as_str().unwrap();
        assert_eq!(
            jsonwebtoken::decode_header(id).unwrap().alg,
            alg,
            "{client}"
        );
        env.verify_id_token(id, client).await;
    }
    let discovery: Value = discovery(&env).await;
    assert_eq!(
        discovery["id_token_signing_alg_values_supported"],
        serde_json::json!(["ES256", "RS256", "EdDSA"])
    );
}

#[test]
fn lienthong_keys_rotate_rolls_the_shared_keys_of_a_directory() {
    let dir = scratch_dir("rotate");
    let config = write_config(
        &dir,
        &format!(
            r#"
            issuer = "http://127.0.0.1:1"
            [store]
            sealing_key = "{SEALING_KEY}"
            [directory]
            url = "sqlite://{}?mode=rwc"
            [upstream]
            issuer = "http://127.0.0.1:1/idp"
            client_id = "lienthong"
            client_secret = "upstream-secret"
            "#,
            dir.join("directory.db").display()
        ),
    );
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_lienthong"))
            .args(args)
            .arg("--config")
            .arg(&config)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let first = run(&["keys", "rotate"]);
    let second = run(&["keys", "rotate", "--alg", "ES256"]);
    let kid = |text: &str, slot: &str| {
        text.lines()
            .find(|l| l.starts_with(&format!("ES256 {slot}:")))
            .map(|l| l.split(": ").nth(1).unwrap().to_owned())
            .unwrap()
    };
    assert_eq!(
        kid(&second, "Current"),
        kid(&first, "Next"),
        "next became current"
    );
    assert_eq!(
        kid(&second, "Previous"),
        kid(&first, "Current"),
        "current became previous"
    );
    assert!(first.contains("EdDSA Current:") && !second.contains("EdDSA"));
    let _ = std::fs::remove_dir_all(&dir);
}
