//! Certificate reload on the public TLS ports and in the agent (issue 15 item 3): certificate, key and CA
//! files are rotated under running servers. New handshakes see the new material, connections made before
//! the rotation keep working, and the agent presents its rotated client certificate when it reconnects.
//!
//! The rotation always moves to another CA, so "still working" cannot come from a new handshake: a client
//! that only trusts (or only has a certificate from) the old CA would be refused by a new one.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::{CertificateDer, ServerName};
use switchboard_common::Shutdown;
use switchboard_common::tls::{DevCa, Identity};
use switchboard_common::tls_reload::{ReloadingCa, ReloadingIdentity};
use switchboard_proto::ListServersRequest;
use switchboard_proto::session_store_client::SessionStoreClient;
use switchboard_store::Backend;

const WAIT: Duration = Duration::from_secs(30);

/// Two unrelated development CAs: the material before and after the rotation.
struct Cas {
    old: DevCa,
    new: DevCa,
    files: tempfile::TempDir,
    _dirs: [tempfile::TempDir; 2],
}

impl Cas {
    fn new() -> Self {
        switchboard_common::telemetry::init_for_tests();
        switchboard_common::tls::install_crypto_provider();
        let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
        let old = DevCa::load_or_create(dirs[0].path(), &[]).unwrap();
        let new = DevCa::load_or_create(dirs[1].path(), &[]).unwrap();
        Self { old, new, files: tempfile::tempdir().unwrap(), _dirs: dirs }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.files.path().join(name)
    }
}

/// Writes `identity` into `name.crt` / `name.key` (the key first, as a careless rotation might).
fn write_identity(cas: &Cas, name: &str, identity: &Identity) -> (PathBuf, PathBuf) {
    let (cert, key) = (cas.path(&format!("{name}.crt")), cas.path(&format!("{name}.key")));
    std::fs::write(&key, &identity.key_pem).unwrap();
    std::fs::write(&cert, &identity.cert_pem).unwrap();
    (cert, key)
}

fn leaf(identity: &Identity) -> CertificateDer<'static> {
    switchboard_common::tls::parse_certs(&identity.cert_pem).unwrap().remove(0)
}

/// A new TLS handshake with the server at `address`, trusting `ca_pem` and presenting `identity`: the
/// certificate the server presented.
async fn presented_certificate(
    address: SocketAddr,
    ca_pem: &str,
    identity: Option<&Identity>,
) -> std::io::Result<CertificateDer<'static>> {
    let config = switchboard_common::tls::client_config_with_identity(ca_pem, identity).unwrap();
    let tcp = tokio::net::TcpStream::connect(address).await?;
    let name = ServerName::try_from("localhost").unwrap();
    let tls = tokio::time::timeout(WAIT, tokio_rustls::TlsConnector::from(config).connect(name, tcp))
        .await
        .expect("the handshake ends")?;
    Ok(tls.get_ref().1.peer_certificates().expect("a server certificate")[0].clone().into_owned())
}

/// An HTTPS client trusting only `ca_pem`, presenting `identity`; it keeps its connections.
fn https(ca_pem: &str, identity: Option<&Identity>) -> reqwest::Client {
    let tls = switchboard_common::tls::client_config_with_identity(ca_pem, identity).unwrap();
    reqwest::Client::builder().use_preconfigured_tls((*tls).clone()).https_only(true).build().unwrap()
}

#[tokio::test]
async fn the_gateway_serves_a_rotated_certificate_to_new_connections_and_keeps_old_ones() {
    let cas = Cas::new();
    let (cert, key) = write_identity(&cas, "gateway", &cas.old.server);
    let identity = ReloadingIdentity::from_files(&cert, &key).unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let address = listener.local_addr().unwrap();
    let nowhere = || switchboard_common::grpc::lazy_channel("http://127.0.0.1:1").unwrap();
    let upstreams = switchboard_gateway::Upstreams::new(nowhere(), nowhere(), nowhere());
    let shutdown = Shutdown::new();
    let server = tokio::spawn(switchboard_gateway::serve(
        switchboard_gateway::GatewayConfig::default(),
        listener,
        Some(identity.clone()),
        upstreams,
        shutdown.clone(),
    ));
    let url = format!("https://localhost:{}/describeSessions", address.port());
    // Unauthenticated: answered 401 by the gateway itself, so only TLS is tested.
    let old_client = https(&cas.old.ca_pem, None);
    assert_eq!(old_client.post(&url).send().await.unwrap().status(), 401);
    assert_eq!(presented_certificate(address, &cas.old.ca_pem, None).await.unwrap(), leaf(&cas.old.server));

    write_identity(&cas, "gateway", &cas.new.server);
    assert!(identity.check_now(), "the rotation is loaded (the background check does the same every 10 s)");

    assert_eq!(
        presented_certificate(address, &cas.new.ca_pem, None).await.unwrap(),
        leaf(&cas.new.server),
        "a new handshake sees the new certificate"
    );
    assert!(https(&cas.old.ca_pem, None).post(&url).send().await.is_err(), "new connections no longer see the old");
    assert_eq!(
        old_client.post(&url).send().await.expect("the connection made before the rotation still works").status(),
        401
    );

    // A half-written rotation keeps the certificate being served.
    std::fs::write(&cert, "-----BEGIN CERTIFICATE-----\n").unwrap();
    assert!(!identity.check_now());
    assert_eq!(presented_certificate(address, &cas.new.ca_pem, None).await.unwrap(), leaf(&cas.new.server));

    shutdown.cancel();
    tokio::time::timeout(WAIT, server).await.unwrap().unwrap().unwrap();
}

/// A session-store on `agent` with agent-port TLS from `identity` and client CA `client_ca`, on its own
/// in-memory store; its gRPC address (for ListServers) and the task.
async fn session_store(
    agent: tokio::net::TcpListener,
    identity: &ReloadingIdentity,
    client_ca: &ReloadingCa,
    shutdown: &Shutdown,
) -> (SocketAddr, tokio::task::JoinHandle<switchboard_session_store::Result<()>>) {
    let backend: Arc<dyn Backend> = Arc::new(switchboard_store::embedded::EmbeddedBackend::in_memory().unwrap());
    let grpc = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let grpc_address = grpc.local_addr().unwrap();
    let config = switchboard_session_store::StoreConfig {
        require_agent_credentials: false,
        update_interval_seconds: 1,
        agent_client_ca: Some(client_ca.clone()),
        ..Default::default()
    };
    let listeners = switchboard_session_store::Listeners { grpc, agent };
    let task = tokio::spawn(switchboard_session_store::serve(
        config,
        listeners,
        backend,
        Some(identity.clone()),
        shutdown.clone(),
    ));
    (grpc_address, task)
}

/// Waits (bounded) until the session-store at `grpc` sees a reachable host.
async fn wait_for_agent(grpc: SocketAddr, why: &str) {
    let mut store = SessionStoreClient::new(switchboard_common::grpc::lazy_channel(&format!("http://{grpc}")).unwrap());
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let request = ListServersRequest { page_size: 10, ..Default::default() };
        if let Ok(page) = store.list_servers(request).await
            && page.into_inner().servers.iter().any(|server| server.reachable)
        {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "{why}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn write_ca(path: &Path, ca: &DevCa) {
    std::fs::write(path, &ca.ca_pem).unwrap();
}

#[tokio::test]
async fn the_agent_port_and_the_agent_follow_rotated_files() {
    // The agent messages of a kind (`hello`: a connect or reconnect; `update`) this process's session-stores
    // received.
    let metrics = switchboard_common::metrics::recorder().unwrap();
    let agent_messages = |kind: &str| -> u64 {
        let prefix = format!("switchboard_agent_messages_total{{kind=\"{kind}\"}} ");
        let text = switchboard_common::metrics::render(&metrics);
        text.lines().find_map(|line| line.strip_prefix(&prefix)).map_or(0, |value| value.trim().parse().unwrap())
    };
    let cas = Cas::new();
    // The agent port: its certificate and the client CA it admits agents from.
    let (cert, key) = write_identity(&cas, "agent-port", &cas.old.server);
    let port_identity = ReloadingIdentity::from_files(&cert, &key).unwrap();
    let client_ca_file = cas.path("agent-client-ca.pem");
    write_ca(&client_ca_file, &cas.old);
    let client_ca = ReloadingCa::from_file(&client_ca_file).unwrap();
    // The agent: the CA it trusts for the broker and its client certificate.
    let broker_ca_file = cas.path("broker-ca.pem");
    write_ca(&broker_ca_file, &cas.old);
    let broker_ca = ReloadingCa::from_file(&broker_ca_file).unwrap();
    let old_agent_identity = cas.old.issue_client_identity("host-1").unwrap();
    let (agent_cert, agent_key) = write_identity(&cas, "agent", &old_agent_identity);
    let agent_identity = ReloadingIdentity::from_files(&agent_cert, &agent_key).unwrap();

    let agent_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let agent_address = agent_listener.local_addr().unwrap();
    let first_shutdown = Shutdown::new();
    let (grpc, first) = session_store(agent_listener, &port_identity, &client_ca, &first_shutdown).await;

    let mut options = switchboard_agent::simulated_host_options(
        0,
        &format!("https://localhost:{}", agent_address.port()),
        Some(broker_ca.clone()),
    );
    options.client_identity = Some(agent_identity.clone());
    let agent_shutdown = Shutdown::new();
    let agent = tokio::spawn(switchboard_agent::run(
        options,
        Arc::new(switchboard_agent::SimulatedDriver::default()),
        || switchboard_agent::telemetry::simulated_host(0),
        agent_shutdown.clone(),
    ));
    wait_for_agent(grpc, "the agent connects with its first certificate").await;
    // A client of the old CA (as the DCV server calling the token verifier is) keeps a connection.
    let verifier = format!("https://localhost:{}/agent/validate-authentication-token", agent_address.port());
    let old_client = https(&cas.old.ca_pem, Some(&old_agent_identity));
    assert_eq!(old_client.post(&verifier).body("%%%").send().await.unwrap().status(), 200);

    // Everything moves to the new CA.
    write_identity(&cas, "agent-port", &cas.new.server);
    write_ca(&client_ca_file, &cas.new);
    write_ca(&broker_ca_file, &cas.new);
    let new_agent_identity = cas.new.issue_client_identity("host-1").unwrap();
    write_identity(&cas, "agent", &new_agent_identity);
    for reloaded in
        [port_identity.check_now(), client_ca.check_now(), broker_ca.check_now(), agent_identity.check_now()]
    {
        assert!(reloaded, "every rotated file is loaded");
    }

    // The agent port: new handshakes see the new certificate and admit only new clients.
    let presented = presented_certificate(agent_address, &cas.new.ca_pem, Some(&new_agent_identity)).await;
    assert_eq!(presented.unwrap(), leaf(&cas.new.server), "a new handshake sees the new certificate");
    let stale = https(&cas.old.ca_pem, Some(&old_agent_identity)).post(&verifier).body("%%%").send().await;
    assert!(stale.is_err(), "a new connection with the old material is refused");
    let kept = old_client.post(&verifier).body("%%%").send().await;
    assert_eq!(kept.expect("the connection made before the rotation still works").status(), 200);

    // The agent's stream made before the rotation continues: updates keep arriving (one a second), and no
    // second hello (a reconnect) came.
    let updates = agent_messages("update");
    let deadline = tokio::time::Instant::now() + WAIT;
    while agent_messages("update") < updates + 2 {
        assert!(tokio::time::Instant::now() < deadline, "the agent's stream stopped after the rotation");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(agent_messages("hello"), 1, "the agent kept its stream");
    // When it has to reconnect (its broker restarts, with nothing of the old material left), it trusts the
    // new CA and presents its new certificate, or it would be refused.
    first_shutdown.cancel();
    tokio::time::timeout(WAIT, first).await.unwrap().unwrap().unwrap();
    let agent_listener = rebind(agent_address).await;
    let second_shutdown = Shutdown::new();
    let (grpc, second) = session_store(agent_listener, &port_identity, &client_ca, &second_shutdown).await;
    wait_for_agent(grpc, "the agent reconnects with its rotated certificate").await;

    agent_shutdown.cancel();
    tokio::time::timeout(WAIT, agent).await.unwrap().unwrap().unwrap();
    second_shutdown.cancel();
    tokio::time::timeout(WAIT, second).await.unwrap().unwrap().unwrap();
}

/// Binds `address` again once its previous listener is gone (bounded).
async fn rebind(address: SocketAddr) -> tokio::net::TcpListener {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match tokio::net::TcpListener::bind(address).await {
            Ok(listener) => return listener,
            Err(error) => assert!(tokio::time::Instant::now() < deadline, "cannot bind {address} again: {error}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
