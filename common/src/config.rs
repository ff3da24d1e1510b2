//! Loading a binary's settings, the same way for every binary.
//!
//! **Each setting is declared once**: one field of one struct that derives `serde` (the field name is the
//! config file key) and `clap::Args` (its doc comment is the flag's help), with its default in the struct's
//! `Default`. Library configs (`PlacementConfig`, `GatewayConfig`, …) are such structs themselves; a binary's
//! settings flatten the library config next to its process settings (listen addresses, TLS, logs). The naming
//! rule is uniform and applied here, not per field: file key `redis_url`, flag `--redis-url`, variable
//! `SWITCHBOARD_REDIS_URL`.
//!
//! The layers, lowest first: the struct's defaults → the optional TOML file given with `--config` →
//! environment (`SWITCHBOARD_*`) → command-line flags. clap merges the last two (a flag beats its variable)
//! and [`load`] lays them over the file and the defaults: only a flag or variable actually given changes a
//! value. A file key that names no setting is an error.
//!
//! [`bootstrap`] is what every binary's `main` calls first: parse, load, `--dump-config` (print the effective
//! settings, secrets redacted, and exit), telemetry, the crypto provider and internal TLS. [`dump`] redacts
//! values of keys that name a secret, and the password part of URLs such as `redis://:password@host`.
//!
//! Also here, because every binary needs them: [`TelemetrySettings`], [`TlsSettings`], [`InternalTlsSettings`],
//! [`StorageSettings`], [`advertised_url`] (the address other replicas reach this one at, derived from
//! `POD_IP` in Kubernetes) and [`server_identity`] (TLS certificate files, or a development CA).

use std::{
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
    str::FromStr,
};

use clap::{Arg, ArgAction, ArgMatches};
use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::telemetry::LogFormat;
use crate::tls::{DevCa, TlsError};
use crate::tls_reload::{ReloadingCa, ReloadingIdentity};

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

/// Log, metrics and trace settings every binary takes.
#[derive(Debug, Clone, PartialEq, clap::Args, Serialize, Deserialize)]
#[serde(default)]
pub struct TelemetrySettings {
    /// Log format: `pretty` (human-readable) or `json` (one object per line, for collectors).
    #[arg(long)]
    pub log_format: LogFormat,
    /// Log filter such as `info` or `info,switchboard_session_store=debug`; `RUST_LOG` wins when set.
    #[arg(long)]
    pub log_level: String,
    /// Plaintext HTTP address of the Prometheus `/metrics` endpoint, e.g. `0.0.0.0:9464`; off when unset.
    #[arg(long)]
    pub metrics_listen: Option<SocketAddr>,
    /// OTLP/gRPC receiver of this process's traces, e.g. `http://otel-collector:4317` (an OpenTelemetry
    /// Collector); tracing is off when unset.
    #[arg(long)]
    pub otlp_endpoint: Option<String>,
    /// Share of new traces recorded and exported, 0.0 to 1.0; a request that arrives with a sampled
    /// `traceparent` is always followed (parent-based sampling).
    #[arg(long)]
    pub otlp_sampling_ratio: f64,
}

impl Default for TelemetrySettings {
    fn default() -> Self {
        Self {
            log_format: LogFormat::Pretty,
            log_level: "info".to_owned(),
            metrics_listen: None,
            otlp_endpoint: None,
            otlp_sampling_ratio: 1.0,
        }
    }
}

impl TelemetrySettings {
    /// Sets up logging, trace export when `otlp_endpoint` is set (as `service_name`, e.g.
    /// `switchboard-gateway`), and serves `/metrics` when `metrics_listen` is set (binding now, so a taken
    /// port fails the start). Call once, inside the tokio runtime; call [`crate::telemetry::shutdown`]
    /// before exiting.
    pub fn init(&self, service_name: &str) -> ConfigResult<()> {
        if !(0.0..=1.0).contains(&self.otlp_sampling_ratio) {
            return Err(ConfigError::Invalid(format!(
                "otlp_sampling_ratio {} is not between 0.0 and 1.0",
                self.otlp_sampling_ratio
            )));
        }
        let export = self.otlp_endpoint.as_ref().filter(|endpoint| !endpoint.is_empty()).map(|endpoint| {
            crate::telemetry::TraceExport {
                endpoint: endpoint.clone(),
                sampling_ratio: self.otlp_sampling_ratio,
                service_name: service_name.to_owned(),
            }
        });
        crate::telemetry::init(&self.log_level, self.log_format, export.as_ref())
            .map_err(|error| ConfigError::Invalid(error.to_string()))?;
        if let Some(listen) = self.metrics_listen {
            let listener = std::net::TcpListener::bind(listen)
                .map_err(|error| ConfigError::Invalid(format!("metrics_listen {listen}: {error}")))?;
            crate::metrics::serve(listener).map_err(|error| ConfigError::Invalid(format!("metrics: {error}")))?;
        }
        Ok(())
    }
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

/// Storage settings of the services that keep state (auth, session-store). See [`storage_choice`].
#[derive(Debug, Clone, clap::Args, Serialize, Deserialize)]
#[serde(default)]
pub struct StorageSettings {
    /// Shared Redis: `redis://[user:password@]host:port[/db]` for one server,
    /// `redis+sentinel://host:26379,…/<primary name>[/db]` for the primary Sentinel names,
    /// `redis+cluster://host:port,…` for a Redis Cluster (`rediss…` for TLS; docs/redis.md). Every replica of
    /// every service must use the same Redis and key prefix.
    #[arg(long)]
    pub redis_url: Option<String>,
    /// Prefix of every Redis key, so several deployments can share one database.
    #[arg(long)]
    pub redis_key_prefix: String,
    /// Replicas that must acknowledge a must-not-lose write (clients, keys, enrolment, operators' flags)
    /// before it is done (Redis `WAIT`). Unset: 1 with Sentinel or Cluster, 0 with one server.
    #[arg(long)]
    pub redis_wait_replicas: Option<u32>,
    /// How long such a write waits for them before the call fails.
    #[arg(long)]
    pub redis_wait_timeout_ms: u64,
    /// Directory of the embedded store, instead of Redis: one replica only.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

/// Prefix of every Redis key when `redis_key_prefix` is not set (the store's default too).
pub const DEFAULT_REDIS_KEY_PREFIX: &str = "switchboard:";

impl Default for StorageSettings {
    fn default() -> Self {
        Self {
            redis_url: None,
            redis_key_prefix: DEFAULT_REDIS_KEY_PREFIX.to_owned(),
            redis_wait_replicas: None,
            redis_wait_timeout_ms: DEFAULT_REDIS_WAIT_TIMEOUT_MS,
            data_dir: None,
        }
    }
}

/// How long a must-not-lose Redis write waits for replicas when `redis_wait_timeout_ms` is not set.
pub const DEFAULT_REDIS_WAIT_TIMEOUT_MS: u64 = 1000;

impl StorageSettings {
    /// Where the state goes: exactly one of `redis_url` and `data_dir` must be set.
    pub fn choice(&self) -> ConfigResult<StorageChoice> {
        let choice = storage_choice(self.redis_url.as_deref(), &self.redis_key_prefix, self.data_dir.as_deref())?;
        Ok(match choice {
            StorageChoice::Redis { url, key_prefix, .. } => StorageChoice::Redis {
                url,
                key_prefix,
                wait_replicas: self.redis_wait_replicas,
                wait_timeout_ms: self.redis_wait_timeout_ms,
            },
            embedded => embedded,
        })
    }
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
        /// Replicas a must-not-lose write waits for (`None`: by topology).
        wait_replicas: Option<u32>,
        /// How long it waits.
        wait_timeout_ms: u64,
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
        (Some(url), None) => Ok(StorageChoice::Redis {
            url: url.to_owned(),
            key_prefix: redis_key_prefix.to_owned(),
            wait_replicas: None,
            wait_timeout_ms: DEFAULT_REDIS_WAIT_TIMEOUT_MS,
        }),
        (None, Some(dir)) => Ok(StorageChoice::Embedded(dir.to_owned())),
        (Some(_), Some(_)) => Err(ConfigError::Invalid("set either redis_url or data_dir, not both".into())),
        (None, None) => Err(ConfigError::Invalid(
            "no storage: set redis_url (shared, any number of replicas) or data_dir (embedded, one replica)".into(),
        )),
    }
}

/// TLS settings of the services with a TLS port (the gateway's HTTPS port, session-store's agent port). See
/// [`server_identity`].
#[derive(Debug, Clone, Default, clap::Args, Serialize, Deserialize)]
#[serde(default)]
pub struct TlsSettings {
    /// PEM certificate chain (leaf first) of the TLS port.
    #[arg(long)]
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key of the TLS port.
    #[arg(long)]
    pub tls_key_file: Option<PathBuf>,
    /// Development only: load or create a development CA and server certificate in this directory.
    #[arg(long)]
    pub dev_tls_dir: Option<PathBuf>,
    /// Extra DNS names or IPs for a generated development certificate (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub tls_names: Vec<String>,
}

impl TlsSettings {
    /// The identity these settings name ([`server_identity`]), following its files.
    pub fn identity(&self) -> ConfigResult<ReloadingIdentity> {
        server_identity(
            self.tls_cert_file.as_deref(),
            self.tls_key_file.as_deref(),
            self.dev_tls_dir.as_deref(),
            &self.tls_names,
        )
    }
}

/// Internal TLS settings of the services that dial or serve internal gRPC ports. See [`internal_tls`] and
/// [`crate::internal_tls`].
#[derive(Debug, Clone, Default, clap::Args, Serialize, Deserialize)]
#[serde(default)]
pub struct InternalTlsSettings {
    /// PEM CA of the internal gRPC ports: trusted when dialing `https://` upstreams; with client auth, the CA
    /// client certificates must chain to.
    #[arg(long)]
    pub internal_tls_ca_file: Option<PathBuf>,
    /// PEM certificate of this process: served on its internal port, presented as client certificate.
    #[arg(long)]
    pub internal_tls_cert_file: Option<PathBuf>,
    /// PEM private key of that certificate.
    #[arg(long)]
    pub internal_tls_key_file: Option<PathBuf>,
    /// Require client certificates signed by the internal CA on this process's internal port (mTLS).
    #[arg(long)]
    pub internal_tls_client_auth: bool,
}

impl InternalTlsSettings {
    /// Checks these settings and installs them for this process's gRPC servers and channels
    /// ([`configure_internal_tls`]).
    pub fn configure(&self) -> ConfigResult<()> {
        configure_internal_tls(
            self.internal_tls_ca_file.as_deref(),
            self.internal_tls_cert_file.as_deref(),
            self.internal_tls_key_file.as_deref(),
            self.internal_tls_client_auth,
        )
    }
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
    let identity = match (cert_file, key_file) {
        (Some(cert), Some(key)) => Some(ReloadingIdentity::from_files(cert, key)?),
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
    let ca = ReloadingCa::from_file(ca_file)?;
    if client_auth && identity.is_none() {
        return Err(ConfigError::Invalid(
            "internal_tls_client_auth needs internal_tls_cert_file and internal_tls_key_file".into(),
        ));
    }
    Ok(Some(crate::internal_tls::InternalTls { ca, identity, require_client_cert: client_auth }))
}

/// The PEM CA certificates in `file` (a `*_client_ca_file` setting: the agent port's or the session
/// resolver's client CA), checked to hold at least one certificate and followed when it changes
/// ([`crate::tls_reload`]); `None` when unset.
pub fn client_ca(file: Option<&Path>) -> ConfigResult<Option<ReloadingCa>> {
    let Some(path) = file else { return Ok(None) };
    Ok(Some(ReloadingCa::from_file(path)?))
}

/// A binary's settings: one struct whose fields are the settings ([module docs](self)).
pub trait Settings: clap::Args + Serialize + DeserializeOwned + Default {
    /// The log settings, for telemetry.
    fn telemetry(&self) -> &TelemetrySettings;

    /// The internal TLS settings, for the binaries with internal gRPC ports.
    fn internal_tls(&self) -> Option<&InternalTlsSettings> {
        None
    }
}

/// The command line of `S`: its settings as flags (each with its `SWITCHBOARD_*` variable), plus `--config`
/// and `--dump-config` ([`ConfigArgs`]).
pub fn command<S: clap::Args>(command: clap::Command) -> clap::Command {
    S::augment_args(<ConfigArgs as clap::Args>::augment_args(command)).mut_args(setting_flag)
}

/// The uniform naming and layering rule applied to every setting's flag: its variable is
/// `SWITCHBOARD_<KEY>`; no flag is required (a value left out keeps the file's or the default); booleans
/// take a value (`--x true`) instead of being switches, so leaving one out never changes it.
fn setting_flag(arg: Arg) -> Arg {
    let id = arg.get_id().as_str();
    if arg.get_long().is_none() || matches!(id, "config" | "dump_config") {
        return arg;
    }
    let env = format!("SWITCHBOARD_{}", id.to_ascii_uppercase());
    let arg = arg.env(env).required(false);
    if matches!(arg.get_action(), ArgAction::SetTrue) { arg.action(ArgAction::Set).num_args(1) } else { arg }
}

/// The effective settings: `S::default()`, overlaid with the TOML file named by `--config` (when given),
/// overlaid with the flags and `SWITCHBOARD_*` variables in `matches` (only those given). A file key that
/// is no setting of `S` is an error ([`setting_keys`] says which spellings are).
pub fn load<S: Settings>(matches: &ArgMatches) -> ConfigResult<S> {
    let mut settings = match matches.get_one::<PathBuf>("config") {
        None => S::default(),
        Some(path) => {
            let text =
                std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
            let table: toml::Table = toml::from_str(&text)
                .map_err(|source| ConfigError::Parse { path: path.to_owned(), source: Box::new(source) })?;
            let table =
                setting_keys::<S>(table).map_err(|e| ConfigError::Invalid(format!("{e} in {}", path.display())))?;
            S::deserialize(toml::Value::Table(table)).map_err(|e| ConfigError::Invalid(e.to_string()))?
        }
    };
    settings.update_from_arg_matches(matches).map_err(|e| ConfigError::Invalid(e.to_string()))?;
    Ok(settings)
}

/// The file's table with every key as its setting's key. A key is a setting's key (`snake_case`), the same
/// with dashes, or a long alias of its flag (the original broker's names, such as
/// `delete-session-duration-seconds`); anything else is an error, and so is one setting given twice.
fn setting_keys<S: Settings>(table: toml::Table) -> Result<toml::Table, String> {
    let command = command::<S>(clap::Command::new("settings"));
    let mut names = std::collections::HashMap::new();
    for arg in command.get_arguments().filter(|arg| !is_source_key(arg.get_id().as_str())) {
        let id = arg.get_id().as_str();
        for name in std::iter::once(id).chain(arg.get_all_aliases().unwrap_or_default()) {
            names.insert(name.replace('-', "_"), id.to_owned());
        }
    }
    let mut keyed = toml::Table::new();
    for (key, value) in table {
        let Some(id) = names.get(&key.replace('-', "_")) else { return Err(format!("unknown setting `{key}`")) };
        if keyed.insert(id.clone(), value).is_some() {
            return Err(format!("setting `{id}` given twice (as `{key}` and another name)"));
        }
    }
    Ok(keyed)
}

/// `config` and `dump_config` choose where settings come from; they are not settings themselves.
fn is_source_key(key: &str) -> bool {
    matches!(key, "config" | "dump_config")
}

/// Parses `args` for `S` with the command `base` (name, version, about), without side effects: what
/// [`bootstrap`] does first, and what tests call.
pub fn parse<S, I, T>(base: clap::Command, args: I) -> ConfigResult<(S, bool)>
where
    S: Settings,
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let matches = command::<S>(base).try_get_matches_from(args).map_err(|e| ConfigError::Invalid(e.to_string()))?;
    let dump_config = matches.get_flag("dump_config");
    Ok((load(&matches)?, dump_config))
}

/// What every binary's `main` does first: parse the command line (exiting with clap's message on a bad
/// one, or with help or the version), [`load`] the settings, and for `--dump-config` print them ([`dump`])
/// and return `None` so the binary exits without starting. Otherwise sets up telemetry (logs, and the
/// `/metrics` endpoint when `metrics_listen` is set, trace export as the command's name when
/// `otlp_endpoint` is set: call it inside the tokio runtime), installs the
/// crypto provider and configures internal TLS.
pub fn bootstrap<S: Settings>(base: clap::Command) -> ConfigResult<Option<S>> {
    let base_name = base.get_name().to_owned();
    let matches = command::<S>(base).get_matches();
    let settings: S = load(&matches)?;
    if matches.get_flag("dump_config") {
        print!("{}", dump(&settings)?);
        return Ok(None);
    }
    settings.telemetry().init(&base_name)?;
    crate::process::raise_fd_limit_logged();
    crate::tls::install_crypto_provider();
    if let Some(internal_tls) = settings.internal_tls() {
        internal_tls.configure()?;
    }
    Ok(Some(settings))
}

/// Checks the settings table of `docs/configuration.md` (`doc`) against the settings of `command` (built
/// by [`command`]): every setting must have a row, under one of `binaries` (the table's first column), naming
/// its flag, variable and file key; every row of `binaries[0]` must name a flag `command` has. Returns what
/// is wrong, one line each, so a test fails naming every gap.
pub fn undocumented(command: &clap::Command, doc: &str, binaries: &[&str]) -> Vec<String> {
    let rows: Vec<Vec<String>> = doc
        .lines()
        .filter(|line| line.starts_with("| "))
        .map(|line| line.split('|').map(|cell| cell.trim().trim_matches('`').to_owned()).collect::<Vec<_>>())
        .filter(|cells| cells.len() > 5)
        .collect();
    let mut problems = Vec::new();
    let mut flags = Vec::new();
    for arg in command.get_arguments() {
        let id = arg.get_id().as_str();
        let Some(long) = arg.get_long() else { continue };
        if arg.is_hide_set() {
            continue;
        }
        let flag = format!("--{long}");
        flags.push(flag.clone());
        let env = arg.get_env().map(|env| env.to_string_lossy().into_owned()).unwrap_or_else(|| "—".to_owned());
        let key = if is_source_key(id) { "—".to_owned() } else { id.to_owned() };
        let documented = rows.iter().any(|cells| {
            binaries.contains(&cells[1].as_str()) && cells[2] == flag && cells[3] == env && cells[4] == key
        });
        if !documented {
            problems.push(format!("no row for {flag} / {env} / {key} under {binaries:?}"));
        }
    }
    for cells in rows.iter().filter(|cells| cells[1] == binaries[0]) {
        if !flags.contains(&cells[2]) {
            problems.push(format!("the row {} of {} names no setting", cells[2], binaries[0]));
        }
    }
    problems
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

/// The server identity for a TLS port: the PEM files `cert_file` and `key_file` when both are set (followed
/// when they change, [`crate::tls_reload`]), else a development CA loaded from or created in `dev_tls_dir`
/// (certificate for localhost plus `extra_names`; fixed). Replicas sharing a dev CA must share the directory,
/// or be given its files.
pub fn server_identity(
    cert_file: Option<&Path>,
    key_file: Option<&Path>,
    dev_tls_dir: Option<&Path>,
    extra_names: &[String],
) -> ConfigResult<ReloadingIdentity> {
    match (cert_file, key_file, dev_tls_dir) {
        (Some(cert), Some(key), _) => Ok(ReloadingIdentity::from_files(cert, key)?),
        (Some(_), None, _) | (None, Some(_), _) => {
            Err(ConfigError::Invalid("tls_cert_file and tls_key_file must be set together".into()))
        }
        (None, None, Some(dir)) => Ok(ReloadingIdentity::from_pem(&DevCa::load_or_create(dir, extra_names)?.server)?),
        (None, None, None) => Err(ConfigError::Invalid(
            "no TLS identity: set tls_cert_file and tls_key_file, or dev_tls_dir for a development CA".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A library config as the services declare theirs.
    #[derive(Debug, Clone, Serialize, Deserialize, PartialEq, clap::Args)]
    #[serde(default)]
    struct LibraryConfig {
        /// How many replicas (`replica-count`: a former name, as the original broker's names are kept).
        #[arg(long, alias = "replica-count")]
        replicas: u32,
        /// Whether hosts start open.
        #[arg(long)]
        default_open: bool,
        /// Extra names.
        #[arg(long, value_delimiter = ',')]
        names: Vec<String>,
    }

    impl Default for LibraryConfig {
        fn default() -> Self {
            Self { replicas: 1, default_open: true, names: Vec::new() }
        }
    }

    /// A binary's settings: its own, a flattened library config, and the log settings.
    #[derive(Debug, Clone, Serialize, Deserialize, PartialEq, clap::Args)]
    #[serde(default)]
    struct TestSettings {
        /// Listen address.
        #[arg(long)]
        listen: String,
        /// Shared Redis.
        #[arg(long)]
        redis_url: Option<String>,
        /// The admin token.
        #[arg(long)]
        admin_token: Option<String>,
        #[command(flatten)]
        #[serde(flatten)]
        library: LibraryConfig,
        #[command(flatten)]
        #[serde(flatten)]
        telemetry: TelemetrySettings,
    }

    impl Default for TestSettings {
        fn default() -> Self {
            Self {
                listen: "127.0.0.1:1".into(),
                redis_url: None,
                admin_token: None,
                library: LibraryConfig::default(),
                telemetry: TelemetrySettings::default(),
            }
        }
    }

    impl Settings for TestSettings {
        fn telemetry(&self) -> &TelemetrySettings {
            &self.telemetry
        }
    }

    fn file(text: &str) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), text).unwrap();
        file
    }

    fn parsed(args: &[&str]) -> ConfigResult<TestSettings> {
        let base = clap::Command::new("test");
        Ok(parse::<TestSettings, _, _>(base, std::iter::once("test").chain(args.iter().copied()))?.0)
    }

    #[test]
    fn layers_apply_in_order() {
        assert_eq!(parsed(&[]).unwrap(), TestSettings::default());

        let toml = file("replicas = 3\nlisten = '0.0.0.0:2'\nredis_url = 'redis://r:6379'\ndefault_open = false\n");
        let path = toml.path().to_str().unwrap();
        let loaded = parsed(&["--config", path]).unwrap();
        assert_eq!((loaded.library.replicas, loaded.listen.as_str()), (3, "0.0.0.0:2"));
        assert_eq!(loaded.redis_url.as_deref(), Some("redis://r:6379"));
        assert!(!loaded.library.default_open, "the file sets a flattened library setting");

        let loaded = parsed(&["--config", path, "--replicas", "5", "--log-format", "json", "--names", "a,b"]).unwrap();
        assert_eq!((loaded.library.replicas, loaded.listen.as_str()), (5, "0.0.0.0:2"), "flags beat the file");
        assert_eq!(loaded.telemetry.log_format, LogFormat::Json);
        assert_eq!(loaded.library.names, ["a", "b"]);
        assert!(!loaded.library.default_open, "a boolean left out keeps the file's value");
        assert!(parsed(&["--config", path, "--default-open", "true"]).unwrap().library.default_open);
    }

    #[test]
    fn flag_spellings_and_aliases_are_file_keys_too() {
        let toml = file("replica-count = 4\ndefault-open = false\n");
        let loaded = parsed(&["--config", toml.path().to_str().unwrap()]).unwrap();
        assert_eq!((loaded.library.replicas, loaded.library.default_open), (4, false));
        assert_eq!(parsed(&["--replica-count", "6"]).unwrap().library.replicas, 6);
        let twice = file("replicas = 1\nreplica-count = 4\n");
        let error = parsed(&["--config", twice.path().to_str().unwrap()]).unwrap_err();
        assert!(error.to_string().contains("given twice"), "{error}");
    }

    #[test]
    fn every_setting_has_its_variable() {
        let command = command::<TestSettings>(clap::Command::new("test"));
        let variables: Vec<String> = command
            .get_arguments()
            .filter_map(|arg| arg.get_env().map(|env| env.to_string_lossy().into_owned()))
            .collect();
        for expected in ["SWITCHBOARD_CONFIG", "SWITCHBOARD_LISTEN", "SWITCHBOARD_REPLICAS", "SWITCHBOARD_LOG_LEVEL"] {
            assert!(variables.iter().any(|env| env == expected), "{expected} in {variables:?}");
        }
    }

    #[test]
    fn unknown_file_keys_and_bad_types_are_errors() {
        let typo = file("replicaz = 3\n");
        let error = parsed(&["--config", typo.path().to_str().unwrap()]).unwrap_err();
        assert!(error.to_string().contains("unknown setting `replicaz`"), "{error}");
        let source = file("dump_config = true\n");
        assert!(parsed(&["--config", source.path().to_str().unwrap()]).is_err(), "not a setting");
        let wrong = file("replicas = 'three'\n");
        assert!(parsed(&["--config", wrong.path().to_str().unwrap()]).is_err());
        let missing = parsed(&["--config", "/nonexistent/x.toml"]).unwrap_err();
        assert!(matches!(missing, ConfigError::Read { .. }), "{missing}");
        assert!(parsed(&["--replicas", "three"]).is_err());
    }

    #[test]
    fn dump_redacts_secrets() {
        let settings = TestSettings {
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
        assert_eq!(
            redact_url_password("redis+sentinel://:pw@s1:26379,s2:26379/main"),
            "redis+sentinel://:[redacted]@s1:26379,s2:26379/main"
        );
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
        assert_eq!(generated.current().pem.cert_pem, loaded.current().pem.cert_pem);
        assert!(server_identity(Some(&cert), None, None, &[]).is_err());
        assert!(server_identity(None, None, None, &[]).is_err());
        assert_eq!("JSON".parse::<LogFormat>().unwrap(), LogFormat::Json);
    }

    #[test]
    fn a_sampling_ratio_outside_0_to_1_is_refused_before_anything_starts() {
        for ratio in [-0.1, 1.5, f64::NAN] {
            let settings = TelemetrySettings { otlp_sampling_ratio: ratio, ..TelemetrySettings::default() };
            let error = settings.init("switchboard-test").unwrap_err().to_string();
            assert!(error.contains("otlp_sampling_ratio"), "{error}");
        }
    }

    #[test]
    fn exactly_one_storage() {
        let redis = storage_choice(Some("redis://r:6379"), "sb:", None).unwrap();
        assert_eq!(
            redis,
            StorageChoice::Redis {
                url: "redis://r:6379".into(),
                key_prefix: "sb:".into(),
                wait_replicas: None,
                wait_timeout_ms: DEFAULT_REDIS_WAIT_TIMEOUT_MS
            }
        );
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
