//! Long sessions over HTTP: refresh tokens (rotation, reuse detection), introspection
//! (RFC 7662) and revocation (RFC 7009).

mod common;

use std::time::Duration;

use common::*;
use lienthong_broker::store::Sealer;
use lienthong_protocol::MockClock;
use reqwest::StatusCode;
use serde_json::Value;

fn offline(client: &str) -> AuthRequest {
    let mut req = AuthRequest::new(client);
    req.scope = "openid profile citizen_id offline_access".into();
    req
}

/// An environment of `options` whose Store is sealed with [`SEALING_KEY`]; and that key's
/// sealer, to read and plant the Store's records.
async fn sealed(options: Options) -> (Env, Sealer) {
    let env = Env::with(Options {
        shared_keys: true,
        ..options
    })
    .await;
    (env, Sealer::from_base64(SEALING_KEY).unwrap())
}

/// [`sealed`], with a clock the test moves (the broker's and its Store's).
async fn sealed_with_clock() -> (Env, Sealer, std::sync::Arc<MockClock>) {
    let clock = MockClock::starting_now();
    let (env, sealer) = sealed(Options {
        clock: Some(clock.clone()),
        ..Options::default()
    })
    .await;
    (env, sealer, clock)
}

/// The keys of the grant and the refresh-token family of `code`'s tokens.
fn keys_of_code_tokens(sealer: &Sealer, code: &str) -> [String; 2] {
    use lienthong_broker::access_token::grant_key;
    use lienthong_broker::code::{family_id, grant_id};
    use lienthong_broker::store::keys;
    [
        grant_key(&grant_id(sealer, code)),
        keys::family_record(&family_id(sealer, code)),
    ]
}

/// Eight presentations of one thing at once: each one's answer.
async fn eight_at_once<F, Fut>(present: F) -> Vec<(StatusCode, Value)>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = (StatusCode, Value)> + Send + 'static,
{
    let racers: Vec<_> = (0..8).map(|_| tokio::spawn(present())).collect();
    let mut answers = vec![];
    for r in racers {
        answers.push(r.await.unwrap());
    }
    answers
}

/// `[store] record_encoding = "json"`: what a node writes for the first of two rolling updates.
fn writing_json() -> Options {
    Options {
        store_extra: Some("record_encoding = \"json\"".into()),
        ..Options::default()
    }
}

async fn post(env: &Env, path: &str, client: &str, form: &[(&str, &str)]) -> (StatusCode, Value) {
    let r = reqwest::Client::new()
        .post(format!("{}{path}", env.issuer))
        .basic_auth(client, Some(SECRET))
        .form(form)
        .send()
        .await
        .unwrap();
    let status = r.status();
    if path == "/token" || path == "/introspect" {
        assert_eq!(
            r.headers()
                .get("cache-control")
                .map(|v| v.to_str().unwrap()),
            Some("no-store")
        );
    }
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn refresh(env: &Env, client: &str, token: &str) -> (StatusCode, Value) {
    post(
        env,
        "/token",
        client,
        &[("grant_type", "refresh_token"), ("refresh_token", token)],
    )
    .await
}

async fn introspect(env: &Env, client: &str, token: &str) -> Value {
    let (status, body) = post(env, "/introspect", client, &[("token", token)]).await;
    assert_eq!(status, StatusCode::OK);
    body
}

async fn userinfo_status(env: &Env, access: &str) -> StatusCode {
    status_of(
        reqwest::Client::new()
            .get(format!("{}/userinfo", env.issuer))
            .bearer_auth(access),
    )
    .await
}

#[tokio::test]
async fn a_refresh_token_rotates_and_re_releases_the_claims_the_client_may_see_now() {
    let env = Env::start().await;
    let first = tokens(&env, &Browser::new(), &offline(PORTAL_A), AN).await;
    let r1 = first["refresh_token"]
        .as_str()
        .expect("offline_access gives a refresh token");
    let (status, second) = refresh(&env, PORTAL_A, r1).await;
    assert_eq!(status, StatusCode::OK, "{second}");
    let r2 = second["refresh_token"].as_str().unwrap();
    assert_ne!(r1, r2, "rotated");
    let claims = env
        .verify_id_token(second["id_token"].as_str().unwrap(), PORTAL_A)
        .await;
    assert_eq!(claims["citizen_id"], AN);
    let first_claims = env
        .verify_id_token(first["id_token"].as_str().unwrap(), PORTAL_A)
        .await;
    assert_eq!(claims["sub"], first_claims["sub"]);
    assert_eq!(claims["sid"], first_claims["sid"]);
    assert_eq!(
        userinfo_status(&env, second["access_token"].as_str().unwrap()).await,
        StatusCode::OK
    );
    // A narrower scope on refresh: the claims follow it.
    let (status, third) = post(
        &env,
        "/token",
        PORTAL_A,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", r2),
            ("scope", "openid profile offline_access"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let narrowed = env
        .verify_id_token(third["id_token"].as_str().unwrap(), PORTAL_A)
        .await;
    assert!(narrowed.get("citizen_id").is_none(), "{narrowed}");
    assert_eq!(narrowed["name"], "Nguyễn Văn An");
    // ...and never a wider one.
    let (status, body) = post(
        &env,
        "/token",
        PORTAL_A,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", third["refresh_token"].as_str().unwrap()),
            ("scope", "openid profile citizen_id phone offline_access"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "invalid_scope");
}

#[tokio::test]
async fn a_reused_refresh_token_revokes_its_whole_family() {
    let env = Env::start().await;
    let first = tokens(&env, &Browser::new(), &offline(PORTAL_A), AN).await;
    let r1 = first["refresh_token"].as_str().unwrap().to_owned();
    let (_, second) = refresh(&env, PORTAL_A, &r1).await;
    let r2 = second["refresh_token"].as_str().unwrap().to_owned();
    let access2 = second["access_token"].as_str().unwrap().to_owned();
    // r1 again: a copy was used. Refused, and everything the family issued ends.
    let (status, body) = refresh(&env, PORTAL_A, &r1).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "invalid_grant");
    let (status, _) = refresh(&env, PORTAL_A, &r2).await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "the newest refresh token died too"
    );
    assert_eq!(
        userinfo_status(&env, &access2).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        userinfo_status(&env, first["access_token"].as_str().unwrap()).await,
        StatusCode::UNAUTHORIZED,
        "and the first access token"
    );
}

#[tokio::test]
async fn a_refresh_token_carries_its_family_and_a_forged_one_naming_it_revokes_nothing() {
    // A second system allowed refresh tokens, to present one stolen from the first.
    let thief = "portal-offline";
    let env = Env::with(Options {
        extra: Some(format!(
            "[[clients]]\nid = \"{thief}\"\nsecret = \"{SECRET}\"\nname = \"Hệ thống thứ hai\"\n\
             redirect_uris = [\"http://127.0.0.1:9/cb\"]\noffline_access = true\n"
        )),
        ..Options::default()
    })
    .await;
    let first = tokens(&env, &Browser::new(), &offline(PORTAL_A), AN).await;
    let r1 = first["refresh_token"].as_str().unwrap();
    let parts: Vec<&str> = r1.split('.').collect();
    let [family, secret, tag] = parts[..] else {
        panic!("{r1}: <family>.<secret>.<tag>")
    };
    assert_eq!((secret.len(), tag.len()), (43, 22), "{r1}");
    let (_, second) = refresh(&env, PORTAL_A, r1).await;
    let r2 = second["refresh_token"].as_str().unwrap();
    assert!(
        r2.starts_with(&format!("{family}.")),
        "{r2}: the same family"
    );
    assert!(!r2.contains(secret));
    // Someone who knows the family (a holder of a token of it) makes tokens up, each twice:
    // they do not bear the broker's tag (or are of an earlier form and were never issued), so
    // they are unknown, not reuses, and the family lives on.
    let random = lienthong_protocol::secret::random_token;
    let forged = [
        format!("{family}.{}.{}", random(32), random(16)),
        format!("{family}.{}.{tag}", random(32)),
        format!("{family}.{secret}.{}", random(16)),
        format!("{family}.{}", random(32)),
    ];
    for token in &forged {
        for _ in 0..2 {
            let (status, body) = refresh(&env, PORTAL_A, token).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{token}");
            assert_eq!(body["error"], "invalid_grant");
        }
    }
    // The live token itself, stolen by another system allowed refresh tokens: the tag binds it
    // to its client, so it is refused there — and not used up.
    for _ in 0..2 {
        let (status, body) = refresh(&env, thief, r2).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(body["error"], "invalid_grant");
        assert_eq!(introspect(&env, thief, r2).await["active"], false);
    }
    assert_eq!(
        userinfo_status(&env, second["access_token"].as_str().unwrap()).await,
        StatusCode::OK
    );
    let (status, _) = refresh(&env, PORTAL_A, r2).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the family's newest token still works"
    );
}

/// However often a family rotates, it keeps one record naming one refresh token and the access
/// tokens still live (four at most): a used token leaves nothing behind, and the record drops
/// the access tokens that expired, or that a burst of rotations put past the fourth.
#[tokio::test]
async fn a_family_keeps_only_its_live_tokens_however_often_it_rotates() {
    use lienthong_broker::refresh::RefreshRecord;
    use lienthong_broker::store::{Store, keys};

    let (env, sealer, clock) = sealed_with_clock().await;
    let first = tokens(&env, &Browser::new(), &offline(PORTAL_A), AN).await;
    let mut current = first["refresh_token"].as_str().unwrap().to_owned();
    let family = current.split_once('.').unwrap().0.to_owned();
    let record_key = keys::family_record(&family);
    let jti_of = |t: &Value| {
        jwt_payload(t["access_token"].as_str().unwrap())["jti"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let mut issued = vec![first];
    let mut used = vec![];
    // Access tokens live 300 s: two rotations at once, then the clock past their expiry, twice;
    // then a burst of five.
    for (step, live) in [
        (301, 1),
        (0, 2),
        (301, 1),
        (0, 2),
        (0, 3),
        (0, 4),
        (0, 4),
        (0, 4),
    ] {
        clock.advance(Duration::from_secs(step));
        let (status, next) = refresh(&env, PORTAL_A, &current).await;
        assert_eq!(status, StatusCode::OK, "{next}");
        used.push(std::mem::replace(
            &mut current,
            next["refresh_token"].as_str().unwrap().to_owned(),
        ));
        issued.push(next);
        for old in &used {
            assert_eq!(
                env.store.get(&keys::refresh_token(old)).await.unwrap(),
                None
            );
            assert_eq!(
                env.store.get(&keys::refresh_spent(old)).await.unwrap(),
                None,
                "no used-marker"
            );
        }
        // One record for the family, naming the live access tokens, no more; no set.
        let record: RefreshRecord = sealer
            .decode(&record_key, env.store.get(&record_key).await.unwrap())
            .expect("the family's record");
        let named: Vec<String> = record.grants.into_iter().map(|g| g.jti).collect();
        let expected: Vec<String> = issued[issued.len() - live..].iter().map(jti_of).collect();
        assert_eq!(named, expected, "the live access tokens, no more");
        assert_eq!(
            env.store
                .set_members(&keys::token_family(&family))
                .await
                .unwrap(),
            Vec::<String>::new()
        );
    }
    let access = |t: &Value| t["access_token"].as_str().unwrap().to_owned();
    let fifth_newest = access(&issued[issued.len() - 5]);
    assert_eq!(
        userinfo_status(&env, &fifth_newest).await,
        StatusCode::UNAUTHORIZED,
        "the burst ended the oldest access token early"
    );
    // A reuse still ends everything live: the newest refresh token and the live access tokens.
    let (status, _) = refresh(&env, PORTAL_A, &used[2]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = refresh(&env, PORTAL_A, &current).await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "the newest refresh token died"
    );
    for t in &issued[issued.len() - 4..] {
        assert_eq!(
            userinfo_status(&env, &access(t)).await,
            StatusCode::UNAUTHORIZED
        );
    }
}

/// Refresh tokens written by earlier releases are still rotated, and their reuse still revokes
/// the family: a bare secret with its family in an index key beside it, then
/// `<family>.<secret>` (both known used by the marker they leave), then that form tagged
/// without the client (known used by its tag); each with its record under the token's hash, in
/// JSON, and its family's keys in a set.
#[tokio::test]
async fn a_reused_refresh_token_of_an_earlier_release_still_revokes_its_family() {
    use lienthong_broker::refresh::RefreshRecord;
    use lienthong_broker::store::{Record, Store, keys};

    let (env, sealer) = sealed(Options::default()).await;
    for form in ["bare", "dotted", "tagged"] {
        let first = tokens(&env, &Browser::new(), &offline(PORTAL_A), AN).await;
        let current = first["refresh_token"].as_str().unwrap();
        let family = current.split_once('.').unwrap().0;
        // The earlier release's token and its record, from this one's.
        let stored = env.store.take(&keys::family_record(family)).await.unwrap();
        let mut record: RefreshRecord = sealer
            .decode(&keys::family_record(family), stored)
            .expect("the record opens");
        record.live = String::new();
        let secret = lienthong_protocol::secret::random_token(32);
        let old = match form {
            "bare" => secret,
            "dotted" => format!("{family}.{secret}"),
            _ => {
                let body = format!("{family}.{secret}");
                format!("{body}.{}", sealer.tag(&body))
            }
        };
        let ttl = Duration::from_secs(3600);
        let key = keys::refresh_token(&old);
        let json = serde_json::to_vec(&record).unwrap();
        let earlier = sealer.seal(&key, RefreshRecord::JSON_VERSION.unwrap(), &json);
        env.store.put(&key, earlier, ttl).await.unwrap();
        if form == "bare" {
            env.store
                .put(&keys::refresh_family(&old), family.as_bytes().to_vec(), ttl)
                .await
                .unwrap();
        }
        let set = keys::token_family(family);
        let first_grant = keys::grant(&record.grants[0].jti);
        env.store.set_add(&set, &first_grant, ttl).await.unwrap();
        if form != "tagged" {
            env.store.set_add(&set, &key, ttl).await.unwrap();
        }

        let (status, next) = refresh(&env, PORTAL_A, &old).await;
        assert_eq!(status, StatusCode::OK, "{old}: {next}");
        let newer = next["refresh_token"].as_str().unwrap();
        assert!(newer.starts_with(&format!("{family}.")), "{newer}");
        // The old token again: a reuse, and the family ends, its set with it.
        let (status, _) = refresh(&env, PORTAL_A, &old).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        for access in [&next, &first] {
            assert_eq!(
                userinfo_status(&env, access["access_token"].as_str().unwrap()).await,
                StatusCode::UNAUTHORIZED,
                "{form}"
            );
        }
        assert_eq!(
            env.store.set_members(&set).await.unwrap(),
            Vec::<String>::new()
        );
        let (status, _) = refresh(&env, PORTAL_A, newer).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "the newer token died too");
    }
}

/// With `[store] record_encoding = "json"` (a rolling update from a release that reads JSON
/// only) a node writes its records as that release did — JSON, at each one's `JSON_VERSION` —
/// and everything still works on them: a session, a refresh family, a grant.
#[tokio::test]
async fn with_record_encoding_json_a_node_writes_what_an_earlier_release_reads() {
    use lienthong_broker::refresh::RefreshRecord;
    use lienthong_broker::session::SsoSession;
    use lienthong_broker::store::{Record, Store, keys};

    let (env, sealer) = sealed(writing_json()).await;
    let as_json = |key: &str, version: Option<u8>, raw: Option<Vec<u8>>| {
        let raw = raw.unwrap_or_else(|| panic!("{key} is stored"));
        assert_eq!(Some(raw[0]), version, "{key}: written at its JSON version");
        let plain = sealer.open(key, raw[0], &raw).expect("it opens");
        serde_json::from_slice::<Value>(&plain).expect("it is JSON")
    };
    let first = tokens(&env, &Browser::new(), &offline(PORTAL_A), AN).await;
    let sid = jwt_payload(first["id_token"].as_str().unwrap())["sid"]
        .as_str()
        .unwrap()
        .to_owned();
    let key = keys::session(&sid);
    let session = as_json(
        &key,
        SsoSession::JSON_VERSION,
        env.store.get(&key).await.unwrap(),
    );
    assert_eq!(session["sid"], sid.as_str());

    let current = first["refresh_token"].as_str().unwrap();
    let (status, next) = refresh(&env, PORTAL_A, current).await;
    assert_eq!(status, StatusCode::OK, "{next}");
    let family = current.split_once('.').unwrap().0;
    let key = keys::family_record(family);
    let record = as_json(
        &key,
        RefreshRecord::JSON_VERSION,
        env.store.get(&key).await.unwrap(),
    );
    assert_eq!(record["family"], family);
    assert_eq!(record["grants"].as_array().unwrap().len(), 2);
    let access = next["access_token"].as_str().unwrap();
    assert_eq!(userinfo_status(&env, access).await, StatusCode::OK);
}

#[tokio::test]
async fn only_systems_allowed_offline_access_get_or_use_refresh_tokens() {
    let env = Env::start().await;
    let browser = Browser::new();
    let b = tokens(&env, &browser, &offline(PORTAL_B), AN).await;
    assert!(b.get("refresh_token").is_none(), "{b}");
    let a = tokens(&env, &browser, &offline(PORTAL_A), AN).await;
    // A refresh token stolen by another system is refused, and its owner's family survives.
    let r = a["refresh_token"].as_str().unwrap();
    let (status, body) = refresh(&env, PORTAL_B, r).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "unauthorized_client");
    let (status, _) = refresh(&env, PORTAL_A, r).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn introspection_tells_active_revoked_and_expired_tokens_apart() {
    let clock = MockClock::starting_now();
    let env = Env::with(Options {
        clock: Some(clock.clone()),
        ..Options::default()
    })
    .await;
    let t = tokens(&env, &Browser::new(), &offline(PORTAL_A), AN).await;
    let access = t["access_token"].as_str().unwrap();
    let refresh_token = t["refresh_token"].as_str().unwrap();
    let a = introspect(&env, PORTAL_A, access).await;
    assert_eq!(a["active"], true);
    assert_eq!(a["client_id"], PORTAL_A);
    assert_eq!(a["token_type"], "Bearer");
    assert!(a["scope"].as_str().unwrap().contains("citizen_id"));
    let r = introspect(&env, PORTAL_A, refresh_token).await;
    assert_eq!(r["active"], true);
    assert_eq!(r["token_type"], "refresh_token");
    // Another system learns nothing about these tokens.
    assert_eq!(
        introspect(&env, PORTAL_B, access).await,
        serde_json::json!({"active": false})
    );
    assert_eq!(
        introspect(&env, PORTAL_B, refresh_token).await["active"],
        false
    );
    assert_eq!(introspect(&env, PORTAL_A, "garbage").await["active"], false);
    // Without client authentication: 401.
    let r = reqwest::Client::new()
        .post(format!("{}/introspect", env.issuer))
        .form(&[("token", access)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // Expired.
    clock.advance(Duration::from_secs(301));
    assert_eq!(introspect(&env, PORTAL_A, access).await["active"], false);
    assert_eq!(
        introspect(&env, PORTAL_A, refresh_token).await["active"],
        true
    );
    // Revoked.
    let (status, _) = post(&env, "/revoke", PORTAL_A, &[("token", refresh_token)]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        introspect(&env, PORTAL_A, refresh_token).await["active"],
        false
    );
}

#[tokio::test]
async fn revocation_ends_an_access_token_or_a_whole_refresh_family() {
    let env = Env::start().await;
    let browser = Browser::new();
    let t = tokens(&env, &browser, &offline(PORTAL_A), AN).await;
    let access = t["access_token"].as_str().unwrap();
    assert_eq!(userinfo_status(&env, access).await, StatusCode::OK);
    // Another client cannot revoke it.
    let (status, _) = post(&env, "/revoke", PORTAL_B, &[("token", access)]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(userinfo_status(&env, access).await, StatusCode::OK);
    let (status, _) = post(
        &env,
        "/revoke",
        PORTAL_A,
        &[("token", access), ("token_type_hint", "access_token")],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        userinfo_status(&env, access).await,
        StatusCode::UNAUTHORIZED
    );
    // The refresh token still works; revoking it ends the family.
    let used = t["refresh_token"].as_str().unwrap();
    let (status, next) = refresh(&env, PORTAL_A, used).await;
    assert_eq!(status, StatusCode::OK);
    // The used one is not active, and revoking it ends nothing (RFC 7009: unknown).
    assert_eq!(introspect(&env, PORTAL_A, used).await["active"], false);
    let (status, _) = post(&env, "/revoke", PORTAL_A, &[("token", used)]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        userinfo_status(&env, next["access_token"].as_str().unwrap()).await,
        StatusCode::OK
    );
    let (status, _) = post(
        &env,
        "/revoke",
        PORTAL_A,
        &[("token", next["refresh_token"].as_str().unwrap())],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        userinfo_status(&env, next["access_token"].as_str().unwrap()).await,
        StatusCode::UNAUTHORIZED
    );
    let (status, _) = refresh(&env, PORTAL_A, next["refresh_token"].as_str().unwrap()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // Unknown tokens: 200, as RFC 7009 says.
    let (status, _) = post(&env, "/revoke", PORTAL_A, &[("token", "no-such-token")]).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn concurrent_presentations_of_one_refresh_token_leave_no_live_token_behind() {
    let env = std::sync::Arc::new(Env::start().await);
    let t = tokens(&env, &Browser::new(), &offline(PORTAL_A), AN).await;
    let token = t["refresh_token"].as_str().unwrap().to_owned();
    let answers = eight_at_once(|| {
        let (env, token) = (env.clone(), token.clone());
        async move { refresh(&env, PORTAL_A, &token).await }
    })
    .await;
    let mut winners = vec![];
    for (status, body) in answers {
        if status == StatusCode::OK {
            winners.push(body);
        }
    }
    assert!(
        winners.len() <= 1,
        "at most one presentation wins: {}",
        winners.len()
    );
    // The others were reuses: the family is revoked, so even a winner's tokens are dead.
    for w in winners {
        let (status, _) = refresh(&env, PORTAL_A, w["refresh_token"].as_str().unwrap()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(
            userinfo_status(&env, w["access_token"].as_str().unwrap()).await,
            StatusCode::UNAUTHORIZED
        );
    }
}

/// A code's second presentation revokes everything its first produced: the access token and
/// the refresh token (RFC 6749 §4.1.2, "all tokens previously issued based on that code").
#[tokio::test]
async fn a_reused_code_revokes_its_refresh_token_too() {
    let env = Env::start().await;
    let req = offline(PORTAL_A);
    let code = login_for_code(&env, &Browser::new(), &req, AN).await;
    let first: Value = redeem(&env, &req, &code, &req.verifier)
        .await
        .json()
        .await
        .unwrap();
    let refresh_token = first["refresh_token"].as_str().unwrap();
    let again = redeem(&env, &req, &code, &req.verifier).await;
    assert_eq!(again.status(), StatusCode::BAD_REQUEST);
    let access = first["access_token"].as_str().unwrap();
    assert_eq!(
        userinfo_status(&env, access).await,
        StatusCode::UNAUTHORIZED
    );
    let (status, body) = refresh(&env, PORTAL_A, refresh_token).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"], "invalid_grant");
}

/// The tokens a code stands for are signed when it is issued; a code refused at the token
/// endpoint (here for its PKCE verifier) is spent, and takes them with it.
#[tokio::test]
async fn a_code_refused_at_the_token_endpoint_leaves_no_tokens_behind() {
    use lienthong_broker::store::Store;

    let (env, sealer) = sealed(Options::default()).await;
    let req = offline(PORTAL_A);
    let code = login_for_code(&env, &Browser::new(), &req, AN).await;
    let [grant, family] = keys_of_code_tokens(&sealer, &code);
    for key in [&grant, &family] {
        assert!(
            env.store.get(key).await.unwrap().is_some(),
            "{key} is written with the code"
        );
    }
    let wrong = redeem(
        &env,
        &req,
        &code,
        "a-verifier-of-another-login-0123456789abcdef",
    )
    .await;
    assert_eq!(wrong.status(), StatusCode::BAD_REQUEST);
    for key in [&grant, &family] {
        assert!(
            env.store.get(key).await.unwrap().is_none(),
            "{key} is gone with the code"
        );
    }
    let right = redeem(&env, &req, &code, &req.verifier).await;
    assert_eq!(right.status(), StatusCode::BAD_REQUEST, "the code is spent");
}

/// Codes of the earlier form — their tokens signed at the token endpoint — are still redeemed:
/// in JSON (what a node with `record_encoding = "json"` writes, as the releases before postcard
/// did) and in postcard (the release before this one). A second presentation still revokes
/// what the first produced, the refresh token included.
#[tokio::test]
async fn codes_of_the_earlier_form_are_still_redeemed() {
    use lienthong_broker::code::CodeRecord;
    use lienthong_broker::store::{Record, Store, keys};

    let (env, sealer) = sealed(writing_json()).await;
    for postcard in [false, true] {
        let req = offline(PORTAL_A);
        let code = login_for_code(&env, &Browser::new(), &req, AN).await;
        let key = keys::code(&code);
        let raw = env
            .store
            .get(&key)
            .await
            .unwrap()
            .expect("the code is stored");
        assert_eq!(
            Some(raw[0]),
            CodeRecord::JSON_VERSION,
            "written in the earlier form"
        );
        if postcard {
            let plain = sealer.open(&key, raw[0], &raw).expect("it opens");
            let record: CodeRecord = serde_json::from_slice(&plain).expect("it is JSON");
            let earlier = sealer.encode(&key, &record);
            assert_eq!(earlier[0], CodeRecord::VERSION);
            env.store
                .put(&key, earlier, Duration::from_secs(60))
                .await
                .unwrap();
        }
        let first = redeem(&env, &req, &code, &req.verifier).await;
        assert_eq!(first.status(), StatusCode::OK, "postcard: {postcard}");
        let first: Value = first.json().await.unwrap();
        assert_eq!(first["expires_in"], 300);
        let access = first["access_token"].as_str().unwrap();
        assert_eq!(userinfo_status(&env, access).await, StatusCode::OK);
        let again = redeem(&env, &req, &code, &req.verifier).await;
        assert_eq!(again.status(), StatusCode::BAD_REQUEST);
        assert_eq!(
            userinfo_status(&env, access).await,
            StatusCode::UNAUTHORIZED
        );
        let refresh_token = first["refresh_token"].as_str().unwrap();
        let (status, body) = refresh(&env, PORTAL_A, refresh_token).await;
        assert_eq!(
            status,
            StatusCode::BAD_REQUEST,
            "postcard: {postcard}: {body}"
        );
    }
}

/// One code presented eight times at once, in either form: at most one presentation gets
/// tokens, and the others, being reuses, leave none of them alive.
#[tokio::test]
async fn concurrent_presentations_of_one_code_leave_no_live_token_behind() {
    for earlier_form in [false, true] {
        let env = std::sync::Arc::new(
            sealed(if earlier_form {
                writing_json()
            } else {
                Options::default()
            })
            .await
            .0,
        );
        let req = std::sync::Arc::new(offline(PORTAL_A));
        let code = login_for_code(&env, &Browser::new(), &req, AN).await;
        let answers = eight_at_once(|| {
            let (env, req, code) = (env.clone(), req.clone(), code.clone());
            async move {
                let r = redeem(&env, &req, &code, &req.verifier).await;
                (r.status(), r.json::<Value>().await.unwrap())
            }
        })
        .await;
        let mut winners = vec![];
        for (status, body) in answers {
            if status == StatusCode::OK {
                winners.push(body);
            } else {
                assert_eq!(body["error"], "invalid_grant", "{body}");
            }
        }
        assert!(
            winners.len() <= 1,
            "earlier form {earlier_form}: {}",
            winners.len()
        );
        for w in winners {
            let access = w["access_token"].as_str().unwrap();
            assert_eq!(
                userinfo_status(&env, access).await,
                StatusCode::UNAUTHORIZED
            );
            let (status, _) = refresh(&env, PORTAL_A, w["refresh_token"].as_str().unwrap()).await;
            assert_eq!(
                status,
                StatusCode::BAD_REQUEST,
                "earlier form {earlier_form}"
            );
        }
    }
}

/// A code's tokens are written to live no longer than the code until it is redeemed: a code
/// never redeemed leaves nothing behind once it expires (authorizations that are never
/// redeemed hold the Store no longer than their codes alone), and a redeemed one's live on.
#[tokio::test]
async fn an_unredeemed_code_leaves_nothing_behind_once_it_expires() {
    use lienthong_broker::store::Store;

    let (env, sealer, clock) = sealed_with_clock().await;
    let kept = async |code: &str| {
        let [grant, family] = keys_of_code_tokens(&sealer, code);
        let grant = env.store.get(&grant).await.unwrap().is_some();
        let family = env.store.get(&family).await.unwrap().is_some();
        (grant, family)
    };
    let left = offline(PORTAL_A);
    let unredeemed = login_for_code(&env, &Browser::new(), &left, AN).await;
    let taken = offline(PORTAL_A);
    let redeemed = login_for_code(&env, &Browser::new(), &taken, AN).await;
    assert_eq!(
        kept(&unredeemed).await,
        (true, true),
        "written with the code"
    );
    let tokens: Value = redeem(&env, &taken, &redeemed, &taken.verifier)
        .await
        .json()
        .await
        .unwrap();
    // code_secs is 60 by default, access_token_secs 300.
    clock.advance(Duration::from_secs(61));
    assert_eq!(
        kept(&unredeemed).await,
        (false, false),
        "gone with the code"
    );
    assert_eq!(
        kept(&redeemed).await,
        (true, true),
        "kept on by the redemption"
    );
    let access = tokens["access_token"].as_str().unwrap();
    assert_eq!(userinfo_status(&env, access).await, StatusCode::OK);
    let (status, body) = refresh(&env, PORTAL_A, tokens["refresh_token"].as_str().unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}
