//! The session lifecycle: every state transition of a session record, in one place.
//!
//! ```text
//!  accepted ──► CREATING/SESSION_PLACING ──assign──► CREATING/PENDING_PREPARATION ──host created──► READY
//!                 ▲   │ queued (StateReason)              │  host failed, attempts left │
//!                 │   │                                   └─────────────────────────────┘ (back to placing)
//!                 │   └──► DELETED + StateReason  ◄── no host / last attempt failed / stalled past the bound
//!  READY / UNKNOWN ──DeleteSessions──► DELETING ──host confirms (or no longer lists it)──► DELETED
//!  READY ──idle or lifetime limit, after its warning (reap)──► DELETING ──► DELETED
//! ```
//!
//! Each transition is a pure function from the record read to the record to write, `None` when it does not
//! apply to the record as it is now (deleted meanwhile, placed elsewhere, already there). [`apply`] writes
//! it with compare-and-set, re-reading on conflict, so replicas racing over one session cannot both act:
//! the loser's transition no longer applies. Placement decides *where*; this module (through
//! `StartSession`, `SettleUnplaced`, deletion and the agent streams' inventory) carries the session there.
//!
//! `state_since_unix_ms` is stamped by every transition that starts a wait on someone else (placing, the
//! host creating, the host closing): the bound on CREATING and DELETING ([`Bounds`]) counts from it.
//!
//! [`reap`] holds the idle and lifetime limits' steps (warn, cancel, reap into DELETING).

use switchboard_common::time::now_ms;
use switchboard_proto::contract::QUEUED_REASON_PREFIX;
use switchboard_proto::contract::substate::SESSION_PLACING;
use switchboard_proto::{HostSession, SessionRecord, SessionState, SessionType};
use switchboard_store::{Backend, BackendError, BackendResult, Fence};

pub mod reap;

/// Why a session the host no longer has becomes DELETED.
pub const GONE_FROM_HOST: &str = "session no longer exists on the host";

/// Attempts at one compare-and-set transition before giving up.
const CAS_ATTEMPTS: usize = 5;

/// How long a session may wait on someone else before the lifecycle ends it.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// A CREATING or DELETING session that made no progress for this long is DELETED with a reason.
    pub stalled_ms: i64,
}

impl Bounds {
    /// Whether `record` has waited in its state longer than the bound at `now`.
    pub fn stalled(&self, record: &SessionRecord, now: i64) -> bool {
        let since =
            if record.state_since_unix_ms != 0 { record.state_since_unix_ms } else { record.creation_time_unix_ms };
        now.saturating_sub(since) > self.stalled_ms
    }
}

/// Whether `record` waits in the create-sessions queue (placement's queue worker owns it then).
pub fn is_queued(record: &SessionRecord) -> bool {
    record.state() == SessionState::Creating
        && record.server_id.is_empty()
        && record.state_reason.starts_with(QUEUED_REASON_PREFIX)
}

/// A new record as accepted: CREATING, placing, the clock started.
pub fn accepted(mut record: SessionRecord, now: i64) -> SessionRecord {
    record.state = SessionState::Creating as i32;
    if record.substate.is_empty() {
        record.substate = SESSION_PLACING.to_owned();
    }
    if record.state_since_unix_ms == 0 {
        record.state_since_unix_ms = now;
    }
    record
}

/// DELETED now, with `reason` as the StateReason (empty for a delete the caller asked for).
pub fn deleted(mut record: SessionRecord, reason: &str, now: i64) -> SessionRecord {
    record.state = SessionState::Deleted as i32;
    record.substate.clear();
    record.state_reason = reason.to_owned();
    record.num_of_connections = 0;
    record.ended_unix_ms = now;
    record.state_since_unix_ms = now;
    record.forced = false;
    reap::cleared(record)
}

/// Copies what the host knows best onto the record; empty host values keep the broker's.
pub fn with_host_fields(mut record: SessionRecord, host: &HostSession) -> SessionRecord {
    if !host.name.is_empty() {
        record.name = host.name.clone();
    }
    if !host.owner.is_empty() {
        record.owner = host.owner.clone();
    }
    if host.r#type() != SessionType::Unspecified {
        record.r#type = host.r#type;
    }
    if host.creation_time_unix_ms != 0 {
        record.creation_time_unix_ms = host.creation_time_unix_ms;
    }
    if !host.storage_root.is_empty() {
        record.storage_root = host.storage_root.clone();
    }
    if host.max_concurrent_clients != 0 {
        record.max_concurrent_clients = host.max_concurrent_clients;
    }
    record.num_of_connections = host.num_of_connections;
    record.last_disconnection_time_unix_ms = host.last_disconnection_time_unix_ms;
    record
}

/// READY with the host's fields: the host created it, or lists it.
pub fn ready(record: SessionRecord, host: &HostSession, now: i64) -> SessionRecord {
    let was_ready = record.state() == SessionState::Ready;
    reap::connected(marked_ready(with_host_fields(record, host), was_ready, now))
}

/// READY, the substate and reason cleared; the clock restarts unless it `was_ready`.
fn marked_ready(mut record: SessionRecord, was_ready: bool, now: i64) -> SessionRecord {
    record.state = SessionState::Ready as i32;
    record.substate.clear();
    record.state_reason.clear();
    if !was_ready {
        record.state_since_unix_ms = now;
    }
    record
}

fn creating_on(record: &SessionRecord, server_id: &str) -> bool {
    record.state() == SessionState::Creating && record.server_id == server_id
}

/// The create command is about to leave for `server_id`: the clock restarts (a queued session may have
/// waited long before it was assigned).
pub fn starting(record: &SessionRecord, server_id: &str, now: i64) -> Option<SessionRecord> {
    creating_on(record, server_id).then(|| SessionRecord { state_since_unix_ms: now, ..record.clone() })
}

/// The host answered the create: READY with what it reported (`None`: the host said nothing more).
pub fn created(record: &SessionRecord, server_id: &str, host: Option<&HostSession>, now: i64) -> Option<SessionRecord> {
    if !creating_on(record, server_id) {
        return None;
    }
    Some(match host {
        Some(host) => ready(record.clone(), host, now),
        None => marked_ready(record.clone(), false, now),
    })
}

/// The host failed the create and another attempt follows: back to placing, the server cleared.
pub fn retry_elsewhere(record: &SessionRecord, server_id: &str, reason: &str, now: i64) -> Option<SessionRecord> {
    creating_on(record, server_id).then(|| SessionRecord {
        server_id: String::new(),
        substate: SESSION_PLACING.to_owned(),
        state_reason: format!("retrying after: {reason}"),
        state_since_unix_ms: now,
        ..record.clone()
    })
}

/// The create may or may not have reached the host: stays CREATING there, for its inventory to decide.
pub fn unconfirmed(record: &SessionRecord, server_id: &str, reason: &str, now: i64) -> Option<SessionRecord> {
    creating_on(record, server_id).then(|| SessionRecord {
        state_reason: format!("waiting for the host to confirm: {reason}"),
        state_since_unix_ms: now,
        ..record.clone()
    })
}

/// A CREATING session (placed or not) fails: DELETED with `reason`.
pub fn fail_creating(record: &SessionRecord, reason: &str, now: i64) -> Option<SessionRecord> {
    (record.state() == SessionState::Creating).then(|| deleted(record.clone(), reason, now))
}

/// A CREATING session still on `server_id` fails there: DELETED with `reason`.
pub fn fail_on(record: &SessionRecord, server_id: &str, reason: &str, now: i64) -> Option<SessionRecord> {
    creating_on(record, server_id).then(|| deleted(record.clone(), reason, now))
}

/// A CREATING session with no host fails: DELETED with `reason`.
pub fn fail_unplaced(record: &SessionRecord, reason: &str, now: i64) -> Option<SessionRecord> {
    creating_on(record, "").then(|| deleted(record.clone(), reason, now))
}

/// An unplaced CREATING session waits in the queue: `queued: <why>` as its StateReason.
pub fn queued(record: &SessionRecord, why: &str) -> Option<SessionRecord> {
    let reason = format!("{QUEUED_REASON_PREFIX}{why}");
    (creating_on(record, "") && record.state_reason != reason)
        .then(|| SessionRecord { state_reason: reason, ..record.clone() })
}

/// DeleteSessions: DELETED at once when forced or never placed, else DELETING until the host confirms.
/// `None` for a session already DELETED, or already DELETING (unless forced).
pub fn delete_requested(record: &SessionRecord, force: bool, now: i64) -> Option<SessionRecord> {
    let unplaced = record.state() == SessionState::Creating && record.server_id.is_empty();
    match record.state() {
        SessionState::Deleted => None,
        _ if force => Some(SessionRecord { forced: true, ..deleted(record.clone(), "", now) }),
        _ if unplaced => Some(deleted(record.clone(), "", now)),
        SessionState::Deleting => None,
        // Deleted on request, not reaped: an announced reap no longer applies.
        _ => Some(reap::cleared(SessionRecord {
            state: SessionState::Deleting as i32,
            state_reason: String::new(),
            state_since_unix_ms: now,
            ..record.clone()
        })),
    }
}

/// A host lists a session deleted with `Force` (removed from the cache only): it is re-cached on that host,
/// READY again (the guide: "if the session is still active, it is re-cached by the Broker"). `None` for any
/// other session.
pub fn recached(record: &SessionRecord, server_id: &str, host: &HostSession, now: i64) -> Option<SessionRecord> {
    let here = record.server_id.is_empty() || record.server_id == server_id;
    (record.state() == SessionState::Deleted && record.forced && here).then(|| {
        let mut next = ready(record.clone(), host, now);
        next.server_id = server_id.to_owned();
        next.forced = false;
        next.ended_unix_ms = 0;
        next
    })
}

/// The host's agent went quiet: a READY session becomes UNKNOWN with `reason` (the caller checks READY).
pub fn host_unreachable(record: SessionRecord, reason: &str) -> SessionRecord {
    SessionRecord { state: SessionState::Unknown as i32, state_reason: reason.to_owned(), ..record }
}

/// The host confirmed the close (or no longer has the session).
pub fn closed(record: &SessionRecord, now: i64) -> Option<SessionRecord> {
    (record.state() == SessionState::Deleting).then(|| reap::ended(record, deleted(record.clone(), "", now)))
}

/// The host did not close the session: it stays DELETING with the reason (the close is sent again).
pub fn close_failed(record: &SessionRecord, reason: &str) -> Option<SessionRecord> {
    (record.state() == SessionState::Deleting && record.state_reason != reason)
        .then(|| SessionRecord { state_reason: reason.to_owned(), ..record.clone() })
}

/// An unplaced CREATING session whose placement made no progress since `idle_before` (its placement
/// replica died) is taken over by another placement replica: the clock restarts, so nobody else claims it
/// meanwhile. Not once the session is older than the stalled bound: the sweep ends it then, so takeovers
/// cannot keep a session waiting for ever (at most twice the bound in all).
pub fn taken_over(record: &SessionRecord, idle_before: i64, bounds: &Bounds, now: i64) -> Option<SessionRecord> {
    let unplaced = record.state() == SessionState::Creating && record.server_id.is_empty() && !is_queued(record);
    let since = if record.state_since_unix_ms != 0 { record.state_since_unix_ms } else { record.creation_time_unix_ms };
    let young = now.saturating_sub(record.creation_time_unix_ms) <= bounds.stalled_ms;
    (unplaced && since <= idle_before && young).then(|| SessionRecord { state_since_unix_ms: now, ..record.clone() })
}

/// A session waited past the bound on someone else: DELETED with a reason saying on whom.
pub fn stalled(record: &SessionRecord, bounds: &Bounds, now: i64) -> Option<SessionRecord> {
    if !bounds.stalled(record, now) {
        return None;
    }
    let seconds = bounds.stalled_ms / 1000;
    let reason = match record.state() {
        SessionState::Creating if record.server_id.is_empty() && !is_queued(record) => {
            format!(
                "placement did not finish within {seconds} s (a placement replica may have failed); create it again"
            )
        }
        SessionState::Creating if !record.server_id.is_empty() => {
            format!("the host {} did not confirm the session within {seconds} s", record.server_id)
        }
        SessionState::Deleting => format!("the host {} did not confirm the close within {seconds} s", record.server_id),
        _ => return None,
    };
    Some(deleted(record.clone(), &reason, now))
}

/// Applies `change` to the stored `session_id` with compare-and-set, re-reading on conflict. Returns the
/// record as stored afterwards and whether this call wrote it (`changed`); `None` if the session does not
/// exist. `fence` guards writes made on behalf of an agent stream.
pub async fn apply(
    backend: &dyn Backend,
    session_id: &str,
    fence: Option<&Fence>,
    change: impl Fn(&SessionRecord, i64) -> Option<SessionRecord>,
) -> BackendResult<Option<Applied>> {
    for _ in 0..CAS_ATTEMPTS {
        let Some(current) = backend.get_sessions(&[session_id.to_owned()]).await?.into_iter().next() else {
            return Ok(None);
        };
        let Some(next) = change(&current, now_ms()) else {
            return Ok(Some(Applied { record: current, changed: false }));
        };
        match backend.update_session(next, current.revision, fence).await {
            Ok(stored) => return Ok(Some(Applied { record: stored, changed: true })),
            Err(BackendError::Conflict(_)) => continue,
            Err(BackendError::NotFound(_)) => return Ok(None),
            Err(error) => return Err(error),
        }
    }
    Err(BackendError::Conflict(format!("session {session_id} kept changing")))
}

/// The result of [`apply`].
#[derive(Debug)]
pub struct Applied {
    /// The record as stored after the call.
    pub record: SessionRecord,
    /// Whether this call wrote it.
    pub changed: bool,
}

#[cfg(test)]
mod tests;
