//! Sessions: the per-owner counts the placement pre-check reads are exactly what the assignment checks.

use std::sync::Arc;

use switchboard_proto::{ServerRecord, SessionState, SessionType};

use super::{server, session};
use crate::{AssignOutcome, AssignRejection, Backend, BackendError, OWNER_COUNTS_MAX_SERVERS};

fn ids(ids: &[&str]) -> Vec<String> {
    ids.iter().map(|id| (*id).to_owned()).collect()
}

async fn counts(backend: &dyn Backend, owner: &str, servers: &[&str]) -> Vec<u32> {
    backend.owner_session_counts(owner, &ids(servers)).await.expect("owner_session_counts failed")
}

async fn assign(backend: &dyn Backend, session_id: &str, server_id: &str) -> AssignOutcome {
    backend.assign_session(session_id, server_id).await.expect("assign_session failed")
}

/// Inserts a session of `owner` and assigns it to `server_id`.
async fn placed(backend: &dyn Backend, id: &str, owner: &str, session_type: SessionType, server_id: &str) {
    backend.insert_session(session(id, owner, session_type), None).await.unwrap();
    let outcome = assign(backend, id, server_id).await;
    assert!(matches!(outcome, AssignOutcome::Assigned(_)), "{id} on {server_id}: {outcome:?}");
}

/// Marks a session DELETED.
async fn end(backend: &dyn Backend, id: &str) {
    let mut stored = backend.get_sessions(&[id.to_owned()]).await.unwrap().remove(0);
    stored.state = SessionState::Deleted as i32;
    stored.ended_unix_ms = 1;
    let revision = stored.revision;
    backend.update_session(stored, revision, None).await.unwrap();
}

pub(super) async fn owner_session_counts_are_what_assign_checks(backend: Arc<dyn Backend>) {
    let backend = &*backend;
    assert!(counts(backend, "alice", &[]).await.is_empty(), "no ids, no counts");
    assert_eq!(counts(backend, "alice", &["a", "nowhere"]).await, [0, 0], "unknown servers count 0");

    let limited = |id: &str, limit: u32| ServerRecord { max_concurrent_sessions_per_user: limit, ..server(id) };
    for record in [limited("a", 2), limited("b", 1), server("c")] {
        backend.upsert_server_report(record, true, None).await.unwrap();
    }
    placed(backend, "s1", "alice", SessionType::Virtual, "a").await;
    placed(backend, "s2", "alice", SessionType::Virtual, "a").await;
    placed(backend, "s3", "alice", SessionType::Virtual, "b").await;
    placed(backend, "s4", "bob", SessionType::Virtual, "a").await;
    placed(backend, "k1", "carol", SessionType::Console, "c").await;
    // Created but never placed: on no server, counted nowhere.
    backend.insert_session(session("waiting", "alice", SessionType::Virtual), None).await.unwrap();

    let all = ["a", "b", "c", "nowhere"];
    assert_eq!(counts(backend, "alice", &all).await, [2, 1, 0, 0], "the owner's sessions per server, in order");
    assert_eq!(counts(backend, "bob", &all).await, [1, 0, 0, 0], "another owner's sessions do not count");
    assert_eq!(counts(backend, "carol", &all).await, [0, 0, 1, 0], "console sessions count too");
    assert_eq!(counts(backend, "dave", &all).await, [0, 0, 0, 0], "an owner without sessions counts 0");
    assert_eq!(counts(backend, "alice", &["b", "a", "b"]).await, [1, 2, 1], "repeated ids are answered each time");
    assert_eq!(counts(backend, "Alice", &["a"]).await, [0], "owners are compared exactly");

    // At the count, assign_session refuses the owner; below it, it assigns.
    let refused = AssignOutcome::Rejected(AssignRejection::UserLimit);
    assert_eq!(assign(backend, "waiting", "a").await, refused, "alice at 2 of 2 on a");
    assert_eq!(assign(backend, "waiting", "b").await, refused, "alice at 1 of 1 on b");
    assert_eq!(counts(backend, "alice", &all).await, [2, 1, 0, 0], "a refusal changes no count");
    placed(backend, "s5", "bob", SessionType::Virtual, "a").await;
    assert_eq!(counts(backend, "bob", &["a"]).await, [2], "bob's second session on a");
    backend.insert_session(session("bob-3", "bob", SessionType::Virtual), None).await.unwrap();
    assert_eq!(assign(backend, "bob-3", "a").await, refused, "bob now at 2 of 2 on a");

    // A DELETED session stops counting: the owner fits again.
    end(backend, "s1").await;
    assert_eq!(counts(backend, "alice", &["a"]).await, [1], "DELETED sessions do not count");
    assert!(matches!(assign(backend, "waiting", "a").await, AssignOutcome::Assigned(_)), "below the limit again");
    assert_eq!(counts(backend, "alice", &["a"]).await, [2], "the assignment counts");
    // So does a removed one, and a DELETED one removed afterwards stays uncounted.
    backend.remove_session("s3").await.unwrap();
    backend.remove_session("s1").await.unwrap();
    assert_eq!(counts(backend, "alice", &all).await, [2, 0, 0, 0], "removed sessions do not count");
    placed(backend, "s6", "alice", SessionType::Virtual, "b").await;
    assert_eq!(counts(backend, "alice", &["b"]).await, [1]);

    // Counted up to the limit and refused exactly at it, step by step.
    backend.upsert_server_report(limited("d", 3), true, None).await.unwrap();
    for n in 0..3 {
        assert_eq!(counts(backend, "erin", &["d"]).await, [n], "erin's count before session {n}");
        placed(backend, &format!("e{n}"), "erin", SessionType::Virtual, "d").await;
    }
    assert_eq!(counts(backend, "erin", &["d"]).await, [3]);
    backend.insert_session(session("e3", "erin", SessionType::Virtual), None).await.unwrap();
    assert_eq!(assign(backend, "e3", "d").await, refused, "refused exactly at the counted limit");

    let most = vec!["a".to_owned(); OWNER_COUNTS_MAX_SERVERS];
    let answered = backend.owner_session_counts("alice", &most).await.expect("the bound itself is accepted");
    assert_eq!((answered.len(), answered[0]), (OWNER_COUNTS_MAX_SERVERS, 2));
    let too_many = vec!["a".to_owned(); OWNER_COUNTS_MAX_SERVERS + 1];
    let refused = backend.owner_session_counts("alice", &too_many).await;
    assert!(matches!(refused, Err(BackendError::InvalidArgument(_))), "over the bound: {refused:?}");
}
