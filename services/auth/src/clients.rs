//! The API client registry: who may obtain access tokens.
//!
//! A client secret is 32 random bytes (256 bits), base64url; only its SHA-256 is stored. With that
//! much entropy a fast hash is enough (no dictionary to attack). Checking credentials costs the
//! same whether the client exists or not, and both failures give [`Error::InvalidCredentials`],
//! so callers cannot probe for client ids.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::Rng as _;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq as _;
use switchboard_common::Secret;
use switchboard_session_store::backend::{ApiClientRecord, Backend, BackendError};

use crate::{Error, Result};

/// Longest accepted client name, in characters.
pub const MAX_CLIENT_NAME_CHARS: usize = 128;

/// Bytes of randomness in a client secret.
pub const SECRET_BYTES: usize = 32;

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
pub fn new_client(name: &str, now_ms: i64) -> Result<NewClient> {
    validate_client_name(name)?;
    let mut secret_bytes = [0u8; SECRET_BYTES];
    rand::rng().fill(&mut secret_bytes);
    let secret = URL_SAFE_NO_PAD.encode(secret_bytes);
    let record = ApiClientRecord {
        client_id: uuid::Uuid::new_v4().to_string(),
        client_name: name.to_owned(),
        secret_sha256: secret_hash(&secret).to_vec(),
        created_unix_ms: now_ms,
    };
    Ok(NewClient { record, client_secret: Secret::new(secret) })
}

fn secret_hash(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// Whether `secret` is the client's secret, compared in constant time.
pub fn secret_matches(record: &ApiClientRecord, secret: &str) -> bool {
    let presented = secret_hash(secret);
    record.secret_sha256.len() == presented.len() && bool::from(presented.ct_eq(&record.secret_sha256[..]))
}

/// Registers a client named `name` and returns it with its secret.
pub async fn register(backend: &dyn Backend, name: &str) -> Result<NewClient> {
    let client = new_client(name, switchboard_common::time::now_ms())?;
    backend.insert_api_client(client.record.clone()).await?;
    tracing::info!(client_id = %client.record.client_id, client_name = %client.record.client_name, "registered api client");
    Ok(client)
}

/// The client whose credentials these are; [`Error::InvalidCredentials`] for an unknown client
/// and for a wrong secret alike.
pub async fn authenticate(backend: &dyn Backend, client_id: &str, secret: &str) -> Result<ApiClientRecord> {
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
pub async fn list(backend: &dyn Backend) -> Result<Vec<ApiClientRecord>> {
    Ok(backend.list_api_clients().await?)
}

/// Removes a client; it can no longer obtain tokens (tokens already issued run out on their own).
pub async fn unregister(backend: &dyn Backend, client_id: &str) -> Result<()> {
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
    use super::*;

    #[test]
    fn secret_has_256_bits_and_only_its_hash_is_stored() {
        let client = new_client("ci pipeline", 5).unwrap();
        let secret = client.client_secret.expose();
        assert_eq!(URL_SAFE_NO_PAD.decode(secret).unwrap().len() * 8, 256);
        assert_eq!(client.record.secret_sha256, secret_hash(secret).to_vec());
        let encoded = prost::Message::encode_to_vec(&client.record);
        assert!(!encoded.windows(secret.len()).any(|window| window == secret.as_bytes()));
        assert!(!format!("{client:?}").contains(secret));
        assert_ne!(new_client("ci pipeline", 5).unwrap().client_secret, client.client_secret);
    }

    #[test]
    fn only_the_exact_secret_matches() {
        let client = new_client("a", 0).unwrap();
        let secret = client.client_secret.expose();
        assert!(secret_matches(&client.record, secret));
        assert!(!secret_matches(&client.record, &secret[1..]));
        assert!(!secret_matches(&client.record, ""));
        let empty_hash = ApiClientRecord::default();
        assert!(!secret_matches(&empty_hash, secret));
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
