//! Deleting sessions: DELETING at once, DELETED when the host confirms.
//!
//! Forced deletes and sessions never placed on a host become DELETED at once;
//! a session waiting in the create-sessions queue also leaves the queue.
//! Otherwise the session turns DELETING and a background task sends a
//! `CloseSessionCommand` to its host; if the host fails the command the
//! session stays DELETING (with the reason) until the host's inventory no
//! longer lists it (see `agent_link::reconcile`).

use std::sync::Arc;

use switchboard_proto::host_command::Action;
use switchboard_proto::{
    CloseSessionCommand, CommandErrorKind, DeleteSessionItem, HostCommand, SessionRecord, SessionState,
};
use tonic::Status;

use crate::routing::CommandRouter;
use switchboard_proto::contract::SESSION_NOT_FOUND;
use switchboard_store::{Backend, BackendError, BackendResult};

use crate::service::{deleted, store_status};

/// Attempts at a compare-and-set transition before giving up.
const CAS_ATTEMPTS: usize = 5;

/// Starts deleting one session. `Ok(Err(reason))` is a per-item failure.
pub(crate) async fn start(
    backend: &Arc<dyn Backend>,
    router: &Arc<CommandRouter>,
    item: &DeleteSessionItem,
) -> Result<Result<SessionState, String>, Status> {
    let not_found = || Ok(Err(SESSION_NOT_FOUND.to_owned()));
    let current = backend.get_sessions(std::slice::from_ref(&item.session_id)).await.map_err(store_status)?;
    let Some(current) = current.into_iter().next() else { return not_found() };
    // An owner mismatch answers like an unknown id: existence is not leaked.
    if current.state() == SessionState::Deleted || current.owner != item.owner {
        return not_found();
    }
    let immediate = item.force || (current.state() == SessionState::Creating && current.server_id.is_empty());
    let stored = transition(&**backend, &item.session_id, |session| match session.state() {
        SessionState::Deleted => None,
        _ if immediate => Some(deleted(session.clone(), "")),
        SessionState::Deleting => None,
        _ => {
            let mut next = session.clone();
            next.state = SessionState::Deleting as i32;
            next.state_reason.clear();
            Some(next)
        }
    })
    .await
    .map_err(store_status)?;
    let Some(stored) = stored else { return not_found() };
    if stored.state() == SessionState::Deleted && stored.server_id.is_empty() {
        // A session waiting in the create-sessions queue: cancel its entry.
        // (Placement also drops entries whose session is gone, so a failure
        // here only delays that.)
        if let Err(error) = backend.queue_remove(&stored.id).await {
            tracing::warn!(session_id = %stored.id, %error, "could not remove the queue entry of a deleted session");
        }
    }
    if stored.state() == SessionState::Deleting && !stored.server_id.is_empty() {
        tokio::spawn(close_on_host(backend.clone(), router.clone(), stored.id.clone(), stored.server_id.clone()));
    }
    Ok(Ok(stored.state()))
}

/// Sends the close command and records the outcome.
async fn close_on_host(backend: Arc<dyn Backend>, router: Arc<CommandRouter>, session_id: String, server_id: String) {
    let command = HostCommand {
        command_id: String::new(),
        action: Some(Action::Close(CloseSessionCommand { session_id: session_id.clone() })),
    };
    let failure = match router.send(&server_id, command, None, false).await {
        Ok(result) if result.error.is_empty() || result.error_kind() == CommandErrorKind::SessionNotFound => None,
        Ok(result) => Some(result.error),
        Err(status) => Some(format!("could not reach the host: {}", status.message())),
    };
    let outcome = transition(&*backend, &session_id, |session| {
        if session.state() != SessionState::Deleting {
            return None;
        }
        match &failure {
            None => Some(deleted(session.clone(), "")),
            Some(reason) => {
                let mut next = session.clone();
                next.state_reason = reason.clone();
                Some(next)
            }
        }
    })
    .await;
    match (outcome, failure) {
        (Err(error), _) => tracing::warn!(session_id, server_id, %error, "could not record close outcome"),
        (Ok(_), Some(reason)) => tracing::warn!(session_id, server_id, reason, "host did not close session"),
        (Ok(_), None) => tracing::info!(session_id, server_id, "session closed"),
    }
}

/// Applies `change` with compare-and-set, re-reading on conflict. Returns the
/// stored record afterwards (unchanged when `change` declines), `None` if the
/// session does not exist.
pub(crate) async fn transition(
    backend: &dyn Backend,
    session_id: &str,
    change: impl Fn(&SessionRecord) -> Option<SessionRecord>,
) -> BackendResult<Option<SessionRecord>> {
    for _ in 0..CAS_ATTEMPTS {
        let Some(current) = backend.get_sessions(&[session_id.to_owned()]).await?.into_iter().next() else {
            return Ok(None);
        };
        let Some(next) = change(&current) else { return Ok(Some(current)) };
        match backend.update_session(next, current.revision, None).await {
            Ok(stored) => return Ok(Some(stored)),
            Err(BackendError::Conflict(_)) => continue,
            Err(BackendError::NotFound(_)) => return Ok(None),
            Err(error) => return Err(error),
        }
    }
    Err(BackendError::Conflict(format!("session {session_id} kept changing")))
}
