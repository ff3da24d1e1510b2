//! The `AgentAdmin` gRPC service: host administration behind the admin token (software statements,
//! agent clients, server DNS mappings). The records and their rules live in the store's enrolment and
//! DNS mapping roles ([`switchboard_store::enrolment`], [`switchboard_store::dns`]), shared with
//! session-store (the agent port, the session resolver's names); this service only exposes them to the
//! `switchboard` admin commands.

use std::sync::Arc;

use switchboard_proto::agent_admin_server::AgentAdmin;
use switchboard_proto::{
    AgentClientInfo, DeactivateSoftwareStatementRequest, DeactivateSoftwareStatementResponse,
    GenerateSoftwareStatementRequest, GenerateSoftwareStatementResponse, ListAgentClientsRequest,
    ListAgentClientsResponse, ListSoftwareStatementsRequest, ListSoftwareStatementsResponse, SoftwareStatementInfo,
    UnregisterAgentClientRequest, UnregisterAgentClientResponse,
};
use switchboard_proto::{
    ListServerDnsMappingsRequest, ListServerDnsMappingsResponse, RegisterServerDnsMappingsRequest,
    RegisterServerDnsMappingsResponse,
};
use switchboard_store::enrolment::{clients, statements};
use switchboard_store::{DnsMappings, Enrolment, dns};
use tonic::{Request, Response, Status};

use crate::service::AdminGuard;

/// The tonic `AgentAdmin` implementation of one auth replica.
pub struct AgentAdminService {
    guard: AdminGuard,
    backend: Arc<dyn Enrolment>,
    dns: Arc<dyn DnsMappings>,
}

impl AgentAdminService {
    /// A service over `backend` and `dns`, guarded by the admin token hash in `guard`.
    pub fn new(guard: AdminGuard, backend: Arc<dyn Enrolment>, dns: Arc<dyn DnsMappings>) -> Self {
        Self { guard, backend, dns }
    }
}

#[tonic::async_trait]
impl AgentAdmin for AgentAdminService {
    async fn generate_software_statement(
        &self,
        request: Request<GenerateSoftwareStatementRequest>,
    ) -> Result<Response<GenerateSoftwareStatementResponse>, Status> {
        self.guard.check(request.metadata()).map_err(Status::from)?;
        let statement = statements::generate(self.backend.as_ref()).await?;
        Ok(Response::new(GenerateSoftwareStatementResponse {
            software_statement: statement.text.expose().to_owned(),
            software_statement_id: statement.record.id,
        }))
    }

    async fn list_software_statements(
        &self,
        request: Request<ListSoftwareStatementsRequest>,
    ) -> Result<Response<ListSoftwareStatementsResponse>, Status> {
        self.guard.check(request.metadata()).map_err(Status::from)?;
        let statements = self
            .backend
            .list_software_statements()
            .await
            .map_err(|error| switchboard_common::error::to_status(&error))?
            .into_iter()
            .map(|record| SoftwareStatementInfo {
                software_statement_id: record.id,
                issued_at_unix_ms: record.issued_at_unix_ms,
                active: record.active,
            })
            .collect();
        Ok(Response::new(ListSoftwareStatementsResponse { statements }))
    }

    async fn deactivate_software_statement(
        &self,
        request: Request<DeactivateSoftwareStatementRequest>,
    ) -> Result<Response<DeactivateSoftwareStatementResponse>, Status> {
        self.guard.check(request.metadata()).map_err(Status::from)?;
        let id = statements::deactivate(self.backend.as_ref(), &request.get_ref().software_statement).await?;
        Ok(Response::new(DeactivateSoftwareStatementResponse { software_statement_id: id }))
    }

    async fn list_agent_clients(
        &self,
        request: Request<ListAgentClientsRequest>,
    ) -> Result<Response<ListAgentClientsResponse>, Status> {
        self.guard.check(request.metadata()).map_err(Status::from)?;
        let clients = self
            .backend
            .list_agent_clients()
            .await
            .map_err(|error| switchboard_common::error::to_status(&error))?
            .into_iter()
            .map(|record| AgentClientInfo {
                client_id: record.client_id,
                client_name: record.client_name,
                created_unix_ms: record.created_unix_ms,
                server_id: record.server_id,
                software_statement_id: record.software_statement_id,
            })
            .collect();
        Ok(Response::new(ListAgentClientsResponse { clients }))
    }

    async fn unregister_agent_client(
        &self,
        request: Request<UnregisterAgentClientRequest>,
    ) -> Result<Response<UnregisterAgentClientResponse>, Status> {
        self.guard.check(request.metadata()).map_err(Status::from)?;
        clients::unregister(self.backend.as_ref(), &request.get_ref().client_id).await?;
        Ok(Response::new(UnregisterAgentClientResponse {}))
    }

    async fn register_server_dns_mappings(
        &self,
        request: Request<RegisterServerDnsMappingsRequest>,
    ) -> Result<Response<RegisterServerDnsMappingsResponse>, Status> {
        self.guard.check(request.metadata()).map_err(Status::from)?;
        let mappings = request.into_inner().mappings;
        dns::check(&mappings).map_err(Status::invalid_argument)?;
        let count = u32::try_from(mappings.len()).unwrap_or(u32::MAX);
        self.dns.replace_dns_mappings(mappings).await.map_err(|error| switchboard_common::error::to_status(&error))?;
        tracing::info!(count, "server dns mappings registered");
        Ok(Response::new(RegisterServerDnsMappingsResponse { count }))
    }

    async fn list_server_dns_mappings(
        &self,
        request: Request<ListServerDnsMappingsRequest>,
    ) -> Result<Response<ListServerDnsMappingsResponse>, Status> {
        self.guard.check(request.metadata()).map_err(Status::from)?;
        let mappings =
            self.dns.list_dns_mappings().await.map_err(|error| switchboard_common::error::to_status(&error))?;
        Ok(Response::new(ListServerDnsMappingsResponse { mappings }))
    }
}
