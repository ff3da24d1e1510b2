//! Serving and dialing gRPC services.
//!
//! Every server ([`server_builder`]) and every channel ([`lazy_channel`], [`replica_channel`]) carries the
//! W3C trace context of each call ([`crate::trace_context`]): their types say so ([`GrpcServer`],
//! [`GrpcRouter`], [`GrpcChannel`]), so a server or client built another way does not fit.
//!
//! With [`crate::internal_tls`], servers accept TLS themselves ([`serve_router`]: a rustls acceptor that asks
//! the reloading material at each handshake), and `https://` channels replace their endpoints when the
//! material changes ([`lazy_channel`], [`replica_channel`]).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::channel::Change;
use tonic::transport::{Channel, Endpoint, server::Router};
use tower::layer::util::{Identity, Stack};

use crate::Shutdown;
use crate::trace_context::{InjectTraceContext, TraceServerLayer};

/// A channel to a service's replicas that sends the caller's trace context with every call.
pub type GrpcChannel = InjectTraceContext<Channel>;

/// A gRPC server whose calls each run in a span continuing the caller's trace.
pub type GrpcServer = tonic::transport::Server<Stack<TraceServerLayer, Identity>>;

/// The routes of a [`GrpcServer`], ready for [`serve_router`].
pub type GrpcRouter = Router<Stack<TraceServerLayer, Identity>>;

/// Serves `router` on an already-bound listener until `shutdown` is cancelled,
/// then lets in-flight calls finish. TLS (and mTLS) when the process configured [`crate::internal_tls`]
/// with a certificate, plaintext otherwise.
pub async fn serve_router(
    router: GrpcRouter,
    listener: TcpListener,
    shutdown: Shutdown,
) -> Result<(), tonic::transport::Error> {
    match crate::internal_tls::configured().and_then(|tls| tls.server_config()) {
        Some(config) => {
            router.serve_with_incoming_shutdown(tls_incoming(listener, config), shutdown.cancelled_owned()).await
        }
        None => {
            router
                .serve_with_incoming_shutdown(crate::listen::grpc_incoming(listener), shutdown.cancelled_owned())
                .await
        }
    }
}

/// How long a client of an internal port may take over its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// TLS handshakes in progress at once on one internal port.
const MAX_HANDSHAKES: usize = 256;

/// The connections accepted on `listener`, each after its TLS handshake with `config` (run concurrently,
/// bounded, with a timeout; failed ones are dropped). The accepting task ends with the stream.
fn tls_incoming(
    listener: TcpListener,
    config: Arc<rustls::ServerConfig>,
) -> ReceiverStream<std::io::Result<tokio_rustls::server::TlsStream<TcpStream>>> {
    let (accepted_tx, accepted_rx) = tokio::sync::mpsc::channel(64);
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let handshakes = Arc::new(tokio::sync::Semaphore::new(MAX_HANDSHAKES));
    tokio::spawn(async move {
        loop {
            let permit = tokio::select! {
                () = accepted_tx.closed() => return,
                permit = handshakes.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
            };
            let (tcp, peer) = tokio::select! {
                () = accepted_tx.closed() => return,
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        // Out of file descriptors and the like: wait a little rather than spin.
                        tracing::warn!(%error, "internal port cannot accept");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            // See `crate::listen`; a failure leaves Nagle on, which is slower but works.
            let _ = tcp.set_nodelay(true);
            let (acceptor, accepted_tx) = (acceptor.clone(), accepted_tx.clone());
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => {
                        let _ = accepted_tx.send(Ok(tls)).await;
                    }
                    Ok(Err(error)) => tracing::debug!(%peer, %error, "internal tls handshake failed"),
                    Err(_) => tracing::debug!(%peer, "internal tls handshake timed out"),
                }
                drop(permit);
            });
        }
    });
    ReceiverStream::new(accepted_rx)
}

/// A server builder for an internal gRPC port; [`serve_router`] adds TLS when the process configured it.
pub fn server_builder() -> Result<GrpcServer, tonic::transport::Error> {
    Ok(tonic::transport::Server::builder().layer(TraceServerLayer))
}

fn endpoint(url: &str) -> Result<Endpoint, tonic::transport::Error> {
    let endpoint = Endpoint::from_shared(url.to_owned())?
        .connect_timeout(Duration::from_secs(3))
        .tcp_keepalive(Some(Duration::from_secs(30)))
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(10));
    // `https://` URLs use the internal TLS configuration (trusting only the internal CA); without one,
    // tonic's defaults apply.
    match crate::internal_tls::configured() {
        Some(tls) if url.starts_with("https://") => endpoint.tls_config(tls.client_config()),
        _ => Ok(endpoint),
    }
}

/// A channel to `url` (`http://host:port`) that connects on first use and
/// reconnects by itself, with bounded connect and keepalive timeouts. An `https://` URL with internal TLS
/// gets a new endpoint when the TLS material changes: later connections use the new material, calls on the
/// established one finish there.
pub fn lazy_channel(url: &str) -> Result<GrpcChannel, tonic::transport::Error> {
    let first = endpoint(url)?;
    let Some(tls) = crate::internal_tls::configured().filter(|_| url.starts_with("https://")) else {
        return Ok(traced(first.connect_lazy()));
    };
    // A balance over one endpoint, so it can be replaced (an insert under the same key).
    let (channel, changes_tx) = Channel::balance_channel(1);
    assert!(changes_tx.try_send(Change::Insert((), first)).is_ok(), "room for the first endpoint");
    let url = url.to_owned();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = changes_tx.closed() => return,
                () = tls.changed() => {}
            }
            let Ok(endpoint) = endpoint(&url) else { return };
            tracing::debug!(%url, "internal tls material changed; new connections use it");
            if changes_tx.send(Change::Insert((), endpoint)).await.is_err() {
                return;
            }
        }
    });
    Ok(traced(channel))
}

fn traced(channel: Channel) -> GrpcChannel {
    InjectTraceContext::new(channel)
}

/// How often [`replica_channel`] probes each replica.
pub const REPLICA_PROBE_INTERVAL: Duration = Duration::from_millis(500);

/// How often [`replica_channel`] looks up its URLs' host names again (and at once after a replica stopped
/// answering), so replicas added behind a name receive calls within this interval.
pub const RESOLVE_INTERVAL: Duration = Duration::from_secs(5);

/// What a [`Resolver`] returns: the addresses behind one `host:port`.
pub type Resolved = std::pin::Pin<Box<dyn std::future::Future<Output = std::io::Result<Vec<SocketAddr>>> + Send>>;

/// Looks up the addresses behind a `host:port` authority: the system resolver ([`system_resolver`]) in
/// production, a fixed table in tests.
pub type Resolver = Arc<dyn Fn(&str) -> Resolved + Send + Sync>;

/// The system's resolver (`getaddrinfo`: `/etc/hosts`, then DNS), as [`tokio::net::lookup_host`] calls it.
pub fn system_resolver() -> Resolver {
    Arc::new(|authority: &str| {
        let authority = authority.to_owned();
        Box::pin(async move { Ok(tokio::net::lookup_host(authority).await?.collect()) })
    })
}

/// A channel over every replica behind `urls`: a comma-separated list of `http(s)://host:port`, where each
/// host may be a name with several addresses (a Kubernetes headless Service: one address per ready pod).
/// Calls are spread by power-of-two-choices over the replicas that are up.
///
/// A background task keeps the set current:
/// - every [`RESOLVE_INTERVAL`] (and at once after a replica stopped answering) it looks the names up
///   again: an address that appeared joins the pool, one that disappeared leaves it (calls already sent to
///   it finish on their connection);
/// - every [`REPLICA_PROBE_INTERVAL`] it asks each address's gRPC health (`grpc.health.v1`, overall status,
///   on a connection of its own) and takes the ones that do not answer `SERVING` out until they do again:
///   a replica that is down, draining or cut off from its store (`crate::health::keep`) receives no new
///   calls, since tonic's balancer would keep sending to it. A server without the health service counts
///   as up while it answers.
///
/// The last live replica is never removed, and a failed or empty lookup keeps the previous addresses: with
/// every replica down, calls fail fast instead of waiting. `https://` URLs keep the host name for the
/// certificate check whatever address they connect to. Callers still retry idempotent calls that fail in
/// flight. Must be called inside a tokio runtime; the task ends when the channel is dropped.
pub fn replica_channel(urls: &str) -> Result<GrpcChannel, tonic::transport::Error> {
    replica_channel_with(urls, system_resolver(), RESOLVE_INTERVAL)
}

/// [`replica_channel`] with its resolver and re-resolution interval given (tests).
pub fn replica_channel_with(
    urls: &str,
    resolver: Resolver,
    resolve_interval: Duration,
) -> Result<GrpcChannel, tonic::transport::Error> {
    let targets = urls
        .split(',')
        .map(str::trim)
        .filter(|url| !url.is_empty())
        .map(|url| {
            endpoint(url)?; // a malformed URL fails here, at start, not in the background task
            let scheme = url.split_once("://").map_or("http", |(scheme, _)| scheme).to_owned();
            let authority = authority(url);
            Ok(Target { scheme, host: host(&authority), authority })
        })
        .collect::<Result<Vec<_>, tonic::transport::Error>>()?;
    let (channel, changes_tx) = Channel::balance_channel(64);
    let tls_generation = crate::internal_tls::configured().map_or(0, |tls| tls.generation());
    let discovery = Discovery { targets, resolver, resolve_interval, replicas: BTreeMap::new(), tls_generation };
    tokio::spawn(discovery.run(changes_tx));
    Ok(traced(channel))
}

/// One URL of a [`replica_channel`].
struct Target {
    scheme: String,
    /// `host:port`, looked up.
    authority: String,
    /// The host name, for TLS.
    host: String,
}

/// The header of the pool's own health probes, so a replica (or a test) can tell them from callers' calls.
pub const PROBE_HEADER: &str = "x-switchboard-probe";

/// One address in the pool.
struct Replica {
    endpoint: Endpoint,
    /// A connection of the probe's own, so probing does not wait behind (or disturb) the balancer's.
    probe: Channel,
    live: bool,
    /// The index of the [`Target`] whose name gave this address (the first, when several did).
    target: usize,
}

/// The background task of a [`replica_channel`]: the addresses behind its URLs, each with its endpoint
/// and whether the balancer has it.
struct Discovery {
    targets: Vec<Target>,
    resolver: Resolver,
    resolve_interval: Duration,
    /// `scheme://address` → the replica.
    replicas: BTreeMap<String, Replica>,
    /// The internal TLS generation the `https://` endpoints were built with.
    tls_generation: u64,
}

type Changes = tokio::sync::mpsc::Sender<Change<String, Endpoint>>;

impl Discovery {
    async fn run(mut self, changes: Changes) {
        let mut resolved_at: Option<tokio::time::Instant> = None;
        loop {
            if resolved_at.is_none_or(|at| at.elapsed() >= self.resolve_interval) {
                resolved_at = Some(tokio::time::Instant::now());
                if self.resolve(&changes).await.is_err() {
                    return;
                }
            }
            if self.renew_tls(&changes).await.is_err() {
                return;
            }
            match self.probe(&changes).await {
                Err(()) => return,
                // Look the names up again at once: the replica may have been replaced.
                Ok(true) => resolved_at = None,
                Ok(false) => {}
            }
            if changes.is_closed() {
                return;
            }
            tokio::time::sleep(REPLICA_PROBE_INTERVAL).await;
        }
    }

    /// Looks every URL up and brings the pool in line; `Err` once the channel is gone.
    async fn resolve(&mut self, changes: &Changes) -> Result<(), ()> {
        let mut found: BTreeMap<String, (Endpoint, usize)> = BTreeMap::new();
        for (index, target) in self.targets.iter().enumerate() {
            let addresses = match (self.resolver)(&target.authority).await {
                Ok(addresses) if !addresses.is_empty() => addresses,
                Ok(_) | Err(_) => {
                    // Keep what this URL had: a resolver hiccup must not empty the pool.
                    tracing::warn!(authority = %target.authority, "lookup failed or empty; keeping the known replicas");
                    for (key, replica) in self.replicas.iter().filter(|(_, replica)| replica.target == index) {
                        found.insert(key.clone(), (replica.endpoint.clone(), index));
                    }
                    continue;
                }
            };
            for address in addresses {
                let key = format!("{}://{address}", target.scheme);
                if found.contains_key(&key) {
                    continue;
                }
                let endpoint = match self.replicas.get(&key) {
                    Some(replica) => replica.endpoint.clone(),
                    None => match address_endpoint(target, address) {
                        Ok(endpoint) => endpoint,
                        Err(error) => {
                            tracing::warn!(%error, %key, "cannot dial this address");
                            continue;
                        }
                    },
                };
                found.insert(key, (endpoint, index));
            }
        }
        let gone: Vec<String> = self.replicas.keys().filter(|key| !found.contains_key(*key)).cloned().collect();
        for key in gone {
            let replica = self.replicas.remove(&key).expect("listed above");
            tracing::info!(replica = %key, "replica left the name's addresses");
            if replica.live {
                changes.send(Change::Remove(key)).await.map_err(|_| ())?;
            }
        }
        for (key, (endpoint, target)) in found {
            if self.replicas.contains_key(&key) {
                continue;
            }
            tracing::info!(replica = %key, "replica joined");
            // Optimistic: in the balancer until a probe says otherwise.
            changes.send(Change::Insert(key.clone(), endpoint.clone())).await.map_err(|_| ())?;
            let probe = endpoint.clone().connect_lazy();
            self.replicas.insert(key, Replica { endpoint, probe, live: true, target });
        }
        Ok(())
    }

    /// When the internal TLS material changed, replaces every `https://` replica's endpoint (an insert under
    /// the same key): new connections use the new material, calls on established ones finish there.
    async fn renew_tls(&mut self, changes: &Changes) -> Result<(), ()> {
        let Some(tls) = crate::internal_tls::configured() else { return Ok(()) };
        let generation = tls.generation();
        if generation == self.tls_generation {
            return Ok(());
        }
        self.tls_generation = generation;
        tracing::debug!("internal tls material changed; renewing the replicas' endpoints");
        for (key, replica) in &mut self.replicas {
            let Some(address) = key.strip_prefix("https://").and_then(|address| address.parse().ok()) else {
                continue;
            };
            let Ok(endpoint) = address_endpoint(&self.targets[replica.target], address) else { continue };
            replica.endpoint = endpoint.clone();
            replica.probe = endpoint.clone().connect_lazy();
            if replica.live {
                changes.send(Change::Insert(key.clone(), endpoint)).await.map_err(|_| ())?;
            }
        }
        Ok(())
    }

    /// Probes every replica and moves the ones whose state changed; `Ok(true)` when one stopped answering.
    async fn probe(&mut self, changes: &Changes) -> Result<bool, ()> {
        let mut lost = false;
        let keys: Vec<String> = self.replicas.keys().cloned().collect();
        for key in keys {
            let up = is_serving(&self.replicas[&key].probe).await;
            let live_count = self.replicas.values().filter(|replica| replica.live).count();
            let replica = self.replicas.get_mut(&key).expect("listed above");
            let change = match (up, replica.live) {
                (true, false) => Change::Insert(key.clone(), replica.endpoint.clone()),
                (false, true) if live_count > 1 => Change::Remove(key.clone()),
                _ => continue,
            };
            tracing::info!(replica = %key, up, "replica availability changed");
            replica.live = up;
            lost |= !up;
            changes.send(change).await.map_err(|_| ())?;
        }
        Ok(lost)
    }
}

/// The endpoint of one resolved address of `target`: dialled by address, checked (TLS) by host name.
fn address_endpoint(target: &Target, address: SocketAddr) -> Result<Endpoint, tonic::transport::Error> {
    let endpoint = endpoint(&format!("{}://{address}", target.scheme))?;
    match crate::internal_tls::configured() {
        Some(tls) if target.scheme == "https" => endpoint.tls_config(tls.client_config().domain_name(&target.host)),
        _ => Ok(endpoint),
    }
}

/// The `host:port` of a URL (scheme and path dropped).
fn authority(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    rest.split('/').next().unwrap_or(rest).to_owned()
}

/// The host of a `host:port` authority (brackets of an IPv6 literal dropped).
fn host(authority: &str) -> String {
    let host = authority.rsplit_once(':').map_or(authority, |(host, _)| host);
    host.trim_start_matches('[').trim_end_matches(']').to_owned()
}

/// Whether the replica on `probe` answers its overall gRPC health with `SERVING` within a second.
async fn is_serving(probe: &Channel) -> bool {
    use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};
    let mut request = tonic::Request::new(HealthCheckRequest { service: String::new() });
    request.metadata_mut().insert(PROBE_HEADER, tonic::metadata::MetadataValue::from_static("1"));
    let timeout = Duration::from_secs(1);
    request.set_timeout(timeout);
    match tokio::time::timeout(timeout, HealthClient::new(probe.clone()).check(request)).await {
        Ok(Ok(answer)) => answer.into_inner().status() == ServingStatus::Serving,
        Ok(Err(status)) => status.code() == tonic::Code::Unimplemented,
        Err(_) => false,
    }
}

/// A health service plus its reporter; services mark themselves serving once
/// their dependencies answer.
pub fn health() -> (
    tonic_health::server::HealthReporter,
    tonic_health::pb::health_server::HealthServer<impl tonic_health::pb::health_server::Health>,
) {
    tonic_health::server::health_reporter()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `crate::listen`: TLS connections of an internal port have `TCP_NODELAY` too.
    #[tokio::test]
    async fn tls_connections_are_accepted_with_nodelay() {
        use tokio_stream::StreamExt;
        let dir = tempfile::tempdir().unwrap();
        let ca = crate::tls::DevCa::load_or_create(dir.path(), &["localhost".into()]).unwrap();
        let server = crate::tls::https_server_config(&ca.server).unwrap();
        let client = tokio_rustls::TlsConnector::from(crate::tls::client_config_trusting(&ca.ca_pem).unwrap());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let mut incoming = tls_incoming(listener, server);
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let connecting = tokio::spawn(async move {
            let tcp = TcpStream::connect(address).await.unwrap();
            client.connect(name, tcp).await.unwrap()
        });
        let accepted = tokio::time::timeout(Duration::from_secs(10), incoming.next()).await.unwrap().unwrap().unwrap();
        assert!(accepted.get_ref().0.nodelay().unwrap());
        drop(connecting.await.unwrap());
    }

    #[test]
    fn probes_the_authority_of_a_url() {
        assert_eq!(authority("http://10.0.0.1:7003"), "10.0.0.1:7003");
        assert_eq!(authority("https://store.ns.svc:7003/"), "store.ns.svc:7003");
        assert_eq!(authority("127.0.0.1:1"), "127.0.0.1:1");
    }

    #[test]
    fn the_host_of_an_authority() {
        assert_eq!(host("store.ns.svc:7003"), "store.ns.svc");
        assert_eq!(host("[::1]:7003"), "::1");
        assert_eq!(host("10.0.0.1:7003"), "10.0.0.1");
    }

    /// A replica for the balancing test: a health service that counts the calls it answers.
    struct CountingReplica {
        address: SocketAddr,
        calls: Arc<std::sync::atomic::AtomicUsize>,
        reporter: tonic_health::server::HealthReporter,
        shutdown: Shutdown,
        server: tokio::task::JoinHandle<Result<(), tonic::transport::Error>>,
    }

    impl CountingReplica {
        async fn start() -> Self {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let address = listener.local_addr().unwrap();
            let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
            let counted = calls.clone();
            let count = tower::util::MapRequestLayer::new(move |request: http::Request<_>| {
                if !request.headers().contains_key(PROBE_HEADER) {
                    counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                request
            });
            let (reporter, health_service) = health();
            let router = tonic::transport::Server::builder().layer(count).add_service(health_service);
            let shutdown = Shutdown::new();
            let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
            let stop = shutdown.clone().cancelled_owned();
            let server = tokio::spawn(router.serve_with_incoming_shutdown(incoming, stop));
            Self { address, calls, reporter, shutdown, server }
        }

        fn take_calls(&self) -> usize {
            self.calls.swap(0, std::sync::atomic::Ordering::Relaxed)
        }
    }

    /// `count` health checks, `concurrency` at a time; how many failed.
    async fn call_many(channel: &GrpcChannel, count: usize, concurrency: usize) -> usize {
        use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
        let semaphore = Arc::new(tokio::sync::Semaphore::new(concurrency));
        let mut calls = tokio::task::JoinSet::new();
        for _ in 0..count {
            let permit = semaphore.clone().acquire_owned().await.unwrap();
            let mut client = HealthClient::new(channel.clone());
            calls.spawn(async move {
                let ok = client.check(HealthCheckRequest { service: String::new() }).await.is_ok();
                drop(permit);
                ok
            });
        }
        calls.join_all().await.into_iter().filter(|ok| !ok).count()
    }

    /// Three replicas behind one name, as a headless Service publishes them: calls spread over the
    /// addresses the name has; a replica added to the name receives its share after one re-resolution;
    /// one taken out of the name (then stopped, as Kubernetes does with a terminating pod) leaves the pool
    /// without a failed call.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn calls_follow_the_replicas_behind_a_name() {
        let replicas = [CountingReplica::start().await, CountingReplica::start().await, CountingReplica::start().await];
        let published: Arc<std::sync::Mutex<Vec<SocketAddr>>> =
            Arc::new(std::sync::Mutex::new(vec![replicas[0].address, replicas[1].address]));
        let lookups = published.clone();
        let resolver: Resolver = Arc::new(move |authority: &str| {
            assert_eq!(authority, "store.test:7003");
            let addresses = lookups.lock().unwrap().clone();
            Box::pin(async move { Ok(addresses) })
        });
        let interval = Duration::from_millis(300);
        let channel = replica_channel_with("http://store.test:7003", resolver, interval).unwrap();

        // Two replicas behind the name: both receive calls, the third none.
        assert_eq!(call_many(&channel, 200, 8).await, 0);
        let split: Vec<usize> = replicas.iter().map(CountingReplica::take_calls).collect();
        assert!(split[0] > 20 && split[1] > 20 && split[2] == 0, "split over two replicas: {split:?}");

        // A third appears behind the name: within one re-resolution (and a probe round) it takes a share.
        published.lock().unwrap().push(replicas[2].address);
        tokio::time::sleep(interval + REPLICA_PROBE_INTERVAL * 2).await;
        assert_eq!(call_many(&channel, 300, 8).await, 0);
        let split: Vec<usize> = replicas.iter().map(CountingReplica::take_calls).collect();
        assert!(split.iter().all(|&calls| calls >= 30), "split over three replicas: {split:?}");

        // The second leaves the name, then stops: no call fails, and it receives none after leaving.
        published.lock().unwrap().retain(|address| *address != replicas[1].address);
        let load = {
            let channel = channel.clone();
            tokio::spawn(async move {
                let mut failed = 0;
                for _ in 0..10 {
                    failed += call_many(&channel, 60, 8).await;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                failed
            })
        };
        tokio::time::sleep(interval + REPLICA_PROBE_INTERVAL * 2).await;
        let [first, second, third] = replicas;
        second.take_calls();
        let second_calls = second.calls.clone();
        second.shutdown.cancel();
        second.server.await.unwrap().unwrap();
        assert_eq!(load.await.unwrap(), 0, "calls failed while a replica left");
        assert_eq!(
            second_calls.load(std::sync::atomic::Ordering::Relaxed),
            0,
            "the replica that left still received calls"
        );
        assert_eq!(call_many(&channel, 200, 8).await, 0);
        let split = [first.take_calls(), third.take_calls()];
        assert!(split.iter().all(|&calls| calls >= 20), "split over the remaining two: {split:?}");
    }

    /// A replica whose health turns `NOT_SERVING` (draining, or cut off from its store) stops receiving
    /// calls within a probe round, and receives them again once it is `SERVING`.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn calls_avoid_a_replica_that_is_not_serving() {
        use tonic_health::ServingStatus;
        let replicas = [CountingReplica::start().await, CountingReplica::start().await];
        let urls = replicas.iter().map(|replica| format!("http://{}", replica.address)).collect::<Vec<_>>().join(",");
        let channel = replica_channel(&urls).unwrap();
        assert_eq!(call_many(&channel, 100, 8).await, 0);
        let split: Vec<usize> = replicas.iter().map(CountingReplica::take_calls).collect();
        assert!(split.iter().all(|&calls| calls >= 10), "both replicas receive calls: {split:?}");

        replicas[1].reporter.set_service_status("", ServingStatus::NotServing).await;
        tokio::time::sleep(REPLICA_PROBE_INTERVAL * 3).await;
        replicas[1].take_calls();
        assert_eq!(call_many(&channel, 100, 8).await, 0, "calls go on without it");
        assert_eq!(replicas[1].take_calls(), 0, "the NOT_SERVING replica received calls");
        assert_eq!(replicas[0].take_calls(), 100);

        replicas[1].reporter.set_service_status("", ServingStatus::Serving).await;
        tokio::time::sleep(REPLICA_PROBE_INTERVAL * 3).await;
        assert_eq!(call_many(&channel, 100, 8).await, 0);
        assert!(replicas[1].take_calls() >= 10, "the replica serving again receives calls");
    }

    #[tokio::test]
    async fn calls_skip_a_replica_that_is_down() {
        use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
        // One live replica (a health service) and one address where nothing listens.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let live = format!("http://{}", listener.local_addr().unwrap());
        let dead = {
            let dead_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            format!("http://{}", dead_listener.local_addr().unwrap())
        };
        let shutdown = Shutdown::new();
        let (_reporter, health_service) = health();
        let router = server_builder().unwrap().add_service(health_service);
        let server = tokio::spawn(serve_router(router, listener, shutdown.clone()));

        let mut client = HealthClient::new(replica_channel(&format!("{dead},{live}")).unwrap());
        // Wait (bounded) until the probe has removed the dead replica, then every call must succeed.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let mut consecutive_ok = 0;
        while consecutive_ok < 20 {
            let ok = client.check(HealthCheckRequest { service: String::new() }).await.is_ok();
            consecutive_ok = if ok { consecutive_ok + 1 } else { 0 };
            assert!(tokio::time::Instant::now() < deadline, "calls kept reaching the dead replica");
            if !ok {
                tokio::time::sleep(REPLICA_PROBE_INTERVAL / 5).await;
            }
        }
        shutdown.cancel();
        server.await.unwrap().unwrap();
    }
}
