//! Servers: reports keep the operator's open flag, listing and removal, the change feed, forgetting.

use std::sync::Arc;

use switchboard_proto::{ServerRecord, SessionType};

use super::ownership::is_fenced;
use super::{server, session};
use crate::CloseOutcome;
use crate::{AssignOutcome, Backend, BackendError};

/// Every servers check, each against a fresh backend from `make`.
pub(super) async fn run<F, Fut>(make: &F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Arc<dyn Backend>>,
{
    server_reports_keep_open(make().await).await;
    list_and_remove_servers(make().await).await;
    server_changes_follow_every_change(make().await).await;
    forget_server_keeps_open_flag(make().await).await;
    close_server_drains_while_sessions_run(make().await).await;
    opening_or_forcing_ends_a_drain(make().await).await;
}

fn ids(servers: &[ServerRecord]) -> Vec<&str> {
    servers.iter().map(|s| s.id.as_str()).collect()
}

async fn server_reports_keep_open(backend: Arc<dyn Backend>) {
    let first = backend.upsert_server_report(server("h1"), true, None).await.unwrap();
    assert!(first.open, "a new server gets default_open");
    assert_eq!(first.revision, 1, "a new server starts at revision 1");
    let closed = backend.set_server_open("h1", false).await.unwrap();
    assert!(!closed.open);
    assert_eq!(closed.revision, 2, "set_server_open bumps the revision");
    let report = backend
        .upsert_server_report(ServerRecord { open: true, hostname: "renamed".into(), ..server("h1") }, true, None)
        .await
        .unwrap();
    assert!(!report.open, "upsert_server_report keeps the stored open flag");
    assert_eq!(report.hostname, "renamed", "upsert_server_report stores the report");
    assert_eq!(report.revision, 3, "reports bump the revision");
    let closed_by_default = backend.upsert_server_report(server("h2"), false, None).await.unwrap();
    assert!(!closed_by_default.open, "default_open=false applies to new servers");
    let missing = backend.set_server_open("nope", true).await;
    assert!(matches!(missing, Err(BackendError::NotFound(_))), "set_server_open on unknown is NotFound: {missing:?}");
}

async fn list_and_remove_servers(backend: Arc<dyn Backend>) {
    for id in ["h3", "h1", "h2"] {
        backend.upsert_server_report(server(id), true, None).await.unwrap();
    }
    let page: Vec<String> = backend.list_servers("", 2).await.unwrap().into_iter().map(|s| s.id).collect();
    assert_eq!(page, ["h1", "h2"], "servers listed in id order");
    let rest: Vec<String> = backend.list_servers("h2", 2).await.unwrap().into_iter().map(|s| s.id).collect();
    assert_eq!(rest, ["h3"], "after_id is exclusive");
    let got: Vec<String> =
        backend.get_servers(&["h3".into(), "x".into(), "h1".into()]).await.unwrap().into_iter().map(|s| s.id).collect();
    assert_eq!(got, ["h3", "h1"], "get_servers keeps order, skips unknown");
    backend.set_server_open("h1", false).await.unwrap();
    backend.remove_server("h1").await.unwrap();
    assert!(backend.get_servers(&["h1".into()]).await.unwrap().is_empty(), "removed server is gone");
    let back = backend.upsert_server_report(server("h1"), true, None).await.unwrap();
    assert!(back.open, "remove_server forgets the open setting");
}

async fn server_changes_follow_every_change(backend: Arc<dyn Backend>) {
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

async fn forget_server_keeps_open_flag(backend: Arc<dyn Backend>) {
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

/// Reports server `id` with one live session of alice's on it (`s-<id>`, assigned).
async fn with_session(backend: &Arc<dyn Backend>, id: &str) {
    backend.upsert_server_report(server(id), true, None).await.unwrap();
    let session_id = format!("s-{id}");
    backend.insert_session(session(&session_id, "alice", SessionType::Virtual), None).await.unwrap();
    let assigned = backend.assign_session(&session_id, id).await.unwrap();
    assert!(matches!(assigned, AssignOutcome::Assigned(_)), "{assigned:?}");
}

async fn close_server_drains_while_sessions_run(backend: Arc<dyn Backend>) {
    with_session(&backend, "h1").await;
    let refused = backend.close_server("h1", 0).await.unwrap();
    assert_eq!(refused, CloseOutcome::HasSessions, "no deadline: a server with sessions is refused");
    assert!(backend.get_servers(&["h1".into()]).await.unwrap()[0].open, "a refused close changes nothing");

    let seen = backend.server_changes(0, 100).await.unwrap().revision;
    let CloseOutcome::Draining(draining) = backend.close_server("h1", 5_000).await.unwrap() else {
        panic!("a server with sessions and a deadline drains");
    };
    assert!(!draining.open, "a draining server is closed for placement");
    assert_eq!(draining.drain_deadline_unix_ms, 5_000, "with its deadline");
    let changes = backend.server_changes(seen, 100).await.unwrap();
    assert_eq!(ids(&changes.servers), ["h1"], "a drain is a change of the feed");
    assert_eq!(changes.servers[0].drain_deadline_unix_ms, 5_000, "the feed carries the deadline");
    let listed = backend.list_servers("", 10).await.unwrap();
    assert_eq!(listed[0].drain_deadline_unix_ms, 5_000, "listing shows the deadline");
    let reported = backend.upsert_server_report(server("h1"), true, None).await.unwrap();
    assert_eq!((reported.open, reported.drain_deadline_unix_ms), (false, 5_000), "a report keeps the drain");

    backend.insert_session(session("s2", "alice", SessionType::Virtual), None).await.unwrap();
    let refused = backend.assign_session("s2", "h1").await.unwrap();
    assert!(matches!(refused, AssignOutcome::Rejected(_)), "no new session on a draining server: {refused:?}");

    let CloseOutcome::Draining(again) = backend.close_server("h1", 9_000).await.unwrap() else {
        panic!("closing a draining server with sessions again drains");
    };
    assert_eq!(again.drain_deadline_unix_ms, 9_000, "the latest close sets the deadline");
    assert!(!backend.finish_drain("h1", 5_000).await.unwrap(), "a finish for a replaced deadline does nothing");
    assert_eq!(backend.get_servers(&["h1".into()]).await.unwrap()[0].drain_deadline_unix_ms, 9_000);
    assert!(backend.finish_drain("h1", 9_000).await.unwrap(), "the due drain ends");
    let closed = backend.get_servers(&["h1".into()]).await.unwrap().remove(0);
    assert_eq!((closed.open, closed.drain_deadline_unix_ms), (false, 0), "a finished drain leaves it closed");
    assert_eq!(closed.virtual_session_count, 1, "its session runs on");
    assert!(!backend.finish_drain("h1", 9_000).await.unwrap(), "a drain ends once");
    assert!(!backend.finish_drain("nope", 9_000).await.unwrap(), "finishing an unknown server's drain does nothing");

    let already = backend.close_server("h1", 5_000).await.unwrap();
    assert!(
        matches!(&already, CloseOutcome::Closed(s) if !s.open && s.drain_deadline_unix_ms == 0),
        "a closed server stays closed, it does not drain again: {already:?}"
    );
    backend.upsert_server_report(server("h2"), true, None).await.unwrap();
    let idle = backend.close_server("h2", 5_000).await.unwrap();
    assert!(
        matches!(&idle, CloseOutcome::Closed(s) if !s.open && s.drain_deadline_unix_ms == 0),
        "a server without sessions closes at once: {idle:?}"
    );
    let missing = backend.close_server("nope", 5_000).await;
    assert!(matches!(missing, Err(BackendError::NotFound(_))), "close_server on unknown is NotFound: {missing:?}");

    // The session ends: a gentle close of the draining server closes it at once.
    with_session(&backend, "h3").await;
    assert!(matches!(backend.close_server("h3", 5_000).await.unwrap(), CloseOutcome::Draining(_)));
    let mut s3 = backend.get_sessions(&["s-h3".into()]).await.unwrap().remove(0);
    s3.state = switchboard_proto::SessionState::Deleted as i32;
    backend.update_session(s3.clone(), s3.revision, None).await.unwrap();
    let drained = backend.get_servers(&["h3".into()]).await.unwrap().remove(0);
    assert_eq!(drained.virtual_session_count, 0, "the ended session is no longer counted");
    let closed = backend.close_server("h3", 5_000).await.unwrap();
    assert!(
        matches!(&closed, CloseOutcome::Closed(s) if s.drain_deadline_unix_ms == 0),
        "a draining server without sessions closes: {closed:?}"
    );
}

async fn opening_or_forcing_ends_a_drain(backend: Arc<dyn Backend>) {
    with_session(&backend, "h1").await;
    assert!(matches!(backend.close_server("h1", 5_000).await.unwrap(), CloseOutcome::Draining(_)));
    let opened = backend.set_server_open("h1", true).await.unwrap();
    assert_eq!((opened.open, opened.drain_deadline_unix_ms), (true, 0), "opening cancels a drain");
    assert!(!backend.finish_drain("h1", 5_000).await.unwrap(), "a cancelled drain cannot be finished");
    assert!(backend.get_servers(&["h1".into()]).await.unwrap()[0].open, "and the server stays open");

    assert!(matches!(backend.close_server("h1", 6_000).await.unwrap(), CloseOutcome::Draining(_)));
    let forced = backend.set_server_open("h1", false).await.unwrap();
    assert_eq!((forced.open, forced.drain_deadline_unix_ms), (false, 0), "a forced close ends a drain at once");

    // The drain is operator state: forgetting the report keeps it, removing the server does not.
    backend.set_server_open("h1", true).await.unwrap();
    assert!(matches!(backend.close_server("h1", 7_000).await.unwrap(), CloseOutcome::Draining(_)));
    let mut gone = backend.get_sessions(&["s-h1".into()]).await.unwrap().remove(0);
    gone.state = switchboard_proto::SessionState::Deleted as i32;
    backend.update_session(gone.clone(), gone.revision, None).await.unwrap();
    let revision = backend.get_servers(&["h1".into()]).await.unwrap()[0].revision;
    backend.forget_server("h1", revision).await.unwrap();
    let back = backend.upsert_server_report(server("h1"), true, None).await.unwrap();
    assert_eq!((back.open, back.drain_deadline_unix_ms), (false, 7_000), "a forgotten server returns draining");
    backend.remove_server("h1").await.unwrap();
    let new = backend.upsert_server_report(server("h1"), true, None).await.unwrap();
    assert_eq!((new.open, new.drain_deadline_unix_ms), (true, 0), "remove_server forgets the drain");
}
