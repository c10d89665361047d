//! The Store conformance suite: one set of cases, run against every backend — the memory Store,
//! the Redis at 127.0.0.1:6379 (or `LIENTHONG_TEST_REDIS_URL`), a Redis on a Unix socket, and a
//! Redis Cluster of three masters, both started by this suite itself (the Cluster on free
//! loopback ports) and stopped afterwards (or the Cluster at `LIENTHONG_TEST_REDIS_CLUSTER_URL`,
//! seed nodes separated by commas).
//!
//! Where Redis is missing the Redis cases are skipped with a loud notice, except when
//! `CI=true`, where that fails the run.

mod common;

use std::sync::Arc;
use std::time::Duration;

use lienthong_broker::store::{Marker, Record, Records, Sealer, Store, Write, keys};
use lienthong_broker::{MemoryStore, store::RedisStore};
use lienthong_protocol::secret::random_token;

use common::redis::{self as redis_kit, Cluster, redis_url_or_skip};

/// Runs every case against `store`.
async fn conforms(store: Arc<dyn Store>) {
    values_expire_and_take_is_single_use(&*store).await;
    concurrent_consumers_race_for_one_code_and_exactly_one_wins(store.clone()).await;
    a_take_keeps_its_companions_on_only_if_it_takes(&*store).await;
    concurrent_set_adds_lose_nothing(store.clone()).await;
    counters_count_and_expire(store.clone()).await;
    touch_moves_the_expiry_without_rewriting(&*store).await;
    a_batch_does_each_write_as_alone(&*store).await;
    a_read_that_ends_a_batch_sees_every_write(&*store).await;
    records_of_an_unknown_version_read_as_absent(store.clone()).await;
    records_an_earlier_release_wrote_in_json_still_read(store.clone()).await;
    store.ping().await.unwrap();
}

fn fresh(prefix: &str) -> String {
    format!("lt:test:{prefix}:{{{}}}", random_token(12))
}

async fn values_expire_and_take_is_single_use(store: &dyn Store) {
    let k = fresh("value");
    store
        .put(&k, b"one".to_vec(), Duration::from_millis(300))
        .await
        .unwrap();
    assert_eq!(store.get(&k).await.unwrap(), Some(b"one".to_vec()));
    assert!(
        !store
            .put_new(&k, b"two".to_vec(), Duration::from_secs(5))
            .await
            .unwrap(),
        "put_new does not overwrite"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(store.get(&k).await.unwrap(), None, "expired");
    assert!(
        store
            .put_new(&k, b"three".to_vec(), Duration::from_secs(5))
            .await
            .unwrap()
    );
    assert_eq!(store.take(&k).await.unwrap(), Some(b"three".to_vec()));
    assert_eq!(store.take(&k).await.unwrap(), None, "taken once");
    store
        .put(&k, b"x".to_vec(), Duration::from_secs(5))
        .await
        .unwrap();
    store.delete(&k).await.unwrap();
    assert_eq!(store.get(&k).await.unwrap(), None);
}

async fn concurrent_consumers_race_for_one_code_and_exactly_one_wins(store: Arc<dyn Store>) {
    let code = random_token(32);
    let (key, marker) = (keys::code(&code), keys::code_spent(&code));
    store
        .put(&key, b"record".to_vec(), Duration::from_secs(30))
        .await
        .unwrap();
    let racers: Vec<_> = (0..16)
        .map(|i| {
            let (store, key, marker) = (store.clone(), key.clone(), marker.clone());
            tokio::spawn(async move {
                let left = spent(&marker, &format!("spent by {i}"), Duration::from_secs(30));
                store.take_leaving(&key, left).await.unwrap().map(|_| i)
            })
        })
        .collect();
    let mut winners = vec![];
    for r in racers {
        if let Some(i) = r.await.unwrap() {
            winners.push(i);
        }
    }
    assert_eq!(winners.len(), 1, "exactly one consumer wins: {winners:?}");
    assert_eq!(
        store.get(&marker).await.unwrap(),
        Some(format!("spent by {}", winners[0]).into_bytes()),
        "the marker is the winner's, and a loser left none of its own"
    );
    assert_eq!(store.get(&key).await.unwrap(), None);
}

/// A marker of `value` at `key`.
fn spent<'a>(key: &'a str, value: &str, ttl: Duration) -> Marker<'a> {
    Marker {
        key,
        value: value.as_bytes().to_vec(),
        ttl,
    }
}

/// `take_leaving_touching`: a code's tokens, written to live no longer than it, live on once
/// it is taken — and a take that finds nothing touches nothing.
async fn a_take_keeps_its_companions_on_only_if_it_takes(store: &dyn Store) {
    let code = random_token(32);
    let (key, marker) = (keys::code(&code), keys::code_spent(&code));
    let (a, b, c) = (fresh("companion"), fresh("companion"), fresh("companion"));
    let (short, long) = (Duration::from_millis(300), Duration::from_secs(30));
    for k in [&key, &a, &b, &c] {
        store.put(k, b"v".to_vec(), short).await.unwrap();
    }
    let keep = [(a.clone(), long), (b.clone(), long)];
    let taken = store
        .take_leaving_touching(&key, spent(&marker, "spent", long), &keep)
        .await
        .unwrap();
    assert_eq!(taken, Some(b"v".to_vec()));
    let again = store
        .take_leaving_touching(&key, spent(&marker, "again", long), &[(c.clone(), long)])
        .await
        .unwrap();
    assert_eq!(again, None, "taken once");
    assert_eq!(store.get(&marker).await.unwrap(), Some(b"spent".to_vec()));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(store.get(&a).await.unwrap(), Some(b"v".to_vec()), "kept on");
    assert_eq!(store.get(&b).await.unwrap(), Some(b"v".to_vec()), "kept on");
    assert_eq!(
        store.get(&c).await.unwrap(),
        None,
        "a take that found nothing kept nothing"
    );
}

async fn concurrent_set_adds_lose_nothing(store: Arc<dyn Store>) {
    let sid = random_token(16);
    let key = keys::session_clients(&sid);
    let adds: Vec<_> = (0..20)
        .map(|i| {
            let (store, key) = (store.clone(), key.clone());
            tokio::spawn(async move {
                store
                    .set_add(&key, &format!("client-{i:02}"), Duration::from_secs(30))
                    .await
                    .unwrap()
            })
        })
        .collect();
    for a in adds {
        a.await.unwrap();
    }
    let members = store.set_members(&key).await.unwrap();
    assert_eq!(members.len(), 20, "{members:?}");
    store.set_remove(&key, "client-03").await.unwrap();
    assert_eq!(store.set_members(&key).await.unwrap().len(), 19);
}

async fn counters_count_and_expire(store: Arc<dyn Store>) {
    let key = keys::counter("test", &random_token(8));
    let window = Duration::from_millis(400);
    let incs: Vec<_> = (0..10)
        .map(|_| {
            let (store, key) = (store.clone(), key.clone());
            tokio::spawn(async move { store.incr(&key, 1, window).await.unwrap().total })
        })
        .collect();
    let mut seen = vec![];
    for i in incs {
        seen.push(i.await.unwrap());
    }
    seen.sort();
    assert_eq!(
        seen,
        (1..=10).collect::<Vec<_>>(),
        "each increment counted once"
    );
    // A node adds several at once, and learns how long the window has left.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let counted = store.incr(&key, 5, window).await.unwrap();
    assert_eq!(counted.total, 15);
    assert!(
        counted.left > Duration::ZERO && counted.left <= Duration::from_millis(300),
        "the window started with the first count: {counted:?}"
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    let counted = store.incr(&key, 3, window).await.unwrap();
    assert_eq!(counted.total, 3, "the window expired");
    assert!(counted.left > Duration::from_millis(300) && counted.left <= window);
}

async fn touch_moves_the_expiry_without_rewriting(store: &dyn Store) {
    let k = fresh("touch");
    store
        .put(&k, b"v".to_vec(), Duration::from_millis(400))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(store.touch(&k, Duration::from_secs(5)).await.unwrap());
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        store.get(&k).await.unwrap(),
        Some(b"v".to_vec()),
        "alive past its first deadline"
    );
    assert!(
        !store
            .touch(&fresh("absent"), Duration::from_secs(5))
            .await
            .unwrap()
    );
}

/// Keys in several slots (as a token response's are), each write with its own effect and
/// expiry — a set's addition and removal in one batch too, and a deletion — all done once
/// `write_all` returns.
async fn a_batch_does_each_write_as_alone(store: &dyn Store) {
    let (value, set, touched, absent, deleted) = (
        fresh("batch-value"),
        fresh("batch-set"),
        fresh("batch-touched"),
        fresh("batch-absent"),
        fresh("batch-deleted"),
    );
    store
        .put(&deleted, b"doomed".to_vec(), Duration::from_secs(5))
        .await
        .unwrap();
    store
        .put(&touched, b"old".to_vec(), Duration::from_millis(400))
        .await
        .unwrap();
    store
        .set_add(&set, "first", Duration::from_millis(400))
        .await
        .unwrap();
    let ttl = Duration::from_secs(5);
    store
        .write_all(vec![
            Write::Put {
                key: value.clone(),
                value: b"one".to_vec(),
                ttl: Duration::from_millis(400),
            },
            Write::SetAdd {
                key: set.clone(),
                member: "second".into(),
                ttl,
            },
            Write::Delete {
                key: deleted.clone(),
            },
            Write::Touch {
                key: touched.clone(),
                ttl,
            },
            Write::Touch {
                key: absent.clone(),
                ttl,
            },
        ])
        .await
        .unwrap();
    assert_eq!(store.get(&value).await.unwrap(), Some(b"one".to_vec()));
    assert_eq!(store.get(&deleted).await.unwrap(), None);
    assert_eq!(store.set_members(&set).await.unwrap(), ["first", "second"]);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(store.get(&value).await.unwrap(), None, "its own expiry");
    assert_eq!(
        store.set_members(&set).await.unwrap(),
        ["first", "second"],
        "the set's expiry moved with the add"
    );
    assert_eq!(
        store.get(&touched).await.unwrap(),
        Some(b"old".to_vec()),
        "touched, not rewritten"
    );
    assert_eq!(
        store.get(&absent).await.unwrap(),
        None,
        "a touch creates nothing"
    );
    store.write_all(Vec::new()).await.unwrap();
}

#[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
struct V1 {
    citizen_id: String,
}
impl Record for V1 {
    const KIND: &'static str = "test";
    const VERSION: u8 = 1;
}
#[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
struct V2 {
    citizen_id: String,
}
impl Record for V2 {
    const KIND: &'static str = "test";
    const VERSION: u8 = 2;
}

#[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq, Clone)]
struct Carried {
    citizen_id: String,
    auth_time: u64,
}
impl Record for Carried {
    const KIND: &'static str = "test";
    const VERSION: u8 = 5;
    const JSON_VERSION: Option<u8> = Some(4);
}

/// A record as a release before postcard wrote it — JSON, sealed at its `JSON_VERSION` — still
/// reads; this release writes postcard (no field names) at `VERSION`, and reads JSON at no
/// other version.
async fn records_an_earlier_release_wrote_in_json_still_read(store: Arc<dyn Store>) {
    let records = Records::new(store.clone(), Sealer::generate());
    let (k, ttl) = (fresh("json-record"), Duration::from_secs(30));
    let v = Carried {
        citizen_id: "001085004512".into(),
        auth_time: 1_764_979_200,
    };
    let json = serde_json::to_vec(&v).unwrap();
    let earlier = records.sealer().seal(&k, 4, &json);
    store.put(&k, earlier, ttl).await.unwrap();
    assert_eq!(records.get::<Carried>(&k).await.unwrap(), Some(v.clone()));

    records.put(&k, &v, ttl).await.unwrap();
    let raw = store.get(&k).await.unwrap().unwrap();
    assert_eq!(raw[0], Carried::VERSION);
    let plain = records.sealer().open(&k, Carried::VERSION, &raw).unwrap();
    assert!(
        !plain.windows(9).any(|w| w == b"auth_time") && plain.len() < json.len() / 2,
        "postcard, without the names: {plain:?}"
    );
    assert_eq!(records.get::<Carried>(&k).await.unwrap(), Some(v));

    let json_at_current = records.sealer().seal(&k, Carried::VERSION, &json);
    store.put(&k, json_at_current, ttl).await.unwrap();
    assert_eq!(records.get::<Carried>(&k).await.unwrap(), None);
}

/// A read that ends a batch (a code's marker after its grant is written) sees the key as it is
/// once every write is done: absent, written before, or written by the batch itself.
async fn a_read_that_ends_a_batch_sees_every_write(store: &dyn Store) {
    let (marker, grant) = (fresh("then-marker"), fresh("then-grant"));
    let ttl = Duration::from_secs(5);
    let put = |key: &str, value: &[u8]| Write::Put {
        key: key.to_owned(),
        value: value.to_vec(),
        ttl,
    };
    let read = store
        .write_all_then_get(vec![put(&grant, b"one")], &marker)
        .await
        .unwrap();
    assert_eq!(read, None, "nothing there");
    assert_eq!(store.get(&grant).await.unwrap(), Some(b"one".to_vec()));
    store.put(&marker, b"spent".to_vec(), ttl).await.unwrap();
    let read = store
        .write_all_then_get(vec![put(&grant, b"two")], &marker)
        .await
        .unwrap();
    assert_eq!(read, Some(b"spent".to_vec()), "written before the batch");
    assert_eq!(store.get(&grant).await.unwrap(), Some(b"two".to_vec()));
    let read = store
        .write_all_then_get(
            vec![put(&grant, b"three"), put(&marker, b"revoked")],
            &marker,
        )
        .await
        .unwrap();
    assert_eq!(
        read,
        Some(b"revoked".to_vec()),
        "after the batch's own writes"
    );
    let read = store.write_all_then_get(Vec::new(), &marker).await.unwrap();
    assert_eq!(read, Some(b"revoked".to_vec()), "an empty batch reads too");
}

async fn records_of_an_unknown_version_read_as_absent(store: Arc<dyn Store>) {
    let records = Records::new(store.clone(), Sealer::generate());
    let k = fresh("record");
    let v = V1 {
        citizen_id: "001085004512".into(),
    };
    records.put(&k, &v, Duration::from_secs(30)).await.unwrap();
    let raw = store.get(&k).await.unwrap().unwrap();
    assert!(
        !raw.windows(12).any(|w| w == b"001085004512"),
        "personal data is sealed before it leaves the process"
    );
    assert_eq!(records.get::<V1>(&k).await.unwrap(), Some(v));
    assert_eq!(
        records.get::<V2>(&k).await.unwrap(),
        None,
        "another schema version reads as absent, not as an error"
    );
    store
        .put(&k, b"garbage".to_vec(), Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(records.get::<V1>(&k).await.unwrap(), None);
}

#[tokio::test]
async fn the_memory_store_conforms() {
    conforms(Arc::new(MemoryStore::new())).await;
}

#[tokio::test]
async fn the_redis_store_conforms() {
    let Some(url) = redis_url_or_skip().await else {
        return;
    };
    conforms(Arc::new(RedisStore::new(&[url]).unwrap())).await;
}

/// A node on the same host as its Redis reaches it over a Unix socket
/// (`redis+unix:///path?db=n`, operations.md), with the same behaviour.
#[tokio::test]
async fn the_redis_store_conforms_over_a_unix_socket() {
    let Some(server) = redis_kit::Server::start_on_socket_or_skip() else {
        return;
    };
    server.wait_ready().await;
    let url = format!("{}?db=2", server.url());
    assert!(url.starts_with("redis+unix:///"), "{url}");
    let store = Arc::new(RedisStore::new(&[url]).unwrap());
    conforms(store.clone()).await;
    // The URL's database is the one written.
    let key = fresh("socket");
    store
        .put(&key, b"here".to_vec(), Duration::from_secs(30))
        .await
        .unwrap();
    let in_db = async |db: u8| -> Option<Vec<u8>> {
        let client = redis::Client::open(format!("{}?db={db}", server.url())).unwrap();
        let mut c = client.get_multiplexed_async_connection().await.unwrap();
        redis::cmd("GET")
            .arg(&key)
            .query_async(&mut c)
            .await
            .unwrap()
    };
    assert_eq!(in_db(2).await.as_deref(), Some(&b"here"[..]));
    assert_eq!(in_db(0).await, None);
}

#[tokio::test]
async fn the_redis_cluster_store_conforms() {
    let Some(cluster) = Cluster::start_or_skip().await else {
        return;
    };
    conforms(Arc::new(RedisStore::new(&cluster.urls()).unwrap())).await;
}

#[tokio::test]
async fn a_store_whose_redis_is_down_says_unavailable_and_recovers_when_it_returns() {
    let Some(_) = redis_url_or_skip().await else {
        return;
    };
    let port = redis_kit::free_port();
    let store = RedisStore::new(&[format!("redis://127.0.0.1:{port}")]).unwrap();
    assert!(store.ping().await.is_err(), "nothing listens yet");
    let server = redis_kit::Server::start(port, false);
    server.wait_ready().await;
    let mut answered = false;
    for _ in 0..50 {
        if store.ping().await.is_ok() {
            answered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(answered, "the store connected once Redis was there");
}
