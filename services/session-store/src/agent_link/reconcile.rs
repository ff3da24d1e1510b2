//! Inventory reconciliation: what to write when an agent reports the full
//! list of sessions on its host.
//!
//! Pure: it compares the report with the broker's records and returns only
//! the writes that change something, so store traffic follows change, not
//! report frequency. The caller applies them with compare-and-set.

use std::collections::HashMap;

use switchboard_proto::{HostSession, SessionRecord, SessionState, SessionType};

/// Why a session the host no longer has becomes DELETED.
pub const GONE_FROM_HOST: &str = "session no longer exists on the host";

/// One write the reconciliation asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// A session the broker has no record of (e.g. after a broker restart).
    Insert(SessionRecord),
    /// A compare-and-set update of an existing record.
    Update {
        /// The new record.
        session: SessionRecord,
        /// The revision the record was read at.
        expected_revision: u64,
    },
}

/// Compares the host's `reported` inventory with `on_server` (every broker
/// record assigned to `server_id`) and `elsewhere` (broker records of reported
/// ids that are not assigned to this server).
pub fn reconcile(
    server_id: &str,
    reported: &[HostSession],
    on_server: &[SessionRecord],
    elsewhere: &[SessionRecord],
    now_ms: i64,
) -> Vec<Change> {
    let reported_by_id: HashMap<&str, &HostSession> = reported.iter().map(|h| (h.id.as_str(), h)).collect();
    let mut changes = Vec::new();
    for record in on_server {
        let next = match reported_by_id.get(record.id.as_str()) {
            Some(host) => present(record, host),
            None => absent(record, now_ms),
        };
        push_if_changed(&mut changes, record, next);
    }
    let known: HashMap<&str, &SessionRecord> =
        on_server.iter().chain(elsewhere).map(|record| (record.id.as_str(), record)).collect();
    for host in reported {
        match known.get(host.id.as_str()) {
            None => changes.push(Change::Insert(ready(new_record(server_id, host), host))),
            // Placed nowhere yet but already on this host: adopt it.
            Some(record) if record.server_id.is_empty() && record.state() == SessionState::Creating => {
                let mut adopted = ready((*record).clone(), host);
                adopted.server_id = server_id.to_owned();
                push_if_changed(&mut changes, record, Some(adopted));
            }
            // On this server (handled above), on another one, or DELETED.
            Some(_) => {}
        }
    }
    changes
}

fn push_if_changed(changes: &mut Vec<Change>, record: &SessionRecord, next: Option<SessionRecord>) {
    if let Some(next) = next.filter(|next| next != record) {
        changes.push(Change::Update { session: next, expected_revision: record.revision });
    }
}

/// A broker record the host still reports.
fn present(record: &SessionRecord, host: &HostSession) -> Option<SessionRecord> {
    match record.state() {
        // A forced or confirmed delete is final; the host will be told again.
        SessionState::Deleted => None,
        // Close in flight: refresh the numbers, keep the state.
        SessionState::Deleting => Some(with_host_fields(record.clone(), host)),
        _ => Some(ready(record.clone(), host)),
    }
}

/// A broker record the host does not report.
fn absent(record: &SessionRecord, now_ms: i64) -> Option<SessionRecord> {
    let mut next = record.clone();
    match record.state() {
        SessionState::Ready | SessionState::Unknown => next.state_reason = GONE_FROM_HOST.to_owned(),
        SessionState::Deleting => {}
        // CREATING: the create command may still be in flight.
        _ => return None,
    }
    next.state = SessionState::Deleted as i32;
    next.substate.clear();
    next.num_of_connections = 0;
    next.ended_unix_ms = now_ms;
    Some(next)
}

fn ready(record: SessionRecord, host: &HostSession) -> SessionRecord {
    let mut next = with_host_fields(record, host);
    next.state = SessionState::Ready as i32;
    next.substate.clear();
    next.state_reason.clear();
    next
}

fn new_record(server_id: &str, host: &HostSession) -> SessionRecord {
    SessionRecord { id: host.id.clone(), server_id: server_id.to_owned(), ..Default::default() }
}

/// Copies what the host knows best onto the record; empty host values keep
/// the broker's.
fn with_host_fields(mut record: SessionRecord, host: &HostSession) -> SessionRecord {
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
    record.max_concurrent_clients = host.max_concurrent_clients;
    record.num_of_connections = host.num_of_connections;
    record.last_disconnection_time_unix_ms = host.last_disconnection_time_unix_ms;
    record
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(id: &str, connections: u32) -> HostSession {
        HostSession {
            id: id.into(),
            name: "desk".into(),
            owner: "alice".into(),
            r#type: SessionType::Virtual as i32,
            num_of_connections: connections,
            creation_time_unix_ms: 5,
            ..Default::default()
        }
    }

    fn record(id: &str, state: SessionState) -> SessionRecord {
        let mut record = ready(new_record("h1", &host(id, 0)), &host(id, 0));
        record.state = state as i32;
        record.revision = 3;
        record
    }

    fn updated(changes: &[Change]) -> Vec<(&str, SessionState)> {
        changes
            .iter()
            .map(|change| match change {
                Change::Update { session, expected_revision } => {
                    assert_eq!(*expected_revision, 3, "updates carry the revision read");
                    (session.id.as_str(), session.state())
                }
                Change::Insert(session) => panic!("unexpected insert of {}", session.id),
            })
            .collect()
    }

    #[test]
    fn unchanged_inventory_writes_nothing() {
        let changes = reconcile("h1", &[host("s1", 0)], &[record("s1", SessionState::Ready)], &[], 9);
        assert!(changes.is_empty(), "no write when nothing changed: {changes:?}");
    }

    #[test]
    fn reported_sessions_become_ready_with_fresh_numbers() {
        let on_server = [record("s1", SessionState::Creating), record("s2", SessionState::Unknown)];
        let changes = reconcile("h1", &[host("s1", 2), host("s2", 0)], &on_server, &[], 9);
        assert_eq!(updated(&changes), [("s1", SessionState::Ready), ("s2", SessionState::Ready)]);
        let Change::Update { session, .. } = &changes[0] else { unreachable!() };
        assert_eq!(session.num_of_connections, 2);
        assert!(session.substate.is_empty(), "READY clears the substate");
    }

    #[test]
    fn connection_count_change_is_written() {
        let changes = reconcile("h1", &[host("s1", 4)], &[record("s1", SessionState::Ready)], &[], 9);
        assert_eq!(updated(&changes), [("s1", SessionState::Ready)]);
    }

    #[test]
    fn absent_sessions_end_by_state() {
        let on_server = [
            record("ready", SessionState::Ready),
            record("unknown", SessionState::Unknown),
            record("deleting", SessionState::Deleting),
            record("creating", SessionState::Creating),
            record("deleted", SessionState::Deleted),
        ];
        let changes = reconcile("h1", &[], &on_server, &[], 9);
        assert_eq!(
            updated(&changes),
            [("ready", SessionState::Deleted), ("unknown", SessionState::Deleted), ("deleting", SessionState::Deleted)],
            "CREATING may still be in flight and DELETED is final"
        );
        let Change::Update { session, .. } = &changes[0] else { unreachable!() };
        assert_eq!(session.state_reason, GONE_FROM_HOST);
        assert_eq!(session.ended_unix_ms, 9);
    }

    #[test]
    fn deleting_and_deleted_keep_their_state_while_reported() {
        let on_server = [record("deleting", SessionState::Deleting), record("deleted", SessionState::Deleted)];
        let changes = reconcile("h1", &[host("deleting", 1), host("deleted", 1)], &on_server, &[], 9);
        assert_eq!(updated(&changes), [("deleting", SessionState::Deleting)], "only the numbers change");
    }

    #[test]
    fn unknown_sessions_are_created_ready() {
        let changes = reconcile("h1", &[host("new", 1)], &[], &[], 9);
        let [Change::Insert(session)] = changes.as_slice() else { panic!("expected one insert: {changes:?}") };
        assert_eq!((session.server_id.as_str(), session.state()), ("h1", SessionState::Ready));
        assert_eq!(session.owner, "alice");
    }

    #[test]
    fn sessions_placed_elsewhere_are_left_alone_and_unplaced_ones_adopted() {
        let mut other = record("other", SessionState::Ready);
        other.server_id = "h2".into();
        let mut placing = record("placing", SessionState::Creating);
        placing.server_id.clear();
        let changes = reconcile("h1", &[host("other", 0), host("placing", 0)], &[], &[other, placing], 9);
        let [Change::Update { session, .. }] = changes.as_slice() else { panic!("expected one update: {changes:?}") };
        assert_eq!((session.id.as_str(), session.server_id.as_str()), ("placing", "h1"));
        assert_eq!(session.state(), SessionState::Ready);
    }
}
