//! Several broker nodes behind one issuer, sharing Redis (or a Redis Cluster) and PostgreSQL:
//! two real `lienthong serve` processes, and the steps of each login sent to one node or the
//! other as a round-robin balancer would.
//!
//! Needs Redis (127.0.0.1:6379 or `LIENTHONG_TEST_REDIS_URL`) and PostgreSQL (as the directory
//! tests: `LIENTHONG_TEST_POSTGRES_URL`); where either is missing the tests skip loudly, and
//! fail when `CI=true`.

mod common;

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::redis::{Cluster, Server, free_port, redis_url_or_skip};
use common::{Browser, hidden_field, location, pkce, query};
use lienthong_broker::store::{RedisStore, Store, keys};
use lienthong_mock_idp::{MockIdp, Roster, Running};
use lienthong_testkit::postgres::Database;
use reqwest::StatusCode;
use serde_json::Value;

const AN: &str = "001085004512";
const SECRET: &str = "node-test-secret";

/// One `lienthong serve` process.
struct Node {
    addr: String,
    child: Child,
}

impl Node {
    fn start(config: &PathBuf, port: u16, log: &str) -> Self {
        let log = std::fs::File::create(std::env::temp_dir().join(log)).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_lienthong"))
            .args(["serve", "--config"])
            .arg(config)
            .env("LIENTHONG__BIND", format!("127.0.0.1:{port}"))
            .env("LIENTHONG_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("lienthong serve starts");
        Self {
            addr: format!("http://127.0.0.1:{port}"),
            child,
        }
    }

    async fn wait_healthy(&self) {
        for _ in 0..200 {
            if let Ok(r) = reqwest::get(format!("{}/healthz", self.addr)).await
                && r.status() == StatusCode::OK
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("node {} never answered /healthz", self.addr);
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Two nodes with one public issuer (node A's address), the mock IdP, and the shared services.
struct Nodes {
    /// Logout tokens the systems received: (client, token).
    logouts: Arc<Mutex<Vec<(String, String)>>>,
    a: Node,
    b: Node,
    issuer: String,
    idp: Running,
    config: PathBuf,
}

/// Two random groups of an IPv6 address.
fn rand_hex() -> String {
    let b = lienthong_protocol::crypto::random_bytes(4);
    format!("{:02x}{:02x}:{:02x}{:02x}", b[0], b[1], b[2], b[3])
}

fn sealing_key() -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode([42u8; 32])
}

fn client_block(id: &str, backchannel: &str) -> String {
    format!(
        r#"
        [[clients]]
        id = "{id}"
        secret = "{SECRET}"
        name = "Hệ thống {id}"
        redirect_uris = ["http://127.0.0.1:9/{id}/callback"]
        backchannel_logout_uri = "{backchannel}/{id}"
        claims = ["name", "citizen_id"]
        require_consent = {portal_a}
        offline_access = {portal_a}
        "#,
        portal_a = id == "portal-a"
    )
}

impl Nodes {
    async fn start(store_url: &str, directory_url: &str, tag: &str) -> Self {
        Self::start_with(store_url, directory_url, tag, "").await
    }

    /// With `extra` at the end of the shared configuration (a table of its own).
    async fn start_with(store_url: &str, directory_url: &str, tag: &str, extra: &str) -> Self {
        lienthong_protocol::crypto::install();
        let (port_a, port_b) = (free_port(), free_port());
        let issuer = format!("http://127.0.0.1:{port_a}");
        let idp = MockIdp::start(common::idp_config_for(&issuer), Roster::builtin())
            .await
            .unwrap();
        let logouts = Arc::new(Mutex::new(Vec::new()));
        let backchannel = common::backchannel_receiver(logouts.clone()).await;
        let clients: String = ["portal-a", "p1", "p2", "p3", "p4", "p5"]
            .iter()
            .map(|c| client_block(c, &backchannel))
            .collect();
        let config = format!(
            r#"
            issuer = "{issuer}"
            account_id_secret = "shared-account-id-secret-0123456789"
            [store]
            url = "{store_url}"
            sealing_key = "{sealing}"
            [directory]
            url = "{directory_url}"
            [upstream]
            issuer = "{idp_issuer}"
            client_id = "lienthong"
            client_secret = "upstream-secret"
            metadata_ttl_secs = 0
            {clients}
            {extra}
            "#,
            sealing = sealing_key(),
            idp_issuer = idp.issuer,
        );
        let path =
            std::env::temp_dir().join(format!("lienthong-nodes-{tag}-{}.toml", std::process::id()));
        std::fs::write(&path, config).unwrap();
        let a = Node::start(&path, port_a, &format!("lienthong-node-a-{tag}.log"));
        // Node A first: the one that creates the schema and the shared keys.
        a.wait_healthy().await;
        let b = Node::start(&path, port_b, &format!("lienthong-node-b-{tag}.log"));
        b.wait_healthy().await;
        Self {
            logouts,
            a,
            b,
            issuer,
            idp,
            config: path,
        }
    }

    /// `url` (at the public issuer) sent to `node` instead, as a balancer would.
    fn via(&self, node: &Node, url: &str) -> String {
        url.replacen(&self.issuer, &node.addr, 1)
    }
}

impl Drop for Nodes {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.config);
    }
}

fn authorize_url(issuer: &str, client: &str, challenge: &str, state: &str) -> String {
    let mut url = url::Url::parse(&format!("{issuer}/authorize")).unwrap();
    url.query_pairs_mut()
        .append_pair("client_id", client)
        .append_pair(
            "redirect_uri",
            &format!("http://127.0.0.1:9/{client}/callback"),
        )
        .append_pair("response_type", "code")
        .append_pair(
            "scope",
            if client == "portal-a" {
                "openid profile citizen_id offline_access"
            } else {
                "openid profile citizen_id"
            },
        )
        .append_pair("state", state)
        .append_pair("nonce", "n-0S6_WzA2Mj")
        .append_pair("code_challenge", challenge)
        .append_pair("code_challenge_method", "S256");
    url.into()
}

async fn redeem(at: &str, client: &str, code: &str, verifier: &str) -> Value {
    let r = reqwest::Client::new()
        .post(format!("{at}/token"))
        .basic_auth(client, Some(SECRET))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            (
                "redirect_uri",
                &format!("http://127.0.0.1:9/{client}/callback"),
            ),
            ("code_verifier", verifier),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "token at {at}");
    r.json().await.unwrap()
}

/// The claims of a broker ID token, after checking its signature against `jwks_at`'s keys.
async fn verified_claims(jwks_at: &str, issuer: &str, token: &str, client: &str) -> Value {
    let jwks: jsonwebtoken::jwk::JwkSet = reqwest::get(format!("{jwks_at}/jwks"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let header = jsonwebtoken::decode_header(token).unwrap();
    let jwk = jwks
        .find(header.kid.as_deref().unwrap())
        .expect("every node publishes the same keys");
    let mut v = jsonwebtoken::Validation::new(header.alg);
    v.set_issuer(&[issuer]);
    v.set_audience(&[client]);
    jsonwebtoken::decode::<Value>(
        token,
        &jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap(),
        &v,
    )
    .unwrap()
    .claims
}

/// The whole scenario, on whatever Store `store_url` names.
async fn logins_hop_between_nodes(store_url: &str, tag: &str) {
    let Some(db) = Database::create_or_skip().await else {
        return;
    };
    let mut nodes = Nodes::start(store_url, &db.url, tag).await;
    let (a, b) = (&nodes.a, &nodes.b);

    // A login whose every step goes to the other node than the step before.
    let browser = Browser::new();
    let (verifier, challenge) = pkce();
    let start = authorize_url(&nodes.issuer, "portal-a", &challenge, "st-1");
    let to_idp = location(&browser.get(&nodes.via(a, &start)).await);
    assert!(to_idp.starts_with(&nodes.idp.issuer), "{to_idp}");
    let back = common::sign_in_at_idp(&browser, &to_idp, AN).await;
    let callback = location(&back);
    let consent_page = browser.get(&nodes.via(b, &callback)).await;
    assert_eq!(
        consent_page.status(),
        StatusCode::OK,
        "node B shows consent"
    );
    let consent_id = hidden_field(&consent_page.text().await.unwrap(), "consent_id");
    let r = browser
        .post_form(
            &format!("{}/consent", a.addr),
            &[("consent_id", &consent_id), ("decision", "allow")],
        )
        .await;
    let q = query(&location(&r));
    assert_eq!(q["state"], "st-1");
    assert_eq!(q["iss"], nodes.issuer);
    let tokens = redeem(&b.addr, "portal-a", &q["code"], &verifier).await;
    let claims = verified_claims(
        &a.addr,
        &nodes.issuer,
        tokens["id_token"].as_str().unwrap(),
        "portal-a",
    )
    .await;
    assert_eq!(claims["citizen_id"], AN);
    let userinfo: Value = reqwest::Client::new()
        .get(format!("{}/userinfo", a.addr))
        .bearer_auth(tokens["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        userinfo["sub"], claims["sub"],
        "node A honours node B's grant"
    );

    // A refresh token from node B rotates at node A; its reuse at node B — known by the tag
    // that every node sharing the sealing key recognises — revokes the family at node A too.
    let refresh = |at: &str, token: &str| {
        reqwest::Client::new()
            .post(format!("{at}/token"))
            .basic_auth("portal-a", Some(SECRET))
            .form(&[("grant_type", "refresh_token"), ("refresh_token", token)])
            .send()
    };
    let first = tokens["refresh_token"].as_str().unwrap();
    let r = refresh(&a.addr, first).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK, "node A rotates node B's token");
    let rotated: Value = r.json().await.unwrap();
    let r = refresh(&b.addr, first).await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST, "a reuse at node B");
    let r = refresh(&a.addr, rotated["refresh_token"].as_str().unwrap())
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::BAD_REQUEST,
        "the family is revoked for node A too"
    );
    let r = reqwest::Client::new()
        .get(format!("{}/userinfo", a.addr))
        .bearer_auth(rotated["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    // SSO across nodes: another system, on node B, with no trip to the IdP.
    let (verifier, challenge) = pkce();
    let sso = authorize_url(&nodes.issuer, "p1", &challenge, "st-2");
    let to_client = location(&browser.get(&nodes.via(b, &sso)).await);
    assert!(
        to_client.starts_with("http://127.0.0.1:9/p1/callback"),
        "SSO on the other node: {to_client}"
    );
    let code = query(&to_client)["code"].clone();
    let sso_tokens = redeem(&a.addr, "p1", &code, &verifier).await;
    let sso_claims = verified_claims(
        &b.addr,
        &nodes.issuer,
        sso_tokens["id_token"].as_str().unwrap(),
        "p1",
    )
    .await;
    assert_eq!(sso_claims["sid"], claims["sid"], "one SSO session");

    // Two... five systems at the same moment, alternately on the two nodes: every one ends in
    // the session's list of clients (a set-add each, not a read-modify-write of the session).
    let sid = claims["sid"].as_str().unwrap().to_owned();
    let racers: Vec<_> = ["p1", "p2", "p3", "p4", "p5"]
        .iter()
        .enumerate()
        .map(|(i, client)| {
            let node = if i % 2 == 0 { &a.addr } else { &b.addr };
            let (_, challenge) = pkce();
            let url = authorize_url(node, client, &challenge, "race");
            let http = browser.http.clone();
            tokio::spawn(async move { http.get(url).send().await.unwrap() })
        })
        .collect();
    for r in racers {
        let r = r.await.unwrap();
        assert!(
            location(&r).contains("code="),
            "each racer got a code: {}",
            location(&r)
        );
    }
    let store =
        RedisStore::new(&store_url.split(',').map(str::to_owned).collect::<Vec<_>>()).unwrap();
    let members = store
        .set_members(&keys::session_clients(&sid))
        .await
        .unwrap();
    assert_eq!(
        members,
        ["p1", "p2", "p3", "p4", "p5", "portal-a"],
        "no client lost to a concurrent login"
    );

    // The session record in Redis holds no upstream ID token: that travels sealed in the
    // browser's cookie for the sign-out endpoint (sealed by node B at the callback).
    let session_key = keys::session(&sid);
    let record = store
        .get(&session_key)
        .await
        .unwrap()
        .expect("the session record, under its sid");
    assert_eq!(
        store.get(&keys::session_by_sid(&sid)).await.unwrap(),
        None,
        "no index beside it"
    );

    // Signing out at node A ends the session for node B too, every system hears of it, and
    // the national IdP gets back its own ID token as the hint.
    let mut hint = url::Url::parse(&format!("{}/logout", a.addr)).unwrap();
    hint.query_pairs_mut()
        .append_pair("id_token_hint", tokens["id_token"].as_str().unwrap());
    let r = browser.get(hint.as_str()).await;
    assert!(r.status().is_redirection(), "signed out at node A");
    let upstream_end = location(&r);
    assert!(
        upstream_end.starts_with(&nodes.idp.issuer),
        "{upstream_end}"
    );
    let upstream_id_token = query(&upstream_end)["id_token_hint"].clone();
    let payload = upstream_id_token.split('.').nth(1).expect("a JWT");
    let upstream_claims: Value = serde_json::from_slice(
        &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(upstream_claims["iss"], nodes.idp.issuer.as_str());
    assert!(
        record.len() < upstream_id_token.len(),
        "the session record ({} bytes) is shorter than the upstream ID token ({} bytes)",
        record.len(),
        upstream_id_token.len()
    );
    let (_, challenge) = pkce();
    let mut silent = url::Url::parse(&authorize_url(&b.addr, "p3", &challenge, "st-4")).unwrap();
    silent.query_pairs_mut().append_pair("prompt", "none");
    let q = query(&location(&browser.get(silent.as_str()).await));
    assert_eq!(q["error"], "login_required", "node B sees the session gone");
    let mut told = vec![];
    for _ in 0..100 {
        told = nodes
            .logouts
            .lock()
            .unwrap()
            .iter()
            .map(|(c, _)| c.clone())
            .collect::<Vec<_>>();
        if told.len() >= 6 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    told.sort();
    assert_eq!(
        told,
        ["p1", "p2", "p3", "p4", "p5", "portal-a"],
        "every participant told"
    );

    // A login begun on node B is finished by node A after node B dies.
    let other = Browser::new();
    let (verifier, challenge) = pkce();
    let start = authorize_url(&nodes.issuer, "p2", &challenge, "st-3");
    let to_idp = location(&other.get(&nodes.via(b, &start)).await);
    nodes.b.kill();
    let back = common::sign_in_at_idp(&other, &to_idp, "001192007731").await;
    let r = other.get(&nodes.via(&nodes.a, &location(&back))).await;
    let q = query(&location(&r));
    assert_eq!(q["state"], "st-3", "node A finished node B's login");
    redeem(&nodes.a.addr, "p2", &q["code"], &verifier).await;

    drop(nodes);
    db.drop_database().await;
}

#[tokio::test]
async fn multi_node_logins_over_redis() {
    let Some(url) = redis_url_or_skip().await else {
        return;
    };
    logins_hop_between_nodes(&url, "redis").await;
}

#[tokio::test]
async fn multi_node_logins_over_a_redis_cluster() {
    let Some(cluster) = Cluster::start_or_skip().await else {
        return;
    };
    logins_hop_between_nodes(&cluster.store_url(), "cluster").await;
}

#[tokio::test]
async fn rate_limits_are_counted_by_every_node_together() {
    let Some(url) = redis_url_or_skip().await else {
        return;
    };
    let Some(db) = Database::create_or_skip().await else {
        return;
    };
    let nodes = Nodes::start_with(
        &url,
        &db.url,
        "limits",
        "[limits]\nauthorize_per_minute = 4\ntrust_forwarded_for = true",
    )
    .await;
    let (a, b) = (&nodes.a, &nodes.b);
    // Every request from one address of this run's own, as the balancer in front reports it;
    // any /authorize counts, even a malformed one.
    let source = format!("2001:db8::{}", rand_hex());
    let status = |node: &Node| {
        let request = reqwest::Client::new()
            .get(format!("{}/authorize", node.addr))
            .header("x-forwarded-for", &source);
        async move { request.send().await.unwrap().status() }
    };
    let flush = || tokio::time::sleep(4 * lienthong_broker::tally::FLUSH);
    for _ in 0..4 {
        assert_ne!(status(a).await, StatusCode::TOO_MANY_REQUESTS);
    }
    assert_eq!(
        status(a).await,
        StatusCode::TOO_MANY_REQUESTS,
        "A counts at once"
    );
    flush().await;
    // B had counted nothing from this address: its first request passes on what B knows (the
    // most one node lets through before its first flush); after that flush B knows A's count.
    assert_ne!(status(b).await, StatusCode::TOO_MANY_REQUESTS);
    flush().await;
    assert_eq!(
        status(b).await,
        StatusCode::TOO_MANY_REQUESTS,
        "B refuses: the address used its limit on A"
    );
    flush().await;
    let counter = RedisStore::new(std::slice::from_ref(&url))
        .unwrap()
        .get(&keys::counter("authorize", &source))
        .await
        .unwrap();
    assert_eq!(
        counter.as_deref(),
        Some(&b"7"[..]),
        "every request counted once in the shared counter, refused ones too"
    );
    drop(nodes);
    db.drop_database().await;
}

#[tokio::test]
async fn a_node_whose_redis_is_stopped_starts_answers_not_ready_and_recovers_by_itself() {
    if redis_url_or_skip().await.is_none() {
        return;
    }
    lienthong_protocol::crypto::install();
    let redis_port = free_port();
    let dir = common::scratch_dir("ready");
    let config = common::write_config(
        &dir,
        &format!(
            r#"
            issuer = "http://127.0.0.1:1"
            account_id_secret = "shared-account-id-secret-0123456789"
            [store]
            url = "redis://127.0.0.1:{redis_port}"
            sealing_key = "{sealing}"
            [directory]
            url = "sqlite://{db}?mode=rwc"
            [upstream]
            issuer = "http://127.0.0.1:1/idp"
            client_id = "lienthong"
            client_secret = "upstream-secret"
            "#,
            sealing = sealing_key(),
            db = dir.join("directory.db").display(),
        ),
    );
    let node = Node::start(&config, free_port(), "lienthong-node-ready.log");
    node.wait_healthy().await;
    let ready = |addr: String| async move {
        let r = reqwest::get(format!("{addr}/readyz")).await.unwrap();
        (
            r.status(),
            r.json::<HashMap<String, String>>().await.unwrap(),
        )
    };
    let (status, body) = ready(node.addr.clone()).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["store"], "unavailable");
    assert_eq!(body["directory"], "ok");
    let redis = Server::start(redis_port, false);
    redis.wait_ready().await;
    let mut recovered = false;
    for _ in 0..100 {
        if ready(node.addr.clone()).await.0 == StatusCode::OK {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        recovered,
        "/readyz answers 200 once Redis is back, with no restart"
    );
    drop(node);
    drop(redis);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_node_on_a_shared_store_refuses_to_start_without_the_shared_secrets() {
    let dir = common::scratch_dir("refuse");
    let check = |extra: &str| {
        let config = common::write_config(
            &dir,
            &format!(
                r#"
                issuer = "http://127.0.0.1:1"
                {extra}
                [store]
                url = "redis://127.0.0.1:1"
                [directory]
                url = "sqlite://{db}?mode=rwc"
                [upstream]
                issuer = "http://127.0.0.1:1/idp"
                client_id = "lienthong"
                client_secret = "upstream-secret"
                "#,
                db = dir.join("directory.db").display(),
            ),
        );
        let out = Command::new(env!("CARGO_BIN_EXE_lienthong"))
            .args(["check-config", "--config"])
            .arg(&config)
            .env_remove("LIENTHONG__STORE__SEALING_KEY")
            .env_remove("LIENTHONG__ACCOUNT_ID_SECRET")
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, err) = check(r#"account_id_secret = "shared-account-id-secret-0123456789""#);
    assert!(!ok && err.contains("store.sealing_key"), "{err}");
    let (ok, err) = check("");
    assert!(!ok && err.contains("store.sealing_key"), "{err}");
    // With the sealing key given (as the environment would), the account id secret is next.
    let config = dir.join("broker.toml");
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "[store]",
        &format!("[store]\nsealing_key = \"{}\"", sealing_key()),
    );
    std::fs::write(&config, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_lienthong"))
        .args(["check-config", "--config"])
        .arg(&config)
        .env_remove("LIENTHONG__ACCOUNT_ID_SECRET")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("account_id_secret"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
