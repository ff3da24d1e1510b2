//! Conformance checks for fencing, forgetting servers and expiring DELETED
//! sessions (called from [`super::conformance::run_all`]).

use std::sync::Arc;

use switchboard_proto::{ServerRecord, SessionState, SessionType};

use super::conformance::{server, session};
use super::{Backend, BackendError, Fence};

fn is_fenced<T: std::fmt::Debug>(result: &Result<T, BackendError>) -> bool {
    matches!(result, Err(BackendError::Fenced(_)))
}

pub(super) async fn fenced_writes(backend: Arc<dyn Backend>) {
    let first = backend.claim_agent("h1", "r1", "http://r1:1", 30_000).await.unwrap();
    let old = Fence::owner("h1", first.epoch);
    backend.upsert_server_report(server("h1"), true, Some(&old)).await.expect("the owner's report passes");
    let stored = backend.insert_session(session("s1", "alice", SessionType::Virtual), Some(&old)).await.unwrap();

    let second = backend.claim_agent("h1", "r2", "http://r2:1", 30_000).await.unwrap();
    let new = Fence::owner("h1", second.epoch);
    let renamed = ServerRecord { hostname: "stale".into(), ..server("h1") };
    let report = backend.upsert_server_report(renamed, true, Some(&old)).await;
    assert!(is_fenced(&report), "a superseded owner's report is Fenced: {report:?}");
    let h1 = backend.get_servers(&["h1".into()]).await.unwrap().remove(0);
    assert_eq!((h1.hostname.as_str(), h1.revision), ("h1.example", 1), "a fenced report changes nothing");
    let ready = switchboard_proto::SessionRecord { state: SessionState::Ready as i32, ..stored.clone() };
    let update = backend.update_session(ready.clone(), 1, Some(&old)).await;
    assert!(is_fenced(&update), "a superseded owner's update is Fenced: {update:?}");
    let insert = backend.insert_session(session("s2", "bob", SessionType::Virtual), Some(&old)).await;
    assert!(is_fenced(&insert), "a superseded owner's insert is Fenced: {insert:?}");
    let read = backend.get_sessions(&["s1".into(), "s2".into()]).await.unwrap();
    assert_eq!(read.len(), 1, "a fenced insert stores nothing");
    assert_eq!(read[0].revision, 1, "a fenced update changes nothing");

    backend.update_session(ready, 1, Some(&new)).await.expect("the current owner's update passes");
    let gone = Fence::unowned("h1");
    let unowned =
        backend.upsert_server_report(ServerRecord { reachable: false, ..server("h1") }, true, Some(&gone)).await;
    assert!(is_fenced(&unowned), "an unowned write is Fenced while a live lease exists: {unowned:?}");

    backend.release_agent("h1", second.epoch).await.unwrap();
    let after_release = backend.upsert_server_report(server("h1"), true, Some(&new)).await;
    assert!(is_fenced(&after_release), "a released ownership no longer passes: {after_release:?}");
    let marked =
        backend.upsert_server_report(ServerRecord { reachable: false, ..server("h1") }, true, Some(&gone)).await;
    assert!(!marked.unwrap().reachable, "an unowned write passes once nobody owns the stream");

    let lapsed = backend.claim_agent("h2", "r1", "http://r1:1", -1).await.unwrap();
    backend
        .upsert_server_report(server("h2"), true, Some(&Fence::unowned("h2")))
        .await
        .expect("an unowned write passes once the lease lapsed");
    backend
        .upsert_server_report(server("h2"), true, Some(&Fence::owner("h2", lapsed.epoch)))
        .await
        .expect("an owner whose lease lapsed, unclaimed since, still passes");
}

pub(super) async fn forget_server_keeps_open_flag(backend: Arc<dyn Backend>) {
    let claim = backend.claim_agent("h1", "r1", "http://r1:1", 30_000).await.unwrap();
    backend.upsert_server_report(server("h1"), true, None).await.unwrap();
    let closed = backend.set_server_open("h1", false).await.unwrap();
    let stale = backend.forget_server("h1", closed.revision - 1).await;
    assert!(matches!(stale, Err(BackendError::Conflict(_))), "forget with a stale revision is Conflict: {stale:?}");
    let owned = backend.forget_server("h1", closed.revision).await;
    assert!(is_fenced(&owned), "forget while a live lease exists is Fenced: {owned:?}");
    assert_eq!(backend.get_servers(&["h1".into()]).await.unwrap().len(), 1, "a refused forget keeps the server");

    backend.release_agent("h1", claim.epoch).await.unwrap();
    backend.forget_server("h1", closed.revision).await.unwrap();
    assert!(backend.get_servers(&["h1".into()]).await.unwrap().is_empty(), "a forgotten server is gone");
    assert!(backend.list_servers("", 10).await.unwrap().is_empty(), "a forgotten server is not listed");
    let back = backend.upsert_server_report(server("h1"), true, None).await.unwrap();
    assert!(!back.open, "a forgotten server returns with its open flag");
    backend.forget_server("nope", 1).await.expect("forgetting an unknown server is not an error");
}

pub(super) async fn deleted_sessions_expire(backend: Arc<dyn Backend>) {
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
