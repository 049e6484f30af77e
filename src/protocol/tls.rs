//! TLS for HTTPS targets: the per-target settings (`tls:` in the configuration) made into a
//! rustls client configuration once, and a certificate verifier that notes what the server
//! served (the earliest expiry of its chain) before judging it.

use std::fmt;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

/// How to trust and present certificates to one target. Files are read when the configuration
/// is loaded (so a reload picks up renewed ones); the rustls configuration is built from them
/// on first use.
#[derive(Default)]
pub struct TlsSettings {
    /// Trust only these CAs instead of the system's.
    pub roots: Option<Vec<CertificateDer<'static>>>,
    /// Verify the server's certificate for this name instead of the URL's host (the SNI sent
    /// is still the URL's host).
    pub server_name: Option<ServerName<'static>>,
    /// Accept any certificate (logged at startup; for test environments only).
    pub insecure_skip_verify: bool,
    /// A client certificate chain and its key, for servers that ask for one.
    pub client_auth: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
    built: OnceLock<Result<Arc<Built>, String>>,
}

impl fmt::Debug for TlsSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsSettings")
            .field("ca_certificates", &self.roots.as_ref().map(Vec::len))
            .field("server_name", &self.server_name)
            .field("insecure_skip_verify", &self.insecure_skip_verify)
            .field("client_certificate", &self.client_auth.is_some())
            .finish()
    }
}

impl PartialEq for TlsSettings {
    fn eq(&self, other: &Self) -> bool {
        let key = |k: &PrivateKeyDer<'_>| k.secret_der().to_vec();
        self.roots == other.roots
            && self.server_name == other.server_name
            && self.insecure_skip_verify == other.insecure_skip_verify
            && match (&self.client_auth, &other.client_auth) {
                (None, None) => true,
                (Some((a, ak)), Some((b, bk))) => a == b && key(ak) == key(bk),
                _ => false,
            }
    }
}

/// A rustls configuration and the verifier it wraps.
pub(super) struct Built {
    pub config: rustls::ClientConfig,
    pub verifier: Arc<dyn ServerCertVerifier>,
}

impl TlsSettings {
    /// The rustls configuration for these settings, built once; `system_roots` is used when no
    /// CA file is given.
    pub(super) fn build(&self, system_roots: &Arc<rustls::RootCertStore>) -> Result<Arc<Built>, String> {
        self.built.get_or_init(|| self.make(system_roots).map(Arc::new)).clone()
    }

    fn make(&self, system_roots: &Arc<rustls::RootCertStore>) -> Result<Built, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let roots = match &self.roots {
            None => system_roots.clone(),
            Some(certs) => {
                let mut store = rustls::RootCertStore::empty();
                for c in certs {
                    store.add(c.clone()).map_err(|e| format!("a CA certificate cannot be used: {e}"))?;
                }
                Arc::new(store)
            }
        };
        let verifier: Arc<dyn ServerCertVerifier> = if self.insecure_skip_verify {
            Arc::new(AcceptAny(provider.clone()))
        } else {
            rustls::client::WebPkiServerVerifier::builder_with_provider(roots.clone(), provider.clone())
                .build()
                .map_err(|e| format!("cannot verify certificates: {e}"))?
        };
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots);
        let config = match &self.client_auth {
            None => builder.with_no_client_auth(),
            Some((chain, key)) => builder
                .with_client_auth_cert(chain.clone(), key.clone_key())
                .map_err(|e| format!("the client certificate cannot be used: {e}"))?,
        };
        Ok(Built { config, verifier })
    }
}

/// What the server's certificate chain said, for one run.
#[derive(Debug, Default)]
pub(super) struct ServedChain {
    /// The earliest `notAfter` in the chain, in Unix seconds.
    pub not_after: Mutex<Option<i64>>,
}

/// Notes the served chain, then lets `inner` judge it (for `name`, if set).
#[derive(Debug)]
pub(super) struct Noting {
    pub inner: Arc<dyn ServerCertVerifier>,
    pub name: Option<ServerName<'static>>,
    pub seen: Arc<ServedChain>,
}

impl ServerCertVerifier for Noting {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let earliest = std::iter::once(end_entity)
            .chain(intermediates)
            .filter_map(|der| x509_parser::parse_x509_certificate(der).ok())
            .map(|(_, cert)| cert.validity().not_after.timestamp())
            .min();
        *self.seen.not_after.lock().unwrap_or_else(PoisonError::into_inner) = earliest;
        let name = self.name.as_ref().unwrap_or(server_name);
        self.inner.verify_server_cert(end_entity, intermediates, name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// `insecure_skip_verify`: any certificate, but signatures still checked (the handshake must be
/// with the holder of the certificate's key).
#[derive(Debug)]
struct AcceptAny(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
