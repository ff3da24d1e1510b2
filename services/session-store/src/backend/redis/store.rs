//! [`Backend`] for [`RedisBackend`]: argument marshalling around the scripts.

use async_trait::async_trait;
use prost::Message;
use switchboard_common::time::now_ms;
use switchboard_proto::{ServerRecord, SessionRecord, SessionState};

use super::{RedisBackend, fence_args, reply};
use crate::backend::{
    AgentOwnership, ApiClientRecord, AssignOutcome, AssignRejection, AuthServerRecord, Backend, BackendError,
    BackendResult, Fence, SigningKeyRecord,
};

/// Substate of a session just assigned to a host.
const PENDING_PREPARATION: &str = "PENDING_PREPARATION";
/// Optimistic attempts at an assignment whose session changed meanwhile.
const ASSIGN_ATTEMPTS: usize = 16;

/// The side fields the scripts keep next to a session's bytes:
/// server, state, type, owner, end time (for DELETED retention).
fn session_side(session: &SessionRecord) -> [String; 5] {
    let ended = match session.state() {
        SessionState::Deleted if session.ended_unix_ms > 0 => session.ended_unix_ms,
        SessionState::Deleted => now_ms(),
        _ => 0,
    };
    [
        session.server_id.clone(),
        session.state.to_string(),
        session.r#type.to_string(),
        session.owner.clone(),
        ended.to_string(),
    ]
}

fn flag(value: bool) -> &'static str {
    if value { "1" } else { "0" }
}

fn rejection(word: &str) -> Option<AssignRejection> {
    use AssignRejection::*;
    [
        ServerNotFound,
        ServerClosed,
        ServerUnreachable,
        DcvUnhealthy,
        ConsoleTaken,
        VirtualLimit,
        UserLimit,
        SessionNotPlaceable,
    ]
    .into_iter()
    .find(|r| r.as_str() == word)
}

fn unexpected(what: &str, word: &str) -> BackendError {
    BackendError::Corrupt(format!("unexpected {what} script status {word}"))
}

impl RedisBackend {
    async fn read_sessions(&self, mode: &str, args: &[&str]) -> BackendResult<Vec<SessionRecord>> {
        let mut invocation = self.scripts.sessions_read.prepare_invoke();
        invocation.arg(&self.prefix).arg(mode);
        for arg in args {
            invocation.arg(*arg);
        }
        reply::sessions(self.run(&invocation).await?)
    }

    async fn read_servers(&self, mode: &str, args: &[&str]) -> BackendResult<Vec<ServerRecord>> {
        let mut invocation = self.scripts.servers_read.prepare_invoke();
        invocation.arg(&self.prefix).arg(mode);
        for arg in args {
            invocation.arg(*arg);
        }
        reply::servers(self.run(&invocation).await?)
    }

    /// Every record of a prost-encoded hash, in field order.
    async fn hash_records<M: Message + Default>(&self, name: &str) -> BackendResult<Vec<(String, M)>> {
        let entries: Vec<(String, Vec<u8>)> = self.query(redis::cmd("HGETALL").arg(self.key(name))).await?;
        let mut records = entries
            .into_iter()
            .map(|(id, bytes)| {
                let record = M::decode(bytes.as_slice()).map_err(|e| BackendError::Corrupt(format!("{id}: {e}")))?;
                Ok((id, record))
            })
            .collect::<BackendResult<Vec<_>>>()?;
        records.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(records)
    }
}

#[async_trait]
impl Backend for RedisBackend {
    async fn insert_session(&self, mut session: SessionRecord, fence: Option<&Fence>) -> BackendResult<SessionRecord> {
        session.revision = 1;
        let mut invocation = self.scripts.session_insert.prepare_invoke();
        invocation.arg(&self.prefix).arg(&session.id).arg(session.encode_to_vec());
        for field in session_side(&session) {
            invocation.arg(field);
        }
        fence_args(&mut invocation, fence);
        let (word, _) = reply::status(self.run(&invocation).await?)?;
        match word.as_str() {
            "ok" => Ok(session),
            "exists" => Err(BackendError::AlreadyExists(format!("session {}", session.id))),
            "fenced" => Err(fence.map_or_else(|| unexpected("insert", &word), Fence::refused)),
            _ => Err(unexpected("insert", &word)),
        }
    }

    async fn get_sessions(&self, ids: &[String]) -> BackendResult<Vec<SessionRecord>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
        self.read_sessions("ids", &ids).await
    }

    async fn list_sessions(&self, after_id: &str, limit: usize) -> BackendResult<Vec<SessionRecord>> {
        self.read_sessions("page", &[after_id, &limit.to_string()]).await
    }

    async fn sessions_on_server(&self, server_id: &str) -> BackendResult<Vec<SessionRecord>> {
        self.read_sessions("server", &[server_id]).await
    }

    async fn update_session(
        &self,
        mut session: SessionRecord,
        expected_revision: u64,
        fence: Option<&Fence>,
    ) -> BackendResult<SessionRecord> {
        session.revision = expected_revision + 1;
        let mut invocation = self.scripts.session_update.prepare_invoke();
        invocation.arg(&self.prefix).arg(&session.id).arg(expected_revision.to_string()).arg(session.encode_to_vec());
        for field in session_side(&session) {
            invocation.arg(field);
        }
        fence_args(&mut invocation, fence);
        let (word, _) = reply::status(self.run(&invocation).await?)?;
        match word.as_str() {
            "ok" => Ok(session),
            "missing" => Err(BackendError::NotFound(format!("session {}", session.id))),
            "conflict" => Err(BackendError::Conflict(format!("session {}", session.id))),
            "fenced" => Err(fence.map_or_else(|| unexpected("update", &word), Fence::refused)),
            _ => Err(unexpected("update", &word)),
        }
    }

    async fn remove_session(&self, id: &str) -> BackendResult<()> {
        let mut invocation = self.scripts.session_remove.prepare_invoke();
        invocation.arg(&self.prefix).arg(id);
        self.run(&invocation).await.map(|_| ())
    }

    async fn remove_deleted_sessions(&self, ended_before_ms: i64, limit: usize) -> BackendResult<usize> {
        let mut invocation = self.scripts.sessions_expire.prepare_invoke();
        invocation.arg(&self.prefix).arg(ended_before_ms).arg(limit);
        let removed = reply::int(&self.run(&invocation).await?)?;
        Ok(usize::try_from(removed).unwrap_or_default())
    }

    async fn assign_session(&self, session_id: &str, server_id: &str) -> BackendResult<AssignOutcome> {
        for _ in 0..ASSIGN_ATTEMPTS {
            let Some(mut session) = self.get_sessions(&[session_id.to_owned()]).await?.pop() else {
                return Ok(AssignOutcome::Rejected(AssignRejection::SessionNotPlaceable));
            };
            let expected_revision = session.revision;
            session.server_id = server_id.to_owned();
            session.substate = PENDING_PREPARATION.to_owned();
            session.revision = expected_revision + 1;
            let mut invocation = self.scripts.session_assign.prepare_invoke();
            invocation
                .arg(&self.prefix)
                .arg(session_id)
                .arg(server_id)
                .arg(expected_revision.to_string())
                .arg(session.encode_to_vec());
            let (word, _) = reply::status(self.run(&invocation).await?)?;
            match word.as_str() {
                "ok" => return Ok(AssignOutcome::Assigned(session)),
                // The session changed between the read and the script: read again.
                "retry" => continue,
                other => {
                    let reason = rejection(other).ok_or_else(|| unexpected("assign", other))?;
                    return Ok(AssignOutcome::Rejected(reason));
                }
            }
        }
        Err(BackendError::Conflict(format!("session {session_id} kept changing during assignment")))
    }

    async fn upsert_server_report(
        &self,
        report: ServerRecord,
        default_open: bool,
        fence: Option<&Fence>,
    ) -> BackendResult<ServerRecord> {
        let mut invocation = self.scripts.server_upsert.prepare_invoke();
        invocation
            .arg(&self.prefix)
            .arg(&report.id)
            .arg(report.encode_to_vec())
            .arg(flag(report.reachable))
            .arg(flag(report.dcv_healthy))
            .arg(report.max_virtual_sessions)
            .arg(report.max_concurrent_sessions_per_user)
            .arg(flag(default_open));
        fence_args(&mut invocation, fence);
        let (word, rest) = reply::status(self.run(&invocation).await?)?;
        match word.as_str() {
            "ok" => reply::server(&reply::array(rest.into_iter().next().unwrap_or_default())?),
            "fenced" => Err(fence.map_or_else(|| unexpected("report", &word), Fence::refused)),
            _ => Err(unexpected("report", &word)),
        }
    }

    async fn get_servers(&self, ids: &[String]) -> BackendResult<Vec<ServerRecord>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
        self.read_servers("ids", &ids).await
    }

    async fn list_servers(&self, after_id: &str, limit: usize) -> BackendResult<Vec<ServerRecord>> {
        self.read_servers("page", &[after_id, &limit.to_string()]).await
    }

    async fn set_server_open(&self, server_id: &str, open: bool) -> BackendResult<ServerRecord> {
        let mut invocation = self.scripts.server_set_open.prepare_invoke();
        invocation.arg(&self.prefix).arg(server_id).arg(flag(open));
        let (word, rest) = reply::status(self.run(&invocation).await?)?;
        match word.as_str() {
            "ok" => reply::server(&reply::array(rest.into_iter().next().unwrap_or_default())?),
            "missing" => Err(BackendError::NotFound(format!("server {server_id}"))),
            _ => Err(unexpected("set open", &word)),
        }
    }

    async fn remove_server(&self, server_id: &str) -> BackendResult<()> {
        let mut invocation = self.scripts.server_remove.prepare_invoke();
        invocation.arg(&self.prefix).arg(server_id).arg("remove").arg("");
        self.run(&invocation).await.map(|_| ())
    }

    async fn forget_server(&self, server_id: &str, expected_revision: u64) -> BackendResult<()> {
        let mut invocation = self.scripts.server_remove.prepare_invoke();
        invocation.arg(&self.prefix).arg(server_id).arg("forget").arg(expected_revision.to_string());
        match reply::text(&self.run(&invocation).await?)?.as_str() {
            "ok" => Ok(()),
            "conflict" => Err(BackendError::Conflict(format!("server {server_id}"))),
            "fenced" => Err(Fence::unowned(server_id).refused()),
            other => Err(unexpected("forget", other)),
        }
    }

    async fn claim_agent(
        &self,
        server_id: &str,
        owner_id: &str,
        owner_address: &str,
        lease_ms: i64,
    ) -> BackendResult<AgentOwnership> {
        let mut invocation = self.scripts.agent_claim.prepare_invoke();
        invocation.arg(&self.prefix).arg(server_id).arg(owner_id).arg(owner_address).arg(lease_ms);
        let fields = reply::array(self.run(&invocation).await?)?;
        let [epoch, lease_until] = fields.as_slice() else { return Err(unexpected("claim", "shape")) };
        Ok(AgentOwnership {
            owner_id: owner_id.to_owned(),
            owner_address: owner_address.to_owned(),
            epoch: u64::try_from(reply::int(epoch)?).unwrap_or_default(),
            lease_until_ms: reply::int(lease_until)?,
        })
    }

    async fn renew_agent(&self, server_id: &str, epoch: u64, lease_ms: i64) -> BackendResult<AgentOwnership> {
        let mut invocation = self.scripts.agent_renew.prepare_invoke();
        invocation.arg(&self.prefix).arg(server_id).arg(epoch.to_string()).arg(lease_ms);
        ownership(reply::array(self.run(&invocation).await?)?)?
            .ok_or_else(|| BackendError::Conflict(format!("agent {server_id} epoch {epoch}")))
    }

    async fn agent_owner(&self, server_id: &str) -> BackendResult<Option<AgentOwnership>> {
        let mut invocation = self.scripts.agent_get.prepare_invoke();
        invocation.arg(&self.prefix).arg(server_id);
        ownership(reply::array(self.run(&invocation).await?)?)
    }

    async fn release_agent(&self, server_id: &str, epoch: u64) -> BackendResult<()> {
        let mut invocation = self.scripts.agent_release.prepare_invoke();
        invocation.arg(&self.prefix).arg(server_id).arg(epoch.to_string());
        self.run(&invocation).await.map(|_| ())
    }

    async fn insert_api_client(&self, client: ApiClientRecord) -> BackendResult<()> {
        let command = redis::cmd("HSETNX")
            .arg(self.key("api-clients"))
            .arg(&client.client_id)
            .arg(client.encode_to_vec())
            .to_owned();
        match self.query::<i64>(&command).await? {
            1 => Ok(()),
            _ => Err(BackendError::AlreadyExists(format!("api client {}", client.client_id))),
        }
    }

    async fn get_api_client(&self, client_id: &str) -> BackendResult<Option<ApiClientRecord>> {
        let bytes: Option<Vec<u8>> = self.query(redis::cmd("HGET").arg(self.key("api-clients")).arg(client_id)).await?;
        bytes
            .map(|bytes| {
                ApiClientRecord::decode(bytes.as_slice())
                    .map_err(|e| BackendError::Corrupt(format!("{client_id}: {e}")))
            })
            .transpose()
    }

    async fn list_api_clients(&self) -> BackendResult<Vec<ApiClientRecord>> {
        Ok(self.hash_records("api-clients").await?.into_iter().map(|(_, client)| client).collect())
    }

    async fn remove_api_client(&self, client_id: &str) -> BackendResult<bool> {
        let removed: i64 = self.query(redis::cmd("HDEL").arg(self.key("api-clients")).arg(client_id)).await?;
        Ok(removed == 1)
    }

    async fn put_signing_key(&self, key: SigningKeyRecord) -> BackendResult<()> {
        let command =
            redis::cmd("HSET").arg(self.key("signing-keys")).arg(&key.kid).arg(key.encode_to_vec()).to_owned();
        self.query::<i64>(&command).await.map(|_| ())
    }

    async fn list_signing_keys(&self) -> BackendResult<Vec<SigningKeyRecord>> {
        let mut keys: Vec<SigningKeyRecord> =
            self.hash_records("signing-keys").await?.into_iter().map(|(_, key)| key).collect();
        keys.sort_by(|a, b| a.created_unix_ms.cmp(&b.created_unix_ms).then_with(|| a.kid.cmp(&b.kid)));
        Ok(keys)
    }

    async fn remove_signing_key(&self, kid: &str) -> BackendResult<()> {
        self.query::<i64>(redis::cmd("HDEL").arg(self.key("signing-keys")).arg(kid)).await.map(|_| ())
    }

    async fn put_auth_server(&self, server: AuthServerRecord) -> BackendResult<()> {
        let command =
            redis::cmd("HSET").arg(self.key("auth-servers")).arg(&server.url).arg(server.encode_to_vec()).to_owned();
        self.query::<i64>(&command).await.map(|_| ())
    }

    async fn list_auth_servers(&self) -> BackendResult<Vec<AuthServerRecord>> {
        let mut servers: Vec<AuthServerRecord> =
            self.hash_records("auth-servers").await?.into_iter().map(|(_, server)| server).collect();
        servers.sort_by(|a, b| a.url.cmp(&b.url));
        Ok(servers)
    }

    async fn remove_auth_server(&self, url: &str) -> BackendResult<bool> {
        let removed: i64 = self.query(redis::cmd("HDEL").arg(self.key("auth-servers")).arg(url)).await?;
        Ok(removed == 1)
    }
}

/// An ownership from an `owner, address, epoch, lease_until` reply (empty: none).
fn ownership(fields: Vec<redis::Value>) -> BackendResult<Option<AgentOwnership>> {
    let [owner, address, epoch, lease_until] = fields.as_slice() else {
        return if fields.is_empty() { Ok(None) } else { Err(unexpected("ownership", "shape")) };
    };
    Ok(Some(AgentOwnership {
        owner_id: reply::text(owner)?,
        owner_address: reply::text(address)?,
        epoch: u64::try_from(reply::int(epoch)?).unwrap_or_default(),
        lease_until_ms: reply::int(lease_until)?,
    }))
}
