//! Token-signing keys: Ed25519 key pairs kept in the shared backend.
//!
//! Which key signs is decided from the stored keys alone (newest `active_from`, then `kid`), so
//! every replica reaching the same backend converges on the same key without coordination. Two
//! replicas racing to create the first key both succeed; the extra key is simply another entry in
//! the key set and tokens it signed keep verifying.
//!
//! Note: the prost `Debug` of [`SigningKeyRecord`] includes the private key, so records are never
//! logged; log the `kid` instead.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::Rng as _;
use switchboard_session_store::backend::{Backend, SigningKeyRecord};

use crate::{Error, Result};

/// JWS algorithm of every key this service creates; verifiers pin it per key.
pub const ALGORITHM: &str = "EdDSA";

/// Extra time a retired key stays published beyond the token lifetime, covering verifier leeway
/// and clock skew.
const RETIRED_KEY_GRACE_MS: i64 = 120_000;

/// Creates a fresh Ed25519 signing key, active from `now_ms`, with a random url-safe `kid`.
pub fn generate_signing_key(now_ms: i64) -> Result<SigningKeyRecord> {
    let key_pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).map_err(|error| Error::Key(error.to_string()))?;
    let kid = random_kid();
    let jwk = serde_json::json!({
        "kty": "OKP",
        "crv": "Ed25519",
        "x": URL_SAFE_NO_PAD.encode(key_pair.public_key_raw()),
        "kid": kid,
        "alg": ALGORITHM,
        "use": "sig",
    });
    Ok(SigningKeyRecord {
        kid,
        algorithm: ALGORITHM.to_owned(),
        private_key_pem: key_pair.serialize_pem(),
        public_jwk_json: jwk.to_string(),
        created_unix_ms: now_ms,
        active_from_unix_ms: now_ms,
        retired_unix_ms: 0,
    })
}

/// 128 random bits, base64url: unguessable and safe in a JWT header.
fn random_kid() -> String {
    let mut bytes = [0u8; 16];
    rand::rng().fill(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The key new tokens are signed with: the newest non-retired key already active, ordered by
/// (`active_from`, `kid`). If every live key is still pending (clock skew between replicas), the
/// earliest pending one, since it is published already.
pub fn current_key(keys: &[SigningKeyRecord], now_ms: i64) -> Option<&SigningKeyRecord> {
    let live = keys.iter().filter(|key| key.retired_unix_ms == 0 && key.algorithm == ALGORITHM);
    let order = |key: &&SigningKeyRecord| (key.active_from_unix_ms, key.kid.clone());
    live.clone().filter(|key| key.active_from_unix_ms <= now_ms).max_by_key(order).or_else(|| live.min_by_key(order))
}

/// Whether a key may still verify a live token: not retired, or retired less than a token
/// lifetime (plus grace) ago.
pub fn is_published(key: &SigningKeyRecord, now_ms: i64, token_lifetime_seconds: u32) -> bool {
    key.retired_unix_ms == 0
        || key.retired_unix_ms + i64::from(token_lifetime_seconds) * 1000 + RETIRED_KEY_GRACE_MS > now_ms
}

/// The JWKS document (RFC 7517) of every published key. A stored JWK that is not JSON is left out
/// (and logged) rather than taking every other key down with it.
pub fn jwks_json(keys: &[SigningKeyRecord], now_ms: i64, token_lifetime_seconds: u32) -> String {
    let published: Vec<serde_json::Value> = keys
        .iter()
        .filter(|key| is_published(key, now_ms, token_lifetime_seconds))
        .filter_map(|key| match serde_json::from_str(&key.public_jwk_json) {
            Ok(jwk) => Some(jwk),
            Err(error) => {
                tracing::error!(kid = %key.kid, error = %error, "stored public jwk is not json; not publishing it");
                None
            }
        })
        .collect();
    serde_json::json!({ "keys": published }).to_string()
}

/// Makes sure a signing key exists and returns the current one, creating a key if the backend
/// has none. Safe to run on several replicas at once: after writing its key a replica re-reads
/// the set and returns whichever key the shared ordering makes current.
pub async fn ensure_signing_key(backend: &dyn Backend) -> Result<SigningKeyRecord> {
    let now_ms = switchboard_common::time::now_ms();
    let keys = backend.list_signing_keys().await?;
    if let Some(key) = current_key(&keys, now_ms) {
        return Ok(key.clone());
    }
    let created = generate_signing_key(now_ms)?;
    tracing::info!(kid = %created.kid, "created signing key");
    backend.put_signing_key(created.clone()).await?;
    let keys = backend.list_signing_keys().await?;
    Ok(current_key(&keys, now_ms).cloned().unwrap_or(created))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(kid: &str, active_from: i64, retired: i64) -> SigningKeyRecord {
        SigningKeyRecord {
            kid: kid.to_owned(),
            algorithm: ALGORITHM.to_owned(),
            active_from_unix_ms: active_from,
            retired_unix_ms: retired,
            public_jwk_json: format!(r#"{{"kid":"{kid}"}}"#),
            ..SigningKeyRecord::default()
        }
    }

    #[test]
    fn generated_key_has_an_ed25519_jwk() {
        let record = generate_signing_key(1_000).unwrap();
        assert_eq!(record.algorithm, "EdDSA");
        assert!(record.private_key_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        let jwk: serde_json::Value = serde_json::from_str(&record.public_jwk_json).unwrap();
        assert_eq!(jwk["kty"], "OKP");
        assert_eq!(jwk["crv"], "Ed25519");
        assert_eq!(jwk["kid"], record.kid.as_str());
        let x = URL_SAFE_NO_PAD.decode(jwk["x"].as_str().unwrap()).unwrap();
        assert_eq!(x.len(), 32);
        assert!(!record.public_jwk_json.contains("PRIVATE"));
        assert_ne!(generate_signing_key(1_000).unwrap().kid, record.kid);
    }

    #[test]
    fn current_key_is_the_newest_active_one_and_ties_break_on_kid() {
        let keys = vec![key("a", 100, 0), key("c", 200, 0), key("b", 200, 0), key("z", 300, 150)];
        assert_eq!(current_key(&keys, 250).unwrap().kid, "c");
        assert_eq!(current_key(&keys, 150).unwrap().kid, "a");
        // Every replica picks the same key whatever order the backend listed them in.
        let mut reversed = keys.clone();
        reversed.reverse();
        assert_eq!(current_key(&reversed, 250).unwrap().kid, "c");
    }

    #[test]
    fn pending_keys_are_used_when_nothing_is_active_yet() {
        let keys = vec![key("late", 600, 0), key("early", 500, 0)];
        assert_eq!(current_key(&keys, 100).unwrap().kid, "early");
        assert!(current_key(&[key("old", 1, 5)], 100).is_none());
    }

    #[test]
    fn retired_keys_stay_published_for_one_token_lifetime() {
        let mut corrupt = key("corrupt", 0, 0);
        corrupt.public_jwk_json = "{not json".to_owned();
        let keys = vec![key("live", 0, 0), key("recent", 0, 10_000), key("gone", 0, 1), corrupt];
        // `recent` retired 10 s in and is published until one lifetime plus grace later.
        let now = 10_000 + 3_600_000 + RETIRED_KEY_GRACE_MS - 1;
        let jwks: serde_json::Value = serde_json::from_str(&jwks_json(&keys, now, 3600)).unwrap();
        let kids: Vec<&str> = jwks["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap()).collect();
        assert_eq!(kids, ["live", "recent"]);
    }
}
