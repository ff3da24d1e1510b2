//! CreateQueue: bounded and ordered, exclusive claims, expiry claimed once.

use std::collections::HashSet;
use std::sync::Arc;

use switchboard_proto::{QueuedRequest, SessionType};

use crate::{Backend, QueuePosition, QueuePush};

/// Every queue check, each against a fresh backend from `make`.
pub(super) async fn run<F, Fut>(make: &F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Arc<dyn Backend>>,
{
    queue_is_bounded_and_ordered(make().await).await;
    queue_claims_are_exclusive(make().await).await;
    queue_expiry_is_claimed_once(make().await).await;
    queue_positions_and_placement_rate(make().await).await;
}

fn entry(session_id: &str, class_id: &str) -> QueuedRequest {
    QueuedRequest {
        session_id: session_id.to_owned(),
        class_id: class_id.to_owned(),
        requirements: "tag:gpu = 'a100'".to_owned(),
        r#type: SessionType::Virtual as i32,
        owner: "alice".to_owned(),
        ..Default::default()
    }
}

fn session_ids(entries: &[QueuedRequest]) -> Vec<&str> {
    entries.iter().map(|e| e.session_id.as_str()).collect()
}

async fn push(backend: &dyn Backend, session_id: &str, class_id: &str) -> QueuedRequest {
    match backend.queue_push(entry(session_id, class_id), 60_000, 10).await.unwrap() {
        QueuePush::Queued(stored) => stored,
        other => panic!("queue_push of {session_id} should queue it: {other:?}"),
    }
}

async fn queue_is_bounded_and_ordered(backend: Arc<dyn Backend>) {
    let a1 = push(&*backend, "a1", "A").await;
    assert!(a1.enqueued_unix_ms > 0, "the store stamps the enqueue time");
    assert_eq!(a1.deadline_unix_ms, a1.enqueued_unix_ms + 60_000, "deadline = enqueued + max wait");
    assert_eq!(a1.requirements, "tag:gpu = 'a100'", "the entry keeps its fields");
    assert_eq!((a1.r#type, a1.owner.as_str()), (SessionType::Virtual as i32, "alice"));
    let b1 = push(&*backend, "b1", "B").await;
    let a2 = push(&*backend, "a2", "A").await;
    assert!(a1.sequence < b1.sequence && b1.sequence < a2.sequence, "sequences grow");
    assert_eq!(
        backend.queue_push(entry("a1", "A"), 60_000, 10).await.unwrap(),
        QueuePush::AlreadyQueued,
        "a session is queued once"
    );
    assert_eq!(backend.queue_push(entry("c1", "C"), 60_000, 3).await.unwrap(), QueuePush::Full, "max_size bounds it");
    assert_eq!(backend.queue_len().await.unwrap(), 3);
    let depths = backend.queue_depths().await.unwrap();
    let summary: Vec<(&str, usize, i64)> =
        depths.iter().map(|d| (d.class_id.as_str(), d.entries, d.oldest_enqueued_unix_ms)).collect();
    assert_eq!(summary, [("A", 2, a1.enqueued_unix_ms), ("B", 1, b1.enqueued_unix_ms)], "depth and oldest per class");

    let heads = backend.queue_heads(1).await.unwrap();
    let heads: HashSet<&str> = session_ids(&heads).into_iter().collect();
    assert_eq!(heads, HashSet::from(["a1", "b1"]), "one head per class: the oldest");
    let two = backend.queue_heads(2).await.unwrap();
    let class_a: Vec<&str> = two.iter().filter(|e| e.class_id == "A").map(|e| e.session_id.as_str()).collect();
    assert_eq!(class_a, ["a1", "a2"], "FIFO within a class");

    assert!(backend.queue_remove("a1").await.unwrap(), "remove reports a removal");
    assert!(!backend.queue_remove("a1").await.unwrap(), "removing twice is not an error");
    let heads = backend.queue_heads(1).await.unwrap();
    assert!(session_ids(&heads).contains(&"a2"), "the next in line becomes the head");
    let oldest_a = backend.queue_depths().await.unwrap().into_iter().find(|d| d.class_id == "A").unwrap();
    assert_eq!((oldest_a.entries, oldest_a.oldest_enqueued_unix_ms), (1, a2.enqueued_unix_ms), "the next oldest");
    backend.queue_remove("a2").await.unwrap();
    backend.queue_remove("b1").await.unwrap();
    assert_eq!(backend.queue_len().await.unwrap(), 0);
    assert!(backend.queue_heads(5).await.unwrap().is_empty(), "emptied classes disappear");
    assert!(backend.queue_depths().await.unwrap().is_empty(), "no depth for an empty queue");
}

async fn queue_claims_are_exclusive(backend: Arc<dyn Backend>) {
    push(&*backend, "a1", "A").await;
    push(&*backend, "a2", "A").await;
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let backend = backend.clone();
            tokio::spawn(async move { backend.queue_claim("a1", &format!("claim-{i}"), 60_000).await.unwrap() })
        })
        .collect();
    let mut winners = Vec::new();
    for task in tasks {
        if let Some(claimed) = task.await.unwrap() {
            winners.push(claimed.claim_id);
        }
    }
    assert_eq!(winners.len(), 1, "exactly one of several concurrent claims wins: {winners:?}");
    let winner = winners.remove(0);
    let heads = backend.queue_heads(1).await.unwrap();
    assert_eq!(session_ids(&heads), ["a2"], "a claimed entry is skipped by heads (no head-of-line wait)");
    assert!(!backend.queue_release("a1", "someone-else").await.unwrap(), "only the holder releases");
    assert!(backend.queue_release("a1", &winner).await.unwrap(), "the holder releases");
    let heads = backend.queue_heads(1).await.unwrap();
    assert_eq!(session_ids(&heads), ["a1"], "a released entry keeps its place in line");

    // A lapsed claim may be taken over, and the old holder can no longer release it.
    let lapsed = backend.queue_claim("a1", "short", 0).await.unwrap();
    assert!(lapsed.is_some(), "an unclaimed entry can be claimed");
    let taken = backend.queue_claim("a1", "new", 60_000).await.unwrap().expect("a lapsed claim is taken over");
    assert_eq!(taken.claim_id, "new");
    assert!(!backend.queue_release("a1", "short").await.unwrap(), "a superseded claim cannot release");
    assert!(backend.queue_claim("missing", "x", 1000).await.unwrap().is_none(), "unknown ids claim nothing");
}

async fn queue_expiry_is_claimed_once(backend: Arc<dyn Backend>) {
    let QueuePush::Queued(stale) = backend.queue_push(entry("old", "A"), 0, 10).await.unwrap() else {
        panic!("queue_push should queue");
    };
    push(&*backend, "young", "A").await;
    assert!(stale.deadline_unix_ms <= stale.enqueued_unix_ms, "max wait 0 is due at once");
    let tasks: Vec<_> = (0..4)
        .map(|i| {
            let backend = backend.clone();
            tokio::spawn(async move { backend.queue_claim_expired(&format!("sweep-{i}"), 60_000, 10).await.unwrap() })
        })
        .collect();
    let mut claimed = Vec::new();
    for task in tasks {
        claimed.extend(task.await.unwrap());
    }
    assert_eq!(session_ids(&claimed), ["old"], "each expired entry is claimed by exactly one sweeper");
    assert!(backend.queue_claim("old", "other", 1000).await.unwrap().is_none(), "and stays claimed");
    assert!(backend.queue_remove("old").await.unwrap());
    assert_eq!(backend.queue_len().await.unwrap(), 1, "the entry within its deadline stays");
}

async fn queue_positions_and_placement_rate(backend: Arc<dyn Backend>) {
    for (id, class) in [("a1", "A"), ("b1", "B"), ("a2", "A"), ("a3", "A")] {
        push(&*backend, id, class).await;
    }
    backend.queue_claim("a1", "worker", 60_000).await.unwrap().expect("a1 is claimable");
    let ids = |ids: &[&str]| ids.iter().map(|id| (*id).to_owned()).collect::<Vec<String>>();
    let places = |positions: &[QueuePosition]| -> Vec<(String, String, usize, usize, usize)> {
        positions
            .iter()
            .map(|p| (p.session_id.clone(), p.class_id.clone(), p.position, p.class_entries, p.recent_placements))
            .collect()
    };
    let positions = backend.queue_positions(&ids(&["a3", "missing", "b1", "a2"])).await.unwrap();
    assert_eq!(
        places(&positions),
        [
            ("a3".to_owned(), "A".to_owned(), 3, 3, 0),
            ("b1".to_owned(), "B".to_owned(), 1, 1, 0),
            ("a2".to_owned(), "A".to_owned(), 2, 3, 0),
        ],
        "1-based place in its own class, a claimed entry ahead still counting; unknown ids left out; in asked order"
    );
    assert!(positions.iter().all(|p| p.recent_span_ms == 0 && p.estimated_wait_ms().is_none()), "no rate yet");
    assert!(backend.queue_positions(&[]).await.unwrap().is_empty(), "nothing asked, nothing answered");

    assert!(backend.queue_remove_placed("a1").await.unwrap(), "a placed entry is removed");
    assert!(!backend.queue_remove_placed("a1").await.unwrap(), "and only once");
    assert!(backend.queue_remove("a2").await.unwrap(), "a cancelled entry is removed, not counted as placed");
    let positions = backend.queue_positions(&ids(&["a3", "b1"])).await.unwrap();
    assert_eq!(
        places(&positions),
        [("a3".to_owned(), "A".to_owned(), 1, 1, 1), ("b1".to_owned(), "B".to_owned(), 1, 1, 0)],
        "the line moves up; only the placement counts towards its class's rate"
    );
    assert!(positions[0].recent_span_ms >= 0, "the span is measured since the placement");
    assert!(positions[0].estimated_wait_ms().is_some_and(|wait| wait > 0), "a placement gives a rate: an estimate");
    assert!(positions[1].estimated_wait_ms().is_none(), "another class's placements say nothing of B");

    for i in 0..40 {
        push(&*backend, &format!("c{i}"), "C").await;
        assert!(backend.queue_remove_placed(&format!("c{i}")).await.unwrap());
    }
    push(&*backend, "c-last", "C").await;
    let positions = backend.queue_positions(&ids(&["c-last"])).await.unwrap();
    assert_eq!(positions[0].recent_placements, crate::queue::PLACEMENT_RATE_SAMPLES, "the record is bounded");
    assert_eq!((positions[0].position, positions[0].class_entries), (1, 1), "a class record outlives its entries");
}
