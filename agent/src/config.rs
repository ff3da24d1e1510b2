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

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, Result};

/// The only `version` the original agent and this one know.
pub const CONFIG_VERSION: &str = "0.1";

/// The parsed `agent.conf`.
#[derive(Debug, Clone, Deserialize)]
pub struct AgentConfig {
    /// Format version; must be present (`'0.1'`).
    pub version: Option<String>,
    /// The `[agent]` table.
    pub agent: AgentSection,
    /// The `[log]` table.
    #[serde(default)]
    pub log: LogSection,
    #[serde(flatten)]
    unknown: BTreeMap<String, toml::Value>,
}

/// What drives the host's DCV sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DriverKind {
    /// The host's real DCV server (not available in this build yet).
    #[default]
    Dcv,
    /// In-memory sessions: a product feature for demos, load tests and CI.
    Simulated,
}

/// The `[agent]` table.
#[derive(Debug, Clone, Deserialize)]
pub struct AgentSection {
    /// Host name or IP of the broker's agent endpoint (required).
    pub broker_host: String,
    /// Port of the broker's agent endpoint.
    #[serde(default = "default_broker_port")]
    pub broker_port: u16,
    /// PEM CA certificate to trust for the broker; the system bundle when absent.
    pub ca_file: Option<PathBuf>,
    /// Accepted for compatibility; certificate verification is always strict.
    #[serde(default = "default_true")]
    pub tls_strict: bool,
    /// Folder that `InitFile` paths of create requests are relative to.
    pub init_folder: Option<PathBuf>,
    /// Folder that `AutorunFile` paths of create requests are relative to.
    pub autorun_folder: Option<PathBuf>,
    /// Folder of `*.toml` tag files.
    pub tags_folder: Option<PathBuf>,
    /// Maximum virtual sessions on this host; absent or 0 means unlimited.
    pub max_virtual_sessions: Option<u32>,
    /// Maximum concurrent sessions per owner; absent or 0 means unlimited.
    pub max_concurrent_sessions_per_user: Option<u32>,
    /// Seconds between updates until the broker's welcome says otherwise.
    #[serde(default = "default_update_interval")]
    pub broker_update_interval: u32,
    /// Accepted for compatibility; unused for now.
    pub software_statement_path: Option<PathBuf>,
    /// Switchboard: which driver runs the sessions.
    #[serde(default)]
    pub driver: DriverKind,
    /// Switchboard: overrides the derived server id.
    pub server_id: Option<String>,
    /// Switchboard: overrides the kernel's host name.
    pub hostname: Option<String>,
    #[serde(flatten)]
    unknown: BTreeMap<String, toml::Value>,
}

/// The `[log]` table.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct LogSection {
    /// Log filter, for example `info` or `debug`; `RUST_LOG` wins when set.
    pub level: Option<String>,
    /// Accepted for compatibility; logs go to standard output.
    pub directory: Option<PathBuf>,
    /// Accepted for compatibility; rotation is the log collector's job.
    pub rotation: Option<String>,
    #[serde(flatten)]
    unknown: BTreeMap<String, toml::Value>,
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
        if config.agent.broker_host.trim().is_empty() {
            return Err(Error::Config("agent.conf: `agent.broker_host` is empty".into()));
        }
        if config.agent.broker_update_interval == 0 {
            return Err(Error::Config("agent.conf: `agent.broker_update_interval` must be at least 1".into()));
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
        top.chain(agent).chain(log).collect()
    }

    /// The broker's agent endpoint URL (always TLS).
    pub fn broker_url(&self) -> String {
        format!("https://{}:{}", self.agent.broker_host, self.agent.broker_port)
    }
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
        assert!(config.ignored_keys().is_empty());
    }

    #[test]
    fn parses_the_shipped_example() {
        let config = AgentConfig::parse(include_str!("../agent.conf.example")).unwrap();
        assert_eq!(config.agent.driver, DriverKind::Simulated);
        assert!(config.ignored_keys().is_empty());
    }

    #[test]
    fn applies_defaults() {
        let config = AgentConfig::parse("version = '0.1'\n[agent]\nbroker_host = '10.0.0.1'\n").unwrap();
        assert_eq!(config.agent.broker_port, 8445);
        assert!(config.agent.tls_strict);
        assert_eq!(config.agent.broker_update_interval, 30);
        assert_eq!(config.agent.max_virtual_sessions, None);
        assert_eq!(config.agent.driver, DriverKind::Dcv);
        assert_eq!(config.log.level, None);
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
    fn an_unknown_driver_is_an_error() {
        let error = AgentConfig::parse("version = '0.1'\n[agent]\nbroker_host = 'b'\ndriver = 'xen'\n").unwrap_err();
        assert!(error.to_string().contains("xen"), "{error}");
    }

    #[test]
    fn unknown_keys_are_ignored_and_listed() {
        let text = "version = '0.1'\nfuture = 1\n[agent]\nbroker_host = 'b'\nenable_query_logged_in_users = true\n\
                    [log]\nlevel = 'debug'\nmax_files = 3\n[extra]\na = 1\n";
        let config = AgentConfig::parse(text).unwrap();
        let mut ignored = config.ignored_keys();
        ignored.sort();
        assert_eq!(ignored, ["agent.enable_query_logged_in_users", "extra", "future", "log.max_files"]);
    }

    #[test]
    fn a_zero_update_interval_is_an_error() {
        let text = "version = '0.1'\n[agent]\nbroker_host = 'b'\nbroker_update_interval = 0\n";
        assert!(AgentConfig::parse(text).is_err());
    }
}
