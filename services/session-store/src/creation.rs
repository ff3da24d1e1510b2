//! Creating sessions: `StartSession` carries one attempt on a host to its outcome, `SettleUnplaced` ends
//! (or notes the queueing of) a session placement could not place. The transitions are the lifecycle's.

use std::sync::Arc;
use std::time::Duration;

use switchboard_proto::host_command::Action;
use switchboard_proto::{
    CreateSessionCommand, HostCommand, SessionRecord, SessionState, SettleUnplacedRequest, SettleUnplacedResponse,
    StartSessionRequest, StartSessionResponse, command_result::Payload, settle_unplaced_request,
    start_session_response::Outcome,
};
use tonic::Status;

use crate::Error;
use crate::lifecycle;
use crate::routing::{HostCommands, SendFailure};
use crate::service::store_status;
use switchboard_store::Backend;

/// One attempt: restart the clock (only while the session is CREATING on that host), send the create
/// command, record what came of it.
pub(crate) async fn start(
    backend: &dyn Backend,
    hosts: &Arc<dyn HostCommands>,
    request: StartSessionRequest,
) -> Result<StartSessionResponse, Status> {
    let StartSessionRequest { session_id, server_id, timeout_ms, last_attempt } = request;
    let answer = |outcome: Outcome, reason: String| StartSessionResponse { outcome: outcome as i32, reason };
    let started =
        lifecycle::apply(backend, &session_id, None, |record, now| lifecycle::starting(record, &server_id, now))
            .await
            .map_err(store_status)?;
    let Some(started) = started.filter(|applied| applied.changed) else {
        return Ok(answer(Outcome::Gone, String::new()));
    };
    let command = HostCommand {
        command_id: String::new(),
        action: Some(Action::Create(CreateSessionCommand {
            session_id: session_id.clone(),
            spec: started.record.spec.clone(),
        })),
        traceparent: String::new(),
    };
    let timeout = (timeout_ms > 0).then(|| Duration::from_millis(u64::from(timeout_ms)));
    let (outcome, reason) = match hosts.send(&server_id, command, timeout, false).await {
        Ok(result) if result.error.is_empty() => {
            let host = match result.payload {
                Some(Payload::Session(host)) => Some(host),
                _ => None,
            };
            let applied = lifecycle::apply(backend, &session_id, None, |record, now| {
                lifecycle::created(record, &server_id, host.as_ref(), now)
            })
            .await
            .map_err(store_status)?;
            // READY already when the host's inventory confirmed it first.
            let ready = |r: &SessionRecord| r.state() == SessionState::Ready && r.server_id == server_id;
            return Ok(match applied {
                Some(applied) if applied.changed || ready(&applied.record) => answer(Outcome::Ready, String::new()),
                _ => answer(Outcome::Gone, String::new()),
            });
        }
        Ok(result) => (definite_failure(last_attempt), result.error),
        Err(SendFailure::NotSent(status)) => (definite_failure(last_attempt), not_sent(&status)),
        Err(SendFailure::Unknown(status)) => (Outcome::Unconfirmed, unknown(&status)),
    };
    let reason = format!("session creation failed on server {server_id}: {reason}");
    let applied = lifecycle::apply(backend, &session_id, None, |record, now| match outcome {
        Outcome::Retry => lifecycle::retry_elsewhere(record, &server_id, &reason, now),
        Outcome::Ended => lifecycle::fail_on(record, &server_id, &reason, now),
        _ => lifecycle::unconfirmed(record, &server_id, &reason, now),
    })
    .await
    .map_err(store_status)?;
    match applied {
        Some(applied) if applied.changed => {
            tracing::warn!(session_id, server_id, ?outcome, reason, "host did not create the session");
            Ok(answer(outcome, reason))
        }
        _ => Ok(answer(Outcome::Gone, String::new())),
    }
}

fn definite_failure(last_attempt: bool) -> Outcome {
    if last_attempt { Outcome::Ended } else { Outcome::Retry }
}

fn not_sent(status: &Status) -> String {
    match status.code() {
        tonic::Code::NotFound => "the host is not known".to_owned(),
        _ => "the host's agent is not connected".to_owned(),
    }
}

fn unknown(status: &Status) -> String {
    match status.code() {
        tonic::Code::DeadlineExceeded => "timed out waiting for the host".to_owned(),
        code => format!("the command may not have been delivered ({code:?}: {})", status.message()),
    }
}

/// Ends an unplaced CREATING session, or notes that it waits in the queue.
pub(crate) async fn settle_unplaced(
    backend: &dyn Backend,
    request: SettleUnplacedRequest,
) -> Result<SettleUnplacedResponse, Status> {
    let action = request.action();
    if action == settle_unplaced_request::Action::Unspecified {
        return Err(Error::Contract("action is required".to_owned()).into());
    }
    let SettleUnplacedRequest { session_id, reason, .. } = request;
    let applied = lifecycle::apply(backend, &session_id, None, |record, now| match action {
        settle_unplaced_request::Action::Fail => lifecycle::fail_unplaced(record, &reason, now),
        settle_unplaced_request::Action::Queued => lifecycle::queued(record, &reason),
        settle_unplaced_request::Action::Unspecified => None,
    })
    .await
    .map_err(store_status)?;
    Ok(SettleUnplacedResponse { changed: applied.is_some_and(|applied| applied.changed) })
}
