//! TLS material that follows its files, so a renewed certificate (cert-manager, an operator's rotation)
//! is used without a restart.
//!
//! A [`Reloading`] value is parsed from PEM files and re-read every [`RELOAD_INTERVAL`] by a small
//! background thread; when the files' contents changed and parse, the new value is published (and
//! `switchboard_tls_reloads_total{outcome="loaded"}` counts it). Contents that do not parse (a rotation
//! caught half-written, a key that does not match its certificate) keep the previous value, are logged once
//! (never their contents) and counted as `refused`, and are tried again at the next check.
//!
//! Who reads the current value when:
//! - servers ([`server_config`]) ask at every handshake: the certificate through a
//!   [`ResolvesServerCert`], the client CA through a delegating [`ClientCertVerifier`]. Established
//!   connections keep the session they negotiated and continue.
//! - clients (internal gRPC channels, the agent) build their TLS configuration from the current value
//!   whenever they make a new connection, and internal channels replace their endpoints when it changes.
//!
//! Material that has no files (the development CA, tests) is [`Reloading::fixed`]: the same path, never
//! changing.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert, ServerSessionMemoryCache, StoresServerSessions};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use tokio::sync::watch;

use crate::tls::{Identity, TlsError, parse_certs, parse_key, provider};

/// How often watched TLS files are read again.
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(10);

/// What a [`Reloading`] value is made of: parsed from its files' contents (in the order given).
pub trait Material: Send + Sync + Sized + 'static {
    /// Parses the files' contents; an error keeps the previous value.
    fn parse(contents: &[String]) -> Result<Self, TlsError>;

    /// When the certificate that matters expires (Unix seconds), for the expiry gauge.
    fn not_after(&self) -> Option<i64>;
}

/// A value parsed from PEM files that follows them ([module docs](self)). Cloning shares it.
pub struct Reloading<T> {
    current_rx: watch::Receiver<Arc<T>>,
    /// How many values were published after the first.
    generation: Arc<AtomicU64>,
    /// The files and what was made of them; `None` for fixed material.
    loader: Option<Arc<Mutex<Loader<T>>>>,
}

impl<T> Clone for Reloading<T> {
    fn clone(&self) -> Self {
        Self { current_rx: self.current_rx.clone(), generation: self.generation.clone(), loader: self.loader.clone() }
    }
}

impl<T> std::fmt::Debug for Reloading<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let files = self.loader.as_ref().map(|loader| loader.lock().expect("loader lock").paths.clone());
        f.debug_struct("Reloading").field("files", &files).finish_non_exhaustive()
    }
}

/// The files behind a [`Reloading`] value and what was last made of them.
struct Loader<T> {
    paths: Vec<PathBuf>,
    /// The contents the current value was parsed from.
    loaded: Vec<String>,
    /// The contents last refused (or the read error), so a bad rotation is reported once.
    refused: Option<Vec<String>>,
    current_tx: watch::Sender<Arc<T>>,
    generation: Arc<AtomicU64>,
}

impl<T: Material> Reloading<T> {
    /// Material with no files (the development CA, tests): the same path, never changing.
    pub fn fixed(value: T) -> Self {
        let (_current_tx, current_rx) = watch::channel(Arc::new(value));
        Self { current_rx, generation: Arc::default(), loader: None }
    }

    /// Reads and parses `paths` now (an error here fails the start), then every `interval` on a background
    /// thread that ends when the last clone is dropped (a thread: the reads block, and it needs no runtime).
    pub fn watch(paths: Vec<PathBuf>, interval: Duration) -> Result<Self, TlsError> {
        let loaded = read_all(&paths)?;
        let value = T::parse(&loaded)?;
        report_expiry(&paths[0], &value);
        let (current_tx, current_rx) = watch::channel(Arc::new(value));
        let generation = Arc::new(AtomicU64::new(0));
        let loader =
            Arc::new(Mutex::new(Loader { paths, loaded, refused: None, current_tx, generation: generation.clone() }));
        let weak = Arc::downgrade(&loader);
        std::thread::Builder::new()
            .name("tls-reload".into())
            .spawn(move || watch_files(weak, interval))
            .map_err(|source| TlsError::Io { path: PathBuf::from("(tls-reload thread)"), source })?;
        Ok(Self { current_rx, generation, loader: Some(loader) })
    }

    /// The current value.
    pub fn current(&self) -> Arc<T> {
        self.current_rx.borrow().clone()
    }

    /// How many times the value changed since start: what holders of something built from it compare.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// A receiver that sees every change (for fixed material its sender is gone: `changed()` fails at once).
    pub fn subscribe(&self) -> watch::Receiver<Arc<T>> {
        self.current_rx.clone()
    }

    /// Reads the files now rather than at the next interval; whether a new value was published (fixed
    /// material: never).
    pub fn check_now(&self) -> bool {
        self.loader.as_ref().is_some_and(|loader| loader.lock().expect("loader lock").check())
    }
}

fn watch_files<T: Material>(loader: Weak<Mutex<Loader<T>>>, interval: Duration) {
    loop {
        std::thread::sleep(interval);
        let Some(loader) = loader.upgrade() else { return };
        loader.lock().expect("loader lock").check();
    }
}

impl<T: Material> Loader<T> {
    /// Reads the files; publishes a new value when they changed and parse. Whether it published.
    fn check(&mut self) -> bool {
        let parsed = read_all(&self.paths).map_err(|error| (vec![error.to_string()], error)).and_then(|contents| {
            if contents == self.loaded {
                return Ok(None);
            }
            match T::parse(&contents) {
                Ok(value) => Ok(Some((contents, value))),
                Err(error) => Err((contents, error)),
            }
        });
        let file = self.paths[0].display().to_string();
        match parsed {
            Ok(None) => {
                self.refused = None;
                false
            }
            Ok(Some((contents, value))) => {
                report_expiry(&self.paths[0], &value);
                self.loaded = contents;
                self.refused = None;
                self.current_tx.send_replace(Arc::new(value));
                self.generation.fetch_add(1, Ordering::AcqRel);
                metrics::counter!("switchboard_tls_reloads_total", "file" => file.clone(), "outcome" => "loaded")
                    .increment(1);
                tracing::info!(%file, "tls files changed; new handshakes use them");
                true
            }
            Err((contents, error)) => {
                if self.refused.as_ref() != Some(&contents) {
                    metrics::counter!("switchboard_tls_reloads_total", "file" => file.clone(), "outcome" => "refused")
                        .increment(1);
                    tracing::warn!(%file, %error, "tls files changed but cannot be used; keeping the previous ones");
                    self.refused = Some(contents);
                }
                false
            }
        }
    }
}

fn read_all(paths: &[PathBuf]) -> Result<Vec<String>, TlsError> {
    paths
        .iter()
        .map(|path| std::fs::read_to_string(path).map_err(|source| TlsError::Io { path: path.clone(), source }))
        .collect()
}

fn report_expiry(path: &Path, value: &impl Material) {
    if let Some(not_after) = value.not_after() {
        metrics::gauge!("switchboard_tls_certificate_expiry_seconds", "file" => path.display().to_string())
            .set(not_after as f64);
    }
}

/// A certificate chain and its private key, parsed and checked to match.
pub struct LoadedIdentity {
    /// The PEM it was parsed from (clients that build tonic configs use it).
    pub pem: Identity,
    /// What servers present.
    pub certified: Arc<CertifiedKey>,
    /// When the leaf certificate expires (Unix seconds).
    pub not_after: Option<i64>,
}

impl Material for LoadedIdentity {
    fn parse(contents: &[String]) -> Result<Self, TlsError> {
        let pem = Identity { cert_pem: contents[0].clone(), key_pem: contents[1].clone() };
        let certified = CertifiedKey::from_der(parse_certs(&pem.cert_pem)?, parse_key(&pem.key_pem)?, &provider())?;
        let not_after = certified.cert.first().and_then(|leaf| not_after(leaf));
        Ok(Self { pem, certified: Arc::new(certified), not_after })
    }

    fn not_after(&self) -> Option<i64> {
        self.not_after
    }
}

/// A certificate and key that follow their files.
pub type ReloadingIdentity = Reloading<LoadedIdentity>;

impl Reloading<LoadedIdentity> {
    /// The PEM files `cert` (chain, leaf first) and `key`, watched every [`RELOAD_INTERVAL`].
    pub fn from_files(cert: &Path, key: &Path) -> Result<Self, TlsError> {
        Self::watch(vec![cert.to_owned(), key.to_owned()], RELOAD_INTERVAL)
    }

    /// Fixed material (the development CA, tests).
    pub fn from_pem(identity: &Identity) -> Result<Self, TlsError> {
        Ok(Self::fixed(LoadedIdentity::parse(&[identity.cert_pem.clone(), identity.key_pem.clone()])?))
    }
}

/// A bundle of CA certificates, parsed, with the client verifier a server checks against it.
pub struct LoadedCa {
    /// The PEM it was parsed from (clients that build tonic configs use it).
    pub pem: String,
    /// The certificates, DER (clients that take certificates one by one use them).
    pub certificates: Vec<CertificateDer<'static>>,
    /// The certificates as trust anchors.
    pub roots: Arc<rustls::RootCertStore>,
    /// Verifies client certificates against `roots`.
    verifier: Arc<dyn ClientCertVerifier>,
    /// The earliest expiry among the bundle's certificates (Unix seconds).
    not_after: Option<i64>,
}

impl Material for LoadedCa {
    fn parse(contents: &[String]) -> Result<Self, TlsError> {
        let certs = parse_certs(&contents[0])?;
        let not_after = certs.iter().filter_map(|cert| not_after(cert)).min();
        let mut roots = rustls::RootCertStore::empty();
        for cert in &certs {
            roots.add(cert.clone())?;
        }
        let roots = Arc::new(roots);
        let verifier =
            rustls::server::WebPkiClientVerifier::builder_with_provider(roots.clone(), provider()).build()?;
        Ok(Self { pem: contents[0].clone(), certificates: certs, roots, verifier, not_after })
    }

    fn not_after(&self) -> Option<i64> {
        self.not_after
    }
}

/// CA certificates that follow their file.
pub type ReloadingCa = Reloading<LoadedCa>;

impl Reloading<LoadedCa> {
    /// The PEM bundle `path`, watched every [`RELOAD_INTERVAL`].
    pub fn from_file(path: &Path) -> Result<Self, TlsError> {
        Self::watch(vec![path.to_owned()], RELOAD_INTERVAL)
    }

    /// Fixed material (the development CA, tests).
    pub fn from_pem(pem: &str) -> Result<Self, TlsError> {
        Ok(Self::fixed(LoadedCa::parse(&[pem.to_owned()])?))
    }
}

/// A rustls server config that asks `identity` for its certificate, and `client_ca` (when given) to verify
/// client certificates (mutual TLS), at every handshake; `alpn` in order of preference.
pub fn server_config(
    identity: &ReloadingIdentity,
    client_ca: Option<&ReloadingCa>,
    alpn: &[&[u8]],
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let builder = rustls::ServerConfig::builder_with_provider(provider()).with_safe_default_protocol_versions()?;
    let builder = match client_ca {
        Some(ca) => builder.with_client_cert_verifier(Arc::new(ClientCaVerifier(ca.clone()))),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(Arc::new(IdentityResolver(identity.clone())));
    if let Some(ca) = client_ca {
        config.session_storage = Arc::new(SessionsPerCa { ca: ca.clone(), sessions: Mutex::default() });
    }
    config.alpn_protocols = alpn.iter().map(|protocol| protocol.to_vec()).collect();
    Ok(Arc::new(config))
}

/// Presents the current certificate of a [`ReloadingIdentity`].
#[derive(Debug)]
struct IdentityResolver(ReloadingIdentity);

impl ResolvesServerCert for IdentityResolver {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.current().certified.clone())
    }
}

/// Resumable TLS sessions (rustls' in-memory cache), forgotten when the client CA changes: a client
/// authenticated under the old CA shows a certificate again instead of resuming (resumption skips client
/// authentication), so rotating a CA out cuts off its clients' new connections.
#[derive(Debug)]
struct SessionsPerCa {
    ca: ReloadingCa,
    /// The CA generation the cache belongs to, and the cache (made at first use).
    sessions: Mutex<Option<(u64, Arc<dyn StoresServerSessions>)>>,
}

/// Sessions a port remembers for resumption (rustls' default).
const RESUMABLE_SESSIONS: usize = 256;

impl SessionsPerCa {
    fn current(&self) -> Arc<dyn StoresServerSessions> {
        let generation = self.ca.generation();
        let mut sessions = self.sessions.lock().expect("sessions lock");
        match sessions.as_ref() {
            Some((cached, cache)) if *cached == generation => cache.clone(),
            _ => {
                let cache: Arc<dyn StoresServerSessions> = ServerSessionMemoryCache::new(RESUMABLE_SESSIONS);
                *sessions = Some((generation, cache.clone()));
                cache
            }
        }
    }
}

impl StoresServerSessions for SessionsPerCa {
    fn put(&self, key: Vec<u8>, value: Vec<u8>) -> bool {
        self.current().put(key, value)
    }

    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.current().get(key)
    }

    fn take(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.current().take(key)
    }

    fn can_cache(&self) -> bool {
        true
    }
}

/// Verifies client certificates against the current certificates of a [`ReloadingCa`]. Sends no CA names
/// in its certificate request (they would have to outlive a reload): clients present the certificate they
/// have, as every Switchboard client does.
#[derive(Debug)]
struct ClientCaVerifier(ReloadingCa);

impl ClientCertVerifier for ClientCaVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.0.current().verifier.verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.current().verifier.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.current().verifier.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.current().verifier.supported_verify_schemes()
    }
}

/// The `notAfter` of an X.509 certificate (Unix seconds), read from its DER without a full parser: the
/// fifth element of the TBS certificate (after version, serial, signature algorithm and issuer).
pub fn not_after(cert: &[u8]) -> Option<i64> {
    let (certificate, _) = der_element(cert, 0x30)?;
    let (tbs, _) = der_element(certificate, 0x30)?;
    let mut rest = tbs;
    if rest.first() == Some(&0xa0) {
        rest = der_element(rest, 0xa0)?.1;
    }
    rest = der_element(rest, 0x02)?.1; // serial
    rest = der_element(rest, 0x30)?.1; // signature algorithm
    rest = der_element(rest, 0x30)?.1; // issuer
    let (validity, _) = der_element(rest, 0x30)?;
    let tag = *validity.first()?;
    let (_, after_not_before) = der_element(validity, tag)?;
    let tag = *after_not_before.first()?;
    let (time, _) = der_element(after_not_before, tag)?;
    let text = std::str::from_utf8(time).ok()?.strip_suffix('Z')?;
    let full = match tag {
        0x17 => format!("{}{text}", if text.get(..2)? < "50" { "20" } else { "19" }),
        0x18 => text.to_owned(),
        _ => return None,
    };
    let parsed = chrono::NaiveDateTime::parse_from_str(&full, "%Y%m%d%H%M%S").ok()?;
    Some(parsed.and_utc().timestamp())
}

/// The contents of the DER element at the start of `bytes` if it has `tag`, and what follows it.
fn der_element(bytes: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    if *bytes.first()? != tag {
        return None;
    }
    let first = *bytes.get(1)? as usize;
    let (length, header) = if first < 0x80 {
        (first, 2)
    } else {
        let count = first & 0x7f;
        if count == 0 || count > 4 {
            return None;
        }
        let length = bytes.get(2..2 + count)?.iter().fold(0usize, |length, byte| (length << 8) | *byte as usize);
        (length, 2 + count)
    };
    let end = header.checked_add(length)?;
    Some((bytes.get(header..end)?, bytes.get(end..)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::tests::handshake;
    use crate::tls::{DevCa, client_config_with_identity};

    /// Two development CAs (each with a server certificate) and a directory for the watched files.
    fn two_cas() -> (DevCa, DevCa, tempfile::TempDir, [tempfile::TempDir; 2]) {
        let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
        let first = DevCa::load_or_create(dirs[0].path(), &[]).unwrap();
        let second = DevCa::load_or_create(dirs[1].path(), &[]).unwrap();
        (first, second, tempfile::tempdir().unwrap(), dirs)
    }

    fn leaf(identity: &Identity) -> CertificateDer<'static> {
        parse_certs(&identity.cert_pem).unwrap().remove(0)
    }

    #[test]
    fn rotated_files_are_served_from_the_next_handshake_and_bad_ones_keep_the_last_good() {
        let (first, second, files, _dirs) = two_cas();
        let (cert, key) = (files.path().join("tls.crt"), files.path().join("tls.key"));
        std::fs::write(&cert, &first.server.cert_pem).unwrap();
        std::fs::write(&key, &first.server.key_pem).unwrap();
        let identity = ReloadingIdentity::from_files(&cert, &key).unwrap();
        let server = server_config(&identity, None, crate::tls::HTTPS_ALPN).unwrap();
        // A new client config each time: one that resumed its TLS session would not be shown a certificate.
        let client = || client_config_with_identity(&format!("{}{}", first.ca_pem, second.ca_pem), None).unwrap();
        assert_eq!(handshake(server.clone(), client()).unwrap(), leaf(&first.server));
        assert!(!identity.check_now(), "unchanged files are no reload");

        std::fs::write(&cert, &second.server.cert_pem).unwrap();
        std::fs::write(&key, &second.server.key_pem).unwrap();
        assert!(identity.check_now());
        assert_eq!(identity.generation(), 1);
        assert_eq!(handshake(server.clone(), client()).unwrap(), leaf(&second.server), "the rotated cert");

        // Half-written (garbage), then a certificate whose key is still the old one: both refused.
        std::fs::write(&cert, "-----BEGIN CERTIFICATE-----\nMIIB").unwrap();
        assert!(!identity.check_now());
        std::fs::write(&cert, &first.server.cert_pem).unwrap();
        assert!(!identity.check_now(), "a certificate with another's key is refused");
        std::fs::remove_file(&key).unwrap();
        assert!(!identity.check_now(), "a missing file is refused");
        assert_eq!(handshake(server, client()).unwrap(), leaf(&second.server), "the last good one is kept");
        assert_eq!(identity.generation(), 1);
        assert!(!format!("{identity:?}").contains("PRIVATE KEY"));
    }

    #[test]
    fn a_rotated_client_ca_admits_the_new_clients_and_no_longer_the_old() {
        let (first, second, files, _dirs) = two_cas();
        let ca_file = files.path().join("client-ca.pem");
        std::fs::write(&ca_file, &first.ca_pem).unwrap();
        let client_ca = ReloadingCa::from_file(&ca_file).unwrap();
        let identity = ReloadingIdentity::from_pem(&first.server).unwrap();
        let server = server_config(&identity, Some(&client_ca), crate::tls::HTTPS_ALPN).unwrap();
        let client = |ca: &DevCa| {
            let identity = ca.issue_client_identity("host-1").unwrap();
            client_config_with_identity(&first.ca_pem, Some(&identity)).unwrap()
        };
        handshake(server.clone(), client(&first)).expect("a client of the first CA");
        assert!(handshake(server.clone(), client(&second)).is_err());

        std::fs::write(&ca_file, &second.ca_pem).unwrap();
        assert!(client_ca.check_now());
        handshake(server.clone(), client(&second)).expect("a client of the rotated CA");
        let refused = handshake(server, client(&first)).unwrap_err();
        assert!(matches!(refused, rustls::Error::InvalidCertificate(_)), "{refused:?}");
    }

    #[test]
    fn a_session_from_before_a_client_ca_rotation_is_not_resumed() {
        let (first, second, files, _dirs) = two_cas();
        let ca_file = files.path().join("client-ca.pem");
        std::fs::write(&ca_file, &first.ca_pem).unwrap();
        let client_ca = ReloadingCa::from_file(&ca_file).unwrap();
        let identity = ReloadingIdentity::from_pem(&first.server).unwrap();
        let server = server_config(&identity, Some(&client_ca), crate::tls::HTTPS_ALPN).unwrap();
        // One client config: its second handshake resumes the first's session, without a certificate.
        let old_client =
            client_config_with_identity(&first.ca_pem, Some(&first.issue_client_identity("host-1").unwrap())).unwrap();
        handshake(server.clone(), old_client.clone()).expect("a client of the first CA");
        handshake(server.clone(), old_client.clone()).expect("resumed while the CA stays");

        std::fs::write(&ca_file, &second.ca_pem).unwrap();
        assert!(client_ca.check_now());
        let refused = handshake(server, old_client).expect_err("a session from before the rotation is not resumed");
        assert!(matches!(refused, rustls::Error::InvalidCertificate(_)), "{refused:?}");
    }

    #[test]
    fn the_files_are_checked_in_the_background() {
        let (first, second, files, _dirs) = two_cas();
        let (cert, key) = (files.path().join("tls.crt"), files.path().join("tls.key"));
        std::fs::write(&cert, &first.server.cert_pem).unwrap();
        std::fs::write(&key, &first.server.key_pem).unwrap();
        let identity = ReloadingIdentity::watch(vec![cert.clone(), key.clone()], Duration::from_millis(20)).unwrap();
        let changes = identity.subscribe();
        std::fs::write(&key, &second.server.key_pem).unwrap();
        std::fs::write(&cert, &second.server.cert_pem).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while identity.current().pem.cert_pem != second.server.cert_pem {
            assert!(std::time::Instant::now() < deadline, "the rotation was not picked up");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(changes.has_changed().unwrap(), "subscribers are told");
    }

    #[test]
    fn fixed_material_never_changes() {
        let (first, _second, _files, _dirs) = two_cas();
        let identity = ReloadingIdentity::from_pem(&first.server).unwrap();
        assert!(!identity.check_now());
        assert_eq!(identity.generation(), 0);
        assert!(identity.subscribe().has_changed().is_err(), "no sender: nothing will change");
        assert!(
            ReloadingIdentity::from_pem(&Identity { cert_pem: first.server.cert_pem, key_pem: "x".into() }).is_err()
        );
    }

    #[test]
    fn not_after_is_read_from_the_certificate() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        params.not_after = rcgen::date_time_ymd(2031, 7, 9);
        let cert = params.self_signed(&key).unwrap();
        let expected = chrono::NaiveDate::from_ymd_opt(2031, 7, 9).unwrap().and_hms_opt(0, 0, 0).unwrap();
        assert_eq!(not_after(cert.der()), Some(expected.and_utc().timestamp()));
        params.not_after = rcgen::date_time_ymd(2061, 1, 1); // GeneralizedTime from 2050 on
        let cert = params.self_signed(&key).unwrap();
        let expected = chrono::NaiveDate::from_ymd_opt(2061, 1, 1).unwrap().and_hms_opt(0, 0, 0).unwrap();
        assert_eq!(not_after(cert.der()), Some(expected.and_utc().timestamp()));
        assert_eq!(not_after(b"\x30\x03\x02\x01\x00"), None);
    }
}
