//! Every storage call observed in one place: [`Observed`] wraps any backend and gives each role-trait call
//! a trace span (only inside a trace: a call made for a traced request or agent handshake, never for a
//! background loop alone) and its metrics (listed in `docs/observability.md`):
//!
//! - `switchboard_store_call_duration_seconds{backend, operation}`: the call's latency;
//! - `switchboard_store_call_errors_total{backend, operation}`: calls that failed in the backend
//!   (`Unavailable`, `Corrupt`); answers such as a revision conflict or a missing record are not errors;
//! - `switchboard_store_fencing_rejections_total{backend, operation}`: writes refused because the
//!   writer's agent-stream ownership was no longer current (`Fenced`).
//!
//! `operation` is the role-trait method (a fixed set, [`OPERATIONS`]); `backend` is `embedded` or `redis`.
//! Service binaries and `switchboard up` open their backend through [`crate::open_backend`] or wrap it
//! with [`Observed::wrap`]; the conformance suite runs on the bare backends.

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use tracing::Instrument;

use switchboard_proto::{
    AgentClientRecord, DeadLetterRecord, DnsMappingRecord, EventRecord, QueuedRequest, ServerRecord, SessionRecord,
    SoftwareStatementRecord, WebhookRecord,
};

use crate::{
    AgentOwnership, ApiClientRecord, ApiRegistry, AssignOutcome, AuthServerRecord, Backend, BackendError,
    BackendResult, CloseOutcome, CreateQueue, DnsMappings, Enrolment, EventPage, Events, Fence, Idempotency,
    IdempotencyClaim, QueueDepth, QueuePosition, QueuePush, Reachable, Secrets, ServerChanges, Servers, Sessions,
    SigningKeyRecord, StreamOwnership, Webhooks,
};

/// A backend whose every call is traced and measured.
pub struct Observed {
    inner: Arc<dyn Backend>,
    backend: &'static str,
}

impl Observed {
    /// `inner` observed, its calls labelled `backend` (`embedded`, `redis`). Describes the metrics and
    /// creates the error and fencing counters at 0.
    pub fn wrap(inner: Arc<dyn Backend>, backend: &'static str) -> Arc<dyn Backend> {
        describe(backend);
        Arc::new(Self { inner, backend })
    }

    async fn call<T>(&self, operation: &'static str, call: impl Future<Output = BackendResult<T>>) -> BackendResult<T> {
        // A span only inside a trace: background loops (lease renewals, sweeps) make no spans.
        let span = switchboard_common::child_span!(
            "store",
            otel.name = operation,
            otel.kind = "client",
            db.system.name = self.backend
        );
        let started = Instant::now();
        let result = call.instrument(span).await;
        let labels = [("backend", self.backend), ("operation", operation)];
        metrics::histogram!("switchboard_store_call_duration_seconds", &labels).record(started.elapsed().as_secs_f64());
        match &result {
            Err(BackendError::Unavailable(_) | BackendError::Corrupt(_)) => {
                metrics::counter!("switchboard_store_call_errors_total", &labels).increment(1)
            }
            Err(BackendError::Fenced(_)) => {
                metrics::counter!("switchboard_store_fencing_rejections_total", &labels).increment(1)
            }
            _ => {}
        }
        result
    }
}

fn describe(backend: &'static str) {
    metrics::describe_histogram!(
        "switchboard_store_call_duration_seconds",
        metrics::Unit::Seconds,
        "Storage backend calls: latency by backend and operation."
    );
    metrics::describe_counter!(
        "switchboard_store_call_errors_total",
        "Storage backend calls that failed (unavailable or corrupt), by backend and operation."
    );
    metrics::describe_counter!(
        "switchboard_store_fencing_rejections_total",
        "Writes refused because the writer no longer owned the host's agent stream, by backend and operation."
    );
    for operation in OPERATIONS {
        let labels = [("backend", backend), ("operation", *operation)];
        metrics::counter!("switchboard_store_call_errors_total", &labels).increment(0);
    }
    for operation in FENCED_OPERATIONS {
        let labels = [("backend", backend), ("operation", *operation)];
        metrics::counter!("switchboard_store_fencing_rejections_total", &labels).increment(0);
    }
}

/// The operations that take a [`Fence`]: the only ones a fencing rejection can come from.
const FENCED_OPERATIONS: &[&str] = &["insert_session", "update_session", "upsert_server_report"];

/// Implements a role trait for [`Observed`]: each listed method delegates to the inner backend through
/// [`Observed::call`], labelled with its own name.
macro_rules! observed {
    ($role:ident: $(fn $name:ident($($arg:ident: $ty:ty),*) -> $ret:ty;)*) => {
        #[async_trait]
        impl $role for Observed {
            $(
                async fn $name(&self, $($arg: $ty),*) -> $ret {
                    self.call(stringify!($name), self.inner.$name($($arg),*)).await
                }
            )*
        }
    };
}

observed! { Sessions:
    fn insert_session(session: SessionRecord, fence: Option<&Fence>) -> BackendResult<SessionRecord>;
    fn insert_sessions(sessions: Vec<SessionRecord>) -> BackendResult<Vec<SessionRecord>>;
    fn get_sessions(ids: &[String]) -> BackendResult<Vec<SessionRecord>>;
    fn list_sessions(after_id: &str, limit: usize) -> BackendResult<Vec<SessionRecord>>;
    fn sessions_on_server(server_id: &str) -> BackendResult<Vec<SessionRecord>>;
    fn update_session(session: SessionRecord, expected_revision: u64, fence: Option<&Fence>) -> BackendResult<SessionRecord>;
    fn remove_session(id: &str) -> BackendResult<()>;
    fn remove_deleted_sessions(ended_before_ms: i64, limit: usize) -> BackendResult<usize>;
    fn assign_session(session_id: &str, server_id: &str) -> BackendResult<AssignOutcome>;
    fn owner_session_counts(owner: &str, server_ids: &[String]) -> BackendResult<Vec<u32>>;
}

observed! {
    Servers:
    fn upsert_server_report(report: ServerRecord, default_open: bool, fence: Option<&Fence>) -> BackendResult<ServerRecord>;
    fn get_servers(ids: &[String]) -> BackendResult<Vec<ServerRecord>>;
    fn list_servers(after_id: &str, limit: usize) -> BackendResult<Vec<ServerRecord>>;
    fn set_server_open(server_id: &str, open: bool) -> BackendResult<ServerRecord>;
    fn close_server(server_id: &str, drain_deadline_unix_ms: i64) -> BackendResult<CloseOutcome>;
    fn finish_drain(server_id: &str, drain_deadline_unix_ms: i64) -> BackendResult<bool>;
    fn remove_server(server_id: &str) -> BackendResult<()>;
    fn forget_server(server_id: &str, expected_revision: u64) -> BackendResult<()>;
    fn server_changes(after_revision: u64, limit: usize) -> BackendResult<ServerChanges>;
}

observed! {
    CreateQueue:
    fn queue_push(entry: QueuedRequest, max_wait_ms: u64, max_size: usize) -> BackendResult<QueuePush>;
    fn queue_heads(per_class: usize) -> BackendResult<Vec<QueuedRequest>>;
    fn queue_claim(session_id: &str, claim_id: &str, lease_ms: u64) -> BackendResult<Option<QueuedRequest>>;
    fn queue_claim_expired(claim_id: &str, lease_ms: u64, limit: usize) -> BackendResult<Vec<QueuedRequest>>;
    fn queue_release(session_id: &str, claim_id: &str) -> BackendResult<bool>;
    fn queue_remove(session_id: &str) -> BackendResult<bool>;
    fn queue_remove_placed(session_id: &str) -> BackendResult<bool>;
    fn queue_positions(session_ids: &[String]) -> BackendResult<Vec<QueuePosition>>;
    fn queue_len() -> BackendResult<usize>;
    fn queue_depths() -> BackendResult<Vec<QueueDepth>>;
}

observed! {
    StreamOwnership:
    fn claim_agent(server_id: &str, owner_id: &str, owner_address: &str, lease_ms: i64) -> BackendResult<AgentOwnership>;
    fn renew_agent(server_id: &str, epoch: u64, lease_ms: i64) -> BackendResult<AgentOwnership>;
    fn agent_owner(server_id: &str) -> BackendResult<Option<AgentOwnership>>;
    fn release_agent(server_id: &str, epoch: u64) -> BackendResult<()>;
}

observed! {
    ApiRegistry:
    fn insert_api_client(client: ApiClientRecord) -> BackendResult<()>;
    fn get_api_client(client_id: &str) -> BackendResult<Option<ApiClientRecord>>;
    fn list_api_clients() -> BackendResult<Vec<ApiClientRecord>>;
    fn remove_api_client(client_id: &str) -> BackendResult<bool>;
    fn put_signing_key(key: SigningKeyRecord) -> BackendResult<()>;
    fn list_signing_keys() -> BackendResult<Vec<SigningKeyRecord>>;
    fn remove_signing_key(kid: &str) -> BackendResult<()>;
    fn put_auth_server(server: AuthServerRecord) -> BackendResult<()>;
    fn list_auth_servers() -> BackendResult<Vec<AuthServerRecord>>;
    fn remove_auth_server(url: &str) -> BackendResult<bool>;
}

observed! {
    Secrets:
    fn shared_secret(name: &str, candidate: Vec<u8>) -> BackendResult<Vec<u8>>;
    fn use_token_once(token_id: &str, expires_at_ms: i64) -> BackendResult<bool>;
}

observed! {
    Enrolment:
    fn insert_software_statement(statement: SoftwareStatementRecord) -> BackendResult<()>;
    fn get_software_statement(id: &str) -> BackendResult<Option<SoftwareStatementRecord>>;
    fn list_software_statements() -> BackendResult<Vec<SoftwareStatementRecord>>;
    fn deactivate_software_statement(id: &str) -> BackendResult<bool>;
    fn register_agent_client(client: AgentClientRecord) -> BackendResult<()>;
    fn get_agent_client(client_id: &str) -> BackendResult<Option<AgentClientRecord>>;
    fn list_agent_clients() -> BackendResult<Vec<AgentClientRecord>>;
    fn remove_agent_client(client_id: &str) -> BackendResult<bool>;
    fn bind_agent_server(client_id: &str, server_id: &str) -> BackendResult<()>;
}

observed! {
    DnsMappings:
    fn replace_dns_mappings(mappings: Vec<DnsMappingRecord>) -> BackendResult<()>;
    fn list_dns_mappings() -> BackendResult<Vec<DnsMappingRecord>>;
}

observed! {
    Reachable:
    fn ping() -> BackendResult<()>;
}

observed! {
    Webhooks:
    fn insert_webhook(webhook: WebhookRecord) -> BackendResult<()>;
    fn list_webhooks() -> BackendResult<Vec<WebhookRecord>>;
    fn update_webhook(webhook: WebhookRecord) -> BackendResult<bool>;
    fn remove_webhook(id: &str) -> BackendResult<bool>;
    fn add_dead_letter(letter: DeadLetterRecord) -> BackendResult<()>;
    fn dead_letters(webhook_id: &str) -> BackendResult<Vec<DeadLetterRecord>>;
}

observed! {
    Events:
    fn append_event(event: EventRecord) -> BackendResult<String>;
    fn read_events(after: &str, limit: usize) -> BackendResult<EventPage>;
}

observed! {
    Idempotency:
    fn claim_idempotency_key(scope_key: &str, body_sha256: &[u8], claim_ttl: std::time::Duration) -> BackendResult<IdempotencyClaim>;
    fn complete_idempotency_key(scope_key: &str, answer: Vec<u8>, ttl: std::time::Duration) -> BackendResult<bool>;
    fn release_idempotency_key(scope_key: &str) -> BackendResult<()>;
}

/// Every `operation` label value: the role traits' methods.
pub const OPERATIONS: &[&str] = &[
    "insert_session",
    "insert_sessions",
    "get_sessions",
    "list_sessions",
    "sessions_on_server",
    "update_session",
    "remove_session",
    "remove_deleted_sessions",
    "assign_session",
    "owner_session_counts",
    "upsert_server_report",
    "get_servers",
    "list_servers",
    "set_server_open",
    "close_server",
    "finish_drain",
    "remove_server",
    "forget_server",
    "server_changes",
    "queue_push",
    "queue_heads",
    "queue_claim",
    "queue_claim_expired",
    "queue_release",
    "queue_remove",
    "queue_remove_placed",
    "queue_positions",
    "queue_len",
    "queue_depths",
    "claim_agent",
    "renew_agent",
    "agent_owner",
    "release_agent",
    "insert_api_client",
    "get_api_client",
    "list_api_clients",
    "remove_api_client",
    "put_signing_key",
    "list_signing_keys",
    "remove_signing_key",
    "put_auth_server",
    "list_auth_servers",
    "remove_auth_server",
    "shared_secret",
    "use_token_once",
    "insert_software_statement",
    "get_software_statement",
    "list_software_statements",
    "deactivate_software_statement",
    "register_agent_client",
    "get_agent_client",
    "list_agent_clients",
    "remove_agent_client",
    "bind_agent_server",
    "replace_dns_mappings",
    "list_dns_mappings",
    "claim_idempotency_key",
    "complete_idempotency_key",
    "release_idempotency_key",
    "insert_webhook",
    "list_webhooks",
    "update_webhook",
    "remove_webhook",
    "add_dead_letter",
    "dead_letters",
    "append_event",
    "read_events",
    "ping",
];
