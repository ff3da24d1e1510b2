//! placement's Prometheus metrics (listed in `docs/observability.md`).

use std::time::Duration;

use switchboard_proto::start_session_response::Outcome;

use crate::place::{Assignment, Census};

/// One placement decision: `switchboard_placement_decisions_total{outcome}` (`assigned`, `no_host`,
/// `not_placeable`) and `switchboard_placement_decision_duration_seconds`.
pub fn decision(assignment: &Assignment, took: Duration) {
    let outcome = match assignment {
        Assignment::Assigned { .. } => "assigned",
        Assignment::NoHost(_) => "no_host",
        Assignment::NotPlaceable => "not_placeable",
    };
    metrics::counter!("switchboard_placement_decisions_total", "outcome" => outcome).increment(1);
    metrics::histogram!("switchboard_placement_decision_duration_seconds").record(took.as_secs_f64());
    if let Assignment::NoHost(census) = assignment {
        for (reason, servers) in no_host_reasons(census) {
            if servers > 0 {
                metrics::counter!("switchboard_placement_no_host_reasons_total", "reason" => reason).increment(1);
            }
        }
    }
}

/// The census categories of a "no host" decision, by label: how many servers each excluded.
fn no_host_reasons(census: &Census) -> [(&'static str, usize); 11] {
    [
        ("requirements", census.by_clause.iter().sum()),
        ("closed", census.closed),
        ("unreachable", census.unreachable),
        ("unhealthy", census.unhealthy),
        ("not_linux", census.not_linux),
        ("not_windows", census.not_windows),
        ("console_taken", census.console_taken),
        ("full", census.full),
        ("creation_failed", census.already_failed),
        ("owner_limit", census.owner_limit),
        ("refused_by_store", census.rejected.values().sum()),
    ]
}

/// One attempt on a host (`StartSession`): `switchboard_placement_attempts_total{outcome}` (`ready`,
/// `retry` on another host, `ended` on the last attempt, `unconfirmed`, `gone`).
pub fn attempt(outcome: Outcome) {
    let outcome = match outcome {
        Outcome::Ready => "ready",
        Outcome::Retry => "retry",
        Outcome::Ended => "ended",
        Outcome::Unconfirmed => "unconfirmed",
        Outcome::Gone | Outcome::Unspecified => "gone",
    };
    metrics::counter!("switchboard_placement_attempts_total", "outcome" => outcome).increment(1);
}

/// `switchboard_queue_events_total{event}`: `enqueued`, `refused_full`, `placed` (taken from the queue
/// onto a host), `expired`.
pub fn queue_event(event: &'static str) {
    metrics::counter!("switchboard_queue_events_total", "event" => event).increment(1);
}

/// `switchboard_placement_takeovers_total`: sessions this replica placed after another replica left them
/// unplaced (it died before it assigned them a host).
pub fn takeover() {
    metrics::counter!("switchboard_placement_takeovers_total").increment(1);
}

/// Describes the metrics above (their `# HELP` lines).
pub fn describe() {
    metrics::describe_counter!("switchboard_placement_decisions_total", "Placement decisions, by outcome.");
    metrics::describe_histogram!(
        "switchboard_placement_decision_duration_seconds",
        metrics::Unit::Seconds,
        "Time of one placement decision (rank the fleet view, reserve on a host)."
    );
    metrics::describe_counter!(
        "switchboard_placement_attempts_total",
        "Attempts to create a session on a host, by outcome."
    );
    metrics::describe_counter!("switchboard_queue_events_total", "Create-sessions queue events, by event.");
    metrics::describe_counter!(
        "switchboard_placement_no_host_reasons_total",
        "Decisions that found no host, by each reason that excluded servers (one decision counts under each)."
    );
    for (reason, _) in no_host_reasons(&Census::default()) {
        metrics::counter!("switchboard_placement_no_host_reasons_total", "reason" => reason).increment(0);
    }
    metrics::describe_counter!(
        "switchboard_placement_takeovers_total",
        "Sessions placed after another placement replica left them unplaced."
    );
    metrics::counter!("switchboard_placement_takeovers_total").increment(0);
    // Every fixed label value from the start (at 0), so series do not appear with the first event.
    for outcome in ["assigned", "no_host", "not_placeable"] {
        metrics::counter!("switchboard_placement_decisions_total", "outcome" => outcome).increment(0);
    }
    for outcome in ["ready", "retry", "ended", "unconfirmed", "gone"] {
        metrics::counter!("switchboard_placement_attempts_total", "outcome" => outcome).increment(0);
    }
    for event in ["enqueued", "refused_full", "placed", "expired"] {
        metrics::counter!("switchboard_queue_events_total", "event" => event).increment(0);
    }
}
