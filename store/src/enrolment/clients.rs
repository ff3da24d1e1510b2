//! Agent clients: registration with a software statement (RFC 7591 style) and the credentials every
//! `AgentLink.Connect` carries.
//!
//! A registered agent owns a client id and a 256-bit secret (only its SHA-256 is stored). It sends them on
//! every stream as `authorization: Basic base64(client_id:client_secret)` (RFC 7617). At the first hello the
//! client is bound to the hello's server id ([`Backend::bind_agent_server`]): from then on it can speak for
//! that server id only, and no other client can speak for it. Unregistering the client drops the binding.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use switchboard_common::Secret;
use tonic::metadata::MetadataMap;

use switchboard_common::secret::{random_secret, secret_hash, secret_matches};

use super::{EnrolmentError, statements};
use crate::{AgentClientRecord, BackendError, Enrolment};

/// Longest accepted client name, in characters.
pub const MAX_CLIENT_NAME_CHARS: usize = 128;

/// Longest `authorization` value accepted.
const MAX_AUTHORIZATION_CHARS: usize = 512;

/// An agent client just registered: the only moment its secret is known.
#[derive(Clone)]
pub struct NewAgentClient {
    /// The stored record.
    pub record: AgentClientRecord,
    /// The secret the agent keeps (0600, next to its config).
    pub client_secret: Secret,
}

impl fmt::Debug for NewAgentClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewAgentClient")
            .field("client_id", &self.record.client_id)
            .field("client_name", &self.record.client_name)
            .field("client_secret", &self.client_secret)
            .finish()
    }
}

/// The `authorization` metadata value for these credentials.
pub fn basic_authorization(client_id: &str, client_secret: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{client_id}:{client_secret}")))
}

/// Registers an agent client with the software statement `statement`; `client_name` is a label (the host
/// name). Refused with [`EnrolmentError::Unauthenticated`] for a malformed, unknown or deactivated statement.
pub async fn register(
    backend: &dyn Enrolment,
    statement: &str,
    client_name: &str,
) -> Result<NewAgentClient, EnrolmentError> {
    let name = client_name.trim();
    if name.chars().count() > MAX_CLIENT_NAME_CHARS || name.chars().any(char::is_control) {
        return Err(EnrolmentError::InvalidArgument(format!(
            "client_name must be printable and at most {MAX_CLIENT_NAME_CHARS} characters"
        )));
    }
    let statement = statements::check(backend, statement).await?;
    let secret = random_secret();
    let record = AgentClientRecord {
        client_id: uuid::Uuid::new_v4().to_string(),
        client_name: if name.is_empty() { "agent".to_owned() } else { name.to_owned() },
        secret_sha256: secret_hash(&secret),
        created_unix_ms: switchboard_common::time::now_ms(),
        software_statement_id: statement.id.clone(),
        server_id: String::new(),
    };
    match backend.register_agent_client(record.clone()).await {
        Ok(()) => {}
        // Deactivated between the check and the write.
        Err(BackendError::NotFound(_)) => {
            return Err(EnrolmentError::Unauthenticated("software statement invalid or deactivated"));
        }
        Err(error) => return Err(error.into()),
    }
    tracing::info!(client_id = %record.client_id, client_name = %record.client_name, statement_id = %statement.id, "registered agent client");
    Ok(NewAgentClient { record, client_secret: Secret::new(secret) })
}

/// The client id and secret of a `Basic` authorization value.
fn parse_basic(value: &str) -> Option<(String, String)> {
    if value.len() > MAX_AUTHORIZATION_CHARS {
        return None;
    }
    let (scheme, encoded) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    Some((id.to_owned(), secret.to_owned()))
}

/// The agent client whose credentials `metadata` carries. Missing, malformed and wrong credentials, and
/// unregistered clients, all give the same [`EnrolmentError::Unauthenticated`].
pub async fn authenticate(
    backend: &dyn Enrolment,
    metadata: &MetadataMap,
) -> Result<AgentClientRecord, EnrolmentError> {
    let value = metadata.get("authorization").and_then(|value| value.to_str().ok());
    let Some((client_id, secret)) = value.and_then(parse_basic) else {
        return Err(EnrolmentError::Unauthenticated("agent credentials missing or malformed"));
    };
    let stored = backend.get_agent_client(&client_id).await?;
    // Hash and compare even for unknown clients so both failures take the same time.
    let record = stored.unwrap_or_default();
    if secret_matches(&record.secret_sha256, &secret) && !record.client_id.is_empty() {
        Ok(record)
    } else {
        tracing::info!(client_id = %client_id, "agent stream with invalid credentials");
        Err(EnrolmentError::Unauthenticated("invalid agent credentials"))
    }
}

/// Binds `client` to `server_id` at its hello, or checks that it is bound to it.
pub async fn bind(backend: &dyn Enrolment, client: &AgentClientRecord, server_id: &str) -> Result<(), EnrolmentError> {
    match backend.bind_agent_server(&client.client_id, server_id).await {
        Ok(()) => Ok(()),
        Err(BackendError::Conflict(_)) => {
            tracing::warn!(client_id = %client.client_id, server_id, "agent client refused for a server id that is not its own");
            Err(EnrolmentError::PermissionDenied(format!("this agent client may not speak for server {server_id}")))
        }
        Err(BackendError::NotFound(_)) => Err(EnrolmentError::Unauthenticated("invalid agent credentials")),
        Err(error) => Err(error.into()),
    }
}

/// Unregisters an agent client: its agent can no longer connect, and its server id is free again.
pub async fn unregister(backend: &dyn Enrolment, client_id: &str) -> Result<(), EnrolmentError> {
    if backend.remove_agent_client(client_id).await? {
        tracing::info!(client_id, "unregistered agent client");
        Ok(())
    } else {
        Err(EnrolmentError::NotFound("agent client not found".to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::embedded::EmbeddedBackend;

    fn metadata(value: &str) -> MetadataMap {
        let mut metadata = MetadataMap::new();
        metadata.insert("authorization", value.parse().unwrap());
        metadata
    }

    #[tokio::test]
    async fn registered_credentials_authenticate_and_nothing_else_does() {
        let backend = EmbeddedBackend::in_memory().unwrap();
        let statement = statements::generate(&backend).await.unwrap();
        let client = register(&backend, statement.text.expose(), "dcv-1").await.unwrap();
        let id = client.record.client_id.clone();
        let good = basic_authorization(&id, client.client_secret.expose());
        assert_eq!(authenticate(&backend, &metadata(&good)).await.unwrap().client_id, id);
        assert!(!format!("{client:?}").contains(client.client_secret.expose()));

        let wrong_secret = basic_authorization(&id, "guess");
        let unknown = basic_authorization("nobody", client.client_secret.expose());
        for bad in [wrong_secret.as_str(), unknown.as_str(), "Basic !!", "Bearer x", "Basic", &"Basic ".repeat(200)] {
            let refused = authenticate(&backend, &metadata(bad)).await;
            assert!(matches!(refused, Err(EnrolmentError::Unauthenticated(_))), "{bad:.30}");
        }
        assert!(authenticate(&backend, &MetadataMap::new()).await.is_err());

        unregister(&backend, &id).await.unwrap();
        assert!(authenticate(&backend, &metadata(&good)).await.is_err(), "an unregistered client is refused");
        assert!(matches!(unregister(&backend, &id).await, Err(EnrolmentError::NotFound(_))));
    }

    #[tokio::test]
    async fn registration_needs_an_active_statement_and_a_sane_name() {
        let backend = EmbeddedBackend::in_memory().unwrap();
        let statement = statements::generate(&backend).await.unwrap();
        assert!(matches!(register(&backend, "garbage", "h").await, Err(EnrolmentError::Unauthenticated(_))));
        let long_name = "x".repeat(MAX_CLIENT_NAME_CHARS + 1);
        for bad_name in ["tab\there", long_name.as_str()] {
            let refused = register(&backend, statement.text.expose(), bad_name).await;
            assert!(matches!(refused, Err(EnrolmentError::InvalidArgument(_))), "{bad_name:.20}");
        }
        statements::deactivate(&backend, &statement.record.id).await.unwrap();
        let refused = register(&backend, statement.text.expose(), "h").await;
        assert!(matches!(refused, Err(EnrolmentError::Unauthenticated(_))));
        assert!(backend.list_agent_clients().await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_client_speaks_for_one_server_id_only() {
        let backend = EmbeddedBackend::in_memory().unwrap();
        let statement = statements::generate(&backend).await.unwrap();
        let first = register(&backend, statement.text.expose(), "a").await.unwrap().record;
        let second = register(&backend, statement.text.expose(), "b").await.unwrap().record;
        bind(&backend, &first, "h1").await.unwrap();
        bind(&backend, &first, "h1").await.unwrap();
        assert!(matches!(bind(&backend, &first, "h2").await, Err(EnrolmentError::PermissionDenied(_))));
        assert!(matches!(bind(&backend, &second, "h1").await, Err(EnrolmentError::PermissionDenied(_))));
        bind(&backend, &second, "h2").await.unwrap();
    }
}
