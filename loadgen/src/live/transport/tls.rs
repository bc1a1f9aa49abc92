//! TLS client settings (rustls with the *ring* provider, no OpenSSL).
//!
//! Trust roots: Mozilla's set compiled in (`webpki-roots`), so a run trusts the same servers
//! on every machine and in every container, whatever CA bundle the OS has or lacks;
//! `--ca-file PEM` replaces them (as curl's `--cacert`) for private CAs; `--insecure` skips
//! verification (the handshake and its cost stay real).
//!
//! Session resumption is off: every connection makes a full handshake, as thousands of
//! distinct users would, so `tls` latency and handshakes per second are the worst case a
//! server must carry.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::Resumption;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

/// How to verify servers (`--ca-file`, `--insecure`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsOptions {
    /// PEM file of CA certificates trusted instead of the built-in roots.
    pub ca_file: Option<PathBuf>,
    /// Accept any certificate (no chain, name or expiry checks).
    pub insecure: bool,
}

/// TLS settings that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    /// The CA file could not be read or parsed.
    #[error("cannot read --ca-file {path}: {reason}")]
    CaFile {
        /// The file.
        path: PathBuf,
        /// What failed.
        reason: String,
    },
    /// It holds no certificate rustls can use as a trust anchor.
    #[error(
        "--ca-file {path} holds no usable CA certificate (expected PEM \"BEGIN CERTIFICATE\" blocks)"
    )]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// rustls refused the settings.
    #[error("TLS settings refused: {0}")]
    Rustls(#[from] rustls::Error),
}

/// Client configurations for the two ALPN offers: HTTP/1.1 only (SSE over HTTP/1.1,
/// WebSocket upgrades, POSTs) and HTTP/2 first (SSE with `http = "2"` or `"auto"`).
#[derive(Debug, Clone)]
pub(crate) struct TlsConfigs {
    pub(crate) http1: Arc<ClientConfig>,
    pub(crate) h2: Arc<ClientConfig>,
}

impl TlsConfigs {
    /// Builds both configurations.
    ///
    /// # Errors
    /// [`TlsSetupError`] for an unreadable or empty CA file.
    pub(crate) fn new(options: &TlsOptions) -> Result<Self, TlsSetupError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()?;
        let mut config = if options.insecure {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider)))
                .with_no_client_auth()
        } else {
            let roots = match &options.ca_file {
                Some(path) => roots_from(path)?,
                None => RootCertStore {
                    roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
                },
            };
            builder.with_root_certificates(roots).with_no_client_auth()
        };
        config.resumption = Resumption::disabled();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let http1 = Arc::new(config.clone());
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Self {
            http1,
            h2: Arc::new(config),
        })
    }
}

fn roots_from(path: &Path) -> Result<RootCertStore, TlsSetupError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| TlsSetupError::CaFile {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
    let mut roots = RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(TlsSetupError::NoCertificate {
            path: path.to_owned(),
        });
    }
    Ok(roots)
}

/// The server name sent by SNI and checked against the certificate: a DNS name, or an IP
/// address for an IP literal target.
pub(crate) fn server_name(host: &str) -> Result<ServerName<'static>, String> {
    ServerName::try_from(host.to_owned())
        .map_err(|e| format!("{host:?} is not a valid TLS server name: {e}"))
}

/// The reason of a failed handshake, as rustls gives it ("invalid peer certificate:
/// UnknownIssuer", "... certificate not valid for name ...", "... certificate expired ...").
pub(crate) fn failure_reason(e: &std::io::Error) -> String {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .map_or_else(|| e.to_string(), ToString::to_string)
}

/// `--insecure`: accepts any certificate but still checks the handshake signatures, so the
/// cryptographic work (and its cost) is the same as with verification.
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
