//! What one agent needs to run, from `agent.conf` or built in code (the all-in-one's simulated hosts).

use std::net::UdpSocket;
use std::sync::Arc;
use std::time::Duration;

use switchboard_proto::{Endpoint, KeyValue};

use crate::config::{AgentConfig, DriverKind};
use crate::driver::DcvDriver;
use crate::driver::dcv::{DcvCliDriver, DcvCliSettings};
use crate::driver::simulated::SimulatedDriver;
use crate::error::{Error, Result};
use crate::identity::derive_server_id;
use crate::tags::{SharedTags, read_tags};
use crate::telemetry::{dcv_conf, interface_ip, local_hostname};

/// Port DCV serves clients on by default.
pub const DEFAULT_DCV_PORT: u32 = 8443;

/// Identity, limits and broker address of one agent.
#[derive(Debug, Clone)]
pub struct AgentOptions {
    /// The broker's agent endpoint: `https://host:port` (TLS), or `http://host:port` for plaintext, which
    /// only tests and in-process hosts should use.
    pub broker_url: String,
    /// Other replicas of the broker's agent endpoint (same URL forms). After a session with one replica
    /// fails, the agent reconnects to the next one round-robin, so it survives the death of its replica.
    pub fallback_broker_urls: Vec<String>,
    /// CA certificates trusted for the broker (`ca_file`); the system bundle when `None`. Followed when the
    /// file changes: each connection trusts the current ones.
    pub ca: Option<switchboard_common::tls_reload::ReloadingCa>,
    /// Client certificate and key presented to the broker (`cert_file`, `key_file`), for an agent port that
    /// requires client certificates; `None`: none presented. Followed when the files change: each
    /// connection presents the current one.
    pub client_identity: Option<switchboard_common::tls_reload::ReloadingIdentity>,
    /// Name expected in the broker's certificate, when it differs from the URL's host.
    pub tls_domain: Option<String>,
    /// Stable server id the broker knows this host by.
    pub server_id: String,
    /// Host name reported to the broker.
    pub hostname: String,
    /// Address clients connect to.
    pub ip: String,
    /// DCV endpoints advertised to clients.
    pub endpoints: Vec<Endpoint>,
    /// Host tags, matched by session requirements; re-read on SIGHUP for real hosts.
    pub tags: SharedTags,
    /// Maximum virtual sessions; 0 means unlimited.
    pub max_virtual_sessions: u32,
    /// Maximum concurrent sessions per owner; 0 means unlimited.
    pub max_concurrent_sessions_per_user: u32,
    /// Seconds between updates when the broker's welcome does not say.
    pub update_interval_seconds: u32,
    /// HTTP/2 keepalive ping (and TCP keepalive) interval towards the broker.
    pub keepalive_interval: Duration,
    /// How the agent registers and authenticates (`software_statement_path`); `None`: no credentials.
    pub enrolment: Option<crate::enrol::Enrolment>,
}

/// Default HTTP/2 keepalive interval: below common load balancer idle timeouts (60 s), well above the
/// minimum ping interval servers enforce against ping floods (10 s for most proxies).
pub const DEFAULT_KEEPALIVE: Duration = Duration::from_secs(30);

/// The default DCV endpoint of a host at `ip`: HTTP (TCP/WebSocket) on port 8443, web path `/`.
pub fn default_endpoint(ip: &str) -> Endpoint {
    Endpoint { ip_address: ip.to_owned(), port: DEFAULT_DCV_PORT, web_url_path: "/".into(), protocol: "HTTP".into() }
}

/// Options and driver for the host this agent runs on, as `agent.conf` describes it. Fails for an
/// unreadable CA file, invalid tag files or a preferred interface without an address.
pub fn options_from_config(config: &AgentConfig) -> Result<(AgentOptions, Arc<dyn DcvDriver>)> {
    let agent = &config.agent;
    let max_virtual_sessions = agent.max_virtual_sessions.unwrap_or(0);
    let driver: Arc<dyn DcvDriver> = match agent.driver {
        DriverKind::Dcv => Arc::new(DcvCliDriver::new(DcvCliSettings {
            program: agent.dcv_path.clone(),
            init_folder: Some(agent.init_folder.clone()),
            autorun_folder: Some(agent.autorun_folder.clone()),
            timeout: Duration::from_secs(u64::from(agent.dcv_command_timeout_seconds)),
            max_virtual_sessions,
        })),
        DriverKind::Simulated => Arc::new(SimulatedDriver::new(max_virtual_sessions)),
    };
    // Read and checked here, so a bad file fails at start; then followed (`switchboard_common::tls_reload`).
    let ca = match &agent.ca_file {
        Some(path) => Some(
            switchboard_common::tls_reload::ReloadingCa::from_file(path)
                .map_err(|e| Error::Config(format!("agent.conf: `ca_file`: {e}")))?,
        ),
        None => None,
    };
    let client_identity = match (&agent.cert_file, &agent.key_file) {
        (Some(cert), Some(key)) => Some(
            switchboard_common::tls_reload::ReloadingIdentity::from_files(cert, key)
                .map_err(|e| Error::Config(format!("agent.conf: `cert_file` / `key_file`: {e}")))?,
        ),
        _ => None,
    };
    let tags = read_tags(&agent.tags_folder)?;
    let hostname = agent.hostname.clone().or_else(local_hostname).unwrap_or_else(|| "localhost".into());
    let ip = match &agent.preferred_interface {
        Some(interface) => interface_ip(interface).ok_or_else(|| {
            Error::Config(format!("agent.conf: `preferred_interface = '{interface}'` has no address on this host"))
        })?,
        None => config
            .first_broker()
            .and_then(|(host, port)| local_ip_towards(&host, port))
            .unwrap_or_else(|| "127.0.0.1".into()),
    };
    let endpoints = match agent.driver {
        DriverKind::Dcv => dcv_conf::endpoints(&agent.dcv_conf, &ip),
        DriverKind::Simulated => vec![default_endpoint(&ip)],
    };
    let mut broker_urls = config.broker_urls().into_iter();
    let broker_url = broker_urls.next().ok_or_else(|| Error::Config("agent.conf: no broker address".into()))?;
    let server_id = agent.server_id.clone().unwrap_or_else(|| derive_server_id(&hostname, &ip));
    let options = AgentOptions {
        broker_url,
        fallback_broker_urls: broker_urls.collect(),
        ca,
        client_identity,
        tls_domain: None,
        server_id,
        hostname,
        endpoints,
        ip,
        tags: SharedTags::new(tags),
        max_virtual_sessions,
        max_concurrent_sessions_per_user: agent.max_concurrent_sessions_per_user.unwrap_or(0),
        update_interval_seconds: agent.broker_update_interval,
        keepalive_interval: Duration::from_secs(u64::from(agent.keepalive_interval_seconds)),
        enrolment: agent.software_statement_path.as_deref().map(|statement| {
            let state_directory = std::env::var_os("STATE_DIRECTORY").map(std::path::PathBuf::from);
            crate::enrol::Enrolment::for_statement_file(
                statement,
                agent.credentials_path.as_deref(),
                state_directory.as_deref(),
            )
        }),
    };
    Ok((options, driver))
}

/// Options of simulated host number `index` for the all-in-one: host `sim-host-{index}` on 127.0.0.1, a
/// server id derived like a real host's (so it is stable across restarts), tags `simulated = "true"` and
/// `index = "{index}"`, no limits.
pub fn simulated_host_options(
    index: usize,
    broker_url: &str,
    ca: Option<switchboard_common::tls_reload::ReloadingCa>,
) -> AgentOptions {
    let hostname = format!("sim-host-{index}");
    let ip = "127.0.0.1".to_owned();
    AgentOptions {
        broker_url: broker_url.to_owned(),
        fallback_broker_urls: Vec::new(),
        ca,
        client_identity: None,
        tls_domain: None,
        server_id: derive_server_id(&hostname, &ip),
        hostname,
        endpoints: vec![default_endpoint(&ip)],
        ip,
        tags: SharedTags::new(vec![
            KeyValue { key: "index".into(), value: index.to_string() },
            KeyValue { key: "simulated".into(), value: "true".into() },
        ]),
        max_virtual_sessions: 0,
        max_concurrent_sessions_per_user: 0,
        update_interval_seconds: 30,
        keepalive_interval: DEFAULT_KEEPALIVE,
        enrolment: None,
    }
}

/// The local address the kernel would use to reach the broker (a UDP "connect" sends nothing).
fn local_ip_towards(broker_host: &str, broker_port: u16) -> Option<String> {
    let socket = UdpSocket::bind(("0.0.0.0", 0)).ok()?;
    socket.connect((broker_host, broker_port)).ok()?;
    Some(socket.local_addr().ok()?.ip().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dcv_driver_reads_the_endpoints_of_dcv_conf() {
        let dir = tempfile::tempdir().unwrap();
        let dcv_conf = dir.path().join("dcv.conf");
        std::fs::write(&dcv_conf, "[connectivity]\nweb-port=9443\nenable-quic-frontend=true\n").unwrap();
        let text = format!(
            "version = '0.1'\n[agent]\nbroker_host = '127.0.0.1'\npreferred_interface = 'lo'\ndcv_conf = '{}'\n\
             keepalive_interval_seconds = 45\n",
            dcv_conf.display()
        );
        let (options, _driver) = options_from_config(&AgentConfig::parse(&text).unwrap()).unwrap();
        assert_eq!(options.ip, "127.0.0.1");
        let ports: Vec<(u32, &str)> = options.endpoints.iter().map(|e| (e.port, e.protocol.as_str())).collect();
        assert_eq!(ports, [(9443, "HTTP"), (9443, "QUIC")]);
        assert_eq!(options.keepalive_interval, Duration::from_secs(45));
    }

    #[test]
    fn a_preferred_interface_without_address_is_an_error() {
        let text = "version = '0.1'\n[agent]\nbroker_host = '127.0.0.1'\npreferred_interface = 'nope0'\n";
        let error = options_from_config(&AgentConfig::parse(text).unwrap()).err().unwrap();
        assert!(error.to_string().contains("nope0"), "{error}");
    }

    #[test]
    fn a_simulated_config_gives_options() {
        let tags = tempfile::tempdir().unwrap();
        std::fs::write(tags.path().join("a.toml"), "gpu = \"none\"\n").unwrap();
        let text = format!(
            "version = '0.1'\n[agent]\nbroker_host = '127.0.0.1'\nbroker_port = 9000\ndriver = 'simulated'\n\
             hostname = 'h1'\nmax_virtual_sessions = 3\ntags_folder = '{}'\n",
            tags.path().display()
        );
        let (options, _driver) = options_from_config(&AgentConfig::parse(&text).unwrap()).unwrap();
        assert_eq!(options.broker_url, "https://127.0.0.1:9000");
        assert_eq!(options.hostname, "h1");
        assert_eq!(options.ip, "127.0.0.1");
        assert_eq!(options.server_id, derive_server_id("h1", "127.0.0.1"));
        assert_eq!(options.max_virtual_sessions, 3);
        assert_eq!(options.tags.get(), [KeyValue { key: "gpu".into(), value: "none".into() }]);
        assert_eq!(options.endpoints, [default_endpoint("127.0.0.1")]);
    }

    #[test]
    fn a_client_certificate_is_read_and_checked_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let ca = switchboard_common::tls::DevCa::load_or_create(dir.path(), &[]).unwrap();
        let identity = ca.issue_client_identity("h1").unwrap();
        let (cert, key) = (dir.path().join("agent.pem"), dir.path().join("agent-key.pem"));
        std::fs::write(&cert, &identity.cert_pem).unwrap();
        std::fs::write(&key, &identity.key_pem).unwrap();
        let text = |key: &std::path::Path| {
            format!(
                "version = '0.1'\n[agent]\nbroker_host = '127.0.0.1'\ndriver = 'simulated'\ncert_file = '{}'\n\
                 key_file = '{}'\n",
                cert.display(),
                key.display()
            )
        };
        let (options, _driver) = options_from_config(&AgentConfig::parse(&text(&key)).unwrap()).unwrap();
        let presented = options.client_identity.expect("the client certificate is presented");
        assert_eq!(presented.current().pem.cert_pem, identity.cert_pem);

        // A key file holding no key fails at start.
        let error = options_from_config(&AgentConfig::parse(&text(&cert)).unwrap()).err().unwrap();
        assert!(error.to_string().contains("cert_file"), "{error}");
    }

    #[test]
    fn the_server_id_override_wins() {
        let text = "version = '0.1'\n[agent]\nbroker_host = '127.0.0.1'\ndriver = 'simulated'\nserver_id = 'x1'\n";
        let (options, _driver) = options_from_config(&AgentConfig::parse(text).unwrap()).unwrap();
        assert_eq!(options.server_id, "x1");
    }

    #[test]
    fn simulated_hosts_have_stable_distinct_ids() {
        let first = simulated_host_options(1, "http://127.0.0.1:1", None);
        assert_eq!(first.server_id, simulated_host_options(1, "http://other:2", None).server_id);
        assert_ne!(first.server_id, simulated_host_options(2, "http://127.0.0.1:1", None).server_id);
        assert_eq!(first.hostname, "sim-host-1");
        assert!(first.tags.get().iter().any(|t| t.key == "simulated" && t.value == "true"));
    }
}
