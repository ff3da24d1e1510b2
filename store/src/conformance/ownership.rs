//! StreamOwnership: claims, renewals and releases by epoch, and fenced writes.

use std::sync::Arc;

use switchboard_proto::{ServerRecord, SessionState, SessionType};

use super::{server, session};
use crate::{Backend, BackendError, Fence};

/// Every ownership check, each against a fresh backend from `make`.
pub(super) async fn run<F, Fut>(make: &F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Arc<dyn Backend>>,
{
    agent_ownership(make().await).await;
    fenced_writes(make().await).await;
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

pub(super) fn is_fenced<T: std::fmt::Debug>(result: &Result<T, BackendError>) -> bool {
    matches!(result, Err(BackendError::Fenced(_)))
}

async fn fenced_writes(backend: Arc<dyn Backend>) {
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
