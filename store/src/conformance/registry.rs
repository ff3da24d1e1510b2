//! ApiRegistry: API clients, signing keys, trusted authorization servers.

use std::sync::Arc;

use crate::{ApiClientRecord, AuthServerRecord, Backend, BackendError, SigningKeyRecord};

/// Every registry check, each against a fresh backend from `make`.
pub(super) async fn run<F, Fut>(make: &F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Arc<dyn Backend>>,
{
    api_clients(make().await).await;
    signing_keys(make().await).await;
    auth_servers(make().await).await;
}

async fn api_clients(backend: Arc<dyn Backend>) {
    let client = |id: &str| ApiClientRecord {
        client_id: id.to_owned(),
        client_name: format!("client {id}"),
        secret_sha256: vec![7; 32],
        created_unix_ms: 42,
        read_only: id == "a",
        allowed_owners: vec![format!("owner-{id}"), "shared".to_owned()],
    };
    backend.insert_api_client(client("b")).await.unwrap();
    backend.insert_api_client(client("a")).await.unwrap();
    let duplicate = backend.insert_api_client(client("a")).await;
    assert!(matches!(duplicate, Err(BackendError::AlreadyExists(_))), "duplicate client: {duplicate:?}");
    assert_eq!(backend.get_api_client("a").await.unwrap(), Some(client("a")), "client round-trips");
    assert_eq!(backend.get_api_client("zz").await.unwrap(), None, "unknown client is None");
    let listed: Vec<String> = backend.list_api_clients().await.unwrap().into_iter().map(|c| c.client_id).collect();
    assert_eq!(listed, ["a", "b"], "clients listed in id order");
    assert!(backend.remove_api_client("a").await.unwrap(), "removing an existing client returns true");
    assert!(!backend.remove_api_client("a").await.unwrap(), "removing a missing client returns false");
    assert_eq!(backend.get_api_client("a").await.unwrap(), None);
}

async fn signing_keys(backend: Arc<dyn Backend>) {
    let key = |kid: &str, created: i64| SigningKeyRecord {
        kid: kid.to_owned(),
        algorithm: "EdDSA".into(),
        private_key_pem: "pem".into(),
        public_jwk_json: "{}".into(),
        created_unix_ms: created,
        active_from_unix_ms: created,
        retired_unix_ms: 0,
    };
    backend.put_signing_key(key("new", 200)).await.unwrap();
    backend.put_signing_key(key("old", 100)).await.unwrap();
    let kids: Vec<String> = backend.list_signing_keys().await.unwrap().into_iter().map(|k| k.kid).collect();
    assert_eq!(kids, ["old", "new"], "signing keys listed oldest first");
    backend.put_signing_key(SigningKeyRecord { retired_unix_ms: 300, ..key("old", 100) }).await.unwrap();
    let keys = backend.list_signing_keys().await.unwrap();
    assert_eq!(keys.len(), 2, "put_signing_key replaces by kid");
    assert_eq!(keys[0].retired_unix_ms, 300, "the replacement is stored");
    backend.remove_signing_key("old").await.unwrap();
    let kids: Vec<String> = backend.list_signing_keys().await.unwrap().into_iter().map(|k| k.kid).collect();
    assert_eq!(kids, ["new"], "remove_signing_key removes");
}

async fn auth_servers(backend: Arc<dyn Backend>) {
    let server = |url: &str, algorithm: &str| AuthServerRecord {
        url: url.to_owned(),
        algorithm: algorithm.to_owned(),
        issuer: format!("iss {url}"),
        audience: "api".to_owned(),
        created_unix_ms: 7,
    };
    assert!(backend.list_auth_servers().await.unwrap().is_empty(), "no auth servers at first");
    backend.put_auth_server(server("https://b/jwks", "RS256")).await.unwrap();
    backend.put_auth_server(server("https://a/jwks", "")).await.unwrap();
    let listed = backend.list_auth_servers().await.unwrap();
    assert_eq!(listed, [server("https://a/jwks", ""), server("https://b/jwks", "RS256")], "listed in url order");
    backend.put_auth_server(server("https://a/jwks", "ES256")).await.unwrap();
    let listed = backend.list_auth_servers().await.unwrap();
    assert_eq!(listed.len(), 2, "put_auth_server replaces by url");
    assert_eq!(listed[0].algorithm, "ES256", "the replacement is stored");
    assert!(backend.remove_auth_server("https://a/jwks").await.unwrap(), "removing a registered server: true");
    assert!(!backend.remove_auth_server("https://a/jwks").await.unwrap(), "removing a missing server: false");
    let urls: Vec<String> = backend.list_auth_servers().await.unwrap().into_iter().map(|s| s.url).collect();
    assert_eq!(urls, ["https://b/jwks"]);
}
