//! The command line, option for option as the original CLI spells it (its "CLI command reference"),
//! plus Switchboard's additions (`explain-placement`, `--all`, `--output-dir`).
//!
//! List options take comma-separated values (`--session-ids "s1,s2"`); boolean options are presence
//! flags (`--force`, `--dcv-gl-enabled`), except `--enqueue-request`, which takes `true` or `false` as the
//! original documents (a bare `--enqueue-request` means `true`).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Command-line client of the DCV Session Manager API (Switchboard or the original broker).
#[derive(Debug, Parser)]
#[command(name = "dcvsm", version, about, disable_help_subcommand = true)]
pub struct Cli {
    /// Global options (also accepted after the command).
    #[command(flatten)]
    pub global: GlobalArgs,
    /// The operation.
    #[command(subcommand)]
    pub command: Command,
}

/// The options every command takes; each overrides the environment and the configuration file.
#[derive(Debug, Clone, Default, Args)]
pub struct GlobalArgs {
    /// Path of the configuration file (default: $XDG_CONFIG_HOME/dcvsmcli.conf).
    #[arg(long, global = true, value_name = "PATH")]
    pub conf: Option<PathBuf>,
    /// URL of the broker, e.g. https://broker-host:8443.
    #[arg(long, global = true, value_name = "URL")]
    pub broker_url: Option<String>,
    /// Print what the command does (requests, statuses, token source) on stderr.
    #[arg(long, global = true)]
    pub debug: bool,
    /// Do not verify the broker's TLS certificate (discouraged).
    #[arg(long, global = true)]
    pub no_verify_ssl: bool,
    /// Output format.
    #[arg(long, global = true, value_enum, value_name = "FORMAT")]
    pub output_format: Option<OutputFormat>,
    /// PEM bundle of the CAs to trust for TLS connections.
    #[arg(long, global = true, value_name = "PATH")]
    pub ca_bundle: Option<PathBuf>,
    /// URL of the OAuth 2.0 authorization server (default: the broker URL).
    #[arg(long, alias = "auth-server", global = true, value_name = "URL")]
    pub auth_server_url: Option<String>,
}

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum OutputFormat {
    /// The API's JSON response.
    #[default]
    Json,
    /// Aligned columns for people.
    Table,
}

/// Session type of `create-session` and `explain-placement`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
#[value(rename_all = "PascalCase")]
pub enum SessionType {
    /// A console session.
    Console,
    /// A virtual session.
    Virtual,
}

impl SessionType {
    /// The API's spelling.
    pub fn api_name(self) -> &'static str {
        match self {
            SessionType::Console => "CONSOLE",
            SessionType::Virtual => "VIRTUAL",
        }
    }
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Creates a new DCV session.
    CreateSession(CreateSession),
    /// Describes one or more DCV sessions.
    DescribeSessions(DescribeSessions),
    /// Deletes a DCV session.
    DeleteSession(DeleteSession),
    /// Describes one or more DCV servers.
    DescribeServers(DescribeServers),
    /// Opens DCV servers for session placement.
    OpenServers(OpenServers),
    /// Closes DCV servers to session placement.
    CloseServers(CloseServers),
    /// Gets the connection data of a user for a session.
    GetSessionConnectionData(GetSessionConnectionData),
    /// Gets screenshots of one or more sessions.
    GetSessionScreenshots(GetSessionScreenshots),
    /// Updates the permissions of a session.
    UpdateSessionPermissions(UpdateSessionPermissions),
    /// Switchboard: which servers would take a session with these requirements now, and why not the others.
    ExplainPlacement(ExplainPlacement),
    /// Switchboard: registers a webhook (events POSTed to an https URL, signed); prints its id and secret.
    RegisterWebhook(RegisterWebhook),
    /// Switchboard: lists the webhooks with their delivery status and dead letters.
    DescribeWebhooks,
    /// Switchboard: removes a webhook.
    UnregisterWebhook(UnregisterWebhook),
}

/// `register-webhook` (Switchboard).
#[derive(Debug, Args)]
pub struct RegisterWebhook {
    /// The https URL to POST events to.
    #[arg(long)]
    pub url: String,
    /// Event types to deliver (repeat, or comma-separated); default: every type.
    #[arg(long = "event-type", value_delimiter = ',')]
    pub event_types: Vec<String>,
}

/// `unregister-webhook` (Switchboard).
#[derive(Debug, Args)]
pub struct UnregisterWebhook {
    /// The webhook's id.
    #[arg(long)]
    pub id: String,
}

/// `create-session`.
#[derive(Debug, Args)]
pub struct CreateSession {
    /// The name of the session.
    #[arg(long)]
    pub name: String,
    /// The owner of the session.
    #[arg(long)]
    pub owner: String,
    /// The session type.
    #[arg(long = "type", value_enum, ignore_case = true)]
    pub session_type: SessionType,
    /// Init script, relative to the agent's init folder.
    #[arg(long)]
    pub init_file_path: Option<String>,
    /// File run inside the session, relative to the agent's autorun folder.
    #[arg(long)]
    pub autorun_file: Option<String>,
    /// Arguments of the autorun file (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub autorun_file_arguments: Vec<String>,
    /// Maximum concurrent clients, 1 to 100 (the guide spells it three ways; all are accepted).
    #[arg(
        long = "max-concurrents-clients",
        alias = "max_concurrent-clients",
        alias = "max-concurrent-clients",
        value_parser = clap::value_parser!(u32).range(1..=100)
    )]
    pub max_concurrent_clients: Option<u32>,
    /// Use hardware-based OpenGL in the virtual session.
    #[arg(long)]
    pub dcv_gl_enabled: bool,
    /// Path of a permissions file (sent base64-encoded).
    #[arg(long)]
    pub permissions_file: Option<PathBuf>,
    /// Requirements a server must satisfy, e.g. "server:Host.Os.Family = 'linux'".
    #[arg(long)]
    pub requirements: Option<String>,
    /// Folder for session storage.
    #[arg(long)]
    pub storage_root: Option<String>,
    /// Queue the request when no server can take it now (true or false).
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_parser = clap::builder::BoolishValueParser::new())]
    pub enqueue_request: Option<bool>,
    /// Switchboard: reap the session after this long without a client connection, in seconds (0: never).
    #[arg(long, value_parser = clap::value_parser!(u32).range(0..=31_536_000))]
    pub max_idle_seconds: Option<u32>,
    /// Switchboard: reap the session this long after its creation, in seconds (0: never).
    #[arg(long, value_parser = clap::value_parser!(u32).range(0..=31_536_000))]
    pub max_lifetime_seconds: Option<u32>,
}

/// Paging options of the describe commands.
#[derive(Debug, Args)]
pub struct Paging {
    /// The token of the page to retrieve.
    #[arg(long)]
    pub next_token: Option<String>,
    /// Results per page, 1 to 1000.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub max_results: Option<u32>,
    /// Switchboard: follow NextToken and print every page as one response.
    #[arg(long)]
    pub all: bool,
}

/// `describe-sessions`.
#[derive(Debug, Args)]
pub struct DescribeSessions {
    /// Sessions to describe (comma-separated); all when omitted.
    #[arg(long, value_delimiter = ',')]
    pub session_ids: Vec<String>,
    /// Only sessions of this owner.
    #[arg(long)]
    pub owner: Option<String>,
    /// Paging.
    #[command(flatten)]
    pub paging: Paging,
}

/// `delete-session`.
#[derive(Debug, Args)]
pub struct DeleteSession {
    /// The session to delete.
    #[arg(long)]
    pub session_id: String,
    /// Its owner.
    #[arg(long)]
    pub owner: String,
    /// Remove the session from the broker's cache even if the server cannot be reached.
    #[arg(long)]
    pub force: bool,
}

/// `describe-servers`.
#[derive(Debug, Args)]
pub struct DescribeServers {
    /// Servers to describe (comma-separated); all when omitted.
    #[arg(long, value_delimiter = ',')]
    pub server_ids: Vec<String>,
    /// Paging.
    #[command(flatten)]
    pub paging: Paging,
}

/// `open-servers`.
#[derive(Debug, Args)]
pub struct OpenServers {
    /// Servers to open (comma-separated).
    #[arg(long, value_delimiter = ',', required = true)]
    pub server_ids: Vec<String>,
}

/// `close-servers`.
#[derive(Debug, Args)]
pub struct CloseServers {
    /// Servers to close (comma-separated).
    #[arg(long, value_delimiter = ',', required = true)]
    pub server_ids: Vec<String>,
    /// Close even servers with running sessions.
    #[arg(long)]
    pub force: bool,
    /// Without `--force`: let a server with running sessions drain for at most this many seconds (no new
    /// sessions; closed when the last one ends or at the deadline); 0: refuse it. Default: the broker's
    /// setting. A Switchboard addition (`DrainTimeoutSeconds`).
    #[arg(long, conflicts_with = "force", value_parser = clap::value_parser!(u32).range(0..=604_800))]
    pub drain_timeout_seconds: Option<u32>,
}

/// `get-session-connection-data`.
#[derive(Debug, Args)]
pub struct GetSessionConnectionData {
    /// The session.
    #[arg(long)]
    pub session_id: String,
    /// The user who connects.
    #[arg(long)]
    pub user: String,
}

/// `get-session-screenshots`.
#[derive(Debug, Args)]
pub struct GetSessionScreenshots {
    /// Sessions to take screenshots of (comma-separated).
    #[arg(long, value_delimiter = ',', required = true)]
    pub session_ids: Vec<String>,
    /// Maximum width in pixels.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_width: Option<u32>,
    /// Maximum height in pixels.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_height: Option<u32>,
    /// Switchboard: write each image to this folder (`<session-id>-<n>.<format>`) and print the paths.
    #[arg(long, value_name = "DIR")]
    pub output_dir: Option<PathBuf>,
}

/// `update-session-permissions`.
#[derive(Debug, Args)]
pub struct UpdateSessionPermissions {
    /// The session.
    #[arg(long)]
    pub session_id: String,
    /// Its owner.
    #[arg(long)]
    pub owner: String,
    /// Path of the permissions file (sent base64-encoded).
    #[arg(long = "permission-file", alias = "permissions-file")]
    pub permission_file: PathBuf,
}

/// `explain-placement` (Switchboard).
#[derive(Debug, Args)]
pub struct ExplainPlacement {
    /// The requirements expression to check.
    #[arg(long)]
    pub requirements: Option<String>,
    /// Session type to place (default: the API's).
    #[arg(long = "type", value_enum, ignore_case = true)]
    pub session_type: Option<SessionType>,
    /// Owner of the would-be session.
    #[arg(long)]
    pub owner: Option<String>,
    /// Whether the session would use hardware-based OpenGL.
    #[arg(long)]
    pub dcv_gl_enabled: bool,
    /// Autorun file of the would-be session.
    #[arg(long)]
    pub autorun_file: Option<String>,
    /// How many matching servers to list.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_servers: Option<u32>,
}
