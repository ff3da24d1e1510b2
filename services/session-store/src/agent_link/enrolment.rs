//! The `AgentEnrolment` service on the agent port: an agent registers once with a software statement and
//! receives its own client id and secret (see [`switchboard_store::enrolment::clients`]).

use std::sync::Arc;

use switchboard_proto::agent_enrolment_server::AgentEnrolment;
use switchboard_proto::{RegisterAgentRequest, RegisterAgentResponse};
use tonic::{Request, Response, Status};

use switchboard_store::Backend;
use switchboard_store::enrolment::clients;

/// The tonic `AgentEnrolment` implementation.
pub struct AgentEnrolmentService {
    backend: Arc<dyn Backend>,
}

impl AgentEnrolmentService {
    /// A service registering agent clients in `backend`.
    pub fn new(backend: Arc<dyn Backend>) -> Self {
        Self { backend }
    }
}

#[tonic::async_trait]
impl AgentEnrolment for AgentEnrolmentService {
    async fn register(
        &self,
        request: Request<RegisterAgentRequest>,
    ) -> Result<Response<RegisterAgentResponse>, Status> {
        let request = request.into_inner();
        let client = clients::register(self.backend.as_ref(), &request.software_statement, &request.client_name)
            .await
            .inspect_err(|error| tracing::info!(%error, "agent registration refused"))?;
        Ok(Response::new(RegisterAgentResponse {
            client_id: client.record.client_id,
            client_secret: client.client_secret.expose().to_owned(),
            client_id_issued_at_unix_ms: client.record.created_unix_ms,
        }))
    }
}
