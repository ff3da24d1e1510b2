//! `serve()` end to end over real sockets: HTTPS with the development CA, and
//! graceful shutdown.

mod support;

use switchboard_common::{Shutdown, tls::DevCa};
use switchboard_gateway::{GatewayConfig, serve};

#[tokio::test]
async fn serves_https_and_stops_on_shutdown() {
    let upstream = support::start_fakes().await;
    let dir = tempfile::tempdir().unwrap();
    let ca = DevCa::load_or_create(dir.path(), &[]).unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let shutdown = Shutdown::new();
    let server = tokio::spawn(serve(
        GatewayConfig::default(),
        listener,
        Some(ca.server.clone()),
        upstream.upstreams.clone(),
        shutdown.clone(),
    ));

    let tls = switchboard_common::tls::client_config_trusting(&ca.ca_pem).unwrap();
    let client = reqwest::Client::builder().use_preconfigured_tls((*tls).clone()).build().unwrap();
    let response = client
        .post(format!("https://localhost:{port}/oauth2/token?grant_type=client_credentials"))
        .basic_auth("good", Some("pw"))
        .header("content-type", "application/x-www-form-urlencoded")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["access_token"], "jwt-for-good");

    let response = client.post(format!("https://localhost:{port}/describeSessions")).send().await.unwrap();
    assert_eq!(response.status(), 401);

    shutdown.cancel();
    server.await.unwrap().unwrap();
}
