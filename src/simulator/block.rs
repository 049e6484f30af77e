//! The `simulator:` block of a probes file: the embedded simulator's to read and validate, apart
//! from the probes (the configuration passes over it). Reading it writes nothing; making its
//! HTTPS certificate is a step of its own, [`SimulatorBlock::prepare`], taken by the commands
//! that start the simulator, before the probes are loaded (their targets may trust the
//! certificate through `ca_file`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use secrecy::SecretString;
use serde::Deserialize;

use super::accounts::{Settings, SimulatorFile};
use super::certificate;
use crate::yaml::{self, FieldIndex, FileError, FileErrors};

/// Default listen address of the embedded simulator.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:18080";

/// `simulator.tls`: where to serve HTTPS and the certificate's files, made when missing.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// Address to serve HTTPS on.
    pub listen: String,
    /// The certificate (PEM): targets trust it with `tls: {ca_file: …}`.
    pub cert_file: PathBuf,
    /// Its private key (PEM).
    pub key_file: PathBuf,
}

/// The simulator's HTTPS listener, ready to serve.
#[derive(Debug, Clone)]
pub struct SimulatorTls {
    /// Listen address.
    pub listen: SocketAddr,
    /// Certificate and key.
    pub config: std::sync::Arc<rustls::ServerConfig>,
}

/// Where the simulator runs and what it serves, ready to start.
#[derive(Debug, Clone)]
pub struct SimulatorSpec {
    /// Listen address.
    pub listen: SocketAddr,
    /// The world.
    pub settings: Settings,
    /// Also over HTTPS, if set.
    pub tls: Option<SimulatorTls>,
}

impl SimulatorSpec {
    /// Every secret its world holds: app keys, the accounts' passwords, pins and codes (for
    /// [`crate::panics`]).
    pub fn secrets(&self) -> Vec<SecretString> {
        let s = &self.settings;
        let mut out = s.app_keys.clone();
        for a in &s.accounts {
            out.push(a.password.clone());
            out.extend(a.pin.iter().chain(&a.verification_code).cloned());
        }
        out
    }
}

/// The part of a probes file the simulator reads.
#[derive(Deserialize)]
struct ProbesFile {
    #[serde(default)]
    simulator: Option<SimulatorFile>,
}

/// A validated `simulator:` block; its HTTPS certificate not made yet.
#[derive(Debug)]
pub struct SimulatorBlock {
    file: PathBuf,
    index: FieldIndex,
    listen: SocketAddr,
    settings: Settings,
    /// HTTPS: where, and the certificate's files (relative to the probes file's folder).
    tls: Option<(SocketAddr, PathBuf, PathBuf)>,
}

impl SimulatorBlock {
    /// Reads and validates the `simulator:` block of the probes file `path`; `None` if it has
    /// none. Every problem is located in the file and quotes no secret. Writes nothing.
    pub fn load(path: &Path) -> Result<Option<SimulatorBlock>, FileErrors> {
        Self::read(path).map_err(|errors| errors.without_secrets([path], SECRET_FIELDS, crate::panics::redact))
    }

    fn read(path: &Path) -> Result<Option<SimulatorBlock>, FileErrors> {
        let doc = yaml::load_file::<ProbesFile>(path)?;
        let Some(mut block) = doc.value.simulator else { return Ok(None) };
        let base_dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let mut errors = Vec::new();
        let address = |errors: &mut Vec<FileError>, field: &str, text: &str| {
            let parsed = text.parse::<SocketAddr>();
            parsed
                .map_err(|_| {
                    errors.push(doc.index.error(path, field, format!("invalid address {text:?}: expected IP:PORT")))
                })
                .ok()
        };
        let listen_text = block.listen.take().unwrap_or_else(|| DEFAULT_LISTEN.to_owned());
        let listen = address(&mut errors, "simulator.listen", &listen_text);
        let tls = block.tls.take().and_then(|t| {
            let listen = address(&mut errors, "simulator.tls.listen", &t.listen);
            listen.map(|l| (l, base_dir.join(&t.cert_file), base_dir.join(&t.key_file)))
        });
        let settings = match block.accounts_file.take() {
            Some(file) => {
                let inline = block.app_keys.is_some()
                    || block.accounts.is_some()
                    || block.base_path.is_some()
                    || block.rate_limit.is_some()
                    || block.oauth2.is_some()
                    || block.ldap.is_some();
                if inline {
                    errors.push(doc.index.error(
                        path,
                        "simulator.accounts_file",
                        "set either accounts_file or inline app_keys/accounts, not both",
                    ));
                }
                match Settings::load(&base_dir.join(&file)) {
                    Ok(s) => Some(s),
                    Err(e) => {
                        errors.extend(e.0);
                        None
                    }
                }
            }
            None => Some(Settings::from_fields(block, "simulator.", path, &doc.index, &mut errors)),
        };
        if let Some(ldap) = settings.as_ref().and_then(|s| s.ldap.as_ref()) {
            if ldap.ldaps_listen.is_some() && tls.is_none() {
                let message = "needs the simulator's tls: block, whose certificate ldaps serves";
                errors.push(doc.index.error(path, "simulator.ldap.ldaps_listen", message));
            }
            // Two listeners cannot share an address: the simulator would not start.
            let taken = [("simulator.listen", listen), ("simulator.tls.listen", tls.as_ref().map(|t| t.0))];
            let own =
                [("simulator.ldap.listen", Some(ldap.listen)), ("simulator.ldap.ldaps_listen", ldap.ldaps_listen)];
            for (i, (field, addr)) in own.iter().enumerate() {
                // Port 0 is a new port each time: never taken.
                let Some(addr) = addr.filter(|a| a.port() != 0) else { continue };
                let earlier = taken.iter().chain(&own[..i]).find(|(_, other)| *other == Some(addr));
                if let Some((other, _)) = earlier {
                    errors.push(doc.index.error(path, *field, format!("{addr} is already {other}")));
                }
            }
        }
        match (listen, settings) {
            (Some(listen), Some(settings)) if errors.is_empty() => {
                Ok(Some(SimulatorBlock { file: path.to_owned(), index: doc.index, listen, settings, tls }))
            }
            _ => Err(FileErrors(errors)),
        }
    }

    /// Makes the HTTPS certificate when either file is missing or the certificate expires within
    /// a day (so that targets' `ca_file` can name it), and the spec to start. Made files are
    /// kept: a restart serves and trusts the same certificate.
    pub fn prepare(mut self) -> Result<SimulatorSpec, FileErrors> {
        let error = |field: &str, message: String| FileErrors::from(self.index.error(&self.file, field, message));
        let tls = match &self.tls {
            None => None,
            Some((listen, cert, key)) => {
                let usable = cert.exists()
                    && key.exists()
                    && crate::protocol::read_certificates(cert).is_ok_and(|c| certificate::valid_for(&c, 1));
                if !usable {
                    let names = vec!["localhost".to_owned(), listen.ip().to_string()];
                    let written = certificate::make(&names).and_then(|(cert_pem, key_pem)| {
                        write_new(key, &key_pem, 0o600).map_err(|e| format!("cannot write {}: {e}", key.display()))?;
                        write_new(cert, &cert_pem, 0o644).map_err(|e| format!("cannot write {}: {e}", cert.display()))
                    });
                    written.map_err(|e| error("simulator.tls.cert_file", e))?;
                    tracing::info!(cert_file = %cert.display(), "made a self-signed certificate for the simulator");
                }
                let chain =
                    crate::protocol::read_certificates(cert).map_err(|e| error("simulator.tls.cert_file", e))?;
                let key = crate::protocol::read_private_key(key).map_err(|e| error("simulator.tls.key_file", e))?;
                let config = certificate::server_config(chain, key).map_err(|e| error("simulator.tls", e))?;
                Some(SimulatorTls { listen: *listen, config })
            }
        };
        // The directory's StartTLS and ldaps:// serve the same certificate.
        if let Some(ldap) = &mut self.settings.ldap {
            ldap.tls = tls.as_ref().map(|t| t.config.clone());
        }
        Ok(SimulatorSpec { listen: self.listen, settings: self.settings, tls })
    }
}

/// Fields of the simulator's accounts and clients whose values are secrets.
const SECRET_FIELDS: &[&str] = &["password", "pin", "verification_code", "app_keys", "client_secret"];

/// Writes `text` to `path` (replacing it), creating its folder, the file with `mode`.
fn write_new(path: &Path, text: &str, mode: u32) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(mode).open(path)?;
    f.write_all(text.as_bytes())
}
