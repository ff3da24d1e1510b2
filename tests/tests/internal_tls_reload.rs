//! Certificate reload on the internal gRPC ports (issue 15 item 3): the internal CA, certificate and key
//! files are rotated (to another CA) under a running session-store with mutual TLS. New handshakes see the
//! new certificate and need a client certificate of the new CA; a connection made before the rotation keeps
//! working; this process's own channels (`lazy_channel`, `replica_channel`) dial with the new material.
//! Its own binary, because the internal TLS configuration is process-wide.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use switchboard_common::grpc::{GrpcChannel, lazy_channel, replica_channel};
use switchboard_common::tls::{DevCa, Identity};
use switchboard_proto::ListServersRequest;
use switchboard_proto::session_store_client::SessionStoreClient;
use switchboard_store::Backend;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};

const WAIT: Duration = Duration::from_secs(30);

fn write(dir: &std::path::Path, ca: &DevCa) {
    std::fs::write(dir.join("ca.pem"), &ca.ca_pem).unwrap();
    std::fs::write(dir.join("node.key"), &ca.server.key_pem).unwrap();
    std::fs::write(dir.join("node.crt"), &ca.server.cert_pem).unwrap();
}

async fn list(channel: GrpcChannel) -> Result<(), tonic::Status> {
    let request = ListServersRequest { page_size: 10, ..Default::default() };
    let mut client = SessionStoreClient::new(channel);
    tokio::time::timeout(WAIT, client.list_servers(request)).await.expect("the call ends").map(drop)
}

/// Calls through `channel` until one succeeds (bounded).
async fn eventually_served(channel: GrpcChannel, what: &str) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match list(channel.clone()).await {
            Ok(()) => return,
            Err(status) => assert!(tokio::time::Instant::now() < deadline, "{what}: {status:?}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A channel with fixed material: trusting `ca`, presenting its server certificate as client certificate.
fn fixed_channel(port: u16, ca: &DevCa) -> Endpoint {
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&ca.ca_pem))
        .identity(tonic::transport::Identity::from_pem(&ca.server.cert_pem, &ca.server.key_pem))
        .domain_name("localhost");
    Endpoint::from_shared(format!("https://localhost:{port}")).unwrap().tls_config(tls).unwrap()
}

/// The certificate the server at `address` presents to a new handshake trusting `ca_pem`, with `identity`.
async fn presented_certificate(address: SocketAddr, ca_pem: &str, identity: &Identity) -> Vec<u8> {
    let mut config = (*switchboard_common::tls::client_config_with_identity(ca_pem, Some(identity)).unwrap()).clone();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = tokio::net::TcpStream::connect(address).await.unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let connect = tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp);
    let tls = tokio::time::timeout(WAIT, connect).await.unwrap().expect("the new handshake succeeds");
    tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

#[tokio::test]
async fn internal_ports_and_channels_follow_rotated_files() {
    switchboard_common::telemetry::init_for_tests();
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let old = DevCa::load_or_create(dirs[0].path(), &[]).unwrap();
    let new = DevCa::load_or_create(dirs[1].path(), &[]).unwrap();
    let files = dirs[2].path();
    write(files, &old);
    let tls = switchboard_common::config::internal_tls(
        Some(&files.join("ca.pem")),
        Some(&files.join("node.crt")),
        Some(&files.join("node.key")),
        true,
    )
    .unwrap()
    .expect("internal TLS is on");
    switchboard_common::internal_tls::configure(tls.clone());

    let backend: Arc<dyn Backend> = Arc::new(switchboard_store::embedded::EmbeddedBackend::in_memory().unwrap());
    let grpc = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let agent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = grpc.local_addr().unwrap();
    let port = address.port();
    let shutdown = switchboard_common::Shutdown::new();
    let listeners = switchboard_session_store::Listeners { grpc, agent };
    let config = switchboard_session_store::StoreConfig::default();
    let server = tokio::spawn(switchboard_session_store::serve(config, listeners, backend, None, shutdown.clone()));

    let url = format!("https://localhost:{port}");
    let used_before = lazy_channel(&url).unwrap();
    eventually_served(used_before.clone(), "this process's channel is served").await;
    // Made before the rotation, first used after it: they must dial with the new material.
    let lazy_after = lazy_channel(&url).unwrap();
    let replicas_after = replica_channel(&url).unwrap();
    // A connection with the old material, established before the rotation.
    let established = GrpcChannel::new(fixed_channel(port, &old).connect().await.unwrap());
    list(established.clone()).await.expect("served before the rotation");

    write(files, &new);
    assert!(tls.ca.check_now() && tls.identity.as_ref().unwrap().check_now(), "the rotation is loaded");

    assert_eq!(
        presented_certificate(address, &new.ca_pem, &new.server).await,
        switchboard_common::tls::parse_certs(&new.server.cert_pem).unwrap()[0].to_vec(),
        "a new handshake sees the new certificate (and admits a client of the new CA)"
    );
    let stale = list(GrpcChannel::new(fixed_channel(port, &old).connect_lazy())).await;
    assert!(stale.is_err(), "a new connection with the old material is refused");
    list(established).await.expect("the connection made before the rotation still works");

    eventually_served(lazy_after, "a lazy channel dials with the rotated material").await;
    eventually_served(replicas_after, "a replica channel dials with the rotated material").await;
    eventually_served(used_before, "a channel used before the rotation keeps being served").await;

    shutdown.cancel();
    tokio::time::timeout(WAIT, server).await.unwrap().unwrap().unwrap();
}
