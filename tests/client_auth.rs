//! `private_key_jwt` (RFC 7523, OIDC Core §9) over HTTP: a system that holds no shared secret
//! signs a short-lived assertion with its own key; each assertion works once, on any node (its
//! `jti` is spent in the Store), and every flawed one gets the same `invalid_client`.

mod common;

use common::*;
use jsonwebtoken::Algorithm;
use lienthong_protocol::KeySet;
use lienthong_protocol::client_auth::JWT_BEARER;
use lienthong_protocol::secret::random_token;
use reqwest::StatusCode;
use serde_json::{Value, json};

const KEYED: &str = "keyed";

/// A JSON value as a TOML inline value (JWKs hold only strings, arrays and objects).
fn toml_inline(v: &Value) -> String {
    match v {
        Value::Object(map) => {
            let fields: Vec<String> = map
                .iter()
                .map(|(k, v)| format!("{k} = {}", toml_inline(v)))
                .collect();
            format!("{{ {} }}", fields.join(", "))
        }
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(toml_inline).collect();
            format!("[{}]", items.join(", "))
        }
        other => other.to_string(),
    }
}

/// The broker with one more client, `keyed`, registered by its public keys only.
async fn env_with_keyed_client(keys: &KeySet) -> Env {
    let jwks = serde_json::to_value(keys.jwks()).unwrap();
    Env::with(Options {
        extra: Some(format!(
            r#"[[clients]]
            id = "{KEYED}"
            token_endpoint_auth_method = "private_key_jwt"
            jwks = {jwks}
            name = "Hệ thống ký bằng khoá riêng"
            redirect_uris = ["{redirect}"]
            require_consent = false
            "#,
            jwks = toml_inline(&jwks),
            redirect = redirect_uri(KEYED),
        )),
        ..Options::default()
    })
    .await
}

fn assertion(keys: &KeySet, env: &Env, overrides: Value) -> String {
    let now = std::time::SystemTime::UNIX_EPOCH
        .elapsed()
        .unwrap()
        .as_secs();
    let mut claims = json!({
        "iss": KEYED, "sub": KEYED, "aud": format!("{}/token", env.issuer),
        "jti": random_token(16), "iat": now, "exp": now + 60,
    });
    for (k, v) in overrides.as_object().unwrap() {
        if v.is_null() {
            claims.as_object_mut().unwrap().remove(k);
        } else {
            claims[k] = v.clone();
        }
    }
    keys.sign(Algorithm::ES256, "JWT", &claims).unwrap()
}

async fn introspect(env: &Env, form: &[(&str, &str)]) -> (StatusCode, Value) {
    let r = reqwest::Client::new()
        .post(format!("{}/introspect", env.issuer))
        .form(form)
        .send()
        .await
        .unwrap();
    (r.status(), r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_private_key_jwt_client_signs_in_and_each_assertion_works_once() {
    let keys = KeySet::generate(&[Algorithm::ES256]).unwrap();
    let env = env_with_keyed_client(&keys).await;
    let discovery: Value = discovery(&env).await;
    assert!(
        discovery["token_endpoint_auth_methods_supported"]
            .as_array()
            .unwrap()
            .contains(&json!("private_key_jwt"))
    );

    let req = AuthRequest::new(KEYED);
    let code = login_for_code(&env, &Browser::new(), &req, AN).await;
    let first = assertion(&keys, &env, json!({}));
    let r = reqwest::Client::new()
        .post(format!("{}/token", env.issuer))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", &redirect_uri(KEYED)),
            ("code_verifier", &req.verifier),
            ("client_assertion_type", JWT_BEARER),
            ("client_assertion", &first),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let tokens: Value = r.json().await.unwrap();
    let access = tokens["access_token"].as_str().unwrap();

    // The same assertion again: replayed, refused.
    let replay = [
        ("token", access),
        ("client_assertion_type", JWT_BEARER),
        ("client_assertion", &first),
    ];
    let (status, body) = introspect(&env, &replay).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid_client"))
    );
    // A fresh one (client named by client_id this time, aud the issuer) works.
    let fresh = assertion(&keys, &env, json!({ "aud": env.issuer }));
    let (status, body) = introspect(
        &env,
        &[
            ("token", access),
            ("client_id", KEYED),
            ("client_assertion_type", JWT_BEARER),
            ("client_assertion", &fresh),
        ],
    )
    .await;
    assert_eq!(
        (status, body["active"].as_bool()),
        (StatusCode::OK, Some(true))
    );
}

#[tokio::test]
async fn a_flawed_client_assertion_or_the_wrong_method_gets_invalid_client() {
    let keys = KeySet::generate(&[Algorithm::ES256]).unwrap();
    let other_keys = KeySet::generate(&[Algorithm::ES256]).unwrap();
    let env = env_with_keyed_client(&keys).await;
    let now = std::time::SystemTime::UNIX_EPOCH
        .elapsed()
        .unwrap()
        .as_secs();
    let good_claims = |env: &Env| {
        json!({
            "iss": KEYED, "sub": KEYED, "aud": env.issuer, "jti": random_token(16), "exp": now + 60,
        })
    };
    // alg `none`, and HS256 keyed with the client's public key: both forged without its key.
    let b64 = |v: &Value| {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let unsigned = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT"})),
        b64(&good_claims(&env))
    );
    let hs256 = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(Algorithm::HS256),
        &good_claims(&env),
        &jsonwebtoken::EncodingKey::from_secret(
            serde_json::to_string(&keys.jwks()).unwrap().as_bytes(),
        ),
    )
    .unwrap();
    let flawed = [
        (
            "another key",
            other_keys
                .sign(Algorithm::ES256, "JWT", &good_claims(&env))
                .unwrap(),
        ),
        ("alg none", unsigned),
        ("HS256 with the public key", hs256),
        (
            "wrong audience",
            assertion(&keys, &env, json!({ "aud": "https://elsewhere" })),
        ),
        (
            "expired",
            assertion(&keys, &env, json!({ "exp": now - 120 })),
        ),
        (
            "an hour and more",
            assertion(&keys, &env, json!({ "exp": now + 7200 })),
        ),
        ("no jti", assertion(&keys, &env, json!({ "jti": null }))),
        (
            "sub is not the client",
            assertion(&keys, &env, json!({ "sub": PORTAL_A })),
        ),
        (
            "iss another client",
            assertion(&keys, &env, json!({ "iss": PORTAL_A, "sub": PORTAL_A })),
        ),
    ];
    for (what, a) in &flawed {
        let (status, body) = introspect(
            &env,
            &[
                ("token", "x"),
                ("client_assertion_type", JWT_BEARER),
                ("client_assertion", a),
            ],
        )
        .await;
        assert_eq!(
            (status, body["error"].as_str()),
            (StatusCode::UNAUTHORIZED, Some("invalid_client")),
            "{what}"
        );
    }
    // A secret for the keyed client (it has none), and an assertion for a secret client.
    let r = reqwest::Client::new()
        .post(format!("{}/introspect", env.issuer))
        .basic_auth(KEYED, Some(SECRET))
        .form(&[("token", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let portal_a_keys = assertion(&keys, &env, json!({ "iss": PORTAL_A, "sub": PORTAL_A }));
    let (status, _) = introspect(
        &env,
        &[
            ("token", "x"),
            ("client_id", PORTAL_A),
            ("client_assertion_type", JWT_BEARER),
            ("client_assertion", &portal_a_keys),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}
