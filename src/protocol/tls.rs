//! TLS for targets reached over TLS (HTTPS today): the per-target settings (`tls:` in the configuration) made into a
//! rustls client configuration once, with a certificate verifier that notes what the server
//! served (the earliest expiry of its chain) before judging it, and the words that say why a
//! handshake failed.

use std::fmt;
use std::sync::{Arc, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    AlertDescription, CertificateError, DigitallySignedStruct, Error as TlsError, OtherError, PeerIncompatible,
    SignatureScheme,
};

use super::hooks::{HandshakeStart, RunHooks};

/// The certificates of the PEM file `file`: at least one, or why not, naming the file.
pub fn read_certificates(file: &std::path::Path) -> Result<Vec<CertificateDer<'static>>, String> {
    use rustls::pki_types::pem::PemObject as _;
    match CertificateDer::pem_file_iter(file).and_then(|i| i.collect::<Result<Vec<_>, _>>()) {
        Ok(c) if !c.is_empty() => Ok(c),
        Ok(_) => Err(format!("{} holds no PEM certificate", file.display())),
        Err(e) => Err(format!("cannot read certificates from {}: {e}", file.display())),
    }
}

/// The private key of the PEM file `file`, or why not: the file is named, never its content.
pub fn read_private_key(file: &std::path::Path) -> Result<PrivateKeyDer<'static>, String> {
    use rustls::pki_types::pem::PemObject as _;
    PrivateKeyDer::from_pem_file(file).map_err(|e| format!("cannot read a private key from {}: {e}", file.display()))
}

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
    built: OnceLock<Result<Arc<rustls::ClientConfig>, String>>,
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

impl TlsSettings {
    /// The rustls configuration for these settings, built once; `system_roots` is used when no
    /// CA file is given. Its verifier and session store are authprobe's hooks, which find the
    /// run they serve in [`RunHooks`], so one configuration serves every run of the target.
    pub(crate) fn build(&self, system_roots: &Arc<rustls::RootCertStore>) -> Result<Arc<rustls::ClientConfig>, String> {
        self.built.get_or_init(|| self.make(system_roots).map(Arc::new)).clone()
    }

    fn make(&self, system_roots: &Arc<rustls::RootCertStore>) -> Result<rustls::ClientConfig, String> {
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
        let webpki = if self.insecure_skip_verify {
            None
        } else {
            let webpki = WebPkiServerVerifier::builder_with_provider(roots.clone(), provider.clone()).build();
            Some(webpki.map_err(|e| format!("cannot verify certificates: {e}"))?)
        };
        let verifier = Verifier {
            webpki,
            pinned: self.roots.clone().unwrap_or_default(),
            name: self.server_name.clone(),
            algorithms: provider.signature_verification_algorithms,
        };
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots);
        let mut config = match &self.client_auth {
            None => builder.with_no_client_auth(),
            Some((chain, key)) => builder
                .with_client_auth_cert(chain.clone(), key.clone_key())
                .map_err(|e| format!("the client certificate cannot be used: {e}"))?,
        };
        config.resumption = rustls::client::Resumption::store(Arc::new(HandshakeStart));
        config.dangerous().set_certificate_verifier(Arc::new(verifier));
        Ok(config)
    }
}

/// Judges the server's certificate for one target, after noting its chain's earliest expiry
/// for the run being served (see [`RunHooks`]), even where it then refuses it.
///
/// The judgement is webpki's (for `name` instead of the URL's host, if set), plus the one
/// certificate curl and Go accept that webpki refuses: a server certificate that is itself, byte
/// for byte, one of the target's `ca_file` certificates although it says `CA:TRUE` (what
/// `openssl req -x509` makes unless told otherwise, so what most labs and staging hosts serve).
/// OpenSSL and Go trust a certificate found in their trust store as it stands; so does this,
/// after the checks a leaf gets all the same: validity period, extended key usage and name. A
/// refusal for want of an issuer is put in words that name the likely cause. With
/// `insecure_skip_verify` (no webpki) any certificate passes, but the handshake's signatures are
/// still checked: the server must hold the certificate's key.
#[derive(Debug)]
struct Verifier {
    /// `None` with `insecure_skip_verify`.
    webpki: Option<Arc<WebPkiServerVerifier>>,
    /// The `ca_file` certificates; empty when the system's CAs are trusted.
    pinned: Vec<CertificateDer<'static>>,
    /// The name to verify instead of the URL's host.
    name: Option<ServerName<'static>>,
    /// The provider's signature algorithms, for the handshake's signatures (as webpki checks them).
    algorithms: WebPkiSupportedAlgorithms,
}

impl Verifier {
    /// What is trusted, in the words of a detail.
    fn trusted(&self) -> &'static str {
        if self.pinned.is_empty() {
            "the system's CA certificates"
        } else {
            "the target's ca_file"
        }
    }

    /// Checks a certificate found in `ca_file` as a leaf: validity, extended key usage, name.
    fn verify_pinned(&self, cert: &CertificateDer<'_>, name: &ServerName<'_>, now: UnixTime) -> Result<(), TlsError> {
        let (_, parsed) = x509_parser::parse_x509_certificate(cert).map_err(|_| CertificateError::BadEncoding)?;
        let validity = parsed.validity();
        let (time, not_before, not_after) = (
            now.as_secs(),
            validity.not_before.timestamp().max(0).unsigned_abs(),
            validity.not_after.timestamp().max(0).unsigned_abs(),
        );
        let at = |secs| UnixTime::since_unix_epoch(std::time::Duration::from_secs(secs));
        if time < not_before {
            return Err(CertificateError::NotValidYetContext { time: now, not_before: at(not_before) }.into());
        }
        if time > not_after {
            return Err(CertificateError::ExpiredContext { time: now, not_after: at(not_after) }.into());
        }
        let eku = parsed.extended_key_usage().map_err(|_| CertificateError::BadEncoding)?;
        if eku.is_some_and(|e| !e.value.server_auth && !e.value.any) {
            return Err(explained("the certificate's extended key usage does not allow a TLS server".to_owned()));
        }
        let leaf = webpki::EndEntityCert::try_from(cert).map_err(|_| CertificateError::BadEncoding)?;
        leaf.verify_is_valid_for_subject_name(name).map_err(|e| match e {
            webpki::Error::CertNotValidForName(c) => {
                CertificateError::NotValidForNameContext { expected: c.expected, presented: c.presented }.into()
            }
            _ => TlsError::from(CertificateError::NotValidForName),
        })
    }

    /// Words for a CA certificate served as the server's own that is not itself trusted.
    fn ca_not_pinned(&self, end_entity: &CertificateDer<'_>) -> Option<TlsError> {
        let (_, leaf) = x509_parser::parse_x509_certificate(end_entity).ok()?;
        let text = if leaf.subject() == leaf.issuer() {
            self_signed(&leaf, self.trusted())
        } else {
            format!("the server's certificate is a CA certificate (CA:TRUE) and not itself in {}", self.trusted())
        };
        Some(explained(text))
    }

    /// Words for "no issuer found": whether the server's certificate is self-signed, or which
    /// issuer is neither trusted nor sent (an intermediate left out of the chain, most often).
    fn unknown_issuer(&self, end_entity: &CertificateDer<'_>, intermediates: &[CertificateDer<'_>]) -> TlsError {
        let trusted = self.trusted();
        let Ok((_, leaf)) = x509_parser::parse_x509_certificate(end_entity) else {
            return CertificateError::UnknownIssuer.into();
        };
        let sent: Vec<_> = intermediates
            .iter()
            .filter_map(|der| x509_parser::parse_x509_certificate(der).ok())
            .map(|(_, c)| c)
            .collect();
        let name = shown;
        let text = if leaf.subject() == leaf.issuer() {
            self_signed(&leaf, trusted)
        } else {
            // Follow what the server sent up to the last certificate it has an issuer for.
            let mut top = &leaf;
            for _ in 0..sent.len() {
                match sent.iter().find(|c| c.subject() == top.issuer() && c.subject() != top.subject()) {
                    Some(next) => top = next,
                    None => break,
                }
            }
            let issuer = name(top.issuer());
            if std::ptr::eq(top, &leaf) {
                format!(
                    "issued by {issuer}, neither in {trusted} nor sent by the server: is an intermediate CA \
                     missing from its chain? (curl and Go refuse this too)"
                )
            } else {
                format!("the server's chain ends at {}, issued by {issuer}, not in {trusted}", name(top.subject()))
            }
        };
        explained(text)
    }
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, TlsError> {
        let earliest = std::iter::once(end_entity)
            .chain(intermediates)
            .filter_map(|der| x509_parser::parse_x509_certificate(der).ok())
            .map(|(_, cert)| cert.validity().not_after.timestamp())
            .min();
        if let Some(hooks) = RunHooks::current() {
            hooks.tls_chain(earliest);
        }
        let Some(webpki) = &self.webpki else { return Ok(ServerCertVerified::assertion()) };
        let server_name = self.name.as_ref().unwrap_or(server_name);
        match webpki.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(e) if is_ca_used_as_end_entity(&e) => {
                if self.pinned.iter().any(|p| p.as_ref() == end_entity.as_ref()) {
                    self.verify_pinned(end_entity, server_name, now).map(|()| ServerCertVerified::assertion())
                } else {
                    Err(self.ca_not_pinned(end_entity).unwrap_or(e))
                }
            }
            Err(TlsError::InvalidCertificate(CertificateError::UnknownIssuer)) => {
                Err(self.unknown_issuer(end_entity, intermediates))
            }
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

fn is_ca_used_as_end_entity(e: &TlsError) -> bool {
    matches!(e, TlsError::InvalidCertificate(CertificateError::Other(OtherError(inner)))
        if matches!(inner.downcast_ref::<webpki::Error>(), Some(webpki::Error::CaUsedAsEndEntity)))
}

/// A refusal in words of our own.
#[derive(Debug)]
struct Explained(String);

impl fmt::Display for Explained {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Explained {}

fn explained(text: String) -> TlsError {
    CertificateError::Other(OtherError(Arc::new(Explained(text)))).into()
}

fn self_signed(cert: &x509_parser::certificate::X509Certificate<'_>, trusted: &str) -> String {
    format!("the server's certificate is self-signed ({}) and not in {trusted}", shown(cert.subject()))
}

/// A name from a certificate, quoted and cut short: it is server input.
fn shown(name: &x509_parser::x509::X509Name<'_>) -> String {
    let cut: String = name.to_string().chars().take(60).collect();
    format!("{cut:?}")
}

/// A TLS failure in words: rustls' text (our own refusals without their Debug wrapping), and
/// what it means where that text does not say.
pub(crate) fn describe(e: &TlsError) -> String {
    let text = match e {
        TlsError::InvalidCertificate(CertificateError::Other(OtherError(inner))) => {
            format!("invalid peer certificate: {inner}")
        }
        other => other.to_string(),
    };
    match explain(e) {
        Some(words) => format!("{text}: {words}"),
        None => text,
    }
}

/// Plain words for the handshake failures whose rustls text does not say what to do: a server
/// that shares no protocol version or no cipher suite with us, or that does not speak TLS.
fn explain(e: &TlsError) -> Option<&'static str> {
    const VERSIONS: &str = "no TLS version in common: the server offers neither TLS 1.3 nor TLS 1.2 (TLS 1.1 and \
        older are refused, as by curl and Go)";
    const SUITES: &str = "no cipher suite in common: authprobe offers ECDHE (X25519, P-256, P-384) with AES-GCM or \
        ChaCha20 only, no RSA or finite-field DHE key exchange, no CBC";
    match e {
        TlsError::AlertReceived(AlertDescription::ProtocolVersion)
        | TlsError::PeerIncompatible(
            PeerIncompatible::ServerDoesNotSupportTls12Or13 | PeerIncompatible::ServerTlsVersionIsDisabledByOurConfig,
        ) => Some(VERSIONS),
        TlsError::AlertReceived(AlertDescription::HandshakeFailure | AlertDescription::InsufficientSecurity)
        | TlsError::PeerIncompatible(
            PeerIncompatible::NoCipherSuitesInCommon
            | PeerIncompatible::NoKxGroupsInCommon
            | PeerIncompatible::NoSignatureSchemesInCommon,
        ) => Some(SUITES),
        TlsError::InvalidMessage(_) => Some("the server did not answer in TLS (is the port plain HTTP?)"),
        _ => None,
    }
}
