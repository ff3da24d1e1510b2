//! The agent enrolment admin commands, compatible in name and output with the original broker's:
//! `generate-software-statement`, `describe-software-statements`, `deactivate-software-statement`,
//! `describe-agent-clients`, `unregister-agent-client`. They call the auth service's `AgentAdmin` RPCs over
//! the admin channel, like `register-api-client`.

use clap::Subcommand;
use serde_json::json;

use crate::admin::explain;
use crate::cli::Target;

/// Agent enrolment commands.
#[derive(Debug, Subcommand)]
pub enum AgentCommand {
    /// Generates a software statement agents register with (printed once: only its hash is stored).
    GenerateSoftwareStatement {
        #[command(flatten)]
        target: Target,
    },
    /// Lists software statements (ids, issue time, active state).
    DescribeSoftwareStatements {
        #[command(flatten)]
        target: Target,
    },
    /// Deactivates a software statement: agents can no longer register with it.
    DeactivateSoftwareStatement {
        /// The statement, or its id as describe-software-statements prints it.
        #[arg(long)]
        software_statement: String,
        #[command(flatten)]
        target: Target,
    },
    /// Lists registered agent clients and the server ids they are bound to.
    DescribeAgentClients {
        #[command(flatten)]
        target: Target,
    },
    /// Unregisters an agent client: its agent can no longer connect.
    UnregisterAgentClient {
        /// The agent client's id.
        #[arg(long)]
        client_id: String,
        #[command(flatten)]
        target: Target,
    },
}

fn time(unix_ms: i64) -> String {
    switchboard_common::time::rfc3339_ms(unix_ms).unwrap_or_default()
}

/// Runs one agent enrolment command.
pub async fn run(command: AgentCommand) -> anyhow::Result<()> {
    match command {
        AgentCommand::GenerateSoftwareStatement { target } => {
            let channel = target.channel()?;
            let request = switchboard_proto::GenerateSoftwareStatementRequest {};
            let response = channel
                .agent_admin_client()?
                .generate_software_statement(request)
                .await
                .map_err(|status| explain(status, &channel.auth_url))?
                .into_inner();
            println!("software-statement: {}", response.software_statement);
        }
        AgentCommand::DescribeSoftwareStatements { target } => {
            let channel = target.channel()?;
            let request = switchboard_proto::ListSoftwareStatementsRequest {};
            let response = channel
                .agent_admin_client()?
                .list_software_statements(request)
                .await
                .map_err(|status| explain(status, &channel.auth_url))?
                .into_inner();
            let listed: Vec<_> = response
                .statements
                .iter()
                .map(|s| {
                    json!({
                        "software-statement-id": s.software_statement_id,
                        "issued-at": time(s.issued_at_unix_ms),
                        "is-active": s.active.to_string(),
                    })
                })
                .collect();
            println!("Software Statements\n{}", serde_json::to_string_pretty(&listed)?);
        }
        AgentCommand::DeactivateSoftwareStatement { software_statement, target } => {
            let channel = target.channel()?;
            let request = switchboard_proto::DeactivateSoftwareStatementRequest { software_statement };
            let response = channel
                .agent_admin_client()?
                .deactivate_software_statement(request)
                .await
                .map_err(|status| explain(status, &channel.auth_url))?
                .into_inner();
            println!("Software statement {} deactivated", response.software_statement_id);
        }
        AgentCommand::DescribeAgentClients { target } => {
            let channel = target.channel()?;
            let response = channel
                .agent_admin_client()?
                .list_agent_clients(switchboard_proto::ListAgentClientsRequest {})
                .await
                .map_err(|status| explain(status, &channel.auth_url))?
                .into_inner();
            let listed: Vec<_> = response
                .clients
                .iter()
                .map(|c| {
                    json!({
                        "name": c.client_name,
                        "id": c.client_id,
                        "active": true,
                        "server-id": c.server_id,
                        "software-statement-id": c.software_statement_id,
                        "registered-at": time(c.created_unix_ms),
                    })
                })
                .collect();
            println!("Session manager agent clients\n{}", serde_json::to_string_pretty(&listed)?);
        }
        AgentCommand::UnregisterAgentClient { client_id, target } => {
            let channel = target.channel()?;
            let request = switchboard_proto::UnregisterAgentClientRequest { client_id: client_id.clone() };
            channel
                .agent_admin_client()?
                .unregister_agent_client(request)
                .await
                .map_err(|status| explain(status, &channel.auth_url))?;
            println!("agent client {client_id} unregistered");
        }
    }
    Ok(())
}
