//! Internal gRPC ports with mutual TLS (issue 6, item 8): a process that configured
//! `switchboard_common::internal_tls` serves its internal port with TLS and requires client certificates
//! from the internal CA; its own channels to `https://` upstreams present its certificate. One test per
//! binary, because the configuration is process-wide.

use std::sync::Arc;
use std::time::Duration;

use switchboard_common::internal_tls::{self, InternalTls};
use switchboard_proto::ListServersRequest;
use switchboard_proto::session_store_client::SessionStoreClient;
use switchboard_store::Backend;
use switchboard_store::embedded::EmbeddedBackend;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};

const WAIT: Duration = Duration::from_secs(10);

#[tokio::test]
async fn internal_ports_speak_mutual_tls_when_configured() {
    switchboard_common::telemetry::init_for_tests();
    let dir = tempfile::tempdir().unwrap();
    let ca = switchboard_common::tls::DevCa::load_or_create(dir.path(), &[]).unwrap();
    internal_tls::configure(InternalTls {
        ca: switchboard_common::tls_reload::ReloadingCa::from_pem(&ca.ca_pem).unwrap(),
        identity: Some(switchboard_common::tls_reload::ReloadingIdentity::from_pem(&ca.server).unwrap()),
        require_client_cert: true,
    });

    let backend: Arc<dyn Backend> = Arc::new(EmbeddedBackend::in_memory().unwrap());
    let grpc = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let agent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = grpc.local_addr().unwrap().port();
    let shutdown = switchboard_common::Shutdown::new();
    let config = switchboard_session_store::StoreConfig {
        advertised_address: format!("https://localhost:{port}"),
        ..Default::default()
    };
    let listeners = switchboard_session_store::Listeners { grpc, agent };
    let server = tokio::spawn(switchboard_session_store::serve(config, listeners, backend, None, shutdown.clone()));
    let request = || ListServersRequest { page_size: 10, ..Default::default() };

    // A configured client (CA + client certificate) over https is served.
    let channel = switchboard_common::grpc::lazy_channel(&format!("https://localhost:{port}")).unwrap();
    let answer = tokio::time::timeout(WAIT, SessionStoreClient::new(channel).list_servers(request())).await.unwrap();
    assert!(answer.is_ok(), "mutual TLS call: {answer:?}");

    // Plaintext is refused.
    let plain = switchboard_common::grpc::lazy_channel(&format!("http://127.0.0.1:{port}")).unwrap();
    let answer = tokio::time::timeout(WAIT, SessionStoreClient::new(plain).list_servers(request())).await.unwrap();
    assert!(answer.is_err(), "a plaintext client must not be served");
    println!("attack: plaintext call to an internal TLS port -> {:?}", answer.unwrap_err().code());

    // TLS without a client certificate is refused.
    let no_cert = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&ca.ca_pem)).domain_name("localhost");
    let anonymous =
        Endpoint::from_shared(format!("https://localhost:{port}")).unwrap().tls_config(no_cert).unwrap().connect_lazy();
    let answer = tokio::time::timeout(WAIT, SessionStoreClient::new(anonymous).list_servers(request())).await.unwrap();
    assert!(answer.is_err(), "a client without a certificate must not be served");
    println!("attack: TLS call without a client certificate -> {:?}", answer.unwrap_err().code());

    // A certificate from another CA is refused.
    let other_dir = tempfile::tempdir().unwrap();
    let other = switchboard_common::tls::DevCa::load_or_create(other_dir.path(), &[]).unwrap();
    let stranger = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&ca.ca_pem))
        .identity(tonic::transport::Identity::from_pem(&other.server.cert_pem, &other.server.key_pem))
        .domain_name("localhost");
    let stranger = Endpoint::from_shared(format!("https://localhost:{port}"))
        .unwrap()
        .tls_config(stranger)
        .unwrap()
        .connect_lazy();
    let answer = tokio::time::timeout(WAIT, SessionStoreClient::new(stranger).list_servers(request())).await.unwrap();
    assert!(answer.is_err(), "a client certificate from another CA must not be served");
    println!("attack: client certificate from another CA -> {:?}", answer.unwrap_err().code());

    shutdown.cancel();
    tokio::time::timeout(WAIT, server).await.unwrap().unwrap().unwrap();
}
