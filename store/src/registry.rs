//! The API registry role (durable): API clients, token-signing keys and trusted external
//! authorization servers, the records the auth service keeps.

use async_trait::async_trait;
use switchboard_proto::{ApiClientRecord, AuthServerRecord, SigningKeyRecord};

use crate::BackendResult;

/// API clients, signing keys and trusted authorization servers. All methods are atomic.
#[async_trait]
pub trait ApiRegistry: Send + Sync + 'static {
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

    /// Inserts or replaces a trusted authorization server by `url`.
    async fn put_auth_server(&self, server: AuthServerRecord) -> BackendResult<()>;

    /// Every trusted authorization server, in URL order.
    async fn list_auth_servers(&self) -> BackendResult<Vec<AuthServerRecord>>;

    /// Stops trusting an authorization server; returns whether it was registered.
    async fn remove_auth_server(&self, url: &str) -> BackendResult<bool>;
}
