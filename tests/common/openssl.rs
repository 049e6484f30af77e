//! Certificates made by the openssl CLI the ways people make them, and curl's verdict on a
//! server presenting them: the reference authprobe's TLS trust is held to.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A certificate and its private key, PEM files.
#[derive(Debug, Clone)]
pub struct Made {
    /// The certificate.
    pub cert: PathBuf,
    /// Its private key.
    pub key: PathBuf,
}

/// Runs the openssl CLI in a folder of its own.
pub struct Openssl {
    dir: tempfile::TempDir,
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e} (is openssl installed?)"));
    assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
}

impl Openssl {
    /// A new empty folder.
    pub fn new() -> Openssl {
        Openssl { dir: tempfile::tempdir().unwrap() }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn openssl(&self) -> Command {
        let mut c = Command::new("openssl");
        c.current_dir(self.dir.path());
        c
    }

    /// `openssl req -x509 -newkey ec … -subj /CN=cn -addext subjectAltName=san` plus `extra`
    /// (more `-addext`s): with no extra, openssl's default extensions, which say CA:TRUE.
    pub fn self_signed(&self, name: &str, cn: &str, san: &str, extra: &[&str]) -> Made {
        self.self_signed_with(&["ec", "-pkeyopt", "ec_paramgen_curve:P-256"], name, cn, san, extra)
    }

    /// Like [`Openssl::self_signed`], with a 2048-bit RSA key (for RSA key exchange).
    pub fn self_signed_rsa(&self, name: &str, cn: &str, san: &str) -> Made {
        self.self_signed_with(&["rsa:2048"], name, cn, san, &[])
    }

    fn self_signed_with(&self, newkey: &[&str], name: &str, cn: &str, san: &str, extra: &[&str]) -> Made {
        let made = Made { cert: self.path(&format!("{name}.crt")), key: self.path(&format!("{name}.key")) };
        let subj = format!("/CN={cn}");
        let san = format!("subjectAltName={san}");
        run(self
            .openssl()
            .args(["req", "-x509", "-nodes", "-days", "30", "-newkey"])
            .args(newkey)
            .args(["-subj", &subj, "-addext", &san, "-keyout"])
            .arg(&made.key)
            .arg("-out")
            .arg(&made.cert)
            .args(extra));
        made
    }

    /// A key and a certificate signing request for `cn` with `san`.
    fn request(&self, name: &str, cn: &str, san: &str) -> (PathBuf, PathBuf) {
        let (key, csr) = (self.path(&format!("{name}.key")), self.path(&format!("{name}.csr")));
        let mut c = self.openssl();
        c.args(["req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"])
            .args(["-subj", &format!("/CN={cn}")])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&csr);
        if !san.is_empty() {
            c.args(["-addext", &format!("subjectAltName={san}")]);
        }
        run(&mut c);
        (key, csr)
    }

    /// A certificate for `cn`/`san` signed by `issuer` (`openssl x509 -req -CA …`), an
    /// intermediate CA when `ca` is set.
    pub fn issued(&self, name: &str, cn: &str, san: &str, issuer: &Made, ca: bool) -> Made {
        let (key, csr) = self.request(name, cn, san);
        let cert = self.path(&format!("{name}.crt"));
        let ext = self.path(&format!("{name}.ext"));
        let extensions = if ca {
            "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n"
        } else {
            "basicConstraints=critical,CA:FALSE\nextendedKeyUsage=serverAuth\n"
        };
        std::fs::write(&ext, extensions).unwrap();
        run(self
            .openssl()
            .args(["x509", "-req", "-days", "30", "-set_serial", "7", "-copy_extensions", "copyall", "-in"])
            .arg(&csr)
            .arg("-CA")
            .arg(&issuer.cert)
            .arg("-CAkey")
            .arg(&issuer.key)
            .arg("-extfile")
            .arg(&ext)
            .arg("-out")
            .arg(&cert));
        Made { cert, key }
    }

    /// A self-signed certificate that expired in 2020 (`openssl ca -selfsign` with dates).
    pub fn expired(&self, name: &str, cn: &str, san: &str) -> Made {
        let (key, csr) = self.request(name, cn, san);
        let cert = self.path(&format!("{name}.crt"));
        let db = self.path(&format!("{name}.db"));
        std::fs::create_dir_all(&db).unwrap();
        std::fs::write(db.join("index.txt"), "").unwrap();
        std::fs::write(db.join("serial"), "01\n").unwrap();
        let conf = format!(
            "[ca]\ndefault_ca = d\n[d]\ndatabase = {0}/index.txt\nnew_certs_dir = {0}\nserial = {0}/serial\n\
             default_md = sha256\npolicy = p\ncopy_extensions = copy\nunique_subject = no\n[p]\ncommonName = supplied\n",
            db.display()
        );
        let conf_path = db.join("ca.cnf");
        std::fs::write(&conf_path, conf).unwrap();
        run(self
            .openssl()
            .args(["ca", "-batch", "-notext", "-selfsign", "-startdate", "20200101000000Z", "-enddate"])
            .args(["20200301000000Z", "-config"])
            .arg(&conf_path)
            .arg("-keyfile")
            .arg(&key)
            .arg("-in")
            .arg(&csr)
            .arg("-out")
            .arg(&cert));
        Made { cert, key }
    }

    /// The PEM files `parts` concatenated into `name` (a chain, or a ca_file of several CAs).
    pub fn bundle(&self, name: &str, parts: &[&Path]) -> PathBuf {
        let text: String = parts.iter().map(|p| std::fs::read_to_string(p).unwrap()).collect();
        let path = self.path(name);
        std::fs::write(&path, text).unwrap();
        path
    }
}

/// The certificates of a PEM file.
pub fn certs(path: &Path) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject as _;
    rustls::pki_types::CertificateDer::pem_file_iter(path).unwrap().collect::<Result<_, _>>().unwrap()
}

/// A rustls server configuration presenting the chain in `chain` (leaf first) with `key`,
/// limited to `versions`.
pub fn server(
    chain: &Path,
    key: &Path,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> std::sync::Arc<rustls::ServerConfig> {
    use rustls::pki_types::pem::PemObject as _;
    let key = rustls::pki_types::PrivateKeyDer::from_pem_file(key).unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs(chain), key)
        .unwrap();
    std::sync::Arc::new(config)
}

/// curl's exit code for the login `POST {base_url}/token` trusting `ca_file` (0: it worked at
/// the TLS level; 60: the certificate was refused; 35: the handshake failed). Async: the server
/// under test may run on the caller's runtime.
pub async fn curl_exit(base_url: &str, ca_file: &Path, headers: &[(&str, &str)]) -> i32 {
    let mut c = tokio::process::Command::new("curl");
    c.args(["-sS", "-o", "/dev/null", "--max-time", "10", "-X", "POST", "--cacert"]).arg(ca_file);
    for (name, value) in headers {
        c.args(["-H", &format!("{name}: {value}")]);
    }
    c.arg(format!("{base_url}/token"));
    let out = c.output().await.unwrap_or_else(|e| panic!("curl: {e} (is curl installed?)"));
    out.status.code().unwrap_or(-1)
}

/// `openssl s_server` on a free loopback port with `args` (certificate, versions, ciphers), for
/// handshakes rustls cannot serve: old versions, RSA and DHE key exchange. Killed when dropped.
pub struct SServer {
    /// Where it listens.
    pub port: u16,
    child: std::process::Child,
}

impl SServer {
    /// Starts it and waits (at most 10 s) until it accepts connections.
    pub fn start(made: &Made, args: &[&str]) -> SServer {
        let port = super::closed_port();
        let child = Command::new("openssl")
            .args(["s_server", "-quiet", "-www", "-accept", &format!("127.0.0.1:{port}"), "-cert"])
            .arg(&made.cert)
            .arg("-key")
            .arg(&made.key)
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("openssl s_server starts");
        let server = SServer { port, child };
        let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(std::time::Instant::now() < until, "openssl s_server {args:?} did not listen");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        server
    }
}

impl Drop for SServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
