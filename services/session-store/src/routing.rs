//! Routing host commands to whichever replica owns the agent's stream.
//!
//! Any replica accepts `SendCommand`. If the stream is local the command goes
//! straight onto it; otherwise the call is forwarded once to the owner named
//! by the backend, marked with [`FORWARDED_HEADER`] so it is never forwarded
//! again (a stale ownership record cannot cause a loop).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use switchboard_common::grpc::GrpcChannel;
use switchboard_proto::session_store_client::SessionStoreClient;
use switchboard_proto::{CommandResult, HostCommand, SendCommandRequest};
use tonic::Status;

use crate::Error;
use crate::agent_link::hub::AgentHub;
use crate::service::store_status;
use switchboard_store::Backend;

/// Metadata header marking a `SendCommand` forwarded by another replica.
pub const FORWARDED_HEADER: &str = "x-switchboard-forwarded";

/// Why a host command has no result.
#[derive(Debug)]
pub enum SendFailure {
    /// The command certainly never reached the agent (no stream for the host on this replica or, by the
    /// store's ownership record, on any other): safe to try another host.
    NotSent(Status),
    /// The command may have reached the agent (a timeout, a stream or a forwarding hop failing mid-call):
    /// only the host's inventory can tell.
    Unknown(Status),
}

impl From<SendFailure> for Status {
    fn from(failure: SendFailure) -> Self {
        match failure {
            SendFailure::NotSent(status) | SendFailure::Unknown(status) => status,
        }
    }
}

/// Sending a command to a host's agent and waiting for its result: [`CommandRouter`] in a replica, a fake
/// host in tests of the services above.
#[tonic::async_trait]
pub trait HostCommands: Send + Sync {
    /// Sends `command` to the agent of `server_id` and waits for its result. `timeout` of `None` uses the
    /// default; `forwarded` is true when another replica routed this call here (never forwarded again).
    async fn send(
        &self,
        server_id: &str,
        command: HostCommand,
        timeout: Option<Duration>,
        forwarded: bool,
    ) -> Result<CommandResult, SendFailure>;
}

/// Sends commands to hosts, locally or through the owning replica.
pub struct CommandRouter {
    replica_id: String,
    backend: Arc<dyn Backend>,
    hub: Arc<AgentHub>,
    default_timeout: Duration,
    /// Lazily connected channels to peer replicas, by address. A std mutex:
    /// only looked up and cloned, never held across `.await`.
    peers: Mutex<HashMap<String, GrpcChannel>>,
}

impl CommandRouter {
    /// A router for replica `replica_id`, waiting `default_timeout` for results
    /// unless a call says otherwise.
    pub fn new(replica_id: String, backend: Arc<dyn Backend>, hub: Arc<AgentHub>, default_timeout: Duration) -> Self {
        Self { replica_id, backend, hub, default_timeout, peers: Mutex::default() }
    }

    fn peer(&self, address: &str) -> Result<GrpcChannel, Status> {
        let mut peers = self.peers.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(channel) = peers.get(address) {
            return Ok(channel.clone());
        }
        let channel = switchboard_common::grpc::lazy_channel(address).map_err(|error| {
            tracing::warn!(address, %error, "bad peer replica address");
            Status::from(Error::HostUnreachable("owning replica unreachable".to_owned()))
        })?;
        peers.insert(address.to_owned(), channel.clone());
        Ok(channel)
    }
}

#[tonic::async_trait]
impl HostCommands for CommandRouter {
    async fn send(
        &self,
        server_id: &str,
        command: HostCommand,
        timeout: Option<Duration>,
        forwarded: bool,
    ) -> Result<CommandResult, SendFailure> {
        let name = crate::metrics::command_name(command.action.as_ref());
        let started = std::time::Instant::now();
        let result = self.route(server_id, command, timeout, forwarded).await;
        // Counted once, by the replica the call started at (a forwarded call is that call's hop).
        if !forwarded {
            let outcome = match &result {
                Ok(result) if result.error.is_empty() => "ok",
                Ok(_) => "host_error",
                Err(SendFailure::NotSent(_)) => "not_sent",
                Err(SendFailure::Unknown(_)) => "unknown",
            };
            crate::metrics::command(name, outcome, started.elapsed());
        }
        result
    }
}

impl CommandRouter {
    async fn route(
        &self,
        server_id: &str,
        mut command: HostCommand,
        timeout: Option<Duration>,
        forwarded: bool,
    ) -> Result<CommandResult, SendFailure> {
        if command.command_id.is_empty() {
            command.command_id = uuid::Uuid::new_v4().to_string();
        }
        let timeout = timeout.unwrap_or(self.default_timeout);
        if let Some(outcome) = self.hub.send_local(server_id, command.clone(), timeout).await {
            return outcome.map_err(SendFailure::Unknown);
        }
        let not_connected =
            || Status::from(Error::HostUnreachable(format!("agent for server {server_id} is not connected")));
        if forwarded {
            return Err(SendFailure::NotSent(not_connected()));
        }
        let owner = self.backend.agent_owner(server_id).await.map_err(|e| SendFailure::NotSent(store_status(e)))?;
        let Some(owner) = owner.filter(|o| o.owner_id != self.replica_id) else {
            return Err(SendFailure::NotSent(not_connected()));
        };
        tracing::debug!(server_id, owner = %owner.owner_id, "forwarding command to the owning replica");
        let channel = self.peer(&owner.owner_address).map_err(SendFailure::NotSent)?;
        let mut request = tonic::Request::new(SendCommandRequest {
            server_id: server_id.to_owned(),
            command: Some(command),
            timeout_ms: u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX),
        });
        request.metadata_mut().insert(FORWARDED_HEADER, tonic::metadata::MetadataValue::from_static("1"));
        request.set_timeout(timeout + Duration::from_secs(2));
        let response = SessionStoreClient::new(channel).send_command(request).await.map_err(SendFailure::Unknown)?;
        Ok(response.into_inner())
    }
}
