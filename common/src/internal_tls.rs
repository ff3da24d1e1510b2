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

use std::sync::OnceLock;

use tonic::transport::{Certificate, ClientTlsConfig, ServerTlsConfig};

use crate::tls::Identity;

/// This process's internal TLS material.
#[derive(Clone)]
pub struct InternalTls {
    /// PEM of the CA that signs the internal servers' (and, with mTLS, the clients') certificates.
    pub ca_pem: String,
    /// This process's certificate and key: served on its internal port and presented as client certificate.
    pub identity: Option<Identity>,
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
    /// The server side, when this process has a certificate.
    pub fn server_config(&self) -> Option<ServerTlsConfig> {
        let identity = self.identity.as_ref()?;
        let mut config = ServerTlsConfig::new()
            .identity(tonic::transport::Identity::from_pem(&identity.cert_pem, &identity.key_pem));
        if self.require_client_cert {
            config = config.client_ca_root(Certificate::from_pem(&self.ca_pem));
        }
        Some(config)
    }

    /// The client side for `https://` URLs.
    pub fn client_config(&self) -> ClientTlsConfig {
        let mut config = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&self.ca_pem));
        if let Some(identity) = &self.identity {
            config = config.identity(tonic::transport::Identity::from_pem(&identity.cert_pem, &identity.key_pem));
        }
        config
    }
}

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
