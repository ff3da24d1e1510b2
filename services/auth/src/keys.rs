//! Token-signing keys: Ed25519 key pairs kept in the shared backend.
//!
//! Which key signs is decided from the stored keys alone (newest `active_from`, then `kid`), so
//! every replica reaching the same backend converges on the same key without coordination. Two
//! replicas racing to create the first key both succeed; the extra key is simply another entry in
//! the key set and tokens it signed keep verifying.
//!
//! Rotation ([`rotate`], `renew-auth-server-api-key`) publishes a new key at once but lets it sign
//! only from `active_from` (now + the publish delay, longer than verifiers' key-set refresh), and
//! retires the keys it replaces at that same instant; a retired key stays in the key set for one
//! token lifetime (plus grace) after it stops signing, so no token ever outlives its key.
//!
//! [`SigningKeyRecord`]'s `Debug` redacts the private key; still, log the `kid`, not records.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::Rng as _;
use switchboard_store::{ApiRegistry, SigningKeyRecord};

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

/// Whether a key may sign at `now_ms`: not retired, or retired only from a later time.
fn signs_at(key: &SigningKeyRecord, now_ms: i64) -> bool {
    key.retired_unix_ms == 0 || key.retired_unix_ms > now_ms
}

/// The key new tokens are signed with: the newest key already active and not yet retired, ordered
/// by (`active_from`, `kid`). If every live key is still pending (clock skew between replicas), the
/// earliest pending one, since it is published already.
pub fn current_key(keys: &[SigningKeyRecord], now_ms: i64) -> Option<&SigningKeyRecord> {
    let live = keys.iter().filter(|key| signs_at(key, now_ms) && key.algorithm == ALGORITHM);
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
pub async fn ensure_signing_key(backend: &dyn ApiRegistry) -> Result<SigningKeyRecord> {
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

/// What [`rotate`] did.
#[derive(Debug, Clone)]
pub struct Rotation {
    /// `kid` of the new key.
    pub kid: String,
    /// When it starts signing, ms since epoch.
    pub active_from_unix_ms: i64,
    /// Keys that stop signing at that moment.
    pub retiring_kids: Vec<String>,
}

/// Creates and publishes a new key that signs from `now_ms + publish_delay_ms`, retires every older
/// live key at that instant, and deletes keys no longer published. Safe on several replicas at
/// once: keys are only retired in favour of a *newer* one, so the newest rotation's key wins and
/// every key stays published for as long as a token it signed can be live.
pub async fn rotate(
    backend: &dyn ApiRegistry,
    now_ms: i64,
    publish_delay_ms: i64,
    token_lifetime_seconds: u32,
) -> Result<Rotation> {
    let mut created = generate_signing_key(now_ms)?;
    // Strictly after every existing key, so the new key is the newest in the shared ordering.
    let newest = backend.list_signing_keys().await?.iter().map(|key| key.active_from_unix_ms).max();
    created.active_from_unix_ms = (now_ms + publish_delay_ms.max(0)).max(newest.map_or(i64::MIN, |at| at + 1));
    // Published (written) before any key is retired in its favour.
    backend.put_signing_key(created.clone()).await?;
    let order = |key: &SigningKeyRecord| (key.active_from_unix_ms, key.kid.clone());
    let mut retiring_kids = Vec::new();
    for mut key in backend.list_signing_keys().await? {
        if key.kid == created.kid {
            continue;
        }
        if !is_published(&key, now_ms, token_lifetime_seconds) {
            backend.remove_signing_key(&key.kid).await?;
            tracing::info!(kid = %key.kid, "removed expired signing key");
            continue;
        }
        let retires_later = key.retired_unix_ms == 0 || key.retired_unix_ms > created.active_from_unix_ms;
        if retires_later && order(&key) < order(&created) {
            key.retired_unix_ms = created.active_from_unix_ms;
            backend.put_signing_key(key.clone()).await?;
            retiring_kids.push(key.kid);
        }
    }
    tracing::info!(kid = %created.kid, active_from_unix_ms = created.active_from_unix_ms, retiring = ?retiring_kids, "rotated signing key");
    Ok(Rotation { kid: created.kid, active_from_unix_ms: created.active_from_unix_ms, retiring_kids })
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
    fn a_key_retiring_later_still_signs_until_then() {
        let keys = vec![key("old", 100, 1_000), key("new", 1_000, 0)];
        assert_eq!(current_key(&keys, 500).unwrap().kid, "old", "the new key is published but not used yet");
        assert_eq!(current_key(&keys, 1_000).unwrap().kid, "new");
    }

    #[tokio::test]
    async fn rotation_publishes_first_then_switches_and_old_tokens_keep_verifying() {
        use switchboard_store::embedded::EmbeddedBackend;
        let backend = EmbeddedBackend::in_memory().unwrap();
        let first = ensure_signing_key(&backend).await.unwrap();
        let now = switchboard_common::time::now_ms();
        let rotation = rotate(&backend, now, 60_000, 3600).await.unwrap();
        assert_eq!(rotation.retiring_kids, std::slice::from_ref(&first.kid));
        let keys = backend.list_signing_keys().await.unwrap();
        // Until active_from the old key signs; the new one is already in the key set.
        assert_eq!(current_key(&keys, now + 59_999).unwrap().kid, first.kid);
        let jwks = jwks_json(&keys, now, 3600);
        assert!(jwks.contains(&rotation.kid) && jwks.contains(&first.kid));
        assert_eq!(current_key(&keys, now + 60_000).unwrap().kid, rotation.kid);
        // The old key verifies for a token lifetime after it stopped signing, then leaves the set.
        let after = now + 60_000 + 3_600_000;
        assert!(jwks_json(&keys, after, 3600).contains(&first.kid));
        assert!(!jwks_json(&keys, after + RETIRED_KEY_GRACE_MS, 3600).contains(&first.kid));
        // A second rotation cleans up keys nobody can use any more.
        let later = rotate(&backend, after + RETIRED_KEY_GRACE_MS, 0, 3600).await.unwrap();
        let kids: Vec<String> = backend.list_signing_keys().await.unwrap().into_iter().map(|k| k.kid).collect();
        assert!(!kids.contains(&first.kid), "expired key removed: {kids:?}");
        assert_eq!(later.retiring_kids, std::slice::from_ref(&rotation.kid));
    }

    #[tokio::test]
    async fn concurrent_rotations_leave_exactly_one_current_key() {
        use switchboard_store::embedded::EmbeddedBackend;
        let backend = EmbeddedBackend::in_memory().unwrap();
        ensure_signing_key(&backend).await.unwrap();
        let now = switchboard_common::time::now_ms();
        let (a, b) = tokio::join!(rotate(&backend, now, 0, 3600), rotate(&backend, now, 0, 3600));
        let (a, b) = (a.unwrap(), b.unwrap());
        let keys = backend.list_signing_keys().await.unwrap();
        let current = current_key(&keys, now + 1).unwrap().kid.clone();
        assert!(current == a.kid || current == b.kid);
        // Every key stays published.
        let jwks = jwks_json(&keys, now + 1, 3600);
        assert!(keys.iter().all(|key| jwks.contains(&key.kid)));
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
