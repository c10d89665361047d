//! The account directory, specified once and run against both backends: SQLite (a temporary
//! file) and PostgreSQL (a fresh database on the server named by LIENTHONG_TEST_POSTGRES_URL,
//! default postgres://postgres@127.0.0.1:5432/postgres). Without a PostgreSQL server the
//! PostgreSQL half is skipped with a loud notice, except when CI=true, where it fails.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use lienthong_adapter::directory::{
    AccountNumber, CitizenInput, ConsentAnswer, ConsentQuery, Directory, LinkSource, Preparation,
    Prepared, Resolution, parse_csv,
};
use lienthong_adapter::policy::{LinkPolicy, LookupConfig, NewSubjectRule, RealmConfig};
use lienthong_citizen::lookup_signature;
use lienthong_citizen::{CitizenId, LegacyCmnd};
use lienthong_protocol::{Clock, SystemClock};
use lienthong_testkit::postgres::Database;

const IDP: &str = "https://idp.example";

struct Backend {
    name: &'static str,
    dir: Directory,
    /// The PostgreSQL database, or the SQLite file, to remove afterwards.
    database: Option<Database>,
    file: Option<std::path::PathBuf>,
}

impl Backend {
    async fn drop_database(self) {
        self.dir.close().await;
        if let Some(file) = self.file {
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", file.display()));
            }
        }
        if let Some(database) = self.database {
            database.drop_database().await;
        }
    }
}

async fn sqlite() -> Backend {
    let path = std::env::temp_dir().join(format!(
        "lienthong-test-{}_{}.db",
        std::process::id(),
        lienthong_protocol::secret::random_token(6)
    ));
    let dir = Directory::connect(&format!("sqlite://{}?mode=rwc", path.display()))
        .await
        .unwrap();
    Backend {
        name: "sqlite",
        dir,
        database: None,
        file: Some(path),
    }
}

/// The lookup client's HTTP client; reqwest needs the process's TLS provider installed first.
fn http_client() -> reqwest::Client {
    lienthong_protocol::crypto::install();
    reqwest::Client::new()
}

/// SQLite, and PostgreSQL unless it is unreachable (said loudly; a failure on CI).
async fn backends() -> Vec<Backend> {
    let mut all = vec![sqlite().await];
    if let Some(database) = Database::create_or_skip().await {
        all.push(Backend {
            name: "postgres",
            dir: Directory::connect(&database.url).await.unwrap(),
            database: Some(database),
            file: None,
        });
    }
    all
}

fn realm(id: &str, policy: LinkPolicy) -> RealmConfig {
    RealmConfig {
        policy,
        ..RealmConfig::provision(id)
    }
}

fn number(s: &str) -> CitizenId {
    CitizenId::parse(s).unwrap()
}

fn citizen<'a>(
    subject: &'a str,
    n: Option<&'a CitizenId>,
    cmnd: Option<&'a LegacyCmnd>,
) -> CitizenInput<'a> {
    CitizenInput {
        issuer: IDP,
        subject,
        citizen_id: n,
        legacy_cmnd: cmnd,
        name: Some("Nguyễn Văn An"),
        birthdate: Some("1985-04-12"),
    }
}

/// A citizen's answer to portal A's question.
fn answer<'a>(client_id: &'a str, claims: &'a [String], allowed: bool) -> ConsentAnswer<'a> {
    ConsentAnswer {
        subject_key: "who",
        client_id,
        claims,
        wording: "Cổng A hỏi / Portal A asks",
        allowed,
    }
}

/// A consent question, as a login asks it.
fn asked<'a>(subject_key: &'a str, client_id: &'a str, since: i64) -> ConsentQuery<'a> {
    ConsentQuery {
        subject_key,
        client_id,
        since,
    }
}

fn account(r: Resolution) -> (String, LinkSource) {
    match r {
        Resolution::Account {
            local_account_id,
            how,
        } => (local_account_id, how),
        other => panic!("expected an account, got {other:?}"),
    }
}

#[tokio::test]
async fn provision_is_stable_and_realms_see_different_ids() {
    let http = http_client();
    for b in backends().await {
        let n = number("001085004512");
        let c = citizen("sub-1", Some(&n), None);
        let portal = realm("portal", LinkPolicy::Provision);
        let (first, how) = account(b.dir.resolve(&portal, &c, &http).await.unwrap());
        assert_eq!(how, LinkSource::Provision, "{}", b.name);
        let (again, how) = account(b.dir.resolve(&portal, &c, &http).await.unwrap());
        assert_eq!(
            (again.as_str(), how),
            (first.as_str(), LinkSource::Existing),
            "{}",
            b.name
        );
        let (other, _) = account(
            b.dir
                .resolve(&realm("health", LinkPolicy::Provision), &c, &http)
                .await
                .unwrap(),
        );
        assert_ne!(other, first, "{}", b.name);
        b.drop_database().await;
    }
}

#[tokio::test]
async fn linked_realms_admit_only_prelinked_citizens_and_bind_them_at_first_sign_in() {
    let http = http_client();
    for b in backends().await {
        let onestop = RealmConfig {
            match_legacy_cmnd: true,
            ..realm("onestop", LinkPolicy::Linked)
        };
        let (rows, errors) = parse_csv(
            "number,local_account_id\n001085004512,MC-0001\n040123456,MC-0002\n".as_bytes(),
        );
        assert!(errors.is_empty());
        let report = b.dir.import("onestop", &rows, false, "test").await.unwrap();
        assert_eq!((report.imported, report.committed), (2, true), "{}", b.name);

        let an = number("001085004512");
        let (id, how) = account(
            b.dir
                .resolve(&onestop, &citizen("sub-an", Some(&an), None), &http)
                .await
                .unwrap(),
        );
        assert_eq!(
            (id.as_str(), how),
            ("MC-0001", LinkSource::Bound),
            "{}",
            b.name
        );
        let (id, how) = account(
            b.dir
                .resolve(&onestop, &citizen("sub-an", Some(&an), None), &http)
                .await
                .unwrap(),
        );
        assert_eq!((id.as_str(), how), ("MC-0001", LinkSource::Existing));

        // Matched by the old CMND number alone.
        let sang = number("011078003316");
        let cmnd = LegacyCmnd::parse("040123456").unwrap();
        let (id, _) = account(
            b.dir
                .resolve(
                    &onestop,
                    &citizen("sub-sang", Some(&sang), Some(&cmnd)),
                    &http,
                )
                .await
                .unwrap(),
        );
        assert_eq!(id, "MC-0002", "{}", b.name);

        let stranger = number("079099008841");
        assert_eq!(
            b.dir
                .resolve(&onestop, &citizen("sub-x", Some(&stranger), None), &http)
                .await
                .unwrap(),
            Resolution::NotLinked
        );
        b.drop_database().await;
    }
}

#[tokio::test]
async fn an_id_number_change_keeps_the_link_and_is_recorded() {
    let http = http_client();
    for b in backends().await {
        let portal = realm("portal", LinkPolicy::Provision);
        let (old_n, new_n) = (number("001085004512"), number("001085009999"));
        let (before, _) = account(
            b.dir
                .resolve(&portal, &citizen("sub-1", Some(&old_n), None), &http)
                .await
                .unwrap(),
        );
        let (after, how) = account(
            b.dir
                .resolve(&portal, &citizen("sub-1", Some(&new_n), None), &http)
                .await
                .unwrap(),
        );
        assert_eq!(
            (after.as_str(), how),
            (before.as_str(), LinkSource::Existing),
            "{}",
            b.name
        );
        let view = b
            .dir
            .show(&AccountNumber::Citizen(new_n.clone()))
            .await
            .unwrap();
        assert_eq!(view.citizens.len(), 1);
        let change = view
            .events
            .iter()
            .find(|e| e.action == "id_number_changed")
            .expect("the change is in the history");
        assert_eq!(change.detail["old"], "001*******12");
        assert!(
            !change.detail.to_string().contains("085004512"),
            "numbers are masked in the log"
        );
        b.drop_database().await;
    }
}

#[tokio::test]
async fn a_known_number_under_a_new_subject_follows_the_realm_rule() {
    let http = http_client();
    for b in backends().await {
        let n = number("001085004512");
        let strict = realm("strict", LinkPolicy::Provision);
        let lenient = RealmConfig {
            on_new_subject: NewSubjectRule::Relink,
            ..realm("lenient", LinkPolicy::Provision)
        };
        let (strict_id, _) = account(
            b.dir
                .resolve(&strict, &citizen("old-sub", Some(&n), None), &http)
                .await
                .unwrap(),
        );
        let (lenient_id, _) = account(
            b.dir
                .resolve(&lenient, &citizen("old-sub", Some(&n), None), &http)
                .await
                .unwrap(),
        );

        let newcomer = citizen("new-sub", Some(&n), None);
        assert_eq!(
            b.dir.resolve(&strict, &newcomer, &http).await.unwrap(),
            Resolution::NeedsRelink,
            "{}",
            b.name
        );
        let (moved, how) = account(b.dir.resolve(&lenient, &newcomer, &http).await.unwrap());
        assert_eq!(
            (moved.as_str(), how),
            (lenient_id.as_str(), LinkSource::Relinked),
            "{}",
            b.name
        );
        assert_ne!(strict_id, lenient_id);

        let events = b.dir.events(None, 100).await.unwrap();
        for action in ["known_number_new_subject", "relink_refused", "relinked"] {
            assert!(
                events.iter().any(|e| e.action == action),
                "{}: {action} recorded",
                b.name
            );
        }
        b.drop_database().await;
    }
}

#[tokio::test]
async fn an_import_reports_every_bad_row_and_is_all_or_nothing() {
    for b in backends().await {
        let file = "\
number,local_account_id
001085004512,A-1
00108500451,A-2
001192007731,A-3
003195012345,A-4
001192007731,A-5
011078003316,A-3
002301004418,
12345678x,A-7
040123456,A-8
";
        let (rows, errors) = parse_csv(file.as_bytes());
        let lines: Vec<u64> = errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, [3, 5, 6, 7, 8, 9], "{errors:?}");
        assert!(errors[0].reason.contains("12 digits"));
        assert!(errors[1].reason.contains("province"));
        assert!(errors[2].reason.contains("already on line 4"));
        assert!(
            errors[3].reason.contains("already on line 4"),
            "the account id repeats"
        );
        assert_eq!(rows.len(), 3);

        // A conflict with what is stored is a bad row too; without --skip-invalid nothing lands.
        b.dir
            .link(
                "r",
                &AccountNumber::parse("040123456").unwrap(),
                "OTHER",
                "admin-test",
            )
            .await
            .unwrap();
        let report = b.dir.import("r", &rows, false, "test").await.unwrap();
        assert_eq!(
            (report.committed, report.imported),
            (false, 0),
            "{}",
            b.name
        );
        assert_eq!(
            report.conflicts.iter().map(|c| c.line).collect::<Vec<_>>(),
            [10]
        );
        assert_eq!(
            b.dir.list_links("r", None, 100).await.unwrap().len(),
            1,
            "{}: nothing imported",
            b.name
        );

        let report = b.dir.import("r", &rows, true, "test").await.unwrap();
        assert_eq!(
            (report.committed, report.imported, report.conflicts.len()),
            (true, 2, 1),
            "{}",
            b.name
        );
        let again = b.dir.import("r", &rows, true, "test").await.unwrap();
        assert_eq!(
            (again.imported, again.unchanged, again.conflicts.len()),
            (0, 2, 1),
            "{}: re-import is a no-op",
            b.name
        );

        let mut csv = Vec::new();
        assert_eq!(b.dir.export("r", &mut csv).await.unwrap(), 3);
        let (back, errors) = parse_csv(csv.as_slice());
        assert!(errors.is_empty());
        assert_eq!(back.len(), 3, "the export is importable");
        b.drop_database().await;
    }
}

#[tokio::test]
async fn a_streamed_csv_import_reports_every_bad_row_and_keeps_nothing_unless_told() {
    for b in backends().await {
        let file = "001085004512,A-1\n00108500451,A-2\n040123456,A-3\n001085004512,A-4\n";
        let (report, errors) = b
            .dir
            .import_csv(
                "r",
                std::io::Cursor::new(file.as_bytes().to_vec()),
                false,
                "test",
            )
            .await
            .unwrap();
        assert_eq!(
            errors.iter().map(|e| e.line).collect::<Vec<_>>(),
            [2, 4],
            "{}",
            b.name
        );
        assert_eq!((report.committed, report.imported), (false, 0));
        assert!(
            b.dir.list_links("r", None, 10).await.unwrap().is_empty(),
            "{}: nothing kept",
            b.name
        );
        let (report, errors) = b
            .dir
            .import_csv(
                "r",
                std::io::Cursor::new(file.as_bytes().to_vec()),
                true,
                "test",
            )
            .await
            .unwrap();
        assert_eq!(
            (report.committed, report.imported, errors.len()),
            (true, 2, 2),
            "{}",
            b.name
        );
        // Larger than one batch, and again: a no-op.
        let big: String = (0..25_000)
            .map(|i| format!("0010850{i:05},B-{i}\n"))
            .collect();
        let (first, errors) = b
            .dir
            .import_csv(
                "big",
                std::io::Cursor::new(big.clone().into_bytes()),
                false,
                "test",
            )
            .await
            .unwrap();
        assert!(errors.is_empty());
        assert_eq!(first.imported, 25_000, "{}", b.name);
        let (again, _) = b
            .dir
            .import_csv("big", std::io::Cursor::new(big.into_bytes()), false, "test")
            .await
            .unwrap();
        assert_eq!(
            (again.imported, again.unchanged, again.committed),
            (0, 25_000, true),
            "{}",
            b.name
        );
        b.drop_database().await;
    }
}

#[tokio::test]
async fn the_admin_operations_link_find_list_and_unlink_with_an_audit_trail() {
    for b in backends().await {
        for i in 0..25 {
            let n = AccountNumber::parse(&format!("0010850{i:05}")).unwrap();
            b.dir
                .link("r", &n, &format!("ACC-{i:03}"), "client:admin")
                .await
                .unwrap();
        }
        let dup = b
            .dir
            .link(
                "r",
                &AccountNumber::parse("001085000001").unwrap(),
                "ACC-999",
                "client:admin",
            )
            .await;
        assert!(
            dup.is_err(),
            "{}: a number is linked once per realm",
            b.name
        );
        let page1 = b.dir.list_links("r", None, 10).await.unwrap();
        let page3 = b.dir.list_links("r", Some("ACC-019"), 10).await.unwrap();
        assert_eq!(
            (page1.len(), page1[0].local_account_id.as_str()),
            (10, "ACC-000")
        );
        assert_eq!(page3.len(), 5);
        let found = b
            .dir
            .find_link("r", &AccountNumber::parse("001085000007").unwrap())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (found.local_account_id.as_str(), found.bound),
            ("ACC-007", false)
        );
        assert!(b.dir.unlink("r", "ACC-007", "client:admin").await.unwrap());
        assert!(!b.dir.unlink("r", "ACC-007", "client:admin").await.unwrap());
        let events = b.dir.events(None, 100).await.unwrap();
        assert!(
            events
                .iter()
                .any(|e| e.action == "link_removed" && e.actor == "client:admin"),
            "{}",
            b.name
        );
        b.drop_database().await;
    }
}

/// A provincial system's lookup endpoint: checks our signature, counts calls, knows one citizen.
async fn lookup_endpoint(calls: Arc<AtomicUsize>, delay: Duration) -> String {
    let app = Router::new().route(
        "/lookup",
        post(move |headers: HeaderMap, body: axum::body::Bytes| {
            let calls = calls.clone();
            async move {
                calls.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(delay).await;
                let now = SystemClock.now_secs();
                let Some(req) = lookup_signature::accept("lookup-secret", &headers, &body, now)
                else {
                    return (StatusCode::UNAUTHORIZED, String::new());
                };
                match req.citizen_id.as_deref() {
                    Some("001085004512") => {
                        (StatusCode::OK, r#"{"account_id":"BN-4512"}"#.to_owned())
                    }
                    _ => (StatusCode::NOT_FOUND, String::new()),
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/lookup")
}

fn lookup_realm(url: String, timeout_ms: u64) -> RealmConfig {
    RealmConfig {
        lookup: Some(LookupConfig {
            url,
            secret: "lookup-secret".into(),
            timeout_ms,
        }),
        ..realm("health", LinkPolicy::Lookup)
    }
}

#[tokio::test]
async fn lookup_links_on_first_sign_in_and_reuses_the_link_after() {
    let http = http_client();
    for b in backends().await {
        let calls = Arc::new(AtomicUsize::new(0));
        let health = lookup_realm(lookup_endpoint(calls.clone(), Duration::ZERO).await, 2000);
        let n = number("001085004512");
        let (id, how) = account(
            b.dir
                .resolve(&health, &citizen("s", Some(&n), None), &http)
                .await
                .unwrap(),
        );
        assert_eq!(
            (id.as_str(), how),
            ("BN-4512", LinkSource::Lookup),
            "{}",
            b.name
        );
        let (id, how) = account(
            b.dir
                .resolve(&health, &citizen("s", Some(&n), None), &http)
                .await
                .unwrap(),
        );
        assert_eq!((id.as_str(), how), ("BN-4512", LinkSource::Existing));
        assert_eq!(
            calls.load(Ordering::SeqCst),
            1,
            "the endpoint is asked once"
        );
        let unknown = number("079099008841");
        assert_eq!(
            b.dir
                .resolve(&health, &citizen("u", Some(&unknown), None), &http)
                .await
                .unwrap(),
            Resolution::NotLinked
        );
        b.drop_database().await;
    }
}

#[tokio::test]
async fn a_slow_lookup_endpoint_gives_a_bounded_failure_not_a_hang() {
    let http = http_client();
    // Timing behaviour does not depend on the backend: SQLite alone.
    let b = sqlite().await;
    let slow = lookup_realm(
        lookup_endpoint(Arc::new(AtomicUsize::new(0)), Duration::from_secs(5)).await,
        300,
    );
    let n = number("001085004512");
    let started = std::time::Instant::now();
    let r = b
        .dir
        .resolve(&slow, &citizen("s", Some(&n), None), &http)
        .await
        .unwrap();
    assert!(matches!(r, Resolution::LookupUnavailable(_)), "{r:?}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "bounded by the timeout"
    );
    let dead = lookup_realm("http://127.0.0.1:9/lookup".into(), 300);
    assert!(matches!(
        b.dir
            .resolve(&dead, &citizen("s", Some(&n), None), &http)
            .await
            .unwrap(),
        Resolution::LookupUnavailable(_)
    ));
    b.drop_database().await;
}

#[tokio::test]
async fn consents_add_up_and_signing_key_generations_are_taken_once() {
    for b in backends().await {
        let name = b.name;
        let d = &b.dir;
        let claims = |c: &[&str]| c.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let answer = |c: Vec<String>, allowed| async move {
            d.record_consent_answer(&answer("portal", &c, allowed))
                .await
        };
        answer(claims(&["name", "birthdate"]), true).await.unwrap();
        // Recorded again elsewhere at the same moment, with one more claim: nothing is lost.
        let (one, two) = (claims(&["citizen_id"]), claims(&["name", "gender"]));
        let (a, b2) = tokio::join!(answer(one, true), answer(two, true));
        a.unwrap();
        b2.unwrap();
        // A refusal is recorded as a decision and grants nothing.
        answer(claims(&["legacy_id_number"]), false).await.unwrap();
        let mut got = d.consented_claims(asked("who", "portal", 0)).await.unwrap();
        got.sort();
        assert_eq!(got, ["birthdate", "citizen_id", "gender", "name"], "{name}");
        let decisions = d.consent_decisions("portal").await.unwrap();
        assert_eq!(decisions.len(), 4, "{name}: every answer is recorded");
        assert_eq!(
            decisions.iter().filter(|d| d.2 == "refuse").count(),
            1,
            "{name}"
        );
        assert!(
            decisions
                .iter()
                .all(|d| d.1 == "Cổng A hỏi / Portal A asks"),
            "{name}: with the wording shown"
        );
        assert!(
            d.consented_claims(asked("who", "other", 0))
                .await
                .unwrap()
                .is_empty()
        );
        assert!(
            d.consented_claims(asked("who", "portal", i64::MAX))
                .await
                .unwrap()
                .is_empty(),
            "{name}: consents older than the window do not count"
        );
        assert!(d.add_signing_key("ES256", 1, "sealed-1").await.unwrap());
        assert!(
            !d.add_signing_key("ES256", 1, "other").await.unwrap(),
            "{name}: a generation is written once"
        );
        assert!(d.add_signing_key("ES256", 2, "sealed-2").await.unwrap());
        assert!(d.add_signing_key("ES256", 3, "sealed-3").await.unwrap());
        d.prune_signing_keys("ES256", 2).await.unwrap();
        let gens: Vec<i64> = d
            .signing_keys("ES256", 3)
            .await
            .unwrap()
            .into_iter()
            .map(|(g, _)| g)
            .collect();
        assert_eq!(gens, [3, 2], "{name}");
        b.drop_database().await;
    }
}

#[tokio::test]
async fn prepare_answers_the_consent_question_with_the_account() {
    let http = http_client();
    for b in backends().await {
        let name = b.name;
        let d = &b.dir;
        let portal = realm("portal", LinkPolicy::Provision);
        let n = number("001085004512");
        let c = citizen("sub-consent", Some(&n), None);
        let granted: Vec<String> = vec!["birthdate".into(), "name".into()];
        d.record_consent_answer(&answer("portal", &granted, true))
            .await
            .unwrap();
        let question = |since| asked("who", "portal", since);
        let sorted = |p: Preparation| {
            let mut claims = p.consented.expect("asked, so answered");
            claims.sort();
            (p.account, claims)
        };
        // A citizen with no record yet: the policy acts after consent; the consents are read.
        let (first, claims) = sorted(d.prepare(&portal, &c, Some(question(0))).await.unwrap());
        assert!(matches!(first, Prepared::NeedsRelease { .. }), "{name}");
        assert_eq!(claims, granted, "{name}");
        // Linked: the account and the consents, as consented_claims answers alone.
        let (local, _) = account(d.resolve(&portal, &c, &http).await.unwrap());
        let (linked, claims) = sorted(d.prepare(&portal, &c, Some(question(0))).await.unwrap());
        assert_eq!(
            linked,
            Prepared::Done(Resolution::Account {
                local_account_id: local,
                how: LinkSource::Existing
            }),
            "{name}"
        );
        assert_eq!(
            claims,
            d.consented_claims(asked("who", "portal", 0)).await.unwrap(),
            "{name}"
        );
        let (_, claims) = sorted(
            d.prepare(&portal, &c, Some(question(i64::MAX)))
                .await
                .unwrap(),
        );
        assert!(claims.is_empty(), "{name}: outside the window, none");
        let other_client = asked("who", "other", 0);
        let (_, claims) = sorted(d.prepare(&portal, &c, Some(other_client)).await.unwrap());
        assert!(claims.is_empty(), "{name}: another client's, none");
        let unasked = d.prepare(&portal, &c, None).await.unwrap();
        assert_eq!(unasked.consented, None, "{name}: not asked, not read");
        b.drop_database().await;
    }
}

#[tokio::test]
async fn the_consent_answer_is_recorded_with_the_account_it_releases() {
    let http = http_client();
    for b in backends().await {
        let name = b.name;
        let d = &b.dir;
        let claims: Vec<String> = vec!["birthdate".into(), "name".into()];
        let n = number("001085004512");
        let c = citizen("sub-answer", Some(&n), None);
        let portal = realm("portal", LinkPolicy::Provision);
        let Prepared::NeedsRelease { citizen_key } =
            d.prepare(&portal, &c, None).await.unwrap().account
        else {
            panic!("{name}: a new citizen's account waits for consent");
        };
        let release = |realm: RealmConfig, client| {
            let (citizen_key, claims, c, http) = (&citizen_key, &claims, &c, &http);
            async move {
                let answer = answer(client, claims, true);
                d.release_account(&realm, c, citizen_key, http, Some(&answer))
                    .await
                    .unwrap()
            }
        };
        // Provisioned: the account, its event and the answer, in one transaction.
        let (local, how) = account(release(portal.clone(), "portal").await);
        assert_eq!(how, LinkSource::Provision, "{name}");
        let mut got = d.consented_claims(asked("who", "portal", 0)).await.unwrap();
        got.sort();
        assert_eq!(got, claims, "{name}");
        assert_eq!(
            d.consent_decisions("portal").await.unwrap().len(),
            1,
            "{name}"
        );
        let events = d.events(Some(&citizen_key), 10).await.unwrap();
        assert!(
            events.iter().any(|e| e.action == "link_created"),
            "{name}: {events:?}"
        );
        // Released again (another node, the same moment): the account made first stands, and
        // this answer is on record too.
        let (again, how) = account(release(portal.clone(), "portal").await);
        assert_eq!((again, how), (local, LinkSource::Existing), "{name}");
        assert_eq!(
            d.consent_decisions("portal").await.unwrap().len(),
            2,
            "{name}"
        );
        // A lookup whose endpoint is down: the answer was recorded before the call, and stays.
        let dead = lookup_realm("http://127.0.0.1:9/lookup".into(), 300);
        assert!(
            matches!(
                release(dead, "health-portal").await,
                Resolution::LookupUnavailable(_)
            ),
            "{name}"
        );
        assert_eq!(
            d.consent_decisions("health-portal").await.unwrap().len(),
            1,
            "{name}"
        );
        // A `linked` realm: no account, the answer recorded all the same.
        let linked = realm("onestop", LinkPolicy::Linked);
        assert_eq!(
            release(linked, "onestop-portal").await,
            Resolution::NotLinked,
            "{name}"
        );
        assert_eq!(
            d.consent_decisions("onestop-portal").await.unwrap().len(),
            1,
            "{name}"
        );
        b.drop_database().await;
    }
}

#[tokio::test]
async fn a_citizen_provisioned_on_two_nodes_at_once_gets_one_account() {
    for b in backends().await {
        let name = b.name;
        let portal = realm("portal-race", LinkPolicy::Provision);
        let n = number("001085004512");
        let http = http_client();
        let subject = format!("race-{}", lienthong_protocol::secret::random_token(6));
        let c = citizen(&subject, Some(&n), None);
        let (one, two) = tokio::join!(
            b.dir.resolve(&portal, &c, &http),
            b.dir.resolve(&portal, &c, &http)
        );
        let (one, _) = account(one.unwrap());
        let (two, _) = account(two.unwrap());
        assert_eq!(one, two, "{name}: one account, whoever wins");
        let created: Vec<_> = b
            .dir
            .events(None, 100)
            .await
            .unwrap()
            .into_iter()
            .filter(|e| e.action == "link_created" && e.realm.as_deref() == Some("portal-race"))
            .collect();
        assert_eq!(created.len(), 1, "{name}: the loser wrote no event");
        assert_eq!(created[0].detail["local_account_id"], one.as_str());
        assert_eq!(created[0].detail["source"], "provision");
        b.drop_database().await;
    }
}

/// The pool does not ping a connection before every statement (that doubled a login's round
/// trips), but one left idle is checked first: a PostgreSQL restart, seen here as the server
/// ending every session, costs no citizen's request once the pause is over.
#[tokio::test]
async fn a_connection_the_server_ended_is_replaced_after_a_pause() {
    for b in backends().await {
        let d = &b.dir;
        d.consented_claims(asked("who", "portal", 0)).await.unwrap();
        if let Some(db) = &b.database {
            let mut admin = <sqlx::PgConnection as sqlx::Connection>::connect(&db.url)
                .await
                .unwrap();
            let ended: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE datname = $1 AND pid <> pg_backend_pid()) t",
            )
            .bind(db.name())
            .fetch_one(&mut admin)
            .await
            .unwrap();
            assert!(ended >= 1, "the directory's connection was ended");
            sqlx::Connection::close(admin).await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(1200)).await;
        d.consented_claims(asked("who", "portal", 0))
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", b.name));
        b.drop_database().await;
    }
}
