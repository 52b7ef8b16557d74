//! A Docker engine reached over TCP with TLS client certificates, as a remote engine is: `stunnel`
//! listens on a loopback port, speaks TLS with a server certificate, demands a client certificate
//! signed by its CA, and passes the bytes on to the local engine's socket. (socat's TLS listener
//! cannot serve a client that resumes a session, which rustls does from the second connection.) Certificates are made
//! at test time with rcgen: a CA, the server's (for 127.0.0.1), a client's, and a client's from a
//! CA the proxy does not trust. With `CI=true` a missing `stunnel` fails the test (scripts/test.sh
//! installs Debian's `stunnel4`); elsewhere the test is skipped with a note.

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};

use super::docker::in_ci;

const DOCKER_SOCKET: &str = "/var/run/docker.sock";

/// The proxy and the certificate directories; the proxy is killed on drop.
pub struct TlsEngine {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl TlsEngine {
    /// Starts the proxy; `None` (a skip) outside CI when stunnel or the engine's socket is missing.
    pub fn start() -> Option<TlsEngine> {
        if !Path::new(DOCKER_SOCKET).exists() {
            return unavailable(&format!("no Docker socket at {DOCKER_SOCKET}"));
        }
        if Command::new(stunnel()).arg("-version").output().is_err() {
            return unavailable("stunnel is not installed (Debian's package `stunnel4`)");
        }
        let dir = tempfile::tempdir().expect("a temporary directory");
        make_certificates(dir.path());
        let port = free_port();
        let server = dir.path().join("server");
        // requireCert: no client certificate, no connection; verifyChain: it must come from the CA.
        let config = format!(
            "foreground = yes\npid =\nsyslog = no\ndebug = notice\n\n[docker]\naccept = 127.0.0.1:{port}\nconnect = {DOCKER_SOCKET}\ncert = {}\nkey = {}\nCAfile = {}\nrequireCert = yes\nverifyChain = yes\n",
            server.join("cert.pem").display(),
            server.join("key.pem").display(),
            server.join("ca.pem").display(),
        );
        let config_path = dir.path().join("stunnel.conf");
        std::fs::write(&config_path, config).expect("stunnel.conf");
        let child = Command::new(stunnel())
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(if std::env::var_os("BACKSPACE_TLS_PROXY_LOG").is_some() {
                Stdio::inherit()
            } else {
                Stdio::null()
            })
            .spawn()
            .expect("start stunnel");
        let engine = TlsEngine { child, port, dir };
        engine.wait_listening();
        Some(engine)
    }

    /// `DOCKER_HOST` for the proxy.
    pub fn docker_host(&self) -> String {
        format!("tcp://127.0.0.1:{}", self.port)
    }

    /// A client's certificate directory (`ca.pem`, `cert.pem`, `key.pem`) the proxy accepts.
    pub fn good_certs(&self) -> PathBuf {
        self.dir.path().join("client")
    }

    /// A client certificate from a CA the proxy does not trust (with the right `ca.pem`).
    pub fn untrusted_client_certs(&self) -> PathBuf {
        self.dir.path().join("rogue-client")
    }

    /// The right client certificate, but a `ca.pem` that did not sign the engine's certificate.
    pub fn wrong_ca_certs(&self) -> PathBuf {
        self.dir.path().join("wrong-ca")
    }

    fn wait_listening(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "stunnel never listened");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for TlsEngine {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn unavailable<T>(why: &str) -> Option<T> {
    if in_ci() {
        panic!("the Docker-over-TLS test cannot run (CI=true makes this a failure): {why}");
    }
    let _ = writeln!(std::io::stderr(), "SKIPPED: Docker over TLS: {why}");
    None
}

/// Debian names the binary `stunnel4`; elsewhere it is `stunnel`.
fn stunnel() -> &'static str {
    let debian = Command::new("stunnel4").arg("-version").output().is_ok();
    if debian {
        "stunnel4"
    } else {
        "stunnel"
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn new_ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    p.distinguished_name.push(DnType::CommonName, name);
    CertifiedIssuer::self_signed(p, KeyPair::generate().expect("key")).expect("CA")
}

/// A leaf certificate signed by `ca`; returns (certificate PEM, key PEM).
fn leaf(ca: &CertifiedIssuer<'static, KeyPair>, server: bool) -> (String, String) {
    let mut p = if server {
        let mut p = CertificateParams::new(vec!["localhost".to_owned()]).expect("params");
        p.subject_alt_names
            .push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        p
    } else {
        let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        p
    };
    p.distinguished_name.push(
        DnType::CommonName,
        if server { "docker engine" } else { "backspace" },
    );
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let key = KeyPair::generate().expect("key");
    let cert = p.signed_by(&key, ca).expect("sign");
    (cert.pem(), key.serialize_pem())
}

fn write_dir(dir: &Path, ca_pem: &str, (cert, key): &(String, String)) {
    std::fs::create_dir_all(dir).expect("mkdir");
    std::fs::write(dir.join("ca.pem"), ca_pem).expect("ca.pem");
    std::fs::write(dir.join("cert.pem"), cert).expect("cert.pem");
    std::fs::write(dir.join("key.pem"), key).expect("key.pem");
}

fn make_certificates(root: &Path) {
    let ca = new_ca("backspace test CA");
    let rogue = new_ca("a CA nobody trusts");
    let server = leaf(&ca, true);
    let client = leaf(&ca, false);
    let rogue_client = leaf(&rogue, false);
    write_dir(&root.join("server"), &ca.pem(), &server);
    write_dir(&root.join("client"), &ca.pem(), &client);
    write_dir(&root.join("rogue-client"), &ca.pem(), &rogue_client);
    write_dir(&root.join("wrong-ca"), &rogue.pem(), &client);
}
