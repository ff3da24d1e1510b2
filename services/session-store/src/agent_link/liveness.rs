//! Liveness and reapers: what happens to hosts that went away.
//!
//! Liveness rests on the agent-stream ownership lease, not on per-update
//! writes: the replica owning a stream renews the lease on a timer while the
//! agent keeps talking, and ends the stream (marking the host unreachable)
//! when the agent is silent for two update intervals. If the replica itself
//! dies, nobody renews the lease; once it lapses, this sweep marks the host
//! unreachable and its READY sessions UNKNOWN.
//!
//! Every replica runs the sweep: each write is compare-and-set and fenced
//! with [`Fence::Unowned`] (refused while a live lease exists), so replicas
//! racing each other, or a host reconnecting mid-sweep, cannot produce a
//! wrong result; the loser's write fails and changes nothing. No leader
//! election is needed. The same pass runs the reapers:
//! - sessions of a host silent for
//!   `seconds_before_deleting_sessions_unreachable_server` become DELETED;
//! - a host silent for `seconds_before_deleting_unreachable_server` and with
//!   no live session left is forgotten (its open flag is kept);
//! - DELETED sessions are removed after `deleted_session_retention_seconds`;
//! - CREATING and DELETING sessions that waited past `stalled_session_seconds` on a host that is gone, or
//!   unplaced on a placement replica that is gone (a scan of the sessions, every half bound), end DELETED
//!   with a reason.
//!   Connected hosts' sessions are bounded by their stream's inventory instead (`reconcile`);
//! - a draining server (closed without Force while sessions ran) whose last session ended, or whose
//!   deadline passed, becomes closed as with Force (`Servers::finish_drain`, a compare-and-set on the
//!   deadline: an opening or a new close in between wins, and one replica finishes it);
//! - READY sessions past their idle or lifetime limit are announced, then reaped (`lifecycle::reap`):
//!   the announcement is a compare-and-set of the record, the deletion the DeleteSessions path
//!   (`deletion::reap`), so racing replicas announce and reap once. This rides on the scan of the
//!   sessions, which runs every update interval while the settings reap (`session_max_idle_seconds`,
//!   `session_max_lifetime_seconds`), and every half stalled bound otherwise (for sessions whose own
//!   limits ask for it).
//!
//! "Silent since" is the server's `last_seen_unix_ms`: the last time its
//! report was written, at most `telemetry_write_interval` before it was last
//! heard from.

use std::sync::Arc;
use std::time::Duration;

use switchboard_common::Shutdown;
use switchboard_common::time::now_ms;
use switchboard_proto::{ServerRecord, SessionRecord, SessionState};

use crate::StoreConfig;
use crate::lifecycle;
use crate::lifecycle::reap::{self, ReapPolicy};
use crate::metrics::ReapStep;
use crate::routing::HostCommands;
use switchboard_store::{Backend, BackendError, BackendResult, Fence};

/// Servers (and expired sessions) handled per backend call while sweeping.
const PAGE: usize = 500;
/// Why sessions of a long-gone host were deleted.
pub const HOST_GONE: &str = "the host's agent has been unreachable for too long";

/// What one sweep did, for logs and tests.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SweepOutcome {
    /// Hosts whose lapsed lease made them unreachable.
    pub marked_unreachable: usize,
    /// Sessions of long-gone hosts marked DELETED.
    pub sessions_deleted: usize,
    /// Long-gone hosts forgotten.
    pub servers_forgotten: usize,
    /// DELETED sessions removed after their retention.
    pub sessions_expired: usize,
    /// CREATING and DELETING sessions ended past the stalled bound (unplaced, or on a host that is gone).
    pub sessions_stalled: usize,
    /// Draining servers closed (their last session ended, or their deadline passed).
    pub drains_finished: usize,
}

/// The thresholds of one sweep, in ms since epoch.
struct Cutoffs {
    delete_sessions_before: i64,
    forget_servers_before: i64,
    bounds: lifecycle::Bounds,
    now: i64,
}

/// Ends the CREATING and DELETING sessions among `sessions` that waited past `bounds` at `now` (on a host
/// that is gone, or on placement). Returns how many it ended, and `sessions` as stored afterwards (an ended
/// one as written, the others as they were). Conflicts mean someone else moved them.
async fn end_stalled(
    backend: &dyn Backend,
    sessions: Vec<SessionRecord>,
    bounds: &lifecycle::Bounds,
    now: i64,
    fence: Option<&Fence>,
) -> BackendResult<(usize, Vec<SessionRecord>)> {
    let mut ended = 0;
    let mut after = Vec::with_capacity(sessions.len());
    for session in sessions {
        let Some(next) = lifecycle::stalled(&session, bounds, now) else {
            after.push(session);
            continue;
        };
        crate::metrics::repaired("stalled_ended", 1);
        tracing::info!(session_id = %session.id, reason = %next.state_reason, "stalled session ended");
        match backend.update_session(next, session.revision, fence).await {
            Ok(stored) => {
                ended += 1;
                after.push(stored);
            }
            Err(BackendError::Conflict(_) | BackendError::NotFound(_) | BackendError::Fenced(_)) => after.push(session),
            Err(error) => return Err(error),
        }
    }
    Ok((ended, after))
}

/// What one scan of the sessions ([`scan_sessions`]) did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ScanOutcome {
    /// Unplaced CREATING sessions ended past the stalled bound.
    pub unplaced_ended: usize,
    /// Reaps announced (the session's `reap_at_unix_ms` set).
    pub reaps_warned: usize,
    /// Announced reaps cancelled.
    pub reaps_cancelled: usize,
    /// Sessions reaped (made DELETING, their close sent).
    pub sessions_reaped: usize,
}

/// Scans the sessions in pages of [`PAGE`] (one backend call each): ends CREATING sessions that no
/// placement replica carries any more (unplaced, not queued, past the stalled bound), and takes the
/// reaper's steps (`lifecycle::reap`) under `policy`. Its cost grows with the sessions stored, which is
/// why it runs only every half bound unless the settings reap.
async fn scan(
    backend: &Arc<dyn Backend>,
    hosts: &Arc<dyn HostCommands>,
    bounds: &lifecycle::Bounds,
    policy: &ReapPolicy,
    now: i64,
) -> BackendResult<ScanOutcome> {
    let mut outcome = ScanOutcome::default();
    let mut after_id = String::new();
    let mut counts = crate::metrics::SessionCounts::default();
    loop {
        let page = backend.list_sessions(&after_id, PAGE).await?;
        page.iter().for_each(|session| counts.add(session));
        let Some(last) = page.last() else { break };
        after_id = last.id.clone();
        let full = page.len() == PAGE;
        for session in page.iter().filter(|session| reap::step(session, policy, now).is_some()) {
            match reap_step(backend, hosts, session, policy, &mut outcome).await {
                Ok(()) | Err(BackendError::Conflict(_)) => {}
                Err(error) => return Err(error),
            }
        }
        let unplaced = page
            .into_iter()
            .filter(|s| s.state() == SessionState::Creating && s.server_id.is_empty() && !lifecycle::is_queued(s))
            .collect();
        outcome.unplaced_ended += end_stalled(&**backend, unplaced, bounds, now, None).await?.0;
        if !full {
            break;
        }
    }
    crate::metrics::sessions(&counts);
    Ok(outcome)
}

/// Takes the reaper's step for `session` (as scanned), re-evaluated on the record as stored: a warning
/// or a cancellation is a compare-and-set of the record, a reap goes through the DeleteSessions path.
async fn reap_step(
    backend: &Arc<dyn Backend>,
    hosts: &Arc<dyn HostCommands>,
    session: &SessionRecord,
    policy: &ReapPolicy,
    outcome: &mut ScanOutcome,
) -> BackendResult<()> {
    let id = &session.id;
    if let Some(reap::Step::Reap(_)) = reap::step(session, policy, now_ms()) {
        if let Some(reason) = crate::deletion::reap(backend, hosts, id, policy).await? {
            outcome.sessions_reaped += 1;
            crate::metrics::reap_step(ReapStep::Reaped, &reason);
            tracing::info!(session_id = %id, server_id = %session.server_id, reason, "session reaped");
        }
        return Ok(());
    }
    let applied = lifecycle::apply(&**backend, id, None, |record, now| match reap::step(record, policy, now) {
        Some(reap::Step::Warn(next) | reap::Step::Cancel(next)) => Some(next),
        _ => None,
    })
    .await?;
    let Some(stored) = applied.filter(|applied| applied.changed).map(|applied| applied.record) else {
        return Ok(());
    };
    if stored.reap_at_unix_ms != 0 {
        outcome.reaps_warned += 1;
        crate::metrics::reap_step(ReapStep::Warned, &stored.reap_reason);
        let reap_at = switchboard_common::time::rfc3339_ms(stored.reap_at_unix_ms).unwrap_or_default();
        tracing::info!(session_id = %id, reason = %stored.reap_reason, %reap_at, "session to be reaped");
        let warning = switchboard_proto::EventRecord {
            kind: switchboard_store::events::kind::SESSION_REAP_WARNING.to_owned(),
            session_id: id.clone(),
            owner: stored.owner.clone(),
            server_id: stored.server_id.clone(),
            state: stored.state,
            previous_state: stored.state,
            reason: stored.reap_reason.clone(),
            detail: reap_at,
            ..Default::default()
        };
        crate::events::record(&**backend, warning).await;
    } else {
        outcome.reaps_cancelled += 1;
        crate::metrics::reap_step(ReapStep::Cancelled, &session.reap_reason);
        tracing::info!(session_id = %id, reason = %session.reap_reason, "session reap cancelled");
    }
    Ok(())
}

/// Sweeps once at `now`: liveness, then the reapers (see the module doc).
pub async fn sweep(backend: &dyn Backend, config: &StoreConfig, now: i64) -> BackendResult<SweepOutcome> {
    let seconds = |s: u64| i64::try_from(s.saturating_mul(1000)).unwrap_or(i64::MAX);
    let cutoffs = Cutoffs {
        delete_sessions_before: now
            .saturating_sub(seconds(config.timers.seconds_before_deleting_sessions_unreachable_server)),
        forget_servers_before: now.saturating_sub(seconds(config.timers.seconds_before_deleting_unreachable_server)),
        bounds: config.bounds(),
        now,
    };
    let mut outcome = SweepOutcome::default();
    let mut after_id = String::new();
    let mut fleet = crate::metrics::ServerCounts::default();
    loop {
        let page = backend.list_servers(&after_id, PAGE).await?;
        let Some(last) = page.last() else { break };
        after_id = last.id.clone();
        let full = page.len() == PAGE;
        page.iter().for_each(|server| fleet.add(server));
        for server in &page {
            if finish_drain(backend, server, now).await? {
                outcome.drains_finished += 1;
            }
        }
        for server in page {
            match sweep_server(backend, config, &cutoffs, server, &mut outcome).await {
                Ok(()) | Err(BackendError::Fenced(_) | BackendError::Conflict(_)) => {}
                Err(error) => return Err(error),
            }
        }
        if !full {
            break;
        }
    }
    fleet.publish();
    let retention_cutoff = now.saturating_sub(seconds(config.timers.deleted_session_retention_seconds));
    loop {
        let expired = backend.remove_deleted_sessions(retention_cutoff, PAGE).await?;
        outcome.sessions_expired += expired;
        if expired < PAGE {
            break;
        }
    }
    Ok(outcome)
}

/// Closes `server` as with Force if it drains and its last session ended or its deadline passed at
/// `now`; whether this call did (another replica, an opening or a new close may have come first).
async fn finish_drain(backend: &dyn Backend, server: &ServerRecord, now: i64) -> BackendResult<bool> {
    let deadline = server.drain_deadline_unix_ms;
    if deadline <= 0 {
        return Ok(false);
    }
    let sessions = server.console_session_count + server.virtual_session_count;
    if sessions > 0 && now < deadline {
        return Ok(false);
    }
    let finished = backend.finish_drain(&server.id, deadline).await?;
    if finished {
        let why = if sessions == 0 { "its last session ended" } else { "its drain deadline passed" };
        tracing::info!(server_id = %server.id, sessions, why, "drained server closed");
    }
    Ok(finished)
}

/// Liveness and reaping of one server. `Fenced`/`Conflict` mean the host came
/// back or another replica got there first: nothing to do.
async fn sweep_server(
    backend: &dyn Backend,
    config: &StoreConfig,
    cutoffs: &Cutoffs,
    server: ServerRecord,
    outcome: &mut SweepOutcome,
) -> BackendResult<()> {
    let gone = Fence::unowned(&server.id);
    if server.reachable {
        if backend.agent_owner(&server.id).await?.is_some() {
            return Ok(());
        }
        tracing::info!(server_id = %server.id, "agent lease lapsed; marking server unreachable");
        super::mark_unreachable(backend, server, config.default_server_open, &gone).await?;
        outcome.marked_unreachable += 1;
        return Ok(());
    }
    // Nobody will confirm a create or a close on a host that is gone: the stalled bound ends them.
    let sessions = backend.sessions_on_server(&server.id).await?;
    let (stalled, sessions) = end_stalled(backend, sessions, &cutoffs.bounds, cutoffs.now, Some(&gone)).await?;
    outcome.sessions_stalled += stalled;
    if server.last_seen_unix_ms >= cutoffs.delete_sessions_before.max(cutoffs.forget_servers_before) {
        return Ok(());
    }
    let mut live = 0;
    for session in sessions.into_iter().filter(|s| s.state() != SessionState::Deleted) {
        if server.last_seen_unix_ms >= cutoffs.delete_sessions_before {
            live += 1;
            continue;
        }
        let expected_revision = session.revision;
        let ended = lifecycle::deleted(session, HOST_GONE, now_ms());
        match backend.update_session(ended, expected_revision, Some(&gone)).await {
            Ok(_) => outcome.sessions_deleted += 1,
            Err(BackendError::Conflict(_) | BackendError::NotFound(_)) => live += 1,
            Err(error) => return Err(error),
        }
    }
    if live == 0 && server.last_seen_unix_ms < cutoffs.forget_servers_before {
        tracing::info!(server_id = %server.id, "agent gone for too long; forgetting server");
        backend.forget_server(&server.id, server.revision).await?;
        outcome.servers_forgotten += 1;
    }
    Ok(())
}

/// Scans every session once at `now` ([`scan`]): ends unplaced CREATING sessions past the stalled bound
/// and takes the reaper's steps, sending reaped sessions' closes through `hosts`. [`run`] does it once per
/// half stalled bound (every sweep while the settings reap), not every sweep.
pub async fn scan_sessions(
    backend: &Arc<dyn Backend>,
    hosts: &Arc<dyn HostCommands>,
    config: &StoreConfig,
    now: i64,
) -> BackendResult<ScanOutcome> {
    scan(backend, hosts, &config.bounds(), &config.timers.reap_policy(), now).await
}

/// Runs [`sweep`] every update interval, and [`scan_sessions`] every half stalled bound (at least every
/// update interval; every update interval while the settings reap), until `shutdown`.
pub async fn run(backend: Arc<dyn Backend>, hosts: Arc<dyn HostCommands>, config: StoreConfig, shutdown: Shutdown) {
    let period = Duration::from_secs(u64::from(config.update_interval_seconds.max(1)));
    // The first sweep waits one interval: streams of the replica's previous
    // life (if any) get the same grace as everyone else's lease.
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let unplaced_period = if config.timers.reap_policy().broker_wide() {
        period
    } else {
        period.max(Duration::from_secs(config.timers.stalled_session_seconds / 2))
    };
    // Due at the first sweep, so the session gauges exist from then on.
    let mut unplaced_due = tokio::time::Instant::now();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        match sweep(&*backend, &config, now_ms()).await {
            Ok(outcome) if outcome != SweepOutcome::default() => tracing::info!(?outcome, "liveness sweep"),
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "liveness sweep failed"),
        }
        match backend.queue_depths().await {
            Ok(depths) => crate::metrics::queue(&depths, now_ms()),
            Err(error) => tracing::debug!(%error, "queue depths not read"),
        }
        if unplaced_due <= tokio::time::Instant::now() {
            unplaced_due = tokio::time::Instant::now() + unplaced_period;
            match scan_sessions(&backend, &hosts, &config, now_ms()).await {
                Ok(outcome) if outcome != ScanOutcome::default() => tracing::info!(?outcome, "scan of the sessions"),
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, "scan of the sessions failed"),
            }
        }
    }
}

#[cfg(test)]
mod tests;
