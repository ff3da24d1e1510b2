//! Idle reaping and maximum lifetime: when the reaper announces, cancels or carries out the deletion of a
//! READY session (see `docs/saas.md`, *Reaping*).
//!
//! A session is **due** at the earlier of two limits, each off at 0:
//! - *idle* (`IDLE`): no client connection (`num_of_connections == 0`, as the host reports it) for the
//!   maximum idle time, counted from the later of its creation and its last disconnection;
//! - *lifetime* (`MAX_LIFETIME`): the maximum lifetime after its creation, connected or not.
//!
//! The limits are the session's own (its CreateSessions item's `MaxIdleSeconds` / `MaxLifetimeSeconds`,
//! kept in its spec) or else the broker's settings ([`ReapPolicy`]). The reaper **warns** first: once the
//! warning window before the due time starts, the record gets `reap_at_unix_ms` (when it will be
//! deleted) and `reap_reason`, a durable and visible state (describeSessions shows it; the event stream
//! will emit from it). The deletion happens at `reap_at`, never sooner than the whole warning window after
//! the warning was written, and only while the same limit still holds: a client connection cancels an idle
//! reap (the host's report clears it at once, [`connected`]; the reaper's next step too), and a later
//! disconnection starts the idle time over. Every step is a pure function of the record read, applied
//! with compare-and-set like every lifecycle transition, so racing replicas cannot both act.

use switchboard_proto::contract::{REAP_REASON_IDLE, REAP_REASON_MAX_LIFETIME};
use switchboard_proto::{SessionRecord, SessionState};

/// A reaped session's StateReason once DELETED, for the idle limit.
pub const REAPED_IDLE: &str = "reaped: no client connection for the session's maximum idle time";
/// A reaped session's StateReason once DELETED, for the lifetime limit.
pub const REAPED_MAX_LIFETIME: &str = "reaped: the session reached its maximum lifetime";

/// The broker-wide limits (session-store's settings), which a session's own limits override.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReapPolicy {
    /// Seconds without a client connection before a session is reaped; 0: off.
    pub max_idle_seconds: u32,
    /// Seconds after its creation before a session is reaped, connected or not; 0: off.
    pub max_lifetime_seconds: u32,
    /// How long before the deletion it is announced, in seconds (0: no warning).
    pub warning_seconds: u32,
}

impl ReapPolicy {
    /// Whether the settings reap any session (a session's own limits may still ask for it when not).
    pub fn broker_wide(&self) -> bool {
        self.max_idle_seconds > 0 || self.max_lifetime_seconds > 0
    }

    fn warning_ms(&self) -> i64 {
        ms(self.warning_seconds)
    }
}

fn ms(seconds: u32) -> i64 {
    i64::from(seconds) * 1000
}

/// When a session is due to be reaped, and by which limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Due {
    /// ms since epoch.
    pub at: i64,
    /// `IDLE` or `MAX_LIFETIME`.
    pub reason: &'static str,
}

/// What the reaper does with one session now.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Announce the reap: the record with `reap_at_unix_ms` and `reap_reason` set.
    Warn(SessionRecord),
    /// The announced reap no longer applies (a connection, a later disconnection, a changed policy): the
    /// record with both cleared.
    Cancel(SessionRecord),
    /// Delete it now ([`reaped`] is the transition).
    Reap(Due),
}

/// When `record` is due under its own limits or else `policy`'s; `None` when no limit applies (or the
/// session is not READY: a host that is unreachable cannot tell its connections).
pub fn due(record: &SessionRecord, policy: &ReapPolicy) -> Option<Due> {
    if record.state() != SessionState::Ready {
        return None;
    }
    let spec = record.spec.as_ref();
    let idle = spec.and_then(|spec| spec.max_idle_seconds).unwrap_or(policy.max_idle_seconds);
    let lifetime = spec.and_then(|spec| spec.max_lifetime_seconds).unwrap_or(policy.max_lifetime_seconds);
    // A record a host reported without a creation time counts from when it became READY.
    let created =
        if record.creation_time_unix_ms != 0 { record.creation_time_unix_ms } else { record.state_since_unix_ms };
    let by_lifetime =
        (lifetime > 0).then(|| Due { at: created.saturating_add(ms(lifetime)), reason: REAP_REASON_MAX_LIFETIME });
    let idle_since = created.max(record.last_disconnection_time_unix_ms);
    let by_idle = (idle > 0 && record.num_of_connections == 0)
        .then(|| Due { at: idle_since.saturating_add(ms(idle)), reason: REAP_REASON_IDLE });
    // The earlier limit; on a tie the lifetime, which no connection cancels.
    [by_lifetime, by_idle].into_iter().flatten().min_by_key(|due| due.at)
}

/// The reaper's step for `record` at `now`; `None`: nothing to write or do.
pub fn step(record: &SessionRecord, policy: &ReapPolicy, now: i64) -> Option<Step> {
    let announced = record.reap_at_unix_ms != 0;
    let warning_ms = policy.warning_ms();
    let Some(due) = due(record, policy).filter(|due| now >= due.at.saturating_sub(warning_ms)) else {
        let cancel = announced && record.state() == SessionState::Ready;
        return cancel.then(|| Step::Cancel(cleared(record.clone())));
    };
    // The announced reap still holds: the same limit, not moved later (a later disconnection moves an
    // idle limit: the warning starts over).
    if announced && record.reap_reason == due.reason && due.at <= record.reap_at_unix_ms {
        let at = record.reap_at_unix_ms;
        return (now >= at).then_some(Step::Reap(Due { at, reason: due.reason }));
    }
    let at = due.at.max(now.saturating_add(warning_ms));
    if at <= now {
        // No warning window: reaped at once.
        return Some(Step::Reap(Due { at, reason: due.reason }));
    }
    Some(Step::Warn(SessionRecord { reap_at_unix_ms: at, reap_reason: due.reason.to_owned(), ..record.clone() }))
}

/// The reaper deletes `record`: DELETING with the reap recorded, the close to be sent as for
/// DeleteSessions (then [`super::closed`] makes it DELETED). `None` unless [`step`] still says so on the
/// record as it is now: a connection or a DeleteSessions in between wins.
pub fn reaped(record: &SessionRecord, policy: &ReapPolicy, now: i64) -> Option<SessionRecord> {
    let Some(Step::Reap(due)) = step(record, policy, now) else { return None };
    Some(SessionRecord {
        state: SessionState::Deleting as i32,
        state_reason: reaped_reason(due.reason).to_owned(),
        state_since_unix_ms: now,
        reap_at_unix_ms: due.at,
        reap_reason: due.reason.to_owned(),
        ..record.clone()
    })
}

/// The StateReason of a session the reaper deleted for `reason`.
pub fn reaped_reason(reason: &str) -> &'static str {
    if reason == REAP_REASON_IDLE { REAPED_IDLE } else { REAPED_MAX_LIFETIME }
}

/// A host reports a connection to `record` (as written from its report): an announced idle reap is
/// cancelled at once.
pub fn connected(record: SessionRecord) -> SessionRecord {
    if record.num_of_connections > 0 && record.reap_reason == REAP_REASON_IDLE {
        return cleared(record);
    }
    record
}

/// `record` without an announced reap.
pub fn cleared(record: SessionRecord) -> SessionRecord {
    SessionRecord { reap_at_unix_ms: 0, reap_reason: String::new(), ..record }
}

/// The DELETED record `ended` made of the DELETING `before`: a reaped session keeps its reap (when and
/// why) and says so in its StateReason.
pub fn ended(before: &SessionRecord, ended: SessionRecord) -> SessionRecord {
    if before.reap_reason.is_empty() {
        return ended;
    }
    SessionRecord {
        state_reason: reaped_reason(&before.reap_reason).to_owned(),
        reap_at_unix_ms: before.reap_at_unix_ms,
        reap_reason: before.reap_reason.clone(),
        ..ended
    }
}

#[cfg(test)]
mod tests;
