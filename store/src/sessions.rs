//! The sessions role: session records, compare-and-set updates, and the atomic host assignment
//! that keeps hosts within their limits.

use async_trait::async_trait;
use switchboard_proto::SessionRecord;
use switchboard_proto::contract::{OWNER_COUNTS_MAX_SERVERS, RECORD_SESSIONS_MAX};

use crate::{BackendError, BackendResult, Fence};

/// The error of an [`Sessions::insert_sessions`] call that is too large or names an id twice, `None`
/// otherwise.
pub(crate) fn check_insert_batch(sessions: &[SessionRecord]) -> Option<BackendError> {
    if sessions.len() > RECORD_SESSIONS_MAX {
        return Some(BackendError::InvalidArgument(format!("at most {RECORD_SESSIONS_MAX} sessions per insert")));
    }
    let mut ids = std::collections::HashSet::with_capacity(sessions.len());
    sessions
        .iter()
        .find(|session| !ids.insert(session.id.as_str()))
        .map(|session| BackendError::AlreadyExists(format!("session {} (twice in one insert)", session.id)))
}

/// The `InvalidArgument` error of an [`Sessions::owner_session_counts`] call
/// with more than [`OWNER_COUNTS_MAX_SERVERS`] ids, `None` within the bound.
pub(crate) fn check_owner_counts_ids(server_ids: &[String]) -> Option<BackendError> {
    (server_ids.len() > OWNER_COUNTS_MAX_SERVERS).then(|| {
        BackendError::InvalidArgument(format!("at most {OWNER_COUNTS_MAX_SERVERS} server ids per owner_session_counts"))
    })
}

/// Why [`Backend::assign_session`] refused a host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AssignRejection {
    /// The server is not known.
    ServerNotFound,
    /// The server is closed for placement.
    ServerClosed,
    /// The server's agent is not connected.
    ServerUnreachable,
    /// The agent reports an unhealthy DCV server.
    DcvUnhealthy,
    /// A console session exists on the host already.
    ConsoleTaken,
    /// `max_virtual_sessions` reached.
    VirtualLimit,
    /// `max_concurrent_sessions_per_user` reached for this owner.
    UserLimit,
    /// The session is not waiting for placement (already placed, deleted, or unknown).
    SessionNotPlaceable,
}

impl AssignRejection {
    /// Stable text for logs, explanations and the gRPC `rejected` field.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ServerNotFound => "SERVER_NOT_FOUND",
            Self::ServerClosed => "SERVER_CLOSED",
            Self::ServerUnreachable => "UNREACHABLE_AGENT",
            Self::DcvUnhealthy => "UNHEALTHY_DCV_SERVER",
            Self::ConsoleTaken => "CONSOLE_SESSION_EXISTS",
            Self::VirtualLimit => "SERVER_FULL",
            Self::UserLimit => "USER_SESSION_LIMIT",
            Self::SessionNotPlaceable => "SESSION_NOT_PLACEABLE",
        }
    }
}

/// Outcome of [`Backend::assign_session`].
// Returned once per placement attempt and matched at once: boxing the record
// would cost an allocation for nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum AssignOutcome {
    /// The session now belongs to the server (substate `PENDING_PREPARATION`).
    Assigned(SessionRecord),
    /// The server cannot take it.
    Rejected(AssignRejection),
}

/// Session records. All methods are atomic; none holds a lock across calls, so replicas may
/// interleave freely.
///
/// Server counts (`console_session_count`, `virtual_session_count`) are derived by the backend from
/// the sessions assigned to the server that are not `DELETED`; callers never write them.
#[async_trait]
pub trait Sessions: Send + Sync + 'static {
    /// Inserts a new session; fails with `AlreadyExists` if the id is taken,
    /// `Fenced` if `fence` does not pass. Returns the stored record (revision 1).
    async fn insert_session(&self, session: SessionRecord, fence: Option<&Fence>) -> BackendResult<SessionRecord>;

    /// Inserts new sessions in one atomic step (one lock, one script call), each with revision 1: all of
    /// them, or — when any id is taken or repeated (`AlreadyExists`) — none. At most
    /// [`RECORD_SESSIONS_MAX`] at once, else `InvalidArgument`. Returns the stored records in the order given.
    async fn insert_sessions(&self, sessions: Vec<SessionRecord>) -> BackendResult<Vec<SessionRecord>>;

    /// Reads sessions by id, in the order asked; unknown ids are skipped.
    async fn get_sessions(&self, ids: &[String]) -> BackendResult<Vec<SessionRecord>>;

    /// Up to `limit` sessions with id greater than `after_id` (empty: from the
    /// start), in ascending id order.
    async fn list_sessions(&self, after_id: &str, limit: usize) -> BackendResult<Vec<SessionRecord>>;

    /// Every session assigned to `server_id` (any state).
    async fn sessions_on_server(&self, server_id: &str) -> BackendResult<Vec<SessionRecord>>;

    /// Replaces a session if its stored revision equals `expected_revision`;
    /// bumps the revision and returns the stored record. `Conflict` otherwise,
    /// `NotFound` if it does not exist. Counts follow state and server changes.
    /// `Fenced` if `fence` does not pass.
    async fn update_session(
        &self,
        session: SessionRecord,
        expected_revision: u64,
        fence: Option<&Fence>,
    ) -> BackendResult<SessionRecord>;

    /// Deletes a session record outright (expiry of DELETED sessions, forced
    /// deletes). Removing a missing record is not an error.
    async fn remove_session(&self, id: &str) -> BackendResult<()>;

    /// Removes up to `limit` DELETED sessions that ended before
    /// `ended_before_ms` (the retention reaper); returns how many.
    async fn remove_deleted_sessions(&self, ended_before_ms: i64, limit: usize) -> BackendResult<usize>;

    /// Atomically: if the session is CREATING and unassigned, and the server
    /// exists, is open, reachable, DCV-healthy, and within its limits (one
    /// console session; `max_virtual_sessions`; `max_concurrent_sessions_per_user`
    /// for the session's owner, counting every non-DELETED session on the
    /// host), assigns the session to it with substate `PENDING_PREPARATION`.
    /// Concurrent calls never oversubscribe a host nor assign one session twice.
    async fn assign_session(&self, session_id: &str, server_id: &str) -> BackendResult<AssignOutcome>;

    /// For each of `server_ids`, in the order asked, how many of `owner`'s
    /// sessions count against `max_concurrent_sessions_per_user` there: the
    /// owner's non-DELETED sessions assigned to that server id, exactly the
    /// number [`Backend::assign_session`] compares with the limit (so it
    /// refuses `UserLimit` for this owner iff the count is at the limit).
    /// Unknown servers, and servers without the owner's sessions, count 0.
    /// Each count is exact when read; the counts of different servers may be
    /// read at slightly different moments (Redis). At most
    /// [`OWNER_COUNTS_MAX_SERVERS`] ids, else `InvalidArgument`. Reads only
    /// the per-server counters, never the session records.
    async fn owner_session_counts(&self, owner: &str, server_ids: &[String]) -> BackendResult<Vec<u32>>;

    /// Reads one session (provided: [`Sessions::get_sessions`] with one id).
    async fn get_session(&self, id: &str) -> BackendResult<Option<SessionRecord>> {
        Ok(self.get_sessions(&[id.to_owned()]).await?.pop())
    }
}
