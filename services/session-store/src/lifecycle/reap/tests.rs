use switchboard_proto::{CreateSessionSpec, HostSession};

use super::*;

/// A READY session created at 1 s (times in ms).
fn ready() -> SessionRecord {
    SessionRecord {
        id: "s1".into(),
        owner: "alice".into(),
        server_id: "h1".into(),
        state: SessionState::Ready as i32,
        creation_time_unix_ms: S,
        state_since_unix_ms: S,
        revision: 3,
        ..Default::default()
    }
}

const S: i64 = 1000;

/// Idle after 600 s, a 60 s warning.
const IDLE: ReapPolicy = ReapPolicy { max_idle_seconds: 600, max_lifetime_seconds: 0, warning_seconds: 60 };

fn warned_at(step: Option<Step>) -> (i64, String) {
    match step {
        Some(Step::Warn(record)) => (record.reap_at_unix_ms, record.reap_reason),
        other => panic!("expected a warning, got {other:?}"),
    }
}

#[test]
fn off_by_default() {
    let policy = ReapPolicy::default();
    assert!(!policy.broker_wide());
    assert_eq!(due(&ready(), &policy), None);
    assert_eq!(step(&ready(), &policy, 1000 * 24 * 3600 * S), None, "nothing is ever reaped");
}

#[test]
fn an_idle_session_is_warned_then_reaped_at_the_announced_time() {
    let session = ready();
    assert_eq!(step(&session, &IDLE, 540 * S), None, "before the warning window");
    let (at, reason) = warned_at(step(&session, &IDLE, 541 * S));
    assert_eq!((at, reason.as_str()), (601 * S, "IDLE"), "announced for the due time");
    let warned = SessionRecord { reap_at_unix_ms: at, reap_reason: reason, ..session };
    assert_eq!(step(&warned, &IDLE, 600 * S), None, "within the window: nothing more");
    assert_eq!(step(&warned, &IDLE, 601 * S), Some(Step::Reap(Due { at, reason: "IDLE" })));
    let deleting = reaped(&warned, &IDLE, 601 * S).expect("reaped");
    assert_eq!(deleting.state(), SessionState::Deleting);
    assert_eq!((deleting.reap_at_unix_ms, deleting.reap_reason.as_str()), (at, "IDLE"));
    assert_eq!(deleting.state_reason, REAPED_IDLE);
    let deleted = crate::lifecycle::closed(&deleting, 602 * S).unwrap();
    assert_eq!(deleted.state(), SessionState::Deleted);
    assert_eq!((deleted.state_reason.as_str(), deleted.reap_reason.as_str()), (REAPED_IDLE, "IDLE"), "says why");
}

#[test]
fn idle_time_counts_from_the_last_disconnection() {
    let session = SessionRecord { last_disconnection_time_unix_ms: 1000 * S, ..ready() };
    assert_eq!(due(&session, &IDLE), Some(Due { at: 1600 * S, reason: "IDLE" }));
    assert_eq!(step(&session, &IDLE, 1539 * S), None);
}

#[test]
fn a_connected_session_is_not_idle() {
    let session = SessionRecord { num_of_connections: 1, ..ready() };
    assert_eq!(due(&session, &IDLE), None);
    assert_eq!(step(&session, &IDLE, 10_000 * S), None);
}

#[test]
fn a_connection_in_the_warning_window_cancels() {
    let warned = SessionRecord { reap_at_unix_ms: 600 * S, reap_reason: "IDLE".into(), ..ready() };
    // The host reports a connection: cleared with the write of the report.
    let host = HostSession { id: "s1".into(), num_of_connections: 1, ..Default::default() };
    let reported = crate::lifecycle::ready(warned.clone(), &host, 590 * S);
    assert_eq!((reported.reap_at_unix_ms, reported.reap_reason.as_str()), (0, ""), "cancelled by the report");
    // The reaper finds it connected: cancelled too, and never reaped.
    let connected = SessionRecord { num_of_connections: 1, ..warned.clone() };
    let Some(Step::Cancel(cancelled)) = step(&connected, &IDLE, 601 * S) else { panic!("expected a cancel") };
    assert_eq!((cancelled.reap_at_unix_ms, cancelled.state()), (0, SessionState::Ready));
    assert_eq!(reaped(&connected, &IDLE, 601 * S), None, "a connection wins over the reap");
    // Connected and gone again within the window: the idle time starts over from the disconnection.
    let reconnected = SessionRecord { last_disconnection_time_unix_ms: 595 * S, ..warned };
    assert!(matches!(step(&reconnected, &IDLE, 601 * S), Some(Step::Cancel(_))), "due again only at 1195 s");
}

#[test]
fn a_warning_noticed_late_still_gives_the_whole_window() {
    // The reaper first sees the session 10 s after it was due (a restart, a coarse scan).
    let (at, _) = warned_at(step(&ready(), &IDLE, 610 * S));
    assert_eq!(at, 670 * S, "deleted a whole warning after the warning");
}

#[test]
fn without_a_warning_window_the_session_is_reaped_when_due() {
    let policy = ReapPolicy { warning_seconds: 0, ..IDLE };
    assert_eq!(step(&ready(), &policy, 599 * S), None);
    let deleting = reaped(&ready(), &policy, 601 * S).expect("reaped at once");
    assert_eq!((deleting.reap_at_unix_ms, deleting.reap_reason.as_str()), (601 * S, "IDLE"));
}

#[test]
fn the_maximum_lifetime_reaps_even_a_connected_session() {
    let policy = ReapPolicy { max_lifetime_seconds: 3600, ..IDLE };
    let connected = SessionRecord { num_of_connections: 2, ..ready() };
    let (at, reason) = warned_at(step(&connected, &policy, 3541 * S));
    assert_eq!((at, reason.as_str()), (3601 * S, "MAX_LIFETIME"));
    let warned = SessionRecord { reap_at_unix_ms: at, reap_reason: reason, ..connected };
    let host = HostSession { id: "s1".into(), num_of_connections: 3, ..Default::default() };
    let reported = crate::lifecycle::ready(warned.clone(), &host, 3550 * S);
    assert_eq!(reported.reap_at_unix_ms, at, "a connection does not cancel a lifetime reap");
    let deleting = reaped(&reported, &policy, 3602 * S).expect("reaped connected");
    assert_eq!(deleting.state_reason, REAPED_MAX_LIFETIME);
}

#[test]
fn the_earlier_limit_wins() {
    let policy = ReapPolicy { max_lifetime_seconds: 3600, ..IDLE };
    assert_eq!(due(&ready(), &policy).unwrap().reason, "IDLE", "idle at 600 s comes first");
    let late = SessionRecord { last_disconnection_time_unix_ms: 3500 * S, ..ready() };
    assert_eq!(due(&late, &policy).unwrap().reason, "MAX_LIFETIME");
}

#[test]
fn a_session_s_own_limits_override_the_settings() {
    let own = |idle: Option<u32>, lifetime: Option<u32>| SessionRecord {
        spec: Some(CreateSessionSpec { max_idle_seconds: idle, max_lifetime_seconds: lifetime, ..Default::default() }),
        ..ready()
    };
    let off = ReapPolicy::default();
    assert_eq!(due(&own(Some(60), None), &off), Some(Due { at: 61 * S, reason: "IDLE" }), "on for it alone");
    assert_eq!(due(&own(None, Some(120)), &off).unwrap().reason, "MAX_LIFETIME");
    assert_eq!(due(&own(Some(0), None), &IDLE), None, "0 turns the setting off for it");
    assert_eq!(due(&own(None, None), &IDLE), due(&ready(), &IDLE), "absent: the setting");
}

#[test]
fn only_ready_sessions_are_reaped_and_a_changed_policy_cancels() {
    for state in [SessionState::Creating, SessionState::Unknown, SessionState::Deleting, SessionState::Deleted] {
        let session = SessionRecord { state: state as i32, ..ready() };
        assert_eq!(step(&session, &IDLE, 10_000 * S), None, "{state:?}");
    }
    let warned = SessionRecord { reap_at_unix_ms: 600 * S, reap_reason: "IDLE".into(), ..ready() };
    assert!(matches!(step(&warned, &ReapPolicy::default(), 601 * S), Some(Step::Cancel(_))), "turned off");
}

#[test]
fn a_delete_on_request_or_by_the_host_is_not_a_reap() {
    let warned = SessionRecord { reap_at_unix_ms: 600 * S, reap_reason: "IDLE".into(), ..ready() };
    let deleting = crate::lifecycle::delete_requested(&warned, false, 590 * S).unwrap();
    assert_eq!(deleting.reap_reason, "", "a DeleteSessions clears the announced reap");
    let deleted = crate::lifecycle::closed(&deleting, 591 * S).unwrap();
    assert_eq!((deleted.state_reason.as_str(), deleted.reap_at_unix_ms), ("", 0));
    let gone = crate::lifecycle::deleted(warned, crate::lifecycle::GONE_FROM_HOST, 592 * S);
    assert_eq!(gone.reap_reason, "");
}
