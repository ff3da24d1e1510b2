//! The agent's session with the broker over `AgentLink.Connect`.
//!
//! One session is: connect, send the hello (identity, limits, tags, telemetry and the full session
//! inventory), wait for the welcome, then a `select!` loop that sends an update every interval the broker
//! asked for and runs each command on the driver, answering each with exactly one result. When the stream
//! fails or ends the link reconnects with exponential backoff and full jitter (0.5 s doubling up to 30 s,
//! reset by a welcome); every hello carries the full inventory, so nothing is lost across reconnects.
//! With several broker replicas configured, every reconnect goes to the next replica round-robin, so the
//! death of the replica the agent was connected to costs one reconnect.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use switchboard_common::Shutdown;
use switchboard_proto::agent_link_client::AgentLinkClient;
use switchboard_proto::{
    AGENT_PROTOCOL_VERSION, AgentHello, AgentMessage, AgentUpdate, BrokerMessage, BrokerWelcome, HostCommand,
    HostSession, agent_message, broker_message,
};
use tokio::sync::{Semaphore, mpsc};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use tracing::Instrument;

use crate::driver::DcvDriver;
use crate::error::{Error, Result};
use crate::{AgentOptions, HostProbe, commands};

/// Commands run on the driver at once; when all are busy the link stops reading commands, which pushes
/// back on the broker through HTTP/2 flow control.
const MAX_CONCURRENT_COMMANDS: usize = 16;
/// Messages queued towards the broker before senders wait.
const OUTGOING_CAPACITY: usize = 64;
/// One message queued towards the broker, boxed: tokio's mpsc keeps its slots in blocks of 32 and writes
/// each message into the next slot, so a queue of `AgentMessage` values (several hundred bytes each, the
/// size of a hello) touches one new slot per update until two blocks (about 45 KB) are resident, a slow
/// climb of the agent's memory that a process of many agents (`examples/sim_fleet`) saw as growth per
/// update for an hour. Boxed, a block is 32 pointers.
type Outgoing = Box<AgentMessage>;
/// How long the broker may take to answer the hello.
const WELCOME_TIMEOUT: Duration = Duration::from_secs(30);
/// First reconnect delay ceiling.
const INITIAL_BACKOFF: Duration = Duration::from_millis(500);
/// Largest reconnect delay ceiling.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// HTTP/2 receive window of the stream: what the broker may send ahead of the agent reading it.
pub const STREAM_WINDOW_BYTES: u32 = 1024 * 1024;
/// HTTP/2 receive window of the whole connection.
pub const CONNECTION_WINDOW_BYTES: u32 = 2 * 1024 * 1024;
/// How long shutdown waits for running commands to answer.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// How long shutdown waits for the broker to end the stream after the agent half-closed it.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(3);
/// Places where Linux distributions keep the system CA bundle, used when no `ca_file` is configured.
const SYSTEM_CA_BUNDLES: [&str; 4] = [
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

/// Everything a session with the broker needs, shared by reconnects.
pub(crate) struct Link {
    options: AgentOptions,
    driver: Arc<dyn DcvDriver>,
    host: HostProbe,
    commands: Arc<Semaphore>,
    /// The last inventory the driver listed, reported while it cannot list.
    last_inventory: Mutex<Vec<HostSession>>,
    enroller: crate::enrol::Enroller,
}

impl Link {
    /// A link for `options`; nothing is dialed yet.
    pub(crate) fn new(options: AgentOptions, driver: Arc<dyn DcvDriver>, host: HostProbe) -> Self {
        let enroller = crate::enrol::Enroller::new(options.enrolment.clone());
        Self {
            options,
            driver,
            host,
            commands: Arc::new(Semaphore::new(MAX_CONCURRENT_COMMANDS)),
            last_inventory: Mutex::default(),
            enroller,
        }
    }

    /// Keeps a session with the broker open, reconnecting as needed, until `shutdown` is cancelled.
    /// Fails only when the options cannot work (bad URL or CA).
    pub(crate) async fn run(self, shutdown: Shutdown) -> Result<()> {
        let brokers: Vec<&str> = std::iter::once(&self.options.broker_url)
            .chain(&self.options.fallback_broker_urls)
            .map(String::as_str)
            .collect();
        for url in &brokers {
            broker_endpoint(url, &self.options)?;
        }
        let mut backoff = Backoff::default();
        let mut attempt = 0usize;
        loop {
            let url = brokers[attempt % brokers.len()];
            attempt = attempt.wrapping_add(1);
            // Built for each connection, so it trusts the current CA and presents the current client
            // certificate: rotated files are used from the next connection on.
            let endpoint = broker_endpoint(url, &self.options)?;
            match self.session(url, &endpoint, &shutdown, &mut backoff).await {
                Ok(()) => return Ok(()),
                Err(error) => tracing::warn!(broker = %url, %error, "broker link lost"),
            }
            let delay = backoff.next_delay();
            tracing::debug!(delay_ms = delay.as_millis() as u64, "reconnecting to broker");
            tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                () = tokio::time::sleep(delay) => {}
            }
        }
    }

    /// One session; `Ok` only when it ended because of `shutdown`.
    async fn session(
        &self,
        broker: &str,
        endpoint: &Endpoint,
        shutdown: &Shutdown,
        backoff: &mut Backoff,
    ) -> Result<()> {
        let channel: Channel = tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            channel = endpoint.connect() => channel.map_err(|e| Error::Link(format!("cannot connect: {e}")))?,
        };
        let (outgoing_tx, outgoing_rx) = mpsc::channel::<Outgoing>(OUTGOING_CAPACITY);
        // The handshake is one span (exported when `[telemetry]` says so); the hello carries its context,
        // so the broker's handling of it is a child.
        let connect_span = if switchboard_common::telemetry::sample_new_trace() {
            tracing::debug_span!("agent connect", otel.kind = "client", broker = %broker)
        } else {
            tracing::Span::none()
        };
        // Queued before the call so it is the first message on the stream.
        let hello = self.hello().instrument(connect_span.clone()).await?;
        let session_count = hello.sessions.len();
        outgoing_tx.send(message(agent_message::Kind::Hello(hello))).await.expect("receiver is alive here");
        let authorization = self.enroller.authorization(channel.clone(), &self.options.hostname).await?;
        let mut request = tonic::Request::new(ReceiverStream::new(outgoing_rx).map(|message| *message));
        if let Some(value) = authorization {
            request.metadata_mut().insert("authorization", value);
        }
        let mut client = AgentLinkClient::new(channel);
        let response = tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            response = client.connect(request).instrument(connect_span.clone()) => response,
        };
        if let Err(status) = &response
            && status.code() == tonic::Code::Unauthenticated
        {
            // Re-read the credentials file next time: an operator may have re-enrolled this host.
            self.enroller.forget().await;
        }
        let mut inbound = response.map_err(|status| Error::Link(format!("connect refused: {status}")))?.into_inner();
        let first = tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            first = tokio::time::timeout(WELCOME_TIMEOUT, inbound.message()).instrument(connect_span.clone()) => first,
        };
        drop(connect_span);
        let welcome = match first {
            Err(_) => return Err(Error::Protocol("no welcome within 30 s of the hello".into())),
            Ok(Err(status)) => return Err(Error::Link(format!("stream failed before the welcome: {status}"))),
            Ok(Ok(None)) => return Err(Error::Link("broker closed the stream before the welcome".into())),
            Ok(Ok(Some(BrokerMessage { kind: Some(broker_message::Kind::Welcome(welcome)) }))) => welcome,
            Ok(Ok(Some(_))) => return Err(Error::Protocol("the first broker message is not a welcome".into())),
        };
        backoff.reset();
        let period = self.update_period(&welcome);
        tracing::info!(
            %broker,
            broker_id = %welcome.broker_id,
            epoch = welcome.epoch,
            update_interval_s = period.as_secs(),
            sessions = session_count,
            "connected to broker"
        );
        let mut updates = tokio::time::interval_at(Instant::now() + period, period);
        updates.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => {
                    tracing::info!("closing broker link");
                    self.drain(outgoing_tx, &mut inbound).await;
                    return Ok(());
                }
                _ = updates.tick() => {
                    let update = self.update().await;
                    // Never wait on a slow broker here: every update carries the full state, so when the
                    // outgoing queue is full this one is skipped and the next one catches up.
                    match outgoing_tx.try_send(message(agent_message::Kind::Update(update))) {
                        Ok(()) => {}
                        Err(mpsc::error::TrySendError::Full(_)) => {
                            tracing::warn!("the broker is not reading; skipping this update");
                        }
                        Err(mpsc::error::TrySendError::Closed(_)) => {
                            return Err(Error::Link("outgoing stream closed".into()));
                        }
                    }
                }
                received = inbound.message() => match received {
                    Ok(Some(BrokerMessage { kind: Some(broker_message::Kind::Command(command)) })) => {
                        // All command slots busy: stop reading (HTTP/2 flow control pushes back on the
                        // broker) until one frees, or until shutdown.
                        let permit = tokio::select! {
                            permit = self.commands.clone().acquire_owned() => {
                                permit.expect("the command semaphore is never closed")
                            }
                            () = shutdown.cancelled() => {
                                tracing::info!("closing broker link");
                                self.drain(outgoing_tx, &mut inbound).await;
                                return Ok(());
                            }
                        };
                        self.spawn_command(command, permit, outgoing_tx.clone());
                    }
                    Ok(Some(_)) => tracing::debug!("ignoring a broker message that is not a command"),
                    Ok(None) => return Err(Error::Link("broker closed the stream".into())),
                    Err(status) => return Err(Error::Link(format!("stream failed: {status}"))),
                },
            }
        }
    }

    /// Graceful end of a session: lets running commands answer, half-closes the stream and waits briefly
    /// for the broker to end it, so results already produced reach the broker.
    async fn drain(&self, outgoing_tx: mpsc::Sender<Outgoing>, inbound: &mut tonic::Streaming<BrokerMessage>) {
        let all = MAX_CONCURRENT_COMMANDS as u32;
        if tokio::time::timeout(DRAIN_TIMEOUT, self.commands.acquire_many(all)).await.is_err() {
            tracing::warn!("commands still running at shutdown; the next hello's inventory will tell the broker");
        }
        drop(outgoing_tx);
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, async { while let Ok(Some(_)) = inbound.message().await {} }).await;
    }

    /// The sessions to report: `(sessions, available)`. When the driver cannot list them, the last inventory
    /// it read, marked unavailable.
    async fn inventory(&self) -> (Vec<HostSession>, bool) {
        match self.driver.list_sessions().await {
            Ok(sessions) => {
                *self.last_inventory.lock().expect("inventory lock poisoned") = sessions.clone();
                (sessions, true)
            }
            Err(error) => {
                tracing::warn!(%error, "cannot list sessions; reporting the DCV server unhealthy");
                (self.last_inventory.lock().expect("inventory lock poisoned").clone(), false)
            }
        }
    }

    /// The interval the welcome asks for, or the configured one when it asks for none.
    fn update_period(&self, welcome: &BrokerWelcome) -> Duration {
        let seconds = match welcome.update_interval_seconds {
            0 => self.options.update_interval_seconds,
            asked => asked,
        };
        Duration::from_secs(u64::from(seconds.max(1)))
    }

    /// Runs `command` on its own task, holding one command slot; its result goes to `outgoing_tx`.
    fn spawn_command(
        &self,
        command: HostCommand,
        permit: tokio::sync::OwnedSemaphorePermit,
        outgoing_tx: mpsc::Sender<Outgoing>,
    ) {
        let driver = self.driver.clone();
        // Each command the broker sent from a trace is a span, child of the broker's span that sent it.
        let span = if command.traceparent.is_empty() {
            tracing::Span::none()
        } else {
            tracing::debug_span!(
                parent: None,
                "agent command",
                otel.name = commands::name(&command),
                otel.kind = "server",
                command_id = %command.command_id
            )
        };
        switchboard_common::trace_context::set_parent(&span, &command.traceparent);
        let run = async move {
            let command_id = command.command_id.clone();
            let result = commands::execute(driver.as_ref(), command).await;
            drop(permit);
            if outgoing_tx.send(message(agent_message::Kind::Result(result))).await.is_err() {
                // The next hello's inventory tells the broker what happened.
                tracing::warn!(command_id, "stream closed before the command result could be sent");
            }
        };
        tokio::spawn(run.instrument(span));
    }

    /// The first message of a session.
    async fn hello(&self) -> Result<AgentHello> {
        let options = &self.options;
        let (sessions, available) = self.inventory().await;
        Ok(AgentHello {
            protocol_version: AGENT_PROTOCOL_VERSION,
            server_id: options.server_id.clone(),
            hostname: options.hostname.clone(),
            ip: options.ip.clone(),
            default_dns_name: options.hostname.clone(),
            agent_version: env!("CARGO_PKG_VERSION").to_owned(),
            dcv_version: self.driver.version().await,
            endpoints: options.endpoints.clone(),
            web_url_path: options.endpoints.first().map_or_else(|| "/".to_owned(), |e| e.web_url_path.clone()),
            host: Some((self.host)()),
            tags: options.tags.get(),
            max_virtual_sessions: options.max_virtual_sessions,
            max_concurrent_sessions_per_user: options.max_concurrent_sessions_per_user,
            dcv_healthy: available && self.driver.health().await,
            sessions,
            traceparent: switchboard_common::trace_context::current_traceparent(),
            inventory_unavailable: !available,
        })
    }

    /// A periodic update.
    async fn update(&self) -> AgentUpdate {
        let (sessions, available) = self.inventory().await;
        AgentUpdate {
            host: Some((self.host)()),
            tags: self.options.tags.get(),
            dcv_healthy: available && self.driver.health().await,
            sessions,
            inventory_unavailable: !available,
        }
    }
}

fn message(kind: agent_message::Kind) -> Outgoing {
    Box::new(AgentMessage { kind: Some(kind) })
}

/// The endpoint of the broker replica at `url`: TLS for `https://` (trusting the configured CA, else the
/// system bundle; presenting the client certificate when configured), plaintext for `http://` (tests and
/// in-process use only), HTTP/2 keepalive either way.
fn broker_endpoint(url: &str, options: &AgentOptions) -> Result<Endpoint> {
    let invalid = |why: String| Error::Config(format!("broker url `{url}`: {why}"));
    let mut endpoint = Endpoint::from_shared(url.to_owned())
        .map_err(|e| invalid(e.to_string()))?
        .connect_timeout(Duration::from_secs(10))
        .tcp_keepalive(Some(options.keepalive_interval))
        .http2_keep_alive_interval(options.keepalive_interval)
        .keep_alive_timeout(Duration::from_secs(10))
        .keep_alive_while_idle(true)
        .initial_stream_window_size(Some(STREAM_WINDOW_BYTES))
        .initial_connection_window_size(Some(CONNECTION_WINDOW_BYTES));
    if url.starts_with("https://") {
        let ca_pem = match &options.ca {
            Some(ca) => ca.current().pem.clone(),
            None => {
                let bundle = system_ca_bundle()?;
                switchboard_common::tls::parse_certs(&bundle).map_err(|e| Error::Config(format!("broker CA: {e}")))?;
                bundle
            }
        };
        let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca_pem));
        if let Some(domain) = &options.tls_domain {
            tls = tls.domain_name(domain.clone());
        }
        if let Some(identity) = &options.client_identity {
            let identity = identity.current();
            tls = tls.identity(tonic::transport::Identity::from_pem(&identity.pem.cert_pem, &identity.pem.key_pem));
        }
        endpoint = endpoint.tls_config(tls).map_err(|e| invalid(e.to_string()))?;
    } else if !url.starts_with("http://") {
        return Err(invalid("must start with https:// (or http:// without TLS)".into()));
    }
    Ok(endpoint)
}

fn system_ca_bundle() -> Result<String> {
    SYSTEM_CA_BUNDLES.iter().find_map(|path| std::fs::read_to_string(path).ok()).ok_or_else(|| {
        Error::Config("no `ca_file` configured and no system CA bundle found; set `ca_file` in [agent]".into())
    })
}

/// Reconnect delays: full jitter over a ceiling that doubles from 0.5 s to 30 s.
#[derive(Debug)]
struct Backoff {
    ceiling: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self { ceiling: INITIAL_BACKOFF }
    }
}

impl Backoff {
    /// A random delay up to the current ceiling, then doubles the ceiling.
    fn next_delay(&mut self) -> Duration {
        let ceiling = self.ceiling;
        self.ceiling = (ceiling * 2).min(MAX_BACKOFF);
        Duration::from_secs_f64(rand::rng().random_range(0.0..=ceiling.as_secs_f64()))
    }

    /// Back to the first ceiling, after a successful welcome.
    fn reset(&mut self) {
        self.ceiling = INITIAL_BACKOFF;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_outgoing_queue_holds_pointers_not_messages() {
        // tokio's mpsc blocks hold 32 slots of the item type; each update writes the next slot, so a
        // large item makes every link's resident memory climb for 64 updates (see `Outgoing`).
        let slot = std::mem::size_of::<Outgoing>();
        let message = std::mem::size_of::<AgentMessage>();
        assert!(message > 256, "an AgentMessage is large ({message} bytes): this test guards the boxing");
        assert!(slot <= std::mem::size_of::<usize>(), "an outgoing queue slot is {slot} bytes");
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_and_resets() {
        let mut backoff = Backoff::default();
        let mut ceilings = Vec::new();
        for _ in 0..10 {
            let ceiling = backoff.ceiling;
            assert!(backoff.next_delay() <= ceiling);
            ceilings.push(ceiling.as_millis());
        }
        assert_eq!(ceilings, [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000, 30000]);
        backoff.reset();
        assert_eq!(backoff.ceiling, INITIAL_BACKOFF);
    }

    #[test]
    fn broker_urls_are_checked() {
        let options = crate::simulated_host_options(0, "ftp://broker:1", None);
        assert!(broker_endpoint("ftp://broker:1", &options).is_err());
        assert!(broker_endpoint("http://127.0.0.1:8445", &options).is_ok());
        let error = switchboard_common::tls_reload::ReloadingCa::from_pem("not a certificate").unwrap_err();
        assert!(error.to_string().contains("no certificate"), "{error}");
    }
}
