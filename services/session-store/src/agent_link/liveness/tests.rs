//! The sweep against the embedded backend, with explicit clocks (no sleeps).

use switchboard_proto::{ServerRecord, SessionState, SessionType};

use super::*;
use switchboard_store::conformance::{server, session};
use switchboard_store::embedded::EmbeddedBackend;
use switchboard_store::{Servers, Sessions, StreamOwnership};

fn config() -> StoreConfig {
    let timers = crate::Timers {
        seconds_before_deleting_sessions_unreachable_server: 10,
        seconds_before_deleting_unreachable_server: 20,
        deleted_session_retention_seconds: 5,
        ..crate::Timers::default()
    };
    StoreConfig { timers, ..StoreConfig::default() }
}

async fn ready_session_on(backend: &EmbeddedBackend, id: &str, server_id: &str) {
    backend.insert_session(session(id, "alice", SessionType::Virtual), None).await.unwrap();
    backend.assign_session(id, server_id).await.unwrap();
    let mut record = backend.get_sessions(&[id.into()]).await.unwrap().remove(0);
    record.state = SessionState::Ready as i32;
    backend.update_session(record, 2, None).await.unwrap();
}

/// A command router with no agent stream: every close is `NotSent` (the host keeps DELETING sessions).
fn no_hosts(backend: &Arc<dyn Backend>) -> Arc<dyn HostCommands> {
    let hub = Arc::new(crate::agent_link::hub::AgentHub::default());
    Arc::new(crate::routing::CommandRouter::new("r1".into(), backend.clone(), hub, Duration::from_secs(1)))
}

async fn state(backend: &EmbeddedBackend, id: &str) -> SessionState {
    backend.get_sessions(&[id.into()]).await.unwrap().remove(0).state()
}

#[tokio::test]
async fn a_lapsed_lease_makes_the_server_unreachable_and_its_sessions_unknown() {
    let backend = EmbeddedBackend::in_memory().unwrap();
    backend.claim_agent("lapsed", "r1", "http://r1", -1).await.unwrap();
    backend.claim_agent("live", "r1", "http://r1", 60_000).await.unwrap();
    for id in ["lapsed", "live"] {
        let report = ServerRecord { last_seen_unix_ms: now_ms(), ..server(id) };
        backend.upsert_server_report(report, true, None).await.unwrap();
    }
    ready_session_on(&backend, "s1", "lapsed").await;
    ready_session_on(&backend, "s2", "live").await;

    let outcome = sweep(&backend, &config(), now_ms()).await.unwrap();
    assert_eq!(outcome.marked_unreachable, 1, "only the host without a live lease: {outcome:?}");
    let servers = backend.get_servers(&["lapsed".into(), "live".into()]).await.unwrap();
    assert!(!servers[0].reachable && servers[1].reachable);
    assert_eq!(state(&backend, "s1").await, SessionState::Unknown, "READY sessions of a gone host are UNKNOWN");
    assert_eq!(state(&backend, "s2").await, SessionState::Ready);
    let again = sweep(&backend, &config(), now_ms()).await.unwrap();
    assert_eq!(again, SweepOutcome::default(), "sweeping again changes nothing");
}

#[tokio::test]
async fn long_gone_hosts_lose_their_sessions_then_are_forgotten() {
    let backend = EmbeddedBackend::in_memory().unwrap();
    let gone = ServerRecord { reachable: false, last_seen_unix_ms: 1_000, ..server("gone") };
    backend.upsert_server_report(server("gone"), true, None).await.unwrap();
    ready_session_on(&backend, "s1", "gone").await;
    backend.upsert_server_report(gone, true, None).await.unwrap();
    backend.set_server_open("gone", false).await.unwrap();

    let early = sweep(&backend, &config(), 1_000 + 9_000).await.unwrap();
    assert_eq!(early, SweepOutcome::default(), "nothing happens before the thresholds");

    let sessions_due = sweep(&backend, &config(), 1_000 + 11_000).await.unwrap();
    assert_eq!(sessions_due.sessions_deleted, 1, "{sessions_due:?}");
    assert_eq!(sessions_due.servers_forgotten, 0, "the server stays until its own threshold");
    assert_eq!(state(&backend, "s1").await, SessionState::Deleted);

    let server_due = sweep(&backend, &config(), 1_000 + 21_000).await.unwrap();
    assert_eq!(server_due.servers_forgotten, 1, "{server_due:?}");
    assert!(backend.get_servers(&["gone".into()]).await.unwrap().is_empty(), "the server is forgotten");
    let back = backend.upsert_server_report(server("gone"), true, None).await.unwrap();
    assert!(!back.open, "a forgotten server returns with its open flag");
}

#[tokio::test]
async fn deleted_sessions_expire_after_the_retention() {
    let backend = EmbeddedBackend::in_memory().unwrap();
    let stored = backend.insert_session(session("s1", "alice", SessionType::Virtual), None).await.unwrap();
    let ended = crate::lifecycle::deleted(stored, "done", now_ms());
    let ended_at = ended.ended_unix_ms;
    backend.update_session(ended, 1, None).await.unwrap();
    let kept = sweep(&backend, &config(), ended_at + 4_000).await.unwrap();
    assert_eq!(kept.sessions_expired, 0, "kept during the retention");
    let expired = sweep(&backend, &config(), ended_at + 6_000).await.unwrap();
    assert_eq!(expired.sessions_expired, 1, "removed after it");
    assert!(backend.get_sessions(&["s1".into()]).await.unwrap().is_empty());
}

/// The sweep loop itself, on tokio's paused clock (`switchboard_common::time::follow_tokio_clock`): a
/// DELETED record goes after the retention, and an unplaced CREATING session (its placement replica died)
/// ends after the stalled bound with a StateReason, each within one sweep of its time and not before.
#[tokio::test(start_paused = true)]
async fn the_loop_expires_deleted_records_and_ends_abandoned_creates_on_time() {
    switchboard_common::time::follow_tokio_clock();
    let backend: Arc<dyn Backend> = Arc::new(EmbeddedBackend::in_memory().unwrap());
    let stored = backend.insert_session(session("gone", "alice", SessionType::Virtual), None).await.unwrap();
    backend.update_session(crate::lifecycle::deleted(stored, "done", now_ms()), 1, None).await.unwrap();
    let abandoned =
        SessionRecord { state_since_unix_ms: now_ms(), ..session("abandoned", "bob", SessionType::Virtual) };
    backend.insert_session(abandoned, None).await.unwrap();
    let mut config = config();
    config.update_interval_seconds = 1;
    config.timers.stalled_session_seconds = 20;
    let shutdown = Shutdown::new();
    let task = tokio::spawn(run(backend.clone(), no_hosts(&backend), config, shutdown.clone()));

    let exists = |id: &'static str| {
        let backend = backend.clone();
        async move { !backend.get_sessions(&[id.into()]).await.unwrap().is_empty() }
    };
    tokio::time::sleep(Duration::from_millis(4_500)).await;
    assert!(exists("gone").await, "kept during the 5 s retention");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!exists("gone").await, "removed by the first sweep after it");

    let abandoned = || {
        let backend = backend.clone();
        async move { backend.get_sessions(&["abandoned".into()]).await.unwrap().remove(0) }
    };
    tokio::time::sleep(Duration::from_secs(13)).await; // 19.5 s
    assert_eq!(abandoned().await.state(), SessionState::Creating, "waiting within the bound");
    tokio::time::sleep(Duration::from_secs(3)).await; // the unplaced scan at 21 s, every half bound
    let ended = abandoned().await;
    assert_eq!(ended.state(), SessionState::Deleted, "ended past the 20 s bound");
    assert!(ended.state_reason.contains("placement did not finish within 20 s"), "{}", ended.state_reason);
    shutdown.cancel();
    task.await.unwrap();
}

#[tokio::test]
async fn a_drain_ends_with_the_last_session_or_at_the_deadline() {
    let backend = EmbeddedBackend::in_memory().unwrap();
    for id in ["emptied", "busy"] {
        backend.claim_agent(id, "r1", "http://r1", 60_000).await.unwrap();
        let report = ServerRecord { last_seen_unix_ms: now_ms(), ..server(id) };
        backend.upsert_server_report(report, true, None).await.unwrap();
    }
    ready_session_on(&backend, "s1", "emptied").await;
    ready_session_on(&backend, "s2", "busy").await;
    let now = now_ms();
    let deadline = now + 60_000;
    for id in ["emptied", "busy"] {
        let outcome = backend.close_server(id, deadline).await.unwrap();
        assert!(matches!(outcome, switchboard_store::CloseOutcome::Draining(_)), "{outcome:?}");
    }
    let drain = |id: &'static str| {
        let backend = &backend;
        async move {
            let server = backend.get_servers(&[id.into()]).await.unwrap().remove(0);
            (server.open, server.drain_deadline_unix_ms)
        }
    };

    let outcome = sweep(&backend, &config(), now).await.unwrap();
    assert_eq!(outcome.drains_finished, 0, "sessions run and the deadline is ahead: {outcome:?}");
    assert_eq!(drain("emptied").await, (false, deadline));

    let mut s1 = backend.get_sessions(&["s1".into()]).await.unwrap().remove(0);
    s1.state = SessionState::Deleted as i32;
    backend.update_session(s1.clone(), s1.revision, None).await.unwrap();
    let outcome = sweep(&backend, &config(), now).await.unwrap();
    assert_eq!(outcome.drains_finished, 1, "the server whose last session ended: {outcome:?}");
    assert_eq!(drain("emptied").await, (false, 0), "closed, no longer draining");
    assert_eq!(drain("busy").await, (false, deadline), "the other still drains");

    let outcome = sweep(&backend, &config(), deadline).await.unwrap();
    assert_eq!(outcome.drains_finished, 1, "at the deadline: {outcome:?}");
    assert_eq!(drain("busy").await, (false, 0), "closed as with Force");
    assert_eq!(state(&backend, "s2").await, SessionState::Ready, "its session keeps running");
    let again = sweep(&backend, &config(), deadline).await.unwrap();
    assert_eq!(again.drains_finished, 0, "a drain ends once");
}
