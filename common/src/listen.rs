//! Accepting connections on every Switchboard port: each accepted TCP connection gets `TCP_NODELAY`.
//!
//! A server answers a call in several small writes (HTTP/2 headers, data and trailers; a gRPC stream's
//! messages). With Nagle's algorithm on, a small write waits until the previous one is acknowledged, and
//! the peer delays its acknowledgement (40 ms on Linux): a caller that makes one call after another over
//! an otherwise quiet connection waits about 40 ms per call. Every client Switchboard builds already sets
//! `TCP_NODELAY` (tonic's default); the servers set it here. Measured in BENCHMARKS.md, *Queue drain*.
//!
//! - The internal gRPC ports: [`crate::grpc::serve_router`] (plaintext through [`grpc_incoming`], TLS by
//!   setting it before the handshake).
//! - The HTTP ports (the gateway, the resolver, the agent port): [`http`] and [`https`].

use std::{io, net::SocketAddr, sync::Arc};

use axum_server::{accept::NoDelayAcceptor, tls_rustls::RustlsAcceptor};

/// An HTTP server on `listener` ([`axum_server::from_tcp`]) whose connections have `TCP_NODELAY`.
pub fn http(listener: std::net::TcpListener) -> io::Result<axum_server::Server<SocketAddr, NoDelayAcceptor>> {
    Ok(axum_server::from_tcp(listener)?.acceptor(NoDelayAcceptor))
}

/// An HTTPS server on `listener` with `config` ([`axum_server::tls_rustls::from_tcp_rustls`]) whose
/// connections have `TCP_NODELAY`.
pub fn https(
    listener: std::net::TcpListener,
    config: Arc<rustls::ServerConfig>,
) -> io::Result<axum_server::Server<SocketAddr, RustlsAcceptor<NoDelayAcceptor>>> {
    let config = axum_server::tls_rustls::RustlsConfig::from_config(config);
    Ok(axum_server::from_tcp(listener)?.acceptor(RustlsAcceptor::new(config).acceptor(NoDelayAcceptor)))
}

/// The plaintext connections of an internal gRPC port, with `TCP_NODELAY`.
pub fn grpc_incoming(listener: tokio::net::TcpListener) -> tonic::transport::server::TcpIncoming {
    tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio_stream::StreamExt;

    use super::*;

    #[tokio::test]
    async fn grpc_connections_are_accepted_with_nodelay() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let mut incoming = grpc_incoming(listener);
        let _client = tokio::net::TcpStream::connect(address).await.unwrap();
        let accepted = tokio::time::timeout(Duration::from_secs(5), incoming.next()).await.unwrap().unwrap().unwrap();
        assert!(accepted.nodelay().unwrap());
    }
}
