//! Auth across replicas: two auth and two gateway processes over one Redis. Key rotation keeps old
//! tokens valid and switches every replica to the new key; unregistering a client is seen by both
//! gateways; a client's scope is enforced by both.
//!
//! Short cache and refresh times come from the binaries' own settings (environment variables set
//! before the processes start), so the bounds are those of docs/security.md, scaled down.

use std::time::Duration;

use serde_json::{Value, json};
use switchboard_tests::cluster::{ClusterSpec, ProcessCluster, Service};

type Admin = switchboard_proto::auth_client::AuthClient<
    tonic::service::interceptor::InterceptedService<
        switchboard_common::grpc::GrpcChannel,
        Box<dyn FnMut(tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> + Send + Sync>,
    >,
>;

fn admin(cluster: &ProcessCluster) -> Admin {
    let channel = switchboard_common::grpc::replica_channel(&cluster.grpc_urls(Service::Auth)).unwrap();
    let header: tonic::metadata::MetadataValue<_> = format!("Bearer {}", cluster.admin_token).parse().unwrap();
    switchboard_proto::auth_client::AuthClient::with_interceptor(
        channel,
        Box::new(move |mut request: tonic::Request<()>| {
            request.metadata_mut().insert("authorization", header.clone());
            Ok(request)
        }),
    )
}

async fn token(http: &reqwest::Client, gateway: &str, id: &str, secret: &str) -> (u16, Value) {
    let response = http
        .post(format!("{gateway}/oauth2/token?grant_type=client_credentials"))
        .basic_auth(id, Some(secret))
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap_or(Value::Null))
}

async fn call(http: &reqwest::Client, gateway: &str, token: &str, path: &str, body: Value) -> u16 {
    http.post(format!("{gateway}{path}")).bearer_auth(token).json(&body).send().await.unwrap().status().as_u16()
}

fn kid(token: &str) -> String {
    use base64::Engine as _;
    let header = token.split('.').next().unwrap();
    let header: Value =
        serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(header).unwrap()).unwrap();
    header["kid"].as_str().unwrap().to_owned()
}

#[test]
fn rotation_revocation_and_scopes_hold_across_replicas() {
    // SAFETY: set before any thread of this test binary starts (one test, runtime built below).
    unsafe {
        std::env::set_var("SWITCHBOARD_CLIENT_CACHE_SECONDS", "1");
        std::env::set_var("SWITCHBOARD_KEY_SET_REFRESH_SECONDS", "1");
        std::env::set_var("SWITCHBOARD_KEY_PUBLISH_DELAY_SECONDS", "2");
    }
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap().block_on(scenario());
}

async fn scenario() {
    switchboard_common::telemetry::init_for_tests();
    let cluster =
        ProcessCluster::start(ClusterSpec { replicas: 2, agents: 1, max_virtual_sessions: 10, ..Default::default() })
            .await
            .expect("cluster starts");
    let gateways = cluster.gateway_urls();
    let ca = reqwest::Certificate::from_pem(cluster.ca_pem.as_bytes()).unwrap();
    let http = reqwest::Client::builder().add_root_certificate(ca).tls_built_in_root_certs(false).build().unwrap();
    let (id, secret) = cluster.register_client("replicated").await.unwrap();
    let (status, body) = token(&http, &gateways[0], &id, &secret).await;
    assert_eq!(status, 200, "{body}");
    let old = body["access_token"].as_str().unwrap().to_owned();
    for gateway in &gateways {
        assert_eq!(call(&http, gateway, &old, "/describeSessions", json!({})).await, 200);
    }

    // Rotation: the new key signs on every auth replica after the publish delay; old tokens keep working.
    let rotation =
        admin(&cluster).rotate_signing_key(switchboard_proto::RotateSigningKeyRequest {}).await.unwrap().into_inner();
    // The key that signed the old token retires. (Two auth replicas starting at once may each have created
    // a first key, both published and valid, ARCHITECTURE.md; the rotation then retires both.)
    assert!(rotation.retiring_kids.contains(&kid(&old)), "{:?} retires {}", rotation.retiring_kids, kid(&old));
    assert!(rotation.retiring_kids.len() <= 2, "more first keys than auth replicas: {:?}", rotation.retiring_kids);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut fresh_on = [None, None];
    while fresh_on.iter().any(Option::is_none) {
        for (index, gateway) in gateways.iter().enumerate() {
            let (status, body) = token(&http, gateway, &id, &secret).await;
            assert_eq!(status, 200, "{body}");
            let issued = body["access_token"].as_str().unwrap().to_owned();
            if kid(&issued) == rotation.kid {
                fresh_on[index] = Some(issued);
            }
        }
        assert!(tokio::time::Instant::now() < deadline, "not every replica signs with the new key");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    for gateway in &gateways {
        assert_eq!(call(&http, gateway, &old, "/describeSessions", json!({})).await, 200, "old token, {gateway}");
        for fresh in fresh_on.iter().flatten() {
            assert_eq!(call(&http, gateway, fresh, "/describeSessions", json!({})).await, 200, "new token, {gateway}");
        }
    }

    // Scopes: a read-only client is refused changes by every gateway.
    let request = switchboard_proto::RegisterApiClientRequest {
        client_name: "reader".into(),
        read_only: true,
        ..Default::default()
    };
    let reader = admin(&cluster).register_api_client(request).await.unwrap().into_inner();
    let (_, body) = token(&http, &gateways[1], &reader.client_id, &reader.client_secret).await;
    let reader_token = body["access_token"].as_str().unwrap().to_owned();
    for gateway in &gateways {
        let create = json!([{ "Name": "x", "Owner": "a", "Type": "VIRTUAL" }]);
        assert_eq!(call(&http, gateway, &reader_token, "/createSessions", create).await, 403, "{gateway}");
        assert_eq!(call(&http, gateway, &reader_token, "/describeSessions", json!({})).await, 200, "{gateway}");
    }

    // Revocation: once unregistered (through either auth replica), both gateways refuse its tokens.
    let request = switchboard_proto::UnregisterApiClientRequest { client_id: id.clone() };
    admin(&cluster).unregister_api_client(request).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let mut statuses = Vec::new();
        for gateway in &gateways {
            statuses.push(call(&http, gateway, &old, "/describeSessions", json!({})).await);
        }
        if statuses.iter().all(|&status| status == 401) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "revocation not seen by every gateway: {statuses:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for gateway in &gateways {
        let (status, body) = token(&http, gateway, &id, &secret).await;
        assert_eq!((status, body["error"].clone()), (401, json!("invalid_client")), "{gateway}");
    }
}
