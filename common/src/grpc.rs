//! Serving and dialing gRPC services.
//!
//! Every server ([`server_builder`]) and every channel ([`lazy_channel`], [`replica_channel`]) carries the
//! W3C trace context of each call ([`crate::trace_context`]): their types say so ([`GrpcServer`],
//! [`GrpcRouter`], [`GrpcChannel`]), so a server or client built another way does not fit.

use std::time::Duration;

use tokio::net::TcpListener;
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
/// then lets in-flight calls finish.
pub async fn serve_router(
    router: GrpcRouter,
    listener: TcpListener,
    shutdown: Shutdown,
) -> Result<(), tonic::transport::Error> {
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    router.serve_with_incoming_shutdown(incoming, shutdown.cancelled_owned()).await
}

/// A server builder for an internal gRPC port: TLS (and mTLS) when the process configured
/// [`crate::internal_tls`], plaintext otherwise.
pub fn server_builder() -> Result<GrpcServer, tonic::transport::Error> {
    let builder = tonic::transport::Server::builder().layer(TraceServerLayer);
    match crate::internal_tls::configured().and_then(|tls| tls.server_config()) {
        Some(config) => builder.tls_config(config),
        None => Ok(builder),
    }
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
/// reconnects by itself, with bounded connect and keepalive timeouts.
pub fn lazy_channel(url: &str) -> Result<GrpcChannel, tonic::transport::Error> {
    Ok(traced(endpoint(url)?.connect_lazy()))
}

fn traced(channel: Channel) -> GrpcChannel {
    InjectTraceContext::new(channel)
}

/// How often [`replica_channel`] probes each replica.
pub const REPLICA_PROBE_INTERVAL: Duration = Duration::from_millis(500);

/// A channel over every replica in `urls` (comma-separated `http://host:port`
/// list, or one URL such as a Kubernetes Service name). With several URLs,
/// calls are spread by power-of-two-choices over the replicas that are up.
///
/// tonic's balancer keeps sending to a replica it cannot connect to, so a
/// background task probes every replica (a TCP connect, every
/// [`REPLICA_PROBE_INTERVAL`]) and removes the ones that refuse connections,
/// re-inserting them when they answer again. The last live replica is never
/// removed: with every replica down, calls fail fast instead of waiting.
/// Callers still retry idempotent calls that fail in flight. Must be called
/// inside a tokio runtime; the probe task ends when the channel is dropped.
pub fn replica_channel(urls: &str) -> Result<GrpcChannel, tonic::transport::Error> {
    let urls: Vec<&str> = urls.split(',').map(str::trim).filter(|url| !url.is_empty()).collect();
    if let [url] = urls.as_slice() {
        return lazy_channel(url);
    }
    let replicas = urls
        .into_iter()
        .map(|url| Ok(Replica { url: url.to_owned(), address: authority(url), endpoint: endpoint(url)? }))
        .collect::<Result<Vec<_>, tonic::transport::Error>>()?;
    let (channel, changes_tx) = Channel::balance_channel(replicas.len() * 2 + 1);
    tokio::spawn(probe_replicas(replicas, changes_tx));
    Ok(traced(channel))
}

struct Replica {
    url: String,
    /// `host:port` to probe.
    address: String,
    endpoint: Endpoint,
}

fn authority(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    rest.split('/').next().unwrap_or(rest).to_owned()
}

async fn is_up(address: &str) -> bool {
    matches!(tokio::time::timeout(Duration::from_secs(1), tokio::net::TcpStream::connect(address)).await, Ok(Ok(_)))
}

async fn probe_replicas(replicas: Vec<Replica>, changes_tx: tokio::sync::mpsc::Sender<Change<String, Endpoint>>) {
    // Start optimistic: every replica is in the balancer until a probe says otherwise.
    let mut live = vec![true; replicas.len()];
    for replica in &replicas {
        if changes_tx.send(Change::Insert(replica.url.clone(), replica.endpoint.clone())).await.is_err() {
            return;
        }
    }
    loop {
        for (index, replica) in replicas.iter().enumerate() {
            let up = is_up(&replica.address).await;
            let change = match (up, live[index]) {
                (true, false) => Change::Insert(replica.url.clone(), replica.endpoint.clone()),
                (false, true) if live.iter().filter(|&&l| l).count() > 1 => Change::Remove(replica.url.clone()),
                _ => continue,
            };
            tracing::info!(replica = %replica.url, up, "replica availability changed");
            live[index] = up;
            if changes_tx.send(change).await.is_err() {
                return;
            }
        }
        if changes_tx.is_closed() {
            return;
        }
        tokio::time::sleep(REPLICA_PROBE_INTERVAL).await;
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

    #[test]
    fn probes_the_authority_of_a_url() {
        assert_eq!(authority("http://10.0.0.1:7003"), "10.0.0.1:7003");
        assert_eq!(authority("https://store.ns.svc:7003/"), "store.ns.svc:7003");
        assert_eq!(authority("127.0.0.1:1"), "127.0.0.1:1");
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
