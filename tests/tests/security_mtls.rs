//! Mutual TLS on the public TLS ports, end to end on the all-in-one cluster (issue 6 item 5: "optionally
//! mTLS" for agents; issue 4: the session resolver's "mTLS optional"). With `agent_client_ca_file` the agent
//! port (agents and the DCV token verifier) admits only clients presenting a certificate from that CA; with
//! `resolver_client_ca_file` the same holds for the session resolver. Everyone else is refused during the
//! TLS handshake, before any request is read. Each test names the attack and asserts what the broker answers.

use std::sync::Arc;
use std::time::Duration;

use switchboard::{Cluster, UpConfig};
use switchboard_common::tls::{DevCa, Identity};
use switchboard_common::tls_reload::{ReloadingCa, ReloadingIdentity};
use switchboard_proto::agent_enrolment_client::AgentEnrolmentClient;
use switchboard_proto::{CreateSessionSpec, RegisterAgentRequest, SessionState, SessionType};
use tonic::Code;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};

const WAIT: Duration = Duration::from_secs(20);

struct Harness {
    cluster: Cluster,
    /// The development CA the cluster uses: its `ca.pem` is also the client CA of both ports.
    ca: DevCa,
    /// Another CA, trusted by nobody.
    stranger: DevCa,
    data_dir: tempfile::TempDir,
    _stranger_dir: tempfile::TempDir,
}

/// The all-in-one with one simulated host and the development CA as client CA of the agent port and the
/// resolver; returns once the simulated host (the real agent, presenting its certificate) is connected.
async fn start() -> Harness {
    switchboard_common::telemetry::init_for_tests();
    let data_dir = tempfile::tempdir().unwrap();
    // Created before the cluster, which loads the same files.
    let ca = DevCa::load_or_create(&data_dir.path().join("tls"), &[]).unwrap();
    let stranger_dir = tempfile::tempdir().unwrap();
    let stranger = DevCa::load_or_create(stranger_dir.path(), &[]).unwrap();
    let config = UpConfig {
        agent_client_ca_file: Some(ca.ca_path.clone()),
        resolver_client_ca_file: Some(ca.ca_path.clone()),
        ..UpConfig::ephemeral(data_dir.path(), 1)
    };
    let cluster = Cluster::start(config).await.expect("cluster starts");
    cluster.wait_ready(1, WAIT).await.expect("the simulated host presents its client certificate and connects");
    Harness { cluster, ca, stranger, data_dir, _stranger_dir: stranger_dir }
}

impl Harness {
    fn agent_url(&self) -> String {
        format!("https://localhost:{}", self.cluster.agent_addr.port())
    }

    /// Registers over a TLS channel presenting `identity` (if any) with a statement that is not genuine:
    /// past the handshake the broker answers `UNAUTHENTICATED`, so any other failure is the TLS layer's.
    async fn register(&self, identity: Option<&Identity>) -> Result<(), tonic::Status> {
        let mut tls =
            ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&self.ca.ca_pem)).domain_name("localhost");
        if let Some(identity) = identity {
            tls = tls.identity(tonic::transport::Identity::from_pem(&identity.cert_pem, &identity.key_pem));
        }
        let channel = Endpoint::from_shared(self.agent_url()).unwrap().tls_config(tls).unwrap().connect_lazy();
        let request =
            RegisterAgentRequest { software_statement: "not-a-statement".into(), client_name: "probe".into() };
        let mut client = AgentEnrolmentClient::new(channel);
        tokio::time::timeout(WAIT, client.register(request)).await.expect("register answers").map(drop)
    }

    /// An HTTPS client trusting the cluster's CA and presenting `identity` (if any).
    fn https(&self, identity: Option<&Identity>) -> reqwest::Client {
        let tls = switchboard_common::tls::client_config_with_identity(&self.ca.ca_pem, identity).unwrap();
        reqwest::Client::builder().use_preconfigured_tls((*tls).clone()).https_only(true).build().unwrap()
    }
}

/// The attack fails at the TLS layer: the server's TLS alert, never an answer of the broker. (The other
/// CA has the same name as ours, so its certificates fail the signature check: alert `DecryptError`.)
fn expect_tls_refusal<T: std::fmt::Debug, E: std::fmt::Debug>(result: Result<T, E>, attack: &str) {
    let error = format!("{:?}", result.expect_err(attack));
    // tonic shows the alert as rustls displays it, reqwest as rustls debug-prints it.
    let alert = ["received fatal alert: ", "AlertReceived("]
        .iter()
        .find_map(|marker| error.split(marker).nth(1))
        .and_then(|rest| rest.split(['"', ')']).next());
    let Some(alert) = alert else { panic!("{attack}: refused at the TLS layer, not by the service: {error}") };
    println!("attack: {attack} -> TLS alert {alert}");
}

#[tokio::test]
async fn the_agent_port_admits_only_clients_with_a_certificate_from_its_ca() {
    let harness = start().await;

    // An agent presenting a certificate from the client CA enrols, connects, and its session appears.
    let statement =
        switchboard_store::enrolment::statements::generate(harness.cluster.backend.as_ref()).await.unwrap().text;
    let mut options = switchboard_agent::simulated_host_options(
        7,
        &harness.agent_url(),
        Some(ReloadingCa::from_pem(&harness.ca.ca_pem).unwrap()),
    );
    let identity = harness.ca.issue_client_identity("host-7").unwrap();
    options.client_identity = Some(ReloadingIdentity::from_pem(&identity).unwrap());
    let credentials = harness.data_dir.path().join("host-7.credentials.toml");
    options.enrolment = Some(switchboard_agent::enrol::Enrolment::inline(statement, credentials));
    let server_id = options.server_id.clone();
    let driver = Arc::new(switchboard_agent::SimulatedDriver::default());
    let spec = CreateSessionSpec { owner: "alice".into(), r#type: SessionType::Virtual as i32, ..Default::default() };
    switchboard_agent::DcvDriver::create_session(driver.as_ref(), "mtls-s1", &spec).await.unwrap();
    let shutdown = harness.cluster.shutdown_token();
    let agent = tokio::spawn(switchboard_agent::run(options, driver, switchboard_proto::HostInfo::default, shutdown));
    let backend = harness.cluster.backend.clone();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let sessions = backend.get_sessions(&["mtls-s1".to_owned()]).await.unwrap();
        if sessions.iter().any(|s| s.state() == SessionState::Ready && s.server_id == server_id) {
            break;
        }
        assert!(!agent.is_finished(), "the agent stopped: {:?}", agent.await);
        assert!(tokio::time::Instant::now() < deadline, "the session of the agent with a certificate never appeared");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!("agent with a certificate from the client CA -> connected, its session is READY");

    // Past the handshake the service answers (here: the statement is not genuine).
    let client = harness.ca.issue_client_identity("probe").unwrap();
    let answer = harness.register(Some(&client)).await.expect_err("a fake statement is refused");
    assert_eq!(answer.code(), Code::Unauthenticated, "{answer:?}");

    expect_tls_refusal(harness.register(None).await, "agent without a client certificate");
    let foreign = harness.stranger.issue_client_identity("host-7").unwrap();
    expect_tls_refusal(harness.register(Some(&foreign)).await, "agent with a certificate from another CA");

    // The DCV token verifier shares the port: the DCV server must present a certificate too.
    let url = format!("{}/agent/validate-authentication-token", harness.agent_url());
    let form = [("sessionId", "mtls-s1"), ("authenticationToken", "not-a-token")];
    let refused = harness.https(None).post(&url).form(&form).send().await;
    expect_tls_refusal(refused, "verifier call without a client certificate");
    let dcv = harness.ca.issue_client_identity("dcv-server").unwrap();
    let answer = harness.https(Some(&dcv)).post(&url).form(&form).send().await.unwrap();
    assert_eq!(answer.status(), 200);
    assert!(answer.text().await.unwrap().contains(r#"result="no""#), "a bad token is still refused");
}

#[tokio::test]
async fn the_resolver_answers_only_clients_with_a_certificate_from_its_ca() {
    let harness = start().await;
    let url = format!(
        "https://localhost:{}/resolveSession?sessionId=nope&transport=HTTP",
        harness.cluster.resolver_addr.unwrap().port()
    );

    let gateway = harness.ca.issue_client_identity("connection-gateway").unwrap();
    let answer = harness.https(Some(&gateway)).post(&url).send().await.unwrap();
    assert_eq!(answer.status(), 404, "served: an unknown session is not resolved");
    assert_eq!(answer.json::<serde_json::Value>().await.unwrap()["error"], "Session not found");

    expect_tls_refusal(harness.https(None).post(&url).send().await, "resolver call without a client certificate");
    let foreign = harness.stranger.issue_client_identity("connection-gateway").unwrap();
    let refused = harness.https(Some(&foreign)).post(&url).send().await;
    expect_tls_refusal(refused, "resolver call with a certificate from another CA");
}

#[tokio::test]
async fn simulated_hosts_need_the_development_ca_among_the_agent_client_cas() {
    switchboard_common::telemetry::init_for_tests();
    let data_dir = tempfile::tempdir().unwrap();
    let other_dir = tempfile::tempdir().unwrap();
    let other = DevCa::load_or_create(other_dir.path(), &[]).unwrap();
    let config =
        UpConfig { agent_client_ca_file: Some(other.ca_path.clone()), ..UpConfig::ephemeral(data_dir.path(), 1) };
    let error = Cluster::start(config).await.err().expect("refused: the simulated hosts could never connect");
    assert!(error.to_string().contains("--sim-hosts 0"), "{error:#}");
}
