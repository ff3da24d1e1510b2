//! session-store's Prometheus metrics (listed in `docs/observability.md`): agent streams and commands,
//! the lifecycle's repairs, and the fleet and queue gauges.
//!
//! The fleet and queue gauges describe the whole cluster, read from the shared store: every replica
//! reports the same values, so aggregate them with `max` (not `sum`) across replicas.

use std::collections::{BTreeMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use switchboard_proto::contract::{REAP_REASON_IDLE, REAP_REASON_MAX_LIFETIME};
use switchboard_proto::host_command::Action;
use switchboard_proto::{ServerRecord, SessionRecord, SessionState, SessionType};
use switchboard_store::QueueDepth;

/// The `command` label of a host command.
pub fn command_name(action: Option<&Action>) -> &'static str {
    match action {
        Some(Action::Create(_)) => "create",
        Some(Action::Close(_)) => "close",
        Some(Action::Screenshot(_)) => "screenshot",
        Some(Action::SetPermissions(_)) => "set_permissions",
        None => "none",
    }
}

/// A host command's outcome: `switchboard_agent_commands_total{command, outcome}` and
/// `switchboard_agent_command_duration_seconds{command}`.
pub fn command(command: &'static str, outcome: &'static str, took: Duration) {
    metrics::counter!("switchboard_agent_commands_total", "command" => command, "outcome" => outcome).increment(1);
    metrics::histogram!("switchboard_agent_command_duration_seconds", "command" => command).record(took.as_secs_f64());
}

/// `switchboard_agent_streams`: streams this replica owns, after one opened (`1`) or closed (`-1`).
pub fn stream(delta: f64) {
    metrics::gauge!("switchboard_agent_streams").increment(delta);
}

/// `switchboard_agent_messages_total{kind}`: hellos (a connect or reconnect) and updates.
pub fn agent_message(kind: &'static str) {
    metrics::counter!("switchboard_agent_messages_total", "kind" => kind).increment(1);
}

/// `switchboard_agent_update_gap_seconds`: time from an agent's previous message to its update (about
/// `update_interval_seconds` when agents and this replica keep up; a longer tail is lag).
pub fn agent_update_gap(gap: std::time::Duration) {
    metrics::histogram!("switchboard_agent_update_gap_seconds").record(gap.as_secs_f64());
}

/// `switchboard_host_sessions_to_close`: sessions hosts list but should not have (strays, and closes the
/// host has not confirmed), that this replica's streams are closing; moved by `delta`.
pub fn host_sessions_to_close(delta: f64) {
    metrics::gauge!("switchboard_host_sessions_to_close").increment(delta);
}

/// `switchboard_sessions_repaired_total{repair}`: `stalled_ended` (a CREATING or DELETING session past
/// the stalled bound, ended by the liveness sweep) and `close_sent` (a close sent again, or to a stray
/// copy).
pub fn repaired(repair: &'static str, count: usize) {
    metrics::counter!("switchboard_sessions_repaired_total", "repair" => repair).increment(count as u64);
}

/// One webhook delivery attempt's outcome: `delivered`, `failed` (to be retried) or `dead_letter`.
pub fn webhook_delivery(outcome: &'static str) {
    metrics::counter!("switchboard_webhook_deliveries_total", "outcome" => outcome).increment(1);
}

/// The reaper's steps: `switchboard_session_reap_warnings_total{reason}` (a reap announced),
/// `switchboard_session_reaps_cancelled_total{reason}` (an announced reap that no longer applied when the
/// reaper looked again) and `switchboard_sessions_reaped_total{reason}` (deleted); `reason` is `IDLE` or
/// `MAX_LIFETIME`. Counted by the replica that wrote the step.
pub fn reap_step(step: ReapStep, reason: &str) {
    let reason = if reason == REAP_REASON_IDLE { REAP_REASON_IDLE } else { REAP_REASON_MAX_LIFETIME };
    let name = match step {
        ReapStep::Warned => "switchboard_session_reap_warnings_total",
        ReapStep::Cancelled => "switchboard_session_reaps_cancelled_total",
        ReapStep::Reaped => "switchboard_sessions_reaped_total",
    };
    metrics::counter!(name, "reason" => reason).increment(1);
}

/// The reaper's step counted by [`reap_step`].
#[derive(Debug, Clone, Copy)]
pub enum ReapStep {
    /// A reap announced.
    Warned,
    /// An announced reap cancelled.
    Cancelled,
    /// A session deleted by the reaper.
    Reaped,
}

/// Servers by (availability, OS family), counted during a sweep; [`ServerCounts::publish`] sets
/// `switchboard_servers{availability, os_family}`.
#[derive(Debug, Default)]
pub struct ServerCounts(BTreeMap<(&'static str, &'static str), u64>);

impl ServerCounts {
    /// Counts one server.
    pub fn add(&mut self, server: &ServerRecord) {
        let availability = match (server.reachable, server.open) {
            (false, _) => "unreachable",
            (true, false) if server.drain_deadline_unix_ms > 0 => "draining",
            (true, false) => "closed",
            (true, true) => "open",
        };
        let family = server.host.as_ref().and_then(|h| h.os.as_ref()).map(|os| os.family.to_lowercase());
        let family = match family.as_deref() {
            Some("linux") => "linux",
            Some("windows") => "windows",
            _ => "other",
        };
        *self.0.entry((availability, family)).or_default() += 1;
    }

    /// Sets the gauges (every combination, zeros included).
    pub fn publish(&self) {
        for availability in ["open", "draining", "closed", "unreachable"] {
            for family in ["linux", "windows", "other"] {
                let count = self.0.get(&(availability, family)).copied().unwrap_or_default();
                metrics::gauge!("switchboard_servers", "availability" => availability, "os_family" => family)
                    .set(count as f64);
            }
        }
    }
}

/// `switchboard_sessions{state, type}` from a full scan of the sessions.
pub fn sessions(sessions: &SessionCounts) {
    for (state, name) in STATES {
        for (kind, kind_name) in TYPES {
            let count = sessions.0.get(&(state as i32, kind as i32)).copied().unwrap_or_default();
            metrics::gauge!("switchboard_sessions", "state" => name, "type" => kind_name).set(count as f64);
        }
    }
}

const STATES: [(SessionState, &str); 5] = [
    (SessionState::Creating, "CREATING"),
    (SessionState::Ready, "READY"),
    (SessionState::Deleting, "DELETING"),
    (SessionState::Deleted, "DELETED"),
    (SessionState::Unknown, "UNKNOWN"),
];
const TYPES: [(SessionType, &str); 2] = [(SessionType::Console, "CONSOLE"), (SessionType::Virtual, "VIRTUAL")];

/// Sessions by (state, type), counted during a scan.
#[derive(Debug, Default)]
pub struct SessionCounts(BTreeMap<(i32, i32), u64>);

impl SessionCounts {
    /// Counts one session.
    pub fn add(&mut self, session: &SessionRecord) {
        *self.0.entry((session.state, session.r#type)).or_default() += 1;
    }
}

/// Classes reported last time, so a class that left the queue is set to 0 rather than left stale.
static QUEUE_CLASSES: Mutex<Option<HashSet<String>>> = Mutex::new(None);

/// `switchboard_queue_depth{class}` and `switchboard_queue_oldest_age_seconds{class}` per requirement
/// class (a hash of session kind and requirements: bounded by the queue's size), and
/// `switchboard_queue_entries` in all.
pub fn queue(depths: &[QueueDepth], now_ms: i64) {
    let mut seen = QUEUE_CLASSES.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let previous = seen.take().unwrap_or_default();
    let mut current = HashSet::new();
    for depth in depths {
        let age = (now_ms.saturating_sub(depth.oldest_enqueued_unix_ms)).max(0) as f64 / 1000.0;
        metrics::gauge!("switchboard_queue_depth", "class" => depth.class_id.clone()).set(depth.entries as f64);
        metrics::gauge!("switchboard_queue_oldest_age_seconds", "class" => depth.class_id.clone()).set(age);
        current.insert(depth.class_id.clone());
    }
    for gone in previous.difference(&current) {
        metrics::gauge!("switchboard_queue_depth", "class" => gone.clone()).set(0.0);
        metrics::gauge!("switchboard_queue_oldest_age_seconds", "class" => gone.clone()).set(0.0);
    }
    metrics::gauge!("switchboard_queue_entries").set(depths.iter().map(|d| d.entries).sum::<usize>() as f64);
    *seen = Some(current);
}

/// Describes the metrics above (their `# HELP` lines).
pub fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!("switchboard_agent_commands_total", "Host commands sent to agents, by command and outcome.");
    describe_histogram!(
        "switchboard_agent_command_duration_seconds",
        metrics::Unit::Seconds,
        "Round trip of a host command to its agent's answer, by command."
    );
    describe_gauge!("switchboard_agent_streams", "Agent streams this replica owns.");
    describe_counter!("switchboard_agent_messages_total", "Agent messages received, by kind (hello, update).");
    describe_histogram!(
        "switchboard_agent_update_gap_seconds",
        "Time from an agent's previous message to its update: about the update interval, longer when lagging."
    );
    describe_counter!("switchboard_sessions_repaired_total", "Lifecycle repairs, by repair.");
    describe_counter!(
        "switchboard_webhook_deliveries_total",
        "Webhook delivery attempts, by outcome (delivered, failed and retried later, dead_letter)."
    );
    describe_gauge!(
        "switchboard_host_sessions_to_close",
        "Sessions hosts list but should not have (strays, unconfirmed closes) that this replica is closing."
    );
    metrics::gauge!("switchboard_host_sessions_to_close").increment(0.0);
    describe_gauge!(
        "switchboard_servers",
        "Servers by availability and OS family (cluster-wide: max across replicas)."
    );
    describe_gauge!("switchboard_sessions", "Sessions by state and type (cluster-wide: max across replicas).");
    describe_gauge!("switchboard_queue_depth", "Create-sessions queue entries per requirement class.");
    describe_gauge!(
        "switchboard_queue_oldest_age_seconds",
        metrics::Unit::Seconds,
        "Age of the oldest queued request per requirement class."
    );
    describe_gauge!("switchboard_queue_entries", "Create-sessions queue entries in all.");
    describe_counter!("switchboard_session_reap_warnings_total", "Reaps announced (ReapAt set), by reason.");
    describe_counter!(
        "switchboard_session_reaps_cancelled_total",
        "Announced reaps cancelled by the reaper (a connection, a later disconnection, a changed limit), by reason."
    );
    describe_counter!("switchboard_sessions_reaped_total", "Sessions deleted by the reaper, by reason.");
    // Every fixed label value from the start (at 0), so series do not appear with the first event.
    for command in ["create", "close", "screenshot", "set_permissions"] {
        for outcome in ["ok", "host_error", "not_sent", "unknown"] {
            metrics::counter!("switchboard_agent_commands_total", "command" => command, "outcome" => outcome)
                .increment(0);
        }
    }
    for reason in [REAP_REASON_IDLE, REAP_REASON_MAX_LIFETIME] {
        for name in [
            "switchboard_session_reap_warnings_total",
            "switchboard_session_reaps_cancelled_total",
            "switchboard_sessions_reaped_total",
        ] {
            metrics::counter!(name, "reason" => reason).increment(0);
        }
    }
    for kind in ["hello", "update"] {
        metrics::counter!("switchboard_agent_messages_total", "kind" => kind).increment(0);
    }
    for repair in ["stalled_ended", "close_sent"] {
        metrics::counter!("switchboard_sessions_repaired_total", "repair" => repair).increment(0);
    }
    metrics::gauge!("switchboard_agent_streams").increment(0.0);
}
