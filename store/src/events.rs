//! The event stream role: a bounded, ordered log of changes (`GET /events`, webhooks).
//!
//! **Who writes.** The backends append session and server events themselves, inside the same atomic
//! step as the write they report, so a stored change always has its event and no event reports a
//! change that did not happen:
//! - [`kind::SESSION_STATE`] on every session write that creates a session or changes its state
//!   (`insert_session(s)`, `update_session`);
//! - [`kind::SESSION_PLACED`] when `assign_session` assigns a host;
//! - [`kind::SERVER_AVAILABILITY`] when a server's operational availability ([`server_availability`])
//!   changes: a report, an open or close, a drain starting or ending, a server removed;
//! - [`kind::QUEUE_ENQUEUED`] when `queue_push` queues a request, and [`kind::QUEUE_POSITION`] for the
//!   requests that moved up into the first [`QUEUE_POSITION_EVENTS`] places when one leaves its queue.
//!
//! Services append the rest with [`Events::append_event`], right after the change they report
//! (permission changes, reaping warnings): a replica dying between the two loses that one event.
//!
//! **Ids.** `<ms>-<seq>`, increasing (a Redis stream id; the embedded backend makes the same). A reader
//! keeps the last id it saw and reads after it ([`Events::read_events`]). The log keeps about
//! `retained` events (the backend's setting, [`EVENTS_RETAINED`]); a reader whose cursor is
//! older than what was dropped is told so ([`EventPage::truncated`]) and should re-read state.

use async_trait::async_trait;
use switchboard_proto::EventRecord;

use crate::{BackendError, BackendResult};

/// Events kept when the backend's configuration does not say: about a day of a busy fleet.
pub const EVENTS_RETAINED: usize = 100_000;

/// How many places of a class's queue get a `queue.position` event when a request ahead of them leaves
/// (`prelude.lua`'s queue script says 10 too).
pub const QUEUE_POSITION_EVENTS: usize = 10;

/// Most events one [`Events::read_events`] call returns.
pub const READ_EVENTS_MAX: usize = 1000;

/// The event kinds (a contract with the gateway and webhook receivers).
pub use switchboard_proto::contract::event_kind as kind;

/// What [`Events::read_events`] found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EventPage {
    /// Events after the cursor, oldest first.
    pub events: Vec<EventRecord>,
    /// Whether events after the cursor were dropped (retention, or a restart of the embedded backend)
    /// before this read: the reader missed some and should re-read the state it follows.
    pub truncated: bool,
    /// The newest event's id in the log ("" when empty): where a reader that wants only new events
    /// starts.
    pub last_id: String,
}

/// The event log. Every method is atomic.
#[async_trait]
pub trait Events: Send + Sync + 'static {
    /// Appends `event` (its `id` and `at_unix_ms` are set by the store); returns its id.
    async fn append_event(&self, event: EventRecord) -> BackendResult<String>;

    /// Up to `limit` (at most [`READ_EVENTS_MAX`]) events with an id greater than `after`, oldest first.
    /// `after` is an event id or `0-0` (from the oldest kept); anything else is `InvalidArgument`.
    async fn read_events(&self, after: &str, limit: usize) -> BackendResult<EventPage>;
}

/// An event id as its two numbers ([`kind::parse_id`]); `InvalidArgument` for anything but `<ms>-<seq>`.
pub fn parse_id(id: &str) -> BackendResult<(u64, u64)> {
    kind::parse_id(id)
        .ok_or_else(|| BackendError::InvalidArgument(format!("event id {id:?} is not of the form <ms>-<seq>")))
}

pub use kind::format_id;

/// A server's operational availability as [`kind::SERVER_AVAILABILITY`] events report it:
/// `(AVAILABLE, "")` or `(UNAVAILABLE, reason)`, the first matching cause winning —
/// `UNREACHABLE_AGENT`, `SERVER_CLOSED` (draining too), `UNHEALTHY_DCV_SERVER`. The capacity causes
/// describeServers also shows (`SERVER_FULL`, …) change with every session and are not events.
/// `prelude.lua`'s `availability` is the same rule for the Redis backend.
pub fn server_availability(reachable: bool, open: bool, dcv_healthy: bool) -> (&'static str, &'static str) {
    match (reachable, open, dcv_healthy) {
        (false, _, _) => ("UNAVAILABLE", "UNREACHABLE_AGENT"),
        (true, false, _) => ("UNAVAILABLE", "SERVER_CLOSED"),
        (true, true, false) => ("UNAVAILABLE", "UNHEALTHY_DCV_SERVER"),
        (true, true, true) => ("AVAILABLE", ""),
    }
}

/// The availability event of a removed server.
pub const SERVER_REMOVED: &str = "SERVER_REMOVED";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_parse_and_format() {
        assert_eq!(parse_id("1700000000000-3").unwrap(), (1_700_000_000_000, 3));
        assert_eq!(format_id((5, 0)), "5-0");
        for bad in ["", "5", "-1", "5-", "a-1", "1-2-3", "+1-2", "1 -2"] {
            assert!(parse_id(bad).is_err(), "{bad:?} must be refused");
        }
    }

    #[test]
    fn the_redis_scripts_keep_the_same_default_retention() {
        let prelude = include_str!("redis/scripts/prelude.lua");
        assert!(prelude.contains(&format!("K_EVENTS_RETAINED) or '{EVENTS_RETAINED}'")), "prelude.lua's default");
    }

    #[test]
    fn the_redis_queue_script_reports_as_many_positions() {
        let queue = include_str!("redis/scripts/queue.lua");
        let limit = QUEUE_POSITION_EVENTS;
        assert!(queue.contains(&format!("rank < {limit} then")) && queue.contains(&format!("rank, {}", limit - 1)));
    }

    #[test]
    fn availability_first_cause_wins() {
        assert_eq!(server_availability(false, false, false), ("UNAVAILABLE", "UNREACHABLE_AGENT"));
        assert_eq!(server_availability(true, false, false), ("UNAVAILABLE", "SERVER_CLOSED"));
        assert_eq!(server_availability(true, true, false), ("UNAVAILABLE", "UNHEALTHY_DCV_SERVER"));
        assert_eq!(server_availability(true, true, true), ("AVAILABLE", ""));
    }
}
