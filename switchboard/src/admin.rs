//! The local admin channel.
//!
//! `switchboard up` generates a random admin token, gives only its SHA-256 to
//! the auth service, and writes the token with the auth service's address into
//! `<data-dir>/admin.json` (mode 0600, readable only by the user who started
//! the cluster). Admin commands (`register-api-client`, …) read that file and
//! call the auth service's admin RPCs with `authorization: Bearer <token>`.
//! Possession of the file is the credential, exactly like a kubeconfig.
//!
//! With separate services (Kubernetes) there is no admin.json: admin commands take the auth URL
//! and the admin token file instead ([`AdminChannel::from_token_file`]); the Helm chart sets both
//! in the auth pod, so `kubectl exec deploy/<release>-auth -- switchboard describe-api-clients`
//! works as is.

use std::{
    fs,
    io::Write,
    path::{Path, PathBuf},
};

use base64::Engine;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use switchboard_common::Secret;
use switchboard_common::grpc::GrpcChannel;
use switchboard_proto::agent_admin_client::AgentAdminClient;
use switchboard_proto::auth_client::AuthClient;
use tonic::metadata::MetadataValue;

/// File name of the admin channel descriptor inside the data dir.
pub const ADMIN_FILE: &str = "admin.json";

/// Where the admin endpoint is and the credential to use it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AdminChannel {
    /// gRPC URL of an auth service replica, e.g. `http://127.0.0.1:40123`.
    pub auth_url: String,
    /// The admin token; only its hash is known to the auth service.
    pub token: Secret,
}

impl AdminChannel {
    /// A channel with a fresh random 256-bit token.
    pub fn generate(auth_url: String) -> Self {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        Self { auth_url, token: Secret::new(token) }
    }

    /// Path of the descriptor in `data_dir`.
    pub fn path(data_dir: &Path) -> PathBuf {
        data_dir.join(ADMIN_FILE)
    }

    /// Writes the descriptor, readable by the owner only.
    pub fn write(&self, data_dir: &Path) -> anyhow::Result<()> {
        let path = Self::path(data_dir);
        let mut options = fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(&path)?;
        file.write_all(serde_json::to_string_pretty(self)?.as_bytes())?;
        Ok(())
    }

    /// Reads the descriptor a running cluster wrote.
    pub fn read(data_dir: &Path) -> anyhow::Result<Self> {
        let path = Self::path(data_dir);
        let text = fs::read_to_string(&path).map_err(|e| {
            anyhow::anyhow!(
                "no running Switchboard found: cannot read {} ({e}); start one with `switchboard up --data-dir {}`",
                path.display(),
                data_dir.display()
            )
        })?;
        Ok(serde_json::from_str(&text)?)
    }

    /// A channel to `auth_url` with the admin token read from `token_file` (Kubernetes: the
    /// mounted admin Secret).
    pub fn from_token_file(auth_url: String, token_file: &Path) -> anyhow::Result<Self> {
        let token = fs::read_to_string(token_file)
            .map_err(|e| anyhow::anyhow!("cannot read the admin token file {}: {e}", token_file.display()))?;
        let token = token.trim();
        anyhow::ensure!(!token.is_empty(), "the admin token file {} is empty", token_file.display());
        Ok(Self { auth_url, token: Secret::new(token.to_owned()) })
    }

    /// Removes the descriptor (on shutdown).
    pub fn remove(data_dir: &Path) {
        let _ = fs::remove_file(Self::path(data_dir));
    }

    /// An auth client that sends the admin token on every call.
    pub fn client(
        &self,
    ) -> anyhow::Result<
        AuthClient<
            tonic::service::interceptor::InterceptedService<GrpcChannel, impl tonic::service::Interceptor + Clone>,
        >,
    > {
        let channel = switchboard_common::grpc::lazy_channel(&self.auth_url)?;
        let header: MetadataValue<_> = format!("Bearer {}", self.token.expose()).parse()?;
        Ok(AuthClient::with_interceptor(channel, move |mut request: tonic::Request<()>| {
            request.metadata_mut().insert("authorization", header.clone());
            Ok(request)
        }))
    }

    /// An agent-admin client (software statements, agent clients) that sends the admin token on every call.
    pub fn agent_admin_client(
        &self,
    ) -> anyhow::Result<
        AgentAdminClient<
            tonic::service::interceptor::InterceptedService<GrpcChannel, impl tonic::service::Interceptor + Clone>,
        >,
    > {
        let channel = switchboard_common::grpc::lazy_channel(&self.auth_url)?;
        let header: MetadataValue<_> = format!("Bearer {}", self.token.expose()).parse()?;
        Ok(AgentAdminClient::with_interceptor(channel, move |mut request: tonic::Request<()>| {
            request.metadata_mut().insert("authorization", header.clone());
            Ok(request)
        }))
    }

    /// SHA-256 of the token, as the auth service is configured with.
    pub fn token_sha256(&self) -> [u8; 32] {
        switchboard_auth::admin_token_hash(self.token.expose())
    }
}

/// Turns a gRPC failure of an admin call into a message for the operator.
pub fn explain(status: tonic::Status, auth_url: &str) -> anyhow::Error {
    match status.code() {
        tonic::Code::Unavailable => {
            anyhow::anyhow!("the cluster's auth service at {auth_url} does not answer; is `switchboard up` running?")
        }
        tonic::Code::Unauthenticated | tonic::Code::PermissionDenied => {
            anyhow::anyhow!("the admin token was refused ({}); admin.json may be from an earlier run", status.message())
        }
        _ => anyhow::anyhow!("{}", status.message()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptor_round_trips_and_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let channel = AdminChannel::generate("http://127.0.0.1:1".into());
        channel.write(dir.path()).unwrap();
        let read = AdminChannel::read(dir.path()).unwrap();
        assert_eq!(read.token.expose(), channel.token.expose());
        assert_eq!(read.token_sha256(), channel.token_sha256());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(AdminChannel::path(dir.path())).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0);
        }
        assert!(format!("{channel:?}").contains("[redacted]"));
    }

    #[test]
    fn missing_descriptor_says_how_to_start() {
        let dir = tempfile::tempdir().unwrap();
        let error = AdminChannel::read(dir.path()).unwrap_err().to_string();
        assert!(error.contains("switchboard up"), "{error}");
    }
}
