//! Leases and queue deadlines by the process's clock (`switchboard_common::time`), moved with tokio's
//! paused time instead of real sleeps.

use std::time::Duration;

use switchboard_proto::{QueuedRequest, SessionType};
use switchboard_store::embedded::EmbeddedBackend;
use switchboard_store::{CreateQueue, QueuePush, StreamOwnership};

#[tokio::test(start_paused = true)]
async fn an_agent_lease_lapses_when_its_time_passes() {
    switchboard_common::time::follow_tokio_clock();
    let backend = EmbeddedBackend::in_memory().unwrap();
    let claimed = backend.claim_agent("h1", "r1", "http://r1:1", 30_000).await.unwrap();
    tokio::time::advance(Duration::from_secs(29)).await;
    assert_eq!(backend.agent_owner("h1").await.unwrap().map(|o| o.epoch), Some(claimed.epoch), "within the lease");
    backend.renew_agent("h1", claimed.epoch, 30_000).await.unwrap();
    tokio::time::advance(Duration::from_secs(29)).await;
    assert!(backend.agent_owner("h1").await.unwrap().is_some(), "a renewal extends it from the renewal");
    tokio::time::advance(Duration::from_secs(2)).await;
    assert_eq!(backend.agent_owner("h1").await.unwrap(), None, "lapsed 30 s after the renewal");
}

#[tokio::test(start_paused = true)]
async fn a_queued_request_expires_at_its_deadline_and_a_claim_at_its_lease() {
    switchboard_common::time::follow_tokio_clock();
    let backend = EmbeddedBackend::in_memory().unwrap();
    let entry = QueuedRequest {
        session_id: "q1".into(),
        class_id: "c".into(),
        r#type: SessionType::Virtual as i32,
        owner: "alice".into(),
        ..Default::default()
    };
    assert!(matches!(backend.queue_push(entry, 60_000, 10).await.unwrap(), QueuePush::Queued(_)));
    tokio::time::advance(Duration::from_secs(59)).await;
    assert!(backend.queue_claim_expired("w1", 5_000, 10).await.unwrap().is_empty(), "not yet expired");
    tokio::time::advance(Duration::from_secs(2)).await;
    let expired = backend.queue_claim_expired("w1", 5_000, 10).await.unwrap();
    assert_eq!(expired.len(), 1, "expired past its deadline");
    assert!(backend.queue_claim_expired("w2", 5_000, 10).await.unwrap().is_empty(), "held by w1's claim");
    tokio::time::advance(Duration::from_secs(6)).await;
    assert_eq!(backend.queue_claim_expired("w2", 5_000, 10).await.unwrap().len(), 1, "w1's claim lapsed");
}
