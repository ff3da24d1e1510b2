//! Events: what each write appends (and what it does not), ids and cursors, limits, service events.

use std::sync::Arc;

use switchboard_proto::{EventRecord, QueuedRequest, ServerRecord, SessionState, SessionType};

use super::{server, session};
use crate::Backend;
use crate::events::{self, kind};

/// Every event check, each against a fresh backend from `make`.
pub(super) async fn run<F, Fut>(make: &F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Arc<dyn Backend>>,
{
    session_writes_report_new_sessions_and_state_changes(make().await).await;
    server_availability_changes_are_reported(make().await).await;
    queue_and_service_events(make().await).await;
    cursors_page_and_refuse_garbage(make().await).await;
}

/// Every event after the cursor `0-0`.
async fn all(backend: &Arc<dyn Backend>) -> Vec<EventRecord> {
    backend.read_events("0-0", events::READ_EVENTS_MAX).await.unwrap().events
}

async fn session_writes_report_new_sessions_and_state_changes(backend: Arc<dyn Backend>) {
    backend.upsert_server_report(server("h1"), true, None).await.unwrap();
    let start = all(&backend).await.last().map(|event| event.id.clone()).unwrap_or_else(|| "0-0".to_owned());
    backend.insert_session(session("s1", "alice", SessionType::Virtual), None).await.unwrap();
    backend.insert_sessions(vec![session("s2", "bob", SessionType::Virtual)]).await.unwrap();
    backend.assign_session("s1", "h1").await.unwrap();
    let placed = backend.get_session("s1").await.unwrap().unwrap();
    let mut same_state = placed.clone();
    same_state.name = "renamed".into();
    let same_state = backend.update_session(same_state, placed.revision, None).await.unwrap();
    let mut ready = same_state.clone();
    ready.state = SessionState::Ready as i32;
    ready.state_reason = "up".into();
    backend.update_session(ready, same_state.revision, None).await.unwrap();
    let page = backend.read_events(&start, 100).await.unwrap();
    let seen: Vec<(&str, &str, i32, i32)> =
        page.events.iter().map(|e| (e.kind.as_str(), e.session_id.as_str(), e.state, e.previous_state)).collect();
    let (creating, ready) = (SessionState::Creating as i32, SessionState::Ready as i32);
    assert_eq!(
        seen,
        vec![
            (kind::SESSION_STATE, "s1", creating, 0),
            (kind::SESSION_STATE, "s2", creating, 0),
            (kind::SESSION_PLACED, "s1", creating, creating),
            (kind::SESSION_STATE, "s1", ready, creating),
        ],
        "new sessions, the placement and the state change are events, a write keeping the state is not"
    );
    let last = &page.events[3];
    assert_eq!((last.owner.as_str(), last.server_id.as_str(), last.reason.as_str()), ("alice", "h1", "up"));
    assert_eq!(page.events[2].server_id, "h1", "a placement names the host");
    assert_eq!(page.last_id, last.id, "last_id is the newest event");
    assert!(!page.truncated, "nothing was dropped");
    let ids: Vec<(u64, u64)> = page.events.iter().map(|e| events::parse_id(&e.id).unwrap()).collect();
    assert!(ids.windows(2).all(|pair| pair[0] < pair[1]), "ids increase: {ids:?}");
    assert!(page.events.iter().all(|e| e.at_unix_ms > 0), "every event has its time");
}

async fn server_availability_changes_are_reported(backend: Arc<dyn Backend>) {
    let availability = |events: Vec<EventRecord>| -> Vec<(String, String, String)> {
        events
            .into_iter()
            .filter(|e| e.kind == kind::SERVER_AVAILABILITY)
            .map(|e| (e.server_id, e.availability, e.reason))
            .collect()
    };
    let row = |id: &str, availability: &str, reason: &str| (id.to_owned(), availability.to_owned(), reason.to_owned());
    backend.upsert_server_report(server("h1"), true, None).await.unwrap();
    backend.upsert_server_report(server("h1"), true, None).await.unwrap();
    backend.upsert_server_report(ServerRecord { dcv_healthy: false, ..server("h1") }, true, None).await.unwrap();
    backend.upsert_server_report(server("h1"), true, None).await.unwrap();
    backend.set_server_open("h1", false).await.unwrap();
    backend.set_server_open("h1", false).await.unwrap();
    backend.set_server_open("h1", true).await.unwrap();
    backend.upsert_server_report(ServerRecord { reachable: false, ..server("h1") }, true, None).await.unwrap();
    backend.remove_server("h1").await.unwrap();
    assert_eq!(
        availability(all(&backend).await),
        vec![
            row("h1", "AVAILABLE", ""),
            row("h1", "UNAVAILABLE", "UNHEALTHY_DCV_SERVER"),
            row("h1", "AVAILABLE", ""),
            row("h1", "UNAVAILABLE", "SERVER_CLOSED"),
            row("h1", "AVAILABLE", ""),
            row("h1", "UNAVAILABLE", "UNREACHABLE_AGENT"),
            row("h1", "UNAVAILABLE", events::SERVER_REMOVED),
        ],
        "one event per change of availability: a new server, health, open/close, reachability, removal"
    );
    backend.upsert_server_report(server("h2"), true, None).await.unwrap();
    backend.insert_session(session("s1", "alice", SessionType::Virtual), None).await.unwrap();
    backend.assign_session("s1", "h2").await.unwrap();
    backend.close_server("h2", an_hour_from_now()).await.unwrap();
    let drained = availability(all(&backend).await);
    assert_eq!(drained.last(), Some(&row("h2", "UNAVAILABLE", "SERVER_CLOSED")), "a drain makes the host unavailable");
}

/// A drain deadline an hour away.
fn an_hour_from_now() -> i64 {
    switchboard_common::time::now_ms() + 3_600_000
}

async fn queue_and_service_events(backend: Arc<dyn Backend>) {
    backend.insert_session(session("q1", "alice", SessionType::Virtual), None).await.unwrap();
    backend.insert_session(session("q2", "bob", SessionType::Virtual), None).await.unwrap();
    for id in ["q1", "q2"] {
        let owner = if id == "q1" { "alice" } else { "bob" };
        let entry = QueuedRequest {
            session_id: id.into(),
            class_id: "class-a".into(),
            owner: owner.into(),
            ..Default::default()
        };
        backend.queue_push(entry, 60_000, 100).await.unwrap();
    }
    // q1 leaves (placed): q2 moves up to the first place.
    backend.queue_remove("q1").await.unwrap();
    let moved: Vec<(String, String, String, u32)> = all(&backend)
        .await
        .into_iter()
        .filter(|e| e.kind == kind::QUEUE_POSITION)
        .map(|e| (e.session_id, e.owner, e.detail, e.queue_position))
        .collect();
    assert_eq!(moved, vec![("q2".into(), "bob".into(), "class-a".into(), 1)], "the request behind moved up");
    let id = backend
        .append_event(EventRecord {
            kind: kind::SESSION_PERMISSIONS.into(),
            session_id: "q1".into(),
            owner: "alice".into(),
            detail: "3 lines".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let events = all(&backend).await;
    let queued: Vec<(&str, &str, &str, u32)> = events
        .iter()
        .filter(|e| e.kind == kind::QUEUE_ENQUEUED)
        .map(|e| (e.session_id.as_str(), e.owner.as_str(), e.detail.as_str(), e.queue_position))
        .collect();
    assert_eq!(queued, vec![("q1", "alice", "class-a", 1), ("q2", "bob", "class-a", 2)], "queued requests");
    let last = events.last().unwrap();
    assert_eq!(last.id, id, "append_event returns the id of the event it appended");
    assert_eq!((last.kind.as_str(), last.detail.as_str()), (kind::SESSION_PERMISSIONS, "3 lines"));
    assert_eq!((last.session_id.as_str(), last.owner.as_str()), ("q1", "alice"));
}

async fn cursors_page_and_refuse_garbage(backend: Arc<dyn Backend>) {
    for n in 0..5 {
        let event = EventRecord { kind: kind::SESSION_PERMISSIONS.into(), detail: n.to_string(), ..Default::default() };
        backend.append_event(event).await.unwrap();
    }
    let first = backend.read_events("0-0", 2).await.unwrap();
    assert_eq!(first.events.iter().map(|e| e.detail.as_str()).collect::<Vec<_>>(), ["0", "1"], "limit");
    let next = backend.read_events(&first.events[1].id, 10).await.unwrap();
    assert_eq!(
        next.events.iter().map(|e| e.detail.as_str()).collect::<Vec<_>>(),
        ["2", "3", "4"],
        "reading after an id starts at the next event"
    );
    let none = backend.read_events(&next.last_id, 10).await.unwrap();
    assert!(none.events.is_empty() && !none.truncated, "nothing after the newest");
    for bad in ["", "latest", "1-", "-1"] {
        assert!(backend.read_events(bad, 10).await.is_err(), "cursor {bad:?} is refused");
    }
}
