//! The front door over real sockets, as an outsider would try it: half-sent headers, bodies that
//! trickle in, connections left open, more connections than the cap, bodies larger than the
//! budget. The server closes them within its limits and keeps answering.

mod support;

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use backspace::server::{serve, FrontDoorLimits, Timeouts};
use backspace::webhook::signature::sign;
use serde_json::json;
use support::db;
use support::webhooks::{delivery, fixture, test_doors, Ingress, SECRET};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const SECS: fn(u64) -> Duration = Duration::from_secs;

fn limits(max_connections: usize) -> FrontDoorLimits {
    FrontDoorLimits {
        timeouts: Timeouts {
            header: SECS(1),
            body: SECS(2),
            idle: SECS(2),
        },
        max_connections,
    }
}

/// A server on a free port with these limits; returns its address.
async fn server(ingress: &Ingress, limits: FrontDoorLimits) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = ingress.router.clone();
    let metrics = ingress.state.metrics().clone();
    tokio::spawn(serve(
        listener,
        router,
        limits,
        metrics,
        std::future::pending(),
    ));
    addr
}

/// Waits (up to a second: the count follows the close) until `/metrics` has counted `want`
/// connections the server closed for `reason`, and fails if it counts any other number.
async fn closed_for(ingress: &Ingress, reason: &str, want: u64) {
    let series = format!("backspace_connections_closed_total{{reason=\"{reason}\"}} ");
    let mut seen = None;
    for _ in 0..20 {
        let text = ingress.state.metrics().render(None);
        seen = text
            .lines()
            .find_map(|l| l.strip_prefix(series.as_str()))
            .and_then(|v| v.trim().parse::<u64>().ok());
        if seen == Some(want) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{series}: want {want}, /metrics says {seen:?}");
}

/// Reads until the server closes the connection; returns what it sent and when it closed.
async fn until_closed(stream: &mut TcpStream, within: Duration) -> (String, Instant) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let read_all = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return Instant::now(),
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    };
    let closed = tokio::time::timeout(within, read_all)
        .await
        .expect("the server closed the connection in time");
    (String::from_utf8_lossy(&got).into_owned(), closed)
}

fn webhook_head(extra: &str) -> String {
    format!(
        "POST /api/github/webhooks HTTP/1.1\r\nHost: backspace.test\r\nX-GitHub-Event: ping\r\nX-GitHub-Delivery: slow-1\r\nContent-Type: application/json\r\n{extra}\r\n"
    )
}

#[tokio::test]
async fn a_half_sent_header_is_closed_at_the_header_timeout() {
    let t = db::sqlite().await;
    let ingress = Ingress::new(t.store.clone());
    let addr = server(&ingress, limits(16)).await;
    let mut slow = TcpStream::connect(addr).await.unwrap();
    let start = Instant::now();
    slow.write_all(b"POST /api/github/webhooks HTTP/1.1\r\nHost: backspace.test\r\nX-GitHub-Ev")
        .await
        .unwrap();
    // More of the head, slowly: trickling does not buy time.
    let trickle = async {
        for b in b"ent: ping\r\n" {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if slow.write_all(&[*b]).await.is_err() {
                return;
            }
        }
    };
    tokio::time::timeout(SECS(1), trickle).await.ok();
    let (_, closed) = until_closed(&mut slow, SECS(3)).await;
    let took = closed - start;
    assert!(took >= Duration::from_millis(900), "{took:?}");
    assert!(took < Duration::from_millis(2000), "{took:?}");
    closed_for(&ingress, "header_timeout", 1).await;
    closed_for(&ingress, "body_timeout", 0).await;
}

#[tokio::test]
async fn a_body_that_trickles_in_is_closed_at_the_body_timeout() {
    let t = db::sqlite().await;
    let ingress = Ingress::new(t.store.clone());
    let addr = server(&ingress, limits(16)).await;
    let mut slow = TcpStream::connect(addr).await.unwrap();
    let sig = sign(SECRET, b"{}");
    let head = webhook_head(&format!(
        "X-Hub-Signature-256: {sig}\r\nContent-Length: {}\r\n",
        20 << 20
    ));
    slow.write_all(head.as_bytes()).await.unwrap();
    let start = Instant::now();
    let (mut reader, mut writer) = slow.into_split();
    let trickle = tokio::spawn(async move {
        while writer.write_all(b" ").await.is_ok() {
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    });
    let mut buf = [0u8; 1024];
    let closed = tokio::time::timeout(SECS(5), async {
        loop {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => return Instant::now(),
                Ok(_) => {}
            }
        }
    })
    .await
    .expect("closed in time");
    trickle.abort();
    let took = closed - start;
    assert!(took >= Duration::from_millis(1800), "{took:?}");
    assert!(took < Duration::from_millis(3000), "{took:?}");
    assert_eq!(t.store.delivery_count().await.unwrap(), 0);
    closed_for(&ingress, "body_timeout", 1).await;
    closed_for(&ingress, "header_timeout", 0).await;
}

#[tokio::test]
async fn a_kept_alive_connection_left_idle_is_closed_at_the_idle_timeout() {
    let t = db::sqlite().await;
    let ingress = Ingress::new(t.store.clone());
    let addr = server(&ingress, limits(16)).await;
    let mut idle = TcpStream::connect(addr).await.unwrap();
    idle.write_all(b"GET /livez HTTP/1.1\r\nHost: backspace.test\r\n\r\n")
        .await
        .unwrap();
    let mut first = [0u8; 12];
    idle.read_exact(&mut first).await.unwrap();
    assert_eq!(&first, b"HTTP/1.1 200");
    let answered = Instant::now();
    let (_, closed) = until_closed(&mut idle, SECS(4)).await;
    let took = closed - answered;
    assert!(took >= Duration::from_millis(1800), "{took:?}");
    assert!(took < Duration::from_millis(3000), "{took:?}");
    closed_for(&ingress, "idle_timeout", 1).await;
}

#[tokio::test]
async fn an_over_size_body_from_an_unsigned_client_is_refused_before_it_is_sent() {
    let t = db::sqlite().await;
    let ingress = Ingress::new(t.store.clone());
    let addr = server(&ingress, limits(16)).await;
    // Unsigned, 20 MiB announced: 401 at once, without a byte of the body.
    let mut unsigned = TcpStream::connect(addr).await.unwrap();
    let head = webhook_head(&format!("Content-Length: {}\r\n", 20 << 20));
    unsigned.write_all(head.as_bytes()).await.unwrap();
    let (answer, _) = until_closed(&mut unsigned, SECS(1)).await;
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    assert!(answer.contains("missing X-Hub-Signature-256"), "{answer}");
    // Signed (in form), but over GitHub's 25 MB: 413 at once.
    let mut huge = TcpStream::connect(addr).await.unwrap();
    let sig = sign(SECRET, b"{}");
    let head = webhook_head(&format!(
        "X-Hub-Signature-256: {sig}\r\nContent-Length: {}\r\n",
        26 << 20
    ));
    huge.write_all(head.as_bytes()).await.unwrap();
    let (answer, _) = until_closed(&mut huge, SECS(1)).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert_eq!(t.store.delivery_count().await.unwrap(), 0);
}

#[tokio::test]
async fn connections_over_the_cap_get_503_with_retry_after_and_deliveries_go_on_after() {
    let t = db::sqlite().await;
    let ingress = Ingress::new(t.store.clone());
    let addr = server(&ingress, limits(3)).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(TcpStream::connect(addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut over = TcpStream::connect(addr).await.unwrap();
    let (answer, _) = until_closed(&mut over, SECS(2)).await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("Retry-After: 1"), "{answer}");
    closed_for(&ingress, "over_capacity", 1).await;
    // The held connections send nothing: closed at the header timeout, and the slots free.
    for c in &mut held {
        until_closed(c, SECS(3)).await;
    }
    closed_for(&ingress, "header_timeout", 3).await;
    let client = reqwest::Client::new();
    let body = fixture("webhooks/ping/ping.json");
    let resp = client
        .post(format!("http://{addr}/api/github/webhooks"))
        .header("x-github-event", "ping")
        .header("x-github-delivery", "after-the-cap")
        .header("x-hub-signature-256", sign(SECRET, &body))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), reqwest::StatusCode::ACCEPTED);
}

#[tokio::test]
async fn bodies_past_the_bytes_in_flight_budget_get_503_and_the_budget_comes_back() {
    let t = db::sqlite().await;
    let mut doors = test_doors();
    doors.webhook_bytes_in_flight = 1 << 20;
    let ingress = Ingress::with_doors(t.store.clone(), &[SECRET], doors);
    let padded =
        |n: usize| serde_json::to_vec(&json!({"zen": "x".repeat(n), "hook_id": 1})).unwrap();
    let req = |id: &str, body: Vec<u8>| -> Request<Body> { delivery("ping", id, body) };
    let (status, answer) = ingress.send(req("big", padded(2 << 20))).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{answer}");
    assert!(
        answer["error"].as_str().unwrap().contains("retry"),
        "{answer}"
    );
    // Twice the budget in deliveries, one after the other: each gives its bytes back.
    for i in 0..2 {
        let (status, answer) = ingress
            .send(req(&format!("fits-{i}"), padded(600 << 10)))
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    }
}

#[tokio::test]
async fn a_signed_body_that_comes_in_many_chunks_is_verified_as_it_streams() {
    let t = db::sqlite().await;
    let ingress = Ingress::new(t.store.clone());
    let body = fixture("webhooks/ping/ping.json");
    let sig = sign(SECRET, &body);
    let request = |sig: &str, body: Vec<u8>| {
        let chunks: Vec<Result<bytes::Bytes, std::io::Error>> = body
            .chunks(7)
            .map(|c| Ok(bytes::Bytes::copy_from_slice(c)))
            .collect();
        Request::post("/api/github/webhooks")
            .header("x-github-event", "ping")
            .header("x-github-delivery", "chunked")
            .header("x-hub-signature-256", sig)
            .body(Body::from_stream(futures::stream::iter(chunks)))
            .unwrap()
    };
    let mut tampered = body.clone();
    tampered.push(b' ');
    let (status, _) = ingress.send(request(&sig, tampered)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, answer) = ingress.send(request(&sig, body)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    assert_eq!(t.store.delivery_count().await.unwrap(), 1);
}
