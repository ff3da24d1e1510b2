//! TLS (optionally mutual) for the internal gRPC ports: auth 7001, placement 7002, session-store 7003.
//!
//! Off by default: the internal ports are plaintext and must stay on the cluster network (the all-in-one
//! keeps them on loopback). A service binary turns it on with the `internal_tls_*` settings and calls
//! [`configure`] once at start; from then on, in that process:
//! - [`crate::grpc::server_builder`] serves its internal port with TLS (this process's certificate), and with
//!   `internal_tls_client_auth` requires client certificates signed by the internal CA (mTLS);
//! - every channel dialed to an `https://` URL ([`crate::grpc::lazy_channel`],
//!   [`crate::grpc::replica_channel`]) trusts only the internal CA and presents this process's certificate as
//!   its client certificate when it has one. `http://` URLs stay plaintext, so switching on TLS means
//!   switching the upstream URLs (and session-store's advertised address) to `https://`.
//!
//! The CA, certificate and key follow their files ([`crate::tls_reload`]): the internal port presents the
//! current certificate at each handshake, and channels replace their endpoints when the material changes,
//! so new connections use it while established ones continue.

use std::sync::{Arc, OnceLock};

use tonic::transport::{Certificate, ClientTlsConfig};

use crate::tls_reload::{ReloadingCa, ReloadingIdentity};

/// This process's internal TLS material.
#[derive(Clone)]
pub struct InternalTls {
    /// The CA that signs the internal servers' (and, with mTLS, the clients') certificates.
    pub ca: ReloadingCa,
    /// This process's certificate and key: served on its internal port and presented as client certificate.
    pub identity: Option<ReloadingIdentity>,
    /// Whether this process's internal port requires client certificates (mTLS).
    pub require_client_cert: bool,
}

impl std::fmt::Debug for InternalTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InternalTls")
            .field("identity", &self.identity.is_some())
            .field("require_client_cert", &self.require_client_cert)
            .finish_non_exhaustive()
    }
}

impl InternalTls {
    /// The server side (gRPC: ALPN h2), when this process has a certificate.
    pub fn server_config(&self) -> Option<Arc<rustls::ServerConfig>> {
        let identity = self.identity.as_ref()?;
        let client_ca = self.require_client_cert.then_some(&self.ca);
        let config = crate::tls_reload::server_config(identity, client_ca, GRPC_ALPN);
        Some(config.expect("the ring provider supports the safe default protocol versions"))
    }

    /// The client side for `https://` URLs, from the current material: what a new endpoint is built with.
    pub fn client_config(&self) -> ClientTlsConfig {
        let mut config = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&self.ca.current().pem));
        if let Some(identity) = &self.identity {
            let identity = identity.current();
            config =
                config.identity(tonic::transport::Identity::from_pem(&identity.pem.cert_pem, &identity.pem.key_pem));
        }
        config
    }

    /// Changes each time the CA or this process's certificate changes: channels compare it to know when to
    /// replace their endpoints.
    pub fn generation(&self) -> u64 {
        self.ca.generation() + self.identity.as_ref().map_or(0, ReloadingIdentity::generation)
    }

    /// Resolves at the next change of the material (never, for fixed material).
    pub async fn changed(&self) {
        let mut ca_rx = self.ca.subscribe();
        let mut identity_rx = self.identity.as_ref().map(ReloadingIdentity::subscribe);
        // Fresh receivers start from what their source saw first: only what comes after now counts.
        ca_rx.borrow_and_update();
        if let Some(rx) = identity_rx.as_mut() {
            rx.borrow_and_update();
        }
        let identity_changed = async {
            let changed = match identity_rx.as_mut() {
                Some(rx) => rx.changed().await.is_ok(),
                None => false,
            };
            if !changed {
                std::future::pending::<()>().await;
            }
        };
        let ca_changed = async {
            if ca_rx.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            () = identity_changed => {}
            () = ca_changed => {}
        }
    }
}

/// The internal ports speak gRPC only.
const GRPC_ALPN: &[&[u8]] = &[b"h2"];

static CONFIGURED: OnceLock<InternalTls> = OnceLock::new();

/// Sets this process's internal TLS (once, at start, before serving or dialing); later calls are ignored.
pub fn configure(tls: InternalTls) {
    crate::tls::install_crypto_provider();
    let _ = CONFIGURED.set(tls);
}

/// This process's internal TLS, if [`configure`]d.
pub fn configured() -> Option<&'static InternalTls> {
    CONFIGURED.get()
}
