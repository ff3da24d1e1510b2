//! The API client registry: who may obtain access tokens.
//!
//! A client secret is 32 random bytes (256 bits), base64url; only its SHA-256 is stored. With that
//! much entropy a fast hash is enough (no dictionary to attack). Checking credentials costs the
//! same whether the client exists or not, and both failures give [`Error::InvalidCredentials`],
//! so callers cannot probe for client ids.

use std::fmt;

use switchboard_common::Secret;
use switchboard_common::secret::{random_secret, secret_hash};
use switchboard_store::{ApiClientRecord, ApiRegistry, BackendError};

use crate::{Error, Result};

/// Longest accepted client name, in characters.
pub const MAX_CLIENT_NAME_CHARS: usize = 128;

/// Most owners one client may be restricted to.
pub const MAX_ALLOWED_OWNERS: usize = 100;

/// Longest owner name in an owner restriction (the API's `Owner` limit).
pub const MAX_OWNER_CHARS: usize = 256;

/// What a client may do beyond authenticating; the default is everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientScope {
    /// Describe operations and connection data only.
    pub read_only: bool,
    /// When not empty, only sessions of these owners (and no server operations).
    pub allowed_owners: Vec<String>,
}

impl ClientScope {
    /// Checks the owner list: at most [`MAX_ALLOWED_OWNERS`] non-empty, printable names of at most
    /// [`MAX_OWNER_CHARS`] characters. Duplicates are dropped and the list sorted.
    pub fn validated(mut self) -> Result<Self> {
        if self.allowed_owners.len() > MAX_ALLOWED_OWNERS {
            return Err(Error::InvalidArgument(format!("at most {MAX_ALLOWED_OWNERS} allowed owners")));
        }
        for owner in &self.allowed_owners {
            let bad = owner.trim().is_empty()
                || owner.chars().count() > MAX_OWNER_CHARS
                || owner.chars().any(char::is_control);
            if bad {
                return Err(Error::InvalidArgument(format!(
                    "allowed owners must be printable, non-empty and at most {MAX_OWNER_CHARS} characters"
                )));
            }
        }
        self.allowed_owners.sort();
        self.allowed_owners.dedup();
        Ok(self)
    }
}

/// A client just registered: the only moment its secret is known.
#[derive(Clone)]
pub struct NewClient {
    /// The stored record (id, name, secret hash, creation time).
    pub record: ApiClientRecord,
    /// The secret to hand to the operator, once.
    pub client_secret: Secret,
}

impl fmt::Debug for NewClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewClient")
            .field("client_id", &self.record.client_id)
            .field("client_name", &self.record.client_name)
            .field("client_secret", &self.client_secret)
            .finish()
    }
}

/// Checks a client name: non-empty, at most [`MAX_CLIENT_NAME_CHARS`], no control characters.
pub fn validate_client_name(name: &str) -> Result<()> {
    if name.trim().is_empty() {
        return Err(Error::InvalidArgument("client_name must not be empty".to_owned()));
    }
    if name.chars().count() > MAX_CLIENT_NAME_CHARS {
        return Err(Error::InvalidArgument(format!("client_name must be at most {MAX_CLIENT_NAME_CHARS} characters")));
    }
    if name.chars().any(char::is_control) {
        return Err(Error::InvalidArgument("client_name must be printable".to_owned()));
    }
    Ok(())
}

/// A new client (UUID v4 id, fresh secret) for `name`, not yet stored.
pub fn new_client(name: &str, scope: ClientScope, now_ms: i64) -> Result<NewClient> {
    validate_client_name(name)?;
    let scope = scope.validated()?;
    let secret = random_secret();
    let record = ApiClientRecord {
        client_id: uuid::Uuid::new_v4().to_string(),
        client_name: name.to_owned(),
        secret_sha256: secret_hash(&secret),
        created_unix_ms: now_ms,
        read_only: scope.read_only,
        allowed_owners: scope.allowed_owners,
    };
    Ok(NewClient { record, client_secret: Secret::new(secret) })
}

/// Whether `secret` is the client's secret, compared in constant time.
pub fn secret_matches(record: &ApiClientRecord, secret: &str) -> bool {
    switchboard_common::secret::secret_matches(&record.secret_sha256, secret)
}

/// Registers a client named `name` with `scope` and returns it with its secret.
pub async fn register(backend: &dyn ApiRegistry, name: &str, scope: ClientScope) -> Result<NewClient> {
    let client = new_client(name, scope, switchboard_common::time::now_ms())?;
    backend.insert_api_client(client.record.clone()).await?;
    tracing::info!(
        client_id = %client.record.client_id,
        client_name = %client.record.client_name,
        read_only = client.record.read_only,
        allowed_owners = client.record.allowed_owners.len(),
        "registered api client"
    );
    Ok(client)
}

/// What `client_id` may do; `exists: false` for an unknown (or unregistered) client.
pub async fn policy(backend: &dyn ApiRegistry, client_id: &str) -> Result<switchboard_proto::ClientPolicy> {
    Ok(match backend.get_api_client(client_id).await? {
        Some(record) => switchboard_proto::ClientPolicy {
            exists: true,
            read_only: record.read_only,
            allowed_owners: record.allowed_owners,
        },
        None => switchboard_proto::ClientPolicy::default(),
    })
}

/// The client whose credentials these are; [`Error::InvalidCredentials`] for an unknown client
/// and for a wrong secret alike.
pub async fn authenticate(backend: &dyn ApiRegistry, client_id: &str, secret: &str) -> Result<ApiClientRecord> {
    let stored = backend.get_api_client(client_id).await?;
    // Hash and compare even for unknown clients so both failures take the same time.
    let record = stored.unwrap_or_else(|| ApiClientRecord { secret_sha256: vec![0u8; 32], ..Default::default() });
    if secret_matches(&record, secret) && !record.client_id.is_empty() {
        Ok(record)
    } else {
        Err(Error::InvalidCredentials)
    }
}

/// Every registered client, in id order.
pub async fn list(backend: &dyn ApiRegistry) -> Result<Vec<ApiClientRecord>> {
    Ok(backend.list_api_clients().await?)
}

/// Removes a client; it can no longer obtain tokens, and gateways refuse the tokens it holds once
/// their cached [`policy`] for it expires.
pub async fn unregister(backend: &dyn ApiRegistry, client_id: &str) -> Result<()> {
    match backend.remove_api_client(client_id).await {
        Ok(true) => {
            tracing::info!(client_id = %client_id, "unregistered api client");
            Ok(())
        }
        Ok(false) | Err(BackendError::NotFound(_)) => Err(Error::ClientNotFound),
        Err(error) => Err(error.into()),
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    use super::*;

    #[test]
    fn secret_has_256_bits_and_only_its_hash_is_stored() {
        let client = new_client("ci pipeline", ClientScope::default(), 5).unwrap();
        let secret = client.client_secret.expose();
        assert_eq!(URL_SAFE_NO_PAD.decode(secret).unwrap().len() * 8, 256);
        assert_eq!(client.record.secret_sha256, secret_hash(secret));
        let encoded = prost::Message::encode_to_vec(&client.record);
        assert!(!encoded.windows(secret.len()).any(|window| window == secret.as_bytes()));
        assert!(!format!("{client:?}").contains(secret));
        assert_ne!(new_client("ci pipeline", ClientScope::default(), 5).unwrap().client_secret, client.client_secret);
    }

    #[test]
    fn only_the_exact_secret_matches() {
        let client = new_client("a", ClientScope::default(), 0).unwrap();
        let secret = client.client_secret.expose();
        assert!(secret_matches(&client.record, secret));
        assert!(!secret_matches(&client.record, &secret[1..]));
        assert!(!secret_matches(&client.record, ""));
        let empty_hash = ApiClientRecord::default();
        assert!(!secret_matches(&empty_hash, secret));
    }

    #[test]
    fn scopes_are_validated_and_stored() {
        let scope = ClientScope { read_only: true, allowed_owners: vec!["bob".into(), "alice".into(), "bob".into()] };
        let client = new_client("portal", scope, 0).unwrap();
        assert!(client.record.read_only);
        assert_eq!(client.record.allowed_owners, ["alice", "bob"]);
        let too_many = ClientScope {
            allowed_owners: (0..=MAX_ALLOWED_OWNERS).map(|i| i.to_string()).collect(),
            ..Default::default()
        };
        for bad in [
            too_many,
            ClientScope { allowed_owners: vec![" ".into()], ..Default::default() },
            ClientScope { allowed_owners: vec!["x".repeat(MAX_OWNER_CHARS + 1)], ..Default::default() },
            ClientScope { allowed_owners: vec!["a\nb".into()], ..Default::default() },
        ] {
            assert!(matches!(new_client("p", bad, 0), Err(Error::InvalidArgument(_))));
        }
    }

    #[test]
    fn client_names_are_validated() {
        assert!(validate_client_name("My Portal (prod)").is_ok());
        assert!(validate_client_name(&"é".repeat(MAX_CLIENT_NAME_CHARS)).is_ok());
        for bad in ["", "   ", "tab\there", "nul\0", &"x".repeat(MAX_CLIENT_NAME_CHARS + 1)] {
            assert!(matches!(validate_client_name(bad), Err(Error::InvalidArgument(_))), "{bad:?}");
        }
    }
}
