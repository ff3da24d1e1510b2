//! TLS material and rustls configuration.
//!
//! `switchboard up` needs HTTPS and a TLS agent port with no setup, so on first
//! start it writes a development CA and a server certificate (for `localhost`,
//! `127.0.0.1` and `::1` plus any extra names) into `<data-dir>/tls/`. Clients
//! trust `ca.pem`. Production deployments pass their own certificate instead.
//!
//! The public TLS ports (the agent port 8445, the session resolver 8447) can require client certificates;
//! the development CA can issue them ([`DevCa::issue_client_identity`]). The services' rustls server configs
//! come from [`crate::tls_reload::server_config`], which follows the certificate files; the helpers here
//! build the same for fixed material (tests).

use std::{
    fs,
    path::{Path, PathBuf},
    sync::Arc,
};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// TLS setup failures.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// Reading or writing a PEM file failed.
    #[error("tls file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Generating a certificate failed.
    #[error("generating certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// rustls refused the material.
    #[error("tls configuration: {0}")]
    Rustls(#[from] rustls::Error),
    /// The PEM held no certificate or no key.
    #[error("{0}")]
    Pem(String),
    /// The client CA could not make a certificate verifier.
    #[error("client CA: {0}")]
    ClientCa(#[from] rustls::server::VerifierBuilderError),
}

/// A server identity: certificate chain and private key, both PEM.
#[derive(Clone)]
pub struct Identity {
    /// Certificate chain, leaf first.
    pub cert_pem: String,
    /// PKCS#8 private key.
    pub key_pem: String,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity").field("key_pem", &"[redacted]").finish_non_exhaustive()
    }
}

/// The development CA and the server identity it signed.
#[derive(Debug, Clone)]
pub struct DevCa {
    /// Path of the CA certificate clients should trust.
    pub ca_path: PathBuf,
    /// The CA certificate, PEM.
    pub ca_pem: String,
    /// The server identity for the gateway and the agent endpoint.
    pub server: Identity,
}

impl DevCa {
    /// Loads `<dir>/ca.pem`, `server.pem` and `server-key.pem`, creating them
    /// first if any is missing. `extra_names` are added to the server
    /// certificate's subject alternative names when it is created.
    pub fn load_or_create(dir: &Path, extra_names: &[String]) -> Result<Self, TlsError> {
        let ca_path = dir.join("ca.pem");
        let cert_path = dir.join("server.pem");
        let key_path = dir.join("server-key.pem");
        if !(ca_path.exists() && cert_path.exists() && key_path.exists()) {
            fs::create_dir_all(dir).map_err(|source| TlsError::Io { path: dir.to_owned(), source })?;
            let generated = generate(extra_names)?;
            write_file(&dir.join("ca-key.pem"), &generated.ca_key_pem, true)?;
            write_file(&ca_path, &generated.ca_pem, false)?;
            write_file(&key_path, &generated.server.key_pem, true)?;
            write_file(&cert_path, &generated.server.cert_pem, false)?;
        }
        Ok(Self {
            ca_pem: read_file(&ca_path)?,
            server: Identity { cert_pem: read_file(&cert_path)?, key_pem: read_file(&key_path)? },
            ca_path,
        })
    }

    /// A new client certificate (extended key usage `clientAuth`) for `common_name`, signed by this CA with
    /// its key (`ca-key.pem` next to `ca.pem`): what the all-in-one's simulated hosts and the tests present
    /// to a port with a client CA.
    pub fn issue_client_identity(&self, common_name: &str) -> Result<Identity, TlsError> {
        let ca_key = KeyPair::from_pem(&read_file(&self.ca_path.with_file_name("ca-key.pem"))?)?;
        let issuer = Issuer::new(dev_ca_params()?, &ca_key);
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name.push(DnType::CommonName, common_name);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let cert = params.signed_by(&key, &issuer)?;
        Ok(Identity { cert_pem: cert.pem(), key_pem: key.serialize_pem() })
    }
}

impl DevCa {
    /// A new server certificate for `names`, signed by this CA like `server.pem` but with its own key and
    /// serial: what a renewal looks like (tests rotate to it).
    pub fn issue_server_identity(&self, names: &[String]) -> Result<Identity, TlsError> {
        let ca_key = KeyPair::from_pem(&read_file(&self.ca_path.with_file_name("ca-key.pem"))?)?;
        let issuer = Issuer::new(dev_ca_params()?, &ca_key);
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(names.to_vec())?;
        params.distinguished_name.push(DnType::CommonName, "switchboard");
        let cert = params.signed_by(&key, &issuer)?;
        Ok(Identity { cert_pem: cert.pem(), key_pem: key.serialize_pem() })
    }
}

/// The development CA's parameters. Deterministic, so the CA can issue again after a restart from its key
/// alone (an issuer is its name and key).
fn dev_ca_params() -> Result<CertificateParams, TlsError> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name.push(DnType::CommonName, "Switchboard development CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    Ok(params)
}

struct Generated {
    ca_pem: String,
    ca_key_pem: String,
    server: Identity,
}

fn generate(extra_names: &[String]) -> Result<Generated, TlsError> {
    let ca_key = KeyPair::generate()?;
    let ca_params = dev_ca_params()?;
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca_params, &ca_key);

    let mut names = vec!["localhost".to_owned(), "127.0.0.1".to_owned(), "::1".to_owned()];
    names.extend(extra_names.iter().cloned());
    let server_key = KeyPair::generate()?;
    let mut server_params = CertificateParams::new(names)?;
    server_params.distinguished_name.push(DnType::CommonName, "switchboard");
    let server_cert = server_params.signed_by(&server_key, &issuer)?;
    Ok(Generated {
        ca_pem: ca_cert.pem(),
        ca_key_pem: ca_key.serialize_pem(),
        server: Identity { cert_pem: server_cert.pem(), key_pem: server_key.serialize_pem() },
    })
}

fn read_file(path: &Path) -> Result<String, TlsError> {
    fs::read_to_string(path).map_err(|source| TlsError::Io { path: path.to_owned(), source })
}

fn write_file(path: &Path, contents: &str, private: bool) -> Result<(), TlsError> {
    let io = |source| TlsError::Io { path: path.to_owned(), source };
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = private;
    use std::io::Write;
    options.open(path).map_err(io)?.write_all(contents.as_bytes()).map_err(io)
}

/// Installs ring as the process-wide rustls provider (idempotent).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

pub(crate) fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Parses every certificate in a PEM string.
pub fn parse_certs(pem: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = rustls_pemfile::certs(&mut pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem(format!("bad certificate PEM: {e}")))?;
    if certs.is_empty() {
        return Err(TlsError::Pem("no certificate in PEM".into()));
    }
    Ok(certs)
}

pub(crate) fn parse_key(pem: &str) -> Result<PrivateKeyDer<'static>, TlsError> {
    rustls_pemfile::private_key(&mut pem.as_bytes())
        .map_err(|e| TlsError::Pem(format!("bad private key PEM: {e}")))?
        .ok_or_else(|| TlsError::Pem("no private key in PEM".into()))
}

/// The ALPN protocols of the HTTPS ports (the gateway, the agent port, the session resolver).
pub const HTTPS_ALPN: &[&[u8]] = &[b"h2", b"http/1.1"];

/// A rustls server config for HTTPS (ALPN h2 and http/1.1) without client certificates, for fixed
/// material (tests; services serve [`crate::tls_reload::server_config`] with material that follows its files).
pub fn https_server_config(identity: &Identity) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    https_server_config_with_client_ca(identity, None)
}

/// A rustls server config for HTTPS (ALPN h2 and http/1.1) for fixed material. With `client_ca_pem` (one or
/// more PEM CA certificates) every client must present a certificate chaining to one of them, or the
/// handshake fails (mutual TLS); without, no client certificate is asked for.
pub fn https_server_config_with_client_ca(
    identity: &Identity,
    client_ca_pem: Option<&str>,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let identity = crate::tls_reload::ReloadingIdentity::from_pem(identity)?;
    let client_ca = client_ca_pem.map(crate::tls_reload::ReloadingCa::from_pem).transpose()?;
    crate::tls_reload::server_config(&identity, client_ca.as_ref(), HTTPS_ALPN)
}

/// A rustls client config trusting only the given CA certificates.
pub fn client_config_trusting(ca_pem: &str) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    client_config_with_identity(ca_pem, None)
}

/// A rustls client config trusting only the given CA certificates and presenting `identity` as its client
/// certificate when given (for ports with a client CA).
pub fn client_config_with_identity(
    ca_pem: &str,
    identity: Option<&Identity>,
) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in parse_certs(ca_pem)? {
        roots.add(cert)?;
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
    let config = match identity {
        Some(identity) => {
            builder.with_client_auth_cert(parse_certs(&identity.cert_pem)?, parse_key(&identity.key_pem)?)?
        }
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn creates_once_and_reloads_the_same_material() {
        let dir = tempfile::tempdir().unwrap();
        let first = DevCa::load_or_create(dir.path(), &["broker.example".into()]).unwrap();
        let second = DevCa::load_or_create(dir.path(), &[]).unwrap();
        assert_eq!(first.ca_pem, second.ca_pem);
        assert_eq!(first.server.cert_pem, second.server.cert_pem);
        https_server_config(&first.server).unwrap();
        client_config_trusting(&first.ca_pem).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(dir.path().join("server-key.pem")).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "private key must not be group/world readable");
        }
    }

    #[test]
    fn client_ca_configs_accept_ca_pem_and_refuse_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let ca = DevCa::load_or_create(dir.path(), &[]).unwrap();
        let client = ca.issue_client_identity("host-1").unwrap();
        assert_ne!(client.cert_pem, ca.server.cert_pem);
        https_server_config_with_client_ca(&ca.server, Some(&ca.ca_pem)).unwrap();
        client_config_with_identity(&ca.ca_pem, Some(&client)).unwrap();
        let error = https_server_config_with_client_ca(&ca.server, Some("not a pem")).unwrap_err();
        assert!(error.to_string().contains("no certificate"), "{error}");
    }

    /// Runs a TLS handshake between the two configs in memory: the certificate the server presented, or the
    /// first error either side reported.
    pub(crate) fn handshake(
        server: Arc<rustls::ServerConfig>,
        client: Arc<rustls::ClientConfig>,
    ) -> Result<rustls::pki_types::CertificateDer<'static>, rustls::Error> {
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let mut client = rustls::ClientConnection::new(client, name)?;
        let mut server = rustls::ServerConnection::new(server)?;
        for _ in 0..20 {
            let mut bytes = Vec::new();
            while client.wants_write() {
                client.write_tls(&mut bytes).unwrap();
            }
            server.read_tls(&mut bytes.as_slice()).unwrap();
            server.process_new_packets()?;
            let mut bytes = Vec::new();
            while server.wants_write() {
                server.write_tls(&mut bytes).unwrap();
            }
            client.read_tls(&mut bytes.as_slice()).unwrap();
            client.process_new_packets()?;
            if !client.is_handshaking() && !server.is_handshaking() {
                return Ok(client.peer_certificates().expect("a finished handshake")[0].clone().into_owned());
            }
        }
        panic!("handshake did not finish");
    }

    #[test]
    fn a_client_ca_admits_only_its_clients() {
        let dir = tempfile::tempdir().unwrap();
        let ca = DevCa::load_or_create(dir.path(), &[]).unwrap();
        let other_dir = tempfile::tempdir().unwrap();
        let other = DevCa::load_or_create(other_dir.path(), &[]).unwrap();
        let mutual = https_server_config_with_client_ca(&ca.server, Some(&ca.ca_pem)).unwrap();
        let client = |identity: Option<&Identity>| client_config_with_identity(&ca.ca_pem, identity).unwrap();

        let ours = ca.issue_client_identity("host-1").unwrap();
        handshake(mutual.clone(), client(Some(&ours))).expect("a certificate from the client CA is admitted");
        let anonymous = handshake(mutual.clone(), client(None)).unwrap_err();
        assert!(matches!(anonymous, rustls::Error::NoCertificatesPresented), "{anonymous:?}");
        let stranger = other.issue_client_identity("host-1").unwrap();
        let refused = handshake(mutual, client(Some(&stranger))).unwrap_err();
        assert!(matches!(refused, rustls::Error::InvalidCertificate(_)), "{refused:?}");

        // Without a client CA nothing is asked for.
        handshake(https_server_config(&ca.server).unwrap(), client(None)).expect("plain TLS");
    }
}
