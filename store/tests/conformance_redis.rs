//! The shared backend conformance suite against a real Redis (one
//! `redis-server` per test, a fresh key prefix per case), plus what only a
//! networked backend must show: persistence across a Redis restart, and
//! riding out an outage without being rebuilt.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use switchboard_proto::{ServerRecord, SessionType};
use switchboard_store::redis::{RedisBackend, RedisConfig};
use switchboard_store::{
    ApiClientRecord, AssignOutcome, Backend, BackendError, CloseOutcome, SigningKeyRecord, conformance,
};
use switchboard_store::{ApiRegistry, Reachable, Servers, Sessions};
use switchboard_testkit::RedisServer;

/// Upper bound for waiting on a recovering Redis.
const RECOVERY: Duration = Duration::from_secs(30);

async fn connect(redis: &RedisServer, prefix: &str) -> RedisBackend {
    RedisBackend::connect(RedisConfig { url: redis.url(), key_prefix: prefix.to_owned() }).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_passes_conformance() {
    let redis = RedisServer::start();
    let case = AtomicUsize::new(0);
    conformance::run_all(|| {
        let prefix = format!("case{}:", case.fetch_add(1, Ordering::Relaxed));
        let redis = &redis;
        async move { Arc::new(connect(redis, &prefix).await) as Arc<dyn Backend> }
    })
    .await;
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
