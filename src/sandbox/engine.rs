//! Which Docker engine to talk to, read the way the `docker` CLI reads it, and the connection
//! to it. `DOCKER_HOST` names the engine (`unix:///var/run/docker.sock` when unset,
//! `tcp://host:port`, `http://`, `https://`); any non-empty `DOCKER_TLS_VERIFY` turns on TLS
//! with the engine's certificate checked against `ca.pem` and a client certificate
//! (`cert.pem`, `key.pem`), all three in `DOCKER_CERT_PATH` (default `~/.docker`). A `tcp://`
//! address without a port gets the CLI's default, 2376 with TLS and 2375 without.
//!
//! bollard does the talking (its `ssl` feature); this module only decides what it is told, and
//! turns the failures an operator meets first (a certificate file missing, the engine refusing
//! the client certificate, an engine certificate that `ca.pem` does not vouch for, TLS spoken
//! to a plain port or the reverse) into errors that say which setting to fix. bollard's own
//! `connect_with_defaults` differs from the CLI in small ways that matter here: it takes
//! `DOCKER_TLS_VERIFY=` (empty) as on, adds no default port, and only finds out at the first
//! request that a client certificate file is unreadable (the handshake then goes on without
//! one and the engine answers with a reset).

use std::path::{Path, PathBuf};

use bollard::{Docker, API_DEFAULT_VERSION};

/// bollard's own default: the seconds one request to the engine may take.
const REQUEST_TIMEOUT_SECS: u64 = 120;
const DEFAULT_SOCKET: &str = "unix:///var/run/docker.sock";

/// An engine to connect to, with TLS settings when it is reached over TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DockerEndpoint {
    /// As bollard takes it: `unix:///path`, `tcp://host:port` (plain) or `https://host:port`.
    address: String,
    tls: Option<TlsFiles>,
}

/// The three files of a TLS connection to an engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The directory they were found in (for messages).
    pub dir: PathBuf,
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TlsFiles {
    /// `ca.pem`, `cert.pem` and `key.pem` in `dir`, as the CLI names them.
    pub fn in_dir(dir: impl Into<PathBuf>) -> TlsFiles {
        let dir = dir.into();
        TlsFiles {
            ca: dir.join("ca.pem"),
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
            dir,
        }
    }
}

/// Why the engine could not be reached, said so that the operator knows what to change.
#[derive(Debug, thiserror::Error)]
#[error("cannot reach the Docker engine at {address}: {problem}")]
pub struct EngineError {
    pub address: String,
    pub problem: String,
}

impl DockerEndpoint {
    /// The engine the process environment names (`DOCKER_HOST`, `DOCKER_TLS_VERIFY`,
    /// `DOCKER_CERT_PATH`).
    pub fn from_env() -> Result<DockerEndpoint, EngineError> {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// Pure: the engine that these variables name; `var` looks one up.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<DockerEndpoint, EngineError> {
        let set = |name: &str| var(name).filter(|v| !v.is_empty());
        let host = set("DOCKER_HOST").unwrap_or_else(|| DEFAULT_SOCKET.to_owned());
        let tls = set("DOCKER_TLS_VERIFY").is_some();
        let cert_dir = set("DOCKER_CERT_PATH")
            .map(PathBuf::from)
            .or_else(|| set("HOME").map(|h| Path::new(&h).join(".docker")));
        let tls = match (tls, cert_dir) {
            (false, _) => None,
            (true, Some(dir)) => Some(TlsFiles::in_dir(dir)),
            (true, None) => {
                return Err(EngineError {
                    address: host,
                    problem: "DOCKER_TLS_VERIFY is set but neither DOCKER_CERT_PATH nor HOME says where ca.pem, cert.pem and key.pem are".into(),
                })
            }
        };
        Self::new(&host, tls)
    }

    /// An engine at `host` (a `DOCKER_HOST` value), over TLS with `tls` when given.
    pub fn new(host: &str, tls: Option<TlsFiles>) -> Result<DockerEndpoint, EngineError> {
        let bad = |problem: String| EngineError {
            address: host.to_owned(),
            problem,
        };
        if let Some(path) = host.strip_prefix("unix://") {
            if tls.is_some() {
                return Err(bad("DOCKER_TLS_VERIFY applies to tcp:// engines, not to a unix socket: unset it or point DOCKER_HOST at tcp://HOST:2376".into()));
            }
            if path.is_empty() {
                return Err(bad("DOCKER_HOST unix:// names no socket path".into()));
            }
            return Ok(DockerEndpoint {
                address: host.to_owned(),
                tls: None,
            });
        }
        let (scheme, rest) = host.split_once("://").ok_or_else(|| {
            bad("DOCKER_HOST must look like unix:///var/run/docker.sock or tcp://HOST:PORT".into())
        })?;
        let tls = match (scheme, tls) {
            ("tcp" | "http", tls) => tls,
            // https:// is TLS whatever DOCKER_TLS_VERIFY says; the files come from the default
            // place then.
            ("https", Some(t)) => Some(t),
            ("https", None) => {
                return Err(bad(
                    "an https:// DOCKER_HOST needs DOCKER_TLS_VERIFY=1 and DOCKER_CERT_PATH"
                        .into(),
                ))
            }
            (other, _) => {
                return Err(bad(format!(
                    "DOCKER_HOST scheme {other}:// is not supported (unix://, tcp://, http://, https://)"
                )))
            }
        };
        let authority = rest.trim_end_matches('/');
        if authority.is_empty() || authority.contains('/') {
            return Err(bad("DOCKER_HOST must be tcp://HOST:PORT".into()));
        }
        // "[::1]:2376" and "host:2376" have a port; "host" and "[::1]" do not.
        let has_port = authority
            .rsplit_once(':')
            .is_some_and(|(h, p)| !h.is_empty() && !p.is_empty() && !p.contains(']'));
        let authority = if has_port {
            authority.to_owned()
        } else {
            format!("{authority}:{}", if tls.is_some() { 2376 } else { 2375 })
        };
        let address = match &tls {
            Some(_) => format!("https://{authority}"),
            None => format!("tcp://{authority}"),
        };
        Ok(DockerEndpoint { address, tls })
    }

    /// Where the engine is, as it is shown in messages.
    pub fn address(&self) -> &str {
        &self.address
    }

    pub fn tls(&self) -> Option<&TlsFiles> {
        self.tls.as_ref()
    }

    /// A client for this engine. Nothing is sent yet; the certificate files are read and
    /// checked now, so that a missing or unreadable one is named here.
    pub fn client(&self) -> Result<Docker, EngineError> {
        let bad = |problem: String| EngineError {
            address: self.address.clone(),
            problem,
        };
        let docker = match &self.tls {
            None if self.address.starts_with("unix://") => {
                Docker::connect_with_unix(&self.address, REQUEST_TIMEOUT_SECS, API_DEFAULT_VERSION)
            }
            None => {
                Docker::connect_with_http(&self.address, REQUEST_TIMEOUT_SECS, API_DEFAULT_VERSION)
            }
            Some(files) => {
                check_tls_files(files).map_err(bad)?;
                Docker::connect_with_ssl(
                    &self.address,
                    &files.key,
                    &files.cert,
                    &files.ca,
                    REQUEST_TIMEOUT_SECS,
                    API_DEFAULT_VERSION,
                )
            }
        };
        docker.map_err(|e| bad(e.to_string()))
    }

    /// The error of a first request that failed, with what to do about it.
    pub fn explain(&self, error: &bollard::errors::Error) -> EngineError {
        EngineError {
            address: self.address.clone(),
            problem: explain(self.tls.as_ref(), error),
        }
    }
}

/// Each file is there and holds what it should: certificates in `ca.pem` and `cert.pem`, one
/// private key in `key.pem`.
fn check_tls_files(files: &TlsFiles) -> Result<(), String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let dir = files.dir.display();
    for (path, what) in [
        (&files.ca, "the CA certificate"),
        (&files.cert, "the client certificate"),
    ] {
        let certs: Vec<_> = CertificateDer::pem_file_iter(path)
            .map_err(|e| {
                format!(
                    "cannot read {what} {} (DOCKER_CERT_PATH={dir}): {e}",
                    path.display()
                )
            })?
            .collect::<Result<_, _>>()
            .map_err(|e| format!("{} is not a PEM certificate: {e}", path.display()))?;
        if certs.is_empty() {
            return Err(format!("{} holds no PEM certificate", path.display()));
        }
    }
    PrivateKeyDer::from_pem_file(&files.key).map_err(|e| {
        format!(
            "cannot read the client key {} (DOCKER_CERT_PATH={dir}): {e}",
            files.key.display()
        )
    })?;
    Ok(())
}

/// Pure: what a failed request to the engine means, from the errors under it.
fn explain(tls: Option<&TlsFiles>, error: &bollard::errors::Error) -> String {
    let mut chain = Vec::new();
    let mut rustls_error = None;
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = cur {
        chain.push(e.to_string());
        // tokio-rustls wraps rustls' errors in io::Error (hyper-rustls once more), and an
        // io::Error's `source` skips what it wraps: unwrap them by hand.
        let mut inner: Option<&(dyn std::error::Error + 'static)> = Some(e);
        while let Some(i) = inner {
            if let Some(r) = i.downcast_ref::<rustls::Error>() {
                rustls_error = Some(r.clone());
            }
            inner = i
                .downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                .map(|r| r as &(dyn std::error::Error + 'static));
        }
        cur = e.source();
    }
    chain.dedup();
    let detail = chain.join(": ");
    let dir = tls.map(|t| t.dir.display().to_string()).unwrap_or_default();
    match (tls, rustls_error) {
        (Some(_), Some(rustls::Error::AlertReceived(alert))) => format!(
            "the engine refused this client's certificate (TLS alert {alert:?}): cert.pem and key.pem in DOCKER_CERT_PATH={dir} must be signed by the CA the engine trusts (its --tlscacert)"
        ),
        (Some(_), Some(rustls::Error::InvalidCertificate(why))) => format!(
            "the engine's certificate is not trusted ({why:?}): ca.pem in DOCKER_CERT_PATH={dir} must be the CA that signed it, and the certificate must name the host in DOCKER_HOST"
        ),
        (Some(_), Some(rustls::Error::InvalidMessage(_))) => format!(
            "the engine did not answer in TLS ({detail}): is DOCKER_HOST the engine's TLS port (usually 2376)?"
        ),
        (Some(_), Some(other)) => format!("the TLS connection failed: {other}"),
        (Some(_), None) if is_reset(&chain) => format!(
            "the engine closed the TLS connection ({detail}): it may not accept this client's certificate (DOCKER_CERT_PATH={dir}), or it does not speak TLS on this port"
        ),
        (None, _) if is_reset(&chain) => format!(
            "the engine closed the connection ({detail}): if it listens with TLS (port 2376), set DOCKER_TLS_VERIFY=1 and DOCKER_CERT_PATH to the directory with ca.pem, cert.pem and key.pem"
        ),
        _ => detail,
    }
}

fn is_reset(chain: &[String]) -> bool {
    chain.iter().any(|m| {
        let m = m.to_ascii_lowercase();
        m.contains("connection reset") || m.contains("connection closed") || m.contains("eof")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn from(vars: &[(&str, &str)]) -> Result<DockerEndpoint, EngineError> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        DockerEndpoint::from_vars(|k| vars.get(k).cloned())
    }

    #[test]
    fn no_docker_host_is_the_local_socket() {
        let e = from(&[]).unwrap();
        assert_eq!(e.address(), "unix:///var/run/docker.sock");
        assert!(e.tls().is_none());
    }

    #[test]
    fn tls_verify_reads_the_three_files_from_the_cert_path() {
        let e = from(&[
            ("DOCKER_HOST", "tcp://docker.example:2376"),
            ("DOCKER_TLS_VERIFY", "1"),
            ("DOCKER_CERT_PATH", "/certs"),
        ])
        .unwrap();
        assert_eq!(e.address(), "https://docker.example:2376");
        let t = e.tls().unwrap();
        assert_eq!(t.ca, Path::new("/certs/ca.pem"));
        assert_eq!(t.cert, Path::new("/certs/cert.pem"));
        assert_eq!(t.key, Path::new("/certs/key.pem"));
    }

    #[test]
    fn the_cert_path_defaults_to_dot_docker_in_home() {
        let e = from(&[
            ("DOCKER_HOST", "tcp://h:2376"),
            ("DOCKER_TLS_VERIFY", "1"),
            ("HOME", "/home/op"),
        ])
        .unwrap();
        assert_eq!(e.tls().unwrap().dir, Path::new("/home/op/.docker"));
    }

    #[test]
    fn an_empty_tls_verify_is_off_as_in_the_cli() {
        let e = from(&[("DOCKER_HOST", "tcp://h:2375"), ("DOCKER_TLS_VERIFY", "")]).unwrap();
        assert_eq!(e.address(), "tcp://h:2375");
        assert!(e.tls().is_none());
    }

    #[test]
    fn a_missing_port_gets_the_clis_default() {
        let plain = from(&[("DOCKER_HOST", "tcp://h")]).unwrap();
        assert_eq!(plain.address(), "tcp://h:2375");
        let tls = from(&[
            ("DOCKER_HOST", "tcp://[::1]"),
            ("DOCKER_TLS_VERIFY", "1"),
            ("DOCKER_CERT_PATH", "/c"),
        ])
        .unwrap();
        assert_eq!(tls.address(), "https://[::1]:2376");
        let with = from(&[("DOCKER_HOST", "tcp://[::1]:9/")]).unwrap();
        assert_eq!(with.address(), "tcp://[::1]:9");
    }

    #[test]
    fn bad_hosts_say_what_is_wrong() {
        for (host, words) in [
            ("ssh://me@h", "not supported"),
            ("h:2375", "must look like"),
            ("tcp://", "tcp://HOST:PORT"),
            ("unix://", "no socket path"),
        ] {
            let e = from(&[("DOCKER_HOST", host)]).unwrap_err();
            assert!(e.to_string().contains(words), "{host}: {e}");
        }
        let e = from(&[
            ("DOCKER_HOST", "unix:///var/run/docker.sock"),
            ("DOCKER_TLS_VERIFY", "1"),
            ("DOCKER_CERT_PATH", "/c"),
        ])
        .unwrap_err();
        assert!(e.to_string().contains("tcp:// engines"), "{e}");
    }

    #[test]
    fn a_missing_certificate_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let e = DockerEndpoint::new("tcp://127.0.0.1:1", Some(TlsFiles::in_dir(dir.path())))
            .unwrap()
            .client()
            .unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("ca.pem") && msg.contains("DOCKER_CERT_PATH"),
            "{msg}"
        );
    }
}
