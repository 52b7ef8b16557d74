//! The accept loop: hyper's HTTP/1 server under the front door's limits (axum::serve runs hyper
//! without a timer, so a slow client could hold a connection for ever). Each connection has a
//! watchdog that closes it at its [`ConnClock`] deadline (headers, body, idle); connections past
//! [`FrontDoorLimits::max_connections`] are answered 503 with `Retry-After` and closed.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::{Body, HttpBody};
use axum::http::{Request, Response};
use axum::Router;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tower::ServiceExt as _;
use tracing::Instrument as _;

use super::timeouts::{ConnClock, FrontDoorLimits};
use crate::metrics::Metrics;

/// What a connection over the cap is told before it is closed.
const OVER_CAP: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Type: application/json\r\nContent-Length: 52\r\nConnection: close\r\n\r\n{\"error\":\"too many connections; retry in 1 second\"}\n";

/// Serves `router` on `listener` under `limits` until `shutdown` resolves, then stops accepting
/// and lets open connections finish (idle ones are closed at once).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: FrontDoorLimits,
    metrics: Metrics,
    shutdown: impl Future<Output = ()>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    // The watchdog keeps time; hyper's own header timer would need a timer it is not given.
    http.header_read_timeout(None);
    tokio::pin!(shutdown);
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors, most likely: wait for some to close.
                    tracing::warn!(error = %e, "could not accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            metrics.connection_closed("over_capacity");
            tokio::spawn(refuse(stream).instrument(tracing::debug_span!("over_cap")));
            continue;
        };
        let conn = Arc::new(Conn::new(ConnClock::new(limits.timeouts, Instant::now())));
        let io = TokioIo::new(Watched {
            inner: stream,
            conn: conn.clone(),
        });
        let service = {
            let (router, conn) = (router.clone(), conn.clone());
            hyper::service::service_fn(move |req| handle(router.clone(), conn.clone(), req))
        };
        let served = graceful.watch(http.serve_connection(io, service));
        let metrics = metrics.clone();
        let task = async move {
            tokio::select! {
                _ = served => {}
                (why, reason) = watchdog(&conn) => {
                    tracing::debug!(waiting_for = why, "closed a slow connection");
                    metrics.connection_closed(reason);
                }
            }
            drop(slot);
        };
        tokio::spawn(task.instrument(tracing::debug_span!("connection")));
    }
    drop(listener);
    graceful.shutdown().await;
}

/// A connection over the cap: a short 503 (if the client reads it within a second), then closed.
async fn refuse(mut stream: TcpStream) {
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        stream.write_all(OVER_CAP).await?;
        stream.shutdown().await
    })
    .await;
}

/// One request through the router, with the connection's clock told when it starts and ends.
async fn handle(
    router: Router,
    conn: Arc<Conn>,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    conn.update(|c| c.request_started(Instant::now()));
    let response = match router.oneshot(req.map(Body::new)).await {
        Ok(r) => r,
        Err(never) => match never {},
    };
    conn.update(|c| c.answer_started());
    let done = AnswerDone(conn);
    Ok(response.map(|body| Body::new(Answer { body, _done: done })))
}

/// How often a watchdog looks again at a connection whose deadline may have moved: a request's
/// phases move it later, except a kept-alive connection's next head, found late by at most this.
const TICK: Duration = Duration::from_secs(1);

/// Waits until the connection passes its deadline; returns what it was waiting for and the
/// reason to count. It wakes at the deadline or every [`TICK`], never for each request: a busy
/// connection costs it nothing.
async fn watchdog(conn: &Conn) -> (&'static str, &'static str) {
    loop {
        let now = Instant::now();
        let (deadline, waiting_for, reason) = {
            let c = conn.lock();
            (c.deadline(), c.waiting_for(), c.close_reason())
        };
        let wake = match deadline {
            Some(at) if at <= now => return (waiting_for, reason),
            Some(at) => at.min(now + TICK),
            None => now + TICK,
        };
        tokio::time::sleep_until(wake.into()).await;
    }
}

/// A connection's clock, shared by its reads, its requests and its watchdog.
struct Conn {
    clock: Mutex<ConnClock>,
}

impl Conn {
    fn new(clock: ConnClock) -> Self {
        Conn {
            clock: Mutex::new(clock),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ConnClock> {
        self.clock.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn update(&self, f: impl FnOnce(&mut ConnClock)) {
        f(&mut self.lock());
    }
}

/// Tells the clock the answer is over when its body is dropped (sent, or the client left).
struct AnswerDone(Arc<Conn>);

impl Drop for AnswerDone {
    fn drop(&mut self) {
        self.0.update(|c| c.answer_finished(Instant::now()));
    }
}

/// A response body that keeps its [`AnswerDone`] until it is dropped.
struct Answer {
    body: Body,
    _done: AnswerDone,
}

impl HttpBody for Answer {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// The socket, telling the clock when bytes come in.
struct Watched {
    inner: TcpStream,
    conn: Arc<Conn>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.conn.lock().bytes_read(Instant::now());
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
