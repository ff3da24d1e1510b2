//! The core loop end to end, through the real architecture: an in-process
//! all-in-one cluster on ephemeral ports, two simulated hosts, and a real
//! HTTPS client trusting the generated CA.
//!
//! register client → token → createSessions → READY → describeSessions →
//! deleteSessions → DELETED.

use std::time::Duration;

use serde_json::{Value, json};
use switchboard::{Cluster, UpConfig};

struct Harness {
    cluster: Cluster,
    http: reqwest::Client,
    _data_dir: tempfile::TempDir,
}

impl Harness {
    async fn start(sim_hosts: usize) -> Harness {
        switchboard_common::telemetry::init_for_tests();
        let data_dir = tempfile::tempdir().unwrap();
        let config = UpConfig {
            data_dir: data_dir.path().to_owned(),
            sim_hosts,
            listen: "127.0.0.1:0".parse().unwrap(),
            agent_listen: "127.0.0.1:0".parse().unwrap(),
            update_interval_seconds: 1,
            tls_names: Vec::new(),
            ..UpConfig::default()
        };
        let cluster = Cluster::start(config).await.expect("cluster starts");
        cluster.wait_ready(sim_hosts, Duration::from_secs(20)).await.expect("hosts connect");
        let ca = reqwest::Certificate::from_pem(cluster.ca_pem.as_bytes()).unwrap();
        let http = reqwest::Client::builder()
            .add_root_certificate(ca)
            .tls_built_in_root_certs(false)
            .https_only(true)
            .build()
            .unwrap();
        Harness { cluster, http, _data_dir: data_dir }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.cluster.api_url)
    }

    async fn register_client(&self) -> (String, String) {
        let response = self
            .cluster
            .admin
            .client()
            .unwrap()
            .register_api_client(switchboard_proto::RegisterApiClientRequest {
                client_name: "e2e".into(),
                ..Default::default()
            })
            .await
            .expect("register api client")
            .into_inner();
        (response.client_id, response.client_secret)
    }

    async fn token(&self) -> String {
        let (id, secret) = self.register_client().await;
        let response = self
            .http
            .post(self.url("/oauth2/token?grant_type=client_credentials"))
            .basic_auth(&id, Some(&secret))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["token_type"], "Bearer");
        assert!(body["expires_in"].as_u64().unwrap() > 0);
        body["access_token"].as_str().unwrap().to_owned()
    }

    async fn call(&self, token: &str, path: &str, body: Value) -> Value {
        let response = self.http.post(self.url(path)).bearer_auth(token).json(&body).send().await.unwrap();
        let status = response.status();
        let body: Value = response.json().await.unwrap();
        assert_eq!(status, 200, "{path}: {body}");
        body
    }

    /// Polls describeSessions until the session reaches `state`.
    async fn wait_for_state(&self, token: &str, session_id: &str, state: &str) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let body = self.call(token, "/describeSessions", json!({ "SessionIds": [session_id] })).await;
            if let Some(session) = body["Sessions"].as_array().and_then(|s| s.first())
                && session["State"] == state
            {
                return session.clone();
            }
            assert!(tokio::time::Instant::now() < deadline, "session {session_id} never became {state}: {body}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_describe_delete_over_https() {
    let harness = Harness::start(2).await;

    // Every API call needs a token.
    let response = harness.http.post(harness.url("/describeSessions")).send().await.unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(response.json::<Value>().await.unwrap(), json!({ "error": "No authorization header" }));
    let response = harness.http.post(harness.url("/describeSessions")).bearer_auth("not-a-jwt").send().await.unwrap();
    assert_eq!(response.status(), 401);
    assert!(response.json::<Value>().await.unwrap()["error"].is_string());

    let token = harness.token().await;

    // Create: accepted as CREATING / SESSION_PLACING.
    let created =
        harness.call(&token, "/createSessions", json!([{ "Name": "e2e", "Owner": "alice", "Type": "VIRTUAL" }])).await;
    assert!(created["RequestId"].is_string());
    assert_eq!(created["UnsuccessfulList"], json!([]), "{created}");
    let session = &created["SuccessfulList"][0];
    assert_eq!(session["State"], "CREATING");
    assert_eq!(session["Substate"], "SESSION_PLACING");
    assert_eq!(session["Owner"], "alice");
    let id = session["Id"].as_str().unwrap().to_owned();

    // The agent creates it: READY, on a simulated host.
    let ready = harness.wait_for_state(&token, &id, "READY").await;
    assert_eq!(ready["Name"], "e2e");
    assert_eq!(ready["Type"], "VIRTUAL");
    assert!(ready["Server"]["Hostname"].as_str().unwrap().starts_with("sim-host-"), "{ready}");
    assert!(ready["Server"]["Port"].is_string(), "Server.Port is a string on the wire: {ready}");
    assert!(ready["CreationTime"].as_str().unwrap().ends_with('Z'));

    // Filter by owner.
    let mine =
        harness.call(&token, "/describeSessions", json!({ "Filters": [{ "Key": "owner", "Value": "alice" }] })).await;
    assert!(mine["Sessions"].as_array().unwrap().iter().any(|s| s["Id"] == id.as_str()), "{mine}");
    let theirs =
        harness.call(&token, "/describeSessions", json!({ "Filters": [{ "Key": "owner", "Value": "bob" }] })).await;
    assert!(theirs["Sessions"].as_array().unwrap().iter().all(|s| s["Id"] != id.as_str()), "{theirs}");

    // Delete: wrong owner refused, right owner → DELETING → DELETED.
    let refused = harness.call(&token, "/deleteSessions", json!([{ "SessionId": id, "Owner": "mallory" }])).await;
    assert_eq!(refused["UnsuccessfulList"][0]["SessionId"], id.as_str(), "{refused}");
    let deleted = harness.call(&token, "/deleteSessions", json!([{ "SessionId": id, "Owner": "alice" }])).await;
    assert_eq!(deleted["SuccessfulList"][0], json!({ "SessionId": id, "State": "DELETING" }), "{deleted}");
    harness.wait_for_state(&token, &id, "DELETED").await;

    harness.cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_sessions_spread_one_per_host() {
    let harness = Harness::start(2).await;
    let token = harness.token().await;
    let body = json!([
        { "Name": "c1", "Owner": "u1", "Type": "CONSOLE" },
        { "Name": "c2", "Owner": "u2", "Type": "CONSOLE" },
    ]);
    let created = harness.call(&token, "/createSessions", body).await;
    let ids: Vec<String> =
        created["SuccessfulList"].as_array().unwrap().iter().map(|s| s["Id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(ids.len(), 2, "{created}");
    let mut hosts = Vec::new();
    for id in &ids {
        let ready = harness.wait_for_state(&token, id, "READY").await;
        hosts.push(ready["Server"]["Id"].as_str().unwrap().to_owned());
    }
    assert_ne!(hosts[0], hosts[1], "one console session per host");

    // A third console session has nowhere to go.
    let third =
        harness.call(&token, "/createSessions", json!([{ "Name": "c3", "Owner": "u3", "Type": "CONSOLE" }])).await;
    let failed_at_once = third["UnsuccessfulList"].as_array().is_some_and(|list| !list.is_empty());
    if !failed_at_once {
        let id = third["SuccessfulList"][0]["Id"].as_str().unwrap().to_owned();
        let ended = harness.wait_for_state(&token, &id, "DELETED").await;
        assert!(!ended["StateReason"].as_str().unwrap_or_default().is_empty(), "{ended}");
    }
    harness.cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_credentials_get_no_token() {
    let harness = Harness::start(1).await;
    let (id, _secret) = harness.register_client().await;
    let response = harness
        .http
        .post(harness.url("/oauth2/token?grant_type=client_credentials"))
        .basic_auth(&id, Some("wrong"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert!(response.json::<Value>().await.unwrap()["error"].is_string());
    harness.cluster.stop().await;
}
