//! Webhook delivery against a real HTTPS receiver (docs/saas.md, *Webhooks*): a receiver that fails, is
//! slow and then recovers gets every event of its types, in order, signed, exactly once answered 2xx,
//! with two replicas' deliverers running (one delivers at a time); a receiver that is down gets its events
//! as dead letters after the attempts; registration refuses what the SSRF guard refuses. On each backend:
//! the embedded store, and a real `redis-server`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use switchboard_common::Shutdown;
use switchboard_common::tls::DevCa;
use switchboard_proto::EventRecord;
use switchboard_session_store::webhooks::{self, Guard, RegisterError, WebhookSettings};
use switchboard_store::Backend;
use switchboard_store::embedded::EmbeddedBackend;

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Receipt {
    path: String,
    signature: String,
    event_id: String,
    body: Vec<u8>,
    answered: u16,
}

#[derive(Clone, Default)]
struct Receiver {
    receipts: Arc<Mutex<Vec<Receipt>>>,
    flaky_calls: Arc<AtomicUsize>,
}

/// `/flaky`: 500, 500, then slow (3 s, longer than the delivery timeout, then 500), then 200 for good.
/// `/down`: always 503.
async fn receive(
    State(receiver): State<Receiver>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> StatusCode {
    let path = uri.path().to_owned();
    let answer = if path == "/flaky" {
        match receiver.flaky_calls.fetch_add(1, Ordering::SeqCst) {
            0 | 1 => StatusCode::INTERNAL_SERVER_ERROR,
            2 => {
                tokio::time::sleep(Duration::from_secs(3)).await;
                StatusCode::INTERNAL_SERVER_ERROR
            }
            _ => StatusCode::OK,
        }
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    receiver.receipts.lock().unwrap().push(Receipt {
        path,
        signature: header("switchboard-signature"),
        event_id: header("switchboard-event-id"),
        body: body.to_vec(),
        answered: answer.as_u16(),
    });
    answer
}

/// The HTTPS receiver on 127.0.0.1 (its certificate names `localhost`); its port.
async fn start_receiver(ca: &DevCa, receiver: Receiver) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let config = switchboard_common::tls::https_server_config(&ca.server).unwrap();
    let app = axum::Router::new().route("/flaky", post(receive)).route("/down", post(receive)).with_state(receiver);
    tokio::spawn(async move {
        axum_server::from_tcp_rustls(listener, axum_server::tls_rustls::RustlsConfig::from_config(config))
            .unwrap()
            .serve(app.into_make_service())
            .await
            .unwrap();
    });
    port
}

/// Checks a `Switchboard-Signature` header against `body` the way a receiver does.
fn verifies(secret: &str, header: &str, body: &[u8]) -> bool {
    let Some((t, v1)) = header.strip_prefix("t=").and_then(|rest| rest.split_once(",v1=")) else { return false };
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    let expected: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
    expected == v1
}

async fn wait_until(what: &str, check: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !check() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_on_the_embedded_store() {
    deliveries_are_signed_retried_dead_lettered_and_guarded(Arc::new(EmbeddedBackend::in_memory().unwrap())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_on_redis() {
    let redis = switchboard_testkit::RedisServer::start();
    let config = switchboard_store::redis::RedisConfig {
        url: redis.url(),
        key_prefix: "webhooks:".into(),
        ..Default::default()
    };
    let backend = switchboard_store::redis::RedisBackend::connect(config).await.unwrap();
    deliveries_are_signed_retried_dead_lettered_and_guarded(Arc::new(backend)).await;
}

async fn deliveries_are_signed_retried_dead_lettered_and_guarded(backend: Arc<dyn Backend>) {
    switchboard_common::tls::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let ca = DevCa::load_or_create(dir.path(), &[]).unwrap();
    let receiver = Receiver::default();
    let port = start_receiver(&ca, receiver.clone()).await;
    let trusting = || WebhookSettings { webhook_ca_file: Some(ca.ca_path.clone()), ..WebhookSettings::default() };

    // SSRF: without the receiver's network allowed, localhost is refused at registration.
    let strict = Guard::new(trusting()).unwrap();
    let url = |path: &str| format!("https://localhost:{port}{path}");
    match webhooks::register(&*backend, &strict, &url("/flaky"), vec![]).await {
        Err(RegisterError::Invalid(text)) => assert!(text.contains("refused") && text.contains("loopback"), "{text}"),
        other => panic!("a loopback receiver must be refused: {other:?}"),
    }
    match webhooks::register(&*backend, &strict, &format!("http://localhost:{port}/flaky"), vec![]).await {
        Err(RegisterError::Invalid(text)) => assert_eq!(text, "Url must be https"),
        other => panic!("http must be refused: {other:?}"),
    }

    let settings = WebhookSettings {
        webhook_allowed_networks: vec!["127.0.0.0/8".into(), "::1/128".into()],
        webhook_timeout_seconds: 1,
        webhook_max_attempts: 5,
        webhook_first_retry_ms: 100,
        ..trusting()
    };
    let guard = Arc::new(Guard::new(settings).unwrap());
    // Before registration: not delivered (deliveries start after it).
    backend.append_event(EventRecord { kind: "session.state".into(), ..Default::default() }).await.unwrap();
    let flaky = webhooks::register(&*backend, &guard, &url("/flaky"), vec!["session.state".into()]).await.unwrap();
    let down = webhooks::register(&*backend, &guard, &url("/down"), vec![]).await.unwrap();
    assert!(flaky.secret.starts_with("whsec_") && flaky.secret != down.secret);
    let (mut ids, mut last) = (Vec::new(), String::new());
    for n in 0..3 {
        let event = EventRecord { kind: "session.state".into(), session_id: format!("s{n}"), ..Default::default() };
        ids.push(backend.append_event(event).await.unwrap());
        let other =
            EventRecord { kind: "session.permissions".into(), session_id: format!("s{n}"), ..Default::default() };
        last = backend.append_event(other).await.unwrap();
    }

    // Two replicas' deliverers; the lease lets one deliver at a time.
    let shutdown = Shutdown::new();
    for replica in ["replica-a", "replica-b"] {
        tokio::spawn(webhooks::run(backend.clone(), guard.clone(), replica.into(), shutdown.clone()));
    }

    // While the receiver fails, the subscription says so.
    let failing = Arc::new(Mutex::new(None::<(u32, String)>));
    let watcher = {
        let (backend, failing, id) = (backend.clone(), failing.clone(), flaky.id.clone());
        tokio::spawn(async move {
            loop {
                let webhooks = backend.list_webhooks().await.unwrap();
                if let Some(webhook) = webhooks.iter().find(|w| w.id == id && w.attempts > 0) {
                    *failing.lock().unwrap() = Some((webhook.attempts, webhook.last_error.clone()));
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };

    let delivered = |receipts: &[Receipt]| receipts.iter().filter(|r| r.path == "/flaky" && r.answered == 200).count();
    wait_until("the flaky receiver to get its 3 events", || delivered(&receiver.receipts.lock().unwrap()) >= 3).await;
    watcher.await.unwrap();
    let (attempts, error) = failing.lock().unwrap().clone().unwrap();
    assert!(attempts >= 1 && error.starts_with("HTTP 500"), "the failure was visible: {attempts} {error}");

    let receipts = receiver.receipts.lock().unwrap().clone();
    let flaky_receipts: Vec<&Receipt> = receipts.iter().filter(|r| r.path == "/flaky").collect();
    for receipt in &flaky_receipts {
        assert!(verifies(&flaky.secret, &receipt.signature, &receipt.body), "signed: {receipt:?}");
        let body: serde_json::Value = serde_json::from_slice(&receipt.body).unwrap();
        assert_eq!(body["Id"], receipt.event_id.as_str(), "the Id header is the event's");
        assert_eq!(body["Type"], "session.state", "only the subscribed types");
    }
    let accepted: Vec<&str> =
        flaky_receipts.iter().filter(|r| r.answered == 200).map(|r| r.event_id.as_str()).collect();
    assert_eq!(accepted, ids.iter().map(String::as_str).collect::<Vec<_>>(), "each event once, in order");
    assert_eq!(flaky_receipts[0].event_id, ids[0], "the first event was retried until accepted");
    let position = |check: &dyn Fn(&&Receipt) -> bool| flaky_receipts.iter().position(check).unwrap();
    let first_accepted = position(&|r| r.event_id == ids[0] && r.answered == 200);
    // 500, 500 (recorded), then the slow one (recorded when it ends, after the retry that was accepted).
    assert!(first_accepted >= 2, "the first event was retried before it was accepted");
    assert!(receiver.flaky_calls.load(Ordering::SeqCst) >= 6, "3 failed attempts, 3 accepted");
    assert!(position(&|r| r.event_id == ids[1]) > first_accepted, "no later event before the first was accepted");

    // The down receiver's first event became a dead letter after its attempts.
    wait_until("a dead letter", || {
        futures::executor::block_on(backend.dead_letters(&down.id)).map(|letters| !letters.is_empty()).unwrap_or(false)
    })
    .await;
    let letters = backend.dead_letters(&down.id).await.unwrap();
    let letter = letters.last().unwrap();
    assert_eq!(letter.attempts, 5);
    assert!(letter.last_error.starts_with("HTTP 503"), "{letter:?}");
    let all = receiver.receipts.lock().unwrap().clone();
    let first_down = all.iter().find(|r| r.path == "/down").unwrap();
    assert_eq!(letter.event.as_ref().unwrap().id, first_down.event_id, "the event given up on");
    assert!(verifies(&down.secret, &first_down.signature, &first_down.body), "signed with its own secret");
    assert!(!verifies(&flaky.secret, &first_down.signature, &first_down.body), "secrets differ");

    let webhook = backend.list_webhooks().await.unwrap().into_iter().find(|w| w.id == flaky.id).unwrap();
    // Past the last event, although it is of a type not subscribed to.
    assert_eq!((webhook.delivered, webhook.attempts, webhook.cursor.as_str()), (3, 0, last.as_str()));
    assert!(webhook.last_error.is_empty(), "a success clears the error");

    // Unregistered: no further deliveries, and its record stays gone.
    backend.remove_webhook(&flaky.id).await.unwrap();
    let before = receiver.receipts.lock().unwrap().iter().filter(|r| r.path == "/flaky").count();
    backend.append_event(EventRecord { kind: "session.state".into(), ..Default::default() }).await.unwrap();
    tokio::time::sleep(webhooks::TICK * 3).await;
    let after = receiver.receipts.lock().unwrap().iter().filter(|r| r.path == "/flaky").count();
    assert_eq!(before, after, "nothing goes to an unregistered webhook");
    assert!(backend.list_webhooks().await.unwrap().iter().all(|w| w.id != flaky.id));
    shutdown.cancel();
}
