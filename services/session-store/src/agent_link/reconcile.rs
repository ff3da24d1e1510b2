//! Inventory reconciliation: what to write, and what to close, when an agent reports the full list of
//! sessions on its host.
//!
//! Pure: it compares the report with the broker's records and returns only the writes that change
//! something (store traffic follows change, not report frequency) and the sessions the host should not
//! have. The caller applies the writes with compare-and-set and sends the closes. The transitions are the
//! lifecycle's (`crate::lifecycle`):
//! - a session the host lists becomes READY (a CREATING one: the host confirmed it), a DELETING one keeps
//!   its state and is closed again;
//! - a session the host no longer lists ends: READY/UNKNOWN DELETED with [`GONE_FROM_HOST`], DELETING
//!   DELETED (the close happened); a CREATING one only once it waited past the stalled bound (the create
//!   may still be in flight before that);
//! - a session the host lists but the broker recorded DELETED, or on another host, is a stray copy: it is
//!   closed on this host; except a session deleted with `Force` (removed from the cache only), which is
//!   re-cached READY, as the guide says;
//! - CREATING and DELETING sessions past the stalled bound end DELETED with a reason saying so.

use std::collections::HashMap;

use switchboard_proto::{HostSession, SessionRecord, SessionState};

pub use crate::lifecycle::GONE_FROM_HOST;
use crate::lifecycle::{self, Bounds};

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

/// What one inventory asks for.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Reconciled {
    /// Writes, each a compare-and-set.
    pub changes: Vec<Change>,
    /// Sessions to close on this host: DELETING ones it still lists, and stray copies.
    pub to_close: Vec<String>,
    /// Whether a session on this host still waits on it (CREATING or DELETING after these writes): the
    /// caller reconciles every report until none does, so the stalled bound holds even when the
    /// inventory does not change.
    pub unsettled: bool,
}

/// Compares the host's `reported` inventory with `on_server` (every broker
/// record assigned to `server_id`) and `elsewhere` (broker records of reported
/// ids that are not assigned to this server).
pub fn reconcile(
    server_id: &str,
    reported: &[HostSession],
    on_server: &[SessionRecord],
    elsewhere: &[SessionRecord],
    bounds: &Bounds,
    now_ms: i64,
) -> Reconciled {
    let reported_by_id: HashMap<&str, &HostSession> = reported.iter().map(|h| (h.id.as_str(), h)).collect();
    let mut out = Reconciled::default();
    for record in on_server {
        let next = match reported_by_id.get(record.id.as_str()) {
            Some(host) => match record.state() {
                SessionState::Deleted => {
                    let recached = lifecycle::recached(record, server_id, host, now_ms);
                    if recached.is_none() {
                        out.to_close.push(record.id.clone());
                    }
                    recached
                }
                SessionState::Deleting => {
                    out.to_close.push(record.id.clone());
                    lifecycle::stalled(record, bounds, now_ms)
                        .or_else(|| Some(lifecycle::with_host_fields(record.clone(), host)))
                }
                _ => Some(lifecycle::ready(record.clone(), host, now_ms)),
            },
            None => match record.state() {
                SessionState::Ready | SessionState::Unknown => {
                    Some(lifecycle::deleted(record.clone(), GONE_FROM_HOST, now_ms))
                }
                SessionState::Deleting => lifecycle::closed(record, now_ms),
                SessionState::Creating => lifecycle::stalled(record, bounds, now_ms),
                _ => None,
            },
        };
        let state = next.as_ref().unwrap_or(record).state();
        out.unsettled |= matches!(state, SessionState::Creating | SessionState::Deleting);
        push_if_changed(&mut out.changes, record, next);
    }
    let known: HashMap<&str, &SessionRecord> =
        on_server.iter().chain(elsewhere).map(|record| (record.id.as_str(), record)).collect();
    for host in reported {
        match known.get(host.id.as_str()) {
            None => {
                let record =
                    SessionRecord { id: host.id.clone(), server_id: server_id.to_owned(), ..Default::default() };
                out.changes.push(Change::Insert(lifecycle::ready(record, host, now_ms)));
            }
            // On this server: handled above.
            Some(record) if record.server_id == server_id => {}
            // Placed nowhere yet but already on this host: adopt it.
            Some(record) if record.server_id.is_empty() && record.state() == SessionState::Creating => {
                let mut adopted = lifecycle::ready((*record).clone(), host, now_ms);
                adopted.server_id = server_id.to_owned();
                push_if_changed(&mut out.changes, record, Some(adopted));
            }
            // Deleted with Force while unplaced: re-cached here.
            Some(record) if record.forced && record.server_id.is_empty() => {
                push_if_changed(&mut out.changes, record, lifecycle::recached(record, server_id, host, now_ms));
            }
            // Recorded on another host, or DELETED: a stray copy (a create that timed out here and was
            // placed again elsewhere, or a close that never arrived).
            Some(_) => out.to_close.push(host.id.clone()),
        }
    }
    out
}

fn push_if_changed(changes: &mut Vec<Change>, record: &SessionRecord, next: Option<SessionRecord>) {
    if let Some(next) = next.filter(|next| next != record) {
        changes.push(Change::Update { session: next, expected_revision: record.revision });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_proto::SessionType;

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

    const BOUNDS: Bounds = Bounds { stalled_ms: 1000 };

    fn record(id: &str, state: SessionState) -> SessionRecord {
        let base = SessionRecord { id: id.into(), server_id: "h1".into(), ..Default::default() };
        let mut record = lifecycle::ready(base, &host(id, 0), 0);
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
        let changes = reconcile("h1", &[host("s1", 0)], &[record("s1", SessionState::Ready)], &[], &BOUNDS, 9).changes;
        assert!(changes.is_empty(), "no write when nothing changed: {changes:?}");
    }

    #[test]
    fn reported_sessions_become_ready_with_fresh_numbers() {
        let on_server = [record("s1", SessionState::Creating), record("s2", SessionState::Unknown)];
        let changes = reconcile("h1", &[host("s1", 2), host("s2", 0)], &on_server, &[], &BOUNDS, 9).changes;
        assert_eq!(updated(&changes), [("s1", SessionState::Ready), ("s2", SessionState::Ready)]);
        let Change::Update { session, .. } = &changes[0] else { unreachable!() };
        assert_eq!(session.num_of_connections, 2);
        assert!(session.substate.is_empty(), "READY clears the substate");
    }

    #[test]
    fn connection_count_change_is_written() {
        let changes = reconcile("h1", &[host("s1", 4)], &[record("s1", SessionState::Ready)], &[], &BOUNDS, 9).changes;
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
        let changes = reconcile("h1", &[], &on_server, &[], &BOUNDS, 9).changes;
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
        let changes = reconcile("h1", &[host("deleting", 1), host("deleted", 1)], &on_server, &[], &BOUNDS, 9).changes;
        assert_eq!(updated(&changes), [("deleting", SessionState::Deleting)], "only the numbers change");
    }

    #[test]
    fn unknown_sessions_are_created_ready() {
        let changes = reconcile("h1", &[host("new", 1)], &[], &[], &BOUNDS, 9).changes;
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
        let changes =
            reconcile("h1", &[host("other", 0), host("placing", 0)], &[], &[other, placing], &BOUNDS, 9).changes;
        let [Change::Update { session, .. }] = changes.as_slice() else { panic!("expected one update: {changes:?}") };
        assert_eq!((session.id.as_str(), session.server_id.as_str()), ("placing", "h1"));
        assert_eq!(session.state(), SessionState::Ready);
    }

    #[test]
    fn the_host_is_told_to_close_what_it_should_not_have() {
        let mut other = record("other", SessionState::Ready);
        other.server_id = "h2".into();
        let mut ended_elsewhere = record("ended", SessionState::Deleted);
        ended_elsewhere.server_id.clear();
        let forced = SessionRecord { forced: true, ..record("forced", SessionState::Deleted) };
        let on_server = [record("deleting", SessionState::Deleting), record("deleted", SessionState::Deleted), forced];
        let reported = ["other", "ended", "deleting", "deleted", "forced"].map(|id| host(id, 0));
        let out = reconcile("h1", &reported, &on_server, &[other, ended_elsewhere], &BOUNDS, 9);
        let mut to_close = out.to_close.clone();
        to_close.sort();
        assert_eq!(to_close, ["deleted", "deleting", "ended", "other"]);
        assert!(out.unsettled, "a DELETING session still waits on the host");
        assert_eq!(updated(&out.changes), [("forced", SessionState::Ready)], "only the force-deleted one is re-cached");
    }

    #[test]
    fn sessions_waiting_past_the_bound_end_and_settle_the_host() {
        let mut creating = record("creating", SessionState::Creating);
        creating.state_since_unix_ms = 100;
        let mut deleting = record("deleting", SessionState::Deleting);
        deleting.state_since_unix_ms = 100;
        let within = reconcile("h1", &[host("deleting", 0)], &[creating.clone(), deleting.clone()], &[], &BOUNDS, 1100);
        assert!(within.unsettled && within.to_close == ["deleting"], "{within:?}");
        assert!(within.changes.is_empty(), "nothing ends within the bound: {:?}", within.changes);
        let past = reconcile("h1", &[host("deleting", 0)], &[creating, deleting], &[], &BOUNDS, 1101);
        assert_eq!(updated(&past.changes), [("creating", SessionState::Deleted), ("deleting", SessionState::Deleted)]);
        assert!(!past.unsettled, "nothing waits on the host any more");
        assert_eq!(past.to_close, ["deleting"], "the host still lists it: closed again");
    }
}
