//! Marks servers whose agent went quiet as unreachable.
//!
//! A stream that dies without cleanup (replica crash, network partition)
//! leaves its server looking reachable; this sweep catches it by `last_seen`.
//! It is idempotent and uses compare-and-set writes, so every replica runs it.

use std::sync::Arc;
use std::time::Duration;

use switchboard_common::Shutdown;

use crate::backend::{Backend, BackendResult};

/// Servers fetched per page while sweeping.
const PAGE: usize = 500;

/// Sweeps once: every reachable server last seen before `stale_before_ms` is
/// marked unreachable (and its READY sessions UNKNOWN). Returns how many.
pub async fn sweep(backend: &dyn Backend, stale_before_ms: i64, default_open: bool) -> BackendResult<usize> {
    let mut after_id = String::new();
    let mut marked = 0;
    loop {
        let page = backend.list_servers(&after_id, PAGE).await?;
        let Some(last) = page.last() else { break };
        after_id = last.id.clone();
        let full = page.len() == PAGE;
        for server in page {
            if server.reachable && server.last_seen_unix_ms < stale_before_ms {
                tracing::info!(server_id = %server.id, "agent silent; marking server unreachable");
                super::mark_unreachable(backend, server, default_open).await?;
                marked += 1;
            }
        }
        if !full {
            break;
        }
    }
    Ok(marked)
}

/// Runs [`sweep`] every `update_interval` until `shutdown`, with servers
/// silent for two intervals counting as stale.
pub async fn run(backend: Arc<dyn Backend>, update_interval: Duration, default_open: bool, shutdown: Shutdown) {
    let mut tick = tokio::time::interval(update_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let max_silence_ms = i64::try_from(update_interval.as_millis() * 2).unwrap_or(i64::MAX);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let stale_before = switchboard_common::time::now_ms().saturating_sub(max_silence_ms);
        if let Err(error) = sweep(&*backend, stale_before, default_open).await {
            tracing::warn!(%error, "liveness sweep failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use switchboard_proto::{ServerRecord, SessionState, SessionType};

    use super::*;
    use crate::backend::conformance::{server, session};
    use crate::backend::embedded::EmbeddedBackend;

    #[tokio::test]
    async fn silent_servers_become_unreachable_and_their_sessions_unknown() {
        let backend = EmbeddedBackend::in_memory().unwrap();
        backend.upsert_server_report(ServerRecord { last_seen_unix_ms: 100, ..server("old") }, true).await.unwrap();
        backend.upsert_server_report(ServerRecord { last_seen_unix_ms: 900, ..server("fresh") }, true).await.unwrap();
        backend.insert_session(session("s1", "alice", SessionType::Virtual)).await.unwrap();
        backend.assign_session("s1", "old").await.unwrap();
        let mut s1 = backend.get_sessions(&["s1".into()]).await.unwrap().remove(0);
        s1.state = SessionState::Ready as i32;
        backend.update_session(s1, 2).await.unwrap();

        assert_eq!(sweep(&backend, 500, true).await.unwrap(), 1, "only the silent server is marked");
        let servers = backend.get_servers(&["old".into(), "fresh".into()]).await.unwrap();
        assert!(!servers[0].reachable && servers[1].reachable);
        let s1 = backend.get_sessions(&["s1".into()]).await.unwrap().remove(0);
        assert_eq!(s1.state(), SessionState::Unknown, "READY sessions of an unreachable host are UNKNOWN");
        assert_eq!(sweep(&backend, 500, true).await.unwrap(), 0, "sweeping again changes nothing");
    }
}
