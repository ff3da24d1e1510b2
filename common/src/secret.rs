//! Secrets that cannot end up in logs by accident, and the one way secrets are made, stored and
//! checked: 256-bit random values ([`random_secret`]), of which only a SHA-256 is stored
//! ([`secret_hash`]) and compared in constant time ([`secret_matches`]). Because the values are
//! random and long, a fast hash is as strong as a slow one (see ARCHITECTURE.md).

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::Rng as _;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq as _;

/// Bytes of randomness in every generated secret (API client, software statement, agent client).
pub const SECRET_BYTES: usize = 32;

/// A fresh 256-bit secret, base64url without padding.
pub fn random_secret() -> String {
    let mut bytes = [0u8; SECRET_BYTES];
    rand::rng().fill(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// SHA-256 of a secret, as stored.
pub fn secret_hash(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

/// Whether `secret` hashes to `stored`, in constant time (a stored value of another length never
/// matches).
pub fn secret_matches(stored: &[u8], secret: &str) -> bool {
    let presented = Sha256::digest(secret.as_bytes());
    stored.len() == presented.len() && bool::from(presented.ct_eq(stored))
}

/// A string secret (password, token, key). `Debug` and `Display` print
/// `[redacted]`; read it with [`Secret::expose`] where it is really needed.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret value itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formatting_never_shows_the_value() {
        let secret = Secret::new("hunter2");
        assert_eq!(format!("{secret:?} {secret}"), "[redacted] [redacted]");
        assert_eq!(secret.expose(), "hunter2");
    }

    #[test]
    fn secrets_have_256_bits_and_only_the_exact_one_matches_its_hash() {
        let secret = random_secret();
        assert_eq!(URL_SAFE_NO_PAD.decode(&secret).unwrap().len(), SECRET_BYTES);
        assert_ne!(secret, random_secret());
        let stored = secret_hash(&secret);
        assert!(secret_matches(&stored, &secret));
        assert!(!secret_matches(&stored, &format!("{secret}x")));
        assert!(!secret_matches(&stored[..31], &secret), "a truncated hash never matches");
        assert!(!secret_matches(&[], ""));
    }
}
