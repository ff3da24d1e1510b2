//! One agent stream as a session object: [`AgentSession::init`] (hello,
//! ownership, first report), `run` (a `select!` loop) and `cleanup`.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use futures::{Stream, StreamExt};
use switchboard_common::time::now_ms;
use switchboard_proto::agent_message::Kind as AgentKind;
use switchboard_proto::broker_message::Kind as BrokerKind;
use switchboard_proto::{
    AGENT_PROTOCOL_VERSION, AgentHello, AgentMessage, AgentUpdate, BrokerMessage, BrokerWelcome, HostCommand,
    HostSession, ServerRecord,
};
use tokio::sync::mpsc;
use tonic::Status;

use super::LinkContext;
use super::changes;
use crate::Error;
use crate::service::store_status;
use switchboard_store::{AgentClientRecord, BackendError, Fence};

/// How long an agent has to send its hello after opening the stream.
const HELLO_TIMEOUT: Duration = Duration::from_secs(30);
/// Commands queued for one agent before senders wait.
const COMMAND_QUEUE: usize = 64;
/// Messages queued towards the agent before the run loop waits.
const OUTGOING_QUEUE: usize = 16;

/// A stream after a successful hello.
pub(super) struct AgentSession {
    context: Arc<LinkContext>,
    server_id: String,
    epoch: u64,
    /// Guards every write of this stream: refused once another claim exists.
    fence: Fence,
    /// The server as last written to the store; updates are compared with it.
    written: ServerRecord,
    /// When the report was last written (telemetry is refreshed on a timer).
    written_at: Instant,
    /// The inventory last reconciled, and when: an unchanged inventory is not
    /// reconciled again until the telemetry interval passes.
    inventory: Vec<HostSession>,
    inventory_at: Instant,
    /// When the agent last sent anything.
    heard_at: Instant,
}

/// Why the run loop ended.
enum End {
    AgentClosed,
    AgentSilent,
    Superseded,
    Shutdown,
}

impl AgentSession {
    /// Reads and checks the hello, claims the stream, stores the report and
    /// reconciles the inventory.
    /// With `client` (the authenticated agent client), the hello's server id
    /// must be the one the client is bound to (bound now at its first hello).
    pub(super) async fn init<S>(
        context: Arc<LinkContext>,
        incoming: &mut S,
        client: Option<&AgentClientRecord>,
    ) -> Result<Self, Status>
    where
        S: Stream<Item = Result<AgentMessage, Status>> + Unpin,
    {
        let first = tokio::time::timeout(HELLO_TIMEOUT, incoming.next())
            .await
            .map_err(|_| Status::from(Error::AgentProtocol("no hello received in time".to_owned())))?;
        let hello = match first {
            Some(Ok(AgentMessage { kind: Some(AgentKind::Hello(hello)) })) => hello,
            Some(Ok(_)) => return Err(Error::AgentProtocol("the first message must be AgentHello".to_owned()).into()),
            Some(Err(status)) => return Err(status),
            None => return Err(Error::AgentProtocol("stream closed before hello".to_owned()).into()),
        };
        if hello.protocol_version != AGENT_PROTOCOL_VERSION {
            return Err(Status::from(Error::AgentProtocol(format!(
                "unsupported agent protocol version {} (this broker speaks {AGENT_PROTOCOL_VERSION})",
                hello.protocol_version
            ))));
        }
        if hello.server_id.is_empty() {
            return Err(Error::AgentProtocol("server_id is required".to_owned()).into());
        }
        let config = &context.config;
        let backend = &*context.backend;
        if let Some(client) = client {
            switchboard_store::enrolment::clients::bind(backend, client, &hello.server_id).await?;
        }
        let lease_ms = i64::from(config.agent_lease_seconds) * 1000;
        let ownership = backend
            .claim_agent(&hello.server_id, &config.replica_id, &config.advertised_address, lease_ms)
            .await
            .map_err(store_status)?;
        let mut hello = hello;
        let inventory_known = !hello.inventory_unavailable;
        let sessions = std::mem::take(&mut hello.sessions);
        let report = server_from_hello(hello);
        let server_id = report.id.clone();
        let fence = Fence::owner(&server_id, ownership.epoch);
        backend
            .upsert_server_report(report.clone(), config.default_server_open, Some(&fence))
            .await
            .map_err(store_status)?;
        // An agent whose DCV server does not answer cannot tell its sessions: keep the cached ones.
        if inventory_known {
            super::apply_inventory(backend, &server_id, &sessions, Some(&fence)).await.map_err(store_status)?;
        }
        tracing::info!(server_id, epoch = ownership.epoch, "agent connected");
        let now = Instant::now();
        Ok(Self {
            context,
            server_id,
            epoch: ownership.epoch,
            fence,
            written: report,
            written_at: now,
            inventory: sessions,
            inventory_at: now,
            heard_at: now,
        })
    }

    /// Sends the welcome, registers the stream and spawns the run loop;
    /// returns the messages for the agent.
    pub(super) fn start<S>(self, incoming: S) -> mpsc::Receiver<Result<BrokerMessage, Status>>
    where
        S: Stream<Item = Result<AgentMessage, Status>> + Unpin + Send + 'static,
    {
        let (outgoing_tx, outgoing_rx) = mpsc::channel(OUTGOING_QUEUE);
        let welcome = BrokerWelcome {
            update_interval_seconds: self.context.config.update_interval_seconds,
            broker_id: self.context.config.replica_id.clone(),
            epoch: self.epoch,
        };
        // The queue is empty and fresh, so this cannot fail.
        let _ = outgoing_tx.try_send(Ok(BrokerMessage { kind: Some(BrokerKind::Welcome(welcome)) }));
        let (command_tx, command_rx) = mpsc::channel(COMMAND_QUEUE);
        self.context.hub.register(&self.server_id, self.epoch, command_tx);
        tokio::spawn(async move {
            let mut session = self;
            let end = session.run(incoming, command_rx, &outgoing_tx).await;
            session.cleanup(end, &outgoing_tx).await;
        });
        outgoing_rx
    }

    async fn run<S>(
        &mut self,
        mut incoming: S,
        mut command_rx: mpsc::Receiver<HostCommand>,
        outgoing_tx: &mpsc::Sender<Result<BrokerMessage, Status>>,
    ) -> End
    where
        S: Stream<Item = Result<AgentMessage, Status>> + Unpin,
    {
        let lease_ms = u64::from(self.context.config.agent_lease_seconds.max(1)) * 1000;
        let mut renew = tokio::time::interval(Duration::from_millis(lease_ms / 3));
        renew.tick().await; // the claim just set the lease
        // An agent that stays silent this long is gone even if its TCP
        // stream looks open: the lease is no longer renewed for it.
        let max_silence = Duration::from_secs(u64::from(self.context.config.update_interval_seconds.max(1)) * 2);
        let shutdown = self.context.shutdown.clone();
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return End::Shutdown,
                message = incoming.next() => match message {
                    Some(Ok(message)) => {
                        self.heard_at = Instant::now();
                        if let Err(BackendError::Fenced(_)) = self.handle(message).await {
                            return End::Superseded;
                        }
                    }
                    Some(Err(status)) => {
                        tracing::info!(server_id = %self.server_id, %status, "agent stream failed");
                        return End::AgentClosed;
                    }
                    None => return End::AgentClosed,
                },
                Some(command) = command_rx.recv() => {
                    let message = BrokerMessage { kind: Some(BrokerKind::Command(command)) };
                    if outgoing_tx.send(Ok(message)).await.is_err() {
                        return End::AgentClosed;
                    }
                }
                _ = renew.tick() => {
                    if self.heard_at.elapsed() > max_silence {
                        return End::AgentSilent;
                    }
                    let lease_ms = i64::from(self.context.config.agent_lease_seconds) * 1000;
                    match self.context.backend.renew_agent(&self.server_id, self.epoch, lease_ms).await {
                        Ok(_) => {}
                        Err(BackendError::Conflict(_)) => return End::Superseded,
                        Err(error) => tracing::warn!(server_id = %self.server_id, %error, "lease renewal failed"),
                    }
                }
            }
        }
    }

    /// Handles one agent message; `Err(Fenced)` when the stream lost its
    /// ownership (it must end).
    async fn handle(&mut self, message: AgentMessage) -> Result<(), BackendError> {
        match message.kind {
            Some(AgentKind::Update(update)) => match self.apply_update(update).await {
                Err(error @ BackendError::Fenced(_)) => {
                    tracing::info!(server_id = %self.server_id, %error, "stale stream fenced off");
                    return Err(error);
                }
                Err(error) => tracing::warn!(server_id = %self.server_id, %error, "agent update not stored"),
                Ok(()) => {}
            },
            Some(AgentKind::Result(result)) => self.context.hub.complete(&self.server_id, result),
            Some(AgentKind::Hello(_)) => tracing::warn!(server_id = %self.server_id, "repeated hello ignored"),
            None => tracing::debug!(server_id = %self.server_id, "empty agent message ignored"),
        }
        Ok(())
    }

    /// Writes only what changed: the report when a field that matters
    /// changed (or volatile telemetry once per telemetry interval), the
    /// inventory when it differs from the last one reconciled (or once per
    /// interval, to repair anything a lost write left behind).
    async fn apply_update(&mut self, update: AgentUpdate) -> Result<(), BackendError> {
        let next = ServerRecord {
            host: update.host,
            tags: update.tags,
            dcv_healthy: update.dcv_healthy,
            reachable: true,
            ..self.written.clone()
        };
        let config = &self.context.config;
        let backend = &*self.context.backend;
        let refresh_due = self.written_at.elapsed() >= config.telemetry_write_interval;
        if changes::report_write_needed(&self.written, &next, refresh_due) {
            let next = ServerRecord { last_seen_unix_ms: now_ms(), ..next };
            backend.upsert_server_report(next.clone(), config.default_server_open, Some(&self.fence)).await?;
            self.written = next;
            self.written_at = Instant::now();
        }
        let inventory_due = self.inventory_at.elapsed() >= config.telemetry_write_interval;
        if update.inventory_unavailable {
            return Ok(());
        }
        if update.sessions != self.inventory || inventory_due {
            super::apply_inventory(backend, &self.server_id, &update.sessions, Some(&self.fence)).await?;
            self.inventory = update.sessions;
            self.inventory_at = Instant::now();
        }
        Ok(())
    }

    async fn cleanup(self, end: End, outgoing_tx: &mpsc::Sender<Result<BrokerMessage, Status>>) {
        let server_id = &self.server_id;
        self.context.hub.deregister(server_id, self.epoch);
        let backend = &*self.context.backend;
        let (reason, still_ours) = match end {
            End::Superseded => ("stream superseded by a newer connection", false),
            End::Shutdown => ("broker replica shutting down", true),
            End::AgentClosed => ("agent closed the stream", true),
            End::AgentSilent => ("agent silent for two update intervals", true),
        };
        tracing::info!(server_id, epoch = self.epoch, reason, "agent stream ended");
        if !matches!(end, End::AgentClosed) {
            let _ = outgoing_tx.send(Err(Error::StreamSuperseded(reason.to_string()).into())).await;
        }
        if !still_ours {
            return;
        }
        // Fenced with this stream's epoch: if the agent already reconnected
        // to another replica, the write is refused and changes nothing.
        let default_open = self.context.config.default_server_open;
        if let Ok(mut servers) = backend.get_servers(std::slice::from_ref(server_id)).await
            && let Some(server) = servers.pop()
        {
            match super::mark_unreachable(backend, server, default_open, &self.fence).await {
                Ok(()) | Err(BackendError::Fenced(_)) => {}
                Err(error) => tracing::warn!(server_id, %error, "could not mark server unreachable"),
            }
        }
        if let Err(error) = backend.release_agent(server_id, self.epoch).await {
            tracing::warn!(server_id, %error, "could not release agent ownership");
        }
    }
}

/// The server record an agent's hello describes.
fn server_from_hello(hello: AgentHello) -> ServerRecord {
    ServerRecord {
        id: hello.server_id,
        ip: hello.ip,
        hostname: hello.hostname,
        default_dns_name: hello.default_dns_name,
        endpoints: hello.endpoints,
        web_url_path: hello.web_url_path,
        dcv_version: hello.dcv_version,
        agent_version: hello.agent_version,
        host: hello.host,
        tags: hello.tags,
        reachable: true,
        dcv_healthy: hello.dcv_healthy,
        max_virtual_sessions: hello.max_virtual_sessions,
        max_concurrent_sessions_per_user: hello.max_concurrent_sessions_per_user,
        last_seen_unix_ms: now_ms(),
        ..Default::default()
    }
}
