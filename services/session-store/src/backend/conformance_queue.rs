//! Conformance checks of the fleet change feed and the create-sessions queue
//! (part of [`super::conformance::run_all`]).

use std::collections::HashSet;
use std::sync::Arc;

use switchboard_proto::{QueuedRequest, ServerRecord, SessionType};

use super::conformance::{server, session};
use super::{AssignOutcome, Backend, QueuePush};

fn ids(servers: &[ServerRecord]) -> Vec<&str> {
    servers.iter().map(|s| s.id.as_str()).collect()
}

pub(super) async fn server_changes_follow_every_change(backend: Arc<dyn Backend>) {
    let empty = backend.server_changes(0, 100).await.unwrap();
    assert!(!empty.generation.is_empty(), "the feed has a generation");
    assert!(empty.servers.is_empty() && empty.removed.is_empty() && !empty.more, "an empty fleet has no changes");
    backend.upsert_server_report(server("h1"), true, None).await.unwrap();
    backend.upsert_server_report(server("h2"), true, None).await.unwrap();
    let all = backend.server_changes(0, 100).await.unwrap();
    assert_eq!(all.generation, empty.generation, "the generation is stable");
    assert_eq!(ids(&all.servers), ["h1", "h2"], "new servers appear in change order");
    let seen = all.revision;
    let none = backend.server_changes(seen, 100).await.unwrap();
    assert!(none.servers.is_empty() && none.removed.is_empty(), "nothing changed after the last revision");
    assert_eq!(none.revision, seen, "an empty page keeps the revision");

    backend.set_server_open("h1", false).await.unwrap();
    let closed = backend.server_changes(seen, 100).await.unwrap();
    assert_eq!(ids(&closed.servers), ["h1"], "opening or closing is a change");
    assert!(!closed.servers[0].open, "the change carries the current record");
    let seen = closed.revision;

    backend.insert_session(session("s1", "alice", SessionType::Virtual), None).await.unwrap();
    assert!(matches!(backend.assign_session("s1", "h2").await.unwrap(), AssignOutcome::Assigned(_)));
    let assigned = backend.server_changes(seen, 100).await.unwrap();
    assert_eq!(ids(&assigned.servers), ["h2"], "an assignment changes the server's counts");
    assert_eq!(assigned.servers[0].virtual_session_count, 1, "with the derived count");
    let seen = assigned.revision;

    let mut s1 = backend.get_sessions(&["s1".into()]).await.unwrap().remove(0);
    s1.state = switchboard_proto::SessionState::Deleted as i32;
    backend.update_session(s1.clone(), s1.revision, None).await.unwrap();
    let freed = backend.server_changes(seen, 100).await.unwrap();
    assert_eq!(ids(&freed.servers), ["h2"], "a session ending frees capacity: a change");
    assert_eq!(freed.servers[0].virtual_session_count, 0);
    let seen = freed.revision;

    backend.remove_server("h1").await.unwrap();
    let removed = backend.server_changes(seen, 100).await.unwrap();
    assert_eq!(removed.removed, ["h1"], "removed servers are reported as removed");
    assert!(removed.servers.is_empty());

    // Paging: one change per page, each server once at its latest revision.
    backend.upsert_server_report(server("h3"), true, None).await.unwrap();
    backend.upsert_server_report(server("h2"), true, None).await.unwrap();
    let first = backend.server_changes(removed.revision, 1).await.unwrap();
    assert!(first.more, "a full page says more follow");
    assert_eq!(ids(&first.servers), ["h3"]);
    let second = backend.server_changes(first.revision, 1).await.unwrap();
    assert_eq!(ids(&second.servers), ["h2"]);
    assert!(!second.more);
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

pub(super) async fn queue_is_bounded_and_ordered(backend: Arc<dyn Backend>) {
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
    backend.queue_remove("a2").await.unwrap();
    backend.queue_remove("b1").await.unwrap();
    assert_eq!(backend.queue_len().await.unwrap(), 0);
    assert!(backend.queue_heads(5).await.unwrap().is_empty(), "emptied classes disappear");
}

pub(super) async fn queue_claims_are_exclusive(backend: Arc<dyn Backend>) {
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

pub(super) async fn queue_expiry_is_claimed_once(backend: Arc<dyn Backend>) {
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
