//! Backspace's end of the forwarder's byte stream: the frames from the sandbox become
//! connections the run's [`Proxy`] serves, and what the proxy answers goes back in frames. The
//! stream is any pair of a byte stream and a writer (an exec's stdout and stdin in a run, pipes
//! in tests).

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, WriteHalf};
use tokio::sync::{mpsc, oneshot};
use tracing::Instrument as _;

use super::mux::{Decoder, Frame, Kind, MAX_PAYLOAD};
use super::proxy::Proxy;

/// Connections open at once through one run's link; more are reset.
const MAX_OPEN: usize = 128;
/// What one connection buffers each way between the link and the proxy.
const PIPE: usize = 256 * 1024;

/// Carries the forwarder's connections until its stream ends. `ready` fires when the forwarder
/// says it listens.
pub async fn run<R, W>(
    from_sandbox: R,
    to_sandbox: W,
    proxy: Arc<Proxy>,
    ready: oneshot::Sender<()>,
) where
    R: Stream<Item = std::io::Result<Bytes>> + Unpin,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (frames_tx, frames_rx) = mpsc::channel::<Frame>(256);
    let writer = tokio::spawn(write_frames(to_sandbox, frames_rx).in_current_span());
    demux(from_sandbox, frames_tx, proxy, ready).await;
    writer.abort();
}

async fn write_frames<W: AsyncWrite + Unpin>(mut out: W, mut frames: mpsc::Receiver<Frame>) {
    while let Some(frame) = frames.recv().await {
        if out.write_all(&frame.encode()).await.is_err() {
            return;
        }
        // Write the rest of what is queued before flushing.
        while let Ok(more) = frames.try_recv() {
            if out.write_all(&more.encode()).await.is_err() {
                return;
            }
        }
        if out.flush().await.is_err() {
            return;
        }
    }
}

/// The connections the forwarder opened, by its number for them.
struct Demux {
    frames: mpsc::Sender<Frame>,
    proxy: Arc<Proxy>,
    ready: Option<oneshot::Sender<()>>,
    conns: HashMap<u32, WriteHalf<tokio::io::DuplexStream>>,
    closed: mpsc::UnboundedSender<u32>,
}

async fn demux<R>(
    mut from_sandbox: R,
    frames: mpsc::Sender<Frame>,
    proxy: Arc<Proxy>,
    ready: oneshot::Sender<()>,
) where
    R: Stream<Item = std::io::Result<Bytes>> + Unpin,
{
    let (closed, mut closed_rx) = mpsc::unbounded_channel::<u32>();
    let mut d = Demux {
        frames,
        proxy,
        ready: Some(ready),
        conns: HashMap::new(),
        closed,
    };
    let mut decoder = Decoder::default();
    loop {
        let chunk = tokio::select! {
            chunk = from_sandbox.next() => chunk,
            Some(conn) = closed_rx.recv() => {
                d.conns.remove(&conn);
                continue;
            }
        };
        let Some(Ok(chunk)) = chunk else { return };
        decoder.push(&chunk);
        loop {
            match decoder.next_frame() {
                Ok(Some(frame)) => d.frame(frame).await,
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "egress: the forwarder's stream broke");
                    return;
                }
            }
        }
    }
}

impl Demux {
    /// One frame from the forwarder. Data waits for room in its connection's pipe, which holds
    /// up the others: the forwarder's stream is one ordered stream.
    async fn frame(&mut self, frame: Frame) {
        match frame.kind {
            Kind::Open if frame.conn == 0 => {
                if let Some(r) = self.ready.take() {
                    let _ = r.send(());
                }
            }
            Kind::Open if self.conns.len() >= MAX_OPEN => {
                let _ = self.frames.send(Frame::new(Kind::Reset, frame.conn)).await;
            }
            Kind::Open => self.open(frame.conn),
            Kind::Data => {
                if let Some(w) = self.conns.get_mut(&frame.conn) {
                    if w.write_all(&frame.payload).await.is_err() {
                        self.conns.remove(&frame.conn);
                    }
                }
            }
            Kind::End => {
                if let Some(w) = self.conns.get_mut(&frame.conn) {
                    let _ = w.shutdown().await;
                }
            }
            Kind::Reset => {
                self.conns.remove(&frame.conn);
            }
        }
    }

    /// A new connection: the proxy serves one end of a pipe, [`pump`] carries the other.
    fn open(&mut self, conn: u32) {
        let (ours, theirs) = tokio::io::duplex(PIPE);
        let (read, write) = tokio::io::split(ours);
        self.conns.insert(conn, write);
        let (done_tx, done_rx) = oneshot::channel();
        let proxy = self.proxy.clone();
        let serve = async move {
            proxy.serve(theirs).await;
            let _ = done_tx.send(());
        };
        tokio::spawn(serve.in_current_span());
        let pump = pump(
            conn,
            read,
            self.frames.clone(),
            done_rx,
            self.closed.clone(),
        );
        tokio::spawn(pump.in_current_span());
    }
}

/// What the proxy writes on one connection goes to the forwarder; once the proxy is done with
/// it, the connection is closed there too.
async fn pump<R: AsyncRead + Unpin>(
    conn: u32,
    mut from_proxy: R,
    frames: mpsc::Sender<Frame>,
    served: oneshot::Receiver<()>,
    closed: mpsc::UnboundedSender<u32>,
) {
    let mut buf = vec![0u8; MAX_PAYLOAD];
    loop {
        match from_proxy.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let frame = Frame::data(conn, Bytes::copy_from_slice(&buf[..n]));
                if frames.send(frame).await.is_err() {
                    return;
                }
            }
        }
    }
    let _ = frames.send(Frame::new(Kind::End, conn)).await;
    let _ = served.await;
    let _ = frames.send(Frame::new(Kind::Reset, conn)).await;
    let _ = closed.send(conn);
}
