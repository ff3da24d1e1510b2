//! Storage behind one trait.
//!
//! [`Backend`] is everything Switchboard keeps as shared state: sessions,
//! servers, agent-stream ownership, API clients, signing keys, and agent
//! enrolment (software statements, agent clients, used token ids). Every method
//! is atomic on its own, so any number of service replicas may call it at once.
//! Implementations:
//! - [`embedded::EmbeddedBackend`]: in-process, durable on disk under the data
//!   dir (the all-in-one default);
//! - [`redis::RedisBackend`]: shared by every replica of a multi-process
//!   deployment, with multi-key invariants in Lua scripts.
//!
//! [`open_backend`] builds either from a [`BackendConfig`].
//!
//! Every implementation must pass [`conformance`], the one shared suite.
//!
//! Records are the protobuf messages of `switchboard-proto` (and the two
//! prost messages below), so backends store them with protobuf encoding.

pub mod conformance;
mod conformance_agents;
mod conformance_counts;
mod conformance_fencing;
mod conformance_queue;
pub mod embedded;
pub mod redis;

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use switchboard_proto::{QueuedRequest, ServerRecord, SessionRecord};

/// What can go wrong in a backend.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// No record with this key.
    #[error("not found: {0}")]
    NotFound(String),
    /// A record with this key exists already.
    #[error("already exists: {0}")]
    AlreadyExists(String),
    /// The record changed since it was read (compare-and-set failed).
    #[error("revision conflict on {0}")]
    Conflict(String),
    /// The backend cannot be reached or failed to answer.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// A stored record could not be decoded.
    #[error("corrupt record {0}")]
    Corrupt(String),
    /// A fenced write was refused: the writer's agent-stream ownership is no
    /// longer current (or, for an unowned write, a live owner exists).
    #[error("fenced off: {0}")]
    Fenced(String),
    /// The call's arguments are out of bounds (e.g. too many ids).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

impl BackendError {
    /// The shared error code for this failure.
    pub fn code(&self) -> switchboard_common::ErrorCode {
        use switchboard_common::ErrorCode;
        match self {
            Self::NotFound(_) => ErrorCode::NotFound,
            Self::AlreadyExists(_) => ErrorCode::AlreadyExists,
            Self::Conflict(_) => ErrorCode::Conflict,
            Self::Unavailable(_) => ErrorCode::Unavailable,
            Self::Corrupt(_) => ErrorCode::Internal,
            Self::Fenced(_) => ErrorCode::Conflict,
            Self::InvalidArgument(_) => ErrorCode::InvalidArgument,
        }
    }
}

/// Result alias for backend calls.
pub type BackendResult<T> = Result<T, BackendError>;

/// Most server ids one [`Backend::owner_session_counts`] call takes; more is
/// `InvalidArgument`. Bounds the work of one call (one Redis pipeline, one
/// hold of the embedded lock).
pub const OWNER_COUNTS_MAX_SERVERS: usize = 5000;

/// The `InvalidArgument` error of an [`Backend::owner_session_counts`] call
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

/// A precondition on the agent-stream ownership of a server, checked in the
/// same atomic step as the write it guards.
///
/// Writes made on behalf of an agent stream carry [`Fence::Owner`], so a
/// replica that lost the stream to a newer claim (the agent reconnected
/// elsewhere) cannot overwrite what the new owner wrote. Writes made on
/// behalf of nobody (the liveness sweep declaring a host gone) carry
/// [`Fence::Unowned`], so they cannot undo a reconnect that just happened.
/// A refused write fails with [`BackendError::Fenced`] and changes nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fence {
    /// Passes while `epoch` is the server's current ownership epoch (the
    /// lease may have lapsed: nobody has claimed since).
    Owner {
        /// The server whose stream the writer owns.
        server_id: String,
        /// The epoch of the writer's claim.
        epoch: u64,
    },
    /// Passes while no live ownership lease exists for the server.
    Unowned {
        /// The server declared gone.
        server_id: String,
    },
}

impl Fence {
    /// The fence of a stream owner.
    pub fn owner(server_id: &str, epoch: u64) -> Self {
        Self::Owner { server_id: server_id.to_owned(), epoch }
    }

    /// The fence of a write that needs the host to be gone.
    pub fn unowned(server_id: &str) -> Self {
        Self::Unowned { server_id: server_id.to_owned() }
    }

    /// The server whose ownership is checked.
    pub fn server_id(&self) -> &str {
        match self {
            Self::Owner { server_id, .. } | Self::Unowned { server_id } => server_id,
        }
    }

    /// Whether the fence passes given the current ownership (`None`: never
    /// claimed or released) at `now_ms`.
    pub fn admits(&self, current: Option<&AgentOwnership>, now_ms: i64) -> bool {
        match self {
            Self::Owner { epoch, .. } => current.is_some_and(|o| o.epoch == *epoch),
            Self::Unowned { .. } => current.is_none_or(|o| o.lease_until_ms <= now_ms),
        }
    }

    /// The error of a refused write.
    pub fn refused(&self) -> BackendError {
        match self {
            Self::Owner { server_id, epoch } => {
                BackendError::Fenced(format!("agent {server_id} epoch {epoch} is no longer the owner"))
            }
            Self::Unowned { server_id } => BackendError::Fenced(format!("agent {server_id} has a live owner")),
        }
    }
}

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

/// Outcome of [`Backend::queue_push`].
#[derive(Debug, Clone, PartialEq)]
pub enum QueuePush {
    /// Queued; the stored entry (sequence and times set).
    Queued(QueuedRequest),
    /// The queue already holds `max_size` entries.
    Full,
    /// The session is queued already; nothing changed.
    AlreadyQueued,
}

/// Which storage a process uses; see [`open_backend`].
#[derive(Debug, Clone)]
pub enum BackendConfig {
    /// The embedded backend, durable in `<data_dir>/switchboard.redb`. One
    /// process only: the all-in-one mode.
    Embedded {
        /// Directory of the durable file.
        data_dir: PathBuf,
    },
    /// A shared Redis: any number of processes and replicas.
    Redis(redis::RedisConfig),
}

impl From<switchboard_common::config::StorageChoice> for BackendConfig {
    /// The backend a binary's storage settings chose.
    fn from(choice: switchboard_common::config::StorageChoice) -> Self {
        match choice {
            switchboard_common::config::StorageChoice::Redis { url, key_prefix } => {
                Self::Redis(redis::RedisConfig { url, key_prefix })
            }
            switchboard_common::config::StorageChoice::Embedded(data_dir) => Self::Embedded { data_dir },
        }
    }
}

/// Opens the configured backend (connecting to Redis, or opening the redb
/// file) for a service binary.
pub async fn open_backend(config: &BackendConfig) -> BackendResult<Arc<dyn Backend>> {
    Ok(match config {
        BackendConfig::Embedded { data_dir } => Arc::new(embedded::EmbeddedBackend::open(data_dir)?),
        BackendConfig::Redis(redis) => Arc::new(redis::RedisBackend::connect(redis.clone()).await?),
    })
}

/// Which session-store replica owns an agent's stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentOwnership {
    /// Replica id of the owner.
    pub owner_id: String,
    /// Address other replicas use to reach the owner (`http://host:port`).
    pub owner_address: String,
    /// Ownership epoch; every new claim gets a larger one. Writes carrying an
    /// older epoch are stale and refused.
    pub epoch: u64,
    /// Lease expiry, ms since epoch; the owner renews it while the stream lives.
    pub lease_until_ms: i64,
}

/// A registered API client. Only a hash of its secret is stored.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ApiClientRecord {
    /// Client id (public).
    #[prost(string, tag = "1")]
    pub client_id: String,
    /// Human-readable name.
    #[prost(string, tag = "2")]
    pub client_name: String,
    /// SHA-256 of the secret (secrets are 256-bit random, so a fast hash is
    /// sufficient; see ARCHITECTURE.md).
    #[prost(bytes = "vec", tag = "3")]
    pub secret_sha256: Vec<u8>,
    /// Registration time, ms since epoch.
    #[prost(int64, tag = "4")]
    pub created_unix_ms: i64,
    /// Read-only client: describe operations and connection data only.
    #[prost(bool, tag = "5")]
    pub read_only: bool,
    /// When not empty, the client may only touch sessions of these owners
    /// (and no server operations).
    #[prost(string, repeated, tag = "6")]
    pub allowed_owners: Vec<String>,
}

/// A trusted external authorization server (its tokens are accepted by the API).
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct AuthServerRecord {
    /// JWKS URL; the key of the record.
    #[prost(string, tag = "1")]
    pub url: String,
    /// JWS algorithm pinned for its keys; empty: from each JWK.
    #[prost(string, tag = "2")]
    pub algorithm: String,
    /// Required `iss`; empty: not checked.
    #[prost(string, tag = "3")]
    pub issuer: String,
    /// Required `aud`; empty: not checked.
    #[prost(string, tag = "4")]
    pub audience: String,
    /// Registration time, ms since epoch.
    #[prost(int64, tag = "5")]
    pub created_unix_ms: i64,
}

/// A token-signing key. The private half never leaves the auth service, and
/// `Debug` never prints it.
#[derive(Clone, PartialEq, prost::Message)]
#[prost(skip_debug)]
pub struct SigningKeyRecord {
    /// Key id (`kid`).
    #[prost(string, tag = "1")]
    pub kid: String,
    /// JWS algorithm pinned to this key, e.g. `EdDSA`.
    #[prost(string, tag = "2")]
    pub algorithm: String,
    /// PKCS#8 private key, PEM.
    #[prost(string, tag = "3")]
    pub private_key_pem: String,
    /// Public key as a JWK (JSON).
    #[prost(string, tag = "4")]
    pub public_jwk_json: String,
    /// Creation time, ms since epoch.
    #[prost(int64, tag = "5")]
    pub created_unix_ms: i64,
    /// From when the key signs new tokens, ms since epoch (published before).
    #[prost(int64, tag = "6")]
    pub active_from_unix_ms: i64,
    /// When the key stopped signing, ms since epoch; 0 while current. It keeps
    /// verifying until every token it signed has expired.
    #[prost(int64, tag = "7")]
    pub retired_unix_ms: i64,
}

impl std::fmt::Debug for SigningKeyRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKeyRecord")
            .field("kid", &self.kid)
            .field("algorithm", &self.algorithm)
            .field("private_key_pem", &"[redacted]")
            .field("created_unix_ms", &self.created_unix_ms)
            .field("active_from_unix_ms", &self.active_from_unix_ms)
            .field("retired_unix_ms", &self.retired_unix_ms)
            .finish_non_exhaustive()
    }
}

/// A software statement: the credential that lets an agent register itself
/// (RFC 7591 style). Only a hash of its secret part is stored.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SoftwareStatementRecord {
    /// Statement id (public; printed by describe, named by deactivate).
    #[prost(string, tag = "1")]
    pub id: String,
    /// SHA-256 of the statement's 256-bit random secret.
    #[prost(bytes = "vec", tag = "2")]
    pub secret_sha256: Vec<u8>,
    /// Creation time, ms since epoch.
    #[prost(int64, tag = "3")]
    pub issued_at_unix_ms: i64,
    /// Whether agents may still register with it. Backends report the
    /// current state on read (deactivation is one atomic step).
    #[prost(bool, tag = "4")]
    pub active: bool,
}

/// A registered agent: its credentials and the server id it speaks for.
/// Only a hash of its secret is stored.
#[derive(Clone, PartialEq, prost::Message)]
pub struct AgentClientRecord {
    /// Client id (public).
    #[prost(string, tag = "1")]
    pub client_id: String,
    /// Human-readable name (the agent's host name at registration).
    #[prost(string, tag = "2")]
    pub client_name: String,
    /// SHA-256 of the client secret (256-bit random).
    #[prost(bytes = "vec", tag = "3")]
    pub secret_sha256: Vec<u8>,
    /// Registration time, ms since epoch.
    #[prost(int64, tag = "4")]
    pub created_unix_ms: i64,
    /// The software statement it registered with.
    #[prost(string, tag = "5")]
    pub software_statement_id: String,
    /// The server id it is bound to (empty until its first hello). Written
    /// only by [`Backend::bind_agent_server`]; backends fill it in on read.
    #[prost(string, tag = "6")]
    pub server_id: String,
}

/// The shared-state store. All methods are atomic; none holds a lock across
/// calls, so replicas may interleave freely.
///
/// Server counts (`console_session_count`, `virtual_session_count`) are
/// derived by the backend from the sessions assigned to the server that are
/// not `DELETED`; callers never write them.
#[async_trait]
pub trait Backend: Send + Sync + 'static {
    // ----- sessions -----

    /// Inserts a new session; fails with `AlreadyExists` if the id is taken,
    /// `Fenced` if `fence` does not pass. Returns the stored record (revision 1).
    async fn insert_session(&self, session: SessionRecord, fence: Option<&Fence>) -> BackendResult<SessionRecord>;

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

    // ----- servers -----

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

    /// Opens or closes a server for placement (durable). `NotFound` if unknown.
    async fn set_server_open(&self, server_id: &str, open: bool) -> BackendResult<ServerRecord>;

    /// Forgets a server (its `open` setting included).
    async fn remove_server(&self, server_id: &str) -> BackendResult<()>;

    /// Forgets a long-gone server's report but keeps its durable `open` flag,
    /// so the host returns with it (the unreachable-server reaper). Only if
    /// its revision is still `expected_revision` (`Conflict`) and no live
    /// ownership lease exists (`Fenced`). A missing server is not an error.
    async fn forget_server(&self, server_id: &str, expected_revision: u64) -> BackendResult<()>;

    /// Servers whose feed revision is above `after_revision`, oldest change
    /// first, at most `limit` (see [`ServerChanges`]).
    async fn server_changes(&self, after_revision: u64, limit: usize) -> BackendResult<ServerChanges>;

    // ----- the create-sessions queue -----
    //
    // Entries are ordered by a sequence the backend assigns and grouped by
    // `class_id`; a claim (id + lease) gives one caller the right to work on
    // an entry, and a lapsed claim may be taken over. Times use the backend's
    // clock.

    /// Appends an entry for `entry.session_id` unless the queue holds
    /// `max_size` entries (`Full`) or the session is queued (`AlreadyQueued`).
    /// Sets `sequence`, `enqueued_unix_ms` and `deadline_unix_ms` (now +
    /// `max_wait_ms`); clears the claim.
    async fn queue_push(&self, entry: QueuedRequest, max_wait_ms: u64, max_size: usize) -> BackendResult<QueuePush>;

    /// The first `per_class` entries of every class that are not under a
    /// live claim, in sequence order per class.
    async fn queue_heads(&self, per_class: usize) -> BackendResult<Vec<QueuedRequest>>;

    /// Claims one entry for `lease_ms` unless another live claim holds it;
    /// returns the entry with its claim, `None` if held or not queued.
    async fn queue_claim(
        &self,
        session_id: &str,
        claim_id: &str,
        lease_ms: u64,
    ) -> BackendResult<Option<QueuedRequest>>;

    /// Claims up to `limit` entries whose deadline has passed and that no live
    /// claim holds, oldest deadline first.
    async fn queue_claim_expired(
        &self,
        claim_id: &str,
        lease_ms: u64,
        limit: usize,
    ) -> BackendResult<Vec<QueuedRequest>>;

    /// Ends a claim, keeping the entry in its place; `false` if `claim_id`
    /// does not hold it (taken over after its lease lapsed, or removed).
    async fn queue_release(&self, session_id: &str, claim_id: &str) -> BackendResult<bool>;

    /// Removes an entry whatever its claim; `false` if it was not queued.
    async fn queue_remove(&self, session_id: &str) -> BackendResult<bool>;

    /// Entries in the queue.
    async fn queue_len(&self) -> BackendResult<usize>;

    // ----- agent stream ownership -----

    /// Claims an agent's stream for a replica: always succeeds, with an epoch
    /// larger than any before for this server.
    async fn claim_agent(
        &self,
        server_id: &str,
        owner_id: &str,
        owner_address: &str,
        lease_ms: i64,
    ) -> BackendResult<AgentOwnership>;

    /// Extends the lease if `epoch` is still current; `Conflict` if another
    /// claim superseded it (the caller must drop the stream).
    async fn renew_agent(&self, server_id: &str, epoch: u64, lease_ms: i64) -> BackendResult<AgentOwnership>;

    /// The current owner of an agent's stream, if any lease is live.
    async fn agent_owner(&self, server_id: &str) -> BackendResult<Option<AgentOwnership>>;

    /// Drops ownership if `epoch` is still current (stream closed cleanly).
    async fn release_agent(&self, server_id: &str, epoch: u64) -> BackendResult<()>;

    // ----- API clients and signing keys (durable) -----

    /// Registers a client; `AlreadyExists` if the id is taken.
    async fn insert_api_client(&self, client: ApiClientRecord) -> BackendResult<()>;

    /// Reads one client.
    async fn get_api_client(&self, client_id: &str) -> BackendResult<Option<ApiClientRecord>>;

    /// Every client, in id order.
    async fn list_api_clients(&self) -> BackendResult<Vec<ApiClientRecord>>;

    /// Removes a client; returns whether it existed.
    async fn remove_api_client(&self, client_id: &str) -> BackendResult<bool>;

    /// Inserts or replaces a signing key by `kid`.
    async fn put_signing_key(&self, key: SigningKeyRecord) -> BackendResult<()>;

    /// Every signing key, oldest first.
    async fn list_signing_keys(&self) -> BackendResult<Vec<SigningKeyRecord>>;

    /// Removes a signing key (after all its tokens expired).
    async fn remove_signing_key(&self, kid: &str) -> BackendResult<()>;

    // ----- shared secrets (durable) -----

    /// The secret stored under `name`, storing `candidate` first when there is
    /// none. Atomic: racing callers (any replica) all get the first stored
    /// value, so replicas agree on e.g. the page-token HMAC key without
    /// coordination. Secrets are never replaced or removed.
    async fn shared_secret(&self, name: &str, candidate: Vec<u8>) -> BackendResult<Vec<u8>>;
    // ----- agent enrolment (durable) and single-use tokens -----

    /// Stores a new software statement; `AlreadyExists` if the id is taken.
    async fn insert_software_statement(&self, statement: SoftwareStatementRecord) -> BackendResult<()>;

    /// Reads one software statement (with its current `active` state).
    async fn get_software_statement(&self, id: &str) -> BackendResult<Option<SoftwareStatementRecord>>;

    /// Every software statement, oldest first (`issued_at`, then id).
    async fn list_software_statements(&self) -> BackendResult<Vec<SoftwareStatementRecord>>;

    /// Deactivates a statement for good (idempotent); `false` if unknown.
    async fn deactivate_software_statement(&self, id: &str) -> BackendResult<bool>;

    /// Atomically: if the client's `software_statement_id` names an active
    /// statement, stores the client (its `server_id` is ignored: clients
    /// start unbound). `NotFound` if the statement is missing or inactive,
    /// `AlreadyExists` if the client id is taken.
    async fn register_agent_client(&self, client: AgentClientRecord) -> BackendResult<()>;

    /// Reads one agent client, with the server id it is bound to.
    async fn get_agent_client(&self, client_id: &str) -> BackendResult<Option<AgentClientRecord>>;

    /// Every agent client, in id order, with their bound server ids.
    async fn list_agent_clients(&self) -> BackendResult<Vec<AgentClientRecord>>;

    /// Removes an agent client and its server binding (the server id may be
    /// bound again by another client); returns whether it existed.
    async fn remove_agent_client(&self, client_id: &str) -> BackendResult<bool>;

    /// Atomically binds an agent client to a server id at its first hello,
    /// or checks the binding afterwards. `Ok` if the client is (now) bound to
    /// `server_id`; `Conflict` if the client is bound to another server id
    /// or the server id is bound to another client; `NotFound` if the client
    /// does not exist (unregistered).
    async fn bind_agent_server(&self, client_id: &str, server_id: &str) -> BackendResult<()>;

    /// Records the first use of a single-use token id until `expires_at_ms`
    /// (ms since epoch): `true` the first time, `false` for every later call
    /// until it expires. Atomic across replicas.
    async fn use_token_once(&self, token_id: &str, expires_at_ms: i64) -> BackendResult<bool>;
    // ----- external authorization servers (durable) -----

    /// Inserts or replaces a trusted authorization server by `url`.
    async fn put_auth_server(&self, server: AuthServerRecord) -> BackendResult<()>;

    /// Every trusted authorization server, in URL order.
    async fn list_auth_servers(&self) -> BackendResult<Vec<AuthServerRecord>>;

    /// Stops trusting an authorization server; returns whether it was registered.
    async fn remove_auth_server(&self, url: &str) -> BackendResult<bool>;
}
