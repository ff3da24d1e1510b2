//! `agent.conf`: the agent's configuration file.
//!
//! The format is the one of the original DCV Session Manager agent, so operators can keep their existing
//! files: TOML with a top-level `version = '0.1'` (required), an `[agent]` table and a `[log]` table.
//! Keys this build does not know are ignored with a warning, because existing files may carry more.
//!
//! Switchboard additions, all in `[agent]` (see `agent/agent.conf.example`):
//! - `driver = "dcv" | "simulated"` (default `"dcv"`): what drives the host's sessions. `simulated` keeps
//!   sessions in memory (demos, load tests, CI); an unknown value fails at start.
//! - `server_id`: overrides the server id derived from host name and IP.
//! - `hostname`: overrides the host name read from the kernel.
//! - `broker_addresses = ["host:port", ...]`: more replicas of the broker's agent endpoint. The agent
//!   connects to the first address (`broker_host:broker_port` when set, then this list) and, whenever its
//!   session fails, tries the next one round-robin with the usual backoff, so it survives the death of the
//!   replica it was connected to. Either `broker_host` or `broker_addresses` is required.
//! - `preferred_interface`: the network interface whose address is reported as the host's IP (the original's
//!   `preferred_network_interface` is the same key under its original spelling).
//! - `dcv_path`, `dcv_conf`, `dcv_command_timeout_seconds`: how the `dcv` driver runs the DCV CLI and where
//!   it reads the DCV server's endpoints.
//! - `query_aws_metadata` (default true): read EC2 instance metadata (IMDSv2) when the host is on EC2.
//! - `keepalive_interval_seconds` (default 30, at least 10): HTTP/2 keepalive pings to the broker.
//! - `cert_file`, `key_file` (together): PEM client certificate and private key presented to the broker,
//!   for a broker whose agent port requires client certificates (`agent_client_ca_file`, mutual TLS).
//! - `credentials_path`: where the credentials received at registration are kept (default: systemd's
//!   `$STATE_DIRECTORY`, else next to the software statement; see `enrol`).
//! - `[log] max_files`: rotated log files kept when `[log] directory` is set.
//! - `[telemetry] otlp_endpoint`, `otlp_sampling_ratio`: export the agent's spans (one per broker command,
//!   child of the broker's span that sent it) to an OTLP/gRPC receiver; off when the endpoint is unset.
//!
//! The original's `enable_query_logged_in_users` (default true) is honoured: `false` reports no users.
//! `init_folder`, `autorun_folder` and `tags_folder` default to the original's folders, so an unchanged
//! `agent.conf` that leaves them out finds its scripts and tag files where the original did.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The only `version` the original agent and this one know.
pub const CONFIG_VERSION: &str = "0.1";

/// The parsed `agent.conf`.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct AgentConfig {
    /// Format version; must be present (`'0.1'`).
    pub version: Option<String>,
    /// The `[agent]` table.
    pub agent: AgentSection,
    /// The `[log]` table.
    #[serde(default)]
    pub log: LogSection,
    /// The `[telemetry]` table (Switchboard).
    #[serde(default)]
    pub telemetry: TelemetrySection,
    #[serde(flatten, skip_serializing)]
    unknown: BTreeMap<String, toml::Value>,
}

/// The `[telemetry]` table: trace export.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct TelemetrySection {
    /// OTLP/gRPC receiver of the agent's spans, e.g. `http://otel-collector:4317`; no export when absent.
    pub otlp_endpoint: Option<String>,
    /// Share of traces the agent starts itself that are recorded (0.0 to 1.0, default 1.0); commands follow
    /// the broker's sampling decision.
    pub otlp_sampling_ratio: Option<f64>,
    #[serde(flatten, skip_serializing)]
    unknown: BTreeMap<String, toml::Value>,
}

impl TelemetrySection {
    /// The export this section asks for, as service `switchboard-agent`; `None` without an endpoint.
    pub fn export(&self) -> Option<switchboard_common::telemetry::TraceExport> {
        let endpoint = self.otlp_endpoint.as_ref().filter(|endpoint| !endpoint.trim().is_empty())?;
        Some(switchboard_common::telemetry::TraceExport {
            endpoint: endpoint.trim().to_owned(),
            sampling_ratio: self.otlp_sampling_ratio.unwrap_or(1.0),
            service_name: "switchboard-agent".to_owned(),
        })
    }
}

/// What drives the host's DCV sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DriverKind {
    /// The host's real DCV server, driven through the `dcv` command line.
    #[default]
    Dcv,
    /// In-memory sessions: a product feature for demos, load tests and CI.
    Simulated,
}

/// The `[agent]` table.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct AgentSection {
    /// Host name or IP of the broker's agent endpoint; required unless `broker_addresses` is set.
    #[serde(default)]
    pub broker_host: String,
    /// Port of the broker's agent endpoint.
    #[serde(default = "default_broker_port")]
    pub broker_port: u16,
    /// PEM CA certificate to trust for the broker; the system bundle when absent.
    pub ca_file: Option<PathBuf>,
    /// Switchboard: PEM client certificate (chain, leaf first) presented to the broker; with `key_file`.
    pub cert_file: Option<PathBuf>,
    /// Switchboard: PEM private key of `cert_file`; keep it readable by the agent only.
    pub key_file: Option<PathBuf>,
    /// Accepted for compatibility; certificate verification is always strict.
    #[serde(default = "default_true")]
    pub tls_strict: bool,
    /// Folder that `InitFile` paths of create requests are relative to; the original's
    /// [`DEFAULT_INIT_FOLDER`] when absent.
    #[serde(default = "default_init_folder")]
    pub init_folder: PathBuf,
    /// Folder that `AutorunFile` paths of create requests are relative to; the original's
    /// [`DEFAULT_AUTORUN_FOLDER`] when absent.
    #[serde(default = "default_autorun_folder")]
    pub autorun_folder: PathBuf,
    /// Folder of `*.toml` tag files; the original's [`DEFAULT_TAGS_FOLDER`] when absent.
    #[serde(default = "default_tags_folder")]
    pub tags_folder: PathBuf,
    /// Maximum virtual sessions on this host; absent or 0 means unlimited.
    pub max_virtual_sessions: Option<u32>,
    /// Maximum concurrent sessions per owner; absent or 0 means unlimited.
    pub max_concurrent_sessions_per_user: Option<u32>,
    /// Seconds between updates until the broker's welcome says otherwise.
    #[serde(default = "default_update_interval")]
    pub broker_update_interval: u32,
    /// File holding the software statement the agent registers with (see `enrol`); its credentials are
    /// kept next to it. Without it the agent connects without credentials.
    pub software_statement_path: Option<PathBuf>,
    /// Switchboard: where the agent keeps the credentials it registered (default: systemd's
    /// `$STATE_DIRECTORY` when set, else next to the statement file; see `enrol`).
    pub credentials_path: Option<PathBuf>,
    /// Whether logged-in users are reported (the original's Windows switch; honoured on every OS).
    #[serde(default = "default_true")]
    pub enable_query_logged_in_users: bool,
    /// Switchboard: which driver runs the sessions.
    #[serde(default)]
    pub driver: DriverKind,
    /// Switchboard: overrides the derived server id.
    pub server_id: Option<String>,
    /// Switchboard: overrides the kernel's host name.
    pub hostname: Option<String>,
    /// Switchboard: more `host:port` addresses of broker replicas, tried in turn after `broker_host`.
    #[serde(default)]
    pub broker_addresses: Vec<String>,
    /// Network interface (for example `eth0`) whose address is the host's reported IP; when absent, the
    /// address the kernel routes towards the broker. The original's spelling,
    /// `preferred_network_interface`, is read as well.
    #[serde(alias = "preferred_network_interface")]
    pub preferred_interface: Option<String>,
    /// Switchboard: the DCV command line the `dcv` driver runs (a path, or a name looked up in `PATH`).
    #[serde(default = "default_dcv_path")]
    pub dcv_path: PathBuf,
    /// Switchboard: the DCV server's configuration, read for its endpoints (ports, QUIC, web URL path).
    #[serde(default = "default_dcv_conf")]
    pub dcv_conf: PathBuf,
    /// Switchboard: longest one `dcv` command may run before it is killed and counted as a failure.
    #[serde(default = "default_dcv_timeout")]
    pub dcv_command_timeout_seconds: u32,
    /// Switchboard: read EC2 instance metadata (IMDSv2, short timeout) when the host is an EC2 instance.
    #[serde(default = "default_true")]
    pub query_aws_metadata: bool,
    /// Switchboard: seconds between HTTP/2 keepalive pings to the broker (at least 10).
    #[serde(default = "default_keepalive")]
    pub keepalive_interval_seconds: u32,
    #[serde(flatten, skip_serializing)]
    unknown: BTreeMap<String, toml::Value>,
}

/// The `[log]` table.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct LogSection {
    /// Log filter, for example `info` or `debug`; `RUST_LOG` wins when set.
    pub level: Option<String>,
    /// Folder of the agent's log files; when absent, logs go to standard output (journald under systemd).
    pub directory: Option<PathBuf>,
    /// How often the log file in `directory` is rotated: `daily` (default), `hourly`, `minutely` or `never`.
    pub rotation: Option<String>,
    /// Switchboard: rotated files kept in `directory` (default 7); older ones are deleted.
    pub max_files: Option<usize>,
    /// Switchboard: `text` (default) or `json` (one object per line, as the services' `log_format = json`).
    pub format: Option<String>,
    #[serde(flatten, skip_serializing)]
    unknown: BTreeMap<String, toml::Value>,
}

/// The original agent's init folder on Linux (Session Manager Administrator Guide, "Agent configuration
/// file"), used when `init_folder` is absent.
pub const DEFAULT_INIT_FOLDER: &str = "/var/lib/dcv-session-manager-agent/init";
/// The original agent's autorun folder on Linux, used when `autorun_folder` is absent.
pub const DEFAULT_AUTORUN_FOLDER: &str = "/var/lib/dcv-session-manager-agent/autorun/";
/// The original agent's tags folder on Linux, used when `tags_folder` is absent.
pub const DEFAULT_TAGS_FOLDER: &str = "/etc/dcv-session-manager-agent/tags/";

fn default_init_folder() -> PathBuf {
    PathBuf::from(DEFAULT_INIT_FOLDER)
}

fn default_autorun_folder() -> PathBuf {
    PathBuf::from(DEFAULT_AUTORUN_FOLDER)
}

fn default_tags_folder() -> PathBuf {
    PathBuf::from(DEFAULT_TAGS_FOLDER)
}

fn default_broker_port() -> u16 {
    8445
}

fn default_true() -> bool {
    true
}

fn default_update_interval() -> u32 {
    30
}

fn default_dcv_path() -> PathBuf {
    PathBuf::from("dcv")
}

fn default_dcv_conf() -> PathBuf {
    PathBuf::from("/etc/dcv/dcv.conf")
}

fn default_dcv_timeout() -> u32 {
    30
}

fn default_keepalive() -> u32 {
    30
}

/// How often the log file is rotated (`[log] rotation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogRotation {
    /// A new file every day (the default).
    Daily,
    /// A new file every hour.
    Hourly,
    /// A new file every minute (tests and noisy debugging).
    Minutely,
    /// One file, never rotated (rotate it with logrotate's `copytruncate`).
    Never,
}

impl LogSection {
    /// The parsed `rotation`; `daily` when absent.
    /// The log format (`log.format`): `text` unless `json`.
    pub fn format(&self) -> Result<switchboard_common::telemetry::LogFormat> {
        match self.format.as_deref().map(str::to_ascii_lowercase).as_deref() {
            None | Some("text") | Some("pretty") => Ok(switchboard_common::telemetry::LogFormat::Pretty),
            Some("json") => Ok(switchboard_common::telemetry::LogFormat::Json),
            Some(other) => Err(Error::Config(format!("agent.conf: `log.format = '{other}'` is not one of text, json"))),
        }
    }

    pub fn rotation(&self) -> Result<LogRotation> {
        match self.rotation.as_deref().map(str::to_ascii_lowercase).as_deref() {
            None | Some("daily") => Ok(LogRotation::Daily),
            Some("hourly") => Ok(LogRotation::Hourly),
            Some("minutely") => Ok(LogRotation::Minutely),
            Some("never") => Ok(LogRotation::Never),
            Some(other) => Err(Error::Config(format!(
                "agent.conf: `log.rotation = '{other}'` is not one of daily, hourly, minutely, never"
            ))),
        }
    }
}

impl AgentConfig {
    /// Reads and validates the file at `path`.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::parse(&text)
    }

    /// Parses and validates `agent.conf` text. Nothing is logged here (logging is configured from the
    /// result); call [`AgentConfig::log_warnings`] once it is.
    pub fn parse(text: &str) -> Result<Self> {
        let config: Self = toml::from_str(text).map_err(|e| Error::Config(format!("agent.conf: {e}")))?;
        if config.version.is_none() {
            return Err(Error::Config(format!("agent.conf: missing top-level `version = '{CONFIG_VERSION}'`")));
        }
        if config.agent.broker_host.trim().is_empty() && config.agent.broker_addresses.is_empty() {
            return Err(Error::Config("agent.conf: set `agent.broker_host` (or `agent.broker_addresses`)".into()));
        }
        for address in &config.agent.broker_addresses {
            if split_host_port(address).is_none() {
                return Err(Error::Config(format!(
                    "agent.conf: `agent.broker_addresses` entry `{address}` is not `host:port`"
                )));
            }
        }
        if config.agent.broker_update_interval == 0 {
            return Err(Error::Config("agent.conf: `agent.broker_update_interval` must be at least 1".into()));
        }
        if config.agent.dcv_command_timeout_seconds == 0 {
            return Err(Error::Config("agent.conf: `agent.dcv_command_timeout_seconds` must be at least 1".into()));
        }
        if config.agent.keepalive_interval_seconds < 10 {
            return Err(Error::Config(
                "agent.conf: `agent.keepalive_interval_seconds` must be at least 10 (servers refuse ping floods)"
                    .into(),
            ));
        }
        if config.agent.cert_file.is_some() != config.agent.key_file.is_some() {
            return Err(Error::Config("agent.conf: `agent.cert_file` and `agent.key_file` go together".into()));
        }
        config.log.rotation()?;
        config.log.format()?;
        if let Some(ratio) = config.telemetry.otlp_sampling_ratio
            && !(0.0..=1.0).contains(&ratio)
        {
            return Err(Error::Config(format!(
                "agent.conf: `telemetry.otlp_sampling_ratio = {ratio}` is not between 0 and 1"
            )));
        }
        Ok(config)
    }

    /// Logs what this build accepts but ignores: unknown keys, `tls_strict = false`, an unknown version.
    pub fn log_warnings(&self) {
        if let Some(version) = self.version.as_deref().filter(|v| *v != CONFIG_VERSION) {
            tracing::warn!(version, "unknown agent.conf version; reading it as 0.1");
        }
        if !self.agent.tls_strict {
            tracing::warn!("`agent.tls_strict = false` is ignored; the broker certificate is always verified");
        }
        for key in self.ignored_keys() {
            tracing::warn!(key, "ignoring unknown agent.conf key");
        }
    }

    /// Keys present in the file that this build ignores, as dotted paths.
    pub fn ignored_keys(&self) -> Vec<String> {
        let top = self.unknown.keys().cloned();
        let agent = self.agent.unknown.keys().map(|k| format!("agent.{k}"));
        let log = self.log.unknown.keys().map(|k| format!("log.{k}"));
        let telemetry = self.telemetry.unknown.keys().map(|k| format!("telemetry.{k}"));
        top.chain(agent).chain(log).chain(telemetry).collect()
    }

    /// The broker's agent endpoint URL (always TLS): the first of [`AgentConfig::broker_urls`].
    pub fn broker_url(&self) -> String {
        self.broker_urls().swap_remove(0)
    }

    /// Every configured broker replica as an `https://host:port` URL, in the order they are tried:
    /// `broker_host:broker_port` when set, then `broker_addresses`, without duplicates. Never empty for a
    /// parsed config.
    pub fn broker_urls(&self) -> Vec<String> {
        let agent = &self.agent;
        let mut urls: Vec<String> = Vec::new();
        let first = (!agent.broker_host.trim().is_empty())
            .then(|| format!("https://{}:{}", agent.broker_host.trim(), agent.broker_port));
        for url in first.into_iter().chain(agent.broker_addresses.iter().map(|a| format!("https://{}", a.trim()))) {
            if !urls.contains(&url) {
                urls.push(url);
            }
        }
        urls
    }

    /// Host and port of the first broker replica (to find the local address that reaches it).
    pub fn first_broker(&self) -> Option<(String, u16)> {
        let agent = &self.agent;
        if !agent.broker_host.trim().is_empty() {
            return Some((agent.broker_host.trim().to_owned(), agent.broker_port));
        }
        agent.broker_addresses.first().and_then(|address| split_host_port(address))
    }
}

/// `host:port` or `[v6]:port` → host (without brackets) and port.
fn split_host_port(address: &str) -> Option<(String, u16)> {
    let (host, port) = address.trim().rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return None;
    }
    Some((host.to_owned(), port.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORIGINAL: &str = r#"
version = '0.1'

[agent]
broker_host = 'broker.example.com'
broker_port = 8445
ca_file = '/etc/dcv-session-manager-agent/broker_cert.pem'
tls_strict = true
init_folder = '/etc/dcv-session-manager-agent/init'
autorun_folder = '/etc/dcv-session-manager-agent/autorun'
tags_folder = '/etc/dcv-session-manager-agent/tags/'
max_virtual_sessions = 10
max_concurrent_sessions_per_user = 2
broker_update_interval = 15
software_statement_path = '/etc/dcv-session-manager-agent/software_statement.txt'
enable_query_logged_in_users = false

[log]
level = 'info'
directory = '/var/log/dcv-session-manager-agent/'
rotation = 'daily'
"#;

    #[test]
    fn parses_an_original_agent_conf() {
        let config = AgentConfig::parse(ORIGINAL).unwrap();
        assert_eq!(config.agent.broker_host, "broker.example.com");
        assert_eq!(config.agent.broker_port, 8445);
        assert_eq!(config.agent.ca_file.as_deref(), Some(Path::new("/etc/dcv-session-manager-agent/broker_cert.pem")));
        assert_eq!(config.agent.max_virtual_sessions, Some(10));
        assert_eq!(config.agent.max_concurrent_sessions_per_user, Some(2));
        assert_eq!(config.agent.broker_update_interval, 15);
        assert_eq!(config.agent.driver, DriverKind::Dcv);
        assert_eq!(config.log.level.as_deref(), Some("info"));
        assert_eq!(config.broker_url(), "https://broker.example.com:8445");
        assert_eq!(config.agent.init_folder, Path::new("/etc/dcv-session-manager-agent/init"));
        assert_eq!(config.agent.autorun_folder, Path::new("/etc/dcv-session-manager-agent/autorun"));
        assert_eq!(config.agent.tags_folder, Path::new("/etc/dcv-session-manager-agent/tags/"));
        assert_eq!(
            config.agent.software_statement_path.as_deref(),
            Some(Path::new("/etc/dcv-session-manager-agent/software_statement.txt"))
        );
        assert!(config.agent.tls_strict);
        assert!(!config.agent.enable_query_logged_in_users);
        assert_eq!(config.log.directory.as_deref(), Some(Path::new("/var/log/dcv-session-manager-agent/")));
        assert_eq!(config.log.rotation().unwrap(), LogRotation::Daily);
        assert!(config.ignored_keys().is_empty());
    }

    #[test]
    fn parses_the_deployed_example() {
        let config = AgentConfig::parse(include_str!("../../deploy/agent/agent.conf")).unwrap();
        assert_eq!(config.agent.driver, DriverKind::Dcv);
        assert!(config.ignored_keys().is_empty(), "{:?}", config.ignored_keys());
    }

    #[test]
    fn log_rotation_values() {
        let parse = |r: &str| {
            AgentConfig::parse(&format!("version = '0.1'\n[agent]\nbroker_host = 'b'\n[log]\nrotation = '{r}'\n"))
        };
        assert_eq!(parse("hourly").unwrap().log.rotation().unwrap(), LogRotation::Hourly);
        assert_eq!(parse("NEVER").unwrap().log.rotation().unwrap(), LogRotation::Never);
        assert!(parse("weekly").unwrap_err().to_string().contains("weekly"));
    }

    #[test]
    fn parses_the_shipped_example() {
        let config = AgentConfig::parse(include_str!("../agent.conf.example")).unwrap();
        assert_eq!(config.agent.driver, DriverKind::Simulated);
        assert!(config.ignored_keys().is_empty());
        let with_credentials = include_str!("../agent.conf.example").replace(
            "#credentials_path = '/var/lib/switchboard-agent/credentials.toml'",
            "credentials_path = '/c.toml'",
        );
        let config = AgentConfig::parse(&with_credentials).unwrap();
        assert_eq!(config.agent.credentials_path.as_deref(), Some(Path::new("/c.toml")));
    }

    #[test]
    fn the_dumped_configuration_has_every_default_and_reads_back() {
        let config =
            AgentConfig::parse("version = '0.1'\n[agent]\nbroker_host = '10.0.0.1'\nunknown_key = 1\n").unwrap();
        let dumped = switchboard_common::config::dump(&config).unwrap();
        assert!(dumped.contains("broker_port = 8445"), "defaults are filled in: {dumped}");
        assert!(dumped.contains("tags_folder = \"/etc/dcv-session-manager-agent/tags"), "{dumped}");
        assert!(!dumped.contains("unknown_key"), "keys the agent ignores are not printed: {dumped}");
        let again = AgentConfig::parse(&dumped).unwrap();
        assert_eq!(again.agent.broker_host, "10.0.0.1");
        assert_eq!(again.agent.init_folder, config.agent.init_folder);
    }

    #[test]
    fn applies_defaults() {
        let config = AgentConfig::parse("version = '0.1'\n[agent]\nbroker_host = '10.0.0.1'\n").unwrap();
        assert_eq!(config.agent.broker_port, 8445);
        assert!(config.agent.tls_strict);
        assert_eq!(config.agent.broker_update_interval, 30);
        assert_eq!(config.agent.max_virtual_sessions, None);
        assert_eq!(config.agent.driver, DriverKind::Dcv);
        assert_eq!(config.agent.dcv_path, PathBuf::from("dcv"));
        assert_eq!(config.agent.dcv_conf, PathBuf::from("/etc/dcv/dcv.conf"));
        assert_eq!(config.agent.dcv_command_timeout_seconds, 30);
        assert!(config.agent.query_aws_metadata && config.agent.enable_query_logged_in_users);
        assert_eq!(config.agent.preferred_interface, None);
        assert_eq!(config.log.level, None);
        // The original's folders, as its Administrator Guide and its shipped agent.conf give them.
        assert_eq!(config.agent.init_folder, Path::new("/var/lib/dcv-session-manager-agent/init"));
        assert_eq!(config.agent.autorun_folder, Path::new("/var/lib/dcv-session-manager-agent/autorun/"));
        assert_eq!(config.agent.tags_folder, Path::new("/etc/dcv-session-manager-agent/tags/"));
    }

    #[test]
    fn the_original_spelling_of_the_preferred_interface_is_read() {
        let parse =
            |key: &str| AgentConfig::parse(&format!("version = '0.1'\n[agent]\nbroker_host = 'b'\n{key} = 'eth1'\n"));
        let original = parse("preferred_network_interface").unwrap();
        assert_eq!(original.agent.preferred_interface.as_deref(), Some("eth1"));
        assert!(original.ignored_keys().is_empty(), "{:?}", original.ignored_keys());
        assert_eq!(parse("preferred_interface").unwrap().agent.preferred_interface.as_deref(), Some("eth1"));
    }

    #[test]
    fn a_missing_version_is_a_clear_error() {
        let error = AgentConfig::parse("[agent]\nbroker_host = 'b'\n").unwrap_err();
        assert!(error.to_string().contains("missing top-level `version"), "{error}");
    }

    #[test]
    fn a_missing_broker_host_is_an_error() {
        let error = AgentConfig::parse("version = '0.1'\n[agent]\nbroker_port = 1\n").unwrap_err();
        assert!(error.to_string().contains("broker_host"), "{error}");
    }

    #[test]
    fn the_log_format_is_text_or_json() {
        let parse = |format: &str| {
            AgentConfig::parse(&format!("version = '0.1'\n[agent]\nbroker_host = 'b'\n[log]\nformat = '{format}'\n"))
        };
        assert_eq!(parse("json").unwrap().log.format().unwrap(), switchboard_common::telemetry::LogFormat::Json);
        assert_eq!(parse("text").unwrap().log.format().unwrap(), switchboard_common::telemetry::LogFormat::Pretty);
        let error = parse("xml").unwrap_err();
        assert!(error.to_string().contains("log.format = 'xml'"), "{error}");
    }

    #[test]
    fn an_unknown_driver_is_an_error() {
        let error = AgentConfig::parse("version = '0.1'\n[agent]\nbroker_host = 'b'\ndriver = 'xen'\n").unwrap_err();
        assert!(error.to_string().contains("xen"), "{error}");
    }

    #[test]
    fn unknown_keys_are_ignored_and_listed() {
        let text = "version = '0.1'\nfuture = 1\n[agent]\nbroker_host = 'b'\nenable_foo = true\n\
                    [log]\nlevel = 'debug'\nmax_size = 3\n[extra]\na = 1\n";
        let config = AgentConfig::parse(text).unwrap();
        let mut ignored = config.ignored_keys();
        ignored.sort();
        assert_eq!(ignored, ["agent.enable_foo", "extra", "future", "log.max_size"]);
    }

    #[test]
    fn broker_addresses_add_replicas_in_order() {
        let text = "version = '0.1'\n[agent]\nbroker_host = 'a'\nbroker_addresses = ['b:1', 'a:8445', '[fd00::2]:3']\n";
        let config = AgentConfig::parse(text).unwrap();
        assert_eq!(config.broker_urls(), ["https://a:8445", "https://b:1", "https://[fd00::2]:3"]);
        assert_eq!(config.first_broker(), Some(("a".to_owned(), 8445)));

        let only_list = AgentConfig::parse("version = '0.1'\n[agent]\nbroker_addresses = ['[fd00::2]:3']\n").unwrap();
        assert_eq!(only_list.broker_url(), "https://[fd00::2]:3");
        assert_eq!(only_list.first_broker(), Some(("fd00::2".to_owned(), 3)));

        let error = AgentConfig::parse("version = '0.1'\n[agent]\nbroker_addresses = ['nohost']\n").unwrap_err();
        assert!(error.to_string().contains("nohost"), "{error}");
        assert!(AgentConfig::parse("version = '0.1'\n[agent]\nbroker_addresses = []\n").is_err());
    }

    #[test]
    fn a_zero_update_interval_is_an_error() {
        let text = "version = '0.1'\n[agent]\nbroker_host = 'b'\nbroker_update_interval = 0\n";
        assert!(AgentConfig::parse(text).is_err());
    }

    #[test]
    fn a_client_certificate_needs_its_key() {
        let text = "version = '0.1'\n[agent]\nbroker_host = 'b'\ncert_file = '/etc/agent.pem'\n";
        let error = AgentConfig::parse(text).unwrap_err();
        assert!(error.to_string().contains("go together"), "{error}");
        let both = format!("{text}key_file = '/etc/agent-key.pem'\n");
        let config = AgentConfig::parse(&both).unwrap();
        assert_eq!(config.agent.key_file.as_deref(), Some(Path::new("/etc/agent-key.pem")));
        assert!(config.ignored_keys().is_empty());
    }
}
