use switchboard_proto::contract::substate::PENDING_PREPARATION;

use super::*;

const BOUNDS: Bounds = Bounds { stalled_ms: 1000 };

fn creating(server_id: &str) -> SessionRecord {
    let substate = if server_id.is_empty() { SESSION_PLACING } else { PENDING_PREPARATION };
    SessionRecord {
        id: "s1".into(),
        owner: "alice".into(),
        server_id: server_id.into(),
        state: SessionState::Creating as i32,
        substate: substate.into(),
        state_since_unix_ms: 100,
        revision: 4,
        ..Default::default()
    }
}

fn with_state(state: SessionState, server_id: &str) -> SessionRecord {
    SessionRecord { state: state as i32, ..creating(server_id) }
}

type Transition = Box<dyn Fn(&SessionRecord) -> Option<SessionRecord>>;

#[test]
fn every_host_transition_applies_only_while_creating_on_that_host() {
    let transitions: [(&str, Transition); 5] = [
        ("starting", Box::new(|r| starting(r, "h1", 5))),
        ("created", Box::new(|r| created(r, "h1", None, 5))),
        ("retry_elsewhere", Box::new(|r| retry_elsewhere(r, "h1", "no", 5))),
        ("unconfirmed", Box::new(|r| unconfirmed(r, "h1", "no", 5))),
        ("fail_on", Box::new(|r| fail_on(r, "h1", "no", 5))),
    ];
    for (name, transition) in transitions {
        assert!(transition(&creating("h1")).is_some(), "{name} applies on its host");
        assert!(transition(&creating("h2")).is_none(), "{name}: placed elsewhere");
        assert!(transition(&creating("")).is_none(), "{name}: unplaced");
        for state in [SessionState::Ready, SessionState::Deleting, SessionState::Deleted] {
            assert!(transition(&with_state(state, "h1")).is_none(), "{name}: {state:?}");
        }
    }
}

#[test]
fn created_is_ready_with_the_hosts_fields_and_a_new_clock() {
    let host = HostSession { id: "s1".into(), num_of_connections: 2, storage_root: "/s".into(), ..Default::default() };
    let before = SessionRecord { max_concurrent_clients: 3, ..creating("h1") };
    let ready = created(&before, "h1", Some(&host), 777).unwrap();
    assert_eq!(ready.state(), SessionState::Ready);
    assert!(ready.substate.is_empty() && ready.state_reason.is_empty());
    assert_eq!((ready.num_of_connections, ready.storage_root.as_str()), (2, "/s"));
    assert_eq!(ready.max_concurrent_clients, 3, "a host that reports no limit keeps the broker's");
    assert_eq!(ready.state_since_unix_ms, 777);
}

#[test]
fn a_retry_goes_back_to_placing_and_deleted_records_say_why() {
    let retry = retry_elsewhere(&creating("h1"), "h1", "disk full", 9).unwrap();
    assert_eq!((retry.server_id.as_str(), retry.substate.as_str()), ("", SESSION_PLACING));
    assert_eq!(retry.state_reason, "retrying after: disk full");
    let failed = fail_on(&creating("h1"), "h1", "disk full", 9).unwrap();
    assert_eq!(failed.state(), SessionState::Deleted);
    assert_eq!((failed.state_reason.as_str(), failed.ended_unix_ms), ("disk full", 9));
}

#[test]
fn unplaced_sessions_fail_or_queue_only_while_unplaced() {
    assert!(fail_unplaced(&creating("h1"), "x", 1).is_none());
    assert_eq!(fail_unplaced(&creating(""), "no host", 1).unwrap().state(), SessionState::Deleted);
    let queued_record = queued(&creating(""), "no host fits").unwrap();
    assert!(is_queued(&queued_record));
    assert!(queued(&queued_record, "no host fits").is_none(), "already so: no write");
    assert!(queued(&creating("h1"), "x").is_none());
}

#[test]
fn delete_requests_follow_the_state() {
    let state = |record: SessionRecord, force| delete_requested(&record, force, 3).map(|r| r.state());
    assert_eq!(state(with_state(SessionState::Ready, "h1"), false), Some(SessionState::Deleting));
    assert_eq!(state(with_state(SessionState::Ready, "h1"), true), Some(SessionState::Deleted));
    assert_eq!(state(creating(""), false), Some(SessionState::Deleted), "never placed");
    assert_eq!(state(with_state(SessionState::Deleting, "h1"), false), None);
    assert_eq!(state(with_state(SessionState::Deleting, "h1"), true), Some(SessionState::Deleted));
    assert_eq!(state(with_state(SessionState::Deleted, "h1"), true), None);
}

#[test]
fn stalled_sessions_end_with_a_reason_naming_who_did_not_answer() {
    let at = |record: &SessionRecord, now| stalled(record, &BOUNDS, now);
    assert!(at(&creating("h1"), 1100).is_none(), "within the bound");
    let unplaced = at(&creating(""), 1101).unwrap();
    assert!(unplaced.state_reason.starts_with("placement did not finish within 1 s"), "{}", unplaced.state_reason);
    let on_host = at(&creating("h1"), 1101).unwrap();
    assert_eq!(on_host.state_reason, "the host h1 did not confirm the session within 1 s");
    let closing = at(&with_state(SessionState::Deleting, "h1"), 1101).unwrap();
    assert_eq!(closing.state_reason, "the host h1 did not confirm the close within 1 s");
    assert!(at(&queued(&creating(""), "wait").unwrap(), 1101).is_none(), "the queue bounds queued sessions");
    assert!(at(&with_state(SessionState::Ready, "h1"), 99_999).is_none());
    let old = SessionRecord { state_since_unix_ms: 0, creation_time_unix_ms: 50, ..creating("") };
    assert!(at(&old, 1049).is_none() && at(&old, 1051).is_some(), "records without the stamp count from creation");
}

#[test]
fn force_deletes_only_from_the_cache_and_a_listing_host_recaches() {
    let host = HostSession { id: "s1".into(), num_of_connections: 1, ..Default::default() };
    let forced = delete_requested(&with_state(SessionState::Ready, "h1"), true, 3).unwrap();
    assert!(forced.forced && forced.state() == SessionState::Deleted);
    let back = recached(&forced, "h1", &host, 9).unwrap();
    assert_eq!(
        (back.state(), back.forced, back.ended_unix_ms, back.num_of_connections),
        (SessionState::Ready, false, 0, 1)
    );
    assert!(recached(&forced, "h2", &host, 9).is_none(), "recorded on another host: a stray there");
    let closed = closed(&with_state(SessionState::Deleting, "h1"), 3).unwrap();
    assert!(recached(&closed, "h1", &host, 9).is_none(), "a confirmed close is final");
    let unplaced_forced = delete_requested(&creating(""), true, 3).unwrap();
    assert_eq!(recached(&unplaced_forced, "h1", &host, 9).unwrap().server_id, "h1");
}

#[test]
fn only_idle_unplaced_young_sessions_are_taken_over() {
    let bounds = Bounds { stalled_ms: 10_000 };
    let unplaced = SessionRecord {
        state: SessionState::Creating as i32,
        creation_time_unix_ms: 1_000,
        state_since_unix_ms: 1_000,
        ..Default::default()
    };
    let taken = taken_over(&unplaced, 2_000, &bounds, 3_000).expect("idle since before 2 000");
    assert_eq!(taken.state_since_unix_ms, 3_000, "the clock restarts, so no other replica claims it");
    assert!(taken_over(&taken, 2_000, &bounds, 3_000).is_none(), "a claimed session is not idle");
    assert!(taken_over(&unplaced, 500, &bounds, 3_000).is_none(), "not idle long enough");
    assert!(taken_over(&unplaced, 20_000, &bounds, 12_000).is_none(), "older than the bound: the sweep ends it");
    let placed = SessionRecord { server_id: "h1".into(), ..unplaced.clone() };
    assert!(taken_over(&placed, 2_000, &bounds, 3_000).is_none(), "on a host: its inventory decides");
    let queued = SessionRecord { state_reason: format!("{QUEUED_REASON_PREFIX}no host"), ..unplaced.clone() };
    assert!(taken_over(&queued, 2_000, &bounds, 3_000).is_none(), "queued: the queue worker owns it");
}
