//! Certificate renewal under the multi-process cluster (issue 15 item 3): the certificate and key files every
//! process was started with (`--tls-cert-file`, `--internal-tls-cert-file`: the same pair) are replaced by a
//! renewed certificate while everything runs. Within the reload interval every TLS port presents the new
//! certificate to new handshakes, with no restart, and the cluster keeps creating and deleting sessions over
//! mutual TLS. (That established connections survive, and rotation to another CA, are shown in-process by
//! `tls_reload.rs` and `internal_tls_reload.rs`.)

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use switchboard_common::tls::{DevCa, Identity};
use switchboard_tests::client::ApiClient;
use switchboard_tests::cluster::{ClusterSpec, ProcessCluster, Service};
use switchboard_tests::load::SETTLE_TIMEOUT;

/// The reload interval (10 s) and then some.
const RELOADED_WITHIN: Duration = Duration::from_secs(40);

/// The leaf certificate presented to a new handshake at `address` (trusting `ca_pem`, presenting `identity`
/// for the ports that require a client certificate).
async fn presented(address: SocketAddr, ca_pem: &str, identity: &Identity) -> anyhow::Result<Vec<u8>> {
    let config = switchboard_common::tls::client_config_with_identity(ca_pem, Some(identity))?;
    let tcp = tokio::net::TcpStream::connect(address).await?;
    let connect =
        tokio_rustls::TlsConnector::from(Arc::clone(&config)).connect(ServerName::try_from("localhost")?, tcp);
    let tls = tokio::time::timeout(Duration::from_secs(10), connect).await??;
    Ok(tls.get_ref().1.peer_certificates().unwrap_or_default().first().map(|cert| cert.to_vec()).unwrap_or_default())
}

fn port_of(url: &str) -> SocketAddr {
    let port = url.rsplit_once(':').expect("a port").1.trim_end_matches('/').parse::<u16>().expect("a port");
    SocketAddr::from(([127, 0, 0, 1], port))
}

async fn create_and_delete(client: &ApiClient, owner: &str) {
    let id = client.create(owner).await.expect("create answers").expect("create accepted");
    let (state, reason) = client.settle(&id, SETTLE_TIMEOUT).await.expect("settles");
    assert_eq!(state, "READY", "{id}: {reason}");
    assert!(client.delete(&id, owner).await.expect("delete answers"), "{id} deleted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewed_certificate_is_served_by_every_process_without_a_restart() {
    switchboard_common::telemetry::init_for_tests();
    let spec =
        ClusterSpec { replicas: 1, agents: 1, max_virtual_sessions: 10, internal_mtls: true, ..Default::default() };
    let cluster = ProcessCluster::start(spec).await.expect("cluster with internal mTLS starts");
    let client = ApiClient::register(&cluster, "rotation").await.expect("client registered");
    create_and_delete(&client, "before").await;

    let ca = DevCa::load_or_create(&cluster.log_dir().join("tls"), &[]).unwrap();
    let ports: Vec<(String, SocketAddr)> = [Service::Auth, Service::Placement, Service::SessionStore]
        .into_iter()
        .map(|service| (format!("{service:?}"), port_of(&cluster.grpc_urls(service))))
        .chain(cluster.gateway_urls().iter().map(|url| ("gateway".to_owned(), port_of(url))))
        .collect();
    for (name, address) in &ports {
        let leaf = presented(*address, &ca.ca_pem, &ca.server).await.expect("handshake");
        assert_eq!(leaf, leaf_of(&ca.server), "{name} serves the certificate it started with");
    }

    let renewed = ca.issue_server_identity(&["localhost".into(), "127.0.0.1".into()]).unwrap();
    std::fs::write(ca.ca_path.with_file_name("server-key.pem"), &renewed.key_pem).unwrap();
    std::fs::write(ca.ca_path.with_file_name("server.pem"), &renewed.cert_pem).unwrap();
    let deadline = tokio::time::Instant::now() + RELOADED_WITHIN;
    for (name, address) in &ports {
        loop {
            let leaf = presented(*address, &ca.ca_pem, &renewed).await;
            if leaf.as_ref().is_ok_and(|leaf| *leaf == leaf_of(&renewed)) {
                break;
            }
            let seen = leaf.map_or_else(|error| error.to_string(), |_| "another certificate".to_owned());
            assert!(tokio::time::Instant::now() < deadline, "{name} never served the renewed certificate: {seen}");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        println!("{name} serves the renewed certificate");
    }
    // The services dial each other with the renewed certificate from now on.
    create_and_delete(&client, "after").await;
}

fn leaf_of(identity: &Identity) -> Vec<u8> {
    switchboard_common::tls::parse_certs(&identity.cert_pem).unwrap()[0].to_vec()
}
