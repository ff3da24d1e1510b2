//! Enrolment: how this agent gets and presents its own credentials.
//!
//! An operator generates a software statement on the broker (`switchboard generate-software-statement`)
//! and puts it in the file `agent.conf` names with `software_statement_path`. On its first connection the
//! agent registers with it (`AgentEnrolment.Register`, RFC 7591 style) and receives its own client id and
//! secret, which it keeps in a credentials file (mode 0600) and uses from then on: every `AgentLink.Connect`
//! carries `authorization: Basic base64(id:secret)`. The broker binds the client to this host's server id at
//! the first hello.
//!
//! The credentials file is `credentials_path` from agent.conf when set; else
//! `$STATE_DIRECTORY/<statement file stem>.credentials.toml` when systemd provides a state directory (the
//! shipped unit does: `/var/lib/switchboard-agent`, writable under `ProtectSystem=strict`); else
//! `<statement file stem>.credentials.toml` next to the statement. Before registering, the agent checks that
//! it can write that file: a registration whose credentials could not be kept would leave an orphan agent
//! client on the broker at every retry.
//!
//! The agent registers only when it has no stored credentials. If the broker refuses them (the client was
//! unregistered, or the store lost its data), the agent does not re-register on its own: it reads the
//! credentials file again before each later attempt, so an operator re-enrols the host by putting an active
//! statement in the statement file and deleting the credentials file; no restart is needed.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use switchboard_common::Secret;
use switchboard_proto::RegisterAgentRequest;
use switchboard_proto::agent_enrolment_client::AgentEnrolmentClient;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::Channel;

use crate::error::{Error, Result};

/// Where the software statement comes from.
#[derive(Debug, Clone)]
pub enum StatementSource {
    /// A file (`software_statement_path`), read when registration is needed.
    File(PathBuf),
    /// The statement itself (the all-in-one's simulated hosts).
    Inline(Secret),
}

/// How an agent enrols: its statement and where its credentials are kept.
#[derive(Debug, Clone)]
pub struct Enrolment {
    /// The software statement to register with.
    pub statement: StatementSource,
    /// The credentials file (written 0600 after registration).
    pub credentials_path: PathBuf,
}

impl Enrolment {
    /// Enrolment with the statement in `path`; credentials in `<stem>.credentials.toml` next to it.
    pub fn from_statement_file(path: &Path) -> Self {
        Self::for_statement_file(path, None, None)
    }

    /// Enrolment with the statement in `path`; credentials at `credentials_path` when given, else
    /// `<state_directory>/<stem>.credentials.toml` when there is a state directory, else next to the statement.
    pub fn for_statement_file(path: &Path, credentials_path: Option<&Path>, state_directory: Option<&Path>) -> Self {
        let stem = path.file_stem().map_or_else(|| "software_statement".into(), |s| s.to_string_lossy().into_owned());
        let file_name = format!("{stem}.credentials.toml");
        let credentials_path = match (credentials_path, state_directory) {
            (Some(explicit), _) => explicit.to_owned(),
            (None, Some(directory)) => directory.join(file_name),
            (None, None) => path.with_file_name(file_name),
        };
        Self { statement: StatementSource::File(path.to_owned()), credentials_path }
    }

    /// Enrolment with an in-memory statement and credentials at `credentials_path`.
    pub fn inline(statement: Secret, credentials_path: PathBuf) -> Self {
        Self { statement: StatementSource::Inline(statement), credentials_path }
    }
}

/// An agent client's credentials, as stored.
#[derive(Clone, Serialize, Deserialize)]
struct Credentials {
    client_id: String,
    client_secret: Secret,
}

impl Credentials {
    fn authorization(&self) -> Result<MetadataValue<Ascii>> {
        let encoded = STANDARD.encode(format!("{}:{}", self.client_id, self.client_secret.expose()));
        format!("Basic {encoded}")
            .parse()
            .map_err(|_| Error::Config("stored agent credentials are not valid header text".into()))
    }
}

/// Gets credentials once (from the file, else by registering) and caches them.
pub(crate) struct Enroller {
    enrolment: Option<Enrolment>,
    cached: tokio::sync::Mutex<Option<Credentials>>,
}

impl Enroller {
    pub(crate) fn new(enrolment: Option<Enrolment>) -> Self {
        Self { enrolment, cached: tokio::sync::Mutex::new(None) }
    }

    /// The `authorization` value for `Connect`, registering over `channel` first if needed; `None` when
    /// no enrolment is configured (the broker then refuses the stream unless it allows anonymous agents).
    pub(crate) async fn authorization(
        &self,
        channel: Channel,
        client_name: &str,
    ) -> Result<Option<MetadataValue<Ascii>>> {
        let Some(enrolment) = &self.enrolment else {
            return Ok(None);
        };
        let mut cached = self.cached.lock().await;
        if cached.is_none() {
            *cached = Some(match read_credentials(&enrolment.credentials_path)? {
                Some(credentials) => credentials,
                None => register(enrolment, channel, client_name).await?,
            });
        }
        cached.as_ref().map(Credentials::authorization).transpose()
    }
}

impl Enroller {
    /// Drops the cached credentials (the broker refused them); the next attempt reads the file again.
    pub(crate) async fn forget(&self) {
        if let Some(enrolment) = &self.enrolment {
            tracing::warn!(
                path = %enrolment.credentials_path.display(),
                "the broker refused this agent's credentials; to enrol again, put an active software statement in \
                 the statement file and delete the credentials file"
            );
        }
        *self.cached.lock().await = None;
    }
}

/// The client id stored in the credentials file at `path`, if there is one.
pub fn stored_client_id(path: &Path) -> Result<Option<String>> {
    Ok(read_credentials(path)?.map(|credentials| credentials.client_id))
}

fn read_credentials(path: &Path) -> Result<Option<Credentials>> {
    match std::fs::read_to_string(path) {
        Ok(text) => toml::from_str(&text)
            .map(Some)
            .map_err(|e| Error::Config(format!("agent credentials {}: {e}", path.display()))),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(Error::io(path, error)),
    }
}

async fn register(enrolment: &Enrolment, channel: Channel, client_name: &str) -> Result<Credentials> {
    let statement = match &enrolment.statement {
        StatementSource::Inline(statement) => statement.clone(),
        StatementSource::File(path) => {
            Secret::new(std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?.trim().to_owned())
        }
    };
    // Registering creates a client on the broker: make sure its credentials can be kept first.
    check_writable(&enrolment.credentials_path)?;
    let request =
        RegisterAgentRequest { software_statement: statement.expose().to_owned(), client_name: client_name.to_owned() };
    let response = AgentEnrolmentClient::new(channel)
        .register(request)
        .await
        .map_err(|status| Error::Link(format!("registration with the software statement refused: {status}")))?
        .into_inner();
    let credentials = Credentials { client_id: response.client_id, client_secret: Secret::new(response.client_secret) };
    write_private(&enrolment.credentials_path, &toml::to_string(&credentials).expect("credentials serialise"))?;
    tracing::info!(client_id = %credentials.client_id, path = %enrolment.credentials_path.display(), "registered with the broker");
    Ok(credentials)
}

/// Fails unless a file can be written at `path` (its directory is created if missing).
fn check_writable(path: &Path) -> Result<()> {
    write_private(path, "").map_err(|error| {
        Error::Config(format!(
            "cannot keep agent credentials at {}: {error}; set credentials_path in agent.conf to a writable file",
            path.display()
        ))
    })?;
    std::fs::remove_file(path).map_err(|e| Error::io(path, e))
}

/// Writes `text` to `path` readable by the owner only (via a temporary file renamed into place).
fn write_private(path: &Path, text: &str) -> Result<()> {
    use std::io::Write;
    if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    let temporary = path.with_extension("tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(&temporary).map_err(|e| Error::io(&temporary, e))?;
    file.write_all(text.as_bytes()).and_then(|()| file.sync_all()).map_err(|e| Error::io(&temporary, e))?;
    std::fs::rename(&temporary, path).map_err(|e| Error::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_sit_next_to_the_statement_and_are_private() {
        let enrolment = Enrolment::from_statement_file(Path::new("/etc/agent/software_statement.txt"));
        assert_eq!(enrolment.credentials_path, Path::new("/etc/agent/software_statement.credentials.toml"));

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/creds.toml");
        let credentials = Credentials { client_id: "id".into(), client_secret: Secret::new("s3cr3t") };
        write_private(&path, &toml::to_string(&credentials).unwrap()).unwrap();
        let read = read_credentials(&path).unwrap().unwrap();
        assert_eq!(read.client_id, "id");
        assert_eq!(read.client_secret.expose(), "s3cr3t");
        assert_eq!(read.authorization().unwrap().to_str().unwrap(), format!("Basic {}", STANDARD.encode("id:s3cr3t")));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "credentials must be private");
        }
        assert!(read_credentials(&dir.path().join("missing.toml")).unwrap().is_none());
    }

    #[test]
    fn the_credentials_file_is_explicit_or_in_the_state_directory_or_next_to_the_statement() {
        let statement = Path::new("/etc/agent/software_statement.txt");
        let explicit = Enrolment::for_statement_file(
            statement,
            Some(Path::new("/srv/creds.toml")),
            Some(Path::new("/var/lib/switchboard-agent")),
        );
        assert_eq!(explicit.credentials_path, Path::new("/srv/creds.toml"));
        let state = Enrolment::for_statement_file(statement, None, Some(Path::new("/var/lib/switchboard-agent")));
        assert_eq!(state.credentials_path, Path::new("/var/lib/switchboard-agent/software_statement.credentials.toml"));
        let beside = Enrolment::for_statement_file(statement, None, None);
        assert_eq!(beside.credentials_path, Path::new("/etc/agent/software_statement.credentials.toml"));
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn an_unwritable_credentials_path_fails_before_registering() {
        // A path under a regular file cannot be created, even by root.
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("not-a-directory");
        std::fs::write(&blocker, "").unwrap();
        let enrolment = Enrolment::inline(Secret::new("statement"), blocker.join("creds.toml"));
        // A channel to nowhere: reaching the broker would fail differently ("registration … refused").
        let channel = tonic::transport::Endpoint::from_static("http://127.0.0.1:9").connect_lazy();
        let error = register(&enrolment, channel, "host").await.err().expect("registration must not proceed");
        assert!(error.to_string().contains("cannot keep agent credentials"), "{error}");
    }
}
