//! The `Auth` service end to end, with the gateway's token verifier: a real server on 127.0.0.1:0, real gRPC clients, the embedded
//! backend in memory.

use std::sync::Arc;
use std::time::Duration;

use switchboard_auth::{AuthConfig, admin_token_hash, keys, tokens::Signer};
use switchboard_common::Shutdown;
use switchboard_common::grpc::GrpcChannel;
use switchboard_gateway::verify::{TokenVerifier, VerifyError};
use switchboard_proto::auth_client::AuthClient;
use switchboard_proto::{
    GetKeySetRequest, IssueConnectionTokenRequest, IssueTokenRequest, ListApiClientsRequest, RegisterApiClientRequest,
    RegisterApiClientResponse, UnregisterApiClientRequest,
};
use switchboard_store::Backend;
use switchboard_store::embedded::EmbeddedBackend;
use tonic::{Code, Request};

const ADMIN_TOKEN: &str = "correct horse battery staple";

/// One running auth replica.
struct Replica {
    client: AuthClient<GrpcChannel>,
    shutdown: Shutdown,
    task: tokio::task::JoinHandle<switchboard_auth::Result<()>>,
}

impl Replica {
    async fn start(config: AuthConfig, backend: Arc<dyn Backend>) -> Self {
        switchboard_common::telemetry::init_for_tests();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let shutdown = Shutdown::new();
        let task = tokio::spawn(switchboard_auth::serve(
            config,
            listener,
            backend.clone(),
            backend.clone(),
            backend.clone(),
            backend,
            shutdown.clone(),
        ));
        let client = AuthClient::new(switchboard_common::grpc::lazy_channel(&url).unwrap());
        Self { client, shutdown, task }
    }

    async fn stop(self) {
        self.shutdown.cancel();
        self.task.await.unwrap().unwrap();
    }
}

fn admin_config() -> AuthConfig {
    AuthConfig { admin_token_sha256: Some(admin_token_hash(ADMIN_TOKEN)), ..AuthConfig::default() }
}

fn backend() -> Arc<dyn Backend> {
    Arc::new(EmbeddedBackend::in_memory().unwrap())
}

fn as_admin<T>(message: T, token: &str) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
}

async fn register(client: &mut AuthClient<GrpcChannel>, name: &str) -> RegisterApiClientResponse {
    let request =
        as_admin(RegisterApiClientRequest { client_name: name.to_owned(), ..Default::default() }, ADMIN_TOKEN);
    client.register_api_client(request).await.unwrap().into_inner()
}

async fn issue(client: &mut AuthClient<GrpcChannel>, id: &str, secret: &str) -> Result<String, tonic::Status> {
    let request = IssueTokenRequest { client_id: id.to_owned(), client_secret: secret.to_owned() };
    Ok(client.issue_token(request).await?.into_inner().access_token)
}

#[tokio::test]
async fn admin_calls_need_the_admin_token() {
    let mut replica = Replica::start(admin_config(), backend()).await;
    let client = &mut replica.client;

    let anonymous = client
        .register_api_client(RegisterApiClientRequest { client_name: "x".to_owned(), ..Default::default() })
        .await;
    assert_eq!(anonymous.unwrap_err().code(), Code::Unauthenticated);
    let wrong = client.list_api_clients(as_admin(ListApiClientsRequest {}, "correct horse")).await;
    assert_eq!(wrong.unwrap_err().code(), Code::Unauthenticated);
    let mut not_bearer = Request::new(ListApiClientsRequest {});
    not_bearer.metadata_mut().insert("authorization", ADMIN_TOKEN.parse().unwrap());
    assert_eq!(client.list_api_clients(not_bearer).await.unwrap_err().code(), Code::Unauthenticated);

    let registered = register(client, "portal").await;
    let listed = client.list_api_clients(as_admin(ListApiClientsRequest {}, ADMIN_TOKEN)).await.unwrap();
    let listed = listed.into_inner().clients;
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (listed[0].client_id.as_str(), listed[0].client_name.as_str()),
        (registered.client_id.as_str(), "portal")
    );

    let bad_name = client.register_api_client(as_admin(RegisterApiClientRequest::default(), ADMIN_TOKEN)).await;
    assert_eq!(bad_name.unwrap_err().code(), Code::InvalidArgument);

    let unregister = |id: &str| as_admin(UnregisterApiClientRequest { client_id: id.to_owned() }, ADMIN_TOKEN);
    client.unregister_api_client(unregister(&registered.client_id)).await.unwrap();
    let again = client.unregister_api_client(unregister(&registered.client_id)).await;
    assert_eq!(again.unwrap_err().code(), Code::NotFound);
    replica.stop().await;
}

#[tokio::test]
async fn admin_calls_are_refused_without_a_configured_admin_token() {
    let mut replica = Replica::start(AuthConfig::default(), backend()).await;
    let refused = replica.client.list_api_clients(as_admin(ListApiClientsRequest {}, ADMIN_TOKEN)).await.unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    assert_eq!(refused.message(), "admin channel disabled");
    replica.stop().await;
}

#[tokio::test]
async fn registered_clients_get_tokens_that_verify() {
    let backend = backend();
    let mut replica = Replica::start(admin_config(), backend.clone()).await;
    let client = &mut replica.client;
    let registered = register(client, "portal").await;

    let stored = backend.get_api_client(&registered.client_id).await.unwrap().unwrap();
    assert!(!format!("{stored:?}").contains(&registered.client_secret));
    assert_ne!(stored.secret_sha256, registered.client_secret.as_bytes());

    let token = issue(client, &registered.client_id, &registered.client_secret).await.unwrap();
    let verifier = TokenVerifier::new(client.clone());
    let claims = verifier.verify(&token).await.unwrap();
    assert_eq!(claims.client_id, registered.client_id);

    let wrong_secret = issue(client, &registered.client_id, "guess").await.unwrap_err();
    let unknown_client = issue(client, "no-such-client", &registered.client_secret).await.unwrap_err();
    for rejected in [&wrong_secret, &unknown_client] {
        assert_eq!(rejected.code(), Code::Unauthenticated);
        assert_eq!(rejected.message(), "invalid client credentials");
    }

    let unregister = as_admin(UnregisterApiClientRequest { client_id: registered.client_id.clone() }, ADMIN_TOKEN);
    client.unregister_api_client(unregister).await.unwrap();
    let gone = issue(client, &registered.client_id, &registered.client_secret).await.unwrap_err();
    assert_eq!(gone.code(), Code::Unauthenticated);
    replica.stop().await;
}

#[tokio::test]
async fn unknown_kids_refresh_the_key_set_once() {
    let backend = backend();
    let mut replica = Replica::start(admin_config(), backend.clone()).await;
    let registered = register(&mut replica.client, "portal").await;
    let token = issue(&mut replica.client, &registered.client_id, &registered.client_secret).await.unwrap();

    let verifier = TokenVerifier::new(replica.client.clone()).with_min_refresh_interval(Duration::ZERO);
    verifier.verify(&token).await.unwrap();
    assert_eq!(verifier.key_set_fetches(), 1);

    // A key added after the verifier loaded the set (another replica, a rotation) is picked up.
    let added = keys::generate_signing_key(switchboard_common::time::now_ms()).unwrap();
    backend.put_signing_key(added.clone()).await.unwrap();
    let now = switchboard_common::time::now_ms() / 1000;
    let by_added = Signer::from_record(&added).unwrap().issue("switchboard", "switchboard-api", "c", now, 60).unwrap();
    assert_eq!(verifier.verify(&by_added.access_token).await.unwrap().client_id, "c");
    assert_eq!(verifier.key_set_fetches(), 2);

    // A key nobody published: one refresh, then rejection.
    let stranger = Signer::from_record(&keys::generate_signing_key(0).unwrap()).unwrap();
    let forged = stranger.issue("switchboard", "switchboard-api", "c", now, 60).unwrap().access_token;
    assert!(matches!(verifier.verify(&forged).await, Err(VerifyError::Unauthenticated(_))));
    assert_eq!(verifier.key_set_fetches(), 3);

    // With the default interval, a burst of unknown kids costs a single fetch.
    let limited = TokenVerifier::new(replica.client.clone());
    for _ in 0..3 {
        assert!(matches!(limited.verify(&forged).await, Err(VerifyError::Unauthenticated(_))));
    }
    assert_eq!(limited.key_set_fetches(), 1);
    replica.stop().await;
}

#[tokio::test]
async fn replicas_sharing_a_backend_issue_tokens_one_verifier_accepts() {
    let backend = backend();
    let (mut first, mut second) =
        tokio::join!(Replica::start(admin_config(), backend.clone()), Replica::start(admin_config(), backend.clone()));
    let registered = register(&mut first.client, "portal").await;
    let from_first = issue(&mut first.client, &registered.client_id, &registered.client_secret).await.unwrap();
    let from_second = issue(&mut second.client, &registered.client_id, &registered.client_secret).await.unwrap();
    let verifier = TokenVerifier::new(second.client.clone());
    verifier.verify(&from_first).await.unwrap();
    verifier.verify(&from_second).await.unwrap();
    first.stop().await;
    second.stop().await;
}

#[tokio::test]
async fn verifier_reports_an_unreachable_auth_service_as_unavailable() {
    // Bind then drop: nothing listens on this port any more.
    let address = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
    let channel = switchboard_common::grpc::lazy_channel(&format!("http://{address}")).unwrap();
    let verifier = TokenVerifier::new(AuthClient::new(channel));
    let record = keys::generate_signing_key(0).unwrap();
    let now = switchboard_common::time::now_ms() / 1000;
    let token = Signer::from_record(&record).unwrap().issue("switchboard", "switchboard-api", "c", now, 60).unwrap();
    let error = verifier.verify(&token.access_token).await.unwrap_err();
    assert!(matches!(error, VerifyError::Unavailable(_)), "{error:?}");
    assert_eq!(error.code(), switchboard_common::ErrorCode::Unavailable);
}

#[tokio::test]
async fn connection_tokens_verify_with_the_key_set_and_the_connection_audience_only() {
    let mut replica = Replica::start(admin_config(), backend()).await;
    let request = IssueConnectionTokenRequest {
        session_id: "s-1".to_owned(),
        session_owner: "alice".to_owned(),
        user: "bob".to_owned(),
    };
    let issued = replica.client.issue_connection_token(request).await.unwrap().into_inner();
    assert_eq!(issued.expires_in_seconds, 3600, "connect-session-token-duration-minutes defaults to 60");

    let set = replica.client.get_key_set(GetKeySetRequest {}).await.unwrap().into_inner();
    assert_eq!(set.connection_audience, "dcv-connection");
    let jwks: jsonwebtoken::jwk::JwkSet = serde_json::from_str(&set.jwks_json).unwrap();
    let header = jsonwebtoken::decode_header(&issued.connection_token).unwrap();
    let jwk = jwks.find(header.kid.as_deref().unwrap()).expect("signing key is published");
    let key = jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::EdDSA);
    validation.set_audience(&[set.connection_audience.as_str()]);
    validation.set_issuer(&[set.issuer.as_str()]);
    let claims = jsonwebtoken::decode::<serde_json::Value>(&issued.connection_token, &key, &validation).unwrap().claims;
    assert_eq!(
        (&claims["dcvSessionId"], &claims["dcvSessionOwner"], &claims["dcvSessionUser"]),
        (&serde_json::json!("s-1"), &serde_json::json!("alice"), &serde_json::json!("bob"))
    );
    assert_eq!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(), 3600);

    // Not an API access token: the gateway's verifier refuses it (audience differs).
    let verifier = TokenVerifier::new(replica.client.clone());
    assert!(matches!(verifier.verify(&issued.connection_token).await, Err(VerifyError::Unauthenticated(_))));

    let empty_user = IssueConnectionTokenRequest { user: String::new(), ..Default::default() };
    let refused = replica.client.issue_connection_token(empty_user).await.unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
}

/// `connect-session-token-duration-minutes` other than the default sets the connection token's lifetime.
#[tokio::test]
async fn the_connection_token_lifetime_is_the_configured_one() {
    let config = AuthConfig { connect_session_token_duration_minutes: 15, ..admin_config() };
    let mut replica = Replica::start(config, backend()).await;
    let request =
        IssueConnectionTokenRequest { session_id: "s-1".into(), session_owner: "alice".into(), user: "bob".into() };
    let issued = replica.client.issue_connection_token(request).await.unwrap().into_inner();
    assert_eq!(issued.expires_in_seconds, 900);
    let payload = issued.connection_token.split('.').nth(1).unwrap();
    let payload = base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload).unwrap();
    let claims: serde_json::Value = serde_json::from_slice(&payload).unwrap();
    assert_eq!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(), 900);
}

#[tokio::test]
async fn new_admin_calls_need_the_admin_token_too() {
    use switchboard_proto::{
        AuthServerInfo, ListAuthServersRequest, RegisterAuthServerRequest, RotateSigningKeyRequest,
        UnregisterAuthServerRequest,
    };
    let mut replica = Replica::start(admin_config(), backend()).await;
    let client = &mut replica.client;
    let server = AuthServerInfo { url: "https://idp.example/jwks".into(), ..Default::default() };
    let register = || RegisterAuthServerRequest { server: Some(server.clone()) };
    assert_eq!(client.rotate_signing_key(RotateSigningKeyRequest {}).await.unwrap_err().code(), Code::Unauthenticated);
    assert_eq!(client.register_auth_server(register()).await.unwrap_err().code(), Code::Unauthenticated);
    assert_eq!(client.list_auth_servers(ListAuthServersRequest {}).await.unwrap_err().code(), Code::Unauthenticated);
    let unregister = UnregisterAuthServerRequest { url: server.url.clone() };
    assert_eq!(client.unregister_auth_server(unregister.clone()).await.unwrap_err().code(), Code::Unauthenticated);

    client.register_auth_server(as_admin(register(), ADMIN_TOKEN)).await.unwrap();
    let listed = client.list_auth_servers(as_admin(ListAuthServersRequest {}, ADMIN_TOKEN)).await.unwrap();
    assert_eq!(listed.into_inner().servers[0].url, server.url);
    // Gateways learn trusted servers with the key set.
    let key_set = client.get_key_set(switchboard_proto::GetKeySetRequest {}).await.unwrap().into_inner();
    assert_eq!(key_set.external_servers.len(), 1);
    let bad = RegisterAuthServerRequest {
        server: Some(AuthServerInfo { url: "http://idp.example/jwks".into(), ..Default::default() }),
    };
    assert_eq!(
        client.register_auth_server(as_admin(bad, ADMIN_TOKEN)).await.unwrap_err().code(),
        Code::InvalidArgument
    );
    client.unregister_auth_server(as_admin(unregister.clone(), ADMIN_TOKEN)).await.unwrap();
    let again = client.unregister_auth_server(as_admin(unregister, ADMIN_TOKEN)).await;
    assert_eq!(again.unwrap_err().code(), Code::NotFound);

    let rotated = client.rotate_signing_key(as_admin(RotateSigningKeyRequest {}, ADMIN_TOKEN)).await.unwrap();
    let rotated = rotated.into_inner();
    let key_set = client.get_key_set(switchboard_proto::GetKeySetRequest {}).await.unwrap().into_inner();
    assert!(key_set.jwks_json.contains(&rotated.kid), "the new key is published at once");
    assert_eq!(rotated.retiring_kids.len(), 1);
    replica.stop().await;
}

#[tokio::test]
async fn client_policy_reports_scope_and_unregistration() {
    use switchboard_proto::GetClientPolicyRequest;
    let mut replica = Replica::start(admin_config(), backend()).await;
    let client = &mut replica.client;
    let request = RegisterApiClientRequest {
        client_name: "tenant".into(),
        read_only: true,
        allowed_owners: vec!["bob".into(), "alice".into()],
    };
    let registered = client.register_api_client(as_admin(request, ADMIN_TOKEN)).await.unwrap().into_inner();
    let policy_of = |id: &str| GetClientPolicyRequest { client_id: id.to_owned() };
    let policy = client.get_client_policy(policy_of(&registered.client_id)).await.unwrap().into_inner();
    assert!(policy.exists && policy.read_only);
    assert_eq!(policy.allowed_owners, ["alice", "bob"]);
    let listed = client.list_api_clients(as_admin(ListApiClientsRequest {}, ADMIN_TOKEN)).await.unwrap().into_inner();
    assert!(listed.clients[0].read_only && listed.clients[0].allowed_owners == ["alice", "bob"]);

    let unregister = UnregisterApiClientRequest { client_id: registered.client_id.clone() };
    client.unregister_api_client(as_admin(unregister, ADMIN_TOKEN)).await.unwrap();
    let policy = client.get_client_policy(policy_of(&registered.client_id)).await.unwrap().into_inner();
    assert!(!policy.exists);
    let oversized = client.get_client_policy(policy_of(&"x".repeat(10_000))).await.unwrap().into_inner();
    assert!(!oversized.exists);
    replica.stop().await;
}
