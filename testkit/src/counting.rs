//! A [`Backend`] decorator that counts calls, so tests can assert that store
//! traffic follows change (for example: an unchanged agent update writes
//! nothing).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use switchboard_proto::{QueuedRequest, ServerRecord, SessionRecord};
use switchboard_session_store::backend::{
    AgentClientRecord, AgentOwnership, ApiClientRecord, AssignOutcome, AuthServerRecord, Backend, BackendResult, Fence,
    QueuePush, ServerChanges, SigningKeyRecord, SoftwareStatementRecord,
};

/// Calls seen so far.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// Calls that may change state (inserts, updates, removals, claims...).
    pub writes: usize,
    /// Calls that only read.
    pub reads: usize,
}

/// Wraps a backend and counts every call made through it.
pub struct CountingBackend {
    inner: Arc<dyn Backend>,
    writes: AtomicUsize,
    reads: AtomicUsize,
}

impl CountingBackend {
    /// Counts the calls made to `inner`.
    pub fn new(inner: Arc<dyn Backend>) -> Self {
        Self { inner, writes: AtomicUsize::new(0), reads: AtomicUsize::new(0) }
    }

    /// The calls so far.
    pub fn counts(&self) -> Counts {
        Counts { writes: self.writes.load(Ordering::SeqCst), reads: self.reads.load(Ordering::SeqCst) }
    }

    fn write(&self) -> &dyn Backend {
        self.writes.fetch_add(1, Ordering::SeqCst);
        &*self.inner
    }

    fn read(&self) -> &dyn Backend {
        self.reads.fetch_add(1, Ordering::SeqCst);
        &*self.inner
    }
}

#[async_trait]
impl Backend for CountingBackend {
    async fn insert_session(&self, session: SessionRecord, fence: Option<&Fence>) -> BackendResult<SessionRecord> {
        self.write().insert_session(session, fence).await
    }
    async fn get_sessions(&self, ids: &[String]) -> BackendResult<Vec<SessionRecord>> {
        self.read().get_sessions(ids).await
    }
    async fn list_sessions(&self, after_id: &str, limit: usize) -> BackendResult<Vec<SessionRecord>> {
        self.read().list_sessions(after_id, limit).await
    }
    async fn sessions_on_server(&self, server_id: &str) -> BackendResult<Vec<SessionRecord>> {
        self.read().sessions_on_server(server_id).await
    }
    async fn update_session(
        &self,
        session: SessionRecord,
        expected_revision: u64,
        fence: Option<&Fence>,
    ) -> BackendResult<SessionRecord> {
        self.write().update_session(session, expected_revision, fence).await
    }
    async fn remove_session(&self, id: &str) -> BackendResult<()> {
        self.write().remove_session(id).await
    }
    async fn remove_deleted_sessions(&self, ended_before_ms: i64, limit: usize) -> BackendResult<usize> {
        self.write().remove_deleted_sessions(ended_before_ms, limit).await
    }
    async fn server_changes(&self, after_revision: u64, limit: usize) -> BackendResult<ServerChanges> {
        self.read().server_changes(after_revision, limit).await
    }
    async fn queue_push(&self, entry: QueuedRequest, max_wait_ms: u64, max_size: usize) -> BackendResult<QueuePush> {
        self.write().queue_push(entry, max_wait_ms, max_size).await
    }
    async fn queue_heads(&self, per_class: usize) -> BackendResult<Vec<QueuedRequest>> {
        self.read().queue_heads(per_class).await
    }
    async fn queue_claim(
        &self,
        session_id: &str,
        claim_id: &str,
        lease_ms: u64,
    ) -> BackendResult<Option<QueuedRequest>> {
        self.write().queue_claim(session_id, claim_id, lease_ms).await
    }
    async fn queue_claim_expired(
        &self,
        claim_id: &str,
        lease_ms: u64,
        limit: usize,
    ) -> BackendResult<Vec<QueuedRequest>> {
        self.write().queue_claim_expired(claim_id, lease_ms, limit).await
    }
    async fn queue_release(&self, session_id: &str, claim_id: &str) -> BackendResult<bool> {
        self.write().queue_release(session_id, claim_id).await
    }
    async fn queue_remove(&self, session_id: &str) -> BackendResult<bool> {
        self.write().queue_remove(session_id).await
    }
    async fn queue_len(&self) -> BackendResult<usize> {
        self.read().queue_len().await
    }
    async fn assign_session(&self, session_id: &str, server_id: &str) -> BackendResult<AssignOutcome> {
        self.write().assign_session(session_id, server_id).await
    }
    async fn owner_session_counts(&self, owner: &str, server_ids: &[String]) -> BackendResult<Vec<u32>> {
        self.read().owner_session_counts(owner, server_ids).await
    }
    async fn upsert_server_report(
        &self,
        report: ServerRecord,
        default_open: bool,
        fence: Option<&Fence>,
    ) -> BackendResult<ServerRecord> {
        self.write().upsert_server_report(report, default_open, fence).await
    }
    async fn get_servers(&self, ids: &[String]) -> BackendResult<Vec<ServerRecord>> {
        self.read().get_servers(ids).await
    }
    async fn list_servers(&self, after_id: &str, limit: usize) -> BackendResult<Vec<ServerRecord>> {
        self.read().list_servers(after_id, limit).await
    }
    async fn set_server_open(&self, server_id: &str, open: bool) -> BackendResult<ServerRecord> {
        self.write().set_server_open(server_id, open).await
    }
    async fn remove_server(&self, server_id: &str) -> BackendResult<()> {
        self.write().remove_server(server_id).await
    }
    async fn forget_server(&self, server_id: &str, expected_revision: u64) -> BackendResult<()> {
        self.write().forget_server(server_id, expected_revision).await
    }
    async fn claim_agent(
        &self,
        server_id: &str,
        owner_id: &str,
        owner_address: &str,
        lease_ms: i64,
    ) -> BackendResult<AgentOwnership> {
        self.write().claim_agent(server_id, owner_id, owner_address, lease_ms).await
    }
    async fn renew_agent(&self, server_id: &str, epoch: u64, lease_ms: i64) -> BackendResult<AgentOwnership> {
        self.write().renew_agent(server_id, epoch, lease_ms).await
    }
    async fn agent_owner(&self, server_id: &str) -> BackendResult<Option<AgentOwnership>> {
        self.read().agent_owner(server_id).await
    }
    async fn release_agent(&self, server_id: &str, epoch: u64) -> BackendResult<()> {
        self.write().release_agent(server_id, epoch).await
    }
    async fn insert_api_client(&self, client: ApiClientRecord) -> BackendResult<()> {
        self.write().insert_api_client(client).await
    }
    async fn get_api_client(&self, client_id: &str) -> BackendResult<Option<ApiClientRecord>> {
        self.read().get_api_client(client_id).await
    }
    async fn list_api_clients(&self) -> BackendResult<Vec<ApiClientRecord>> {
        self.read().list_api_clients().await
    }
    async fn remove_api_client(&self, client_id: &str) -> BackendResult<bool> {
        self.write().remove_api_client(client_id).await
    }
    async fn put_signing_key(&self, key: SigningKeyRecord) -> BackendResult<()> {
        self.write().put_signing_key(key).await
    }
    async fn list_signing_keys(&self) -> BackendResult<Vec<SigningKeyRecord>> {
        self.read().list_signing_keys().await
    }
    async fn remove_signing_key(&self, kid: &str) -> BackendResult<()> {
        self.write().remove_signing_key(kid).await
    }
    async fn shared_secret(&self, name: &str, candidate: Vec<u8>) -> BackendResult<Vec<u8>> {
        self.write().shared_secret(name, candidate).await
    }

    async fn insert_software_statement(&self, statement: SoftwareStatementRecord) -> BackendResult<()> {
        self.write().insert_software_statement(statement).await
    }
    async fn get_software_statement(&self, id: &str) -> BackendResult<Option<SoftwareStatementRecord>> {
        self.read().get_software_statement(id).await
    }
    async fn list_software_statements(&self) -> BackendResult<Vec<SoftwareStatementRecord>> {
        self.read().list_software_statements().await
    }
    async fn deactivate_software_statement(&self, id: &str) -> BackendResult<bool> {
        self.write().deactivate_software_statement(id).await
    }
    async fn register_agent_client(&self, client: AgentClientRecord) -> BackendResult<()> {
        self.write().register_agent_client(client).await
    }
    async fn get_agent_client(&self, client_id: &str) -> BackendResult<Option<AgentClientRecord>> {
        self.read().get_agent_client(client_id).await
    }
    async fn list_agent_clients(&self) -> BackendResult<Vec<AgentClientRecord>> {
        self.read().list_agent_clients().await
    }
    async fn remove_agent_client(&self, client_id: &str) -> BackendResult<bool> {
        self.write().remove_agent_client(client_id).await
    }
    async fn bind_agent_server(&self, client_id: &str, server_id: &str) -> BackendResult<()> {
        self.write().bind_agent_server(client_id, server_id).await
    }
    async fn use_token_once(&self, token_id: &str, expires_at_ms: i64) -> BackendResult<bool> {
        self.write().use_token_once(token_id, expires_at_ms).await
    }

    async fn put_auth_server(&self, server: AuthServerRecord) -> BackendResult<()> {
        self.write().put_auth_server(server).await
    }
    async fn list_auth_servers(&self) -> BackendResult<Vec<AuthServerRecord>> {
        self.read().list_auth_servers().await
    }
    async fn remove_auth_server(&self, url: &str) -> BackendResult<bool> {
        self.write().remove_auth_server(url).await
    }
}
