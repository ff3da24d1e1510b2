//! Contract constants every side of a call must agree on, defined once: API failure texts that the
//! official broker's clients match on, substates, and the bounds of internal calls.

/// Substates of a session (`SessionRecord.substate`, the API's `Substate`).
pub mod substate {
    /// A session waiting for a host (placement is choosing one, or it is queued).
    pub const SESSION_PLACING: &str = "SESSION_PLACING";
    /// A session assigned to a host whose agent has not created it yet.
    pub const PENDING_PREPARATION: &str = "PENDING_PREPARATION";
}

/// How the StateReason of a CREATING session waiting in the create-sessions queue begins.
pub const QUEUED_REASON_PREFIX: &str = "queued: ";

/// `FailureReason` of DeleteSessions, UpdateSessionPermissions and GetSessionConnectionData for an
/// unknown (or not visible) session, as the original broker words it.
pub const SESSION_NOT_FOUND: &str = "The requested dcvSession does not exist";

/// `FailureReason` of GetSessionScreenshots for an unknown session, as the original broker words it.
pub const SCREENSHOT_SESSION_NOT_FOUND: &str = "Dcv session not found.";

/// Largest DCV permissions file accepted (CreateSessions' and UpdateSessionPermissions'
/// `PermissionsFile`, decoded), in bytes. The gateway, placement and the agent check the same bound.
pub const PERMISSIONS_FILE_MAX_BYTES: usize = 64 * 1024;

/// Most sessions one `RecordSessions` call (and the store's `insert_sessions`) records at once; a
/// CreateSessions request is bounded lower by placement's `max_batch`.
pub const RECORD_SESSIONS_MAX: usize = 1000;

/// Most server ids one `OwnerSessionCounts` call (and the store's `owner_session_counts`) takes.
/// Bounds one call's work (one Redis pipeline, one hold of the embedded lock).
pub const OWNER_COUNTS_MAX_SERVERS: usize = 5000;

/// Longest drain of a server closed without Force while sessions run on it (CloseServers'
/// `DrainTimeoutSeconds`, session-store's `drain_timeout_seconds` setting), in seconds: 7 days. The gateway
/// refuses a longer item; session-store checks the same bound.
pub const DRAIN_TIMEOUT_MAX_SECONDS: u32 = 7 * 24 * 3600;

/// Longest idle time and lifetime a session may be given before the reaper deletes it (CreateSessions'
/// `MaxIdleSeconds` and `MaxLifetimeSeconds`, session-store's `session_max_idle_seconds` and
/// `session_max_lifetime_seconds`), in seconds: 365 days. The gateway fails a larger item; placement
/// checks the same bound.
pub const REAP_MAX_SECONDS: u32 = 365 * 24 * 3600;

/// Longest warning before a reap (session-store's `reap_warning_seconds`), in seconds: 1 day.
pub const REAP_WARNING_MAX_SECONDS: u32 = 24 * 3600;

/// The record's `reap_reason` (and the API's `ReapReason`) for a session without a client connection for
/// its maximum idle time.
pub const REAP_REASON_IDLE: &str = "IDLE";

/// The record's `reap_reason` (and the API's `ReapReason`) for a session past its maximum lifetime.
pub const REAP_REASON_MAX_LIFETIME: &str = "MAX_LIFETIME";

/// CloseServers' `FailureCode` for a server with sessions closed without Force when it may not drain
/// (`DrainTimeoutSeconds` 0, the default): the original broker's answer.
pub const SERVER_HAS_SESSIONS: &str = "SERVER_HAS_SESSIONS";

/// Longest `Idempotency-Key` accepted on CreateSessions, in characters (each printable ASCII). The
/// gateway answers 400 beyond it; placement checks the same bound.
pub const IDEMPOTENCY_KEY_MAX_CHARS: usize = 255;

/// Whether `key` is a valid `Idempotency-Key`: 1 to [`IDEMPOTENCY_KEY_MAX_CHARS`] printable ASCII
/// characters (space to `~`), not starting or ending with a space (HTTP trims those off header values, so
/// they could not be sent faithfully).
pub fn is_valid_idempotency_key(key: &str) -> bool {
    (1..=IDEMPOTENCY_KEY_MAX_CHARS).contains(&key.len())
        && key.bytes().all(|b| (b' '..=b'~').contains(&b))
        && !key.starts_with(' ')
        && !key.ends_with(' ')
}

/// What an API client reads when its `Idempotency-Key` is malformed.
pub const IDEMPOTENCY_KEY_INVALID: &str =
    "Idempotency-Key must be 1 to 255 printable ASCII characters, without leading or trailing spaces";

/// What an API client reads when it retries while the first request with the key still runs.
pub const IDEMPOTENCY_KEY_IN_PROGRESS: &str = "A request with this Idempotency-Key is in progress; retry later";

/// What an API client reads when it reuses a key with a different request body.
pub const IDEMPOTENCY_KEY_REUSED: &str =
    "This Idempotency-Key was already used with a different request; use a new key for a new request";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idempotency_keys_are_printable_ascii_within_bounds() {
        for good in ["a", "550e8400-e29b-41d4-a716-446655440000", "with inner space", "~!{}", &"k".repeat(255)] {
            assert!(is_valid_idempotency_key(good), "{good:?}");
        }
        for bad in ["", " ", " lead", "trail ", "tab\there", "caf\u{e9}", "nl\n", &"k".repeat(256)] {
            assert!(!is_valid_idempotency_key(bad), "{bad:?}");
        }
    }
}

/// The kinds of the event stream's events (`GET /events`, `EventRecord.kind`; `switchboard_store::events`
/// says who appends each).
pub mod event_kind {
    /// A session was created (state CREATING) or changed state.
    pub const SESSION_STATE: &str = "session.state";
    /// A CREATING session was assigned its host.
    pub const SESSION_PLACED: &str = "session.placed";
    /// A server became available or unavailable (reachable, open, DCV healthy), or was removed.
    pub const SERVER_AVAILABILITY: &str = "server.availability";
    /// A create request waits in the queue (`detail`: its requirement class; `queue_position`).
    pub const QUEUE_ENQUEUED: &str = "queue.enqueued";
    /// A queued request moved up in its class's queue (one ahead of it was placed or left): its new
    /// `queue_position`, for the first few places only (`switchboard_store::events::QUEUE_POSITION_EVENTS`).
    pub const QUEUE_POSITION: &str = "queue.position";
    /// A session's permissions file was replaced (updateSessionPermissions).
    pub const SESSION_PERMISSIONS: &str = "session.permissions";
    /// A session will be reaped (idle or too old): `reason` says which limit, `detail` when.
    pub const SESSION_REAP_WARNING: &str = "session.reap_warning";

    /// Every kind, in the order documented.
    pub const ALL: &[&str] = &[
        SESSION_STATE,
        SESSION_PLACED,
        SERVER_AVAILABILITY,
        QUEUE_ENQUEUED,
        QUEUE_POSITION,
        SESSION_PERMISSIONS,
        SESSION_REAP_WARNING,
    ];

    /// An event id's two numbers (`<ms>-<seq>`, a Redis stream id), `None` for anything else: the one
    /// parser of event ids and cursors (store, gateway).
    pub fn parse_id(id: &str) -> Option<(u64, u64)> {
        let (ms, seq) = id.split_once('-')?;
        let digits = |part: &str| !part.is_empty() && part.len() <= 20 && part.bytes().all(|b| b.is_ascii_digit());
        if !digits(ms) || !digits(seq) {
            return None;
        }
        Some((ms.parse().ok()?, seq.parse().ok()?))
    }

    /// An event id from its two numbers.
    pub fn format_id((ms, seq): (u64, u64)) -> String {
        format!("{ms}-{seq}")
    }

    /// Whether events of `kind` are about a session (and so carry its owner).
    pub fn is_session_event(kind: &str) -> bool {
        kind != SERVER_AVAILABILITY
    }
}
