//! Serving and dialing gRPC services.

use std::time::Duration;

use tokio::net::TcpListener;
use tonic::transport::{Channel, Endpoint, server::Router};

use crate::Shutdown;

/// Serves `router` on an already-bound listener until `shutdown` is cancelled,
/// then lets in-flight calls finish.
pub async fn serve_router(
    router: Router,
    listener: TcpListener,
    shutdown: Shutdown,
) -> Result<(), tonic::transport::Error> {
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    router.serve_with_incoming_shutdown(incoming, shutdown.cancelled_owned()).await
}

fn endpoint(url: &str) -> Result<Endpoint, tonic::transport::Error> {
    Ok(Endpoint::from_shared(url.to_owned())?
        .connect_timeout(Duration::from_secs(3))
        .tcp_keepalive(Some(Duration::from_secs(30)))
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(10)))
}

/// A channel to `url` (`http://host:port`) that connects on first use and
/// reconnects by itself, with bounded connect and keepalive timeouts.
pub fn lazy_channel(url: &str) -> Result<Channel, tonic::transport::Error> {
    Ok(endpoint(url)?.connect_lazy())
}

/// A channel over every replica in `urls` (comma-separated `http://host:port`
/// list, or one URL such as a Kubernetes Service name). With several URLs,
/// calls are spread by power-of-two-choices over the replicas that are
/// connected; a replica that goes away is skipped until it is back. Callers
/// still retry idempotent calls that fail in flight.
pub fn replica_channel(urls: &str) -> Result<Channel, tonic::transport::Error> {
    let urls: Vec<&str> = urls.split(',').map(str::trim).filter(|url| !url.is_empty()).collect();
    if let [url] = urls.as_slice() {
        return lazy_channel(url);
    }
    let endpoints = urls.into_iter().map(endpoint).collect::<Result<Vec<_>, _>>()?;
    Ok(Channel::balance_list(endpoints.into_iter()))
}

/// A health service plus its reporter; services mark themselves serving once
/// their dependencies answer.
pub fn health() -> (
    tonic_health::server::HealthReporter,
    tonic_health::pb::health_server::HealthServer<impl tonic_health::pb::health_server::Health>,
) {
    tonic_health::server::health_reporter()
}
