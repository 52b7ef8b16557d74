//! Pure: what a client asks the egress proxy. A request head is either `CONNECT host:port`
//! (a tunnel, TLS passes through untouched) or a plain HTTP request with an absolute URI
//! (`GET http://host/path`), which goes on in origin form with the proxy's own headers removed.
//! Also the answers the proxy gives itself: the tunnel's `200`, and refusals the agent reads.

use url::Url;

/// The most bytes of a request head the proxy reads.
pub const MAX_HEAD: usize = 16 * 1024;

/// Where a request goes, and what to send there first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub host: String,
    pub port: u16,
    /// `None` for a tunnel; else the head to send upstream.
    pub forward: Option<Vec<u8>>,
}

/// A head the proxy cannot serve.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeadError {
    #[error("the request head is not HTTP/1")]
    NotHttp,
    #[error("the request head is larger than {MAX_HEAD} bytes")]
    TooLarge,
    #[error("the target {0:?} is neither CONNECT host:port nor an absolute http:// URI")]
    Target(String),
}

/// Where the head ends (the index past its blank line), once it is all in `buf`.
pub fn head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

/// Parses a whole request head (up to and including its blank line).
pub fn parse(head: &[u8]) -> Result<Request, HeadError> {
    if head.len() > MAX_HEAD {
        return Err(HeadError::TooLarge);
    }
    let text = std::str::from_utf8(head).map_err(|_| HeadError::NotHttp)?;
    let (line, headers) = text.split_once("\r\n").ok_or(HeadError::NotHttp)?;
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(HeadError::NotHttp);
    };
    if !version.starts_with("HTTP/1.") || method.is_empty() {
        return Err(HeadError::NotHttp);
    }
    if method.eq_ignore_ascii_case("CONNECT") {
        let (host, port) = authority(target).ok_or_else(|| HeadError::Target(target.into()))?;
        return Ok(Request {
            host,
            port,
            forward: None,
        });
    }
    let url = Url::parse(target).map_err(|_| HeadError::Target(target.into()))?;
    let host = url.host_str().filter(|_| url.scheme() == "http");
    let (Some(host), Some(port)) = (host, url.port_or_known_default()) else {
        return Err(HeadError::Target(target.into()));
    };
    let mut path = url.path().to_string();
    if let Some(q) = url.query() {
        path.push('?');
        path.push_str(q);
    }
    let mut out = format!("{method} {path} {version}\r\n");
    for h in headers.split("\r\n").filter(|h| !h.is_empty()) {
        let name = h.split(':').next().unwrap_or("").trim();
        let hop = [
            "proxy-authorization",
            "proxy-connection",
            "connection",
            "keep-alive",
        ];
        if !hop.iter().any(|n| name.eq_ignore_ascii_case(n)) {
            out.push_str(h);
            out.push_str("\r\n");
        }
    }
    // One request per connection: a second one could name another host.
    out.push_str("Connection: close\r\n\r\n");
    Ok(Request {
        host: host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string(),
        port,
        forward: Some(out.into_bytes()),
    })
}

/// `host:port` or `[v6]:port`.
fn authority(target: &str) -> Option<(String, u16)> {
    let (host, port) = target.rsplit_once(':')?;
    let port: u16 = port.parse().ok().filter(|p| *p != 0)?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let name_like = host
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':'));
    (!host.is_empty() && name_like).then(|| (host.to_string(), port))
}

/// The answer to a tunnel that is open.
pub const TUNNEL_OPEN: &[u8] = b"HTTP/1.1 200 Connection Established\r\n\r\n";

/// An answer of the proxy's own, with `body` as plain text, closing the connection.
pub fn answer(status: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\n\
         X-Backspace-Egress: refused\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_is_a_tunnel_to_its_authority() {
        let r = parse(b"CONNECT pypi.org:443 HTTP/1.1\r\nHost: pypi.org:443\r\n\r\n").expect("ok");
        assert_eq!(
            (r.host.as_str(), r.port, r.forward),
            ("pypi.org", 443, None)
        );
        let r = parse(b"CONNECT [::1]:8443 HTTP/1.1\r\n\r\n").expect("ok");
        assert_eq!((r.host.as_str(), r.port), ("::1", 8443));
    }

    #[test]
    fn a_plain_request_goes_on_in_origin_form_without_proxy_headers() {
        let head =
            b"GET http://registry.test:8080/pkg/a?v=1 HTTP/1.1\r\nHost: registry.test:8080\r\n\
Proxy-Authorization: Basic eDp5\r\nProxy-Connection: keep-alive\r\nAccept: */*\r\n\r\n";
        let r = parse(head).expect("ok");
        assert_eq!((r.host.as_str(), r.port), ("registry.test", 8080));
        let forward = String::from_utf8(r.forward.expect("a forward")).expect("text");
        assert_eq!(
            forward,
            "GET /pkg/a?v=1 HTTP/1.1\r\nHost: registry.test:8080\r\nAccept: */*\r\nConnection: close\r\n\r\n"
        );
        let r = parse(b"GET http://example.com HTTP/1.0\r\n\r\n").expect("ok");
        assert_eq!(r.port, 80);
    }

    #[test]
    fn what_is_not_a_proxy_request_says_why() {
        assert_eq!(parse(b"\x16\x03\x01\r\n\r\n"), Err(HeadError::NotHttp));
        assert_eq!(
            parse(b"GET / HTTP/1.1\r\n\r\n"),
            Err(HeadError::Target("/".into()))
        );
        assert!(matches!(
            parse(b"GET https://a.test/ HTTP/1.1\r\n\r\n"),
            Err(HeadError::Target(_))
        ));
        assert!(matches!(
            parse(b"CONNECT a.test HTTP/1.1\r\n\r\n"),
            Err(HeadError::Target(_))
        ));
        assert!(matches!(
            parse(b"CONNECT `@org/team`:443 HTTP/1.1\r\n\r\n"),
            Err(HeadError::Target(_))
        ));
        assert_eq!(parse(b"GET  x HTTP/1.1\r\n\r\n"), Err(HeadError::NotHttp));
        assert_eq!(head_end(b"GET x HTTP/1.1\r\n\r\nbody"), Some(18));
        assert_eq!(head_end(b"GET x HTTP/1.1\r\n"), None);
    }

    #[test]
    fn an_answer_has_its_length_and_closes() {
        let a = String::from_utf8(answer("403 Forbidden", "no\n")).expect("text");
        assert!(a.starts_with("HTTP/1.1 403 Forbidden\r\n"), "{a}");
        assert!(
            a.contains("Content-Length: 3\r\n") && a.ends_with("\r\n\r\nno\n"),
            "{a}"
        );
    }
}
