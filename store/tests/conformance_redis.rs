//! The shared backend conformance suite against a real Redis (one
//! `redis-server` per test, a fresh key prefix per case), through Sentinel
//! and on a Redis Cluster, plus what only a networked backend must show:
//! persistence across a Redis restart, riding out an outage without being
//! rebuilt, following a Sentinel failover, and waiting for replicas.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use switchboard_proto::{ServerRecord, SessionType};
use switchboard_store::redis::{RedisBackend, RedisConfig};
use switchboard_store::{
    ApiClientRecord, AssignOutcome, Backend, BackendError, CloseOutcome, SigningKeyRecord, conformance,
};
use switchboard_store::{ApiRegistry, Reachable, Servers, Sessions};
use switchboard_testkit::{RedisCluster, RedisServer, SentinelGroup};

/// Upper bound for waiting on a recovering Redis.
const RECOVERY: Duration = Duration::from_secs(30);

async fn connect(redis: &RedisServer, prefix: &str) -> RedisBackend {
    connect_url(&redis.url(), prefix).await
}

async fn connect_url(url: &str, prefix: &str) -> RedisBackend {
    RedisBackend::connect(RedisConfig { url: url.to_owned(), key_prefix: prefix.to_owned(), ..Default::default() })
        .await
        .unwrap()
}

/// Repeats `call` while it is `Unavailable`, for at most [`RECOVERY`]; how long that took.
async fn until_available<T, F, Fut>(mut call: F) -> (T, Duration)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, BackendError>>,
{
    let started = tokio::time::Instant::now();
    loop {
        match call().await {
            Ok(value) => return (value, started.elapsed()),
            Err(BackendError::Unavailable(_)) if started.elapsed() < RECOVERY => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(error) => panic!("not available again within {RECOVERY:?}: {error}"),
        }
    }
}

/// The conformance suite against the Redis at `url`, a fresh key prefix per case.
async fn conformance_at(url: &str) {
    let case = AtomicUsize::new(0);
    conformance::run_all(|| {
        let prefix = format!("case{}:", case.fetch_add(1, Ordering::Relaxed));
        async move { Arc::new(connect_url(url, &prefix).await) as Arc<dyn Backend> }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_passes_conformance() {
    let redis = RedisServer::start();
    conformance_at(&redis.url()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_through_sentinel_passes_conformance() {
    let group = SentinelGroup::start(1, 3);
    conformance_at(&group.url()).await;
}

/// Prefixes without a hash tag: the backend adds one, so every script's keys share a slot.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_cluster_passes_conformance() {
    let cluster = RedisCluster::start(6, 1);
    conformance_at(&cluster.url()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_backend_follows_a_sentinel_failover_and_keeps_what_replicas_acknowledged() {
    let mut group = SentinelGroup::start(2, 3);
    let backend = connect_url(&group.url(), "sb:").await;
    // Must-not-lose writes return once a replica has them (WAIT), so a failover right after keeps them.
    let client = ApiClientRecord { client_id: "c1".into(), client_name: "one".into(), ..Default::default() };
    backend.insert_api_client(client).await.unwrap();
    backend.upsert_server_report(conformance::server("h1"), true, None).await.unwrap();
    backend.set_server_open("h1", false).await.unwrap();

    let old = group.kill_primary();
    let during = backend.get_api_client("c1").await;
    assert!(matches!(during, Err(BackendError::Unavailable(_))), "calls fail as Unavailable: {during:?}");
    let new = group.wait_promoted(old, RECOVERY).expect("the sentinels promote a replica");
    let (found, took) = until_available(|| backend.get_api_client("c1")).await;
    println!("sentinel failover: the backend answered from the new primary {took:?} after the kill's first error");
    assert_eq!(found.expect("the client survives the failover").client_name, "one");
    let h1 = backend.get_servers(&["h1".into()]).await.unwrap().remove(0);
    assert!(!h1.open, "the operator's flag survives the failover");
    let again = ApiClientRecord { client_id: "c2".into(), ..Default::default() };
    backend.insert_api_client(again).await.expect("writes go to the new primary");
    assert_eq!(switchboard_testkit::redis_ha::cli(new, &["HEXISTS", "sb:api-clients", "c2"]), "1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_backend_follows_a_cluster_failover_and_keeps_what_replicas_acknowledged() {
    let mut cluster = RedisCluster::start(6, 1);
    let backend = connect_url(&cluster.url(), "sb:").await;
    let client = ApiClientRecord { client_id: "c1".into(), client_name: "one".into(), ..Default::default() };
    backend.insert_api_client(client).await.unwrap();

    let old = cluster.primary_for("{sb:}").expect("a primary serves the prefix's slot");
    cluster.node(old).kill();
    let (found, took) = until_available(|| backend.get_api_client("c1")).await;
    println!("cluster failover: the backend answered again {took:?} after the kill");
    assert_eq!(found.expect("the client survives the failover").client_name, "one");
    let new = cluster.primary_for("{sb:}").expect("a replica was promoted");
    assert_ne!(new, old);
    // The promoted primary has no replica left: a must-not-lose write is refused, not silently at risk ...
    let c2 = || backend.insert_api_client(ApiClientRecord { client_id: "c2".into(), ..Default::default() });
    let refused = c2().await;
    assert!(matches!(&refused, Err(BackendError::Unavailable(why)) if why.contains("replicas")), "{refused:?}");
    // ... until the old primary is back, as its replica.
    cluster.node(old).restart();
    let deadline = tokio::time::Instant::now() + RECOVERY;
    loop {
        match c2().await {
            Ok(()) | Err(BackendError::AlreadyExists(_)) => break,
            Err(error) => assert!(tokio::time::Instant::now() < deadline, "still refused: {error}"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(switchboard_testkit::redis_ha::cli(new, &["HEXISTS", "{sb:}api-clients", "c2"]), "1");
}

#[tokio::test]
async fn a_must_not_lose_write_fails_when_no_replica_acknowledges_it() {
    let mut group = SentinelGroup::start(1, 1);
    let backend = connect_url(&group.url(), "sb:").await;
    let replica = group.servers[1].port();
    group.server(replica).kill();
    let client = ApiClientRecord { client_id: "c1".into(), ..Default::default() };
    let refused = backend.insert_api_client(client).await;
    assert!(
        matches!(&refused, Err(BackendError::Unavailable(why)) if why.contains("0 of 1 replicas")),
        "the caller is told the write may not survive: {refused:?}"
    );
    backend.list_api_clients().await.expect("reads and other writes go on");
}

#[tokio::test]
async fn durable_records_survive_a_redis_restart() {
    let mut redis = RedisServer::start_persistent();
    let backend = connect(&redis, "sb:").await;
    let client = ApiClientRecord { client_id: "c1".into(), client_name: "one".into(), ..Default::default() };
    backend.insert_api_client(client).await.unwrap();
    let key = SigningKeyRecord { kid: "k1".into(), algorithm: "EdDSA".into(), ..Default::default() };
    backend.put_signing_key(key).await.unwrap();
    backend.upsert_server_report(ServerRecord { id: "h1".into(), ..Default::default() }, true, None).await.unwrap();
    backend.set_server_open("h1", false).await.unwrap();
    backend.upsert_server_report(conformance::server("h2"), true, None).await.unwrap();
    backend.insert_session(conformance::session("s2", "alice", SessionType::Virtual), None).await.unwrap();
    assert!(matches!(backend.assign_session("s2", "h2").await.unwrap(), AssignOutcome::Assigned(_)));
    let draining = backend.close_server("h2", 5_000).await.unwrap();
    assert!(matches!(draining, CloseOutcome::Draining(_)), "{draining:?}");
    drop(backend);

    redis.kill();
    redis.restart();
    let backend = connect(&redis, "sb:").await;
    assert_eq!(backend.get_api_client("c1").await.unwrap().unwrap().client_name, "one", "api client survives");
    assert_eq!(backend.list_signing_keys().await.unwrap()[0].kid, "k1", "signing key survives");
    let h1 = backend.get_servers(&["h1".into()]).await.unwrap().remove(0);
    assert!(!h1.open, "the open flag survives");
    let report =
        backend.upsert_server_report(ServerRecord { id: "h1".into(), ..Default::default() }, true, None).await.unwrap();
    assert!(!report.open, "a new report keeps the stored flag");
    let h2 = backend.get_servers(&["h2".into()]).await.unwrap().remove(0);
    assert_eq!((h2.open, h2.drain_deadline_unix_ms), (false, 5_000), "a drain survives, with its deadline");
}

#[tokio::test]
async fn the_backend_rides_out_a_redis_outage() {
    let mut redis = RedisServer::start_persistent();
    let backend = connect(&redis, "sb:").await;
    backend.put_signing_key(SigningKeyRecord { kid: "k1".into(), ..Default::default() }).await.unwrap();

    redis.kill();
    let during = backend.list_signing_keys().await;
    assert!(matches!(during, Err(BackendError::Unavailable(_))), "calls fail as Unavailable: {during:?}");
    let ping = backend.ping().await;
    assert!(matches!(ping, Err(BackendError::Unavailable(_))), "health checks see the outage: {ping:?}");

    redis.restart();
    let deadline = tokio::time::Instant::now() + RECOVERY;
    let keys = loop {
        match backend.list_signing_keys().await {
            Ok(keys) => break keys,
            Err(BackendError::Unavailable(_)) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(error) => panic!("the backend did not recover: {error}"),
        }
    };
    assert_eq!(keys.len(), 1, "the same backend works again, data intact");
    backend.ping().await.expect("and health checks see it back");
}

#[tokio::test]
async fn the_event_stream_is_trimmed_to_its_retention_and_readers_told() {
    use switchboard_proto::EventRecord;
    use switchboard_store::Events;
    let redis = RedisServer::start();
    let backend = connect(&redis, "ev:").await;
    let client = redis::Client::open(redis.url()).unwrap();
    let mut raw = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("SET").arg("ev:events-retained").arg(10).query_async(&mut raw).await.unwrap();
    let mut ids = Vec::new();
    for n in 0..500 {
        let event = EventRecord { kind: "session.permissions".into(), detail: n.to_string(), ..Default::default() };
        ids.push(backend.append_event(event).await.unwrap());
    }
    let len: usize = redis::cmd("XLEN").arg("ev:events").query_async(&mut raw).await.unwrap();
    // Trimmed in batches of 100: between the retention and 100 more.
    assert!((10..=110).contains(&len), "the stream keeps about its retention: {len}");
    let page = backend.read_events("0-0", 1000).await.unwrap();
    assert!(page.truncated, "a reader from the start missed dropped events");
    assert_eq!(page.events.len(), len);
    assert_eq!(page.last_id, ids[499]);
    let recent = backend.read_events(&ids[490], 1000).await.unwrap();
    assert!(!recent.truncated, "a reader within the retained events missed nothing");
    assert_eq!(
        recent.events.iter().map(|e| e.detail.as_str()).collect::<Vec<_>>(),
        (491..500).map(|n| n.to_string()).collect::<Vec<_>>()
    );
}
