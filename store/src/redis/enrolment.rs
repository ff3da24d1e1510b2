//! Agent enrolment and single-use tokens in Redis: software statements, agent
//! clients with their server bindings, and used token ids. The multi-key
//! steps (register while the statement is active, bind, remove with the
//! binding, deactivate) are scripts; reads are plain commands.

use std::collections::{HashMap, HashSet};

use prost::Message;
use switchboard_common::time::now_ms;

use super::{RedisBackend, reply};
use crate::{AgentClientRecord, BackendError, BackendResult, SoftwareStatementRecord};

const STATEMENTS: &str = "software-statements";
const INACTIVE: &str = "software-statements-inactive";
const CLIENTS: &str = "agent-clients";
const CLIENT_SERVERS: &str = "agent-client-servers";

fn decode<M: Message + Default>(id: &str, bytes: &[u8]) -> BackendResult<M> {
    M::decode(bytes).map_err(|e| BackendError::Corrupt(format!("{id}: {e}")))
}

impl RedisBackend {
    async fn script_status(&self, script: &redis::Script, args: &[&[u8]]) -> BackendResult<String> {
        let mut invocation = self.invoke(script);
        for arg in args {
            invocation.arg(*arg);
        }
        reply::text(&self.run_durable(&invocation).await?)
    }

    pub(super) async fn insert_statement(&self, statement: SoftwareStatementRecord) -> BackendResult<()> {
        let command =
            redis::cmd("HSETNX").arg(self.key(STATEMENTS)).arg(&statement.id).arg(statement.encode_to_vec()).to_owned();
        match self.query_durable::<i64>(&command).await? {
            1 => Ok(()),
            _ => Err(BackendError::AlreadyExists(format!("software statement {}", statement.id))),
        }
    }

    pub(super) async fn get_statement(&self, id: &str) -> BackendResult<Option<SoftwareStatementRecord>> {
        let bytes: Option<Vec<u8>> = self.query(redis::cmd("HGET").arg(self.key(STATEMENTS)).arg(id)).await?;
        let Some(bytes) = bytes else { return Ok(None) };
        let mut statement: SoftwareStatementRecord = decode(id, &bytes)?;
        let inactive: bool = self.query(redis::cmd("SISMEMBER").arg(self.key(INACTIVE)).arg(id)).await?;
        statement.active = !inactive;
        Ok(Some(statement))
    }

    pub(super) async fn list_statements(&self) -> BackendResult<Vec<SoftwareStatementRecord>> {
        let inactive: HashSet<String> = self.query(redis::cmd("SMEMBERS").arg(self.key(INACTIVE))).await?;
        let mut statements: Vec<SoftwareStatementRecord> = self
            .hash_records::<SoftwareStatementRecord>(STATEMENTS)
            .await?
            .into_iter()
            .map(|(id, mut statement)| {
                statement.active = !inactive.contains(&id);
                statement
            })
            .collect();
        statements.sort_by(|a, b| a.issued_at_unix_ms.cmp(&b.issued_at_unix_ms).then_with(|| a.id.cmp(&b.id)));
        Ok(statements)
    }

    pub(super) async fn deactivate_statement(&self, id: &str) -> BackendResult<bool> {
        match self.script_status(&self.scripts.statement_deactivate, &[id.as_bytes()]).await?.as_str() {
            "OK" => Ok(true),
            "NOTFOUND" => Ok(false),
            other => Err(BackendError::Corrupt(format!("unexpected statement_deactivate status {other}"))),
        }
    }

    pub(super) async fn register_client(&self, client: AgentClientRecord) -> BackendResult<()> {
        let stored = AgentClientRecord { server_id: String::new(), ..client.clone() }.encode_to_vec();
        let args: [&[u8]; 3] = [client.client_id.as_bytes(), client.software_statement_id.as_bytes(), &stored];
        match self.script_status(&self.scripts.agent_client_register, &args).await?.as_str() {
            "OK" => Ok(()),
            "NOTFOUND" => {
                Err(BackendError::NotFound(format!("active software statement {}", client.software_statement_id)))
            }
            "EXISTS" => Err(BackendError::AlreadyExists(format!("agent client {}", client.client_id))),
            other => Err(BackendError::Corrupt(format!("unexpected agent_client_register status {other}"))),
        }
    }

    pub(super) async fn get_client(&self, client_id: &str) -> BackendResult<Option<AgentClientRecord>> {
        let bytes: Option<Vec<u8>> = self.query(redis::cmd("HGET").arg(self.key(CLIENTS)).arg(client_id)).await?;
        let Some(bytes) = bytes else { return Ok(None) };
        let mut client: AgentClientRecord = decode(client_id, &bytes)?;
        let server: Option<String> =
            self.query(redis::cmd("HGET").arg(self.key(CLIENT_SERVERS)).arg(client_id)).await?;
        client.server_id = server.unwrap_or_default();
        Ok(Some(client))
    }

    pub(super) async fn list_clients(&self) -> BackendResult<Vec<AgentClientRecord>> {
        let servers: HashMap<String, String> = self.query(redis::cmd("HGETALL").arg(self.key(CLIENT_SERVERS))).await?;
        Ok(self
            .hash_records::<AgentClientRecord>(CLIENTS)
            .await?
            .into_iter()
            .map(|(id, mut client)| {
                client.server_id = servers.get(&id).cloned().unwrap_or_default();
                client
            })
            .collect())
    }

    pub(super) async fn remove_client(&self, client_id: &str) -> BackendResult<bool> {
        match self.script_status(&self.scripts.agent_client_remove, &[client_id.as_bytes()]).await?.as_str() {
            "OK" => Ok(true),
            "NOTFOUND" => Ok(false),
            other => Err(BackendError::Corrupt(format!("unexpected agent_client_remove status {other}"))),
        }
    }

    pub(super) async fn bind_client(&self, client_id: &str, server_id: &str) -> BackendResult<()> {
        let args: [&[u8]; 2] = [client_id.as_bytes(), server_id.as_bytes()];
        match self.script_status(&self.scripts.agent_client_bind, &args).await?.as_str() {
            "OK" => Ok(()),
            "NOTFOUND" => Err(BackendError::NotFound(format!("agent client {client_id}"))),
            "CONFLICT" => Err(BackendError::Conflict(format!("agent client {client_id} and server {server_id}"))),
            other => Err(BackendError::Corrupt(format!("unexpected agent_client_bind status {other}"))),
        }
    }

    pub(super) async fn token_once(&self, token_id: &str, expires_at_ms: i64) -> BackendResult<bool> {
        // At least one millisecond: an already expired id is recorded briefly rather than not at all.
        let ttl_ms = (expires_at_ms - now_ms()).max(1);
        let command = redis::cmd("SET")
            .arg(self.key(&format!("token-used:{token_id}")))
            .arg(1)
            .arg("NX")
            .arg("PX")
            .arg(ttl_ms)
            .to_owned();
        let set: Option<String> = self.query_durable(&command).await?;
        Ok(set.is_some())
    }
}
