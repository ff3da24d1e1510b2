//! Deleting sessions: DELETING at once, DELETED when the host confirms.
//!
//! Forced deletes and sessions never placed on a host become DELETED at once;
//! a session waiting in the create-sessions queue also leaves the queue.
//! Otherwise the session turns DELETING and a background task sends a
//! `CloseSessionCommand` to its host; if the host fails the command the
//! session stays DELETING (with the reason) until the host's inventory no
//! longer lists it (see `agent_link::reconcile`).
//!
//! The reaper (idle and lifetime limits, `lifecycle::reap`) deletes through the same path: [`reap`] makes
//! the session DELETING and sends the same close.

use std::sync::Arc;

use switchboard_proto::host_command::Action;
use switchboard_proto::{CloseSessionCommand, CommandErrorKind, DeleteSessionItem, HostCommand, SessionState};
use tonic::Status;

use crate::lifecycle;
use crate::lifecycle::reap::ReapPolicy;
use crate::routing::HostCommands;
use crate::service::store_status;
use switchboard_proto::contract::SESSION_NOT_FOUND;
use switchboard_store::Backend;

/// Starts deleting one session. `Ok(Err(reason))` is a per-item failure.
pub(crate) async fn start(
    backend: &Arc<dyn Backend>,
    hosts: &Arc<dyn HostCommands>,
    item: &DeleteSessionItem,
) -> Result<Result<SessionState, String>, Status> {
    let not_found = || Ok(Err(SESSION_NOT_FOUND.to_owned()));
    let applied = lifecycle::apply(&**backend, &item.session_id, None, |record, now| {
        // An owner mismatch answers like an unknown id: existence is not leaked.
        if record.owner != item.owner {
            return None;
        }
        lifecycle::delete_requested(record, item.force, now)
    })
    .await
    .map_err(store_status)?;
    let Some(applied) = applied else { return not_found() };
    let stored = applied.record;
    if stored.owner != item.owner || (stored.state() == SessionState::Deleted && !applied.changed) {
        return not_found();
    }
    if stored.state() == SessionState::Deleted && stored.server_id.is_empty() {
        // A session waiting in the create-sessions queue: cancel its entry.
        // (Placement also drops entries whose session is gone, so a failure
        // here only delays that.)
        if let Err(error) = backend.queue_remove(&stored.id).await {
            tracing::warn!(session_id = %stored.id, %error, "could not remove the queue entry of a deleted session");
        }
    }
    if applied.changed && stored.state() == SessionState::Deleting {
        let close = close_on_host(backend.clone(), hosts.clone(), stored.id.clone(), stored.server_id.clone());
        tokio::spawn(tracing::Instrument::in_current_span(close));
    }
    Ok(Ok(stored.state()))
}

/// Reaps one session whose limit is due under `policy`: DELETING (compare-and-set: a connection or a
/// DeleteSessions in between wins), then the close as for DeleteSessions. The reap's reason if this call
/// started it.
pub(crate) async fn reap(
    backend: &Arc<dyn Backend>,
    hosts: &Arc<dyn HostCommands>,
    session_id: &str,
    policy: &ReapPolicy,
) -> switchboard_store::BackendResult<Option<String>> {
    let applied =
        lifecycle::apply(&**backend, session_id, None, |record, now| lifecycle::reap::reaped(record, policy, now))
            .await?;
    let Some(stored) = applied.filter(|applied| applied.changed).map(|applied| applied.record) else {
        return Ok(None);
    };
    let close = close_on_host(backend.clone(), hosts.clone(), stored.id.clone(), stored.server_id.clone());
    tokio::spawn(tracing::Instrument::in_current_span(close));
    Ok(Some(stored.reap_reason))
}

/// Sends the close command and records the outcome. A failed close keeps the session DELETING with the
/// reason; the owner of the host's stream sends it again while the host lists the session (with backoff,
/// up to the stalled bound: see `agent_link::reconcile`).
async fn close_on_host(backend: Arc<dyn Backend>, hosts: Arc<dyn HostCommands>, session_id: String, server_id: String) {
    let command = HostCommand {
        command_id: String::new(),
        action: Some(Action::Close(CloseSessionCommand { session_id: session_id.clone() })),
        traceparent: String::new(),
    };
    let failure = match hosts.send(&server_id, command, None, false).await {
        Ok(result) if result.error.is_empty() || result.error_kind() == CommandErrorKind::SessionNotFound => None,
        Ok(result) => Some(result.error),
        Err(failure) => Some(format!("could not reach the host: {}", Status::from(failure).message())),
    };
    let outcome = lifecycle::apply(&*backend, &session_id, None, |record, now| match &failure {
        None => lifecycle::closed(record, now),
        Some(reason) => lifecycle::close_failed(record, reason),
    })
    .await;
    match (outcome, failure) {
        (Err(error), _) => tracing::warn!(session_id, server_id, %error, "could not record close outcome"),
        (Ok(_), Some(reason)) => tracing::warn!(session_id, server_id, reason, "host did not close session"),
        (Ok(_), None) => tracing::info!(session_id, server_id, "session closed"),
    }
}
