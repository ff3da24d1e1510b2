//! The one conformance suite every [`Backend`] must pass.
//!
//! Compiled in normal builds (not `cfg(test)`) so each backend's tests, in
//! this crate or another, call [`run_all`] with a factory of fresh backends.
//! Every check panics with a message naming the behaviour that broke.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;

use switchboard_proto::{ServerRecord, SessionRecord, SessionState, SessionType};

use super::{
    ApiClientRecord, AssignOutcome, AssignRejection, AuthServerRecord, Backend, BackendError, SigningKeyRecord,
};

/// Runs every check, each against a fresh backend from `make`.
pub async fn run_all<F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn Backend>>,
{
    insert_and_get_sessions(make().await).await;
    list_sessions_pages_in_id_order(make().await).await;
    update_session_is_compare_and_set(make().await).await;
    remove_session(make().await).await;
    server_counts_are_derived(make().await).await;
    assign_rejections(make().await).await;
    assign_limits(make().await).await;
    concurrent_assigns_respect_limits(make().await).await;
    concurrent_assigns_place_a_session_once(make().await).await;
    super::conformance_counts::owner_session_counts_are_what_assign_checks(make().await).await;
    server_reports_keep_open(make().await).await;
    list_and_remove_servers(make().await).await;
    agent_ownership(make().await).await;
    api_clients(make().await).await;
    signing_keys(make().await).await;
    shared_secrets(make().await).await;
    auth_servers(make().await).await;
    super::conformance_fencing::fenced_writes(make().await).await;
    super::conformance_fencing::forget_server_keeps_open_flag(make().await).await;
    super::conformance_fencing::deleted_sessions_expire(make().await).await;
    super::conformance_queue::server_changes_follow_every_change(make().await).await;
    super::conformance_queue::queue_is_bounded_and_ordered(make().await).await;
    super::conformance_queue::queue_claims_are_exclusive(make().await).await;
    super::conformance_queue::queue_expiry_is_claimed_once(make().await).await;
    super::conformance_agents::software_statements(make().await).await;
    super::conformance_agents::agent_clients(make().await).await;
    super::conformance_agents::tokens_are_used_once(make().await).await;
}

/// A CREATING, unplaced session.
pub fn session(id: &str, owner: &str, session_type: SessionType) -> SessionRecord {
    SessionRecord {
        id: id.to_owned(),
        name: format!("name-{id}"),
        owner: owner.to_owned(),
        r#type: session_type as i32,
        state: SessionState::Creating as i32,
        substate: "SESSION_PLACING".to_owned(),
        ..Default::default()
    }
}

/// A reachable, healthy server report without limits.
pub fn server(id: &str) -> ServerRecord {
    ServerRecord {
        id: id.to_owned(),
        hostname: format!("{id}.example"),
        reachable: true,
        dcv_healthy: true,
        ..Default::default()
    }
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

async fn agent_ownership(backend: Arc<dyn Backend>) {
    assert_eq!(backend.agent_owner("h1").await.unwrap(), None, "no owner before a claim");
    let first = backend.claim_agent("h1", "r1", "http://r1:1", 30_000).await.unwrap();
    assert_eq!(backend.agent_owner("h1").await.unwrap().as_ref(), Some(&first), "claim makes the owner");
    let second = backend.claim_agent("h1", "r2", "http://r2:1", 30_000).await.unwrap();
    assert!(second.epoch > first.epoch, "every claim gets a larger epoch");
    assert_eq!(backend.agent_owner("h1").await.unwrap().unwrap().owner_id, "r2", "the latest claim owns");

    let stale = backend.renew_agent("h1", first.epoch, 30_000).await;
    assert!(matches!(stale, Err(BackendError::Conflict(_))), "renew with a stale epoch is Conflict: {stale:?}");
    let renewed = backend.renew_agent("h1", second.epoch, 60_000).await.unwrap();
    assert_eq!(renewed.epoch, second.epoch, "renew keeps the epoch");
    assert!(renewed.lease_until_ms >= second.lease_until_ms, "renew extends the lease");

    backend.release_agent("h1", first.epoch).await.unwrap();
    assert!(backend.agent_owner("h1").await.unwrap().is_some(), "release with a stale epoch does nothing");
    backend.release_agent("h1", second.epoch).await.unwrap();
    assert_eq!(backend.agent_owner("h1").await.unwrap(), None, "release drops ownership");
    let third = backend.claim_agent("h1", "r1", "http://r1:1", 30_000).await.unwrap();
    assert!(third.epoch > second.epoch, "epochs keep growing after a release");

    backend.claim_agent("h2", "r1", "http://r1:1", -1).await.unwrap();
    assert_eq!(backend.agent_owner("h2").await.unwrap(), None, "an expired lease has no owner");
}

async fn api_clients(backend: Arc<dyn Backend>) {
    let client = |id: &str| ApiClientRecord {
        client_id: id.to_owned(),
        client_name: format!("client {id}"),
        secret_sha256: vec![7; 32],
        created_unix_ms: 42,
        read_only: id == "a",
        allowed_owners: vec![format!("owner-{id}"), "shared".to_owned()],
    };
    backend.insert_api_client(client("b")).await.unwrap();
    backend.insert_api_client(client("a")).await.unwrap();
    let duplicate = backend.insert_api_client(client("a")).await;
    assert!(matches!(duplicate, Err(BackendError::AlreadyExists(_))), "duplicate client: {duplicate:?}");
    assert_eq!(backend.get_api_client("a").await.unwrap(), Some(client("a")), "client round-trips");
    assert_eq!(backend.get_api_client("zz").await.unwrap(), None, "unknown client is None");
    let listed: Vec<String> = backend.list_api_clients().await.unwrap().into_iter().map(|c| c.client_id).collect();
    assert_eq!(listed, ["a", "b"], "clients listed in id order");
    assert!(backend.remove_api_client("a").await.unwrap(), "removing an existing client returns true");
    assert!(!backend.remove_api_client("a").await.unwrap(), "removing a missing client returns false");
    assert_eq!(backend.get_api_client("a").await.unwrap(), None);
}

async fn signing_keys(backend: Arc<dyn Backend>) {
    let key = |kid: &str, created: i64| SigningKeyRecord {
        kid: kid.to_owned(),
        algorithm: "EdDSA".into(),
        private_key_pem: "pem".into(),
        public_jwk_json: "{}".into(),
        created_unix_ms: created,
        active_from_unix_ms: created,
        retired_unix_ms: 0,
    };
    backend.put_signing_key(key("new", 200)).await.unwrap();
    backend.put_signing_key(key("old", 100)).await.unwrap();
    let kids: Vec<String> = backend.list_signing_keys().await.unwrap().into_iter().map(|k| k.kid).collect();
    assert_eq!(kids, ["old", "new"], "signing keys listed oldest first");
    backend.put_signing_key(SigningKeyRecord { retired_unix_ms: 300, ..key("old", 100) }).await.unwrap();
    let keys = backend.list_signing_keys().await.unwrap();
    assert_eq!(keys.len(), 2, "put_signing_key replaces by kid");
    assert_eq!(keys[0].retired_unix_ms, 300, "the replacement is stored");
    backend.remove_signing_key("old").await.unwrap();
    let kids: Vec<String> = backend.list_signing_keys().await.unwrap().into_iter().map(|k| k.kid).collect();
    assert_eq!(kids, ["new"], "remove_signing_key removes");
}

async fn shared_secrets(backend: Arc<dyn Backend>) {
    let first = backend.shared_secret("page-token", vec![1; 32]).await.unwrap();
    assert_eq!(first, vec![1; 32], "shared_secret stores the first candidate");
    let again = backend.shared_secret("page-token", vec![2; 32]).await.unwrap();
    assert_eq!(again, vec![1; 32], "shared_secret never replaces a stored secret");
    let other = backend.shared_secret("other", vec![3; 16]).await.unwrap();
    assert_eq!(other, vec![3; 16], "shared secrets are kept per name");

    // Racing callers all get the same (first stored) value.
    let racers: Vec<_> = (0..8u8)
        .map(|i| {
            let backend = backend.clone();
            tokio::spawn(async move { backend.shared_secret("raced", vec![i; 32]).await.unwrap() })
        })
        .collect();
    let mut seen = HashSet::new();
    for racer in racers {
        seen.insert(racer.await.unwrap());
    }
    assert_eq!(seen.len(), 1, "every racer of shared_secret gets the same secret");
}

async fn auth_servers(backend: Arc<dyn Backend>) {
    let server = |url: &str, algorithm: &str| AuthServerRecord {
        url: url.to_owned(),
        algorithm: algorithm.to_owned(),
        issuer: format!("iss {url}"),
        audience: "api".to_owned(),
        created_unix_ms: 7,
    };
    assert!(backend.list_auth_servers().await.unwrap().is_empty(), "no auth servers at first");
    backend.put_auth_server(server("https://b/jwks", "RS256")).await.unwrap();
    backend.put_auth_server(server("https://a/jwks", "")).await.unwrap();
    let listed = backend.list_auth_servers().await.unwrap();
    assert_eq!(listed, [server("https://a/jwks", ""), server("https://b/jwks", "RS256")], "listed in url order");
    backend.put_auth_server(server("https://a/jwks", "ES256")).await.unwrap();
    let listed = backend.list_auth_servers().await.unwrap();
    assert_eq!(listed.len(), 2, "put_auth_server replaces by url");
    assert_eq!(listed[0].algorithm, "ES256", "the replacement is stored");
    assert!(backend.remove_auth_server("https://a/jwks").await.unwrap(), "removing a registered server: true");
    assert!(!backend.remove_auth_server("https://a/jwks").await.unwrap(), "removing a missing server: false");
    let urls: Vec<String> = backend.list_auth_servers().await.unwrap().into_iter().map(|s| s.url).collect();
    assert_eq!(urls, ["https://b/jwks"]);
}
