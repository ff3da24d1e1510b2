//! The multi-process cluster with mutual TLS on every internal gRPC port (issue 6, item 8): gateways dial
//! auth, placement and session-store over `https://` with client certificates, placement dials
//! session-store, and session-store replicas forward host commands to each other over TLS. Sessions are
//! created and deleted again (a close command for a host owned by the other replica is forwarded over TLS).

use switchboard_tests::client::ApiClient;
use switchboard_tests::cluster::{ClusterSpec, ProcessCluster, Service, binary};
use switchboard_tests::fleet;
use switchboard_tests::load::SETTLE_TIMEOUT;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_works_with_mutual_tls_on_internal_ports() {
    switchboard_common::telemetry::init_for_tests();
    let spec =
        ClusterSpec { replicas: 2, agents: 2, max_virtual_sessions: 10, internal_mtls: true, ..Default::default() };
    let cluster = ProcessCluster::start(spec).await.expect("cluster with internal mTLS starts");
    let client = ApiClient::register(&cluster, "mtls").await.expect("client registered over mTLS");
    let mut ids = Vec::new();
    for index in 0..8 {
        let owner = format!("user-{index}");
        let id = client.create(&owner).await.expect("create answers").expect("create accepted");
        let (state, reason) = client.settle(&id, SETTLE_TIMEOUT).await.expect("settles");
        assert_eq!(state, "READY", "{id}: {reason}");
        ids.push((id, owner));
    }
    let check = fleet::check(&cluster).await.expect("fleet check over mTLS");
    assert_eq!(check.ready, 8);
    assert_eq!(check.oversubscribed, 0);
    for (id, owner) in &ids {
        assert!(client.delete(id, owner).await.expect("delete answers"), "{id} deleted");
    }
    // DELETED once the host confirmed the close (bounded polling).
    let deadline = tokio::time::Instant::now() + SETTLE_TIMEOUT;
    for (id, _) in &ids {
        loop {
            let state = client.state(id).await.expect("describe answers").map(|(state, _)| state);
            if state.as_deref() == Some("DELETED") {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "{id} never became DELETED: {state:?}");
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
    println!("internal mTLS: 8 sessions created and deleted across 2 replicas of every service");

    // The admin CLI against an auth replica that requires client certificates (Kubernetes: `kubectl exec`
    // into an auth pod, where the SWITCHBOARD_INTERNAL_TLS_* variables are already set).
    let dir = cluster.log_dir();
    let auth_url = cluster.grpc_urls(Service::Auth).split(',').next().expect("an auth replica").to_owned();
    let admin = |with_certificate: bool| {
        let mut command = std::process::Command::new(binary("switchboard").expect("switchboard binary"));
        command
            .args(["describe-api-clients", "--auth-url", &auth_url])
            .arg("--admin-token-file")
            .arg(dir.join("admin-token"))
            .env("SWITCHBOARD_INTERNAL_TLS_CA_FILE", dir.join("tls/ca.pem"));
        if with_certificate {
            command
                .env("SWITCHBOARD_INTERNAL_TLS_CERT_FILE", dir.join("tls/server.pem"))
                .env("SWITCHBOARD_INTERNAL_TLS_KEY_FILE", dir.join("tls/server-key.pem"));
        }
        command.output().expect("switchboard runs")
    };
    let listed = admin(true);
    let stdout = String::from_utf8_lossy(&listed.stdout);
    assert!(listed.status.success(), "admin CLI over mTLS failed: {}", String::from_utf8_lossy(&listed.stderr));
    assert!(stdout.contains("\"name\": \"mtls\""), "the registered client is listed: {stdout}");
    let refused = admin(false);
    assert!(!refused.status.success(), "auth answered a CLI without a client certificate");
}
