//! Sessions: inserts, reads, pages, compare-and-set, derived counts, the atomic assignment and the
//! retention reaper.

use std::collections::HashSet;
use std::sync::Arc;

use switchboard_proto::{ServerRecord, SessionRecord, SessionState, SessionType};

use super::{server, session};
use crate::{AssignOutcome, AssignRejection, Backend, BackendError};

/// Every sessions check, each against a fresh backend from `make`.
pub(super) async fn run<F, Fut>(make: &F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Arc<dyn Backend>>,
{
    insert_and_get_sessions(make().await).await;
    insert_sessions_is_all_or_nothing(make().await).await;
    list_sessions_pages_in_id_order(make().await).await;
    update_session_is_compare_and_set(make().await).await;
    remove_session(make().await).await;
    server_counts_are_derived(make().await).await;
    assign_rejections(make().await).await;
    assign_limits(make().await).await;
    concurrent_assigns_respect_limits(make().await).await;
    concurrent_assigns_place_a_session_once(make().await).await;
    deleted_sessions_expire(make().await).await;
    super::owner_counts::owner_session_counts_are_what_assign_checks(make().await).await;
}

fn ids(sessions: &[SessionRecord]) -> Vec<&str> {
    sessions.iter().map(|s| s.id.as_str()).collect()
}

async fn assign(backend: &dyn Backend, session_id: &str, server_id: &str) -> AssignOutcome {
    backend.assign_session(session_id, server_id).await.expect("assign_session failed")
}

async fn insert_and_get_sessions(backend: Arc<dyn Backend>) {
    let stored = backend.insert_session(session("s1", "alice", SessionType::Virtual), None).await.unwrap();
    assert_eq!(stored.revision, 1, "insert_session must return revision 1");
    let again = backend.insert_session(session("s1", "bob", SessionType::Virtual), None).await;
    assert!(matches!(again, Err(BackendError::AlreadyExists(_))), "duplicate insert must be AlreadyExists: {again:?}");
    backend.insert_session(session("s2", "bob", SessionType::Console), None).await.unwrap();
    let got = backend.get_sessions(&["s2".into(), "missing".into(), "s1".into()]).await.unwrap();
    assert_eq!(ids(&got), ["s2", "s1"], "get_sessions keeps the asked order and skips unknown ids");
    assert_eq!(got[1].owner, "alice", "get_sessions returns the stored record");
}

async fn insert_sessions_is_all_or_nothing(backend: Arc<dyn Backend>) {
    let batch = vec![session("b1", "alice", SessionType::Virtual), session("b2", "bob", SessionType::Console)];
    let stored = backend.insert_sessions(batch).await.unwrap();
    assert_eq!(ids(&stored), ["b1", "b2"], "insert_sessions returns the records in the order given");
    assert!(stored.iter().all(|s| s.revision == 1), "every inserted record has revision 1");
    assert_eq!(ids(&backend.get_sessions(&["b2".into(), "b1".into()]).await.unwrap()), ["b2", "b1"]);

    let clash = vec![session("b3", "carol", SessionType::Virtual), session("b1", "carol", SessionType::Virtual)];
    let refused = backend.insert_sessions(clash).await;
    assert!(matches!(refused, Err(BackendError::AlreadyExists(_))), "a taken id refuses the batch: {refused:?}");
    assert!(backend.get_sessions(&["b3".into()]).await.unwrap().is_empty(), "nothing of a refused batch is written");
    assert_eq!(backend.get_sessions(&["b1".into()]).await.unwrap()[0].owner, "alice", "the stored one is kept");

    let twice = vec![session("b4", "dan", SessionType::Virtual), session("b4", "dan", SessionType::Virtual)];
    assert!(matches!(backend.insert_sessions(twice).await, Err(BackendError::AlreadyExists(_))), "an id twice");
    assert!(backend.get_sessions(&["b4".into()]).await.unwrap().is_empty());

    let too_many: Vec<SessionRecord> = (0..=switchboard_proto::contract::RECORD_SESSIONS_MAX)
        .map(|i| session(&format!("many-{i}"), "erin", SessionType::Virtual))
        .collect();
    assert!(matches!(backend.insert_sessions(too_many).await, Err(BackendError::InvalidArgument(_))), "bounded");
    assert!(backend.insert_sessions(Vec::new()).await.unwrap().is_empty(), "an empty batch is no error");

    // Counts follow inserted sessions like single inserts.
    let mut placed = session("b5", "alice", SessionType::Virtual);
    backend.upsert_server_report(server("h1"), true, None).await.unwrap();
    placed.server_id = "h1".into();
    backend.insert_sessions(vec![placed]).await.unwrap();
    let counted = backend.get_servers(&["h1".into()]).await.unwrap();
    assert_eq!(counted[0].virtual_session_count, 1, "an inserted session assigned to a server counts there");
}

async fn list_sessions_pages_in_id_order(backend: Arc<dyn Backend>) {
    for id in ["c", "a", "e", "b", "d"] {
        backend.insert_session(session(id, "alice", SessionType::Virtual), None).await.unwrap();
    }
    let first = backend.list_sessions("", 2).await.unwrap();
    assert_eq!(ids(&first), ["a", "b"], "first page in ascending id order");
    let second = backend.list_sessions("b", 2).await.unwrap();
    assert_eq!(ids(&second), ["c", "d"], "after_id is exclusive");
    let last = backend.list_sessions("d", 2).await.unwrap();
    assert_eq!(ids(&last), ["e"], "last page is short");
    assert!(backend.list_sessions("e", 2).await.unwrap().is_empty(), "nothing after the last id");
}

async fn update_session_is_compare_and_set(backend: Arc<dyn Backend>) {
    let stored = backend.insert_session(session("s1", "alice", SessionType::Virtual), None).await.unwrap();
    let mut changed = stored.clone();
    changed.state = SessionState::Ready as i32;
    let updated = backend.update_session(changed.clone(), 1, None).await.unwrap();
    assert_eq!(updated.revision, 2, "every write bumps the revision");
    assert_eq!(updated.state(), SessionState::Ready);
    let stale = backend.update_session(changed.clone(), 1, None).await;
    assert!(matches!(stale, Err(BackendError::Conflict(_))), "stale revision must be Conflict: {stale:?}");
    let read = backend.get_sessions(&["s1".into()]).await.unwrap();
    assert_eq!(read[0].revision, 2, "a failed CAS changes nothing");
    let missing = backend.update_session(session("nope", "x", SessionType::Virtual), 1, None).await;
    assert!(matches!(missing, Err(BackendError::NotFound(_))), "update of unknown id is NotFound: {missing:?}");
}

async fn remove_session(backend: Arc<dyn Backend>) {
    backend.upsert_server_report(server("h1"), true, None).await.unwrap();
    backend.insert_session(session("s1", "alice", SessionType::Virtual), None).await.unwrap();
    assert!(matches!(assign(&*backend, "s1", "h1").await, AssignOutcome::Assigned(_)));
    backend.remove_session("s1").await.unwrap();
    assert!(backend.get_sessions(&["s1".into()]).await.unwrap().is_empty(), "removed session is gone");
    assert!(backend.sessions_on_server("h1").await.unwrap().is_empty(), "removed session leaves its server");
    backend.remove_session("s1").await.expect("removing a missing session is not an error");
}

async fn server_counts_are_derived(backend: Arc<dyn Backend>) {
    backend.upsert_server_report(server("h1"), true, None).await.unwrap();
    backend.insert_session(session("v1", "alice", SessionType::Virtual), None).await.unwrap();
    backend.insert_session(session("v2", "bob", SessionType::Virtual), None).await.unwrap();
    backend.insert_session(session("c1", "carol", SessionType::Console), None).await.unwrap();
    for id in ["v1", "v2", "c1"] {
        assert!(matches!(assign(&*backend, id, "h1").await, AssignOutcome::Assigned(_)), "assign {id}");
    }
    let on_server = backend.sessions_on_server("h1").await.unwrap();
    assert_eq!(on_server.len(), 3, "sessions_on_server lists every assigned session");
    let h1 = &backend.get_servers(&["h1".into()]).await.unwrap()[0];
    assert_eq!((h1.console_session_count, h1.virtual_session_count), (1, 2), "counts derived from sessions");

    let mut v2 = on_server.into_iter().find(|s| s.id == "v2").unwrap();
    v2.state = SessionState::Deleted as i32;
    backend.update_session(v2.clone(), v2.revision, None).await.unwrap();
    let listed = &backend.list_servers("", 10).await.unwrap()[0];
    assert_eq!(listed.virtual_session_count, 1, "DELETED sessions are not counted (list_servers)");
    assert_eq!(
        backend.sessions_on_server("h1").await.unwrap().len(),
        3,
        "sessions_on_server includes DELETED sessions"
    );

    // Moving a session to another server moves its count.
    backend.upsert_server_report(server("h2"), true, None).await.unwrap();
    let mut v1 = backend.get_sessions(&["v1".into()]).await.unwrap().remove(0);
    v1.server_id = "h2".into();
    backend.update_session(v1.clone(), v1.revision, None).await.unwrap();
    let servers = backend.get_servers(&["h1".into(), "h2".into()]).await.unwrap();
    assert_eq!(servers[0].virtual_session_count, 0, "count follows a server change (old)");
    assert_eq!(servers[1].virtual_session_count, 1, "count follows a server change (new)");
    let report = backend.upsert_server_report(server("h2"), true, None).await.unwrap();
    assert_eq!(report.virtual_session_count, 1, "upsert_server_report returns derived counts");
}

async fn assign_rejections(backend: Arc<dyn Backend>) {
    use AssignRejection::*;
    backend.insert_session(session("s1", "alice", SessionType::Virtual), None).await.unwrap();
    let rejected = |expected| move |outcome: AssignOutcome| assert_eq!(outcome, AssignOutcome::Rejected(expected));

    rejected(ServerNotFound)(assign(&*backend, "s1", "nowhere").await);
    rejected(SessionNotPlaceable)(assign(&*backend, "missing", "nowhere").await);

    backend.upsert_server_report(server("closed"), false, None).await.unwrap();
    rejected(ServerClosed)(assign(&*backend, "s1", "closed").await);
    backend.upsert_server_report(ServerRecord { reachable: false, ..server("gone") }, true, None).await.unwrap();
    rejected(ServerUnreachable)(assign(&*backend, "s1", "gone").await);
    backend.upsert_server_report(ServerRecord { dcv_healthy: false, ..server("sick") }, true, None).await.unwrap();
    rejected(DcvUnhealthy)(assign(&*backend, "s1", "sick").await);

    backend.upsert_server_report(server("h1"), true, None).await.unwrap();
    let AssignOutcome::Assigned(placed) = assign(&*backend, "s1", "h1").await else {
        panic!("s1 should be assigned to h1");
    };
    assert_eq!(placed.server_id, "h1");
    assert_eq!(placed.substate, "PENDING_PREPARATION", "assigned sessions wait for preparation");
    assert_eq!(placed.revision, 2, "assignment bumps the revision");
    let read = backend.get_sessions(&["s1".into()]).await.unwrap().remove(0);
    assert_eq!(read, placed, "a read after assignment returns the assigned record");
    rejected(SessionNotPlaceable)(assign(&*backend, "s1", "h1").await);

    backend.insert_session(session("done", "alice", SessionType::Virtual), None).await.unwrap();
    let mut done = backend.get_sessions(&["done".into()]).await.unwrap().remove(0);
    done.state = SessionState::Deleted as i32;
    backend.update_session(done, 1, None).await.unwrap();
    rejected(SessionNotPlaceable)(assign(&*backend, "done", "h1").await);
}

async fn assign_limits(backend: Arc<dyn Backend>) {
    use AssignRejection::*;
    backend
        .upsert_server_report(
            ServerRecord { max_virtual_sessions: 2, max_concurrent_sessions_per_user: 2, ..server("h1") },
            true,
            None,
        )
        .await
        .unwrap();
    for (id, owner, kind) in [
        ("c1", "alice", SessionType::Console),
        ("c2", "bob", SessionType::Console),
        ("v1", "bob", SessionType::Virtual),
        ("v2", "alice", SessionType::Virtual),
        ("v3", "carol", SessionType::Virtual),
        ("v4", "alice", SessionType::Virtual),
    ] {
        backend.insert_session(session(id, owner, kind), None).await.unwrap();
    }
    assert!(matches!(assign(&*backend, "c1", "h1").await, AssignOutcome::Assigned(_)));
    assert_eq!(assign(&*backend, "c2", "h1").await, AssignOutcome::Rejected(ConsoleTaken), "one console per host");
    assert!(matches!(assign(&*backend, "v1", "h1").await, AssignOutcome::Assigned(_)));
    assert!(matches!(assign(&*backend, "v2", "h1").await, AssignOutcome::Assigned(_)));
    assert_eq!(assign(&*backend, "v3", "h1").await, AssignOutcome::Rejected(VirtualLimit), "max_virtual_sessions");

    // alice has c1 and v2 on h1: her per-user limit (2) is reached before the virtual one.
    let mut v1 = backend.get_sessions(&["v1".into()]).await.unwrap().remove(0);
    v1.state = SessionState::Deleted as i32;
    backend.update_session(v1.clone(), v1.revision, None).await.unwrap();
    assert_eq!(assign(&*backend, "v4", "h1").await, AssignOutcome::Rejected(UserLimit), "per-user limit");
    assert!(
        matches!(assign(&*backend, "v3", "h1").await, AssignOutcome::Assigned(_)),
        "a DELETED session frees its virtual slot"
    );
}

async fn concurrent_assigns_respect_limits(backend: Arc<dyn Backend>) {
    backend.upsert_server_report(ServerRecord { max_virtual_sessions: 10, ..server("h1") }, true, None).await.unwrap();
    for i in 0..50 {
        backend
            .insert_session(session(&format!("s{i:02}"), &format!("u{i}"), SessionType::Virtual), None)
            .await
            .unwrap();
    }
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let backend = backend.clone();
            tokio::spawn(async move { backend.assign_session(&format!("s{i:02}"), "h1").await.unwrap() })
        })
        .collect();
    let mut assigned = 0;
    for task in tasks {
        match task.await.unwrap() {
            AssignOutcome::Assigned(_) => assigned += 1,
            AssignOutcome::Rejected(reason) => assert_eq!(reason, AssignRejection::VirtualLimit),
        }
    }
    assert_eq!(assigned, 10, "50 concurrent assigns onto max_virtual_sessions=10 must place exactly 10");
    let h1 = &backend.get_servers(&["h1".into()]).await.unwrap()[0];
    assert_eq!(h1.virtual_session_count, 10, "derived count matches the assignments");
}

async fn concurrent_assigns_place_a_session_once(backend: Arc<dyn Backend>) {
    for i in 0..8 {
        backend.upsert_server_report(server(&format!("h{i}")), true, None).await.unwrap();
    }
    backend.insert_session(session("s1", "alice", SessionType::Virtual), None).await.unwrap();
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let backend = backend.clone();
            tokio::spawn(async move { backend.assign_session("s1", &format!("h{i}")).await.unwrap() })
        })
        .collect();
    let mut winners = HashSet::new();
    for task in tasks {
        if let AssignOutcome::Assigned(record) = task.await.unwrap() {
            winners.insert(record.server_id);
        }
    }
    assert_eq!(winners.len(), 1, "a session raced onto several hosts must be assigned exactly once");
    let stored = backend.get_sessions(&["s1".into()]).await.unwrap().remove(0);
    assert!(winners.contains(&stored.server_id), "the stored server is the winner's");
}

async fn deleted_sessions_expire(backend: Arc<dyn Backend>) {
    backend.upsert_server_report(server("h1"), true, None).await.unwrap();
    for (id, ended) in [("old1", 100), ("old2", 150), ("old3", 200), ("recent", 500)] {
        let stored = backend.insert_session(session(id, "alice", SessionType::Virtual), None).await.unwrap();
        backend.assign_session(id, "h1").await.unwrap();
        let deleted = switchboard_proto::SessionRecord {
            state: SessionState::Deleted as i32,
            ended_unix_ms: ended,
            server_id: "h1".into(),
            ..stored
        };
        backend.update_session(deleted, 2, None).await.unwrap();
    }
    backend.insert_session(session("live", "alice", SessionType::Virtual), None).await.unwrap();
    backend.assign_session("live", "h1").await.unwrap();

    assert_eq!(backend.remove_deleted_sessions(300, 2).await.unwrap(), 2, "at most `limit` removed");
    assert_eq!(backend.remove_deleted_sessions(300, 10).await.unwrap(), 1, "then the rest of the expired ones");
    assert_eq!(backend.remove_deleted_sessions(300, 10).await.unwrap(), 0, "nothing left to expire");
    let mut left: Vec<String> = backend.list_sessions("", 10).await.unwrap().into_iter().map(|s| s.id).collect();
    left.sort();
    assert_eq!(left, ["live", "recent"], "only DELETED sessions past the retention go");
    let mut on_server: Vec<String> =
        backend.sessions_on_server("h1").await.unwrap().into_iter().map(|s| s.id).collect();
    on_server.sort();
    assert_eq!(on_server, ["live", "recent"], "expired sessions leave their server's index");
    let h1 = backend.get_servers(&["h1".into()]).await.unwrap().remove(0);
    assert_eq!(h1.virtual_session_count, 1, "counts unchanged: DELETED sessions never counted");
}
