//! Loading a service binary's settings, the same way for every binary.
//!
//! Each binary has one settings struct (serde, with defaults) whose field names are the TOML file keys,
//! and one clap struct whose fields are all `Option`s with a `SWITCHBOARD_*` environment fallback. The
//! layers, lowest first: the struct's defaults → the optional TOML file given with `--config` → environment
//! (`SWITCHBOARD_*`) → command-line flags. clap merges the last two (a flag beats its variable); [`load`]
//! lays them over the file and the defaults. The naming rule is uniform: file key `redis_url`, flag
//! `--redis-url`, variable `SWITCHBOARD_REDIS_URL`.
//!
//! [`dump`] prints the effective settings (`--dump-config`) with secrets redacted: values of keys that name a
//! secret, and the password part of URLs such as `redis://:password@host`.
//!
//! Also here, because every binary needs them: [`LogArgs`] (log format and filter), [`advertised_url`] (the
//! address other replicas reach this one at, derived from `POD_IP` in Kubernetes) and [`server_identity`]
//! (TLS certificate files, or a development CA).

use std::{
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
    str::FromStr,
};

use serde::{Serialize, de::DeserializeOwned};

use crate::telemetry::LogFormat;
use crate::tls::{DevCa, Identity, TlsError};

/// Why settings could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The `--config` file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The `--config` file is not valid TOML.
    #[error("config file {path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: Box<toml::de::Error>,
    },
    /// The merged settings are invalid (unknown key, wrong type, inconsistent values).
    #[error("invalid settings: {0}")]
    Invalid(String),
    /// TLS material could not be loaded or generated.
    #[error(transparent)]
    Tls(#[from] TlsError),
}

/// Result alias for settings loading.
pub type ConfigResult<T> = Result<T, ConfigError>;

/// The flags that choose where settings come from, taken by every binary (flatten it with
/// `#[command(flatten)] #[serde(skip)]`: they are not settings themselves).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ConfigArgs {
    /// TOML file of settings (keys as in docs/configuration.md).
    #[arg(long = "config", env = "SWITCHBOARD_CONFIG")]
    pub config: Option<PathBuf>,
    /// Print the effective settings (secrets redacted) and exit.
    #[arg(long)]
    pub dump_config: bool,
}

/// Log flags every binary takes; file keys `log_format` and `log_level`.
#[derive(Debug, Clone, Default, clap::Args, Serialize)]
pub struct LogArgs {
    /// Log format: `pretty` (human-readable) or `json` (one object per line, for collectors).
    #[arg(long, env = "SWITCHBOARD_LOG_FORMAT")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_format: Option<LogFormat>,
    /// Log filter such as `info` or `info,switchboard_session_store=debug`; `RUST_LOG` wins when set.
    #[arg(long, env = "SWITCHBOARD_LOG_LEVEL")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_level: Option<String>,
}

impl FromStr for LogFormat {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.to_ascii_lowercase().as_str() {
            "pretty" | "text" => Ok(Self::Pretty),
            "json" => Ok(Self::Json),
            other => Err(format!("unknown log format `{other}` (expected `pretty` or `json`)")),
        }
    }
}

/// Storage flags of the services that keep state (auth, session-store); file keys `redis_url`,
/// `redis_key_prefix` and `data_dir`. See [`storage_choice`].
#[derive(Debug, Clone, Default, clap::Args, Serialize)]
pub struct StorageArgs {
    /// Shared Redis: `redis://[user:password@]host:port[/db]` (`rediss://` for TLS). Every replica of every
    /// service must use the same Redis and key prefix.
    #[arg(long, env = "SWITCHBOARD_REDIS_URL")]
    pub redis_url: Option<String>,
    /// Prefix of every Redis key, so several deployments can share one database.
    #[arg(long, env = "SWITCHBOARD_REDIS_KEY_PREFIX")]
    pub redis_key_prefix: Option<String>,
    /// Directory of the embedded store, instead of Redis: one replica only.
    #[arg(long, env = "SWITCHBOARD_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
}

/// Where a stateful service keeps its state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageChoice {
    /// A shared Redis (any number of replicas).
    Redis {
        /// Connection URL.
        url: String,
        /// Prefix of every key.
        key_prefix: String,
    },
    /// The embedded store in this directory (one process).
    Embedded(PathBuf),
}

/// Exactly one of `redis_url` and `data_dir` must be set.
pub fn storage_choice(
    redis_url: Option<&str>,
    redis_key_prefix: &str,
    data_dir: Option<&Path>,
) -> ConfigResult<StorageChoice> {
    match (redis_url.map(str::trim).filter(|url| !url.is_empty()), data_dir) {
        (Some(url), None) => Ok(StorageChoice::Redis { url: url.to_owned(), key_prefix: redis_key_prefix.to_owned() }),
        (None, Some(dir)) => Ok(StorageChoice::Embedded(dir.to_owned())),
        (Some(_), Some(_)) => Err(ConfigError::Invalid("set either redis_url or data_dir, not both".into())),
        (None, None) => Err(ConfigError::Invalid(
            "no storage: set redis_url (shared, any number of replicas) or data_dir (embedded, one replica)".into(),
        )),
    }
}

/// TLS flags of the services with a TLS port (the gateway's HTTPS port, session-store's agent port); file
/// keys `tls_cert_file`, `tls_key_file`, `dev_tls_dir`, `tls_names`. See [`server_identity`].
#[derive(Debug, Clone, Default, clap::Args, Serialize)]
pub struct TlsArgs {
    /// PEM certificate chain (leaf first) of the TLS port.
    #[arg(long, env = "SWITCHBOARD_TLS_CERT_FILE")]
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key of the TLS port.
    #[arg(long, env = "SWITCHBOARD_TLS_KEY_FILE")]
    pub tls_key_file: Option<PathBuf>,
    /// Development only: load or create a development CA and server certificate in this directory.
    #[arg(long, env = "SWITCHBOARD_DEV_TLS_DIR")]
    pub dev_tls_dir: Option<PathBuf>,
    /// Extra DNS names or IPs for a generated development certificate (comma-separated).
    #[arg(long, env = "SWITCHBOARD_TLS_NAMES", value_delimiter = ',')]
    pub tls_names: Option<Vec<String>>,
}

/// Internal TLS flags of the services that dial or serve internal gRPC ports; file keys
/// `internal_tls_ca_file`, `internal_tls_cert_file`, `internal_tls_key_file`, `internal_tls_client_auth`.
/// See [`internal_tls`] and [`crate::internal_tls`].
#[derive(Debug, Clone, Default, clap::Args, Serialize)]
pub struct InternalTlsArgs {
    /// PEM CA of the internal gRPC ports: trusted when dialing `https://` upstreams; with client auth, the CA
    /// client certificates must chain to.
    #[arg(long, env = "SWITCHBOARD_INTERNAL_TLS_CA_FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub internal_tls_ca_file: Option<PathBuf>,
    /// PEM certificate of this process: served on its internal port, presented as client certificate.
    #[arg(long, env = "SWITCHBOARD_INTERNAL_TLS_CERT_FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub internal_tls_cert_file: Option<PathBuf>,
    /// PEM private key of that certificate.
    #[arg(long, env = "SWITCHBOARD_INTERNAL_TLS_KEY_FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub internal_tls_key_file: Option<PathBuf>,
    /// Require client certificates signed by the internal CA on this process's internal port (mTLS).
    #[arg(long, env = "SWITCHBOARD_INTERNAL_TLS_CLIENT_AUTH")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub internal_tls_client_auth: Option<bool>,
}

/// Reads the internal TLS settings ([`internal_tls`]) and installs them for this process's gRPC servers and
/// channels; nothing when they are unset.
pub fn configure_internal_tls(
    ca_file: Option<&Path>,
    cert_file: Option<&Path>,
    key_file: Option<&Path>,
    client_auth: bool,
) -> ConfigResult<()> {
    if let Some(tls) = internal_tls(ca_file, cert_file, key_file, client_auth)? {
        crate::internal_tls::configure(tls);
    }
    Ok(())
}

/// The internal TLS the `internal_tls_*` settings describe: `None` when no CA is set (plaintext). The
/// certificate and key go together; client auth needs them (a server cannot require certificates
/// without serving TLS).
pub fn internal_tls(
    ca_file: Option<&Path>,
    cert_file: Option<&Path>,
    key_file: Option<&Path>,
    client_auth: bool,
) -> ConfigResult<Option<crate::internal_tls::InternalTls>> {
    let read = |path: &Path| {
        std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })
    };
    let identity = match (cert_file, key_file) {
        (Some(cert), Some(key)) => {
            let identity = Identity { cert_pem: read(cert)?, key_pem: read(key)? };
            crate::tls::https_server_config(&identity)?;
            Some(identity)
        }
        (None, None) => None,
        _ => {
            return Err(ConfigError::Invalid(
                "internal_tls_cert_file and internal_tls_key_file must be set together".into(),
            ));
        }
    };
    let Some(ca_file) = ca_file else {
        if identity.is_some() || client_auth {
            return Err(ConfigError::Invalid("internal TLS needs internal_tls_ca_file".into()));
        }
        return Ok(None);
    };
    let ca_pem = read(ca_file)?;
    crate::tls::parse_certs(&ca_pem)?;
    if client_auth && identity.is_none() {
        return Err(ConfigError::Invalid(
            "internal_tls_client_auth needs internal_tls_cert_file and internal_tls_key_file".into(),
        ));
    }
    Ok(Some(crate::internal_tls::InternalTls { ca_pem, identity, require_client_cert: client_auth }))
}

/// The PEM CA certificates in `file` (a `*_client_ca_file` setting: the agent port's or the session
/// resolver's client CA), checked to hold at least one certificate; `None` when unset.
pub fn client_ca(file: Option<&Path>) -> ConfigResult<Option<String>> {
    let Some(path) = file else { return Ok(None) };
    let pem = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
    crate::tls::parse_certs(&pem)?;
    Ok(Some(pem))
}

/// The effective settings: `S::default()`, overlaid with the TOML file at `file` (when given), overlaid
/// with `overrides` (the clap struct: flags and `SWITCHBOARD_*` variables; its `None` fields are skipped).
/// Unknown file keys are errors when `S` denies unknown fields, which every binary's settings do.
pub fn load<S>(file: Option<&Path>, overrides: &impl Serialize) -> ConfigResult<S>
where
    S: Default + Serialize + DeserializeOwned,
{
    let invalid = |error: &dyn std::fmt::Display| ConfigError::Invalid(error.to_string());
    let mut merged = toml::Table::try_from(S::default()).map_err(|e| invalid(&e))?;
    if let Some(path) = file {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        let table: toml::Table = toml::from_str(&text)
            .map_err(|source| ConfigError::Parse { path: path.to_owned(), source: Box::new(source) })?;
        merge(&mut merged, table);
    }
    merge(&mut merged, toml::Table::try_from(overrides).map_err(|e| invalid(&e))?);
    S::deserialize(toml::Value::Table(merged)).map_err(|e| invalid(&e))
}

/// What every service binary does first: [`load`] the settings, and for `--dump-config` print them
/// ([`dump`]) and return `None` so the binary exits without starting.
pub fn load_or_dump<S>(args: &ConfigArgs, overrides: &impl Serialize) -> ConfigResult<Option<S>>
where
    S: Default + Serialize + DeserializeOwned,
{
    let settings: S = load(args.config.as_deref(), overrides)?;
    if args.dump_config {
        print!("{}", dump(&settings)?);
        return Ok(None);
    }
    Ok(Some(settings))
}

/// Lays `upper` over `lower`, table by table.
fn merge(lower: &mut toml::Table, upper: toml::Table) {
    for (key, value) in upper {
        match (lower.get_mut(&key), value) {
            (Some(toml::Value::Table(below)), toml::Value::Table(above)) => merge(below, above),
            (_, value) => {
                lower.insert(key, value);
            }
        }
    }
}

/// Key fragments whose values are secrets and never printed.
const SECRET_KEY_PARTS: [&str; 4] = ["password", "secret", "token", "private_key"];

/// The settings as TOML (what `--dump-config` prints), with secrets redacted. Keys naming files that hold
/// secrets (`*_file`) are paths and stay visible.
pub fn dump(settings: &impl Serialize) -> ConfigResult<String> {
    let mut table = toml::Table::try_from(settings).map_err(|e| ConfigError::Invalid(e.to_string()))?;
    redact(&mut table);
    toml::to_string_pretty(&table).map_err(|e| ConfigError::Invalid(e.to_string()))
}

fn redact(table: &mut toml::Table) {
    for (key, value) in table.iter_mut() {
        let secret_key = !key.ends_with("_file") && SECRET_KEY_PARTS.iter().any(|part| key.contains(part));
        match value {
            toml::Value::Table(inner) => redact(inner),
            toml::Value::String(text) if secret_key => *text = "[redacted]".to_owned(),
            toml::Value::String(text) => *text = redact_url_password(text),
            _ => {}
        }
    }
}

/// `scheme://user:password@host…` → `scheme://user:[redacted]@host…`; other text unchanged. Works on
/// comma-separated lists too.
pub fn redact_url_password(text: &str) -> String {
    text.split(',')
        .map(|part| {
            let Some(scheme_end) = part.find("://") else { return part.to_owned() };
            let rest = &part[scheme_end + 3..];
            let authority_end = rest.find('/').unwrap_or(rest.len());
            let Some(at) = rest[..authority_end].rfind('@') else { return part.to_owned() };
            let Some(colon) = rest[..at].find(':') else { return part.to_owned() };
            format!("{}{}:[redacted]{}", &part[..scheme_end + 3], &rest[..colon], &rest[at..])
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// The `http://host:port` other replicas reach this one at: `explicit` when set; else `POD_IP` (given as
/// `pod_ip`, in Kubernetes from the downward API) with the listener's port; else the listener's own address
/// when it is a concrete one; else `127.0.0.1` with its port (single-machine setups).
pub fn advertised_url(explicit: Option<&str>, listen: SocketAddr, pod_ip: Option<&str>) -> ConfigResult<String> {
    if let Some(url) = explicit.map(str::trim).filter(|url| !url.is_empty()) {
        return Ok(if url.contains("://") { url.to_owned() } else { format!("http://{url}") });
    }
    if let Some(pod_ip) = pod_ip.map(str::trim).filter(|ip| !ip.is_empty()) {
        let ip: IpAddr = pod_ip.parse().map_err(|_| ConfigError::Invalid(format!("POD_IP `{pod_ip}` is no IP")))?;
        return Ok(format!("http://{}", SocketAddr::new(ip, listen.port())));
    }
    if listen.ip().is_unspecified() {
        return Ok(format!("http://127.0.0.1:{}", listen.port()));
    }
    Ok(format!("http://{listen}"))
}

/// The server identity for a TLS port: the PEM files `cert_file` and `key_file` when both are set, else a
/// development CA loaded from or created in `dev_tls_dir` (certificate for localhost plus `extra_names`).
/// Replicas sharing a dev CA must share the directory, or be given its files.
pub fn server_identity(
    cert_file: Option<&Path>,
    key_file: Option<&Path>,
    dev_tls_dir: Option<&Path>,
    extra_names: &[String],
) -> ConfigResult<Identity> {
    let read = |path: &Path| {
        std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })
    };
    match (cert_file, key_file, dev_tls_dir) {
        (Some(cert), Some(key), _) => {
            let identity = Identity { cert_pem: read(cert)?, key_pem: read(key)? };
            crate::tls::https_server_config(&identity)?;
            Ok(identity)
        }
        (Some(_), None, _) | (None, Some(_), _) => {
            Err(ConfigError::Invalid("tls_cert_file and tls_key_file must be set together".into()))
        }
        (None, None, Some(dir)) => Ok(DevCa::load_or_create(dir, extra_names)?.server),
        (None, None, None) => Err(ConfigError::Invalid(
            "no TLS identity: set tls_cert_file and tls_key_file, or dev_tls_dir for a development CA".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields, default)]
    struct Settings {
        listen: String,
        replicas: u32,
        redis_url: Option<String>,
        admin_token: Option<String>,
        log_format: LogFormat,
    }

    impl Default for Settings {
        fn default() -> Self {
            Self {
                listen: "127.0.0.1:1".into(),
                replicas: 1,
                redis_url: None,
                admin_token: None,
                log_format: LogFormat::Pretty,
            }
        }
    }

    #[derive(Serialize, Default)]
    struct Overrides {
        #[serde(skip_serializing_if = "Option::is_none")]
        replicas: Option<u32>,
        #[serde(skip_serializing_if = "Option::is_none")]
        listen: Option<String>,
        #[serde(flatten)]
        log: LogArgs,
    }

    fn file(text: &str) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), text).unwrap();
        file
    }

    #[test]
    fn layers_apply_in_order() {
        let loaded: Settings = load(None, &Overrides::default()).unwrap();
        assert_eq!(loaded, Settings::default());

        let toml = file("replicas = 3\nlisten = '0.0.0.0:2'\nredis_url = 'redis://r:6379'\n");
        let loaded: Settings = load(Some(toml.path()), &Overrides::default()).unwrap();
        assert_eq!((loaded.replicas, loaded.listen.as_str()), (3, "0.0.0.0:2"));
        assert_eq!(loaded.redis_url.as_deref(), Some("redis://r:6379"));

        let overrides = Overrides {
            replicas: Some(5),
            log: LogArgs { log_format: Some(LogFormat::Json), log_level: None },
            ..Default::default()
        };
        let loaded: Settings = load(Some(toml.path()), &overrides).unwrap();
        assert_eq!((loaded.replicas, loaded.listen.as_str()), (5, "0.0.0.0:2"), "flags beat the file");
        assert_eq!(loaded.log_format, LogFormat::Json);
    }

    #[test]
    fn unknown_file_keys_and_bad_types_are_errors() {
        let typo = file("replicaz = 3\n");
        let error = load::<Settings>(Some(typo.path()), &Overrides::default()).unwrap_err();
        assert!(error.to_string().contains("replicaz"), "{error}");
        let wrong = file("replicas = 'three'\n");
        assert!(load::<Settings>(Some(wrong.path()), &Overrides::default()).is_err());
        let missing = load::<Settings>(Some(Path::new("/nonexistent/x.toml")), &Overrides::default()).unwrap_err();
        assert!(matches!(missing, ConfigError::Read { .. }), "{missing}");
    }

    #[test]
    fn dump_redacts_secrets() {
        let settings = Settings {
            redis_url: Some("redis://default:hunter2@redis:6379/0".into()),
            admin_token: Some("hunter3".into()),
            ..Default::default()
        };
        let text = dump(&settings).unwrap();
        assert!(!text.contains("hunter2") && !text.contains("hunter3"), "{text}");
        assert!(text.contains("redis://default:[redacted]@redis:6379/0"), "{text}");
        assert!(text.contains("listen = \"127.0.0.1:1\""), "{text}");
        assert_eq!(redact_url_password("http://a:1,http://u:p@b:2"), "http://a:1,http://u:[redacted]@b:2");
        assert_eq!(redact_url_password("redis://redis:6379"), "redis://redis:6379");
    }

    #[test]
    fn advertised_url_prefers_explicit_then_pod_ip() {
        let listen: SocketAddr = "0.0.0.0:7003".parse().unwrap();
        assert_eq!(advertised_url(Some("10.0.0.9:7003"), listen, Some("10.1.1.1")).unwrap(), "http://10.0.0.9:7003");
        assert_eq!(advertised_url(None, listen, Some("10.1.1.1")).unwrap(), "http://10.1.1.1:7003");
        assert_eq!(advertised_url(None, listen, Some("fd00::1")).unwrap(), "http://[fd00::1]:7003");
        assert_eq!(advertised_url(None, listen, None).unwrap(), "http://127.0.0.1:7003");
        let concrete: SocketAddr = "127.0.0.2:9".parse().unwrap();
        assert_eq!(advertised_url(None, concrete, None).unwrap(), "http://127.0.0.2:9");
        assert!(advertised_url(None, listen, Some("not-an-ip")).is_err());
    }

    #[test]
    fn identity_from_files_or_dev_ca() {
        let dir = tempfile::tempdir().unwrap();
        let generated = server_identity(None, None, Some(dir.path()), &[]).unwrap();
        let cert = dir.path().join("server.pem");
        let key = dir.path().join("server-key.pem");
        let loaded = server_identity(Some(&cert), Some(&key), None, &[]).unwrap();
        assert_eq!(generated.cert_pem, loaded.cert_pem);
        assert!(server_identity(Some(&cert), None, None, &[]).is_err());
        assert!(server_identity(None, None, None, &[]).is_err());
        assert_eq!("JSON".parse::<LogFormat>().unwrap(), LogFormat::Json);
    }

    #[test]
    fn exactly_one_storage() {
        let redis = storage_choice(Some("redis://r:6379"), "sb:", None).unwrap();
        assert_eq!(redis, StorageChoice::Redis { url: "redis://r:6379".into(), key_prefix: "sb:".into() });
        let dir = Path::new("/var/lib/sb");
        assert_eq!(storage_choice(None, "sb:", Some(dir)).unwrap(), StorageChoice::Embedded(dir.to_owned()));
        assert!(storage_choice(Some("redis://r"), "sb:", Some(dir)).is_err());
        assert!(storage_choice(Some(" "), "sb:", None).is_err());
    }

    #[test]
    fn internal_tls_settings_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let ca = DevCa::load_or_create(dir.path(), &[]).unwrap();
        let (cert, key) = (dir.path().join("server.pem"), dir.path().join("server-key.pem"));
        assert!(internal_tls(None, None, None, false).unwrap().is_none(), "off by default");
        let client_only = internal_tls(Some(&ca.ca_path), None, None, false).unwrap().unwrap();
        assert!(client_only.identity.is_none() && client_only.server_config().is_none());
        let mutual = internal_tls(Some(&ca.ca_path), Some(&cert), Some(&key), true).unwrap().unwrap();
        assert!(mutual.require_client_cert && mutual.server_config().is_some());
        assert!(!format!("{mutual:?}").contains("PRIVATE KEY"));
        for (ca_file, cert_file, key_file, client_auth) in [
            (Some(ca.ca_path.as_path()), Some(cert.as_path()), None, false),
            (None, Some(cert.as_path()), Some(key.as_path()), false),
            (None, None, None, true),
            (Some(ca.ca_path.as_path()), None, None, true),
            (Some(key.as_path()), None, None, false),
        ] {
            assert!(internal_tls(ca_file, cert_file, key_file, client_auth).is_err());
        }
    }
}
