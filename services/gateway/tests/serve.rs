//! `serve()` end to end over real sockets: HTTPS with the development CA, and
//! graceful shutdown.

mod support;

use std::time::{Duration, Instant};

use switchboard_common::{Shutdown, tls::DevCa};
use switchboard_gateway::{GatewayConfig, serve};
use tonic_health::ServingStatus;

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
        Some(switchboard_common::tls_reload::ReloadingIdentity::from_pem(&ca.server).unwrap()),
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

/// `/health/ready` until it answers `status`, or a panic after 20 s; the last body.
async fn ready_until(client: &reqwest::Client, url: &str, status: u16) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let response = client.get(url).send().await.unwrap();
        let answered = response.status().as_u16();
        let body: serde_json::Value = response.json().await.unwrap();
        if answered == status {
            return body;
        }
        assert!(Instant::now() < deadline, "/health/ready stayed {answered}: {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn readiness_follows_the_upstreams_health() {
    let upstream = support::start_fakes().await;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/health/ready", listener.local_addr().unwrap());
    let shutdown = Shutdown::new();
    let server =
        tokio::spawn(serve(GatewayConfig::default(), listener, None, upstream.upstreams.clone(), shutdown.clone()));
    let client = reqwest::Client::new();
    ready_until(&client, &url, 200).await;

    // The fakes serve all three upstreams: all three become unreachable.
    upstream.health.set_service_status("", ServingStatus::NotServing).await;
    let body = ready_until(&client, &url, 503).await;
    assert_eq!(body["status"], "upstreams unreachable");
    assert_eq!(body["unreachable"], serde_json::json!(["auth", "placement", "session-store"]));

    upstream.health.set_service_status("", ServingStatus::Serving).await;
    ready_until(&client, &url, 200).await;

    shutdown.cancel();
    server.await.unwrap().unwrap();
}
