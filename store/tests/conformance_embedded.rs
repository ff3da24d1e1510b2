//! The shared backend conformance suite against the embedded backend, in
//! memory and on disk, plus what only a durable backend promises: restarts.

use std::sync::Arc;

use switchboard_proto::{ServerRecord, SessionType};
use switchboard_store::embedded::EmbeddedBackend;
use switchboard_store::{ApiClientRecord, AssignOutcome, Backend, CloseOutcome, SigningKeyRecord};
use switchboard_store::{ApiRegistry, DnsMappings, Idempotency, IdempotencyClaim, Servers, Sessions};
use switchboard_store::{conformance, idempotency};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn in_memory_passes_conformance() {
    conformance::run_all(|| async { Arc::new(EmbeddedBackend::in_memory().unwrap()) as Arc<dyn Backend> }).await;
}

/// The wrapper the services open their backend through delegates every call unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn observed_passes_conformance() {
    conformance::run_all(|| async {
        switchboard_store::Observed::wrap(Arc::new(EmbeddedBackend::in_memory().unwrap()), "embedded")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn on_disk_passes_conformance() {
    let root = tempfile::tempdir().unwrap();
    let counter = std::sync::atomic::AtomicUsize::new(0);
    let root_path = root.path().to_owned();
    conformance::run_all(|| {
        let dir = root_path.join(counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed).to_string());
        async move { Arc::new(EmbeddedBackend::open(&dir).unwrap()) as Arc<dyn Backend> }
    })
    .await;
}

#[tokio::test]
async fn durable_records_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let backend = EmbeddedBackend::open(dir.path()).unwrap();
        let client = ApiClientRecord { client_id: "c1".into(), client_name: "one".into(), ..Default::default() };
        backend.insert_api_client(client).await.unwrap();
        let key = SigningKeyRecord { kid: "k1".into(), algorithm: "EdDSA".into(), ..Default::default() };
        backend.put_signing_key(key).await.unwrap();
        backend.upsert_server_report(ServerRecord { id: "h1".into(), ..Default::default() }, true, None).await.unwrap();
        backend.set_server_open("h1", false).await.unwrap();
        backend.insert_session(conformance::session("s1", "alice", Default::default()), None).await.unwrap();
        backend.upsert_server_report(conformance::server("h2"), true, None).await.unwrap();
        backend.insert_session(conformance::session("s2", "alice", SessionType::Virtual), None).await.unwrap();
        assert!(matches!(backend.assign_session("s2", "h2").await.unwrap(), AssignOutcome::Assigned(_)));
        let draining = backend.close_server("h2", 5_000).await.unwrap();
        assert!(matches!(draining, CloseOutcome::Draining(_)), "{draining:?}");
        let mapping = conformance::dns::mapping("Ip", "10.0.0.1", "h1.internal", "");
        backend.replace_dns_mappings(vec![mapping]).await.unwrap();
    }
    let backend = EmbeddedBackend::open(dir.path()).unwrap();
    assert_eq!(backend.get_api_client("c1").await.unwrap().unwrap().client_name, "one", "api client survives");
    assert_eq!(backend.list_signing_keys().await.unwrap()[0].kid, "k1", "signing key survives");
    let mappings = backend.list_dns_mappings().await.unwrap();
    assert_eq!(mappings[0].internal_dns_name, "h1.internal", "dns mappings survive");
    assert!(backend.get_servers(&["h1".into()]).await.unwrap().is_empty(), "servers are rebuilt from agents");
    assert!(backend.get_sessions(&["s1".into()]).await.unwrap().is_empty(), "sessions are rebuilt from agents");
    let report =
        backend.upsert_server_report(ServerRecord { id: "h1".into(), ..Default::default() }, true, None).await.unwrap();
    assert!(!report.open, "the stored open flag applies when the agent reports again");
    let h2 =
        backend.upsert_server_report(ServerRecord { id: "h2".into(), ..Default::default() }, true, None).await.unwrap();
    assert_eq!((h2.open, h2.drain_deadline_unix_ms), (false, 5_000), "a drain survives, with its deadline");
}

/// A completed idempotency key answers retries after a restart too (keys live for a day), and an
/// in-progress claim still holds the key.
#[tokio::test]
async fn idempotency_records_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let day = std::time::Duration::from_secs(86_400);
    let (done, running) = (idempotency::scope_key("c1", "done"), idempotency::scope_key("c1", "running"));
    {
        let backend = EmbeddedBackend::open(dir.path()).unwrap();
        assert_eq!(backend.claim_idempotency_key(&done, b"body", day).await.unwrap(), IdempotencyClaim::Claimed);
        assert!(backend.complete_idempotency_key(&done, b"answer".to_vec(), day).await.unwrap());
        assert_eq!(backend.claim_idempotency_key(&running, b"body", day).await.unwrap(), IdempotencyClaim::Claimed);
    }
    let backend = EmbeddedBackend::open(dir.path()).unwrap();
    assert_eq!(
        backend.claim_idempotency_key(&done, b"body", day).await.unwrap(),
        IdempotencyClaim::Done(b"answer".to_vec()),
        "the stored answer survives"
    );
    assert_eq!(
        backend.claim_idempotency_key(&done, b"other", day).await.unwrap(),
        IdempotencyClaim::Mismatch,
        "the body it was used with survives"
    );
    assert_eq!(
        backend.claim_idempotency_key(&running, b"body", day).await.unwrap(),
        IdempotencyClaim::InProgress,
        "a claim survives until it expires"
    );
}
