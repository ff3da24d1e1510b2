//! The servers role: what agents report of their hosts, the operators' durable open/closed flag,
//! and the fleet change feed placement keeps its view current with.

use async_trait::async_trait;
use switchboard_proto::ServerRecord;

use crate::{BackendResult, Fence};

/// A page of the fleet change feed ([`Backend::server_changes`]).
///
/// Every write that changes what placement sees of a server (its report, its
/// open flag, its removal, and the session counts derived from its sessions)
/// gives the server a new, larger feed revision. Reading the servers whose
/// revision is above the one last seen keeps a copy of the fleet current
/// without listing it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServerChanges {
    /// Identity of the feed; a different one means revisions restarted (the
    /// store restarted or lost its data): read again from 0.
    pub generation: String,
    /// The revision seen after applying this page.
    pub revision: u64,
    /// Current records of the servers changed in this page.
    pub servers: Vec<ServerRecord>,
    /// Servers removed in this page.
    pub removed: Vec<String>,
    /// Whether more changes follow.
    pub more: bool,
}

/// What [`Servers::close_server`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum CloseOutcome {
    /// The server is closed (it was already, or it had no session, which `open` being false now keeps so).
    Closed(ServerRecord),
    /// Sessions run on it: it drains until its `drain_deadline_unix_ms`, closed for placement meanwhile.
    Draining(ServerRecord),
    /// Sessions run on it and it may not drain (a deadline of 0): nothing changed.
    HasSessions,
}

/// Server records and the fleet change feed. All methods are atomic.
///
/// An operator's state of a server is one of open, closed, or draining: closed for placement
/// (`open` false) with a `drain_deadline_unix_ms`, until its last session ends or the deadline passes
/// (then [`Servers::finish_drain`] makes it closed). The state and the deadline are durable together and
/// outlive the report like the `open` flag.
#[async_trait]
pub trait Servers: Send + Sync + 'static {
    /// Writes what an agent reported (identity, telemetry, tags, limits,
    /// reachability, health, last seen). Keeps the stored `open` flag; a new
    /// server gets the durable flag it had before it was forgotten, else
    /// `open = default_open`. `Fenced` if `fence` does not pass. Returns the
    /// stored record.
    async fn upsert_server_report(
        &self,
        report: ServerRecord,
        default_open: bool,
        fence: Option<&Fence>,
    ) -> BackendResult<ServerRecord>;

    /// Reads servers by id, in the order asked; unknown ids are skipped.
    async fn get_servers(&self, ids: &[String]) -> BackendResult<Vec<ServerRecord>>;

    /// Up to `limit` servers with id greater than `after_id`, ascending.
    async fn list_servers(&self, after_id: &str, limit: usize) -> BackendResult<Vec<ServerRecord>>;

    /// Opens or closes a server for placement (durable), whatever runs on it; ends a drain either way
    /// (opening cancels it, closing finishes it at once). `NotFound` if unknown.
    async fn set_server_open(&self, server_id: &str, open: bool) -> BackendResult<ServerRecord>;

    /// Closes a server without force, in one step with the check of its sessions (those counted in
    /// its record: on it and not DELETED), so no assignment slips in between. With sessions and a
    /// `drain_deadline_unix_ms` of 0 nothing changes (`HasSessions`, the original broker's refusal).
    /// Otherwise a server already closed (not draining) stays so, one without sessions is closed (a drain
    /// under way ends), and one with sessions drains until `drain_deadline_unix_ms` (a drain under way
    /// gets the new deadline). `NotFound` if unknown.
    async fn close_server(&self, server_id: &str, drain_deadline_unix_ms: i64) -> BackendResult<CloseOutcome>;

    /// Ends the drain of a server (it stays closed), only if it still drains until
    /// `drain_deadline_unix_ms`: an opening, a forced close or a new drain in between wins. Whether it
    /// ended it; a missing server is not an error (`false`).
    async fn finish_drain(&self, server_id: &str, drain_deadline_unix_ms: i64) -> BackendResult<bool>;

    /// Forgets a server (its `open` setting and drain included).
    async fn remove_server(&self, server_id: &str) -> BackendResult<()>;

    /// Forgets a long-gone server's report but keeps its durable `open` flag
    /// (and drain), so the host returns with it (the unreachable-server reaper). Only if
    /// its revision is still `expected_revision` (`Conflict`) and no live
    /// ownership lease exists (`Fenced`). A missing server is not an error.
    async fn forget_server(&self, server_id: &str, expected_revision: u64) -> BackendResult<()>;

    /// Servers whose feed revision is above `after_revision`, oldest change
    /// first, at most `limit` (see [`ServerChanges`]).
    async fn server_changes(&self, after_revision: u64, limit: usize) -> BackendResult<ServerChanges>;
}
