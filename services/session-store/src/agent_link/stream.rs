//! One agent stream as a session object: [`AgentSession::init`] (hello,
//! ownership, first report), `run` (a `select!` loop) and `cleanup`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use futures::{Stream, StreamExt};
use switchboard_common::time::now_ms;
use switchboard_proto::agent_message::Kind as AgentKind;
use switchboard_proto::broker_message::Kind as BrokerKind;
use switchboard_proto::host_command::Action;
use switchboard_proto::{
    AGENT_PROTOCOL_VERSION, AgentHello, AgentMessage, AgentUpdate, BrokerMessage, BrokerWelcome, CloseSessionCommand,
    CommandErrorKind, HostCommand, HostSession, KeyValue, ServerRecord,
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
    /// Sessions this host lists but should not have, and when each may be closed again.
    closes: HashMap<String, CloseBackoff>,
    /// `closes.len()` as last added to the `switchboard_host_sessions_to_close` gauge.
    closes_counted: usize,
    /// The closes the hello's inventory asked for, sent once the stream runs.
    first_closes: Vec<String>,
    /// The lease was renewed late (it may have lapsed, and a liveness sweep marked the host unreachable):
    /// the next update rewrites the report and reconciles the inventory, whatever changed.
    rewrite: bool,
    /// Whether a session on this host waited on it at the last reconciliation (CREATING or DELETING):
    /// then every report is reconciled, so the lifecycle's stalled bound holds without inventory changes.
    unsettled: bool,
}

/// Resending a close to a host that keeps listing the session: 5 s, doubling, at most 5 minutes apart.
#[derive(Debug, Clone, Copy)]
struct CloseBackoff {
    attempts: u32,
    next_at: Instant,
}

/// First pause between two closes of one session.
const CLOSE_RESEND_FIRST: Duration = Duration::from_secs(5);
/// Longest pause between two closes of one session.
const CLOSE_RESEND_MAX: Duration = Duration::from_secs(300);

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
            Some(Ok(AgentMessage { kind: Some(AgentKind::Hello(hello)) })) => {
                crate::metrics::agent_message("hello");
                hello
            }
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
        // The rest of the handshake is traced as a child of the agent's connect span, when it sent one.
        let span = if hello.traceparent.is_empty() {
            tracing::Span::none()
        } else {
            tracing::debug_span!("agent hello", otel.kind = "server", server_id = %hello.server_id)
        };
        switchboard_common::trace_context::set_parent(&span, &hello.traceparent);
        tracing::Instrument::instrument(Self::accept(context, hello, client), span).await
    }

    /// The handshake after a valid hello: binds the client, claims the stream, stores the report and
    /// reconciles the inventory.
    async fn accept(
        context: Arc<LinkContext>,
        hello: AgentHello,
        client: Option<&AgentClientRecord>,
    ) -> Result<Self, Status> {
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
        let (mut to_close, mut unsettled) = (Vec::new(), false);
        if inventory_known {
            (to_close, unsettled) =
                super::apply_inventory(backend, &server_id, &sessions, &config.bounds(), Some(&fence))
                    .await
                    .map_err(store_status)?;
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
            closes: HashMap::new(),
            closes_counted: 0,
            first_closes: to_close,
            rewrite: false,
            unsettled,
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
        let mut renewed_at = Instant::now();
        // An agent that stays silent this long is gone even if its TCP
        // stream looks open: the lease is no longer renewed for it.
        let max_silence = Duration::from_secs(u64::from(self.context.config.update_interval_seconds.max(1)) * 2);
        let shutdown = self.context.shutdown.clone();
        let first_closes = std::mem::take(&mut self.first_closes);
        self.close_on_host(first_closes);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return End::Shutdown,
                message = incoming.next() => match message {
                    Some(Ok(message)) => {
                        if matches!(message.kind, Some(AgentKind::Update(_))) {
                            crate::metrics::agent_update_gap(self.heard_at.elapsed());
                        }
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
                        Ok(_) => {
                            if renewed_at.elapsed() >= Duration::from_millis(lease_ms.unsigned_abs()) {
                                tracing::warn!(server_id = %self.server_id, "lease renewed late; rewriting the report");
                                self.rewrite = true;
                            }
                            renewed_at = Instant::now();
                        }
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
            Some(AgentKind::Update(update)) => {
                crate::metrics::agent_message("update");
                match self.apply_update(update).await {
                    Err(error @ BackendError::Fenced(_)) => {
                        tracing::info!(server_id = %self.server_id, %error, "stale stream fenced off");
                        return Err(error);
                    }
                    Err(error) => tracing::warn!(server_id = %self.server_id, %error, "agent update not stored"),
                    Ok(()) => {}
                }
            }
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
        let next = with_reserved_tags(ServerRecord {
            host: update.host,
            tags: update.tags,
            dcv_healthy: update.dcv_healthy,
            reachable: true,
            ..self.written.clone()
        });
        let config = &self.context.config;
        let backend = &*self.context.backend;
        let rewrite = std::mem::take(&mut self.rewrite);
        let refresh_due = rewrite || self.written_at.elapsed() >= config.telemetry_write_interval;
        if changes::report_write_needed(&self.written, &next, refresh_due) {
            let next = ServerRecord { last_seen_unix_ms: now_ms(), ..next };
            backend.upsert_server_report(next.clone(), config.default_server_open, Some(&self.fence)).await?;
            self.written = next;
            self.written_at = Instant::now();
        }
        let inventory_due = rewrite || self.inventory_at.elapsed() >= config.telemetry_write_interval;
        if update.inventory_unavailable {
            return Ok(());
        }
        if update.sessions != self.inventory || inventory_due || self.unsettled || !self.closes.is_empty() {
            let bounds = config.bounds();
            let (to_close, unsettled) =
                super::apply_inventory(backend, &self.server_id, &update.sessions, &bounds, Some(&self.fence)).await?;
            self.inventory = update.sessions;
            self.inventory_at = Instant::now();
            self.unsettled = unsettled;
            self.close_on_host(to_close);
        }
        Ok(())
    }

    /// Sends a close for each of `session_ids` that is due (see [`CloseBackoff`]), without waiting for the
    /// results: the next inventory tells. Forgets the sessions the host no longer needs closed, so the map
    /// stays bounded by the host's inventory.
    fn close_on_host(&mut self, session_ids: Vec<String>) {
        let now = Instant::now();
        self.closes.retain(|id, _| session_ids.contains(id));
        for session_id in &session_ids {
            self.closes.entry(session_id.clone()).or_insert(CloseBackoff { attempts: 0, next_at: now });
        }
        self.count_closes(self.closes.len());
        for session_id in session_ids {
            let backoff = self.closes.entry(session_id.clone()).or_insert(CloseBackoff { attempts: 0, next_at: now });
            if backoff.next_at > now {
                continue;
            }
            let pause = CLOSE_RESEND_FIRST.saturating_mul(1 << backoff.attempts.min(10)).min(CLOSE_RESEND_MAX);
            backoff.attempts += 1;
            backoff.next_at = now + pause;
            crate::metrics::repaired("close_sent", 1);
            tracing::info!(server_id = %self.server_id, session_id, attempt = backoff.attempts, "closing a session the host should not have");
            let hub = self.context.hub.clone();
            let server_id = self.server_id.clone();
            let timeout = self.context.config.command_timeout();
            tokio::spawn(async move {
                let command = HostCommand {
                    command_id: uuid::Uuid::new_v4().to_string(),
                    action: Some(Action::Close(CloseSessionCommand { session_id: session_id.clone() })),
                    traceparent: String::new(),
                };
                match hub.send_local(&server_id, command, timeout).await {
                    Some(Ok(result)) if result.error_kind() == CommandErrorKind::SessionNotFound => {
                        tracing::debug!(server_id, session_id, "the host no longer had the session")
                    }
                    Some(Ok(result)) if !result.error.is_empty() => {
                        tracing::warn!(server_id, session_id, error = %result.error, "host did not close the session")
                    }
                    Some(Err(status)) => tracing::warn!(server_id, session_id, %status, "close not delivered"),
                    _ => {}
                }
            });
        }
    }

    /// Moves the `switchboard_host_sessions_to_close` gauge by this stream's change to `held`.
    fn count_closes(&mut self, held: usize) {
        crate::metrics::host_sessions_to_close(held as f64 - self.closes_counted as f64);
        self.closes_counted = held;
    }

    async fn cleanup(mut self, end: End, outgoing_tx: &mpsc::Sender<Result<BrokerMessage, Status>>) {
        self.count_closes(0);
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

/// Prefix of the broker-reserved server tags; agents cannot set them.
pub const RESERVED_TAG_PREFIX: &str = "dcv:";

/// The server's tags with the broker-reserved ones, as the guide's DescribeServers example shows them:
/// `dcv:os-family` (the host's OS family, `linux` or `windows`) and `dcv:max-virtual-sessions` (`0` on
/// Windows, which has no virtual sessions; the agent's limit on Linux; left out when the limit is unset,
/// that is unlimited). Tags an agent reports under `dcv:` are dropped. Usable in requirements like any tag
/// (`tag:dcv:os-family = 'windows'`).
fn with_reserved_tags(mut server: ServerRecord) -> ServerRecord {
    server.tags.retain(|tag| !tag.key.starts_with(RESERVED_TAG_PREFIX));
    let family = server.host.as_ref().and_then(|host| host.os.as_ref()).map(|os| os.family.to_lowercase());
    let tag = |key: &str, value: String| KeyValue { key: format!("{RESERVED_TAG_PREFIX}{key}"), value };
    if let Some(family) = family.filter(|family| !family.is_empty()) {
        let max_virtual = match family.as_str() {
            "windows" => Some(0),
            _ => Some(server.max_virtual_sessions).filter(|max| *max > 0),
        };
        server.tags.push(tag("os-family", family));
        if let Some(max_virtual) = max_virtual {
            server.tags.push(tag("max-virtual-sessions", max_virtual.to_string()));
        }
    }
    server
}

/// The server record an agent's hello describes.
fn server_from_hello(hello: AgentHello) -> ServerRecord {
    with_reserved_tags(ServerRecord {
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
    })
}
