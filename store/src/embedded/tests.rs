//! What only the embedded backend's file promises: the create-sessions queue
//! and the used single-use token ids survive a restart (Redis persistence is
//! Redis's job; the shared behaviour is in the conformance suite).

use std::path::Path;

use switchboard_common::time::now_ms;
use switchboard_proto::{QueuedRequest, SessionRecord, SessionState, SessionType};

use super::{EmbeddedBackend, USED_TOKENS_PRUNE_MIN};
use crate::Servers;
use crate::conformance::{server, session};
use crate::{AssignOutcome, QueuePush};
use crate::{CreateQueue, Secrets, Sessions};

fn entry(session_id: &str, class_id: &str) -> QueuedRequest {
    QueuedRequest {
        session_id: session_id.to_owned(),
        class_id: class_id.to_owned(),
        requirements: format!("tag:class = '{class_id}'"),
        r#type: SessionType::Virtual as i32,
        owner: "alice".to_owned(),
        ..Default::default()
    }
}

/// Inserts a CREATING / SESSION_PLACING session and queues it.
async fn queue(backend: &EmbeddedBackend, session_id: &str, class_id: &str, max_size: usize) -> QueuedRequest {
    backend.insert_session(session(session_id, "alice", SessionType::Virtual), None).await.unwrap();
    match backend.queue_push(entry(session_id, class_id), 60_000, max_size).await.unwrap() {
        QueuePush::Queued(stored) => stored,
        other => panic!("queue_push of {session_id} should queue it: {other:?}"),
    }
}

async fn record(backend: &EmbeddedBackend, id: &str) -> Option<SessionRecord> {
    backend.get_sessions(&[id.to_owned()]).await.unwrap().pop()
}

/// Session ids of the heads of `class_id`, in line order.
async fn line(backend: &EmbeddedBackend, class_id: &str) -> Vec<String> {
    let mut heads: Vec<QueuedRequest> =
        backend.queue_heads(100).await.unwrap().into_iter().filter(|e| e.class_id == class_id).collect();
    heads.sort_by_key(|e| e.sequence);
    heads.into_iter().map(|e| e.session_id).collect()
}

fn reopen(dir: &Path) -> EmbeddedBackend {
    EmbeddedBackend::open(dir).unwrap()
}

#[tokio::test]
async fn queued_requests_survive_a_restart_in_line_order() {
    let dir = tempfile::tempdir().unwrap();
    let (a1, a2, b1) = {
        let backend = reopen(dir.path());
        let a1 = queue(&backend, "a1", "A", 4).await;
        let b1 = queue(&backend, "b1", "B", 4).await;
        let a2 = queue(&backend, "a2", "A", 4).await;
        queue(&backend, "a3", "A", 4).await;
        // The driver writes the reason after queueing: written through.
        let mut waiting = record(&backend, "a1").await.unwrap();
        waiting.state_reason = "queued: no server matches".into();
        backend.update_session(waiting.clone(), waiting.revision, None).await.unwrap();
        // Claims are leases of live workers: not kept.
        assert!(backend.queue_claim("a2", "worker-1", 600_000).await.unwrap().is_some());
        assert!(backend.queue_remove("a3").await.unwrap());
        (a1, a2, b1)
    };
    let backend = reopen(dir.path());
    assert_eq!(backend.queue_len().await.unwrap(), 3, "every entry still queued is back, the removed one is not");
    assert_eq!(line(&backend, "A").await, ["a1", "a2"], "FIFO within a class holds after a restart");
    assert_eq!(line(&backend, "B").await, ["b1"]);
    let heads = backend.queue_heads(100).await.unwrap();
    let restored_a1 = heads.iter().find(|e| e.session_id == "a1").unwrap();
    assert_eq!(restored_a1, &a1, "the entry comes back as stored (sequence, times, requirements)");
    let restored_a2 = heads.iter().find(|e| e.session_id == "a2").unwrap();
    assert!(restored_a2.claim_id.is_empty(), "claims do not survive a restart");
    assert_eq!((restored_a2.sequence, restored_a2.deadline_unix_ms), (a2.sequence, a2.deadline_unix_ms));
    assert!(heads.iter().any(|e| e.session_id == "b1" && e.sequence == b1.sequence));

    for id in ["a1", "a2", "b1"] {
        let session = record(&backend, id).await.unwrap_or_else(|| panic!("queued session {id} is restored"));
        assert_eq!(session.state(), SessionState::Creating, "{id} is still waiting");
        assert_eq!(session.substate, "SESSION_PLACING");
        assert!(session.server_id.is_empty());
    }
    assert_eq!(record(&backend, "a1").await.unwrap().state_reason, "queued: no server matches");
    assert_eq!(record(&backend, "a1").await.unwrap().revision, 2, "the latest revision is restored");
    let listed: Vec<String> = backend.list_sessions("", 100).await.unwrap().into_iter().map(|s| s.id).collect();
    assert_eq!(listed, ["a1", "a2", "b1"], "a session whose entry left the queue is not restored");

    assert_eq!(backend.queue_push(entry("c1", "C"), 60_000, 3).await.unwrap(), QueuePush::Full, "max size holds");
    assert_eq!(backend.queue_push(entry("a1", "A"), 60_000, 10).await.unwrap(), QueuePush::AlreadyQueued);
    let c1 = queue(&backend, "c1", "C", 4).await;
    assert!(c1.sequence > a2.sequence + 1, "sequences keep growing, past the removed a3's too");
    let a4 = queue(&backend, "a4", "A", 5).await;
    assert!(a4.sequence > c1.sequence);
    assert_eq!(line(&backend, "A").await, ["a1", "a2", "a4"], "new entries join the end of the line");
    assert!(backend.queue_claim("a2", "worker-2", 60_000).await.unwrap().is_some(), "a restored entry is claimable");
}

#[tokio::test]
async fn queue_sequences_grow_across_restarts_when_emptied() {
    let dir = tempfile::tempdir().unwrap();
    let first = {
        let backend = reopen(dir.path());
        let first = queue(&backend, "s1", "A", 10).await;
        assert!(backend.queue_remove("s1").await.unwrap());
        first
    };
    let backend = reopen(dir.path());
    assert_eq!(backend.queue_len().await.unwrap(), 0);
    let second = queue(&backend, "s2", "A", 10).await;
    assert!(second.sequence > first.sequence, "{} must exceed {}", second.sequence, first.sequence);
}

#[tokio::test]
async fn sessions_that_left_the_queue_stay_gone_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let backend = reopen(dir.path());
        backend.upsert_server_report(server("h1"), true, None).await.unwrap();
        for id in ["placed", "expired", "cancelled", "in-flight", "waiting"] {
            queue(&backend, id, "A", 10).await;
        }
        // Claimed and placed, then dequeued (the queue worker's path).
        assert!(backend.queue_claim("placed", "w", 60_000).await.unwrap().is_some());
        assert!(matches!(backend.assign_session("placed", "h1").await.unwrap(), AssignOutcome::Assigned(_)));
        assert!(backend.queue_remove("placed").await.unwrap());
        // Timed out: claimed by the sweep, failed, dequeued.
        let QueuePush::Queued(_) = backend.queue_push(entry("late", "A"), 0, 10).await.unwrap() else {
            panic!("queue_push should queue");
        };
        assert!(backend.queue_remove("expired").await.unwrap());
        let claimed = backend.queue_claim_expired("sweep", 60_000, 10).await.unwrap();
        assert_eq!(claimed.iter().map(|e| e.session_id.as_str()).collect::<Vec<_>>(), ["late"]);
        assert!(backend.queue_remove("late").await.unwrap());
        // Cancelled by DeleteSessions: DELETED, then dequeued.
        let mut cancelled = record(&backend, "cancelled").await.unwrap();
        cancelled.state = SessionState::Deleted as i32;
        backend.update_session(cancelled.clone(), cancelled.revision, None).await.unwrap();
        assert!(backend.queue_remove("cancelled").await.unwrap());
        // Assigned, and the process stops before the dequeue.
        assert!(matches!(backend.assign_session("in-flight", "h1").await.unwrap(), AssignOutcome::Assigned(_)));
    }
    let backend = reopen(dir.path());
    assert_eq!(line(&backend, "A").await, ["in-flight", "waiting"], "only entries never dequeued come back");
    for gone in ["placed", "expired", "late", "cancelled"] {
        assert!(record(&backend, gone).await.is_none(), "{gone} left the queue: its record is rebuilt by agents only");
    }
    let in_flight = record(&backend, "in-flight").await.unwrap();
    assert_eq!(in_flight.server_id, "h1", "the last written record is restored, assignment included");
    let on_h1: Vec<String> = backend.sessions_on_server("h1").await.unwrap().into_iter().map(|s| s.id).collect();
    assert_eq!(on_h1, ["in-flight"], "the server index is rebuilt with the record");
    assert!(backend.queue_remove("in-flight").await.unwrap());
    assert!(backend.queue_remove("waiting").await.unwrap());
    drop(backend);
    let backend = reopen(dir.path());
    assert_eq!(backend.queue_len().await.unwrap(), 0, "removals after a restart are durable too");
    assert!(backend.list_sessions("", 100).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_removed_session_record_is_not_restored_with_its_entry() {
    let dir = tempfile::tempdir().unwrap();
    {
        let backend = reopen(dir.path());
        queue(&backend, "s1", "A", 10).await;
        backend.remove_session("s1").await.unwrap();
    }
    let backend = reopen(dir.path());
    assert_eq!(line(&backend, "A").await, ["s1"], "the entry stays until dequeued");
    assert!(record(&backend, "s1").await.is_none(), "the removed record stays removed");
}

#[tokio::test]
async fn used_token_ids_survive_a_restart_and_expired_ones_are_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let later = now_ms() + 600_000;
    {
        let backend = reopen(dir.path());
        assert!(backend.use_token_once("live", later).await.unwrap());
        assert!(backend.use_token_once("stale", now_ms() - 1).await.unwrap(), "recorded with a past expiry");
    }
    let backend = reopen(dir.path());
    assert!(!backend.use_token_once("live", later).await.unwrap(), "a used token id is still refused after a restart");
    assert!(!backend.memory().used_tokens.contains_key("stale"), "expired ids are not loaded");
    assert_eq!(backend.durable.used_token_ids().unwrap(), ["live"], "and are deleted from the file");
    assert!(backend.use_token_once("fresh", later).await.unwrap(), "other ids are still accepted");
    drop(backend);
    let backend = reopen(dir.path());
    assert!(!backend.use_token_once("fresh", later).await.unwrap(), "ids used after a restart are durable too");
}

#[tokio::test]
async fn pruning_used_token_ids_prunes_the_file() {
    let backend = EmbeddedBackend::in_memory().unwrap();
    let past = now_ms() - 1;
    for i in 0..USED_TOKENS_PRUNE_MIN {
        assert!(backend.use_token_once(&format!("old-{i}"), past).await.unwrap());
    }
    assert_eq!(backend.durable.used_token_ids().unwrap().len(), USED_TOKENS_PRUNE_MIN);
    assert!(backend.use_token_once("new", now_ms() + 60_000).await.unwrap());
    assert_eq!(backend.durable.used_token_ids().unwrap(), ["new"], "expired ids leave the file with the memory map");
    assert_eq!(backend.memory().used_tokens.len(), 1);
}

#[tokio::test]
async fn expired_idempotency_records_are_pruned_a_few_per_claim() {
    use crate::idempotency::IdempotencyClaim;
    let backend = EmbeddedBackend::in_memory().unwrap();
    let durable = &backend.durable;
    for i in 0..40 {
        let claim = durable.claim_idempotency_key(&format!("old-{i}"), b"body", 10, 1_000).unwrap();
        assert_eq!(claim, IdempotencyClaim::Claimed);
    }
    assert_eq!(durable.idempotency_records().unwrap(), 40);
    assert!(durable.complete_idempotency_key("old-0", b"answer", 10, 1_005).unwrap(), "done, expiring at 1015");
    // Each claim after the expiry prunes at most 16 expired records: the work of one call is bounded.
    durable.claim_idempotency_key("new-0", b"body", 60_000, 2_000).unwrap();
    assert_eq!(durable.idempotency_records().unwrap(), 40 - 16 + 1);
    durable.claim_idempotency_key("new-1", b"body", 60_000, 2_000).unwrap();
    durable.claim_idempotency_key("new-2", b"body", 60_000, 2_000).unwrap();
    assert_eq!(durable.idempotency_records().unwrap(), 3, "every expired record is gone, the live ones stay");
    let retry = durable.claim_idempotency_key("new-0", b"body", 60_000, 2_001).unwrap();
    assert_eq!(retry, IdempotencyClaim::InProgress, "pruning kept the live claim");
}

#[tokio::test]
async fn a_claim_replacing_an_expired_record_outlives_the_old_expiry() {
    use crate::idempotency::IdempotencyClaim;
    let backend = EmbeddedBackend::in_memory().unwrap();
    let durable = &backend.durable;
    // More expired records than one claim prunes, all older than the one replaced.
    for i in 0..20 {
        durable.claim_idempotency_key(&format!("old-{i}"), b"body", 10, 1_000).unwrap();
    }
    durable.claim_idempotency_key("key", b"first", 20, 1_000).unwrap();
    let replaced = durable.claim_idempotency_key("key", b"second", 60_000, 2_000).unwrap();
    assert_eq!(replaced, IdempotencyClaim::Claimed, "an expired record is replaced");
    durable.claim_idempotency_key("other", b"body", 60_000, 2_000).unwrap();
    let retry = durable.claim_idempotency_key("key", b"second", 60_000, 2_001).unwrap();
    assert_eq!(retry, IdempotencyClaim::InProgress, "pruning the old record's expiry left the new record");
}

#[tokio::test]
async fn events_beyond_retention_are_dropped_and_readers_told() {
    use crate::Events;
    use crate::events::{kind, parse_id};
    use switchboard_proto::EventRecord;
    let backend = EmbeddedBackend::in_memory().unwrap().with_events_retained(3);
    let mut ids = Vec::new();
    for n in 0..5 {
        let event = EventRecord { kind: kind::SESSION_PERMISSIONS.into(), detail: n.to_string(), ..Default::default() };
        ids.push(backend.append_event(event).await.unwrap());
    }
    let kept = backend.read_events("0-0", 10).await.unwrap();
    assert_eq!(kept.events.iter().map(|e| e.detail.as_str()).collect::<Vec<_>>(), ["2", "3", "4"]);
    assert!(kept.truncated, "a reader from the start missed the two dropped events");
    assert!(backend.read_events(&ids[0], 10).await.unwrap().truncated, "after the first: missed the second");
    let caught_up = backend.read_events(&ids[1], 10).await.unwrap();
    assert!(!caught_up.truncated, "after the last dropped one: nothing missed");
    assert_eq!(caught_up.events.len(), 3);

    // A restarted process begins a new log: a cursor of the old one is told its events are gone.
    let restarted = EmbeddedBackend::in_memory().unwrap();
    let (ms, _) = parse_id(&ids[4]).unwrap();
    let old_cursor = format!("{}-0", ms - 1);
    assert!(restarted.read_events(&old_cursor, 10).await.unwrap().truncated, "a cursor from before the restart");
    assert!(!restarted.read_events("0-0", 10).await.unwrap().truncated, "0-0 asks for what there is");
}
