//! [`Backend`] for [`RedisBackend`]: argument marshalling around the scripts.

use async_trait::async_trait;
use prost::Message;
use switchboard_common::time::now_ms;
use switchboard_proto::{
    DeadLetterRecord, DnsMappingRecord, DnsMappingSet, EventRecord, QueuedRequest, ServerRecord, SessionRecord,
    SessionState, WebhookRecord,
};

use super::{RedisBackend, fence_args, reply};
use crate::queue::{PLACEMENT_RATE_SAMPLES, PLACEMENT_RATE_WINDOW_MS};
use crate::{
    AgentClientRecord, AgentOwnership, ApiClientRecord, ApiRegistry, AssignOutcome, AssignRejection, AuthServerRecord,
    BackendError, BackendResult, CloseOutcome, CreateQueue, DnsMappings, Enrolment, EventPage, Events, Fence,
    QueueDepth, QueuePosition, QueuePush, Reachable, Secrets, ServerChanges, Servers, Sessions, SigningKeyRecord,
    SoftwareStatementRecord, StreamOwnership, Webhooks,
};

/// The side fields the scripts keep next to a session's bytes:
/// server, state, type, owner, end time (for DELETED retention).
fn session_side(session: &SessionRecord) -> [String; 6] {
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
        session.state_reason.clone(),
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
    /// Inserts `sessions` (revision 1) in one `session_insert.lua` call: all, or none.
    async fn insert(
        &self,
        mut sessions: Vec<SessionRecord>,
        fence: Option<&Fence>,
    ) -> BackendResult<Vec<SessionRecord>> {
        let mut invocation = self.invoke(&self.scripts.session_insert);

        fence_args(&mut invocation, fence);
        for session in &mut sessions {
            session.revision = 1;
            invocation.arg(&session.id).arg(session.encode_to_vec());
            for field in session_side(session) {
                invocation.arg(field);
            }
        }
        let (word, rest) = reply::status(self.run(&invocation).await?)?;
        match word.as_str() {
            "ok" => Ok(sessions),
            "exists" => {
                let id = rest.first().map(reply::text).transpose()?.unwrap_or_default();
                Err(BackendError::AlreadyExists(format!("session {id}")))
            }
            "fenced" => Err(fence.map_or_else(|| unexpected("insert", &word), Fence::refused)),
            _ => Err(unexpected("insert", &word)),
        }
    }

    /// Runs the queue script in `mode` with `args`; the status word and the
    /// entries it returned.
    async fn queue_call(&self, mode: &str, args: &[&str]) -> BackendResult<(String, Vec<QueuedRequest>)> {
        let mut invocation = self.invoke(&self.scripts.queue);
        invocation.arg(mode);
        for arg in args {
            invocation.arg(*arg);
        }
        let (word, rest) = reply::status(self.run(&invocation).await?)?;
        Ok((word, reply::queued(&rest)?))
    }

    async fn read_sessions(&self, mode: &str, args: &[&str]) -> BackendResult<Vec<SessionRecord>> {
        let mut invocation = self.invoke(&self.scripts.sessions_read);
        invocation.arg(mode);
        for arg in args {
            invocation.arg(*arg);
        }
        reply::sessions(self.run(&invocation).await?)
    }

    async fn read_servers(&self, mode: &str, args: &[&str]) -> BackendResult<Vec<ServerRecord>> {
        let mut invocation = self.invoke(&self.scripts.servers_read);
        invocation.arg(mode);
        for arg in args {
            invocation.arg(*arg);
        }
        reply::servers(self.run(&invocation).await?)
    }

    /// Runs `server_set_open.lua` in `mode` (with `deadline_ms` for the drain modes): its status word and
    /// the rest of its reply.
    async fn server_state(
        &self,
        server_id: &str,
        mode: &str,
        deadline_ms: i64,
    ) -> BackendResult<(String, Vec<redis::Value>)> {
        let mut invocation = self.invoke(&self.scripts.server_set_open);
        invocation.arg(server_id).arg(mode).arg(deadline_ms.max(0).to_string());
        reply::status(self.run_durable(&invocation).await?)
    }

    /// Every record of a prost-encoded hash, in field order.
    pub(super) async fn hash_records<M: Message + Default>(&self, name: &str) -> BackendResult<Vec<(String, M)>> {
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
impl Sessions for RedisBackend {
    async fn insert_session(&self, session: SessionRecord, fence: Option<&Fence>) -> BackendResult<SessionRecord> {
        let mut stored = self.insert(vec![session], fence).await?;
        stored.pop().ok_or_else(|| unexpected("insert", "no record"))
    }

    async fn insert_sessions(&self, sessions: Vec<SessionRecord>) -> BackendResult<Vec<SessionRecord>> {
        if let Some(error) = crate::sessions::check_insert_batch(&sessions) {
            return Err(error);
        }
        if sessions.is_empty() {
            return Ok(sessions);
        }
        self.insert(sessions, None).await
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
        let mut invocation = self.invoke(&self.scripts.session_update);
        invocation.arg(&session.id).arg(expected_revision.to_string()).arg(session.encode_to_vec());
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
        let mut invocation = self.invoke(&self.scripts.session_remove);
        invocation.arg(id);
        self.run(&invocation).await.map(|_| ())
    }

    async fn remove_deleted_sessions(&self, ended_before_ms: i64, limit: usize) -> BackendResult<usize> {
        let mut invocation = self.invoke(&self.scripts.sessions_expire);
        invocation.arg(ended_before_ms).arg(limit);
        let removed = reply::int(&self.run(&invocation).await?)?;
        Ok(usize::try_from(removed).unwrap_or_default())
    }

    async fn assign_session(&self, session_id: &str, server_id: &str) -> BackendResult<AssignOutcome> {
        let mut invocation = self.invoke(&self.scripts.session_assign);
        invocation.arg(session_id).arg(server_id);
        let (word, rest) = reply::status(self.run(&invocation).await?)?;
        match word.as_str() {
            "ok" => Ok(AssignOutcome::Assigned(reply::assigned_session(session_id, &rest, server_id)?)),
            other => Ok(AssignOutcome::Rejected(rejection(other).ok_or_else(|| unexpected("assign", other))?)),
        }
    }

    async fn owner_session_counts(&self, owner: &str, server_ids: &[String]) -> BackendResult<Vec<u32>> {
        if let Some(error) = crate::sessions::check_owner_counts_ids(server_ids) {
            return Err(error);
        }
        if server_ids.is_empty() {
            return Ok(Vec::new());
        }
        // The counters `count` (prelude.lua) keeps and session_assign.lua
        // compares with the limit: field `u:<owner>` of `server:<id>:counts`,
        // absent when 0. One pipelined round trip of HGETs.
        let field = format!("u:{owner}");
        let mut pipeline = redis::pipe();
        for id in server_ids {
            pipeline.cmd("HGET").arg(self.key(&format!("server:{id}:counts"))).arg(&field);
        }
        let mut connection = self.connection.clone();
        let counts: Vec<Option<i64>> = pipeline.query_async(&mut connection).await.map_err(super::unavailable)?;
        if counts.len() != server_ids.len() {
            return Err(BackendError::Corrupt(format!(
                "owner_session_counts: {} replies for {} servers",
                counts.len(),
                server_ids.len()
            )));
        }
        Ok(counts
            .into_iter()
            .map(|count| u32::try_from(count.unwrap_or_default().max(0)).unwrap_or(u32::MAX))
            .collect())
    }
}

#[async_trait]
impl Servers for RedisBackend {
    async fn upsert_server_report(
        &self,
        report: ServerRecord,
        default_open: bool,
        fence: Option<&Fence>,
    ) -> BackendResult<ServerRecord> {
        let mut invocation = self.invoke(&self.scripts.server_upsert);
        invocation
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
        let mode = if open { "open" } else { "close" };
        let (word, rest) = self.server_state(server_id, mode, 0).await?;
        match word.as_str() {
            "ok" => reply::server(&reply::array(rest.into_iter().next().unwrap_or_default())?),
            "missing" => Err(BackendError::NotFound(format!("server {server_id}"))),
            _ => Err(unexpected("set open", &word)),
        }
    }

    async fn close_server(&self, server_id: &str, drain_deadline_unix_ms: i64) -> BackendResult<CloseOutcome> {
        let (word, rest) = self.server_state(server_id, "gentle", drain_deadline_unix_ms).await?;
        let view = |rest: Vec<redis::Value>| reply::server(&reply::array(rest.into_iter().next().unwrap_or_default())?);
        match word.as_str() {
            "closed" => Ok(CloseOutcome::Closed(view(rest)?)),
            "draining" => Ok(CloseOutcome::Draining(view(rest)?)),
            "busy" => Ok(CloseOutcome::HasSessions),
            "missing" => Err(BackendError::NotFound(format!("server {server_id}"))),
            _ => Err(unexpected("close", &word)),
        }
    }

    async fn finish_drain(&self, server_id: &str, drain_deadline_unix_ms: i64) -> BackendResult<bool> {
        if drain_deadline_unix_ms <= 0 {
            return Ok(false);
        }
        let (word, _) = self.server_state(server_id, "finish", drain_deadline_unix_ms).await?;
        match word.as_str() {
            "ok" => Ok(true),
            "no" => Ok(false),
            _ => Err(unexpected("finish drain", &word)),
        }
    }

    async fn remove_server(&self, server_id: &str) -> BackendResult<()> {
        let mut invocation = self.invoke(&self.scripts.server_remove);
        invocation.arg(server_id).arg("remove").arg("");
        self.run(&invocation).await.map(|_| ())
    }

    async fn forget_server(&self, server_id: &str, expected_revision: u64) -> BackendResult<()> {
        let mut invocation = self.invoke(&self.scripts.server_remove);
        invocation.arg(server_id).arg("forget").arg(expected_revision.to_string());
        match reply::text(&self.run(&invocation).await?)?.as_str() {
            "ok" => Ok(()),
            "conflict" => Err(BackendError::Conflict(format!("server {server_id}"))),
            "fenced" => Err(Fence::unowned(server_id).refused()),
            other => Err(unexpected("forget", other)),
        }
    }

    async fn server_changes(&self, after_revision: u64, limit: usize) -> BackendResult<ServerChanges> {
        let mut invocation = self.invoke(&self.scripts.server_changes);
        let fresh_generation = uuid::Uuid::new_v4().to_string();
        invocation.arg(after_revision.to_string()).arg(limit.max(1)).arg(fresh_generation);
        let fields = reply::array(self.run(&invocation).await?)?;
        let [generation, current, more, rows @ ..] = fields.as_slice() else {
            return Err(unexpected("server changes", "shape"));
        };
        let mut changes = ServerChanges {
            generation: reply::text(generation)?,
            revision: u64::try_from(reply::int(current)?).unwrap_or_default(),
            more: reply::text(more)? == "1",
            ..Default::default()
        };
        let mut last = None;
        for row in rows.chunks_exact(9) {
            last = Some(reply::text(&row[1])?.parse::<f64>().map_err(|_| unexpected("server changes", "revision"))?);
            if reply::text(&row[2])? == "1" {
                changes.servers.push(reply::server(&[
                    row[0].clone(),
                    row[3].clone(),
                    row[4].clone(),
                    row[5].clone(),
                    row[6].clone(),
                    row[7].clone(),
                    row[8].clone(),
                ])?);
            } else {
                changes.removed.push(reply::text(&row[0])?);
            }
        }
        if let Some(last) = last {
            // Feed revisions are integers well below 2^53, exact as scores.
            changes.revision = last as u64;
        }
        Ok(changes)
    }
}

#[async_trait]
impl CreateQueue for RedisBackend {
    async fn queue_push(&self, entry: QueuedRequest, max_wait_ms: u64, max_size: usize) -> BackendResult<QueuePush> {
        let session_type = entry.r#type.to_string();
        let (max_wait, max_size) = (max_wait_ms.to_string(), max_size.to_string());
        let args = [
            entry.session_id.as_str(),
            &entry.class_id,
            &entry.requirements,
            &session_type,
            &entry.owner,
            &max_wait,
            &max_size,
        ];
        let (word, mut entries) = self.queue_call("push", &args).await?;
        match word.as_str() {
            "ok" => entries.pop().map(QueuePush::Queued).ok_or_else(|| unexpected("queue push", "empty")),
            "exists" => Ok(QueuePush::AlreadyQueued),
            "full" => Ok(QueuePush::Full),
            other => Err(unexpected("queue push", other)),
        }
    }

    async fn queue_heads(&self, per_class: usize) -> BackendResult<Vec<QueuedRequest>> {
        let (_, mut entries) = self.queue_call("heads", &[&per_class.max(1).to_string()]).await?;
        // Classes come in set order; present them in a stable one.
        entries.sort_by(|a, b| a.class_id.cmp(&b.class_id).then(a.sequence.cmp(&b.sequence)));
        Ok(entries)
    }

    async fn queue_claim(
        &self,
        session_id: &str,
        claim_id: &str,
        lease_ms: u64,
    ) -> BackendResult<Option<QueuedRequest>> {
        let (_, mut entries) = self.queue_call("claim", &[session_id, claim_id, &lease_ms.to_string()]).await?;
        Ok(entries.pop())
    }

    async fn queue_claim_expired(
        &self,
        claim_id: &str,
        lease_ms: u64,
        limit: usize,
    ) -> BackendResult<Vec<QueuedRequest>> {
        let (_, entries) =
            self.queue_call("expired", &[claim_id, &lease_ms.to_string(), &limit.max(1).to_string()]).await?;
        Ok(entries)
    }

    async fn queue_release(&self, session_id: &str, claim_id: &str) -> BackendResult<bool> {
        Ok(self.queue_call("release", &[session_id, claim_id]).await?.0 == "yes")
    }

    async fn queue_remove(&self, session_id: &str) -> BackendResult<bool> {
        Ok(self.queue_call("remove", &[session_id]).await?.0 == "yes")
    }

    async fn queue_remove_placed(&self, session_id: &str) -> BackendResult<bool> {
        let (window, samples) = (PLACEMENT_RATE_WINDOW_MS.to_string(), PLACEMENT_RATE_SAMPLES.to_string());
        Ok(self.queue_call("remove", &[session_id, &window, &samples]).await?.0 == "yes")
    }

    async fn queue_positions(&self, session_ids: &[String]) -> BackendResult<Vec<QueuePosition>> {
        if session_ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut invocation = self.invoke(&self.scripts.queue);
        invocation.arg("positions").arg(PLACEMENT_RATE_WINDOW_MS.to_string());
        for id in session_ids {
            invocation.arg(id);
        }
        let (_, rest) = reply::status(self.run(&invocation).await?)?;
        let count =
            |value: &redis::Value| Ok::<_, BackendError>(usize::try_from(reply::int(value)?).unwrap_or_default());
        rest.chunks_exact(6)
            .map(|fields| {
                Ok(QueuePosition {
                    session_id: reply::text(&fields[0])?,
                    class_id: reply::text(&fields[1])?,
                    position: count(&fields[2])?,
                    class_entries: count(&fields[3])?,
                    recent_placements: count(&fields[4])?,
                    recent_span_ms: reply::int(&fields[5])?,
                })
            })
            .collect()
    }

    async fn queue_len(&self) -> BackendResult<usize> {
        let mut invocation = self.invoke(&self.scripts.queue);
        invocation.arg("len");
        let (_, rest) = reply::status(self.run(&invocation).await?)?;
        let length = rest.first().map(reply::int).transpose()?.unwrap_or_default();
        Ok(usize::try_from(length).unwrap_or_default())
    }

    async fn queue_depths(&self) -> BackendResult<Vec<QueueDepth>> {
        let mut invocation = self.invoke(&self.scripts.queue);
        invocation.arg("depths");
        let (_, rest) = reply::status(self.run(&invocation).await?)?;
        let mut depths: Vec<QueueDepth> = rest
            .chunks_exact(3)
            .map(|fields| {
                Ok(QueueDepth {
                    class_id: reply::text(&fields[0])?,
                    entries: usize::try_from(reply::int(&fields[1])?).unwrap_or_default(),
                    oldest_enqueued_unix_ms: reply::int(&fields[2])?,
                })
            })
            .collect::<BackendResult<_>>()?;
        depths.sort_by(|a, b| a.class_id.cmp(&b.class_id));
        Ok(depths)
    }
}

#[async_trait]
impl StreamOwnership for RedisBackend {
    async fn claim_agent(
        &self,
        server_id: &str,
        owner_id: &str,
        owner_address: &str,
        lease_ms: i64,
    ) -> BackendResult<AgentOwnership> {
        let mut invocation = self.invoke(&self.scripts.agent_claim);
        invocation.arg(server_id).arg(owner_id).arg(owner_address).arg(lease_ms);
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
        let mut invocation = self.invoke(&self.scripts.agent_renew);
        invocation.arg(server_id).arg(epoch.to_string()).arg(lease_ms);
        ownership(reply::array(self.run(&invocation).await?)?)?
            .ok_or_else(|| BackendError::Conflict(format!("agent {server_id} epoch {epoch}")))
    }

    async fn agent_owner(&self, server_id: &str) -> BackendResult<Option<AgentOwnership>> {
        let mut invocation = self.invoke(&self.scripts.agent_get);
        invocation.arg(server_id);
        ownership(reply::array(self.run(&invocation).await?)?)
    }

    async fn release_agent(&self, server_id: &str, epoch: u64) -> BackendResult<()> {
        let mut invocation = self.invoke(&self.scripts.agent_release);
        invocation.arg(server_id).arg(epoch.to_string());
        self.run(&invocation).await.map(|_| ())
    }
}

#[async_trait]
impl ApiRegistry for RedisBackend {
    async fn insert_api_client(&self, client: ApiClientRecord) -> BackendResult<()> {
        let command = redis::cmd("HSETNX")
            .arg(self.key("api-clients"))
            .arg(&client.client_id)
            .arg(client.encode_to_vec())
            .to_owned();
        match self.query_durable::<i64>(&command).await? {
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
        let removed: i64 = self.query_durable(redis::cmd("HDEL").arg(self.key("api-clients")).arg(client_id)).await?;
        Ok(removed == 1)
    }

    async fn put_signing_key(&self, key: SigningKeyRecord) -> BackendResult<()> {
        let command =
            redis::cmd("HSET").arg(self.key("signing-keys")).arg(&key.kid).arg(key.encode_to_vec()).to_owned();
        self.query_durable::<i64>(&command).await.map(|_| ())
    }

    async fn list_signing_keys(&self) -> BackendResult<Vec<SigningKeyRecord>> {
        let mut keys: Vec<SigningKeyRecord> =
            self.hash_records("signing-keys").await?.into_iter().map(|(_, key)| key).collect();
        keys.sort_by(|a, b| a.created_unix_ms.cmp(&b.created_unix_ms).then_with(|| a.kid.cmp(&b.kid)));
        Ok(keys)
    }

    async fn remove_signing_key(&self, kid: &str) -> BackendResult<()> {
        self.query_durable::<i64>(redis::cmd("HDEL").arg(self.key("signing-keys")).arg(kid)).await.map(|_| ())
    }

    async fn put_auth_server(&self, server: AuthServerRecord) -> BackendResult<()> {
        let command =
            redis::cmd("HSET").arg(self.key("auth-servers")).arg(&server.url).arg(server.encode_to_vec()).to_owned();
        self.query_durable::<i64>(&command).await.map(|_| ())
    }

    async fn list_auth_servers(&self) -> BackendResult<Vec<AuthServerRecord>> {
        let mut servers: Vec<AuthServerRecord> =
            self.hash_records("auth-servers").await?.into_iter().map(|(_, server)| server).collect();
        servers.sort_by(|a, b| a.url.cmp(&b.url));
        Ok(servers)
    }

    async fn remove_auth_server(&self, url: &str) -> BackendResult<bool> {
        let removed: i64 = self.query_durable(redis::cmd("HDEL").arg(self.key("auth-servers")).arg(url)).await?;
        Ok(removed == 1)
    }
}

#[async_trait]
impl Enrolment for RedisBackend {
    // Agent enrolment and single-use tokens: see `enrolment.rs`.
    async fn insert_software_statement(&self, statement: SoftwareStatementRecord) -> BackendResult<()> {
        self.insert_statement(statement).await
    }

    async fn get_software_statement(&self, id: &str) -> BackendResult<Option<SoftwareStatementRecord>> {
        self.get_statement(id).await
    }

    async fn list_software_statements(&self) -> BackendResult<Vec<SoftwareStatementRecord>> {
        self.list_statements().await
    }

    async fn deactivate_software_statement(&self, id: &str) -> BackendResult<bool> {
        self.deactivate_statement(id).await
    }

    async fn register_agent_client(&self, client: AgentClientRecord) -> BackendResult<()> {
        self.register_client(client).await
    }

    async fn get_agent_client(&self, client_id: &str) -> BackendResult<Option<AgentClientRecord>> {
        self.get_client(client_id).await
    }

    async fn list_agent_clients(&self) -> BackendResult<Vec<AgentClientRecord>> {
        self.list_clients().await
    }

    async fn remove_agent_client(&self, client_id: &str) -> BackendResult<bool> {
        self.remove_client(client_id).await
    }

    async fn bind_agent_server(&self, client_id: &str, server_id: &str) -> BackendResult<()> {
        self.bind_client(client_id, server_id).await
    }
}

#[async_trait]
impl DnsMappings for RedisBackend {
    // One key holds the whole encoded set: a registration replaces it with one SET.
    async fn replace_dns_mappings(&self, mappings: Vec<DnsMappingRecord>) -> BackendResult<()> {
        let bytes = DnsMappingSet { mappings }.encode_to_vec();
        self.query_durable::<()>(redis::cmd("SET").arg(self.key("dns-mappings")).arg(bytes)).await
    }

    async fn list_dns_mappings(&self) -> BackendResult<Vec<DnsMappingRecord>> {
        let bytes: Option<Vec<u8>> = self.query(redis::cmd("GET").arg(self.key("dns-mappings"))).await?;
        let Some(bytes) = bytes else { return Ok(Vec::new()) };
        DnsMappingSet::decode(bytes.as_slice())
            .map(|set| set.mappings)
            .map_err(|error| BackendError::Corrupt(format!("dns-mappings: {error}")))
    }
}

#[async_trait]
impl Reachable for RedisBackend {
    async fn ping(&self) -> BackendResult<()> {
        self.query::<String>(&redis::cmd("PING")).await.map(drop)
    }
}

#[async_trait]
impl Secrets for RedisBackend {
    async fn shared_secret(&self, name: &str, candidate: Vec<u8>) -> BackendResult<Vec<u8>> {
        // HSETNX is atomic and secrets are never removed, so the HGET after it
        // always reads the value that won.
        let key = self.key("secrets");
        self.query_durable::<i64>(redis::cmd("HSETNX").arg(&key).arg(name).arg(candidate)).await?;
        let stored: Option<Vec<u8>> = self.query(redis::cmd("HGET").arg(&key).arg(name)).await?;
        stored.ok_or_else(|| BackendError::Corrupt(format!("secret {name} vanished after HSETNX")))
    }

    async fn use_token_once(&self, token_id: &str, expires_at_ms: i64) -> BackendResult<bool> {
        self.token_once(token_id, expires_at_ms).await
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

#[async_trait]
impl Events for RedisBackend {
    async fn append_event(&self, event: EventRecord) -> BackendResult<String> {
        let mut invocation = self.invoke(&self.scripts.events_append);
        invocation.arg(&event.kind).arg(&event.session_id).arg(&event.owner).arg(&event.server_id);
        invocation.arg(state_field(event.state)).arg(state_field(event.previous_state)).arg(&event.reason);
        invocation.arg(&event.availability).arg(&event.detail);
        invocation.arg(if event.queue_position == 0 { String::new() } else { event.queue_position.to_string() });
        reply::text(&self.run(&invocation).await?)
    }

    async fn read_events(&self, after: &str, limit: usize) -> BackendResult<EventPage> {
        let after_id = crate::events::parse_id(after)?;
        let mut invocation = self.invoke(&self.scripts.events_read);
        let limit = limit.clamp(1, crate::events::READ_EVENTS_MAX);
        invocation.arg(crate::events::format_id(after_id)).arg(limit);
        let mut items = reply::array(self.run(&invocation).await?)?.into_iter();
        let (Some(dropped), Some(last), Some(entries)) = (items.next(), items.next(), items.next()) else {
            return Err(BackendError::Corrupt("events_read: short reply".into()));
        };
        let dropped = crate::events::parse_id(&reply::text(&dropped)?)?;
        let events = reply::array(entries)?.into_iter().map(reply::event).collect::<BackendResult<Vec<_>>>()?;
        Ok(EventPage { events, truncated: after_id < dropped, last_id: reply::text(&last)? })
    }
}

/// A session state as the event stream's `st`/`ps` fields hold it: the enum's number, empty for none.
fn state_field(state: i32) -> String {
    if state == 0 { String::new() } else { state.to_string() }
}

#[async_trait]
impl Webhooks for RedisBackend {
    async fn insert_webhook(&self, webhook: WebhookRecord) -> BackendResult<()> {
        let command =
            redis::cmd("HSETNX").arg(self.key("webhooks")).arg(&webhook.id).arg(webhook.encode_to_vec()).to_owned();
        if !self.query_durable::<bool>(&command).await? {
            return Err(BackendError::AlreadyExists(format!("webhook {}", webhook.id)));
        }
        Ok(())
    }

    async fn list_webhooks(&self) -> BackendResult<Vec<WebhookRecord>> {
        let all: std::collections::BTreeMap<String, Vec<u8>> =
            self.query(redis::cmd("HGETALL").arg(self.key("webhooks"))).await?;
        all.into_iter()
            .map(|(id, bytes)| {
                WebhookRecord::decode(bytes.as_slice()).map_err(|e| BackendError::Corrupt(format!("webhook {id}: {e}")))
            })
            .collect()
    }

    async fn update_webhook(&self, webhook: WebhookRecord) -> BackendResult<bool> {
        let mut invocation = self.invoke(&self.scripts.webhook_update);
        invocation.arg(&webhook.id).arg(webhook.encode_to_vec());
        Ok(reply::int(&self.run(&invocation).await?)? == 1)
    }

    async fn remove_webhook(&self, id: &str) -> BackendResult<bool> {
        let mut connection = self.durable.clone();
        let (removed, _): (i64, i64) = redis::pipe()
            .atomic()
            .cmd("HDEL")
            .arg(format!("{}webhooks", self.prefix))
            .arg(id)
            .cmd("DEL")
            .arg(format!("{}webhook-dead:{id}", self.prefix))
            .query_async(&mut connection)
            .await
            .map_err(super::unavailable)?;
        self.wait_for_replicas(connection).await?;
        Ok(removed == 1)
    }

    async fn add_dead_letter(&self, letter: DeadLetterRecord) -> BackendResult<()> {
        let mut connection = self.connection.clone();
        let key = format!("{}webhook-dead:{}", self.prefix, letter.webhook_id);
        let keep = isize::try_from(crate::webhooks::DEAD_LETTERS_KEPT).unwrap_or(isize::MAX);
        let (): () = redis::pipe()
            .atomic()
            .cmd("LPUSH")
            .arg(&key)
            .arg(letter.encode_to_vec())
            .ignore()
            .cmd("LTRIM")
            .arg(&key)
            .arg(0)
            .arg(keep - 1)
            .ignore()
            .query_async(&mut connection)
            .await
            .map_err(super::unavailable)?;
        Ok(())
    }

    async fn dead_letters(&self, webhook_id: &str) -> BackendResult<Vec<DeadLetterRecord>> {
        let key = format!("{}webhook-dead:{webhook_id}", self.prefix);
        let letters: Vec<Vec<u8>> = self.query(redis::cmd("LRANGE").arg(&key).arg(0).arg(-1)).await?;
        letters
            .into_iter()
            .map(|bytes| {
                DeadLetterRecord::decode(bytes.as_slice())
                    .map_err(|e| BackendError::Corrupt(format!("dead letter: {e}")))
            })
            .collect()
    }
}
