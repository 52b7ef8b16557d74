//! One run's egress proxy: serves a connection from the sandbox (any byte stream), decides
//! whether its host and port may be opened, resolves the name itself, refuses loopback, private,
//! link-local and this host's addresses unless the operator listed them, and then tunnels
//! (`CONNECT`, no TLS interception) or forwards (plain HTTP). Each refusal is answered `403`
//! with a body the agent reads, and reported. It adds no credential and logs host and port
//! only. A run's proxy shares nothing with another run's.

use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

use super::address::{self, Special};
use super::allowlist::Allowlist;
use super::request::{self, HeadError, Request};

const HEAD_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// What one run may open, and how much.
#[derive(Debug, Clone)]
pub struct Policy {
    /// The repository's `network.allow` (within the operator's list).
    pub allow: Allowlist,
    /// The operator's `BACKSPACE_EGRESS_ALLOW`: its IP entries let those exact addresses
    /// through even when they are loopback or private.
    pub operator: Allowlist,
    /// Addresses of the Docker engine's host when it is another machine.
    pub engine_addresses: Vec<IpAddr>,
    pub limits: Limits,
}

/// Per-run caps.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections opened over the whole run.
    pub connections: u64,
    /// Bytes both ways over the whole run.
    pub bytes: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            connections: 4_096,
            bytes: 4 << 30,
        }
    }
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// The host and port are not in the repository's list.
    NotAllowed,
    /// The name resolved to (or is) an address the proxy never opens.
    Address(Special),
    /// The run used up its connections or bytes.
    Limit,
}

/// One refused connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub host: String,
    pub port: u16,
    pub reason: Reason,
}

/// One run's proxy: its policy and what it has used.
pub struct Proxy {
    policy: Policy,
    connections: AtomicU64,
    bytes: Arc<AtomicU64>,
    refusals: tokio::sync::mpsc::UnboundedSender<Refusal>,
}

impl Proxy {
    pub fn new(policy: Policy, refusals: tokio::sync::mpsc::UnboundedSender<Refusal>) -> Proxy {
        Proxy {
            policy,
            connections: AtomicU64::new(0),
            bytes: Arc::new(AtomicU64::new(0)),
            refusals,
        }
    }

    /// Bytes carried so far, both ways.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Serves one connection from the sandbox to its end.
    pub async fn serve<S: AsyncRead + AsyncWrite + Unpin>(&self, mut client: S) {
        let (req, rest) = match tokio::time::timeout(HEAD_TIMEOUT, read_head(&mut client)).await {
            Ok(Ok(read)) => read,
            Ok(Err(e)) => {
                let body = format!("Backspace's egress proxy: {e}. Use HTTP_PROXY/HTTPS_PROXY.\n");
                let _ = client
                    .write_all(&request::answer("400 Bad Request", &body))
                    .await;
                return;
            }
            Err(_) => return,
        };
        let upstream = match self.open(&req).await {
            Ok(stream) => stream,
            Err(Opened::Refused(reason)) => return self.refuse(client, req, reason).await,
            Err(Opened::Failed(why)) => {
                let body = format!(
                    "Backspace's egress proxy could not reach {}:{}: {why}\n",
                    req.host, req.port
                );
                let _ = client
                    .write_all(&request::answer("502 Bad Gateway", &body))
                    .await;
                return;
            }
        };
        tracing::info!(host = %req.host, port = req.port, "egress: connection opened");
        let mut upstream = Counted {
            inner: upstream,
            bytes: self.bytes.clone(),
            cap: self.policy.limits.bytes,
        };
        let first = match &req.forward {
            None => client.write_all(request::TUNNEL_OPEN).await,
            Some(head) => upstream.write_all(head).await,
        };
        if first.is_err() || upstream.write_all(&rest).await.is_err() {
            return;
        }
        if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
            tracing::debug!(host = %req.host, port = req.port, error = %e, "egress: connection ended");
        }
    }

    async fn refuse<S: AsyncWrite + Unpin>(&self, mut client: S, req: Request, reason: Reason) {
        tracing::info!(host = %req.host, port = req.port, ?reason, "egress: connection refused");
        let body = refusal_text(&req.host, req.port, reason);
        let _ = client
            .write_all(&request::answer("403 Forbidden", &body))
            .await;
        let _ = client.shutdown().await;
        let _ = self.refusals.send(Refusal {
            host: req.host,
            port: req.port,
            reason,
        });
    }

    /// Decides, resolves and connects.
    async fn open(&self, req: &Request) -> Result<TcpStream, Opened> {
        if !self.policy.allow.allows(&req.host, req.port) {
            return Err(Opened::Refused(Reason::NotAllowed));
        }
        let n = self.connections.fetch_add(1, Ordering::Relaxed);
        if n >= self.policy.limits.connections || self.bytes() >= self.policy.limits.bytes {
            return Err(Opened::Refused(Reason::Limit));
        }
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((req.host.as_str(), req.port))
            .await
            .map_err(|e| Opened::Failed(format!("the name does not resolve ({e})")))?
            .collect();
        let mut refused = None;
        let mut last_error = None;
        for addr in addrs {
            let ip = addr.ip();
            let listed = self.policy.operator.lists_address(ip);
            let this_host = self.policy.engine_addresses.contains(&ip) || is_this_machine(ip);
            if let Some(special) = address::refusal(ip, listed, this_host) {
                refused.get_or_insert(special);
                continue;
            }
            match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
                Ok(Ok(stream)) => return Ok(stream),
                Ok(Err(e)) => last_error = Some(e.to_string()),
                Err(_) => last_error = Some("timed out".into()),
            }
        }
        match (last_error, refused) {
            (Some(e), _) => Err(Opened::Failed(e)),
            (None, Some(special)) => Err(Opened::Refused(Reason::Address(special))),
            (None, None) => Err(Opened::Failed("the name has no address".into())),
        }
    }
}

enum Opened {
    Refused(Reason),
    Failed(String),
}

/// What the agent reads when the proxy refuses a connection.
pub fn refusal_text(host: &str, port: u16, reason: Reason) -> String {
    let why = match reason {
        Reason::NotAllowed => format!(
            "{host}:{port} is not in this repository's network.allow ({}); \
             the run's report says how to allow it",
            crate::repo_settings::PATH
        ),
        Reason::Address(special) => format!(
            "{host}:{port} is {}, which the sandbox may not reach unless the operator lists \
             that address in BACKSPACE_EGRESS_ALLOW",
            special.describe()
        ),
        Reason::Limit => "this run has used up its network connections or bytes".to_string(),
    };
    format!("Backspace's egress proxy refused the connection: {why}.\n")
}

/// Whether `ip` is an address of this machine (it can be bound here): the bot's own ports and
/// its database listen there.
fn is_this_machine(ip: IpAddr) -> bool {
    std::net::UdpSocket::bind((ip, 0)).is_ok()
}

/// Reads the request head; returns it parsed and the bytes that came after it.
async fn read_head<S: AsyncRead + Unpin>(client: &mut S) -> Result<(Request, Vec<u8>), HeadError> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = request::head_end(&buf) {
            let req = request::parse(&buf[..end])?;
            return Ok((req, buf[end..].to_vec()));
        }
        if buf.len() > request::MAX_HEAD {
            return Err(HeadError::TooLarge);
        }
        match client.read(&mut chunk).await {
            Ok(0) | Err(_) => return Err(HeadError::NotHttp),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// The upstream side of a connection, counting the run's bytes both ways and failing past the
/// cap.
struct Counted {
    inner: TcpStream,
    bytes: Arc<AtomicU64>,
    cap: u64,
}

impl Counted {
    fn add(&self, n: usize) -> std::io::Result<()> {
        let total = self.bytes.fetch_add(n as u64, Ordering::Relaxed) + n as u64;
        if total > self.cap {
            return Err(std::io::Error::other(
                "the run's network byte cap is reached",
            ));
        }
        Ok(())
    }
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            self.add(buf.filled().len() - before)?;
        }
        polled
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = polled {
            self.add(n)?;
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(allow: &str, operator: &str) -> Policy {
        Policy {
            allow: Allowlist::parse(allow).expect("allow"),
            operator: Allowlist::parse(operator).expect("operator"),
            engine_addresses: vec![],
            limits: Limits::default(),
        }
    }

    async fn ask(proxy: &Proxy, head: &str) -> String {
        let (mut ours, theirs) = tokio::io::duplex(64 * 1024);
        let serve = proxy.serve(theirs);
        let talk = async {
            ours.write_all(head.as_bytes()).await.expect("write");
            // The client has said all it has to say.
            ours.shutdown().await.expect("shutdown");
            let mut answer = String::new();
            let _ = ours.read_to_string(&mut answer).await;
            answer
        };
        let ((), answer) = tokio::join!(serve, talk);
        answer
    }

    #[tokio::test]
    async fn a_host_not_listed_is_refused_with_a_reason_and_reported() {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let proxy = Proxy::new(policy("pypi.org", "pypi.org"), tx);
        let answer = ask(&proxy, "CONNECT evil.example.com:443 HTTP/1.1\r\n\r\n").await;
        assert!(answer.starts_with("HTTP/1.1 403 Forbidden"), "{answer}");
        assert!(answer.contains("evil.example.com:443 is not in this repository's network.allow"));
        let refusal = rx.try_recv().expect("reported");
        assert_eq!(
            (refusal.host.as_str(), refusal.port, refusal.reason),
            ("evil.example.com", 443, Reason::NotAllowed)
        );
    }

    #[tokio::test]
    async fn an_allowed_name_on_loopback_is_refused_unless_its_address_is_listed() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let proxy = Proxy::new(policy("localhost", "localhost"), tx);
        let answer = ask(
            &proxy,
            &format!("CONNECT localhost:{port} HTTP/1.1\r\n\r\n"),
        )
        .await;
        assert!(answer.contains("is a loopback address"), "{answer}");
        assert_eq!(
            rx.try_recv().expect("reported").reason,
            Reason::Address(Special::Loopback)
        );
        let proxy = Proxy::new(
            policy("127.0.0.1", "127.0.0.1"),
            tokio::sync::mpsc::unbounded_channel().0,
        );
        let server = async {
            let (mut s, _) = listener.accept().await.expect("accept");
            let mut head = vec![0; 256];
            let n = s.read(&mut head).await.expect("read");
            s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                .await
                .expect("write");
            String::from_utf8_lossy(&head[..n]).to_string()
        };
        let head = format!("GET http://127.0.0.1:{port}/simple/ HTTP/1.1\r\nHost: x\r\n\r\n");
        let (answer, forwarded) = tokio::join!(ask(&proxy, &head), server);
        assert!(
            forwarded.starts_with("GET /simple/ HTTP/1.1\r\n"),
            "{forwarded}"
        );
        assert!(answer.ends_with("\r\n\r\nok"), "{answer}");
        assert!(proxy.bytes() > 0);
    }

    #[tokio::test]
    async fn the_metadata_address_is_refused_even_when_listed_by_name() {
        let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
        let proxy = Proxy::new(policy("169.254.169.254", "*.example.com"), tx);
        let answer = ask(&proxy, "CONNECT 169.254.169.254:80 HTTP/1.1\r\n\r\n").await;
        assert!(answer.contains("the cloud metadata address"), "{answer}");
    }

    #[tokio::test]
    async fn the_connection_cap_refuses_past_it() {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let mut p = policy("127.0.0.1", "127.0.0.1");
        p.limits.connections = 0;
        let proxy = Proxy::new(p, tx);
        let answer = ask(&proxy, "CONNECT 127.0.0.1:9 HTTP/1.1\r\n\r\n").await;
        assert!(
            answer.contains("used up its network connections"),
            "{answer}"
        );
        assert_eq!(rx.try_recv().expect("reported").reason, Reason::Limit);
    }

    #[tokio::test]
    async fn a_request_that_is_not_for_a_proxy_is_answered_400() {
        let proxy = Proxy::new(policy("", ""), tokio::sync::mpsc::unbounded_channel().0);
        let answer = ask(&proxy, "GET / HTTP/1.1\r\n\r\n").await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    }
}
